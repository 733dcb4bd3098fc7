"""The interval and test formulas behind the audit's numbers, each against a reference
written out here (brute-force counts, scipy, statsmodels), and their coverage and error
rates by simulation (docs/methods/metrics.md, "Intervals and the membership test")."""

import numpy as np
import pytest
from scipy import stats

import miakit as mk
from miakit import metrics


def _pooled(rng, m, n, leak_share=0.05, leak=3.0, paired=True):
    """Leave-one-out-like scores [m, n]: a difficulty per example, a few leaking ones."""
    keep = mk.shadow.balanced_keep(m, n, seed=int(rng.integers(1 << 30)), paired=paired)
    mu = rng.normal(size=n)
    delta = np.where(rng.random(n) < leak_share, leak, 0.0)
    return mu + delta * keep + rng.normal(size=(m, n)), keep


def _counts_at(s, y, thr):
    """Per column (example): members and non-members at or above thr, and their totals."""
    above = s >= thr
    return ((above & y).sum(0), (above & ~y).sum(0), y.sum(0), (~y).sum(0))


# -------------------------------------------------------------- variances and dof
def test_cluster_moments_match_the_counts_written_out(rng):
    s, y = _pooled(rng, 12, 57)
    r = mk.metrics.RankedScores(s, y)  # 2-D: clustered by column
    pts = np.array([1, 5, r.tp.size // 3, r.tp.size // 2, r.tp.size - 1])
    var_t, var_f, (c_t, c_f), (df_t, df_f) = r.cluster_moments(pts)
    for j, i in enumerate(pts):
        kp, kn, npos, nneg = _counts_at(s, y, r.thresholds[i])
        for k, n, var, df in ((kp, npos, var_t[j], df_t[j]), (kn, nneg, var_f[j], df_f[j])):
            p = k.sum() / n.sum()
            res = k - p * n
            c = np.count_nonzero(n)
            assert var == pytest.approx(c / (c - 1) * (res ** 2).sum() / n.sum() ** 2,
                                        rel=1e-9, abs=1e-15)
            nu = (res ** 2).sum() ** 2 / (res ** 4).sum() if (res != 0).any() else c
            assert df == pytest.approx(min(max(nu - 1, 1), c - 1), rel=1e-9)
    assert (c_t, c_f) == (57, 57)


def test_effective_dof_counts_the_clusters_that_carry_the_variance():
    """m equal residuals and the rest zero: nu = m clusters, m - 1 degrees of freedom."""
    for m in (1, 2, 5, 40):
        r = np.r_[np.ones(m), np.zeros(100 - m)]
        got = mk.metrics.effective_dof((r ** 2).sum(), (r ** 4).sum(), 100)
        assert float(got) == max(m - 1, 1)
    assert float(mk.metrics.effective_dof(0.0, 0.0, 10)) == 9  # nothing varies: C - 1


def test_clustered_bound_towards_one_half_uses_the_effective_dof():
    """Two clusters carry all successes of 200: the upper bound is as wide as two
    clusters allow, the lower keeps C - 1 degrees of freedom."""
    k = np.zeros(200, int)
    k[:2] = 10
    n = np.full(200, 10)
    got = mk.metrics.clustered_proportion_ci(k, n, 0.95)
    p, tail = 20 / 2000, 0.025
    res = k - p * n
    var = 200 / 199 * (res ** 2).sum() / 2000 ** 2
    deff = var / (p * (1 - p) / 2000)
    z = stats.norm.isf(tail)
    nu = (res ** 2).sum() ** 2 / (res ** 4).sum()
    n_hi = 2000 / deff * (z / stats.t.isf(tail, nu - 1)) ** 2
    n_lo = 2000 / deff * (z / stats.t.isf(tail, 199)) ** 2
    assert got.dof == pytest.approx(nu - 1)
    assert got.ci[1] == pytest.approx(max(stats.beta.isf(tail, p * n_hi + 1, n_hi - p * n_hi),
                                          p + 1 - tail ** (1 / 200)), rel=1e-9)
    assert got.ci[0] == pytest.approx(stats.beta.ppf(tail, p * n_lo, n_lo - p * n_lo + 1),
                                      rel=1e-9)


def test_unseen_share_floor_is_the_zero_count_bound():
    """u = 1 - tail^(1/C): the Clopper-Pearson upper bound of 0 successes in C."""
    for c in (1, 7, 300):
        u = mk.metrics.unseen_share_floor(0.0, 0.0, 0.0, 0.025, c)[1]
        assert u == pytest.approx(stats.beta.isf(0.025, 1, c), rel=1e-12)
    lo, hi = mk.metrics.unseen_share_floor(0.9, 0.895, 0.95, 0.025, 300)  # above 1/2
    assert hi == 0.95 and lo == pytest.approx(0.9 - (1 - 0.025 ** (1 / 300)))
    assert mk.metrics.unseen_share_floor(0.9, 0.85, 0.95, 0.025, 300) == (0.85, 0.95)


# ---------------------------------------------------------------------------- AUC
@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_auc_interval_is_t_with_the_effective_dof(level, rng):
    s, y = _pooled(rng, 8, 90, leak_share=0.1)
    a = mk.metrics.auc_ci(s, y, level=level)  # by column
    # the influence of each example, written out from pairwise comparisons
    pos, neg = s[y], s[~y]
    cpos, cneg = np.nonzero(y)[1], np.nonzero(~y)[1]
    v = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean(1)
    w = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean(0)
    auc = v.mean()
    u = (np.bincount(cpos, v - auc, 90) / pos.size + np.bincount(cneg, w - auc, 90) / neg.size)
    se = np.sqrt(90 / 89 * (u ** 2).sum())
    nu = (u ** 2).sum() ** 2 / (u ** 4).sum()
    q = stats.t.ppf(0.5 + level / 2, min(max(nu - 1, 1), 89))
    assert a.auc == pytest.approx(auc, rel=1e-12) and a.se == pytest.approx(se, rel=1e-9)
    assert a.ci == pytest.approx((auc - q * se, auc + q * se), rel=1e-9)


# ---------------------------------------------------------------- membership test
def _share_threshold(s, f):
    """The threshold calling at most a share f of all scores (ties together)."""
    v = np.sort(s.ravel())[::-1]
    k = int(np.floor(f * v.size + 1e-9))
    while k > 0 and k < v.size and v[k - 1] == v[k]:
        k -= 1
    return v[k - 1] if k > 0 else np.inf


@pytest.mark.parametrize("alpha, n_tests", [(0.05, 3), (0.05, 27), (0.2, 3)])
def test_paired_sign_test_matches_the_pairs_counted_out(alpha, n_tests, rng):
    s, y = _pooled(rng, 10, 120, leak_share=0.03, leak=2.0)
    pts = mk.metrics.leakage_test(s, y, (0.1, 0.01, 0.002), alpha=alpha, n_tests=n_tests)
    for p in pts:
        thr = _share_threshold(s, p.target_fpr)
        above = s >= thr
        both = one = 0
        for j in range(0, 10, 2):
            both += int((above[j] & above[j + 1]).sum())
            one += int((above[j] ^ above[j + 1]).sum())
        t = int((above & y).sum())
        want = stats.binomtest(t - both, one, 0.5, alternative="greater").pvalue if one else 1
        assert p.test == "paired sign test" and p.threshold == thr and p.tp == t
        assert p.p_value == pytest.approx(want, rel=1e-9)
        # Bonferroni: each test at alpha / n_tests, one-sided
        assert p.alpha_each == pytest.approx(alpha / n_tests)
        assert p.leak == (want <= alpha / n_tests)
        # the fewest members that would have been declared: the first count whose
        # upper tail is at most alpha_each (the test's own tail, not the other)
        if one and not np.isnan(p.min_detectable_tpr):
            t_min = round(p.min_detectable_tpr * p.n_pos)
            sf = [stats.binomtest(j, one, 0.5, alternative="greater").pvalue
                  for j in (t_min - both - 1, t_min - both)]
            assert sf[1] <= p.alpha_each < sf[0]


def test_stratified_test_matches_statsmodels_mantel_haenszel(rng):
    """Unpaired clusters: the members among each cluster's called scores are
    hypergeometric; the one-sided continuity-corrected Mantel-Haenszel test."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    s, y = _pooled(rng, 10, 80, leak_share=0.1, leak=1.5, paired=False)
    for p in mk.metrics.leakage_test(s, y, (0.2, 0.05)):
        thr = _share_threshold(s, p.target_fpr)
        kp, kn, npos, nneg = _counts_at(s, y, thr)
        ok = (kp + kn > 0) & (kp + kn < npos + nneg) & (npos > 0) & (nneg > 0)
        tables = np.stack([np.stack([kp, npos - kp], -1), np.stack([kn, nneg - kn], -1)],
                          -2)[ok].transpose(1, 2, 0).astype(float)
        chi2 = StratifiedTable(tables).test_null_odds(correction=True).statistic
        # one-sided: half the two-sided p-value on the members' side
        want = stats.norm.sf(np.sqrt(chi2)) if kp.sum() > (
            (kp + kn) * npos / (npos + nneg)).sum() else 1 - stats.norm.sf(np.sqrt(chi2))
        assert p.test.startswith("stratified")
        assert p.p_value == pytest.approx(want, rel=1e-6)


def test_unclustered_test_is_fishers_exact(rng):
    y = rng.random(400) < 0.4
    s = rng.normal(size=400) + 0.8 * y
    for p in mk.metrics.leakage_test(s, y, (0.1, 0.02)):
        called = s >= p.threshold
        table = [[int((called & y).sum()), int((~called & y).sum())],
                 [int((called & ~y).sum()), int((~called & ~y).sum())]]
        want = stats.fisher_exact(table, alternative="greater").pvalue
        assert p.test == "Fisher's exact test" and p.p_value == pytest.approx(want, rel=1e-9)


def test_membership_test_holds_its_level_under_the_null():
    """No leak, a strong per-example difficulty, a heavy-tailed spread: each test
    rejects at most at its level (upper 99% Clopper-Pearson bound of the rate)."""
    rng = np.random.default_rng(5)
    reps, level = 300, 0.1
    rejections = np.zeros(3)
    for _ in range(reps):
        keep = mk.shadow.balanced_keep(16, 150, seed=int(rng.integers(1 << 30)))
        spread = np.exp(0.5 * rng.normal(size=150))
        s = 2.0 * rng.normal(size=150) + spread * rng.standard_t(3, size=(16, 150))
        rejections += [mk.metrics.leakage_test(s, keep, (f,), alpha=level)[0].leak
                       for f in (0.1, 0.01, 0.002)]
    lo = stats.beta.ppf(0.01, rejections, reps - rejections + 1)
    assert np.all(lo <= level), rejections / reps


def test_membership_test_finds_a_leak_carried_by_a_few_examples():
    """Five examples of 1,000 whose members always score high: the paired test finds
    it; comparing the TPR's lower bound with the FPR's upper bound cannot."""
    rng = np.random.default_rng(2)
    keep = mk.shadow.balanced_keep(32, 1000, seed=3)
    s = rng.normal(size=1000) + rng.normal(size=(32, 1000))
    s[:, :5] += 6.0 * keep[:, :5]
    p = mk.metrics.leakage_test(s, keep, (0.01,), alpha=0.05, n_tests=27)[0]
    assert p.leak and p.p_value < p.alpha_each / 10
    assert p.tpr_lower < p.fpr_upper  # the bounds alone would not have said so


# ----------------------------------------------------------------------- coverage
def test_intervals_cover_with_few_contributing_examples():
    """The regime of the default audit (64 models x 300 examples here) with a leak that
    1% of examples carry: the 95% intervals of TPR and FPR at FPR 1% and 0.1% cover the
    truth at the chosen threshold in at least 90% of 150 draws (nominal 95%)."""
    rng = np.random.default_rng(7)
    pop = 200_000
    mu = rng.normal(size=pop)
    delta = np.where(rng.random(pop) < 0.01, 3.0 * (1.0 + rng.pareto(1.2, pop)), 0.0)
    grid = np.linspace(-6.0, 30.0, 1801)
    from scipy.special import ndtr

    def tail(loc):
        return np.array([ndtr(loc - t).mean() for t in grid])

    true_tpr, true_fpr = tail(mu + delta), tail(mu)
    keep = mk.shadow.balanced_keep(64, 300, seed=1)
    hits = np.zeros(4)
    reps = 150
    for _ in range(reps):
        idx = rng.integers(0, pop, 300)
        s = mu[idx] + delta[idx] * keep + rng.normal(size=(64, 300))
        r = mk.metrics.RankedScores.by_columns(s, keep)
        for j, f in enumerate((0.01, 0.001)):
            p = r.tpr_at_fpr(f)
            t = np.interp(p.threshold, grid, true_tpr)
            u = np.interp(p.threshold, grid, true_fpr)
            hits[2 * j] += p.ci[0] <= t <= p.ci[1]
            hits[2 * j + 1] += p.fpr_ci[0] <= u <= p.fpr_ci[1]
    assert np.all(hits / reps >= 0.90), hits / reps


# ------------------------------------------------------------------- resolvability
def test_a_score_with_a_coarse_top_is_not_resolvable():
    """RMIA-like scores: few distinct values, the top one shared by more than 0.1% of
    the non-members: the point at 0.1% calls nothing and says so."""
    rng = np.random.default_rng(0)
    keep = mk.shadow.balanced_keep(16, 300, seed=0)
    s = np.floor(rng.random((16, 300)) * 50) / 50  # 50 values: each holds ~2%
    r = mk.metrics.tpr_at_fpr(s, keep, fpr=1e-3)
    assert not r.resolvable and r.tp == r.fp == 0
    assert "highest score is shared" in r.unresolvable_reason
    assert mk.metrics.tpr_at_fpr(s, keep, fpr=0.1).resolvable


def test_default_clusters_are_the_columns_of_2d_scores(rng):
    """The README's call: [K, N] leave-one-out scores are clustered by example."""
    s, y = _pooled(rng, 16, 200)
    auto = mk.metrics.tpr_at_fpr(s, y, fpr=0.01)
    cols = mk.metrics.tpr_at_fpr(s, y, fpr=0.01, clusters=np.arange(200))
    plain = mk.metrics.tpr_at_fpr(s, y, fpr=0.01, clusters=None)
    assert auto.ci == cols.ci and auto.ci != plain.ci
    assert mk.metrics.auc_ci(s, y).se == mk.metrics.auc_ci(s, y, np.arange(200)).se
    assert mk.bounds.empirical_epsilon(s, y).epsilon == mk.bounds.empirical_epsilon(
        s, y, clusters=np.arange(200)).epsilon
    # 1-D scores: independent trials, the Clopper-Pearson interval
    one = mk.metrics.tpr_at_fpr(s.ravel(), y.ravel(), fpr=0.01)
    assert one.ci == plain.ci
    with pytest.raises(ValueError, match="clusters"):
        mk.metrics.tpr_at_fpr(s, y, clusters="rows")


def test_private_share_point_calls_at_most_the_share(rng):
    s, y = _pooled(rng, 6, 50)
    r = metrics.RankedScores(s, y)
    for f in (0.5, 0.1, 0.01, 0.001):
        i = r._share_point(f)
        assert r.tp[i] + r.fp[i] <= f * s.size
        if i + 1 < r.tp.size:
            assert r.tp[i + 1] + r.fp[i + 1] > f * s.size


def test_each_test_is_one_sided_at_alpha_over_n_tests(rng):
    """Bonferroni without a factor 2: a p-value p is declared at alpha_each = 1.5 p and
    not at 0.75 p (a test at alpha_each / 2, or at 2 alpha_each, would flip one)."""
    s, y = _pooled(rng, 10, 200, leak_share=0.05, leak=1.0)
    p = mk.metrics.leakage_test(s, y, (0.05,))[0].p_value
    assert 0 < p < 0.3
    for factor, leak in ((1.5, True), (0.75, False)):
        got = mk.metrics.leakage_test(s, y, (0.05,), alpha=min(factor * p * 3, 0.99),
                                      n_tests=3)[0]
        assert got.p_value == p and got.leak == leak, factor


# ------------------------------------------------------------------- RMIA underflow
@pytest.mark.parametrize("gap", [104.0, 200.0, 1000.0])
@pytest.mark.parametrize("offline", [False, True])
def test_rmia_with_true_class_probabilities_that_underflow(gap, offline):
    """A mislabelled record: its true-class probability is exactly 0 in float32 (and, at
    a gap of 1000, in float64) in every model but one. The attack still scores every
    example: that model's ratio is +inf online (it beats every finite ratio); where all
    underflow the ratio is 1."""
    rng = np.random.default_rng(0)
    m, n, c = 8, 60, 5
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    labels = rng.integers(0, c, n)
    z = rng.normal(size=(m, n, 2, c)).astype(np.float32)
    z[:, 0, :, (labels[0] + 1) % c] += gap
    z[3, 0, :, (labels[0] + 1) % c] -= gap  # model 3 alone gives the true class weight
    z[:, 1, :, (labels[1] + 1) % c] += gap  # every model: nothing to tell
    s = mk.rmia.leave_one_out(z, keep, labels=labels, offline=offline)
    assert np.isfinite(s).all()
    if not offline:
        # model 3's ratio on example 0 is +inf: it beats its whole population
        assert s[3, 0] == 1.0
    q = mk.signals.compute(z, labels[:, None], ["confidence"], dtype="float64")["confidence"]
    from references import rmia_leave_one_out

    np.testing.assert_allclose(s, rmia_leave_one_out(q, keep, offline=offline), atol=1e-12)


@pytest.mark.parametrize("a", [0.3, 1.0])
def test_rmia_offline_with_tiny_probabilities_equals_the_formula(a):
    """Probabilities around 1e-12 (a confident wrong model): the offline ratio
    q / (0.5 ((1 + a) mean_OUT q + (1 - a))) in float64, as written out."""
    rng = np.random.default_rng(4)
    keep = mk.shadow.balanced_keep(8, 50, seed=4)
    q = 1e-12 * rng.uniform(0.5, 2.0, size=(8, 50, 2)) * (1 + keep[..., None])
    from references import rmia_leave_one_out

    got = mk.rmia.leave_one_out(q, keep, offline=True, a=a)
    np.testing.assert_allclose(got, rmia_leave_one_out(q, keep, offline=True, a=a),
                               atol=1e-12)
    if a == 1.0:  # scale-free: the same scores at probabilities 1e11 times larger
        np.testing.assert_allclose(got, mk.rmia.leave_one_out(q * 1e11, keep, offline=True,
                                                              a=a), atol=1e-12)
    assert mk.metrics.auc(got, keep) > 0.8


def test_audit_of_a_run_with_an_underflowing_example(tmp_path):
    """A valid run in which one example's float32 true-class probability is exactly 0 in
    every reference model but not in one target: the audit completes."""
    rng = np.random.default_rng(1)
    m, n, c = 8, 80, 4
    keep = mk.shadow.balanced_keep(m, n, seed=1)
    labels = rng.integers(0, c, n)
    run = mk.shadow.create_run(tmp_path / "run", keep, labels, n_augmentations=1,
                               n_classes=c, config={"head": "linear"})
    for k in range(m):
        z = rng.normal(size=(n, 1, c)).astype(np.float32)
        z[np.arange(n), :, labels] += 2.0 * keep[k][:, None]
        if k != 2:
            z[0, :, (labels[0] + 1) % c] += 1000.0
        run.write_model(k, z)
    report = mk.audit.audit(mk.shadow.open_run(tmp_path / "run"), plot=False)
    for name in ("rmia_online", "rmia_offline"):
        assert report["attacks"][name]["excluded"] == 0
        assert 0.5 < report["attacks"][name]["auc"] <= 1.0
