"""Memorization and exact input curvature of DP-SGD heads against epsilon
(miakit.studies.dp_curvature, miakit dp-curvature)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import miakit as mk
from miakit.cli import main
from miakit.studies.dp_curvature import _curvature_in, dp_curvature

pytest.importorskip("dp_accounting")
pytest.importorskip("sklearn")


def test_curvature_in_averages_the_exact_trace_over_the_training_heads():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    w = rng.normal(size=(4, 2, 3))
    b = rng.normal(size=(4, 2))
    keep = mk.shadow.balanced_keep(4, 5, seed=1)
    got = _curvature_in(x, {"weight": w, "bias": b}, keep, "linear")
    for n in range(5):
        vals = []
        for m in np.flatnonzero(keep[:, n]):
            z = w[m] @ x[n] + b[m]
            p = np.exp(z - z.max())
            p /= p.sum()
            hess = w[m].T @ (np.diag(p) - np.outer(p, p)) @ w[m]
            vals.append(np.trace(hess))
        assert got[n] == pytest.approx(np.mean(vals), rel=1e-9)


def test_dp_shrinks_memorization_under_its_bound_and_writes_the_report(tmp_path):
    r = dp_curvature(tmp_path, epsilons=[0.5, 8.0], models=8, n_examples=120, steps=40,
                     quantiles=[0.9])
    rows = {row["epsilon"]: row for row in r["rows"]}
    assert list(rows) == [0.5, 8.0, None]
    assert rows[0.5]["bound"] == pytest.approx(1 - np.exp(-0.5))
    assert rows[None]["bound"] == 1.0 and rows[None]["noise_multiplier"] is None
    assert rows[0.5]["noise_multiplier"] > rows[8.0]["noise_multiplier"] > 0
    # without DP the heads fit their halves; at eps 0.5 they barely learn
    assert rows[None]["train_accuracy"] > 0.95 > rows[0.5]["train_accuracy"]
    assert rows[0.5]["memorization"]["mean"] <= rows[0.5]["bound"]
    assert rows[0.5]["within_bound"]
    for row in r["rows"]:
        assert row["memorization"]["q90"] >= row["memorization"]["mean"] - 0.5
        assert row["curvature"]["q90"] > 0 and np.isfinite(row["curvature"]["mean"])
        assert row["spearman"]["rho"] is None or -1 <= row["spearman"]["rho"] <= 1
    saved = json.loads((tmp_path / "dp_curvature.json").read_text())
    assert saved["rows"][0]["epsilon"] == 0.5
    assert (tmp_path / "dp_curvature.png").stat().st_size > 0


def test_without_dp_curvature_tracks_memorization():
    r = dp_curvature(epsilons=[4.0], models=16, n_examples=200, plot=False)
    nodp = r["rows"][-1]
    assert nodp["spearman"]["rho"] > 0.3 and nodp["spearman"]["pvalue"] < 1e-3


@pytest.mark.parametrize("kw, match", [
    (dict(epsilons=[0.0]), "epsilons"), (dict(models=5), "models"), (dict(models=2), "models"),
    (dict(quantiles=[1.0]), "quantiles"), (dict(head="cnn"), "head"),
    (dict(sample_rate=1.5), "sample_rate"), (dict(delta=0.0), "delta"),
])
def test_dp_curvature_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        dp_curvature(**{"plot": False, **kw})


def test_dp_curvature_command(tmp_path, capsys):
    assert main(["dp-curvature", "--out", str(tmp_path), "--epsilon", "2", "--models", "4",
                 "--n-examples", "80", "--steps", "20", "--no-plot", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "eps 2: bound 0.865" in out and "no DP" in out
    assert (tmp_path / "dp_curvature.json").exists()
    assert main(["dp-curvature", "--out", str(tmp_path), "--models", "3", "--quiet"]) == 1


def test_the_command_prints_each_row_once(tmp_path, capsys):
    """Progress lines say where the run is; the rows themselves are printed once, in the
    summary."""
    from miakit.cli import main

    assert main(["dp-curvature", "--out", str(tmp_path), "--epsilon", "4", "--models", "4",
                 "--n-examples", "40", "--steps", "5", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert out.count("eps 4:") == 1 and "1 of 2: eps 4, 4 heads trained" in out
