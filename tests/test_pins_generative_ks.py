"""Pins of mk.generative's classifier p-value and of mk.ks' tie conventions and source
assignment (docs/methods/generative.md, ks.md; SCIENCE.md sections 5 and 12), each
against an independent reference: scipy, or the data each step reads, checked directly.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin

import miakit as mk
from miakit import generative as gen

ALTS = ("two-sided", "less", "greater")
METHODS = ("auto", "exact", "asymp")


# ------------------------------------------------------------- classifier p-value


class _SignRule(ClassifierMixin, BaseEstimator):
    """Predicts "member" when the first coordinate is negative (or, inverted, when it is
    not), whatever it is fitted on: its held-out predictions, hence the number of correct
    ones, are known in advance."""

    def __init__(self, invert: bool = False):
        self.invert = invert

    def fit(self, x, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, x):
        member = np.asarray(x)[:, 0] < 0
        return (member != self.invert).astype(np.int64)


def _planted_queries(n_right: int, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """n members and n non-members, 2-D queries; the sign rule is right on n_right of each:
    members have a negative first coordinate n_right times, non-members a positive one."""
    a = np.ones((n, 2))
    b = np.ones((n, 2))
    a[:n_right, 0] = -1.0
    b[n_right:, 0] = -1.0
    return a, b


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("n_right", [56, 60, 44, 50])
def test_classifier_pvalue_is_one_sided_accuracy_above_chance(n_right, invert):
    """Guards against: the classifier two-sample test's p-value being two-sided. The test
    is "accuracy greater than 1/2" (a classifier worse than chance is no evidence that
    members differ): the p-value is ``P(Binomial(n, 1/2) >= correct)``, near 1 below
    chance, and about half the two-sided one above it."""
    a, b = _planted_queries(n_right)
    r = gen.membership_advantage(a, b, method="classifier", classifier=_SignRule(invert),
                                 folds=4)
    n = 200  # equal sizes: no subsampling, every record predicted once
    correct = 2 * (100 - n_right if invert else n_right)
    assert (r.n_test, r.accuracy) == (n, correct / n)
    want = stats.binom.sf(correct - 1, n, 0.5)  # P(X >= correct), written out
    assert r.pvalue == pytest.approx(want, rel=1e-12)
    two_sided = stats.binomtest(correct, n, 0.5, alternative="two-sided").pvalue
    if correct != n // 2:  # the data discriminate one- from two-sided
        assert two_sided != pytest.approx(want, rel=0.3)
    assert r.advantage == pytest.approx(2 * correct / n - 1, abs=1e-15)
    lo, hi = (stats.beta.ppf(0.025, correct, n - correct + 1),
              stats.beta.ppf(0.975, correct + 1, n - correct))  # Clopper-Pearson, 95%
    assert r.ci == pytest.approx((2 * lo - 1, 2 * hi - 1), rel=1e-12)


# ------------------------------------------------------------------- K-S ties


def _scipy(a, b, alternative, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ks_2samp(a, b, alternative=alternative, method=method)


def _extremes(a, b):
    """(max(F_a - F_b), max(F_b - F_a)) over the pooled values, as scipy evaluates them
    (searchsorted / n in float64), and the same as exact integers i m - j n."""
    v = np.r_[a, b]
    i = np.searchsorted(np.sort(a), v, side="right")
    j = np.searchsorted(np.sort(b), v, side="right")
    d = i / a.size - j / b.size
    k = i * b.size - j * a.size
    return (d.max(), -d.min()), (k.max(), -k.min())


def _tied_pairs(rng, n, m, count, support=6):
    """Random small-integer samples of sizes n and m kept when the largest F_a - F_b and
    the largest F_b - F_a are equal as rationals (i m - j n): in float64 they are then
    equal, or differ in the last bits either way, which decides scipy's answer."""
    out = []
    for _ in range(100000):
        a = rng.integers(0, support, n).astype(float)
        b = rng.integers(0, support, m).astype(float)
        _, (kmax, kmin) = _extremes(a, b)
        if kmax > 0 and kmax == kmin:
            out.append((a, b))
            if len(out) == count:
                return out
    raise AssertionError(f"no ties found for sizes {n}, {m}")


def _planted_tie(rng, common, k):
    """Large samples with a planted rational tie: a common part S, k values of a just
    below everything (F_a - F_b = k / N there) and k values of b just above (F_b - F_a
    = k / N there); shuffled, so the unsorted kernel sees them in any order."""
    s = rng.normal(size=common)
    lo, hi = s.min() - 1.0, s.max() + 1.0
    a = np.r_[s, np.full(k, lo - 1.0), np.full(k, hi + 1.0)]
    b = np.r_[s, np.full(k, lo), np.full(k, hi)]
    return rng.permutation(a), rng.permutation(b)


@functools.lru_cache(maxsize=1)
def _tie_cases():
    """Tied pairs grouped by sizes (one batch per sizes), with every kind of tie present:
    exact in float64, and float64 leaning to either side (built once, fixed seed)."""
    rng = np.random.default_rng(20240607)
    cases = []
    for n, m in [(4, 4), (8, 8), (5, 5), (6, 9), (12, 8), (7, 3), (32, 32), (40, 60)]:
        cases.append(_tied_pairs(rng, n, m, 12))
    for common, k in [(1000, 7), (600, 3), (3000, 10), (960, 32)]:
        cases.append([_planted_tie(rng, common, k)])
    kinds = set()
    for pairs in cases:
        for a, b in pairs:
            (dmax, dmin), _ = _extremes(a, b)
            kinds.add("exact" if dmax == dmin else "max" if dmax > dmin else "min")
    assert kinds == {"exact", "max", "min"}  # the data cover all three
    return cases


def _assert_as_scipy(got, k, want):
    assert got.statistic[k] == want.statistic
    np.testing.assert_allclose(got.pvalue[k], want.pvalue, rtol=1e-12, atol=0)
    assert (got.statistic_location[k], got.statistic_sign[k]) == \
        (want.statistic_location, want.statistic_sign)


@pytest.mark.parametrize("alternative", ALTS)
@pytest.mark.parametrize("method", METHODS)
def test_ks_tie_between_the_extremes_reports_scipys_location_and_sign(alternative, method):
    """Guards against: a tie between the largest F - G and the largest G - F (or a near
    tie in float64) reporting another location or sign than ``scipy.stats.ks_2samp``:
    scipy takes the minimum side only when it is strictly larger in float64, and the
    first value attaining the extreme. Checked for batches, ragged groups, one pair, and
    the sorted merge that CUDA tensors use."""
    from miakit.ks import _finish, _merge

    for pairs in _tie_cases():
        a = np.stack([p[0] for p in pairs])
        b = np.stack([p[1] for p in pairs])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = mk.ks.ks_2samp(a, b, alternative=alternative, method=method)
            ga = np.repeat(np.arange(len(pairs)), a.shape[1])
            gb = np.repeat(np.arange(len(pairs)), b.shape[1])
            ids, grouped = mk.ks.ks_2samp_groups(a.ravel(), ga, b.ravel(), gb,
                                                 alternative=alternative, method=method)
            single = mk.ks.ks_2samp(a[0], b[0], alternative=alternative, method=method)
            # the sorted merge (the CUDA path's steps, run here on the CPU)
            rows, n, m = a.shape[0], a.shape[1], b.shape[1]
            merged = _finish(*_merge(np.sort(a, 1).ravel(), np.arange(rows + 1) * n,
                                     np.sort(b, 1).ravel(), np.arange(rows + 1) * m),
                             n, m, alternative, method, lambda i, a=a, b=b: (a[i], b[i]))
        assert ids.tolist() == list(range(len(pairs)))
        for k, (x, y) in enumerate(pairs):
            want = _scipy(x, y, alternative, method)
            _assert_as_scipy(got, k, want)
            _assert_as_scipy(grouped, k, want)
            _assert_as_scipy(merged, k, want)
            if k == 0:
                one = mk.ks.KS2Result(*(np.atleast_1d(v) for v in (
                    single.statistic, single.pvalue, single.statistic_location,
                    single.statistic_sign)))
                _assert_as_scipy(one, 0, want)


@pytest.mark.cuda
@pytest.mark.skipif(not mk.backend_info()["cuda_available"],
                    reason="needs a CUDA GPU and a miakit build with CUDA kernels")
@pytest.mark.parametrize("alternative", ALTS)
def test_ks_ties_on_cuda_tensors_report_scipys_location_and_sign(alternative):
    """Guards against: the CUDA path (sorted merge on the device) breaking a tie between
    the two extremes differently from scipy (skipped without a CUDA device)."""
    torch = pytest.importorskip("torch")
    for pairs in _tie_cases():
        a = np.stack([p[0] for p in pairs])
        b = np.stack([p[1] for p in pairs])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = mk.ks.ks_2samp(torch.tensor(a, device="cuda"),
                                 torch.tensor(b, device="cuda"), alternative=alternative)
        for k, (x, y) in enumerate(pairs):
            _assert_as_scipy(got, k, _scipy(x, y, alternative, "auto"))


def test_membership_advantage_on_a_tie_follows_scipys_extreme():
    """Guards against: the K-S membership advantage on a tie between "members small" and
    "members large" reporting the other rule than scipy's statistic_location/sign (64
    values per sample: every CDF value k / 64 is exact in float64, so the tie is exact).
    Both rules have the same advantage; the convention is scipy's (the F_a - F_b side)."""
    s = np.linspace(1.1, 1.9, 48)
    a = np.r_[np.zeros(8), s, np.full(8, 3.0)]  # members: 8 far below, 8 far above
    b = np.r_[np.ones(8), s, np.full(8, 2.0)]  # non-members: 8 just below, 8 just above
    (dmax, dmin), _ = _extremes(a, b)
    assert dmax == dmin == 8 / 64
    want = stats.ks_2samp(a, b)
    assert (want.statistic_location, want.statistic_sign) == (0.0, 1)
    r = gen.membership_advantage(a, b)
    assert (r.advantage, r.threshold, r.direction) == (8 / 64, 0.0, "<=")
    assert (r.tpr, r.fpr) == (8 / 64, 0.0)
    assert r.pvalue == pytest.approx(want.pvalue, rel=1e-12)


# ------------------------------------------------------------- source assignment


def _ks_distance(x, r):
    """sup |F_x - F_r| over the pooled values, written out in scipy's float64 arithmetic
    (counts of values <= t over the sizes, then the difference), so that near ties
    between the two references break as scipy's (and miakit's) distances break them."""
    v = np.r_[x, r]
    d = (x[None, :] <= v[:, None]).sum(1) / x.size - (r[None, :] <= v[:, None]).sum(1) / r.size
    return float(max(d.max(), -d.min()))


def test_source_accuracy_compares_query_halves_with_disjoint_reference_halves(monkeypatch,
                                                                               rng):
    """Guards against: source_accuracy's reference half and query half of a source
    overlapping (a value compared with a reference holding itself, which inflates the
    accuracy) or not covering the source. Every call to ``mk.ks.assign_source`` (the step
    that compares sets with references) is recorded: the reference halves must be the
    same disjoint halves throughout, every set must be m distinct values of the other
    half of one source, the whole query half must be used, and the accuracy must be the
    share of sets whose K-S distance (written out here) to their own source's reference
    half is the smaller (ties go to b)."""
    src_a = rng.normal(size=61)  # odd: halves of 30 and 31
    src_b = rng.normal(0.4, 1.0, size=50)
    assert np.unique(np.r_[src_a, src_b]).size == 111  # every value names its record
    calls = []
    real = mk.ks.assign_source

    def spy(samples, source_a, source_b):
        calls.append((np.array(samples), np.array(source_a), np.array(source_b)))
        return real(samples, source_a, source_b)

    monkeypatch.setattr(mk.ks, "assign_source", spy)
    sizes, n_trials = [1, 3, 10, 25], 150
    r = mk.ks.source_accuracy(src_a, src_b, sizes=sizes, n_trials=n_trials, seed=3)
    assert r["sizes"] == sizes and r["n_trials"] == n_trials
    ref_a, ref_b = calls[0][1], calls[0][2]
    assert ref_a.size == 30 and ref_b.size == 25
    assert np.isin(ref_a, src_a).all() and np.isin(ref_b, src_b).all()
    assert np.unique(ref_a).size == 30 and np.unique(ref_b).size == 25
    query = {0: np.setdiff1d(src_a, ref_a), 1: np.setdiff1d(src_b, ref_b)}
    seen = {0: set(), 1: set()}
    right = {}  # (m, source) -> sets assigned to their own source
    for sets, ra, rb in calls:
        assert np.array_equal(ra, ref_a) and np.array_equal(rb, ref_b)  # same halves
        m = sets.shape[1]
        truth = 0 if np.isin(sets, src_a).all() else 1  # whose values (distinct values)
        assert sets.shape == (n_trials, m) and (m, truth) not in right
        # the set is drawn from its source's query half: never a reference value
        foreign = ~np.isin(sets, query[truth])
        assert not foreign.any(), f"m={m}: {int(foreign.sum())} drawn values not in the " \
                                  "query half (reference values, or the other source's)"
        assert all(np.unique(row).size == m for row in sets)  # without replacement
        seen[truth].update(sets.ravel().tolist())
        # the assignment, recomputed: nearer to a's reference half, strictly
        right[m, truth] = sum((_ks_distance(row, ref_a) < _ks_distance(row, ref_b))
                              == (truth == 0) for row in sets)
    assert sorted(right) == [(m, s) for m in sizes for s in (0, 1)]  # one call each
    assert seen[0] == set(query[0].tolist()) and seen[1] == set(query[1].tolist())
    for i, m in enumerate(sizes):
        assert r["accuracy"][i] == (right[m, 0] + right[m, 1]) / (2 * n_trials)
    # the distance written out is scipy's
    for row in calls[-1][0][:5]:
        assert _ks_distance(row, ref_a) == stats.ks_2samp(row, ref_a, method="asymp").statistic
