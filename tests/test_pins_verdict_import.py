"""Pins for the audit's verdict (Bonferroni family, order of the evidence) and for runs
imported as one member-oriented score per example (SCIENCE.md: larger = member).

Each test names the one-line bug it guards against. References are computed here, from
the definitions, not read back from the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import miakit as mk
from miakit.audit import audit, verdict
from miakit.cli import main

FPRS = (0.1, 0.01, 0.001)  # the audit's default budgets: 3 tests per attack


# ------------------------------------------------------------------------ the verdict
def _heads_run(path, m=8, n=90, seed=0):
    """A run of linear heads that stores its parameters, so the audit also runs the
    curvature LiRA (the attack a logits-only run cannot have)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 5)) + y[:, None]).astype(np.float32)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    mk.shadow.train_heads(x, y, keep, run_dir=path, progress=False)
    return mk.shadow.open_run(path)


def test_bonferroni_family_counts_the_curvature_attack(tmp_path):
    """Bug: the audit's n_tests (attacks x FPRs) forgets lira_curvature on a run of heads,
    so every test runs at alpha / (9 x 3) instead of alpha / (10 x 3): the family-wise
    error is no longer bounded by alpha."""
    run = _heads_run(tmp_path / "run")
    report = audit(run, plot=False)
    assert list(report["attacks"]) == list(mk.audit.ATTACKS)  # curvature included
    # every attack the audit ran, the curvature LiRA included: 10 attacks x 3 FPRs
    family = len(report["attacks"]) * len(FPRS)
    assert "lira_curvature" in report["attacks"] and family == 30
    v = report["verdict"]
    assert v["n_tests"] == family
    for name, a in report["attacks"].items():
        assert [p["target_fpr"] for p in a["leakage_test"]] == list(FPRS)
        for p in a["leakage_test"]:
            assert p["alpha_each"] == pytest.approx(0.05 / family, rel=1e-12), name

    # The curvature attack's own bounds, recomputed at the right per-test level from its
    # leave-one-out scores, clustered by example (the audit's protocol).
    keep = run.keep
    curv = mk.audit.head_matrices(run.features(), run.labels, run.model_params,
                                  keep.shape)[1]
    scores = mk.audit.curvature_attack(curv, keep, variance="global")["scores"]
    ok = np.isfinite(scores)
    clusters = np.broadcast_to(np.arange(keep.shape[1]), keep.shape)
    want = mk.metrics.leakage_test(scores[ok], keep[ok], FPRS, clusters=clusters[ok],
                                   alpha=0.05, n_tests=family)
    got = report["attacks"]["lira_curvature"]["leakage_test"]
    for g, w in zip(got, want):
        assert g["tpr_lower"] == pytest.approx(w.tpr_lower, abs=1e-12)
        assert g["fpr_upper"] == pytest.approx(w.fpr_upper, abs=1e-12)
        assert g["alpha_each"] == pytest.approx(w.alpha_each, rel=1e-12)

    # Two attacks asked for by name, one of them the curvature LiRA: a family of 2 x 3.
    two = audit(run, plot=False, attacks=["loss", "lira_curvature"])
    assert list(two["attacks"]) == ["loss", "lira_curvature"]
    assert two["verdict"]["n_tests"] == 6
    for a in two["attacks"].values():
        assert all(p["alpha_each"] == pytest.approx(0.05 / 6) for p in a["leakage_test"])


def _point(fpr, tpr_lower, leak, fpr_upper=None):
    """One leakage-test point as the audit stores it."""
    up = fpr * 1.2 if fpr_upper is None else fpr_upper
    return {"target_fpr": fpr, "tpr": tpr_lower + 0.01, "fpr": fpr, "tpr_lower": tpr_lower,
            "fpr_upper": up, "leak": leak, "min_detectable_tpr": fpr + 0.02,
            "alpha_each": 0.05 / 9, "resolvable": True}


def test_verdict_names_the_most_significant_point_first():
    """Bug: the evidence sorted the wrong way (e.g. smallest lower bound first at one FPR,
    or the highest FPR first), so ``strongest`` is not the most significant point: the
    lowest FPR that declares a leak and, there, the largest TPR lower bound."""
    results = {
        "loss": {"label": "Loss", "leakage_test": [
            _point(0.1, 0.50, True), _point(0.01, 0.05, True), _point(0.001, 0.004, True)]},
        "lira_online": {"label": "LiRA", "leakage_test": [
            _point(0.1, 0.30, True), _point(0.01, 0.20, True), _point(0.001, 0.10, True)]},
        "hinge": {"label": "Hinge", "leakage_test": [
            _point(0.1, 0.90, True), _point(0.01, 0.01, False, 0.02),
            _point(0.001, 0.0, False, 0.002)]},
    }
    v = verdict(results, alpha=0.05)
    assert v["leakage"] and v["n_tests"] == 9
    # hand-ordered: lowest FPR first, then the largest lower bound first
    want = [("lira_online", 0.001, 0.10), ("loss", 0.001, 0.004),
            ("lira_online", 0.01, 0.20), ("loss", 0.01, 0.05),
            ("hinge", 0.1, 0.90), ("loss", 0.1, 0.50), ("lira_online", 0.1, 0.30)]
    got = [(e["attack"], e["target_fpr"], e["tpr_lower"]) for e in v["evidence"]]
    assert got == want
    s = v["strongest"]
    assert (s["attack"], s["target_fpr"], s["tpr_lower"]) == ("lira_online", 0.001, 0.10)
    assert s["label"] == "LiRA"
    # the order must not depend on the order the attacks were run in
    flipped = verdict(dict(reversed(list(results.items()))))
    assert [(e["attack"], e["target_fpr"]) for e in flipped["evidence"]] == \
        [(a, f) for a, f, _ in want]


def test_strongest_evidence_of_a_real_audit_is_its_most_significant_point(tmp_path):
    """Bug: the evidence sorted by the wrong key or direction; on a real audit the point
    named strongest must be the leaking point with the lowest FPR and, among those, the
    smallest p-value (checked here against a search over every attack's points)."""
    rng = np.random.default_rng(1)
    m, n = 16, 200
    keep = mk.shadow.balanced_keep(m, n, seed=1)
    y = rng.integers(0, 4, n)
    z = rng.normal(size=(m, n, 1, 4)).astype(np.float32)
    z[np.arange(m)[:, None], np.arange(n), 0, y] += (rng.normal(0, 1.5, n)
                                                     + 2.5 * keep).astype(np.float32)
    run = mk.shadow.import_logits(tmp_path / "run", z, keep, y)
    report = audit(run, plot=False, attacks=["lira_online", "loss", "hinge", "confidence"])
    leaking = [(name, p) for name, a in report["attacks"].items()
               for p in a["leakage_test"] if p["leak"]]
    assert len(leaking) >= 4  # a strong planted signal: several points declare leakage
    lowest = min(p["target_fpr"] for _, p in leaking)
    best = min(p["p_value"] for _, p in leaking if p["target_fpr"] == lowest)
    s = report["verdict"]["strongest"]
    assert s["target_fpr"] == lowest and s["p_value"] == best
    # several attacks leak at that FPR with distinct p-values: the ordering is exercised
    at_lowest = sorted({p["p_value"] for _, p in leaking if p["target_fpr"] == lowest})
    assert len(at_lowest) >= 2
    ps = [e["p_value"] for e in report["verdict"]["evidence"] if e["target_fpr"] == lowest]
    assert ps == sorted(ps)


def test_verdict_orders_by_p_value_before_the_bounds():
    """At one FPR the smallest p-value is the strongest evidence, whatever the bounds."""
    a = {**_point(0.01, 0.30, True), "p_value": 1e-3}
    b = {**_point(0.01, 0.10, True), "p_value": 1e-9}
    v = verdict({"x": {"label": "X", "leakage_test": [a]},
                 "y": {"label": "Y", "leakage_test": [b]}})
    assert [e["attack"] for e in v["evidence"]] == ["y", "x"]


# ------------------------------------------------------------ imported score runs
def _planted(m=12, n=200, a=2, c=4, seed=0):
    """Logits with planted membership: a model's true-class logit is larger on the
    examples it trained on."""
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    y = rng.integers(0, c, n)
    z = rng.normal(size=(m, n, a, c)).astype(np.float32)
    difficulty = rng.normal(0, 1.0, n)
    for k in range(m):
        z[k, np.arange(n), :, y] += (difficulty + 2.0 * keep[k])[:, None].astype(np.float32)
    return z, keep, y


def _scaled_confidence(z, y):
    """phi = z_y - logsumexp_{j != y} z_j in float64, written out here (SCIENCE.md, 1)."""
    z = z.astype(np.float64)
    zy = np.take_along_axis(z, y[None, :, None, None], axis=-1)[..., 0]
    others = np.where(np.arange(z.shape[-1]) == y[None, :, None, None], -np.inf, z)
    mx = others.max(-1, keepdims=True)
    return zy - (mx[..., 0] + np.log(np.exp(others - mx).sum(-1)))


def test_imported_scores_are_member_oriented(tmp_path):
    """Bug: a run imported with kind="score" read (or stored) with the wrong sign. Scores
    are member-oriented (larger = member): LiRA on the imported scores must find the
    planted members (AUC well above 1/2) and equal LiRA on the same run imported as
    logits, whose signal is exactly these scores."""
    z, keep, y = _planted()
    phi = _scaled_confidence(z, y)  # [M, N, A], larger for members
    run = mk.shadow.import_signals(tmp_path / "score", phi.astype(np.float32), keep,
                                   kind="score")
    # stored as given: no sign flip on the way in
    for k in (0, 5):
        np.testing.assert_array_equal(run.model_logits(k)[..., 0], phi[k].astype(np.float32))
    rep = audit(run, plot=False)
    assert list(rep["attacks"]) == ["lira_online", "lira_offline"]
    logits_rep = audit(mk.shadow.import_logits(tmp_path / "logits", z, keep, y), plot=False,
                       attacks=["lira_online", "lira_offline"])
    for name in ("lira_online", "lira_offline"):
        a = rep["attacks"][name]
        assert a["auc"] > 0.75, (name, a["auc"])  # the planted direction
        # the same attack on the same signal (float32 storage: a small tolerance)
        assert a["auc"] == pytest.approx(logits_rep["attacks"][name]["auc"], abs=2e-3)
        low = a["tpr_at_fpr"][0]  # FPR 10%
        assert low["tpr"] > 0.3, (name, low)
    # References computed here: leave-one-out LiRA on the stored scores themselves.
    stored = phi.astype(np.float32).astype(np.float64)
    for name, kw in (("lira_online", {}), ("lira_offline", {"mode": "offline"})):
        want = mk.lira.leave_one_out(stored, keep, variance="global", **kw)
        ok = np.isfinite(want)
        assert rep["attacks"][name]["auc"] == pytest.approx(
            mk.metrics.auc(want[ok], keep[ok]), abs=1e-9), name


def test_imported_loss_as_score_is_read_as_negated_loss(tmp_path):
    """Bug: the wrong sign on an imported score run. A pipeline that keeps the loss
    imports ``-loss`` as a score; LiRA must read members as members, like the same
    losses imported as kind="loss" do (and not as their mirror image, AUC 1 - AUC).
    LiRA online's likelihood ratio does not change when every value changes sign (both
    Gaussians are fitted to the flipped values), so the one-sided offline test is the
    attack that sees the orientation."""
    z, keep, y = _planted(seed=3)
    loss = np.asarray(mk.signals.loss(z, y[:, None]), dtype=np.float64)
    names = ["lira_online", "lira_offline"]
    as_score = audit(mk.shadow.import_signals(tmp_path / "s", -loss, keep, kind="score"),
                     plot=False)["attacks"]
    as_loss = audit(mk.shadow.import_signals(tmp_path / "l", loss, keep, kind="loss"),
                    plot=False, attacks=names)["attacks"]
    for name in names:
        assert as_score[name]["auc"] > 0.7 and as_loss[name]["auc"] > 0.7, name
        # a monotone transform of the same signal: close, and on the same side of 1/2
        assert as_score[name]["auc"] == pytest.approx(as_loss[name]["auc"], abs=0.05), name


def test_cli_import_of_scores_keeps_their_orientation(tmp_path, capsys):
    """Bug: ``miakit import --signals S.npy --kind score`` reading the scores with the
    wrong sign; the audit of the imported run must find the planted members."""
    z, keep, y = _planted(m=8, n=150, seed=2)
    phi = _scaled_confidence(z, y).astype(np.float32)
    np.save(tmp_path / "s.npy", phi)
    np.save(tmp_path / "k.npy", keep)
    assert main(["import", "--signals", str(tmp_path / "s.npy"), "--kind", "score",
                 "--keep", str(tmp_path / "k.npy"), "--out", str(tmp_path / "run")]) == 0
    run = mk.shadow.open_run(tmp_path / "run")
    assert run.signal == "score"
    np.testing.assert_array_equal(run.model_logits(3)[..., 0], phi[3])
    assert main(["audit", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "rep"),
                 "--no-plot", "--quiet"]) == 0
    capsys.readouterr()
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    # references computed here: LiRA on the scores as saved (offline is the attack that
    # sees the orientation; online is unchanged by a sign flip of every value)
    for name, kw in (("lira_online", {}), ("lira_offline", {"mode": "offline"})):
        want = mk.lira.leave_one_out(phi.astype(np.float64), keep, variance="global", **kw)
        ok = np.isfinite(want)
        auc = rep["attacks"][name]["auc"]
        assert auc > 0.7, (name, auc)
        assert auc == pytest.approx(mk.metrics.auc(want[ok], keep[ok]), abs=1e-9), name
    assert rep["verdict"]["leakage"]
