"""miakit.metrics against scikit-learn, scipy and brute-force references
(docs/methods/metrics.md), and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import references as ref
import scipy.stats
import torch
from sklearn.metrics import roc_auc_score, roc_curve

import miakit as mk


def dataset(rng, n_pos, n_neg, kind):
    """Scores with a membership signal: continuous, heavily tied, or all equal."""
    y = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    rng.shuffle(y)
    if kind == "continuous":
        s = rng.normal(size=y.size) + 1.0 * y
    elif kind == "ties":
        s = rng.integers(0, 6, size=y.size) + 2 * y * (rng.random(y.size) < 0.5)
        s = s.astype(np.float64)
    elif kind == "few-values":
        s = np.where(y, rng.choice([0.5, 1.0], size=y.size), rng.choice([0.0, 0.5], size=y.size))
    else:  # constant
        s = np.full(y.size, 3.0)
    return s, y


KINDS = ["continuous", "ties", "few-values", "constant"]
SIZES = [(1, 1), (1, 7), (9, 2), (50, 50), (123, 457)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_pos, n_neg", SIZES)
def test_roc_matches_sklearn(n_pos, n_neg, kind, rng):
    s, y = dataset(rng, n_pos, n_neg, kind)
    fpr, tpr, thr = mk.metrics.roc(s, y)
    want_fpr, want_tpr, want_thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, want_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, want_tpr, rtol=0, atol=1e-15)
    assert thr[0] == np.inf
    np.testing.assert_array_equal(thr[1:], want_thr[1:])
    # and against the brute-force points
    pts = ref.roc_points(s, y)
    np.testing.assert_array_equal(fpr, [p[0] / n_neg for p in pts])
    np.testing.assert_array_equal(tpr, [p[1] / n_pos for p in pts])
    np.testing.assert_array_equal(thr, [p[2] for p in pts])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_pos, n_neg", SIZES)
def test_auc_matches_sklearn_and_pairs(n_pos, n_neg, kind, rng):
    s, y = dataset(rng, n_pos, n_neg, kind)
    got = mk.metrics.auc(s, y)
    assert isinstance(got, float)
    assert got == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got == pytest.approx(ref.auc_pairs(s, y), abs=1e-12)
    if kind == "constant":
        assert got == 0.5


def test_auc_perfect_and_reversed():
    y = np.array([0, 0, 1, 1])
    assert mk.metrics.auc([1.0, 2.0, 3.0, 4.0], y) == 1.0
    assert mk.metrics.auc([4.0, 3.0, 2.0, 1.0], y) == 0.0
    assert mk.metrics.auc([1.0, 3.0, 3.0, 4.0], y) == pytest.approx(0.875)


FPRS = [1e-3, 0.01, 0.05, 0.1, 0.25, 0.29, 0.5, 0.57, 0.999]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_pos, n_neg", [(1, 1), (9, 2), (50, 100), (123, 457), (300, 1000)])
def test_tpr_at_fpr_matches_brute_force(n_pos, n_neg, kind, rng):
    s, y = dataset(rng, n_pos, n_neg, kind)
    for f in FPRS:
        r = mk.metrics.tpr_at_fpr(s, y, fpr=f)
        tpr, fpr, tp, fp, thr, npos, nneg = ref.tpr_at_fpr(s, y, f)
        assert (r.tp, r.fp, r.n_pos, r.n_neg) == (tp, fp, npos, nneg), f
        assert r.tpr == tpr and r.fpr == fpr and r.threshold == thr
        assert r.fpr <= f
        assert r.target_fpr == f and r.level == 0.95
        # resolvable: a false positive fits the budget, and the top tie group's
        # non-members do too (else the score calls nothing at this budget)
        top_group_neg = int((s[~y] == s.max()).sum())
        assert r.resolvable == (1 / n_neg <= f and top_group_neg / n_neg <= f)
        assert bool(r.unresolvable_reason) == (not r.resolvable)
        np.testing.assert_allclose(r.ci, ref.clopper_pearson(tp, npos), rtol=1e-8, atol=1e-11)
        np.testing.assert_allclose(r.fpr_ci, ref.clopper_pearson(fp, nneg), rtol=1e-8,
                                   atol=1e-11)
        assert r.ci[0] <= r.tpr <= r.ci[1]


@pytest.mark.parametrize("f", [0.07, 0.29, 0.57, 0.58, 0.13])
def test_tpr_at_fpr_budget_exactly_met(f):
    """An operating point whose FPR equals the budget is allowed (FPR <= f), as the ROC
    curve returned by roc() shows it."""
    n_neg = 100
    k = int(round(f * n_neg))
    y = np.r_[np.ones(10, bool), np.zeros(n_neg, bool)]
    # members score 1..10 above every non-member except k non-members that tie above them
    s = np.r_[np.linspace(5.0, 6.0, 10), np.r_[np.full(k, 10.0), np.zeros(n_neg - k)]]
    r = mk.metrics.tpr_at_fpr(s, y, fpr=f)
    fpr_curve, tpr_curve, _ = mk.metrics.roc(s, y)
    best = tpr_curve[fpr_curve <= f].max()
    assert r.tpr == best == 1.0
    assert r.fp == k and r.fpr == k / n_neg


def test_tpr_at_fpr_example_by_hand():
    # thresholds: 0.9 (tp 1), 0.8 (fp 1), 0.7 (tp 2), 0.6 (tp 3, fp 2 tied), 0.1 (fp 3)
    s = [0.9, 0.8, 0.7, 0.6, 0.6, 0.6, 0.1]
    y = [1, 0, 1, 1, 0, 0, 0]
    r = mk.metrics.tpr_at_fpr(s, y, fpr=0.25)
    assert (r.tp, r.fp, r.threshold) == (2, 1, 0.7)
    assert r.tpr == pytest.approx(2 / 3) and r.fpr == 0.25
    r = mk.metrics.tpr_at_fpr(s, y, fpr=0.2)  # the tie at 0.6 moves together: cannot split
    assert (r.tp, r.fp, r.threshold) == (1, 0, 0.9)
    assert not r.resolvable
    r = mk.metrics.tpr_at_fpr(s, y, fpr=0.75)
    assert (r.tp, r.fp, r.threshold) == (3, 3, 0.6)


@pytest.mark.parametrize("level", [0.5, 0.9, 0.95, 0.99])
def test_clopper_pearson_matches_binomtest(level):
    for n in (1, 2, 7, 100, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            got = mk.metrics.clopper_pearson(k, n, level)
            # binomtest finds the bounds by root finding, to about 1e-12
            np.testing.assert_allclose(got, ref.clopper_pearson(k, n, level), rtol=1e-8,
                                       atol=1e-11)
        # closed forms at the edges: P(X >= 1) = alpha / 2 and P(X = 0 or n) = alpha / 2
        half = (1 - level) / 2
        assert mk.metrics.clopper_pearson(0, n, level) == pytest.approx(
            (0.0, 1 - half ** (1 / n)), rel=1e-12)
        assert mk.metrics.clopper_pearson(n, n, level) == pytest.approx(
            (half ** (1 / n), 1.0), rel=1e-12)
        assert mk.metrics.clopper_pearson(1, n, level)[0] == pytest.approx(
            -np.expm1(np.log1p(-half) / n), rel=1e-12)


def test_tpr_at_fpr_level_changes_the_interval(rng):
    s, y = dataset(rng, 100, 500, "continuous")
    r90 = mk.metrics.tpr_at_fpr(s, y, fpr=0.05, level=0.9)
    r99 = mk.metrics.tpr_at_fpr(s, y, fpr=0.05, level=0.99)
    assert r90.tp == r99.tp
    assert r99.ci[0] <= r90.ci[0] and r90.ci[1] <= r99.ci[1]
    np.testing.assert_allclose(r99.ci, ref.clopper_pearson(r99.tp, 100, 0.99), rtol=1e-8)


def test_resolvable_flag():
    y = np.r_[np.ones(10, bool), np.zeros(500, bool)]
    s = np.arange(y.size, dtype=float)
    assert not mk.metrics.tpr_at_fpr(s, y, fpr=1e-3).resolvable  # 0.5 false positives allowed
    assert mk.metrics.tpr_at_fpr(s, y, fpr=2e-3).resolvable  # exactly one
    assert mk.metrics.tpr_at_fpr(s, y, fpr=0.01).resolvable


def test_inputs_of_any_matching_shape_and_type(rng):
    s, y = dataset(rng, 40, 60, "ties")
    s2, y2 = s.reshape(10, 10), y.reshape(10, 10)
    want_auc = roc_auc_score(y, s)
    assert mk.metrics.auc(s2, y2) == pytest.approx(want_auc, abs=1e-12)
    assert mk.metrics.auc(torch.from_numpy(s2), torch.from_numpy(y2)) == pytest.approx(
        want_auc, abs=1e-12)
    assert mk.metrics.auc(s.astype(np.float32), y.astype(np.int64)) == pytest.approx(
        roc_auc_score(y, s.astype(np.float32)), abs=1e-12)
    assert mk.metrics.auc(list(s), list(y.astype(float))) == pytest.approx(want_auc, abs=1e-12)
    assert mk.metrics.auc(s.astype(np.int64), y) == pytest.approx(want_auc, abs=1e-12)
    r = mk.metrics.tpr_at_fpr(torch.from_numpy(s).float(), torch.from_numpy(y), fpr=0.1)
    assert (r.tp, r.fp) == ref.tpr_at_fpr(s, y, 0.1)[2:4]
    fpr, tpr, _ = mk.metrics.roc(s[::-1], y[::-1])  # negative strides
    wf, wt, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, wf, atol=1e-15)
    np.testing.assert_allclose(tpr, wt, atol=1e-15)


def test_leave_one_out_scores_judged_with_keep(rng):
    m, n = 8, 40
    keep = mk.shadow.balanced_keep(m, n, seed=1)
    s = rng.normal(size=(m, n, 2)) + 2.0 * keep[:, :, None]
    loo = mk.lira.leave_one_out(s, keep)
    assert mk.metrics.auc(loo, keep) == pytest.approx(roc_auc_score(keep.ravel(), loo.ravel()))
    r = mk.metrics.tpr_at_fpr(loo, keep, fpr=0.05)
    assert (r.tp, r.fp) == ref.tpr_at_fpr(loo, keep, 0.05)[2:4]


# -------------------------------------------------------------------------- bad input
FUNCS = [mk.metrics.roc, mk.metrics.auc, mk.metrics.tpr_at_fpr]


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_scores_raise(func, bad):
    s = np.array([0.1, 0.5, bad, 0.3])
    with pytest.raises(ValueError, match="scores.*finite"):
        func(s, [1, 0, 1, 0])


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("members", [np.ones(5, bool), np.zeros(5, bool), np.ones(5),
                                     np.zeros(5, np.int64)])
def test_members_all_one_class_raise(func, members):
    with pytest.raises(ValueError, match="members.*both members and non-members"):
        func(np.arange(5.0), members)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("mshape", [(4,), (6,), (5, 1), (1, 5)])
def test_members_shape_mismatch_raise(func, mshape):
    members = np.zeros(mshape, bool)
    members.flat[0] = True
    with pytest.raises(ValueError, match="members.*shape"):
        func(np.arange(5.0), members)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("members", [np.array([0, 1, 2, 0]), np.array([0.0, 0.5, 1.0, 1.0]),
                                     np.array([-1, 0, 1, 1]), np.array(["a", "b", "a", "b"])])
def test_members_not_boolean_like_raise(func, members):
    with pytest.raises(ValueError, match="members"):
        func(np.arange(4.0), members)


@pytest.mark.parametrize("func", FUNCS)
def test_non_real_scores_raise(func):
    with pytest.raises(TypeError, match="scores"):
        func(np.array(["a", "b"]), [0, 1])
    with pytest.raises(TypeError, match="scores"):
        func(np.array([1 + 1j, 2]), [0, 1])


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1, 1.5, np.nan, np.inf])
def test_fpr_outside_open_unit_interval_raise(fpr):
    with pytest.raises(ValueError, match=r"fpr.*\(0, 1\)"):
        mk.metrics.tpr_at_fpr([0.1, 0.2], [0, 1], fpr=fpr)


@pytest.mark.parametrize("fpr", ["small", None, [0.1]])
def test_fpr_not_a_number_raise(fpr):
    with pytest.raises(TypeError, match="fpr"):
        mk.metrics.tpr_at_fpr([0.1, 0.2], [0, 1], fpr=fpr)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.5])
def test_level_outside_unit_interval_raise(level):
    with pytest.raises(ValueError, match="level"):
        mk.metrics.tpr_at_fpr([0.1, 0.2], [0, 1], fpr=0.5, level=level)


@pytest.mark.parametrize("k, n, name", [(0, 0, "n"), (3, 2, "k"), (-1, 5, "k")])
def test_clopper_pearson_bad_counts_raise(k, n, name):
    with pytest.raises(ValueError, match=name):
        mk.metrics.clopper_pearson(k, n)


# ===================================================================== clustered intervals
def _clustered_null(rng, m, n, sd_example, shift=0.0):
    """Leave-one-out-like pooled scores: one row per target, a shared offset per example."""
    keep = rng.random((m // 2, n)) < 0.5
    keep = np.concatenate([keep, ~keep])
    s = rng.normal(size=n)[None] * sd_example + rng.normal(size=(m, n)) + shift * keep
    return s, keep


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_clustered_proportion_matches_reference(alternative, rng):
    for n_clusters in (1, 2, 7, 300):
        n = rng.integers(0, 9, size=n_clusters)
        n[0] = max(n[0], 1)
        k = rng.binomial(n, rng.uniform(0, 0.4, size=n_clusters))
        got = mk.metrics.clustered_proportion_ci(k, n, 0.9, alternative)
        lo, hi, deff = ref.korn_graubard(k, n, 0.9, alternative)
        assert got.estimate == pytest.approx(k.sum() / n.sum(), rel=1e-15)
        np.testing.assert_allclose(got.ci, (lo, hi), rtol=1e-10, atol=1e-15)
        assert got.design_effect == pytest.approx(deff, rel=1e-12)


def test_clustered_proportion_without_excess_variance_is_clopper_pearson():
    # singleton clusters: the variance estimate is binomial times C / (C - 1)
    k = np.r_[np.ones(30, int), np.zeros(70, int)]
    r = mk.metrics.clustered_proportion_ci(k, np.ones(100, int))
    assert r.design_effect == pytest.approx(100 / 99, rel=1e-12)
    np.testing.assert_allclose(r.ci, ref.clopper_pearson(30, 100), rtol=0.02)
    # clusters of two with one success each: no excess variance, the exact interval
    r = mk.metrics.clustered_proportion_ci(np.ones(50, int), np.full(50, 2))
    assert r.design_effect == 1.0
    np.testing.assert_allclose(r.ci, ref.clopper_pearson(50, 100), rtol=1e-12)
    for k0 in (0, 100):
        r = mk.metrics.clustered_proportion_ci(np.full(100, k0 // 100), np.ones(100, int))
        np.testing.assert_allclose(r.ci, ref.clopper_pearson(k0, 100), rtol=1e-12)


def test_clustered_proportion_rejects_bad_counts():
    with pytest.raises(ValueError, match="k, n"):
        mk.metrics.clustered_proportion_ci([3], [2])
    with pytest.raises(ValueError, match="k, n"):
        mk.metrics.clustered_proportion_ci([1, 2], [2])
    with pytest.raises(ValueError, match="at least one trial"):
        mk.metrics.clustered_proportion_ci([0, 0], [0, 0])
    with pytest.raises(ValueError, match="alternative"):
        mk.metrics.clustered_proportion_ci([1], [2], alternative="both")


def test_clustered_intervals_cover_at_the_nominal_level():
    """Pooled leave-one-out-like scores with a strong per-example offset: the
    Korn-Graubard interval of the TPR at the threshold of FPR 1% covers the true TPR at
    that threshold about 95% of the time; the binomial interval does not."""
    from scipy import stats as st

    m, n, sd, shift, reps = 16, 1500, 3.0, 0.4, 300
    cover = naive = 0
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        s, keep = _clustered_null(rng, m, n, sd, shift)
        r = mk.metrics.tpr_at_fpr(s, keep, fpr=0.01, clusters=np.arange(n))
        truth = st.norm.sf((r.threshold - shift) / np.sqrt(1 + sd * sd))
        cover += r.ci[0] <= truth <= r.ci[1]
        lo, hi = mk.metrics.tpr_at_fpr(s, keep, fpr=0.01, clusters=None).ci
        naive += lo <= truth <= hi
    lo, hi = ref.clopper_pearson(cover, reps, 0.99)
    assert lo <= 0.95 <= hi, cover / reps
    assert naive / reps < 0.85


def test_auc_ci_matches_the_clustered_reference(rng):
    s, keep = _clustered_null(rng, 6, 40, 2.0, 0.5)
    s[0, :5] = s[1, :5]  # ties
    cl = np.broadcast_to(np.arange(40), s.shape)
    got = mk.metrics.auc_ci(s, keep, clusters=np.arange(40))
    a, se = ref.auc_se_clustered(s, keep, cl)
    assert got.auc == pytest.approx(a, rel=1e-12)
    assert got.auc == pytest.approx(ref.auc_pairs(s, keep), rel=1e-12)
    assert got.se == pytest.approx(se, rel=1e-10)
    assert got.n_clusters == 40
    single = mk.metrics.auc_ci(s, keep, clusters=None)
    _, se1 = ref.auc_se_clustered(s, keep, np.arange(s.size))
    assert single.se == pytest.approx(se1, rel=1e-10) and single.n_clusters == s.size


def test_auc_standard_error_agrees_with_a_cluster_bootstrap():
    rng = np.random.default_rng(1)
    s, keep = _clustered_null(rng, 8, 600, 2.0, 0.3)
    se = mk.metrics.auc_ci(s, keep, clusters=np.arange(600)).se
    boots = []
    for _ in range(300):
        cols = rng.integers(0, 600, size=600)
        boots.append(mk.metrics.auc(s[:, cols], keep[:, cols]))
    assert se == pytest.approx(np.std(boots), rel=0.15)


def test_leakage_test_null_rate_and_power():
    """Family-wise error at most alpha on clustered null data over seeds; a planted
    leak in 2% of the examples (AUC near 0.5) is found at low FPR."""
    fprs = (0.1, 0.01, 0.001)
    declared = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        s, keep = _clustered_null(rng, 8, 2000, 3.0)
        declared += any(p.leak for p in mk.metrics.leakage_test(
            s, keep, fprs, clusters=np.arange(2000), alpha=0.1))
    assert declared <= 12  # alpha = 0.1: P(X >= 13 | n = 60, p = 0.1) < 1%
    rng = np.random.default_rng(0)
    s, keep = _clustered_null(rng, 8, 5000, 0.0)
    weak = np.zeros(5000, bool)
    weak[:100] = True
    s += 6.0 * (keep & weak)
    pts = mk.metrics.leakage_test(s, keep, fprs, clusters=np.arange(5000))
    assert mk.metrics.auc(s, keep) < 0.52
    low = [p for p in pts if p.target_fpr == 0.001][0]
    assert low.leak and low.tpr_lower > low.fpr_upper and low.alpha_each == 0.05 / 3
    assert low.min_detectable_tpr < low.tpr


def test_tpr_at_fpr_with_singleton_clusters_keeps_the_exact_interval(rng):
    s = rng.normal(size=400)
    y = rng.random(400) < 0.5
    a = mk.metrics.tpr_at_fpr(s, y, fpr=0.1)
    b = mk.metrics.tpr_at_fpr(s, y, fpr=0.1, clusters=np.arange(400))
    assert (a.tp, a.fp, a.threshold) == (b.tp, b.fp, b.threshold)
    assert b.ci[0] <= a.tpr <= b.ci[1]
    with pytest.raises(ValueError, match="clusters"):
        mk.metrics.tpr_at_fpr(s, y, fpr=0.1, clusters=np.arange(3))
    with pytest.raises(TypeError, match="clusters"):
        mk.metrics.tpr_at_fpr(s, y, fpr=0.1, clusters=np.zeros(400))


def test_clustered_roc_variances_are_those_of_each_threshold(rng):
    s, keep = _clustered_null(rng, 6, 50, 2.0, 0.5)
    s = np.round(s, 1)  # ties
    thr, tp, fp, vt, vf, (cp, cn) = mk.metrics.clustered_roc(s, keep, np.arange(50))
    fpr, tpr, thr2 = mk.metrics.roc(s, keep)
    np.testing.assert_array_equal(thr, thr2)
    np.testing.assert_array_equal(tp / keep.sum(), tpr)
    np.testing.assert_array_equal(fp / (~keep).sum(), fpr)
    for i in range(0, thr.size, 7):
        hit = s >= thr[i]
        for k, n, v, c in (((hit & keep).sum(0), keep.sum(0), vt[i], cp),
                           ((hit & ~keep).sum(0), (~keep).sum(0), vf[i], cn)):
            used = n > 0
            p = k.sum() / n.sum()
            want = used.sum() / (used.sum() - 1) * ((k - p * n)[used] ** 2).sum() / n.sum() ** 2
            assert v == pytest.approx(want, rel=1e-9, abs=1e-15) and c == used.sum()


# ------------------------------------------------- the compiled ranking (RankedScores)
@pytest.mark.parametrize("n,levels,n_clusters", [
    (2, None, None), (3, 2, None), (101, None, 7), (257, 5, 40), (1000, 30, 1),
    (4097, None, 300), (5000, 3, None),
])
def test_ranked_scores_match_the_numpy_ranking(n, levels, n_clusters):
    rng = np.random.default_rng(n)
    s = rng.normal(size=n) if levels is None else rng.integers(0, levels, n) - levels / 2
    s = s.astype(np.float64)
    y = rng.random(n) < 0.4
    y[0], y[-1] = True, False
    c = None if n_clusters is None else rng.integers(0, n_clusters, n)
    r = mk.metrics.RankedScores(s, y, c)
    thr, tp, fp, vt, vf, se = ref.ranked_roc(s, y, c)
    np.testing.assert_array_equal(r.thresholds, thr)
    np.testing.assert_array_equal(r.tp, tp)
    np.testing.assert_array_equal(r.fp, fp)
    gt, gf, _ = r.cluster_variances()
    np.testing.assert_allclose(gt, vt, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(gf, vf, rtol=1e-12, atol=1e-300)
    got = r.auc_ci()
    assert got.auc == ref.auc_pairs(s, y)
    assert r.youden_point == int(np.argmax(tp / tp[-1] - fp / fp[-1]))
    np.testing.assert_allclose(got.se, se, rtol=1e-9)
    assert got.n_clusters == (len(np.unique(c)) if c is not None else n)


def test_ranked_scores_signed_zero_extremes_and_order():
    # -0.0 and +0.0 are one score; the extremes of float64 sort correctly; ties keep
    # their input order (a stable descending sort)
    s = np.array([0.0, -0.0, 1e308, -1e308, 5e-324, -5e-324, 0.0, 2.0, -2.0, 1e308])
    y = np.array([1, 0, 1, 0, 0, 1, 1, 0, 1, 0], dtype=bool)
    r = mk.metrics.RankedScores(s, y)
    thr, tp, fp, *_ = ref.ranked_roc(s, y)
    np.testing.assert_array_equal(r.tp, tp)
    np.testing.assert_array_equal(r.fp, fp)
    np.testing.assert_array_equal(r.thresholds, thr)  # -0.0 == 0.0 compares equal
    assert r.thresholds.size == 8  # 0.0 and -0.0 are one group


def test_ranked_scores_large_against_sorting():
    # a size where the radix sort's passes and threads all take part
    rng = np.random.default_rng(3)
    s = np.round(rng.normal(size=300_000), 3)
    y = rng.random(s.size) < 0.5
    r = mk.metrics.RankedScores(s, y)
    order = np.argsort(-s, kind="stable")
    last = np.r_[np.nonzero(np.diff(s[order]))[0], s.size - 1]
    np.testing.assert_array_equal(r.tp[1:], np.cumsum(y[order])[last])
    np.testing.assert_array_equal(r.thresholds[1:], s[order][last])


def _large_scores(kind, rng, n):
    if kind == "exponents":  # bunched by exponent, both signs
        return rng.normal(size=n) * 10.0 ** rng.integers(-3, 4, n)
    if kind == "one_big_bucket":  # most keys share their top bits
        s = np.ones(n)
        s[: n // 10] = rng.normal(size=n // 10)
        return rng.permutation(s + (rng.random(n) < 0.5) * 2.0**-40)
    if kind == "low_bits":  # keys that differ only in their last few bits
        return 1.0 + rng.integers(0, 5000, n) * np.finfo(np.float64).eps
    if kind == "extremes":  # huge range, signed zeros, subnormals, infinities excluded
        s = np.exp(rng.uniform(-700, 700, n)) * rng.choice([-1.0, 1.0], n)
        s[rng.random(n) < 0.01] = 0.0
        s[rng.random(n) < 0.01] = -0.0
        s[rng.random(n) < 0.01] = 5e-324
        return s
    if kind == "two_values":
        return rng.choice([-1.5, 2.5], n)
    return np.full(n, 0.25)  # all equal


@pytest.mark.parametrize("kind", ["exponents", "one_big_bucket", "low_bits", "extremes",
                                  "two_values", "all_equal"])
@pytest.mark.parametrize("n", [40_000, 250_001])
def test_ranked_scores_large_distributions(kind, n):
    """Sizes and key distributions that take the sort through its dealing into buckets,
    buckets sorted in the cache, buckets dealt again, and single buckets."""
    rng = np.random.default_rng(n + len(kind))
    s = _large_scores(kind, rng, n)
    y = rng.random(n) < 0.3
    c = rng.integers(0, 997, n)
    r = mk.metrics.RankedScores(s, y, c)
    order = np.argsort(-(s + 0.0), kind="stable")
    ss = s[order]
    last = np.r_[np.nonzero(ss[1:] != ss[:-1])[0], n - 1]
    np.testing.assert_array_equal(r.thresholds[1:], ss[last])
    np.testing.assert_array_equal(r.tp[1:], np.cumsum(y[order])[last])
    np.testing.assert_array_equal(r.fp[1:], np.cumsum(~y[order])[last])
    ranks = scipy.stats.rankdata(s)  # ties share their mean rank: exact halves
    n_pos = int(y.sum())
    want = (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos))
    assert r.auc() == pytest.approx(want, rel=1e-13)


@pytest.mark.parametrize("m,n", [(1, 5), (3, 1), (7, 33), (16, 500)])
def test_ranking_by_columns_equals_masked_ranking_with_example_clusters(m, n):
    rng = np.random.default_rng(m * n)
    s = np.round(rng.normal(size=(m, n)), 1)
    s[rng.random((m, n)) < 0.1] = np.nan
    s[0, 0] = np.inf
    keep = rng.random((m, n)) < 0.5
    keep[0, -1], keep[-1, -1] = True, False
    s[0, -1], s[-1, -1] = 0.5, -0.5
    ok = np.isfinite(s)
    cols = np.broadcast_to(np.arange(n), (m, n))
    want = mk.metrics.RankedScores(s[ok], keep[ok], cols[ok])
    got = mk.metrics.RankedScores.by_columns(s, keep)
    assert got.excluded == int((~ok).sum())
    np.testing.assert_array_equal(got.thresholds, want.thresholds)
    np.testing.assert_array_equal(got.tp, want.tp)
    np.testing.assert_array_equal(got.fp, want.fp)
    for a, b in zip(got.cluster_variances(), want.cluster_variances()):
        np.testing.assert_array_equal(a, b)
    ga, wa = got.auc_ci(), want.auc_ci()
    assert ga.auc == wa.auc and ga.n_clusters == wa.n_clusters
    np.testing.assert_array_equal([ga.se, *ga.ci], [wa.se, *wa.ci])  # NaN with one cluster
    with pytest.raises(ValueError, match="members: expected both"):
        mk.metrics.RankedScores.by_columns(np.where(keep, np.nan, s), keep)
    with pytest.raises(ValueError, match="scores: expected a non-empty 2-D"):
        mk.metrics.RankedScores.by_columns(s.ravel(), keep.ravel())
