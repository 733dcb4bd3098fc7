"""miakit.ks against scipy.stats.ks_2samp (every alternative and method, ties) and
brute-force references (docs/methods/ks.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import miakit as mk
from miakit import _C

ALTS = ("two-sided", "less", "greater")
METHODS = ("auto", "exact", "asymp")


def _scipy(a, b, alternative, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ks_2samp(a, b, alternative=alternative, method=method)


@pytest.mark.parametrize("alternative", ALTS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n,m", [(1, 1), (1, 7), (5, 5), (13, 8), (40, 100), (300, 300)])
def test_batched_equals_scipy_pair_by_pair(alternative, method, n, m, rng):
    a = np.round(rng.normal(size=(6, n)), 1)  # ties within and across samples
    b = np.round(rng.normal(0.3, 1.2, size=(6, m)), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = mk.ks.ks_2samp(a, b, alternative=alternative, method=method)
    for i in range(6):
        want = _scipy(a[i], b[i], alternative, method)
        assert got.statistic[i] == want.statistic
        # (scipy's asymptotic two-sided p-value of 1 vs 1 values is NaN: so is ours)
        np.testing.assert_allclose(got.pvalue[i], want.pvalue, rtol=1e-12, atol=0)
        assert got.statistic_location[i] == want.statistic_location
        assert got.statistic_sign[i] == want.statistic_sign


def test_broadcasting_axis_and_identical_samples(rng):
    a = rng.normal(size=(3, 4, 20))
    b = rng.normal(size=25)
    got = mk.ks.ks_2samp(a, b)
    assert got.statistic.shape == (3, 4)
    assert got.pvalue[1, 2] == stats.ks_2samp(a[1, 2], b).pvalue
    moved = mk.ks.ks_2samp(np.moveaxis(a, -1, 0), b, axis=0)
    np.testing.assert_array_equal(moved.statistic, got.statistic)
    same = mk.ks.ks_2samp(a[0, 0], a[0, 0])
    assert same.statistic == 0.0 and same.pvalue == 1.0


def test_groups_equal_the_dense_call(rng):
    va = rng.normal(size=200)
    ga = rng.integers(0, 7, 200)
    vb = np.round(rng.normal(0.5, size=150), 1)
    gb = rng.integers(2, 9, 150)
    ids, got = mk.ks.ks_2samp_groups(va, ga, vb, gb, alternative="less")
    assert ids.tolist() == [2, 3, 4, 5, 6]
    for k, g in enumerate(ids):
        want = stats.ks_2samp(va[ga == g], vb[gb == g], alternative="less")
        assert got.statistic[k] == want.statistic
        assert got.pvalue[k] == pytest.approx(want.pvalue, rel=1e-12)
    with pytest.raises(ValueError, match="no group"):
        mk.ks.ks_2samp_groups(va, np.zeros(200, int), vb, np.ones(150, int))


def test_bad_input_names_the_argument(rng):
    a = rng.normal(size=10)
    cases = [
        (lambda: mk.ks.ks_2samp(a, []), "a, b"),
        (lambda: mk.ks.ks_2samp(np.r_[a, np.nan], a), "a:"),
        (lambda: mk.ks.ks_2samp(a, np.r_[a, np.nan]), "b:"),
        (lambda: mk.ks.ks_2samp(a, a, alternative="two"), "alternative"),
        (lambda: mk.ks.ks_2samp(a, a, method="fast"), "method"),
        (lambda: mk.ks.ks_2samp(np.ones((2, 5)), np.ones((3, 5))), "broadcast"),
        (lambda: mk.ks.smirnov_threshold(1.5, 10, 10), "alpha"),
        (lambda: mk.ks.smirnov_threshold(0.05, 0, 10), "n"),
        (lambda: mk.ks.leakage_test(a, a, alpha=0.0), "alpha"),
        (lambda: mk.ks.leakage_test([], a), "non-empty"),
        (lambda: mk.ks.source_accuracy(a, a, sizes=[6]), "sizes"),
        (lambda: mk.ks.assign_source(np.ones((0, 3)), a, a), "samples"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()


def test_smirnov_threshold_and_leakage_test(rng):
    assert mk.ks.smirnov_threshold(0.05, 50, 80) == pytest.approx(
        np.sqrt(-0.5 * np.log(0.025)) * np.sqrt(130 / 4000), rel=1e-15)
    v, t = rng.beta(4, 1, 400), rng.beta(8, 1, 300)  # test set more confident: leaked
    r = mk.ks.leakage_test(v, t)
    want = stats.ks_2samp(v, t)
    assert (r.statistic, r.pvalue) == (want.statistic, want.pvalue)
    assert r.leaked and r.statistic > r.threshold


def test_assignment_is_the_nearest_cdf_and_accuracy_grows_with_m(rng):
    a, b = rng.normal(size=300), rng.normal(0.7, size=300)
    sets = rng.normal(0.35, size=(50, 9))
    got = mk.ks.assign_source(sets, a, b)
    for i in range(50):
        da = stats.ks_2samp(sets[i], a).statistic
        db = stats.ks_2samp(sets[i], b).statistic
        assert got[i] == (da < db)
    r = mk.ks.source_accuracy(a, b, sizes=[1, 5, 50], n_trials=400)
    assert r["accuracy"][0] < r["accuracy"][1] < r["accuracy"][2] and r["accuracy"][2] > 0.9


def test_leakage_experiment_detects_a_leak_and_not_its_absence(tmp_path):
    from miakit.studies.ks_leakage import leakage_experiment

    d = mk.datasets.synthetic(n=2000, dim=32, n_classes=10, seed=0)
    r = leakage_experiment(d.features, d.labels, tmp_path, shots=[0, 20], seeds=12)
    zero, many = r["rows"]
    assert zero["detection_rate"] <= 0.25 and r["false_positive_check"]["within_alpha"]
    assert many["detection_rate"] >= 0.75 and many["median_pvalue"] < zero["median_pvalue"]
    assert (tmp_path / "leakage.json").exists() and (tmp_path / "leakage.png").exists()
    sa = r["source_assignment"]
    assert sa["accuracy"][-1] > sa["accuracy"][0]
    with pytest.raises(ValueError, match="shots"):
        leakage_experiment(d.features, d.labels, shots=[0, 500], seeds=2)
    with pytest.raises(ValueError, match="train_size"):
        leakage_experiment(d.features, d.labels, shots=[0], seeds=2, train_size=10**6)
    with pytest.raises(ValueError, match="signal"):
        leakage_experiment(d.features, d.labels, shots=[0], seeds=2, signal="loss")


def test_leakage_command(tmp_path, capsys):
    from miakit.cli import main

    assert main(["leakage", "--dataset", "synthetic", "--shots", "0", "5", "--seeds", "4",
                 "--out", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "detected" in out and "source assignment" in out


# --- the compiled unsorted kernel and the compiled p-values -------------------------

def _samples(kind, rng, shape):
    """Awkward value distributions for the bucketed kernel."""
    if kind == "normal":
        return rng.normal(size=shape)
    if kind == "ties":
        return np.round(rng.normal(size=shape), 1)
    if kind == "few":  # three distinct values
        return rng.integers(0, 3, size=shape).astype(float)
    if kind == "cauchy":
        return rng.standard_cauchy(size=shape)
    if kind == "confidences":  # near 1, as max-softmax confidences
        return 1.0 - rng.exponential(1e-9, size=shape)
    if kind == "extreme":  # a range wider than the largest double, zeros of both signs
        v = rng.normal(size=shape) * 1e307
        v.flat[::7] = 0.0
        v.flat[3::7] = -0.0
        return v
    if kind == "subnormal":
        return rng.integers(-40, 40, size=shape) * 5e-324
    raise AssertionError(kind)


KINDS = ("normal", "ties", "few", "cauchy", "confidences", "extreme", "subnormal")


def _sorted_merge(a, b):
    """The sorted-merge kernel (the CUDA path's) on the CPU: the reference of the
    unsorted kernel."""
    from miakit.ks import _merge

    rows, n = a.shape
    m = b.shape[1]
    return _merge(np.sort(a, axis=1).ravel(), np.arange(rows + 1, dtype=np.int64) * n,
                  np.sort(b, axis=1).ravel(), np.arange(rows + 1, dtype=np.int64) * m)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,m", [(1, 3), (33, 31), (700, 1000), (2001, 257)])
def test_unsorted_kernel_equals_the_sorted_merge(kind, n, m, rng):
    from miakit.ks import _unsorted

    a = _samples(kind, rng, (12, n))
    b = _samples(kind, rng, (12, m)) + (0.0 if kind in ("few", "extreme") else 0.01)
    want = _sorted_merge(a, b)
    got = _unsorted(a.ravel(), np.arange(12) * n, n, b.ravel(), np.arange(12) * m, m, "both")
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # one extreme asked for: that one exact, the other no farther than the true one
    for sides in ("greater", "less", "two-sided"):
        d_max, d_min, l_max, l_min = _unsorted(a.ravel(), np.arange(12) * n, n, b.ravel(),
                                               np.arange(12) * m, m, sides)
        assert (d_max <= want[0]).all() and (d_min >= want[1]).all()
        if sides == "greater":
            np.testing.assert_array_equal((d_max, l_max), (want[0], want[2]))
        elif sides == "less":
            np.testing.assert_array_equal((d_min, l_min), (want[1], want[3]))
        else:
            bigger = np.where(np.clip(-want[1], 0, 1) > want[0], -want[1], want[0])
            np.testing.assert_array_equal(np.where(np.clip(-d_min, 0, 1) > d_max, -d_min,
                                                   d_max), bigger)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("alternative", ALTS)
def test_large_awkward_batches_equal_scipy(kind, alternative, rng):
    a = _samples(kind, rng, (3, 1500))
    b = _samples(kind, rng, (3, 999)) * (1.0 if kind in ("few", "extreme") else 1.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for method in METHODS:
            got = mk.ks.ks_2samp(a, b, alternative=alternative, method=method)
            for i in range(3):
                want = _scipy(a[i], b[i], alternative, method)
                assert got.statistic[i] == want.statistic
                np.testing.assert_allclose(got.pvalue[i], want.pvalue, rtol=1e-12, atol=0)
                assert got.statistic_sign[i] == want.statistic_sign
                if kind != "extreme":  # (which zero is reported among -0.0 and 0.0 may differ)
                    assert got.statistic_location[i] == want.statistic_location


def test_many_pairs_share_one_sample_and_nonfinite_values_are_named(rng):
    a = rng.normal(size=(40, 300))
    b = rng.normal(0.2, size=450)
    got = mk.ks.ks_2samp(a, b)
    for i in (0, 17, 39):
        assert got.statistic[i] == stats.ks_2samp(a[i], b).statistic
    a[17, 5] = np.inf  # a value like any other: only the order matters
    assert mk.ks.ks_2samp(a, b).statistic[17] == stats.ks_2samp(a[17], b).statistic
    a[17, 5] = np.nan
    with pytest.raises(ValueError, match="a:"):
        mk.ks.ks_2samp(a, b)
    with pytest.raises(ValueError, match="b:"):
        mk.ks.ks_2samp(b, np.r_[b[:-1], np.nan])


def test_exact_square_pvalue_is_scipys_bit_for_bit():
    from scipy.stats._stats_py import _compute_prob_outside_square

    from miakit import _C

    for n in (1, 2, 7, 100, 1000):
        h = np.arange(1, n + 1, dtype=np.int64)
        out = np.empty(n)
        _C.ks_prob_outside_square(np.full(n, n, np.int64), h, out)
        want = np.array([_compute_prob_outside_square(n, int(k)) for k in h])
        np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("n", [5.0, 141.0, 500.0, 2000.0, 50000.0, 150000.0])
def test_asymptotic_two_sided_pvalue_equals_kstwo(n, rng):
    from miakit.ks import _kstwo_sf

    x = np.r_[rng.uniform(0.3 / n, 0.6, 200), np.sqrt(2.2 / n), np.sqrt(370 / n),
              (1.4 / n) ** (2 / 3), 0.5 / n, 1.0 / n, 0.5, 1.0, 0.0]
    with np.errstate(all="ignore"):
        want = stats.kstwo.sf(x, n)
    got = _kstwo_sf(x, np.full(x.size, n))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_smirnov_and_durbin_pieces_against_scipy(rng):
    from scipy import special
    from scipy.stats import _ksstats

    from miakit import _C

    for n in (141, 1000, 4999, 100000):
        x = rng.uniform(np.sqrt(2.2 / n), min(np.sqrt(300 / n), 0.49), 25)  # normal doubles
        out = np.empty(x.size)
        _C.ks_kstwo_piece(_C.KsPiece.smirnov, np.full(x.size, n, np.int64), x, out)
        np.testing.assert_allclose(out, special.smirnov(n, x), rtol=1e-12, atol=0)
    for n in (141, 1000, 20000):
        x = rng.uniform(1.0 / n, (1.4 / n) ** (2 / 3), 10)
        out = np.empty(x.size)
        _C.ks_kstwo_piece(_C.KsPiece.durbin, np.full(x.size, n, np.int64), x, out)
        want = np.array([_ksstats._kolmogn_DMTW(n, v, cdf=True) for v in x])
        np.testing.assert_allclose(1.0 - out, 1.0 - want, rtol=1e-12, atol=0)
    with pytest.raises(TypeError, match="kind: miakit._C.KsPiece"):  # a member, not a name
        _C.ks_kstwo_piece("smirnov", np.ones(1, np.int64), np.full(1, 0.5), np.empty(1))


# ------------------------------------------------------------ the bindings' checks
def _ks_unsorted_args():
    one = np.zeros(1, np.int64)
    return dict(a_values=np.zeros(3), a_begin=one, a_end=one + 3, b_values=np.ones(2),
                b_begin=one, b_end=one + 2, d_max=np.empty(1), d_min=np.empty(1),
                loc_max=np.empty(1), loc_min=np.empty(1), sides=_C.KsSides.both)


@pytest.mark.parametrize("name, value, match", [
    ("a_values", np.zeros(3, np.float32), "a_values: expected contiguous 1-D float64"),
    ("b_values", np.ones((2, 1)), "b_values: expected contiguous 1-D float64"),
    ("a_begin", np.zeros(2, np.int64), r"a_begin: expected shape \[1\]"),
    ("b_end", np.full(1, 5, np.int64), r"b_begin, b_end: expected non-empty samples within "
                                       r"b_values \(2 values\), got \[0, 5\) for pair 0"),
    ("a_end", np.zeros(1, np.int32), "a_end: expected contiguous 1-D int64"),
    ("loc_min", np.empty(2), "loc_min: expected a 1-D float64 array of 1 elements"),
    ("d_min", np.empty(1, np.float32), "d_min: expected a 1-D float64"),
])
def test_ks_unsorted_binding_names_the_bad_argument(name, value, match):
    args = _ks_unsorted_args()
    _C.ks_unsorted(**args)  # the valid call runs
    args[name] = value
    with pytest.raises(ValueError, match=match):
        _C.ks_unsorted(**args)


def test_ks_merge_and_pvalue_bindings_name_the_bad_argument():
    off = np.array([0, 2], np.int64)
    good = [np.zeros(2), off, np.ones(2), off] + [np.empty(1) for _ in range(4)]
    _C.ks_merge(*good, 0)
    for i, value, match in [
        (0, np.zeros(2, np.float32), "a_values: expected contiguous 1-D float64"),
        (1, np.array([0], np.int64)[:0], "a_offsets: expected B \\+ 1 offsets"),
        (3, np.array([0, 1, 2], np.int64), r"b_offsets: expected shape \[2\]"),
        (6, np.empty(3), "loc_max: expected a 1-D float64 array of 1 elements"),
    ]:
        args = list(good)
        args[i] = value
        with pytest.raises(ValueError, match=match):
            _C.ks_merge(*args, 0)
    n = np.array([4], np.int64)
    with pytest.raises(ValueError, match=r"n: expected shape \[2\]"):
        _C.ks_prob_outside_square(n, np.array([1, 2], np.int64), np.empty(2))
    with pytest.raises(ValueError, match="h: expected contiguous 1-D int64"):
        _C.ks_prob_outside_square(n, np.array([1.0]), np.empty(1))
    with pytest.raises(ValueError, match="out: expected a contiguous 1-D float64"):
        _C.ks_kstwo_piece(_C.KsPiece.durbin, n, np.array([0.5]), np.empty(1, np.float32))


@pytest.mark.parametrize("variant", ["generic", "avx2"])
def test_every_instruction_set_gives_the_same_statistics(variant, monkeypatch):
    """The unsorted kernel's vectorized loops follow MIAKIT_CPU_KERNEL (isa.h); its
    results are exact (integer counts), so every instruction set gives the same bits."""
    rng = np.random.default_rng(5)
    a = np.round(rng.normal(size=(6, 3001)), 2)
    b = np.round(rng.normal(0.1, 1.0, size=(6, 2500)), 2)
    want = mk.ks.ks_2samp(a, b, axis=1)
    monkeypatch.setenv("MIAKIT_CPU_KERNEL", variant)
    got = mk.ks.ks_2samp(a, b, axis=1)
    np.testing.assert_array_equal(got.statistic, want.statistic)
    np.testing.assert_array_equal(got.statistic_location, want.statistic_location)
    np.testing.assert_array_equal(got.pvalue, want.pvalue)
