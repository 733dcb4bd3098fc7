"""The audit pipeline: attacks, report.json contents, ROC plot and summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

import miakit as mk
from miakit.audit import audit, run_attacks, summarize


def _leaky_run(path, m=16, n=120, a=2, seed=0):
    """A run whose logits carry a known membership signal (members get a boost)."""
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    labels = rng.integers(0, 4, n)
    run = mk.shadow.create_run(path, keep, labels, n_augmentations=a, n_classes=4,
                               config={"head": "linear"}, metadata={"dataset": "toy"})
    difficulty = rng.normal(0, 1.5, n)
    for k in range(m):
        z = rng.normal(size=(n, a, 4)).astype(np.float32)
        z[np.arange(n), :, labels] += (difficulty + 2.0 * keep[k])[:, None]
        run.write_model(k, z)
    return mk.shadow.open_run(path)


def test_report_contents(tmp_path):
    run = _leaky_run(tmp_path / "run")
    report = audit(run, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["attacks"].keys() == report["attacks"].keys() == {
        "lira_online", "lira_offline", "loss"}
    assert (tmp_path / "out" / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert on_disk["run"]["n_models"] == 16 and on_disk["run"]["metadata"]["dataset"] == "toy"
    assert 0.5 < on_disk["models"]["train_accuracy"] <= 1.0
    for name, a in on_disk["attacks"].items():
        assert a["n_members"] == a["n_nonmembers"] == 16 * 60
        assert a["excluded"] == 0
        assert 0.5 < a["auc"] <= 1.0, name  # the planted signal is found
        assert [p["target_fpr"] for p in a["tpr_at_fpr"]] == [0.1, 0.01, 0.001]
        for p in a["tpr_at_fpr"]:
            assert p["fpr"] <= p["target_fpr"]
            assert p["fp"] == round(p["fpr"] * p["n_nonmembers"])
            assert p["tp"] == round(p["tpr"] * p["n_members"])
            assert p["tpr_ci"][0] <= p["tpr"] <= p["tpr_ci"][1]
            assert p["resolvable"] == (p["target_fpr"] * p["n_nonmembers"] >= 1)
        roc = a["roc"]
        assert np.all(np.diff(roc["tpr"]) >= 0) and roc["fpr"][0] == pytest.approx(1 / 960)
    assert report["attacks"]["lira_online"]["settings"]["variance"] == "global"  # M < 64
    assert report["attacks"]["lira_online"]["auc"] > report["attacks"]["loss"]["auc"]


def test_attack_scores_match_the_library_calls():
    rng = np.random.default_rng(1)
    keep = mk.shadow.balanced_keep(8, 50, seed=0)
    labels = rng.integers(0, 3, 50)
    z = rng.normal(size=(8, 50, 2, 3)).astype(np.float32)
    got = run_attacks(z, keep, labels, variance="per_example")
    want = mk.lira.leave_one_out(z, keep, labels=labels, mode="online")
    np.testing.assert_array_equal(got["lira_online"]["scores"], want)
    want_off = mk.lira.leave_one_out(z, keep, labels=labels, mode="offline")
    np.testing.assert_array_equal(got["lira_offline"]["scores"], want_off)
    loss = mk.signals.loss(z, labels[:, None]).astype(np.float64).mean(-1)
    np.testing.assert_allclose(got["loss"]["scores"], -loss)
    auc = mk.metrics.auc(got["lira_online"]["scores"], keep)
    assert 0.3 < auc < 0.7  # pure noise: no signal


def test_summary_is_readable(tmp_path):
    run = _leaky_run(tmp_path / "run", m=8, n=60, a=1)
    text = summarize(audit(run, tmp_path / "out", plot=False))
    for needle in ("LiRA online", "LiRA offline", "Loss threshold", "TPR @ FPR 0.1%",
                   "Clopper-Pearson", "report.json", "8 shadow models"):
        assert needle in text, needle
    assert not (tmp_path / "out" / "roc.png").exists()


def test_too_few_models(tmp_path):
    keep = mk.shadow.balanced_keep(2, 5, seed=0)
    run = mk.shadow.create_run(tmp_path / "r", keep, np.zeros(5, int), n_augmentations=1,
                               n_classes=2)
    for k in range(2):
        run.write_model(k, np.zeros((5, 1, 2), np.float32))
    with pytest.raises(ValueError, match="at least 4 shadow models"):
        audit(run)


def test_incomplete_run_is_refused(tmp_path):
    run = _leaky_run(tmp_path / "run", m=4, n=20, a=1)
    run.model_path(1).unlink()
    with pytest.warns(mk.shadow.CorruptModelWarning):
        reopened = mk.shadow.open_run(tmp_path / "run")
    with pytest.raises(mk.shadow.IncompleteRunError, match=r"\[1\]"):
        audit(reopened)


def test_vulnerability_table_in_report(tmp_path):
    run = _leaky_run(tmp_path / "run")
    report = audit(run, tmp_path / "out")
    out = tmp_path / "out"
    vul = json.loads((out / "report.json").read_text())["vulnerability"]
    assert {"lira_score", "tpr_at_fpr", "memorization", "grad_norm", "hellinger",
            "shadow_models_needed"} <= set(vul["columns"])
    assert "grad_norm_definition" in vul["meta"]
    for name in ("vulnerability_vs_memorization.png", "vulnerability_vs_grad_norm.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The per-example columns against independent float64 loops over the run.
    table = np.genfromtxt(out / "vulnerability.csv", delimiter=",", names=True)
    z = np.asarray(run.logits(), dtype=np.float64)[:, :, 0, :]
    keep, labels = run.keep, run.labels
    correct = z.argmax(axis=-1) == labels
    mem = np.array([correct[keep[:, n], n].mean() - correct[~keep[:, n], n].mean()
                    for n in range(keep.shape[1])])
    np.testing.assert_allclose(table["memorization"], mem, rtol=0, atol=1e-12)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[:, np.arange(z.shape[1]), labels] -= 1.0
    g = np.linalg.norm(p, axis=-1)
    grad = np.array([g[keep[:, n], n].mean() for n in range(keep.shape[1])])
    np.testing.assert_allclose(table["grad_norm"], grad, rtol=1e-9)  # the CSV keeps 10 digits
    # Members of the planted signal are found: LiRA's per-example score rises with both.
    assert vul["spearman"]["lira_score"]["memorization"] > 0
    assert "per-example risk" in summarize(report)
