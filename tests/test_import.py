"""Importing shadow models trained elsewhere: arrays, folders, the LiRA reference layout;
checks before writing; resume; the audit of an imported run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import miakit as mk
from miakit.cli import main
from miakit.shadow import RunMismatchError


def _logits(m=6, n=40, a=2, c=4, seed=0):
    rng = np.random.default_rng(seed)
    keep = rng.random((m, n)) < 0.5
    keep[0], keep[1] = True, False  # every column has both sides
    y = rng.integers(0, c, n)
    z = rng.normal(size=(m, n, a, c)).astype(np.float32)
    z[np.arange(m)[:, None], np.arange(n), :, y] += 2.0 * keep[..., None]
    return z, keep, y


def test_import_arrays_and_files_then_audit(tmp_path):
    z, keep, y = _logits(m=7)  # an odd number of models is fine for an import
    run = mk.shadow.import_logits(tmp_path / "run", z, keep, y, metadata={"dataset": "toy"})
    np.testing.assert_array_equal(run.logits(), z)
    np.testing.assert_array_equal(run.keep, keep)
    assert run.meta["metadata"]["imported_from"]["layout"] == "arrays"
    for name, arr in (("z.npy", z), ("k.npy", keep), ("y.npy", y)):
        np.save(tmp_path / name, arr)
    again = mk.shadow.import_logits(tmp_path / "run", tmp_path / "z.npy", tmp_path / "k.npy",
                                    tmp_path / "y.npy")  # same data, other source: resumes
    assert again.is_complete
    report = mk.audit.audit(again, plot=False, attacks=["lira_online", "rmia_online", "loss"])
    assert report["attacks"]["lira_online"]["auc"] > 0.6
    assert report["run"]["metadata"]["dataset"] == "toy"
    with pytest.raises(RunMismatchError):
        mk.shadow.import_logits(tmp_path / "run", z + 1.0, keep, y)
    np.testing.assert_array_equal(mk.shadow.open_run(tmp_path / "run").logits(), z)


def test_import_three_dimensional_logits(tmp_path):
    z, keep, y = _logits(a=1)
    run = mk.shadow.import_logits(tmp_path / "run", z[:, :, 0], keep, y)
    assert run.model_shape == (40, 1, 4)


def test_bad_imports_write_nothing(tmp_path):
    z, keep, y = _logits()
    bad_z = z.copy()
    bad_z[3, 5, 0, 1] = np.nan
    cases = [
        (dict(logits=bad_z), ValueError, "model 3"),
        (dict(keep=keep[:, :10]), ValueError, "keep"),
        (dict(keep=keep * 2), ValueError, "keep"),
        (dict(labels=y + 10), ValueError, "labels"),
        (dict(labels=y.astype(float)), TypeError, "labels"),
        (dict(labels=y[:5]), ValueError, "labels"),
        (dict(logits=z.astype(np.int32)), TypeError, "logits"),
        (dict(logits=z[0]), ValueError, "keep"),
    ]
    for i, (kw, exc, match) in enumerate(cases):
        args = {"logits": z, "keep": keep, "labels": y, **kw}
        with pytest.raises(exc, match=match):
            mk.shadow.import_logits(tmp_path / f"r{i}", **args)
        assert not (tmp_path / f"r{i}").exists()
    with pytest.raises(FileNotFoundError, match="logits"):
        mk.shadow.import_logits(tmp_path / "r", tmp_path / "nope.npy", keep, y)


def test_import_folder(tmp_path):
    z, keep, y = _logits(m=4)
    d = tmp_path / "models"
    d.mkdir()
    for m in range(4):  # names sort naturally: m-2 before m-10
        name = f"m-{[2, 10, 11, 30][m]}"
        np.save(d / f"{name}.npy", z[m])
        np.save(d / f"{name}.keep.npy", keep[m])
    run = mk.shadow.import_folder(tmp_path / "run", d, y)
    np.testing.assert_array_equal(run.logits(), z)
    assert run.meta["metadata"]["imported_from"]["files"][:2] == ["m-2.npy", "m-10.npy"]
    (d / "m-30.keep.npy").unlink()
    with pytest.raises(ValueError, match="keep row"):
        mk.shadow.import_folder(tmp_path / "r2", d, y)


def _lira_logdir(root, z, keep, y, extra_rows=3):
    np.save(root / "y_train.npy", np.r_[y, np.zeros(extra_rows, int)])
    for m in range(len(z)):
        e = root / f"experiment-{m}_{len(z)}"
        (e / "logits").mkdir(parents=True)
        np.save(e / "keep.npy", np.r_[keep[m], np.ones(extra_rows, bool)])
        np.save(e / "logits" / "0000000010.npy", np.zeros((len(y), 1) + z.shape[2:], np.float32))
        np.save(e / "logits" / "0000000100.npy", z[m][:, None])  # the last checkpoint
        (e / "scores").mkdir()


def test_import_lira_reference_layout(tmp_path):
    z, keep, y = _logits(m=4)
    _lira_logdir(tmp_path, z, keep, y)
    run = mk.shadow.import_lira_reference(tmp_path / "run", tmp_path)
    np.testing.assert_array_equal(run.logits(), z)
    np.testing.assert_array_equal(run.keep, keep)
    np.testing.assert_array_equal(run.labels, y)
    src = run.meta["metadata"]["imported_from"]
    assert src["layout"] == "lira-reference" and set(src["checkpoints"]) == {"0000000100.npy"}
    (tmp_path / "experiment-3_4" / "keep.npy").unlink()
    with pytest.raises(ValueError, match="experiment-3_4"):
        mk.shadow.import_lira_reference(tmp_path / "r2", tmp_path)
    with pytest.raises(FileNotFoundError, match="y_train"):
        mk.shadow.import_lira_reference(tmp_path / "r3", tmp_path / "run")


def test_import_command(tmp_path, capsys):
    z, keep, y = _logits(m=4)
    _lira_logdir(tmp_path, z, keep, y)
    assert main(["import", "--lira-reference", str(tmp_path), "--out",
                 str(tmp_path / "run"), "--name", "cifar-like"]) == 0
    assert "miakit audit --run" in capsys.readouterr().out
    assert main(["audit", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "rep"),
                 "--no-plot", "--attacks", "lira_online", "loss", "--quiet"]) == 0
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["run"]["metadata"]["dataset"] == "cifar-like"
    assert rep["run"]["config"]["trainer"] == "import"
    for name, arr in (("z.npy", z), ("k.npy", keep), ("y.npy", y)):
        np.save(tmp_path / name, arr)
    assert main(["import", "--logits", str(tmp_path / "z.npy"), "--keep", str(tmp_path / "k.npy"),
                 "--labels", str(tmp_path / "y.npy"), "--out", str(tmp_path / "run2")]) == 0
    capsys.readouterr()
    assert main(["import", "--logits", str(tmp_path / "z.npy"), "--out",
                 str(tmp_path / "run3")]) == 1
    assert "--keep" in capsys.readouterr().err
    assert main(["import", "--out", str(tmp_path / "run3")]) == 1


# ------------------------------------------------------------- runs of one signal each
def _signal_data(m=12, n=200, a=2, c=4, seed=0):
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    y = rng.integers(0, c, n)
    z = rng.normal(size=(m, n, a, c)).astype(np.float32)
    for k in range(m):
        z[k, np.arange(n), :, y] += (1.0 + 2.0 * keep[k])[:, None]
    return z, keep, y


def test_signal_runs_are_audited_with_what_they_allow(tmp_path):
    z, keep, y = _signal_data()
    loss = np.asarray(mk.signals.loss(z, y[:, None]))  # float32, as a pipeline would keep
    logits_run = mk.shadow.import_logits(tmp_path / "logits", z, keep, y)
    ref = mk.audit.audit(logits_run, plot=False)["attacks"]
    for kind, x in (("loss", loss), ("confidence", np.exp(-loss.astype(np.float64))),
                    ("score", -loss)):
        run = mk.shadow.import_signals(tmp_path / kind, x, keep, kind=kind)
        assert run.signal == kind and run.model_shape == (200, 2, 1)
        rep = mk.audit.audit(run, tmp_path / f"out_{kind}")
        want = (["lira_online", "lira_offline"] if kind == "score" else
                ["lira_online", "lira_offline", "rmia_online", "rmia_offline",
                 "calibrated_loss", "loss", "confidence"])
        assert list(rep["attacks"]) == want
        if kind != "score":
            # LiRA on log p - log(1 - p) is LiRA on the scaled confidence: the same attack
            for name in want:
                assert rep["attacks"][name]["auc"] == pytest.approx(ref[name]["auc"],
                                                                    abs=2e-3), name
            assert rep["models"]["train_accuracy"] is None
            assert rep["models"]["train_loss"] < rep["models"]["test_loss"]
            assert "bayes" not in rep["baselines"]
            assert rep["baselines"]["max_accuracy_threshold"]["accuracy"] > 0.5
            assert rep["vulnerability"]["meta"]["grad_norm_kind"].startswith("not computed")
        else:
            assert rep["baselines"] == {} and rep["models"]["train_loss"] is None
    loss_rep = mk.audit.audit(mk.shadow.open_run(tmp_path / "loss"), plot=False)["attacks"]
    assert loss_rep["loss"]["auc"] == ref["loss"]["auc"]  # the same float32 losses
    with pytest.raises(ValueError, match=r"attacks: \['hinge'\] need the logits"):
        mk.audit.audit(mk.shadow.open_run(tmp_path / "loss"), attacks=["hinge"], plot=False)


@pytest.mark.parametrize("x,kind,match", [
    (-np.ones((4, 6)), "loss", "losses >= 0"),
    (2 * np.ones((4, 6)), "confidence", r"probabilities in \[0, 1\]"),
    (np.full((4, 6), np.nan), "score", "expected finite values"),
    (np.ones((4, 5)), "score", r"keep: expected shape \(4, 5\)"),
    (np.ones(6), "score", "expected \\[M, N, A\\] or \\[M, N\\]"),
    (np.ones((4, 6)), "logits", "kind"),
])
def test_import_signals_bad_input(tmp_path, x, kind, match):
    with pytest.raises(ValueError, match=match):
        mk.shadow.import_signals(tmp_path / "run", x, mk.shadow.balanced_keep(4, 6), kind=kind)
    assert not (tmp_path / "run").exists()


def test_cli_imports_signals(tmp_path):
    z, keep, y = _signal_data(m=8, n=60)
    np.save(tmp_path / "s.npy", np.asarray(mk.signals.loss(z, y[:, None])))
    np.save(tmp_path / "k.npy", keep)
    from miakit.cli import main

    assert main(["import", "--signals", str(tmp_path / "s.npy"), "--kind", "loss",
                 "--keep", str(tmp_path / "k.npy"), "--out", str(tmp_path / "run")]) == 0
    assert mk.shadow.open_run(tmp_path / "run").signal == "loss"
    assert main(["import", "--signals", str(tmp_path / "s.npy"),
                 "--out", str(tmp_path / "run2")]) == 1  # no --kind: a clear error
