"""The studies' API and their commands agree: one report for one config, one default per
option (the command line's come from the configs), and the docs' option tables are the
declarations'."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import miakit as mk
from miakit._params import params, table
from miakit.audit.options import AuditConfig
from miakit.cli import build_parser, main
from miakit.cli._options import config_from
from miakit.shadow import TrainingConfig
from miakit.studies import budget, dp_curvature, generative, ks_leakage, partial_layers, sweep
from miakit.studies import capacity as capacity_study

ROOT = pathlib.Path(__file__).resolve().parent.parent
VOLATILE = {"timing_s", "seconds", "fit_s", "audit_s", "files", "figures", "created"}


def _stable(obj):
    """The report without what differs between two runs of the same config: timings and
    the paths of the files written."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _saved(out: pathlib.Path, name: str) -> dict:
    return _stable(json.loads((out / f"{name}.json").read_text()))


def _cli(args, capsys) -> str:
    assert main(args) == 0
    return capsys.readouterr().out


def test_budget_api_equals_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    keep = mk.shadow.balanced_keep(8, 60, seed=0)
    y = rng.integers(0, 3, 60)
    z = rng.normal(size=(8, 60, 1, 3)).astype(np.float32)
    z[np.arange(8)[:, None], np.arange(60), 0, y] += 1.5 * keep
    run = mk.shadow.import_logits(tmp_path / "run", z, keep, y)
    text = _cli(["budget", "--run", str(run.path), "--out", str(tmp_path / "cli"), "--budgets",
                 "2", "4", "--draws", "1", "--targets", "2", "--no-plot"], capsys)
    r = budget.run(run.logits(), run.keep, run.labels, budgets=[2, 4], draws=1, targets=2,
                   plot=False, out_dir=tmp_path / "api")
    assert _saved(tmp_path / "cli", "budget") == _saved(tmp_path / "api", "budget")
    assert r.summary() in text.replace(str(tmp_path / "cli"), str(tmp_path / "api"))
    assert budget.BudgetResult.from_json(tmp_path / "api" / "budget.json") == r


def test_dp_curvature_api_equals_command(tmp_path, capsys):
    _cli(["dp-curvature", "--out", str(tmp_path / "cli"), "--epsilon", "2", "--models", "4",
          "--n-examples", "40", "--steps", "5", "--no-plot", "--quiet"], capsys)
    dp_curvature.run(epsilons=[2.0], models=4, n_examples=40, steps=5, plot=False,
                     out_dir=tmp_path / "api")
    assert _saved(tmp_path / "cli", "dp_curvature") == _saved(tmp_path / "api", "dp_curvature")


def test_ks_leakage_api_equals_command(tmp_path, capsys):
    _cli(["leakage", "--dataset", "synthetic", "--out", str(tmp_path / "cli"), "--shots", "0",
          "2", "--seeds", "2", "--train-size", "50", "--no-plot"], capsys)
    d = mk.datasets.synthetic(n=2000, dim=32, n_classes=10, seed=0)
    r = ks_leakage.run(d.features, d.labels, shots=[0, 2], seeds=2, train_size=50,
                       dataset=d.name)
    assert _saved(tmp_path / "cli", "leakage") == _stable(r.to_dict())


def test_sweep_api_equals_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    x = (rng.normal(size=(36, 4)) + y[:, None]).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    _cli(["sweep", "--features", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
          "--shots", "1", "2", "--classes", "2", "--models", "4", "--fpr", "0.1", "--out",
          str(tmp_path / "cli"), "--quiet", "--no-plot"], capsys)
    r = sweep.run(x, y, shots=[1, 2], classes=[2], n_models=4, fprs=[0.1],
                  dataset=str(tmp_path / "x.npy"), plot=False, out_dir=tmp_path / "api")
    assert _saved(tmp_path / "cli", "sweep") == _stable(r.to_dict())
    assert (tmp_path / "api" / "sweep.csv").read_text() == \
        (tmp_path / "cli" / "sweep.csv").read_text()


def test_generative_api_equals_command(tmp_path, capsys):
    _cli(["generative", "--out", str(tmp_path / "cli"), "--n-examples", "100", "--gmm", "1",
          "n:diag", "--vae-epochs", "0", "--no-plot", "--quiet"], capsys)
    r = generative.run(gmms=["1", "n:diag"], vae_epochs=0, n_examples=100, plot=False)
    assert _saved(tmp_path / "cli", "generative") == _stable(r.to_dict())


# command, its minimal arguments, the configs it is made of, the API-only fields it fixes
COMMANDS = [
    ("audit", [], [AuditConfig, TrainingConfig], {}),
    ("shadow", ["--out", "r"], [TrainingConfig], {}),
    ("budget", ["--run", "r"], [budget.BudgetConfig], {}),
    ("dp-curvature", [], [dp_curvature.DpCurvatureConfig], {}),
    ("leakage", [], [ks_leakage.KsLeakageConfig], {"dataset": "features"}),
    ("sweep", [], [sweep.SweepConfig], {"dataset": "features"}),
    ("generative", [], [generative.GenerativeConfig], {"name": "synthetic data"}),
    ("partial-layers", [], [partial_layers.PartialLayersConfig], {}),
    ("capacity", [], [capacity_study.CapacityConfig], {}),
]


@pytest.mark.parametrize("command, argv, configs, fixed", COMMANDS,
                         ids=[c[0] for c in COMMANDS])
def test_command_defaults_are_the_config_defaults(command, argv, configs, fixed):
    args = build_parser().parse_args([command, *argv])
    for cls in configs:
        given = {k: v for k, v in fixed.items() if k in params(cls)}
        assert config_from(args, cls, **given) == cls(**given)
        for name, (param, default) in params(cls).items():
            if not param.cli:
                continue
            value = getattr(args, name)
            # None: an option left unset so that the command knows whether it was given
            if value is not None:
                assert (tuple(value) if isinstance(value, list) else value) == default, name


DOCS_TABLES = [
    ("docs/methods/vulnerability.md", budget.BudgetConfig),
    ("docs/methods/powerlaw.md", sweep.SweepConfig),
    ("docs/methods/ks.md", ks_leakage.KsLeakageConfig),
    ("docs/methods/generative.md", generative.GenerativeConfig),
    ("docs/methods/curvature.md", dp_curvature.DpCurvatureConfig),
    ("docs/methods/partial-layers.md", partial_layers.PartialLayersConfig),
    ("docs/methods/capacity.md", capacity_study.CapacityConfig),
    ("docs/guide/audit.md", AuditConfig),
    ("docs/guide/audit.md", TrainingConfig),
]


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="docs/ is not beside the tests")
@pytest.mark.parametrize("page, cls", DOCS_TABLES, ids=[c.__name__ for _, c in DOCS_TABLES])
def test_docs_option_tables_are_the_declarations(page, cls):
    assert table(cls) in (ROOT / page).read_text(), (
        f"{page}: the options table of {cls.__name__} is stale; paste "
        f"miakit._params.table({cls.__name__})")


def test_overrides_replace_config_fields_and_unknown_ones_are_refused():
    cfg = dp_curvature.DpCurvatureConfig(models=8)
    with pytest.raises(TypeError, match="model: not an option of DpCurvatureConfig"):
        dp_curvature.run(cfg, model=4)
    with pytest.raises(ValueError, match="models: expected an even number"):
        dp_curvature.run(cfg, models=5)
