"""The audit pipeline: attacks, report.json contents, ROC plot and summary."""

from __future__ import annotations

import html
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
    no_heads = [a for a in mk.audit.ATTACKS if a != "lira_curvature"]  # logits-only run
    assert set(on_disk["attacks"]) == set(report["attacks"]) == set(no_heads)
    assert list(report["attacks"]) == no_heads
    assert (tmp_path / "out" / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert on_disk["run"]["n_models"] == 16 and on_disk["run"]["metadata"]["dataset"] == "toy"
    assert 0.5 < on_disk["models"]["train_accuracy"] <= 1.0
    for name, a in on_disk["attacks"].items():
        assert a["n_members"] == a["n_nonmembers"] == 16 * 60
        assert a["excluded"] == 0
        if name != "max_confidence":  # the only attack blind to the true class
            assert 0.5 < a["auc"] <= 1.0, name  # the planted signal is found
        assert [p["target_fpr"] for p in a["tpr_at_fpr"]] == [0.1, 0.01, 0.001]
        for p in a["tpr_at_fpr"]:
            assert p["fpr"] <= p["target_fpr"]
            assert p["fp"] == round(p["fpr"] * p["n_nonmembers"])
            assert p["tp"] == round(p["tpr"] * p["n_members"])
            assert p["tpr_ci"][0] <= p["tpr"] <= p["tpr_ci"][1]
            # resolvable unless not one false positive fits the budget, or the score's
            # top tie group alone is above it (then nothing is called)
            assert p["resolvable"] == (p["target_fpr"] * p["n_nonmembers"] >= 1
                                       and not (p["tp"] == p["fp"] == 0))
        roc = a["roc"]
        assert np.all(np.diff(roc["tpr"]) >= 0) and roc["fpr"][0] == pytest.approx(1 / 960)
    assert report["attacks"]["lira_online"]["settings"]["variance"] == "global"  # M < 64
    assert report["attacks"]["lira_online"]["auc"] > report["attacks"]["loss"]["auc"]
    assert report["strongest_attack"]["attack"] in report["attacks"]
    for b in ("bayes", "max_accuracy_threshold"):
        assert 0.5 <= report["baselines"][b]["accuracy"] <= 1.0


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
    for needle in ("LiRA online", "LiRA offline", "RMIA online", "RMIA offline",
                   "Calibrated loss", "Loss threshold", "Hinge threshold", "TPR @ FPR 0.1%",
                   "Korn-Graubard", "report.json", "8 shadow models", "strongest attack",
                   "baselines (balanced accuracy)"):
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


# -- runs that store their heads: exact gradient norms and curvature -----------------------
def _features(n=48, d=5, a=2, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = rng.normal(size=(c, d))[y][:, None, :] * 1.5 + rng.normal(size=(n, a, d))
    return x.astype(np.float32), y


def _in_out(values, keep):
    """Means over IN and over OUT models, an explicit loop over examples."""
    n = keep.shape[1]
    return (np.array([values[keep[:, i], i].mean() for i in range(n)]),
            np.array([values[~keep[:, i], i].mean() for i in range(n)]))


def test_linear_head_run_gives_exact_gradient_norms_and_curvature(tmp_path):
    x, y = _features()
    keep = mk.shadow.balanced_keep(6, len(y), seed=1)
    mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", progress=False,
                          heads_per_chunk=4)
    run = mk.shadow.open_run(tmp_path / "run")
    assert run.has_params and run.params_models.tolist() == list(range(6))
    np.testing.assert_array_equal(run.features(), x)
    report = audit(run, tmp_path / "out")
    vul = report["vulnerability"]
    assert vul["meta"]["grad_norm_kind"] == "parameter gradient"
    assert vul["meta"]["curvature_kind"] == "input Hessian trace"
    assert vul["meta"]["grad_norm_definition"] == mk.audit.GRAD_NORM_DEFINITION["linear"]
    assert {"grad_norm", "curvature", "grad_norm_out", "curvature_out"} <= set(vul["columns"])
    assert vul["spearman"]["tpr_at_fpr"]["curvature"] is not None
    assert (tmp_path / "out" / "vulnerability_vs_curvature.png").exists()
    # float64 loops over the stored parameters, on the first query view.
    x0 = x[:, 0].astype(np.float64)
    grad = np.empty(keep.shape)
    curv = np.empty(keep.shape)
    for m in range(6):
        p = run.model_params(m)
        w, b = p["weight"].astype(np.float64), p["bias"].astype(np.float64)
        for i in range(len(y)):
            z = w @ x0[i] + b
            q = np.exp(z - z.max())
            q /= q.sum()
            g = q.copy()
            g[y[i]] -= 1.0
            grad[m, i] = np.linalg.norm(g) * np.sqrt(x0[i] @ x0[i] + 1.0)
            curv[m, i] = sum(q[k] * w[k] @ w[k] for k in range(3)) - np.sum((q @ w) ** 2)
        # The stored parameters are those of the stored logits (caller's coordinates).
        np.testing.assert_allclose(x @ w.T + b, run.model_logits(m), rtol=0, atol=2e-5)
    table = np.genfromtxt(tmp_path / "out" / "vulnerability.csv", delimiter=",", names=True)
    g_in, g_out = _in_out(grad, keep)
    c_in, c_out = _in_out(curv, keep)
    np.testing.assert_allclose(table["grad_norm"], g_in, rtol=1e-9)
    np.testing.assert_allclose(table["grad_norm_out"], g_out, rtol=1e-9)
    np.testing.assert_allclose(table["curvature"], c_in, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(table["curvature_out"], c_out, rtol=1e-9, atol=1e-12)
    text = summarize(report)
    assert "curvature" in text and "parameter gradient" in text and "linear head" in text


def test_mlp_head_run_against_autograd(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.func import functional_call, grad, hessian, vmap

    x, y = _features(n=24, d=4, a=1)
    keep = mk.shadow.balanced_keep(4, 24, seed=0)
    mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", head="mlp", hidden=6,
                          epochs=40, lr=0.05, progress=False)
    run = mk.shadow.open_run(tmp_path / "run")
    z = run.logits()
    scores = mk.audit.run_attacks(z, keep, y)["lira_online"]["scores"]
    table = mk.audit.vulnerability(z, keep, y, scores, features=run.features(),
                                   params=run.model_params)
    assert table.meta["head"] == "mlp"
    xt, yt = torch.from_numpy(x[:, 0]).double(), torch.from_numpy(y)
    grad_ref = np.empty(keep.shape)
    curv_ref = np.empty(keep.shape)
    for m in range(4):
        p = run.model_params(m)
        model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(),
                                    torch.nn.Linear(6, 3)).double()
        names = {"0.weight": "weight1", "0.bias": "bias1", "2.weight": "weight2",
                 "2.bias": "bias2"}
        params = {k: torch.from_numpy(np.array(p[v], dtype=np.float64))
                  for k, v in names.items()}
        np.testing.assert_allclose(functional_call(model, params, (xt,)).numpy(),
                                   z[m, :, 0], atol=1e-4)  # the stored head's logits

        def loss_p(q, xi, yi, model=model):
            return torch.nn.functional.cross_entropy(functional_call(model, q, (xi[None],)),
                                                     yi[None])

        g = vmap(grad(loss_p), in_dims=(None, 0, 0))(params, xt, yt)
        grad_ref[m] = sum(v.reshape(24, -1).pow(2).sum(1) for v in g.values()).sqrt().numpy()

        def loss_x(xi, yi, model=model, params=params):
            return torch.nn.functional.cross_entropy(
                functional_call(model, params, (xi[None],)), yi[None])

        curv_ref[m] = [torch.trace(hessian(loss_x)(xt[i], yt[i])).item() for i in range(24)]
    g_in, g_out = _in_out(grad_ref, keep)
    c_in, c_out = _in_out(curv_ref, keep)
    # (autograd forms 1 - p_y by cancellation: ~1e-16 absolute on tiny norms)
    np.testing.assert_allclose(table.columns["grad_norm"], g_in, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(table.columns["grad_norm_out"], g_out, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(table.columns["curvature"], c_in, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(table.columns["curvature_out"], c_out, rtol=1e-9, atol=1e-12)


def _strip_params(path):
    """Turn a run into the logits-only format written before parameters were stored."""
    import shutil

    manifest = json.loads((path / "manifest.json").read_text())
    for entry in manifest["models"].values():
        entry.pop("params")
    (path / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(path / "params")
    (path / "features.npy").unlink()


def test_run_without_params_falls_back_to_the_proxy(tmp_path):
    x, y = _features()
    keep = mk.shadow.balanced_keep(6, len(y), seed=1)
    mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", progress=False)
    _strip_params(tmp_path / "run")
    run = mk.shadow.open_run(tmp_path / "run")
    assert not run.has_params and not run.has_features and run.is_complete
    vul = audit(run, tmp_path / "out", plot=False)["vulnerability"]
    assert vul["meta"]["grad_norm_kind"] == "logit-gradient proxy (run has no parameters)"
    assert vul["meta"]["grad_norm_definition"] == mk.audit.GRAD_NORM_DEFINITION["proxy"]
    assert "curvature" not in vul["columns"] and "grad_norm_out" in vul["columns"]
    z = np.asarray(run.logits(), dtype=np.float64)[:, :, 0, :]
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[:, np.arange(len(y)), y] -= 1.0
    table = np.genfromtxt(tmp_path / "out" / "vulnerability.csv", delimiter=",", names=True)
    g_in, _ = _in_out(np.linalg.norm(p, axis=-1), keep)
    np.testing.assert_allclose(table["grad_norm"], g_in, rtol=1e-9)


def test_old_run_resumed_keeps_its_heads_and_reports_why(tmp_path):
    """A logits-only run with unfinished models: the new code finishes it (writing
    features and the new heads' parameters), the finished heads stay as they were, and
    the audit says why it uses the proxy."""
    x, y = _features()
    keep = mk.shadow.balanced_keep(6, len(y), seed=1)
    kw = {"heads_per_chunk": 2, "progress": False}
    mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", **kw)
    _strip_params(tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    for m in ("4", "5"):
        del manifest["models"][m]
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    old = (tmp_path / "run" / "models" / "model-00000.npy").read_bytes()
    mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", **kw)
    run = mk.shadow.open_run(tmp_path / "run")
    assert run.is_complete and run.has_features and run.params_models.tolist() == [4, 5]
    assert (tmp_path / "run" / "models" / "model-00000.npy").read_bytes() == old
    vul = audit(run, plot=False)["vulnerability"]
    assert vul["meta"]["grad_norm_kind"] == ("logit-gradient proxy (only 2 of its 6 models "
                                             "have stored parameters)")


def test_corrupt_params_and_features_are_retrained_identically(tmp_path):
    x, y = _features()
    keep = mk.shadow.balanced_keep(6, len(y), seed=1)
    kw = {"head": "mlp", "hidden": 8, "epochs": 20, "heads_per_chunk": 2, "progress": False}
    mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "ref", **kw)
    mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", **kw)
    ref = mk.shadow.open_run(tmp_path / "ref")
    bad = tmp_path / "run" / "params" / "model-00003.npy"
    data = bytearray(bad.read_bytes())
    data[-7] ^= 0x08
    bad.write_bytes(bytes(data))
    feats = tmp_path / "run" / "features.npy"
    feats.write_bytes(feats.read_bytes()[:-16])
    with pytest.warns(mk.shadow.CorruptModelWarning) as caught:
        run = mk.shadow.open_run(tmp_path / "run")
    text = " ".join(str(w.message) for w in caught)
    assert str(bad) in text and str(feats) in text
    assert run.missing.tolist() == [3] and not run.has_params
    with pytest.warns(mk.shadow.CorruptModelWarning):  # (train_heads reopens the run)
        _, info = mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run",
                                        return_info=True, **kw)
    assert "params" not in info  # with a run they are in the run
    assert info["iterations"].tolist() == [0, 0, 20, 20, 0, 0]  # only model 3's chunk
    healed = mk.shadow.open_run(tmp_path / "run")
    assert healed.has_params
    for m in range(6):
        for k, v in ref.model_params(m).items():
            np.testing.assert_array_equal(healed.model_params(m)[k], v)
    assert feats.read_bytes() == (tmp_path / "ref" / "features.npy").read_bytes()
    assert bad.read_bytes() == (tmp_path / "ref" / "params" / "model-00003.npy").read_bytes()


def test_train_heads_returns_params_without_a_run():
    x, y = _features(n=30)
    keep = mk.shadow.balanced_keep(4, 30, seed=0)
    z1, info1 = mk.shadow.train_heads(x, y, keep, return_info=True)
    z2, info2 = mk.shadow.train_heads(x, y, keep, return_info=True, heads_per_chunk=3)
    w, b = info1["params"]["weight"], info1["params"]["bias"]
    assert w.shape == (4, 3, 5) and b.shape == (4, 3) and w.dtype == np.float32
    np.testing.assert_allclose(np.einsum("nad,mcd->mnac", x, w) + b[:, None, None, :], z1,
                               atol=2e-5)
    w2, b2 = info2["params"]["weight"], info2["params"]["bias"]  # two chunks, assembled
    np.testing.assert_allclose(np.einsum("nad,mcd->mnac", x, w2) + b2[:, None, None, :], z2,
                               atol=2e-5)


def test_report_verdict_and_references(tmp_path):
    run = _leaky_run(tmp_path / "run")
    report = audit(run, plot=False)
    refs = report["evaluation"]["references"]
    assert refs["rule"] == "balanced" and refs["paired_keep"] is True
    assert "pair partner" in refs["partner"]
    for a in report["attacks"].values():
        assert a["settings"].get("references", "balanced") == "balanced"
        assert a["auc_ci"][0] <= a["auc"] <= a["auc_ci"][1] and a["auc_se"] > 0
        assert len(a["leakage_test"]) == 3
        for p in a["leakage_test"]:
            assert p["alpha_each"] == pytest.approx(0.05 / (3 * len(report["attacks"])))
            assert p["leak"] == (p["p_value"] <= p["alpha_each"])
            assert p["test"] == "paired sign test"  # balanced_keep's complementary pairs
    v = report["verdict"]
    assert v["leakage"] and v["n_tests"] == 3 * len(report["attacks"]) and v["alpha"] == 0.05
    s = v["strongest"]
    assert s["attack"] in report["attacks"] and s["p_value"] <= s["alpha_each"]
    assert s["p_value"] == min(e["p_value"] for e in v["evidence"]
                               if e["target_fpr"] == s["target_fpr"])
    assert s["target_fpr"] == min(e["target_fpr"] for e in v["evidence"])
    text = summarize(report)
    assert "membership leakage detected" in text and s["label"] in text
    assert "leave-one-out references: balanced" in text
    biased = audit(run, plot=False, references="all", alpha=0.01)
    assert biased["evaluation"]["references"]["rule"] == "all"
    assert biased["verdict"]["alpha"] == 0.01
    assert "target only; biased" in summarize(biased)
    with pytest.raises(ValueError, match="references"):
        audit(run, plot=False, references="pairs")
    with pytest.raises(ValueError, match="alpha"):
        audit(run, plot=False, alpha=1.5)


def test_summary_of_a_run_without_leakage(tmp_path):
    rng = np.random.default_rng(0)
    m, n = 8, 300
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    labels = rng.integers(0, 4, n)
    run = mk.shadow.create_run(tmp_path / "run", keep, labels, n_augmentations=1,
                               n_classes=4, config={"head": "linear"})
    for k in range(m):
        run.write_model(k, rng.normal(size=(n, 1, 4)).astype(np.float32))
    report = audit(mk.shadow.open_run(tmp_path / "run"), plot=False)
    assert not report["verdict"]["leakage"] and report["verdict"]["strongest"] is None
    text = summarize(report)
    assert "no membership leakage detected" in text
    assert "smallest TPR excess" in text and "points at FPR 10%" in text


def test_audit_attack_selection_and_rmia_scores(tmp_path):
    run = _leaky_run(tmp_path / "run", m=8, n=60)
    report = audit(run, plot=False, attacks=["rmia_offline", "hinge"])
    assert list(report["attacks"]) == ["rmia_offline", "hinge"]
    assert report["verdict"]["n_tests"] == 6
    assert "vulnerability" in report  # LiRA's per-example table is computed anyway
    scores = run_attacks(run.logits(), run.keep, run.labels, attacks=["rmia_online"])
    q = mk.signals.confidence(run.logits(), run.labels[:, None])
    np.testing.assert_array_equal(scores["rmia_online"]["scores"],
                                  mk.rmia.leave_one_out(q, run.keep))
    with pytest.raises(ValueError, match="attacks"):
        audit(run, plot=False, attacks=["lira"])


def test_empirical_epsilon_and_a_dp_claim(tmp_path):
    run = _leaky_run(tmp_path / "run", m=8, n=80)
    report = audit(run, tmp_path / "out", dp_epsilon=0.05, dp_delta=1e-6,
                   attacks=["lira_online", "loss"])
    p = report["privacy"]
    assert p["claimed_epsilon"] == 0.05 and p["delta"] == 1e-6
    for name, a in report["attacks"].items():
        e = a["empirical_epsilon"]
        assert e["delta"] == 1e-6 and e["epsilon"] >= 0 and p["empirical_epsilon"][name] == \
            e["epsilon"]
        want = mk.bounds.empirical_epsilon(
            a_scores := run_attacks(run.logits(), run.keep, run.labels, variance="global",
                                    attacks=[name])[name]["scores"], run.keep, delta=1e-6,
            clusters=np.arange(80)).epsilon
        assert e["epsilon"] == pytest.approx(want, abs=1e-12) and a_scores.shape == (8, 80)
    assert p["max_empirical_epsilon"] > 0.05 and p["consistent"] is False  # a planted leak
    assert "INCONSISTENT" in summarize(report)
    assert (tmp_path / "out" / "roc.png").exists()
    loose = audit(run, plot=False, dp_epsilon=50.0, attacks=["loss"])
    assert loose["privacy"]["consistent"] is True and "consistent with" in summarize(loose)
    with pytest.raises(ValueError, match="dp_epsilon"):
        audit(run, plot=False, dp_epsilon=-1.0)
    with pytest.raises(ValueError, match="dp_delta"):
        audit(run, plot=False, dp_delta=1.0)


def test_curvature_attack_on_a_run_of_heads(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = (rng.normal(size=(120, 6)) + y[:, None]).astype(np.float32)
    keep = mk.shadow.balanced_keep(8, 120, seed=0)
    mk.shadow.train_heads(x, y, keep, head="mlp", hidden=32, epochs=200, lr=1e-2,
                          weight_decay=0.0, run_dir=tmp_path / "run", progress=False)
    run = mk.shadow.open_run(tmp_path / "run")
    report = audit(run, plot=False)
    assert list(report["attacks"]) == list(mk.audit.ATTACKS)
    a = report["attacks"]["lira_curvature"]
    assert a["label"] == "LiRA on input curvature" and 0.0 <= a["auc"] <= 1.0
    only = audit(run, plot=False, attacks=["lira_curvature"])
    assert list(only["attacks"]) == ["lira_curvature"]
    assert only["attacks"]["lira_curvature"]["auc"] == pytest.approx(a["auc"], abs=1e-4)
    curv = np.stack([mk.audit.head_quantities(x, y, run.model_params(m))[1]
                     for m in range(8)])
    want = mk.lira.leave_one_out(curv[:, :, None], keep, variance="global", on_empty="nan")
    got = mk.audit.curvature_attack(
        mk.audit.head_matrices(run.features(), y, run.model_params, keep.shape)[1], keep,
        variance="global")["scores"]
    # (pooled spreads sum per-thread partials: equal to the summation order, ~1e-16)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)
    logits_only = _leaky_run(tmp_path / "leaky", m=8, n=60)
    with pytest.raises(ValueError, match="lira_curvature"):
        audit(logits_only, plot=False, attacks=["lira_curvature"])


def _roc_reference(scores, members, n_points=60):
    """The downsampled ROC by brute force: at each grid FPR g (log grid from 1/n_neg to
    1), the highest TPR over all thresholds whose false-positive count is at most
    floor(g * n_neg)."""
    import references as ref

    points = ref.roc_points(scores, members)
    n_pos = int(np.sum(members))
    n_neg = int(np.size(members) - n_pos)
    grid = np.geomspace(1.0 / n_neg, 1.0, n_points)
    budget = np.floor(grid * n_neg + 1e-6)
    return grid, np.array([max(tp for fp, tp, _ in points if fp <= k) / n_pos
                           for k in budget])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_downsampling_keeps_every_point_within_the_fp_budget(seed):
    """Each point of the report's ROC is the best TPR at an FP count <= the budget,
    including the ROC point whose FP count equals the budget exactly (the positives
    ranked between the k-th and the next negative count)."""
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(8, 60, seed=seed)
    scores = rng.normal(size=keep.shape) + 0.8 * keep
    if seed == 2:
        scores = np.round(scores, 1)  # ties between members and non-members
    res = mk.audit.evaluate({"s": {"scores": scores}}, keep)["s"]
    grid, want = _roc_reference(scores, keep)
    np.testing.assert_allclose(res["roc"]["fpr"], grid, rtol=1e-12)
    np.testing.assert_array_equal(res["roc"]["tpr"], want)
    assert res["excluded"] == 0


def test_roc_downsampling_at_an_exact_budget():
    """A hand-made ranking: the first non-member is followed by two members before the
    next non-member, so at FPR 1/4 (FP budget 1) the TPR is 3/4, not 1/4."""
    members = np.array([[True, False, True, True, False, True, False, False]])
    scores = -np.arange(8.0)[None, :]  # ranked as written
    res = mk.audit.evaluate({"s": {"scores": scores}}, members)["s"]
    fpr, tpr = np.array(res["roc"]["fpr"]), np.array(res["roc"]["tpr"])
    assert fpr[0] == pytest.approx(0.25) and tpr[0] == 0.75
    assert tpr[fpr < 0.5 - 1e-9].max() == 0.75  # FP budget 1
    assert tpr[np.isclose(fpr, 0.5) | (fpr > 0.5)].min() == 1.0  # FP budget >= 2
    assert np.all(np.diff(tpr) >= 0)


def test_nan_scores_are_excluded_and_counted(tmp_path):
    """Examples without reference models on one side get NaN LiRA/RMIA scores; the report
    counts them as excluded and computes every metric on the rest."""
    import references as ref

    rng = np.random.default_rng(0)
    m, n = 8, 40
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    keep[:, 0] = True
    keep[7, 0] = False  # example 0: OUT in model 7 only
    keep[:, 1] = False
    keep[0, 1] = True  # example 1: IN in model 0 only
    labels = rng.integers(0, 3, n)
    run = mk.shadow.create_run(tmp_path / "run", keep, labels, n_augmentations=1,
                               n_classes=3)
    for k in range(m):
        z = rng.normal(size=(n, 1, 3)).astype(np.float32)
        z[np.arange(n), :, labels] += 2.0 * keep[k][:, None]
        run.write_model(k, z)
    report = audit(mk.shadow.open_run(tmp_path / "run"), tmp_path / "out", plot=False)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    att = on_disk["attacks"]
    # Offline LiRA needs OUT references: example 0 has one OUT model, which is either the
    # target or the balanced partner left out with it -> all 8 scores of example 0 are
    # NaN (7 members, 1 non-member). Online also needs IN references: example 1 too.
    assert (att["lira_offline"]["excluded"], att["lira_offline"]["n_members"],
            att["lira_offline"]["n_nonmembers"]) == (8, 160 - 7, 160 - 1)
    assert (att["lira_online"]["excluded"], att["lira_online"]["n_members"],
            att["lira_online"]["n_nonmembers"]) == (16, 160 - 8, 160 - 8)
    for name in ("loss", "rmia_online"):  # need no references on one side
        assert att[name]["excluded"] == 0 and att[name]["n_members"] == 160
    assert att["lira_online"]["settings"]["variance"] == "global"  # M < 64
    scores = run_attacks(mk.shadow.open_run(tmp_path / "run").logits(), keep, labels,
                         attacks=["lira_online", "lira_offline"], variance="global")
    for name in ("lira_online", "lira_offline"):
        s = scores[name]["scores"]
        ok = np.isfinite(s)
        assert att[name]["excluded"] == int((~ok).sum()) == report["attacks"][name]["excluded"]
        assert att[name]["auc"] == pytest.approx(ref.auc_pairs(s[ok], keep[ok]), abs=1e-12)
        grid, want = _roc_reference(s[ok], keep[ok])
        np.testing.assert_array_equal(att[name]["roc"]["tpr"], want)
        for p in att[name]["tpr_at_fpr"]:
            tpr, *_ = ref.tpr_at_fpr(s[ok], keep[ok], p["target_fpr"])
            assert p["tpr"] == pytest.approx(tpr, abs=1e-12)


@pytest.mark.parametrize("attacks", [["lira_offline", "max_confidence"], ["loss", "hinge"]])
def test_streamed_subset_equals_the_separate_calls(attacks, tmp_path):
    # without RMIA or the confidence attack the streamed pass keeps no probabilities
    run = _leaky_run(tmp_path / "run", m=10, n=70)
    report = audit(run, plot=False, attacks=attacks)
    scored = run_attacks(run.logits(), run.keep, run.labels, variance="global",
                         attacks=attacks)
    ev = mk.audit.evaluate(scored, run.keep)
    assert sorted(report["attacks"]) == sorted(attacks)
    for name, r in ev.items():
        assert report["attacks"][name]["auc"] == r["auc"], name
        assert report["attacks"][name]["tpr_at_fpr"] == r["tpr_at_fpr"], name
    assert report["vulnerability"]["meta"]["grad_norm_kind"].startswith("logit-gradient")


def test_streamed_audit_equals_the_separate_calls(tmp_path):
    # audit() evaluates each attack as its scores arrive and reads the baselines and the
    # per-example table's threshold from the rankings it already has: the results are
    # those of the separate public calls
    run = _leaky_run(tmp_path / "run", m=12, n=90)
    report = audit(run, tmp_path / "out", plot=False)
    # the audit streams the model files: no stacked copy of the logits is written
    assert not (tmp_path / "run" / "cache").exists()
    logits, keep, labels = run.logits(), run.keep, run.labels
    scored = run_attacks(logits, keep, labels, variance="global")
    ev = mk.audit.evaluate(scored, keep)
    for name, r in ev.items():
        got = report["attacks"][name]
        assert got["auc"] == r["auc"] and got["auc_se"] == r["auc_se"], name
        assert got["tpr_at_fpr"] == r["tpr_at_fpr"], name
        assert got["leakage_test"] == r["leakage_test"], name
        assert got["empirical_epsilon"] == r["empirical_epsilon"], name
    assert report["baselines"] == mk.audit.baselines(logits, keep, labels)
    table = mk.audit.vulnerability(logits, keep, labels, scored["lira_online"]["scores"],
                                   variance="global", fpr=0.001)
    assert report["vulnerability"] == table.to_dict(per_example=False)
    t = report["timing_s"]
    for phase in ("signals", "attacks", "metrics", "per_example_table", "plots", "writing",
                  "audit"):
        assert t[phase] >= 0
    assert t["audit"] >= t["signals"] + t["attacks"] + t["metrics"]
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["timing_s"]["total"] == t["total"]


def test_audit_writes_the_html_report_with_its_parts(tmp_path):
    run = _leaky_run(tmp_path / "run")
    rep = audit(run, tmp_path / "out")
    path = tmp_path / "out" / "report.html"
    assert rep["files"]["html"] == str(path)
    page = path.read_text()
    sec = mk.audit.summary_sections(rep)
    head, rows = sec["table"]
    assert page.count("<tr>") >= len(rows) + 1 + len(rep["vulnerability"]["top"])
    for row in rows:  # every cell of the summary's attack table is in the page
        assert all(html.escape(c) in page for c in row)
    leak = rep["verdict"]["leakage"]
    assert ('class="verdict leak"' in page) == leak
    assert page.count("<img") == sum(str(v).endswith(".png") for v in rep["files"].values())
    # the printed summary is built from the same parts
    text = mk.audit.summarize(rep)
    assert all(line in text for line in sec["run"] + sec["notes"] + sec["verdict"])


@pytest.mark.parametrize("confidence", [False, True])
def test_run_signals_equal_the_single_calls(confidence, tmp_path):
    from miakit import _audit_signals as sig

    run = _leaky_run(tmp_path / "run", m=6, n=33)
    logits, labels = run.logits(), run.labels
    # blocks of four models: a last block shorter than the others
    src = sig.RunSignals(run.model_logits, run.n_models, labels, confidence=confidence,
                         scores=("loss", "confidence", "max_confidence", "hinge"),
                         block_bytes=4 * logits[0].nbytes)
    for name in ("loss", "confidence", "max_confidence", "hinge"):
        np.testing.assert_array_equal(src.score(name),
                                      mk.thresholds.SIGNAL_SCORES[name](logits, labels))
    arr = sig.ArraySignals(logits, labels)
    for got, want in zip(src.first_view(), arr.first_view()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(src.grad_proxy(), arr.grad_proxy())
    np.testing.assert_array_equal(src.lira_source()[0],
                                  mk.signals.compute(logits, labels[:, None],
                                                     ["scaled_confidence"],
                                                     dtype="float64")["scaled_confidence"])
    if confidence:
        np.testing.assert_array_equal(src.confidence(), arr.confidence())
    else:
        with pytest.raises(ValueError, match="confidence"):
            src.confidence()
    with pytest.raises(ValueError, match="scores"):
        sig.RunSignals(run.model_logits, run.n_models, labels, scores=("correct",))
