"""A run holds one copy of its logits: training, the budget study and the audit read the
per-model files and never write a stacked copy (``cache/logits-*.npy``) into the run, and a
command refused for its options leaves the run directory exactly as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import miakit as mk
from miakit.cli import main
from miakit.studies import _budget_draws, budget

SMALL_SHADOW = ["--dataset", "synthetic", "--n-examples", "60", "--models", "8", "--head",
                "linear", "--threads", "1", "--quiet"]


def _listing(run_dir: Path) -> dict[str, tuple]:
    """Every entry under the run directory: name, size, mtime and (files) the SHA-256."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[p.relative_to(run_dir).as_posix()] = (p.is_dir(), st.st_size, st.st_mtime_ns,
                                                 digest)
    return out


def _no_copy(run_dir: Path) -> None:
    assert not (run_dir / "cache").exists()
    assert not list(run_dir.rglob("logits-*.npy"))


def _logits_run(path: Path, rng: np.random.Generator, m: int = 12, n: int = 150,
                dtype: str = "float32") -> tuple:
    """A run of imported-like logits with leakage and planted-like exposed examples."""
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    y = rng.integers(0, 3, n)
    z = rng.normal(size=(m, n, 2, 3)).astype(np.float32)
    z[np.arange(m)[:, None], np.arange(n), :, y] += (1.0 * keep)[..., None]
    z[np.arange(m)[:, None], np.arange(10), :, y[:10]] += (4.0 * keep[:, :10] - 2.0)[..., None]
    run = mk.shadow.create_run(path, keep, y, n_augmentations=2, n_classes=3,
                               logits_dtype=dtype)
    for k in range(m):
        run.write_model(k, z[k])
    return mk.shadow.open_run(path), z.astype(dtype)


@pytest.fixture(scope="module")
def shadow_run(tmp_path_factory) -> Path:
    """A finished run trained by ``miakit shadow`` (shared: the refusal tests copy it)."""
    out = tmp_path_factory.mktemp("shadow") / "run"
    assert main(["shadow", "--out", str(out), *SMALL_SHADOW]) == 0
    return out


def test_shadow_command_writes_one_copy_and_resuming_writes_nothing(shadow_run):
    _no_copy(shadow_run)
    run = mk.shadow.open_run(shadow_run)
    assert run.is_complete
    model_bytes = sum(run.model_path(m).stat().st_size for m in range(run.n_models))
    logits_bytes = run.n_models * run.n_examples * run.n_augmentations * run.n_classes * 4
    assert logits_bytes <= model_bytes < logits_bytes + run.n_models * 256  # headers only
    before = _listing(shadow_run)
    assert main(["shadow", "--out", str(shadow_run), *SMALL_SHADOW]) == 0  # nothing to do
    assert _listing(shadow_run) == before


def test_train_heads_returns_logits_without_a_copy_in_the_run(tmp_path, rng):
    y = rng.integers(0, 3, 40)
    x = rng.normal(size=(40, 4)) + y[:, None]
    keep = mk.shadow.balanced_keep(4, 40, seed=0)
    kw = dict(heads_per_chunk=2, progress=False)
    in_memory = mk.shadow.train_heads(x, y, keep, **kw)
    z = mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", **kw)
    assert type(z) is np.ndarray and z.tobytes() == in_memory.tobytes()
    _no_copy(tmp_path / "run")
    before = _listing(tmp_path / "run")
    run, info = mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", return_run=True,
                                      return_info=True, **kw)
    assert isinstance(run, mk.shadow.Run) and run.is_complete and "iterations" in info
    assert _listing(tmp_path / "run") == before
    with pytest.raises(ValueError, match="return_run=True: pass run_dir"):
        mk.shadow.train_heads(x, y, keep, return_run=True)


def test_run_logits_in_memory_and_the_stacked_copy_only_on_request(tmp_path, rng):
    run, z = _logits_run(tmp_path / "run", rng, m=4, n=20)
    got = run.logits()
    assert type(got) is np.ndarray and got.flags.writeable and got.tobytes() == z.tobytes()
    np.testing.assert_array_equal(run.logits(models=[3, 1]), z[[3, 1]])
    _no_copy(run.path)
    cached = run.logits(cache=True)
    assert isinstance(cached, np.memmap) and not cached.flags.writeable
    assert Path(cached.filename).parent == run.path / "cache"
    assert np.asarray(cached).tobytes() == z.tobytes()


def test_in_memory_logits_are_checked_against_the_manifest(tmp_path, rng):
    run, _ = _logits_run(tmp_path / "run", rng, m=4, n=20)
    path = run.model_path(2)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # same size and header, altered contents
    path.write_bytes(bytes(data))
    with pytest.raises(mk.shadow.CorruptModelError, match="model-00002.npy") as info:
        run.logits()
    assert info.value.models == [2]
    _no_copy(run.path)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_budget_on_the_run_equals_budget_on_its_logits(tmp_path, rng, monkeypatch, dtype):
    run, z = _logits_run(tmp_path / "run", rng, dtype=dtype)
    opts = dict(budgets=[2, 4], draws=2, targets=2, quantiles=[0.9], plot=False, aware=True,
                pilot=4, candidates=10)
    want = budget.run(z, run.keep, run.labels, planted=np.arange(10), **opts).to_dict()
    before = _listing(run.path)
    got = budget.run(run, run.keep, run.labels, planted=np.arange(10), **opts).to_dict()
    assert got == want
    monkeypatch.setattr(_budget_draws, "_BLOCK_BYTES", 1)  # one model per block
    assert budget.run(run, run.keep, run.labels, planted=np.arange(10),
                      **opts).to_dict() == want
    assert budget.memorization_aware(run, run.keep, run.labels, pilot=4, budgets=[2, 4],
                                     candidates=10, draws=1, targets=2) == \
        budget.memorization_aware(z, run.keep, run.labels, pilot=4, budgets=[2, 4],
                                  candidates=10, draws=1, targets=2)
    assert _listing(run.path) == before
    _no_copy(run.path)


def test_budget_checks_every_option_before_reading_the_run(tmp_path, rng):
    run, _ = _logits_run(tmp_path / "run", rng, m=8, n=40)

    def no_reading(m, verify=True):
        raise AssertionError("a model file was read")

    run.model_logits = no_reading  # type: ignore[method-assign]
    for kw, match in ((dict(budgets=[8]), "budgets: the run has 8 models"),
                      (dict(budgets=[2], aware=True, pilot=6), "pilot: the run has 8"),
                      (dict(budgets=[2], planted=[0, 99]), "planted"),
                      (dict(budgets=[2], draws=0), "draws")):
        with pytest.raises(ValueError, match=match):
            budget.run(run, run.keep, run.labels, plot=False, **kw)
    with pytest.raises(ValueError, match=r"keep: expected the run's shape \[8, 40\]"):
        budget.run(run, run.keep[:, :20], run.labels[:20], budgets=[2], plot=False)
    part = mk.shadow.create_run(tmp_path / "part", run.keep, run.labels, n_augmentations=2,
                                n_classes=3)
    with pytest.raises(mk.shadow.IncompleteRunError, match="8 requested models"):
        budget.run(part, part.keep, part.labels, budgets=[2], plot=False)


def test_budget_command_reads_the_model_files(tmp_path, rng, capsys):
    run, z = _logits_run(tmp_path / "run", rng)
    before = _listing(run.path)
    args = ["--budgets", "2", "4", "--draws", "2", "--targets", "2", "--no-plot"]
    assert main(["budget", "--run", str(run.path), "--out", str(tmp_path / "o"), *args]) == 0
    assert _listing(run.path) == before
    from_file = budget.BudgetResult.from_json(tmp_path / "o" / "budget.json").to_dict()
    want = budget.run(z, run.keep, run.labels, budgets=[2, 4], draws=2, targets=2)
    assert {k: v for k, v in from_file.items() if k != "files"} == want.to_dict()
    assert "miakit budget" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [
    ["--budgets", "0"], ["--budgets", "3"], ["--budgets", "64"], ["--draws", "0"],
    ["--targets", "0"], ["--fpr", "2"], ["--quantiles", "1.5"], ["--rank-by", "loss"],
    ["--aware", "--pilot", "3"], ["--aware", "--pilot", "6"], ["--aware", "--candidates", "0"],
    ["--target-tpr", "1"], ["--models", "1"]])
def test_a_refused_budget_command_leaves_the_run_unchanged(tmp_path, rng, bad):
    run, _ = _logits_run(tmp_path / "run", rng)
    before = _listing(run.path)
    try:
        rc = main(["budget", "--run", str(run.path), "--out", str(tmp_path / "o"), *bad])
    except SystemExit as exc:  # argparse: an unknown flag or a value of the wrong type
        rc = exc.code
    assert rc not in (0, None)
    assert _listing(run.path) == before
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("bad", [
    ["--models", "1"], ["--models", "5"], ["--models", "10"], ["--n-examples", "0"],
    ["--seed", "1"], ["--lr", "-1"], ["--head", "cnn"], ["--device", "tpu"],
    ["--planted", "1.0"], ["--data", "nowhere.npz"], ["--logits-dtype", "float16"]])
def test_a_refused_shadow_command_leaves_the_run_unchanged(shadow_run, bad):
    before = _listing(shadow_run)
    flags = list(SMALL_SHADOW)
    for flag in bad[::2]:  # the bad value replaces the run's own
        if flag in flags:
            i = flags.index(flag)
            del flags[i:i + 2]
    try:
        rc = main(["shadow", "--out", str(shadow_run), *flags, *bad])
    except SystemExit as exc:
        rc = exc.code
    assert rc not in (0, None)
    assert _listing(shadow_run) == before


@pytest.mark.parametrize("bad", [
    ["--fpr", "2"], ["--variance", "wide"], ["--attacks", "guess"], ["--level", "95"],
    ["--alpha", "0"], ["--dp-epsilon", "-1"], ["--target-logits", "t.npy"],
    ["--references", "some"]])
def test_a_refused_audit_leaves_the_run_unchanged(shadow_run, tmp_path, bad):
    before = _listing(shadow_run)
    try:
        rc = main(["audit", "--run", str(shadow_run), "--out", str(tmp_path / "o"),
                   "--no-plot", *bad])
    except SystemExit as exc:
        rc = exc.code
    assert rc not in (0, None)
    assert _listing(shadow_run) == before


def test_the_audit_writes_nothing_into_the_run(shadow_run, tmp_path):
    before = _listing(shadow_run)
    assert main(["audit", "--run", str(shadow_run), "--out", str(tmp_path / "o"),
                 "--no-plot"]) == 0
    assert _listing(shadow_run) == before
    report = mk.audit.load_report(tmp_path / "o" / "report.json")
    run = mk.shadow.open_run(shadow_run)
    scores = mk.audit.run_attacks(run.logits(), run.keep, run.labels, variance="global",
                                  attacks=["lira_online"])["lira_online"]["scores"]
    ranked = mk.metrics.RankedScores(scores, run.keep)
    assert report["attacks"]["lira_online"]["auc"] == pytest.approx(ranked.auc(), abs=1e-12)
