"""miakit.lira (fit, score, leave_one_out) against the float64 reference
(docs/methods/lira.md), the balanced keep helper, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import references as ref
import torch
from conftest import member_logits, member_scores, random_keep
from scipy import special

import miakit as mk
from miakit.lira import ClampedSpreadWarning, LiraFit

RTOL, ATOL = 1e-9, 1e-9
# Leave-one-out derives the spread without the target by downdating running sums, which
# loses about eps * (x - mean)^2 / M2_without in relative terms: a relative tolerance of
# 1e-7 is still far below anything that matters, and random data stays well inside it.
LOO_RTOL = 1e-7
CENTERS = ("median", "mean")
VARIANCES = ("per_example", "global")
MODES = [("online", "one_sided"), ("offline", "one_sided"), ("offline", "two_sided")]


def np64(x):
    return x.detach().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(
        x, dtype=np.float64)


def assert_fit_equal(fit: LiraFit, want: dict):
    for side in ("in", "out"):
        np.testing.assert_allclose(np64(getattr(fit, f"mu_{side}")), want[f"mu_{side}"],
                                   rtol=RTOL, atol=ATOL, err_msg=f"mu_{side}")
        np.testing.assert_allclose(np64(getattr(fit, f"sigma_{side}")), want[f"sigma_{side}"],
                                   rtol=RTOL, atol=ATOL, err_msg=f"sigma_{side}")
        np.testing.assert_array_equal(np.asarray(getattr(fit, f"n_{side}")), want[f"n_{side}"])
    assert fit.n_clamped == want["n_clamped"]


def assert_scores_equal(got, want, rtol=RTOL):
    got = np64(got)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=ATOL)


def assert_loo_equal(got, want):
    assert_scores_equal(got, want, rtol=LOO_RTOL)


def loo_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClampedSpreadWarning)
        return mk.lira.leave_one_out(*args, **kwargs)


# sizes (M, N, A): M = 2 and 3, N = 1 and odd, A = 1 and 18
FIT_SIZES = [(2, 1, 1), (2, 7, 18), (3, 1, 18), (3, 9, 1), (4, 5, 2), (7, 13, 3), (16, 11, 18)]


# =============================================================================== fit
@pytest.mark.parametrize("center", CENTERS)
@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("size", FIT_SIZES)
def test_fit_matches_reference(size, center, variance, rng):
    m, n, a = size
    keep = random_keep(rng, m, n)
    s = member_scores(rng, keep, a)
    fit = mk.lira.fit(s, keep, center=center, variance=variance)
    assert fit.center == center and fit.variance == variance and fit.min_std == 1e-6
    assert fit.mu_in.shape == (n, a) and fit.mu_in.dtype == np.float64
    assert fit.n_in.dtype == np.int64
    assert_fit_equal(fit, ref.lira_fit(s, keep, center, variance))


@pytest.mark.parametrize("center", CENTERS)
@pytest.mark.parametrize("variance", VARIANCES)
def test_fit_with_empty_sides(center, variance, rng):
    m, n, a = 5, 8, 3
    keep = rng.random((m, n)) < 0.5
    keep[:, 0] = True  # no OUT model
    keep[:, 1] = False  # no IN model
    keep[:, 2] = [True, False, False, False, False]  # a single IN model: its spread is 0
    s = member_scores(rng, keep, a)
    fit = mk.lira.fit(s, keep, center=center, variance=variance)
    want = ref.lira_fit(s, keep, center, variance)
    assert np.isnan(fit.mu_out[0]).all() and np.isnan(fit.mu_in[1]).all()
    assert fit.n_out[0] == 0 and fit.n_in[1] == 0
    assert_fit_equal(fit, want)
    if variance == "per_example":
        assert (fit.sigma_in[2] == 1e-6).all()
        assert fit.n_clamped >= a


def test_fit_with_a_side_empty_everywhere(rng):
    keep = np.zeros((4, 6), dtype=bool)
    s = member_scores(rng, keep, 2)
    for variance in VARIANCES:
        fit = mk.lira.fit(s, keep, variance=variance)
        assert np.isnan(fit.mu_in).all() and np.isnan(fit.sigma_in).all()
        assert (fit.n_in == 0).all() and (fit.n_out == 4).all()
        assert_fit_equal(fit, ref.lira_fit(s, keep, variance=variance))
        t = rng.normal(size=(6, 2))
        assert_scores_equal(mk.lira.score(t, fit, mode="offline"),
                            ref.lira_score(t, ref.lira_fit(s, keep, variance=variance),
                                           "offline"))
        with pytest.raises(ValueError, match="6 examples have no IN model"):
            mk.lira.score(t, fit)


def test_median_of_even_count_averages_the_middle_values():
    # one example, one augmentation; IN = {1, 2, 10, 50}, OUT = {-3, 0, 4, 100}
    s = np.array([1.0, -3.0, 2.0, 0.0, 10.0, 4.0, 50.0, 100.0])[:, None, None]
    keep = np.array([1, 0, 1, 0, 1, 0, 1, 0], dtype=bool)[:, None]
    fit = mk.lira.fit(s, keep)
    assert fit.mu_in[0, 0] == 6.0 and fit.mu_out[0, 0] == 2.0
    fit = mk.lira.fit(s[:7], keep[:7])  # IN = {1, 2, 10, 50}, OUT = {-3, 0, 4}
    assert fit.mu_in[0, 0] == 6.0 and fit.mu_out[0, 0] == 0.0
    fit = mk.lira.fit(s, keep, center="mean")
    assert fit.mu_in[0, 0] == pytest.approx(63.0 / 4) and fit.mu_out[0, 0] == pytest.approx(25.25)
    assert fit.sigma_in[0, 0] == pytest.approx(np.std([1.0, 2.0, 10.0, 50.0]), rel=1e-14)


def test_global_variance_is_pooled_around_each_examples_own_mean():
    # two examples, two augmentations; IN and OUT sides with different counts per example
    s = np.array([
        [[0.0, 10.0], [5.0, 1.0]],
        [[2.0, 14.0], [9.0, 1.0]],
        [[4.0, 30.0], [100.0, 7.0]],
        [[-1.0, 3.0], [0.0, 0.0]],
    ])  # [M=4, N=2, A=2]
    keep = np.array([[1, 1], [1, 0], [1, 0], [0, 1]], dtype=bool)
    # IN, example 0: models 0-2; example 1: models 0 and 3
    ss = 0.0
    for col in ([0.0, 2.0, 4.0], [10.0, 14.0, 30.0], [5.0, 0.0], [1.0, 0.0]):
        ss += ((np.array(col) - np.mean(col)) ** 2).sum()
    sigma_in = np.sqrt(ss / 10)  # 3 + 3 + 2 + 2 observations
    ss = 0.0
    for col in ([-1.0], [3.0], [9.0, 100.0], [1.0, 7.0]):
        ss += ((np.array(col) - np.mean(col)) ** 2).sum()
    sigma_out = np.sqrt(ss / 6)
    fit = mk.lira.fit(s, keep, variance="global")
    np.testing.assert_allclose(fit.sigma_in, np.full((2, 2), sigma_in), rtol=1e-14)
    np.testing.assert_allclose(fit.sigma_out, np.full((2, 2), sigma_out), rtol=1e-14)
    # leave-one-out recomputes the pooled value without the target
    t = 2
    others = [0, 1, 3]
    f2 = mk.lira.fit(s[others], keep[others], variance="global")
    ss_in = sum(((np.array(c) - np.mean(c)) ** 2).sum()
                for c in ([0.0, 2.0], [10.0, 14.0], [5.0, 0.0], [1.0, 0.0]))
    assert f2.sigma_in[0, 0] == pytest.approx(np.sqrt(ss_in / 8), rel=1e-14)
    loo = loo_quiet(s, keep, targets=[t], variance="global", mode="offline",
                    references="all")  # 4 models: some spreads are clamped
    want = special.log_ndtr((s[t] - f2.mu_out) / f2.sigma_out).mean(axis=1)
    np.testing.assert_allclose(loo[0], want, rtol=1e-12)


@pytest.mark.parametrize("variance", VARIANCES)
def test_min_std_clamps_and_counts(variance, rng):
    m, n, a = 6, 9, 4
    keep = random_keep(rng, m, n)
    s = member_scores(rng, keep, a)
    s[:, 3, :] = 1.25  # identical observations: spread 0 on both sides of example 3
    for min_std in (1e-6, 0.3, 1.0, 50.0):
        fit = mk.lira.fit(s, keep, variance=variance, min_std=min_std)
        want = ref.lira_fit(s, keep, "median", variance, min_std)
        assert_fit_equal(fit, want)
        assert (np64(fit.sigma_in) >= min_std).all() and (np64(fit.sigma_out) >= min_std).all()
    assert mk.lira.fit(s, keep, variance=variance, min_std=50.0).n_clamped == 2 * n * a


@pytest.mark.parametrize("signal", ["scaled_confidence", "hinge", "loss", "confidence"])
@pytest.mark.parametrize("size", [(2, 1, 1, 2), (3, 7, 18, 5), (8, 9, 2, 10)])
def test_fit_from_logits_fused(size, signal, rng):
    m, n, a, c = size
    keep = random_keep(rng, m, n)
    labels = rng.integers(0, c, size=n)
    z = member_logits(rng, keep, labels, a, c).astype(np.float32)
    fit = mk.lira.fit(z, keep, labels=labels, signal=signal)
    scores = ref.signal(z.astype(np.float64), labels[:, None], signal)
    assert_fit_equal(fit, ref.lira_fit(scores, keep))
    # the same fit as from the precomputed scores
    fit2 = mk.lira.fit(getattr(mk.signals, signal)(z, labels[:, None]).astype(np.float64), keep)
    np.testing.assert_allclose(fit.mu_in, fit2.mu_in, rtol=1e-6, atol=1e-9)


def test_fit_from_logits_without_augmentation_axis(rng):
    m, n, c = 4, 5, 3
    keep = random_keep(rng, m, n)
    labels = rng.integers(0, c, size=n)
    z = rng.normal(size=(m, n, c))
    fit = mk.lira.fit(z, keep, labels=labels)
    assert fit.mu_in.shape == (n, 1)
    scores = ref.signal(z, labels, "scaled_confidence")[:, :, None]
    assert_fit_equal(fit, ref.lira_fit(scores, keep))


def test_fit_two_dimensional_scores_mean_one_augmentation(rng):
    keep = random_keep(rng, 6, 7)
    s = member_scores(rng, keep, 1)
    fit = mk.lira.fit(s[:, :, 0], keep)
    assert fit.mu_in.shape == (7, 1)
    assert_fit_equal(fit, ref.lira_fit(s, keep))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_fit_low_precision_scores(dtype, rng):
    keep = random_keep(rng, 6, 9)
    s = member_scores(rng, keep, 18).astype(dtype)
    for center in CENTERS:
        fit = mk.lira.fit(s, keep, center=center)
        assert fit.mu_in.dtype == np.float64
        assert_fit_equal(fit, ref.lira_fit(s.astype(np.float64), keep, center))


def _nc_scores_and_keep(rng, m, n, a, kind):
    """Non-contiguous [M, N, A] views with the same values as a contiguous array."""
    keep = random_keep(rng, m, n)
    if kind == "transposed":
        base = np.ascontiguousarray(member_scores(rng, keep, a).transpose(2, 1, 0))
        s = base.transpose(2, 1, 0)
        keep_v = np.asfortranarray(keep)
    elif kind == "sliced":
        big = np.zeros((2 * m, 3 * n, a + 2))
        big[::2, ::3, 1:-1] = member_scores(rng, keep, a)
        s = big[::2, ::3, 1:-1]
        kbig = np.zeros((m, 2 * n), dtype=bool)
        kbig[:, ::2] = keep
        keep_v = kbig[:, ::2]
    else:  # reversed
        s = member_scores(rng, keep[::-1], a)[::-1]
        keep_v = np.ascontiguousarray(keep[::-1])[::-1]
    assert not s.flags.c_contiguous
    np.testing.assert_array_equal(keep_v, keep)
    return s, keep_v, keep


@pytest.mark.parametrize("kind", ["transposed", "sliced", "reversed"])
def test_fit_non_contiguous_views(kind, rng):
    s, keep_v, keep = _nc_scores_and_keep(rng, 6, 9, 3, kind)
    for center in CENTERS:
        assert_fit_equal(mk.lira.fit(s, keep_v, center=center),
                         ref.lira_fit(np.ascontiguousarray(s), keep, center))


@pytest.mark.parametrize("keep_dtype", [bool, np.uint8, np.int64, np.float32])
def test_keep_boolean_like_dtypes(keep_dtype, rng):
    keep = random_keep(rng, 4, 5)
    s = member_scores(rng, keep, 2)
    fit = mk.lira.fit(s, keep.astype(keep_dtype))
    assert_fit_equal(fit, ref.lira_fit(s, keep))


def test_non_native_byte_order(rng):
    keep = random_keep(rng, 6, 5)
    s = member_scores(rng, keep, 2)
    sb = s.astype(">f8")
    assert_fit_equal(mk.lira.fit(sb, keep.astype(">i4")), ref.lira_fit(s, keep))
    assert_loo_equal(mk.lira.leave_one_out(sb, keep), ref.lira_leave_one_out(s, keep))
    fit = mk.lira.fit(s[1:], keep[1:])
    assert_scores_equal(mk.lira.score(s[0].astype(">f4"), fit),
                        ref.lira_score(s[0].astype(np.float32), ref.lira_fit(s[1:], keep[1:])))
    labels = rng.integers(0, 3, size=5)
    z = member_logits(rng, keep, labels, 2, 3)
    assert_loo_equal(mk.lira.leave_one_out(z.astype(">f8"), keep, labels=labels.astype(">i8")),
                     ref.lira_leave_one_out(ref.signal(z, labels[:, None],
                                                       "scaled_confidence"), keep))


def test_fit_torch_tensors(rng):
    keep = random_keep(rng, 6, 7)
    s = member_scores(rng, keep, 2)
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        st = torch.from_numpy(s).to(dtype)
        fit = mk.lira.fit(st, torch.from_numpy(keep))
        assert isinstance(fit.mu_in, torch.Tensor) and fit.mu_in.dtype == torch.float64
        assert isinstance(fit.sigma_out, torch.Tensor)
        assert_fit_equal(fit, ref.lira_fit(st.double().numpy(), keep))
    # CPU mixes: torch scores with numpy keep, numpy scores with torch keep
    fit = mk.lira.fit(torch.from_numpy(s), keep, variance="global")
    assert isinstance(fit.mu_in, torch.Tensor)
    assert_fit_equal(fit, ref.lira_fit(s, keep, variance="global"))
    fit = mk.lira.fit(s, torch.from_numpy(keep))
    assert isinstance(fit.mu_in, np.ndarray)
    assert_fit_equal(fit, ref.lira_fit(s, keep))
    # torch transposed view
    base = torch.from_numpy(np.ascontiguousarray(s.transpose(2, 0, 1)))
    fit = mk.lira.fit(base.permute(1, 2, 0), keep)
    assert_fit_equal(fit, ref.lira_fit(s, keep))


# ============================================================================= score
@pytest.mark.parametrize("mode, offline", MODES)
@pytest.mark.parametrize("center", CENTERS)
@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("size", [(4, 1, 1), (5, 7, 18), (16, 13, 2)])
def test_score_matches_reference(size, mode, offline, center, variance, rng):
    m, n, a = size
    keep = random_keep(rng, m + 1, n)
    s = member_scores(rng, keep, a)
    target = s[0]
    fit = mk.lira.fit(s[1:], keep[1:], center=center, variance=variance)
    if mode == "online" and (fit.n_in.min() == 0 or fit.n_out.min() == 0):
        pytest.fail("test data must have IN and OUT models for every example")
    got = mk.lira.score(target, fit, mode=mode, offline=offline)
    assert got.shape == (n,) and got.dtype == np.float64
    want = ref.lira_score(target, ref.lira_fit(s[1:], keep[1:], center, variance), mode, offline)
    assert_scores_equal(got, want)


def test_score_default_is_online_one_sided(rng):
    keep = random_keep(rng, 7, 9)
    s = member_scores(rng, keep, 2)
    fit = mk.lira.fit(s[1:], keep[1:])
    np.testing.assert_array_equal(mk.lira.score(s[0], fit),
                                  mk.lira.score(s[0], fit, mode="online"))
    np.testing.assert_array_equal(mk.lira.score(s[0], fit, mode="offline"),
                                  mk.lira.score(s[0], fit, "offline", "one_sided"))


def _hand_fit(mu_in, mu_out, sigma_in, sigma_out):
    mu_in, mu_out, sigma_in, sigma_out = (np.asarray(x, dtype=np.float64).reshape(-1, 1)
                                          for x in (mu_in, mu_out, sigma_in, sigma_out))
    n = mu_in.shape[0]
    ones = np.ones(n, dtype=np.int64)
    return LiraFit(mu_in, mu_out, sigma_in, sigma_out, ones, ones, "median", "per_example",
                   1e-6, 0)


def test_one_sided_log_cdf_in_both_tails():
    z = np.array([-45.0, -38.5, -30.0, -25.0, -20.5, -20.0, -19.99, -15.0, -8.0, -1.01, -1.0,
                  -0.99, -0.3, 0.0, 0.4, 1.0, 3.0, 8.0, 12.0, 37.5])
    for mu, sd in ((0.0, 1.0), (3.5, 0.25), (-200.0, 7.0)):
        fit = _hand_fit(np.zeros_like(z), np.full_like(z, mu), np.ones_like(z),
                        np.full_like(z, sd))
        got = mk.lira.score(mu + sd * z, fit, mode="offline", offline="one_sided")
        want = special.log_ndtr(z)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-300)
    # a deep tail is a finite, very negative number, not -inf
    fit = _hand_fit([0.0], [0.0], [1.0], [1.0])
    got = mk.lira.score(np.array([-30.0]), fit, mode="offline")
    assert np.isfinite(got[0]) and got[0] == pytest.approx(special.log_ndtr(-30.0), rel=1e-12)


def test_online_and_two_sided_densities():
    x = np.array([-3.0, 0.0, 0.7, 5.0, 40.0])
    mi, mo = np.array([1.0, 1.0, 0.5, -2.0, 3.0]), np.array([0.0, -1.0, 0.0, 2.0, -3.0])
    si, so = np.array([1.0, 0.5, 2.0, 3.0, 0.01]), np.array([2.0, 0.5, 1.0, 0.1, 4.0])
    fit = _hand_fit(mi, mo, si, so)
    got = mk.lira.score(x, fit, mode="online")
    want = ref.log_normal_pdf(x, mi, si) - ref.log_normal_pdf(x, mo, so)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got = mk.lira.score(x, fit, mode="offline", offline="two_sided")
    np.testing.assert_allclose(got, -ref.log_normal_pdf(x, mo, so), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_score_low_precision_and_non_contiguous_target(dtype, rng):
    keep = random_keep(rng, 9, 11)
    s = member_scores(rng, keep, 18)
    fit = mk.lira.fit(s[1:], keep[1:])
    rfit = ref.lira_fit(s[1:], keep[1:])
    t = s[0].astype(dtype)
    for view in (t, np.asfortranarray(t), np.ascontiguousarray(t.T).T):
        for mode, offline in MODES:
            got = mk.lira.score(view, fit, mode=mode, offline=offline)
            assert_scores_equal(got, ref.lira_score(t.astype(np.float64), rfit, mode, offline))
    # step-sliced target
    big = np.zeros((22, 36))
    big[::2, ::2] = s[0]
    got = mk.lira.score(big[::2, ::2], fit)
    assert_scores_equal(got, ref.lira_score(s[0], rfit))


def test_score_torch(rng):
    keep = random_keep(rng, 7, 5)
    s = member_scores(rng, keep, 3)
    rfit = ref.lira_fit(s[1:], keep[1:])
    fit_t = mk.lira.fit(torch.from_numpy(s[1:]), torch.from_numpy(keep[1:]))
    got = mk.lira.score(torch.from_numpy(s[0]).float(), fit_t)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    t32 = s[0].astype(np.float32).astype(np.float64)
    assert_scores_equal(got, ref.lira_score(t32, rfit))
    # numpy target against a torch fit, and torch target against a numpy fit
    got = mk.lira.score(s[0], fit_t)
    assert isinstance(got, torch.Tensor)
    assert_scores_equal(got, ref.lira_score(s[0], rfit))
    fit_n = mk.lira.fit(s[1:], keep[1:])
    got = mk.lira.score(torch.from_numpy(s[0]), fit_n)
    assert isinstance(got, np.ndarray)
    assert_scores_equal(got, ref.lira_score(s[0], rfit))


def test_score_one_dimensional_target(rng):
    keep = random_keep(rng, 5, 6)
    s = member_scores(rng, keep, 1)
    fit = mk.lira.fit(s[1:], keep[1:])
    assert_scores_equal(mk.lira.score(s[0, :, 0], fit),
                        ref.lira_score(s[0], ref.lira_fit(s[1:], keep[1:])))


def test_score_separates_members(rng):
    m, n = 33, 400
    keep = random_keep(rng, m, n)
    s = member_scores(rng, keep, 2, shift=2.0)
    fit = mk.lira.fit(s[1:], keep[1:])
    for mode, offline in MODES:
        sc = mk.lira.score(s[0], fit, mode=mode, offline=offline)
        if offline == "two_sided" and mode == "offline":
            continue  # a two-sided test is not oriented; only check it is finite
        assert mk.metrics.auc(sc, keep[0]) > 0.85, (mode, offline)


# ===================================================================== leave_one_out
LOO_SIZES = [(4, 1, 1), (5, 7, 18), (6, 9, 2), (8, 13, 1), (12, 5, 3)]


@pytest.mark.parametrize("mode, offline", MODES)
@pytest.mark.parametrize("center", CENTERS)
@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("size", LOO_SIZES)
def test_leave_one_out_all_targets(size, mode, offline, center, variance, rng):
    m, n, a = size
    keep = random_keep(rng, m, n, n_in=2 if m < 6 else m // 2)  # >= 2 IN and >= 2 OUT
    s = member_scores(rng, keep, a)
    # the smallest runs leave one reference on a side: its spread, 0, is clamped (as in ref)
    got = loo_quiet(s, keep, mode=mode, offline=offline, center=center, variance=variance)
    assert got.shape == (m, n) and got.dtype == np.float64
    want = ref.lira_leave_one_out(s, keep, None, mode, offline, center, variance)
    assert_loo_equal(got, want)


@pytest.mark.parametrize("targets", [[0], [3], [5, 1], [2, 2], [0, 1, 2, 3], [6, 0, 4, 1, 3],
                                     np.array([4, 2]), 3, np.int64(5)])
@pytest.mark.parametrize("center", CENTERS)
def test_leave_one_out_subsets_of_targets(targets, center, rng):
    m, n, a = 7, 11, 3
    keep = random_keep(rng, m, n, n_in=3)
    s = member_scores(rng, keep, a)
    for mode, offline in MODES:
        got = mk.lira.leave_one_out(s, keep, targets=targets, mode=mode, offline=offline,
                                    center=center)
        tg = np.atleast_1d(targets)
        assert got.shape == (tg.size, n)
        want = ref.lira_leave_one_out(s, keep, tg, mode, offline, center)
        assert_loo_equal(got, want)
        # rows agree with the all-targets computation
        full = mk.lira.leave_one_out(s, keep, mode=mode, offline=offline, center=center)
        np.testing.assert_allclose(got, full[tg], rtol=1e-12, atol=1e-12)


def test_leave_one_out_targets_as_torch_tensor(rng):
    keep = random_keep(rng, 6, 5)
    s = member_scores(rng, keep, 2)
    got = mk.lira.leave_one_out(s, keep, targets=torch.tensor([1, 4]))
    assert_loo_equal(got, ref.lira_leave_one_out(s, keep, [1, 4]))


@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("center", CENTERS)
def test_leave_one_out_equals_refit_and_score(center, variance, rng):
    """Each row is what fit() on the other models and score() give (miakit's own API)."""
    m, n, a = 6, 9, 2
    keep = random_keep(rng, m, n)
    s = member_scores(rng, keep, a)
    for mode, offline in MODES:
        loo = mk.lira.leave_one_out(s, keep, mode=mode, offline=offline, center=center,
                                    variance=variance, references="all")
        for k in range(m):
            others = [i for i in range(m) if i != k]
            f = mk.lira.fit(s[others], keep[others], center=center, variance=variance)
            np.testing.assert_allclose(loo[k], mk.lira.score(s[k], f, mode, offline),
                                       rtol=LOO_RTOL, atol=ATOL)


@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("offline", ["one_sided", "two_sided"])
def test_leave_one_out_two_models_offline(offline, variance, rng):
    n, a = 7, 18
    keep = np.zeros((2, n), dtype=bool)  # every example OUT of both models
    s = member_scores(rng, keep, a)
    got = loo_quiet(s, keep, mode="offline", offline=offline, variance=variance)
    want = ref.lira_leave_one_out(s, keep, None, "offline", offline, "median", variance)
    assert_loo_equal(got, want)
    assert np.isfinite(got).all()
    # with min_std large enough to matter, the clamp applies on the single OUT model
    got = loo_quiet(s, keep, mode="offline", offline=offline, variance="per_example",
                    min_std=0.5)
    want = ref.lira_leave_one_out(s, keep, None, "offline", offline, "median", "per_example",
                                  0.5)
    assert_loo_equal(got, want)


def test_leave_one_out_two_models_online_is_an_error(rng):
    keep = np.array([[True, False, True], [False, True, False]])
    s = member_scores(rng, keep, 2)
    with pytest.raises(ValueError, match="keep") as ei:
        mk.lira.leave_one_out(s, keep, mode="online")
    msg = str(ei.value)
    assert "target model 0" in msg and "no IN model" in msg and "no OUT model" in msg
    # offline, an example IN the other model has no OUT model either
    with pytest.raises(ValueError, match="no OUT model"):
        mk.lira.leave_one_out(s, keep, mode="offline")
    got = loo_quiet(s, keep, mode="online", on_empty="nan")
    assert got.shape == (2, 3) and np.isnan(got).all()
    got = loo_quiet(s, keep, mode="offline", on_empty="nan")
    want = ref.lira_leave_one_out(s, keep, None, "offline")
    assert_loo_equal(got, want)  # NaN exactly where the target was OUT


@pytest.mark.parametrize("center", CENTERS)
@pytest.mark.parametrize("variance", VARIANCES)
def test_leave_one_out_three_models(center, variance, rng):
    n, a = 9, 18
    # offline: at most one IN model per example, so two OUT remain after any removal
    keep = np.zeros((3, n), dtype=bool)
    keep[rng.integers(0, 3, size=n)[: n - 3], np.arange(n - 3)] = True
    s = member_scores(rng, keep, a)
    for offline in ("one_sided", "two_sided"):
        got = loo_quiet(s, keep, mode="offline", offline=offline, center=center,
                        variance=variance, references="all")
        want = ref.lira_leave_one_out(s, keep, None, "offline", offline, center, variance,
                                      references="all")
        assert_loo_equal(got, want)
        assert np.isfinite(got).all()
    # online with 3 models: some side always has a single model; NaN there on request
    keep = random_keep(rng, 3, n, n_in=1)
    s = member_scores(rng, keep, a)
    with pytest.raises(ValueError, match="no IN model"):
        mk.lira.leave_one_out(s, keep, center=center, variance=variance, references="all")
    got = loo_quiet(s, keep, center=center, variance=variance, on_empty="nan", references="all")
    want = ref.lira_leave_one_out(s, keep, None, "online", "one_sided", center, variance,
                                  references="all")
    assert_loo_equal(got, want)
    assert np.isnan(got).any() and np.isfinite(got).any()


@pytest.mark.parametrize("signal", ["scaled_confidence", "hinge", "loss", "confidence"])
@pytest.mark.parametrize("size", [(4, 1, 1, 2), (5, 7, 18, 10), (9, 4, 2, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_leave_one_out_fused_logits(size, signal, dtype, rng):
    m, n, a, c = size
    keep = random_keep(rng, m, n, n_in=2)
    labels = rng.integers(0, c, size=n)
    z = member_logits(rng, keep, labels, a, c).astype(dtype)
    scores = ref.signal(z.astype(np.float64), labels[:, None], signal)
    for mode, offline in MODES:
        for center, variance in (("median", "per_example"), ("mean", "global")):
            got = loo_quiet(z, keep, mode=mode, offline=offline, center=center,
                            variance=variance, labels=labels, signal=signal)
            want = ref.lira_leave_one_out(scores, keep, None, mode, offline, center, variance)
            assert_loo_equal(got, want)


@pytest.mark.parametrize("targets", [None, [3, 0]])
def test_leave_one_out_fused_many_rows_per_tile(targets, rng):
    """Enough examples and augmentations that a tile spans several blocks of logit rows."""
    m, n, a, c = 4, 151, 18, 3
    keep = random_keep(rng, m, n)
    labels = rng.integers(0, c, size=n)
    z = member_logits(rng, keep, labels, a, c).astype(np.float16)
    scores = ref.signal(z.astype(np.float64), labels[:, None], "scaled_confidence")
    for mode, offline in MODES:
        got = loo_quiet(z, keep, targets, mode=mode, offline=offline, labels=labels,
                        variance="global")
        want = ref.lira_leave_one_out(scores, keep, targets, mode, offline, variance="global")
        assert_loo_equal(got, want)
    fit = mk.lira.fit(z, keep, labels=labels, center="mean")
    assert_fit_equal(fit, ref.lira_fit(scores, keep, "mean"))


def test_leave_one_out_fused_equals_precomputed_scores(rng):
    m, n, a, c = 6, 13, 2, 10
    keep = random_keep(rng, m, n)
    labels = rng.integers(0, c, size=n)
    z = member_logits(rng, keep, labels, a, c)  # float64: the signal is computed exactly
    s = mk.signals.scaled_confidence(z, labels[:, None])
    assert s.dtype == np.float64
    for targets in (None, [2]):
        np.testing.assert_allclose(
            mk.lira.leave_one_out(z, keep, targets, labels=labels),
            mk.lira.leave_one_out(s, keep, targets), rtol=1e-12, atol=1e-12)


def test_leave_one_out_fused_logits_views_and_torch(rng):
    m, n, a, c = 6, 7, 3, 5
    keep = random_keep(rng, m, n)
    labels = rng.integers(0, c, size=n)
    z = member_logits(rng, keep, labels, a, c)
    want = ref.lira_leave_one_out(ref.signal(z, labels[:, None], "scaled_confidence"), keep)
    zt = np.ascontiguousarray(z.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)  # class-major
    assert not zt.flags.c_contiguous
    assert_loo_equal(mk.lira.leave_one_out(zt, keep, labels=labels), want)
    got = mk.lira.leave_one_out(torch.from_numpy(zt), keep, labels=torch.from_numpy(labels))
    assert isinstance(got, torch.Tensor)
    assert_loo_equal(got, want)
    got = mk.lira.leave_one_out(torch.from_numpy(z), torch.from_numpy(keep), labels=labels)
    assert isinstance(got, torch.Tensor)
    assert_loo_equal(got, want)
    zb = torch.from_numpy(z).to(torch.bfloat16)
    want_b = ref.lira_leave_one_out(
        ref.signal(zb.double().numpy(), labels[:, None], "scaled_confidence"), keep)
    assert_loo_equal(mk.lira.leave_one_out(zb, keep, labels=labels), want_b)
    # [M, N, C] logits: one augmentation
    assert_loo_equal(
        mk.lira.leave_one_out(z[:, :, 0, :], keep, labels=labels),
        ref.lira_leave_one_out(ref.signal(z[:, :, :1], labels[:, None], "scaled_confidence"),
                               keep))


@pytest.mark.parametrize("kind", ["transposed", "sliced", "reversed"])
@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_leave_one_out_non_contiguous_scores(kind, dtype, rng):
    s, keep_v, keep = _nc_scores_and_keep(rng, 6, 9, 18, kind)
    s = s.astype(dtype) if dtype != np.float64 else s
    if dtype != np.float64:  # keep the view non-contiguous after the cast
        s = np.ascontiguousarray(s.transpose(2, 1, 0)).transpose(2, 1, 0)
    s64 = s.astype(np.float64)
    # float16 rounds some references to equal values: their spread, 0, is clamped (as in ref)
    for mode, offline in MODES:
        for center, variance in (("median", "global"), ("mean", "per_example")):
            got = loo_quiet(s, keep_v, mode=mode, offline=offline, center=center,
                            variance=variance)
            want = ref.lira_leave_one_out(s64, keep, None, mode, offline, center, variance)
            assert_loo_equal(got, want)
    got = loo_quiet(torch.from_numpy(np.ascontiguousarray(s)).transpose(0, 1)
                    .contiguous().transpose(0, 1), keep)
    assert_loo_equal(got, ref.lira_leave_one_out(s64, keep))


def test_leave_one_out_clamps_with_a_warning(rng):
    m, n, a = 6, 5, 2
    keep = random_keep(rng, m, n)
    s = member_scores(rng, keep, a)
    s[:, 2, :] = -0.5  # identical observations
    with pytest.warns(ClampedSpreadWarning, match="min_std"):
        got = mk.lira.leave_one_out(s, keep, mode="offline", references="all")
    assert_loo_equal(got, ref.lira_leave_one_out(s, keep, None, "offline", references="all"))
    with pytest.warns(ClampedSpreadWarning) as rec:
        got = mk.lira.leave_one_out(s, keep, min_std=0.8, references="all")
    assert_loo_equal(got, ref.lira_leave_one_out(s, keep, min_std=0.8, references="all"))
    # the warning counts the clamped spreads of every target's refit (online: both sides)
    n_clamped = sum(
        ref.lira_fit(s[[i for i in range(m) if i != k]], keep[[i for i in range(m) if i != k]],
                     min_std=0.8)["n_clamped"] for k in range(m))
    assert n_clamped > 0
    assert str(rec[0].message).startswith(f"{n_clamped} standard deviations")
    assert rec[0].message.n_clamped == n_clamped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # nothing to clamp
        mk.lira.leave_one_out(member_scores(rng, keep, a), keep, references="all")


def test_leave_one_out_ties_in_columns(rng):
    """Repeated values inside a column: the sorted-column median must still be exact."""
    m, n, a = 10, 8, 3
    keep = random_keep(rng, m, n)
    s = rng.integers(-2, 3, size=(m, n, a)).astype(np.float64) + 0.5 * keep[:, :, None]
    for targets in (None, [1, 7]):
        got = loo_quiet(s, keep, targets, mode="offline")
        assert_loo_equal(got, ref.lira_leave_one_out(s, keep, targets, "offline"))
        got = loo_quiet(s, keep, targets, offline="two_sided", mode="offline", min_std=0.1)
        assert_loo_equal(got, ref.lira_leave_one_out(s, keep, targets, "offline",
                                                        "two_sided", min_std=0.1))


ZERO_SPREAD_CASES = {
    # two OUT models: leaving one out leaves a single observation
    "one-out-model-left": ([-220.93622610050008, -48.872984397915836], [0, 0], None,
                           "offline", "two_sided"),
    # online, two IN and two OUT models: a single model is left on the target's side
    "one-in-model-left": ([64.6702996201847, 66.30633723762617, -51.400637168746286,
                           -164.80751708556528], [1, 1, 0, 0], None, "online", "one_sided"),
    # identical remaining observations (as quantized float16 scores give) and an
    # outlying target
    "identical-rest-171.9": ([171.9, 1.5, 1.5, 1.5], [0, 0, 0, 0], [0], "offline", "two_sided"),
    "identical-rest-200.1": ([200.1, 1.5, 1.5, 1.5], [0, 0, 0, 0], [0], "offline", "two_sided"),
}


@pytest.mark.parametrize("case", list(ZERO_SPREAD_CASES))
def test_leave_one_out_zero_spread_without_the_target(case):
    """When the observations left without the target are all equal (or just one), their
    spread is exactly 0, so min_std applies, as in a literal refit on the other models."""
    values, keep, targets, mode, offline = ZERO_SPREAD_CASES[case]
    s = np.array(values).reshape(-1, 1, 1)
    keep = np.array(keep, dtype=bool)[:, None]
    for k in (range(len(values)) if targets is None else targets):
        others = [i for i in range(len(values)) if i != k]
        f = mk.lira.fit(s[others], keep[others])  # the refit itself clamps to min_std
        assert f.n_clamped >= 1
    got = loo_quiet(s, keep, targets, mode=mode, offline=offline)
    assert_loo_equal(got, ref.lira_leave_one_out(s, keep, targets, mode, offline))


def test_leave_one_out_large_offsets(rng):
    """A shared large offset must not spoil the spread removed with the target."""
    m, n, a = 8, 6, 2
    keep = random_keep(rng, m, n)
    s = member_scores(rng, keep, a) + 1e4
    for variance in VARIANCES:
        got = mk.lira.leave_one_out(s, keep, mode="offline", variance=variance)
        want = ref.lira_leave_one_out(s, keep, None, "offline", variance=variance)
        np.testing.assert_allclose(got, want, rtol=1e-7)


def test_leave_one_out_detects_membership(rng):
    m, n = 16, 300
    keep = random_keep(rng, m, n)
    labels = rng.integers(0, 10, size=n)
    z = member_logits(rng, keep, labels, 2, 10, shift=3.0).astype(np.float32)
    loo = mk.lira.leave_one_out(z, keep, labels=labels, variance="global")
    assert mk.metrics.auc(loo, keep) > 0.8
    off = mk.lira.leave_one_out(z, keep, labels=labels, mode="offline", variance="global")
    assert mk.metrics.auc(off, keep) > 0.7


# ========================================================================= bad input
@pytest.fixture
def exp(rng):
    m, n, a, c = 6, 5, 2, 4
    keep = random_keep(rng, m, n)
    labels = rng.integers(0, c, size=n)
    z = member_logits(rng, keep, labels, a, c)
    s = member_scores(rng, keep, a)
    return dict(keep=keep, labels=labels, z=z, s=s, m=m, n=n, a=a, c=c)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_nonfinite_scores_raise(exp, bad, dtype):
    s = exp["s"].astype(dtype)
    s[3, 2, 1] = bad
    with pytest.raises(ValueError, match="shadow_scores.*finite"):
        mk.lira.fit(s, exp["keep"])
    with pytest.raises(ValueError, match="shadow_scores.*finite"):
        mk.lira.leave_one_out(s, exp["keep"])
    with pytest.raises(ValueError, match="shadow_scores.*finite"):
        mk.lira.leave_one_out(s, exp["keep"], targets=[0], variance="global")
    fit = mk.lira.fit(exp["s"][1:], exp["keep"][1:])
    t = exp["s"][0].astype(dtype)
    t[4, 0] = bad
    with pytest.raises(ValueError, match="target_scores.*finite"):
        mk.lira.score(t, fit)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_logits_in_fused_path_raise(exp, bad):
    z = exp["z"].astype(np.float32)
    z[1, 4, 1, 2] = bad
    with pytest.raises(ValueError, match="logits.*finite"):
        mk.lira.fit(z, exp["keep"], labels=exp["labels"])
    for variance in VARIANCES:
        with pytest.raises(ValueError, match="logits.*finite"):
            mk.lira.leave_one_out(z, exp["keep"], labels=exp["labels"], variance=variance)
    with pytest.raises(ValueError, match="logits"):
        mk.lira.leave_one_out(torch.from_numpy(z), exp["keep"], labels=exp["labels"])


@pytest.mark.parametrize("bad_label", [-1, 4, 10])
def test_labels_out_of_range_in_fused_path_raise(exp, bad_label):
    labels = exp["labels"].copy()
    labels[2] = bad_label
    with pytest.raises(ValueError, match=r"labels.*\[0, 4\)"):
        mk.lira.fit(exp["z"], exp["keep"], labels=labels)
    with pytest.raises(ValueError, match=r"labels.*\[0, 4\)"):
        mk.lira.leave_one_out(exp["z"], exp["keep"], labels=labels)


@pytest.mark.parametrize("labels", [np.zeros(4, np.int64), np.zeros(6, np.int64),
                                    np.zeros((5, 1), np.int64), np.zeros((6, 5), np.int64), 0])
def test_labels_wrong_shape_in_fused_path_raise(exp, labels):
    with pytest.raises(ValueError, match="labels"):
        mk.lira.leave_one_out(exp["z"], exp["keep"], labels=labels)
    with pytest.raises(ValueError, match="labels"):
        mk.lira.fit(exp["z"], exp["keep"], labels=labels)


def test_float_labels_in_fused_path_raise(exp):
    with pytest.raises(TypeError, match="labels"):
        mk.lira.leave_one_out(exp["z"], exp["keep"], labels=exp["labels"].astype(float))


@pytest.mark.parametrize("shape", [(6,), (6, 5, 2, 4), (6, 5, 2, 4, 1)])
def test_scores_wrong_ndim_raise(exp, shape):
    with pytest.raises(ValueError, match="shadow_scores"):
        mk.lira.fit(np.zeros(shape), exp["keep"])
    with pytest.raises(ValueError, match="shadow_scores"):
        mk.lira.leave_one_out(np.zeros(shape), exp["keep"])


def test_logits_wrong_ndim_raise(exp):
    with pytest.raises(ValueError, match="logits"):
        mk.lira.leave_one_out(exp["s"][:, :, 0], exp["keep"], labels=exp["labels"])


def test_scores_integer_dtype_raise(exp):
    with pytest.raises(TypeError, match="shadow_scores"):
        mk.lira.fit(exp["s"].astype(np.int64), exp["keep"])
    with pytest.raises(TypeError, match="target_scores"):
        mk.lira.score(exp["s"][0].astype(np.int32), mk.lira.fit(exp["s"], exp["keep"]))


@pytest.mark.parametrize("keep_shape", [(5, 5), (6, 4), (5, 6), (6,), (6, 5, 1), (1, 5)])
def test_keep_wrong_shape_raise(exp, keep_shape):
    keep = np.zeros(keep_shape, dtype=bool)
    with pytest.raises(ValueError, match=r"keep.*\(6, 5\)"):
        mk.lira.fit(exp["s"], keep)
    with pytest.raises(ValueError, match="keep"):
        mk.lira.leave_one_out(exp["s"], keep)
    with pytest.raises(ValueError, match="keep"):
        mk.lira.leave_one_out(exp["z"], keep, labels=exp["labels"])


@pytest.mark.parametrize("bad_value, dtype", [(2, np.int64), (-1, np.int8), (0.5, np.float64),
                                              (np.nan, np.float32), (255, np.uint8)])
def test_keep_not_boolean_like_raise(exp, bad_value, dtype):
    keep = exp["keep"].astype(dtype)
    keep[2, 3] = bad_value
    with pytest.raises(ValueError, match="keep.*bool"):
        mk.lira.fit(exp["s"], keep)
    with pytest.raises(ValueError, match="keep.*bool"):
        mk.lira.leave_one_out(exp["s"], keep)
    with pytest.raises(ValueError, match="keep"):
        mk.lira.leave_one_out(exp["s"], torch.from_numpy(keep))


def test_keep_wrong_dtype_raise(exp):
    with pytest.raises(TypeError, match="keep"):
        mk.lira.fit(exp["s"], exp["keep"].astype(str))


def test_target_scores_wrong_shape_raise(exp):
    fit = mk.lira.fit(exp["s"][1:], exp["keep"][1:])
    for shape in [(5, 3), (4, 2), (5,), (2, 5), (5, 2, 1)]:
        with pytest.raises(ValueError, match="target_scores"):
            mk.lira.score(np.zeros(shape), fit)


def test_score_fit_argument_must_be_a_fit(exp):
    with pytest.raises(TypeError, match="fit"):
        mk.lira.score(exp["s"][0], {"mu_in": 0})


def test_no_in_model_online_raises_naming_the_count(exp):
    keep = exp["keep"].copy()
    keep[:, [1, 3]] = False
    fit = mk.lira.fit(exp["s"], keep)
    with pytest.raises(ValueError, match="keep.*2 examples have no IN model"):
        mk.lira.score(exp["s"][0], fit, mode="online")
    # offline needs OUT models only
    got = mk.lira.score(exp["s"][0], fit, mode="offline")
    assert np.isfinite(got).all()
    got = mk.lira.score(exp["s"][0], fit, mode="online", on_empty="nan")
    want = ref.lira_score(exp["s"][0], ref.lira_fit(exp["s"], keep))
    assert_scores_equal(got, want)
    assert np.isnan(got[[1, 3]]).all() and np.isfinite(np.delete(got, [1, 3])).all()
    with pytest.raises(ValueError, match="keep.*2 examples have no IN model"):
        mk.lira.leave_one_out(exp["s"], keep)


def test_no_out_model_raises_in_both_modes(exp):
    keep = exp["keep"].copy()
    keep[:, 0] = True
    fit = mk.lira.fit(exp["s"], keep)
    for mode in ("online", "offline"):
        with pytest.raises(ValueError, match="keep.*1 examples have no OUT model"):
            mk.lira.score(exp["s"][0], fit, mode=mode)
        with pytest.raises(ValueError, match="keep.*no OUT model"):
            mk.lira.leave_one_out(exp["s"], keep, mode=mode)
        got = loo_quiet(exp["s"], keep, mode=mode, on_empty="nan")
        assert np.isnan(got[:, 0]).all() and np.isfinite(got[:, 1:]).all()
        got = mk.lira.score(exp["s"][0], fit, mode=mode, on_empty="nan")
        assert np.isnan(got[0]) and np.isfinite(got[1:]).all()


def test_no_out_model_only_after_leaving_the_target_out(rng):
    m, n, a = 5, 4, 2
    keep = random_keep(rng, m, n, n_in=2)
    keep[:, 2] = [True, True, False, True, True]  # a single OUT model: model 2
    s = member_scores(rng, keep, a)
    fit = mk.lira.fit(s, keep)
    assert np.isfinite(mk.lira.score(s[0], fit, mode="offline")).all()  # fine with model 2
    for mode in ("online", "offline"):
        with pytest.raises(ValueError, match="no OUT model once target model 2 is left out"):
            mk.lira.leave_one_out(s, keep, mode=mode, references="all")
        # other targets are fine (example 2's one OUT model has its spread clamped)
        others = [0, 1, 3, 4]
        got = loo_quiet(s, keep, targets=others, mode=mode, references="all")
        assert_loo_equal(got, ref.lira_leave_one_out(s, keep, others, mode, references="all"))
        got = loo_quiet(s, keep, mode=mode, on_empty="nan", references="all")
        want = ref.lira_leave_one_out(s, keep, None, mode, references="all")
        assert_loo_equal(got, want)
        assert np.isnan(got[2, 2]) and np.isfinite(np.delete(got[2], 2)).all()


def test_no_in_model_only_after_leaving_the_target_out(rng):
    keep = random_keep(rng, 5, 4, n_in=2)
    keep[:, 1] = [False, False, False, True, False]  # a single IN model: model 3
    s = member_scores(rng, keep, 3)
    with pytest.raises(ValueError, match="no IN model once target model 3 is left out"):
        mk.lira.leave_one_out(s, keep, references="all")
    assert np.isfinite(mk.lira.leave_one_out(s, keep, mode="offline", references="all")).all()
    got = loo_quiet(s, keep, on_empty="nan", references="all")  # 1-model sides: clamped
    assert_loo_equal(got, ref.lira_leave_one_out(s, keep, references="all"))
    assert np.isnan(got[3, 1])


@pytest.mark.parametrize("targets", [[6], [-1], [0, 7], [2.0], [], [[0, 1]], ["a"]])
def test_targets_out_of_range_or_malformed_raise(exp, targets):
    with pytest.raises(ValueError, match="targets"):
        mk.lira.leave_one_out(exp["s"], exp["keep"], targets=targets)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(center="mode"), "center"),
        (dict(variance="pooled"), "variance"),
        (dict(mode="both"), "mode"),
        (dict(offline="one-sided"), "offline"),
        (dict(on_empty="drop"), "on_empty"),
        (dict(signal="logit"), "signal"),
        (dict(center=None), "center"),
    ],
)
def test_bad_option_strings_raise(exp, kwargs, name):
    labelled = dict(labels=exp["labels"]) if name == "signal" else {}
    data = exp["z"] if name == "signal" else exp["s"]
    with pytest.raises(ValueError, match=f"{name}: expected one of"):
        mk.lira.leave_one_out(data, exp["keep"], **kwargs, **labelled)
    fit_kwargs = {k: v for k, v in kwargs.items() if k in ("center", "variance", "signal")}
    if fit_kwargs:
        with pytest.raises(ValueError, match=name):
            mk.lira.fit(data, exp["keep"], **fit_kwargs, **labelled)
    score_kwargs = {k: v for k, v in kwargs.items() if k in ("mode", "offline", "on_empty")}
    if score_kwargs:
        fit = mk.lira.fit(exp["s"], exp["keep"])
        with pytest.raises(ValueError, match=name):
            mk.lira.score(exp["s"][0], fit, **score_kwargs)


@pytest.mark.parametrize("min_std, err", [(0.0, ValueError), (-1e-3, ValueError),
                                          (np.nan, ValueError), (np.inf, ValueError),
                                          ("small", TypeError), (None, TypeError)])
def test_bad_min_std_raise(exp, min_std, err):
    with pytest.raises(err, match="min_std"):
        mk.lira.fit(exp["s"], exp["keep"], min_std=min_std)
    with pytest.raises(err, match="min_std"):
        mk.lira.leave_one_out(exp["s"], exp["keep"], min_std=min_std)


def test_empty_data_raise(exp):
    with pytest.raises(ValueError, match="shadow"):
        mk.lira.fit(np.zeros((6, 0, 2)), np.zeros((6, 0), bool))


def test_cpu_mixes_of_numpy_and_torch_work(exp):
    s, keep = exp["s"], exp["keep"]
    want = ref.lira_leave_one_out(s, keep)
    for data, kp in ((torch.from_numpy(s), keep), (s, torch.from_numpy(keep)),
                     (torch.from_numpy(s), torch.from_numpy(keep.astype(np.uint8)))):
        got = mk.lira.leave_one_out(data, kp)
        assert isinstance(got, type(data))
        assert_loo_equal(got, want)


# ======================================================================= balanced keep
@pytest.mark.parametrize("m, n", [(2, 1), (4, 7), (16, 101), (64, 3)])
def test_balanced_keep_exactly_half_per_column(m, n):
    keep = mk.shadow.balanced_keep(m, n, seed=3)
    assert keep.shape == (m, n) and keep.dtype == np.bool_
    np.testing.assert_array_equal(keep.sum(axis=0), np.full(n, m // 2))


def test_balanced_keep_is_reproducible_by_seed():
    a = mk.shadow.balanced_keep(16, 500, seed=7)
    np.testing.assert_array_equal(a, mk.shadow.balanced_keep(16, 500, seed=7))
    assert not np.array_equal(a, mk.shadow.balanced_keep(16, 500, seed=8))
    # each model trains on about half of the examples, and columns differ
    per_model = a.sum(axis=1)
    assert (np.abs(per_model - 250) < 60).all()
    assert len({tuple(col) for col in a.T}) > 50


@pytest.mark.parametrize("args, err, name", [
    ((3, 5), ValueError, "n_models"), ((1, 5), ValueError, "n_models"),
    ((0, 5), ValueError, "n_models"), ((4, 0), ValueError, "n_examples"),
    ((4.0, 5), TypeError, "n_models"), ((4, 5.0), TypeError, "n_examples"),
    ((True, 5), TypeError, "n_models"),
])
def test_balanced_keep_bad_input(args, err, name):
    with pytest.raises(err, match=name):
        mk.shadow.balanced_keep(*args)
    with pytest.raises(TypeError, match="seed"):
        mk.shadow.balanced_keep(4, 5, seed=1.5)


# every message names the argument, what was expected and what was received
MESSAGE_CASES = {
    "keep-shape": (lambda e: mk.lira.fit(e["s"], e["keep"][:, :4]), "keep", "(6, 4)"),
    "keep-values": (lambda e: mk.lira.fit(e["s"], e["keep"] * 2), "keep", "int"),
    "scores-ndim": (lambda e: mk.lira.fit(e["s"][0, 0], e["keep"]), "shadow_scores", "(2,)"),
    "scores-dtype": (lambda e: mk.lira.fit(e["s"].astype(int), e["keep"]), "shadow_scores",
                     "int64"),
    "labels-range": (lambda e: mk.lira.leave_one_out(e["z"], e["keep"], labels=e["labels"] + 4),
                     "labels", "got a value of"),
    "labels-shape": (lambda e: mk.lira.leave_one_out(e["z"], e["keep"], labels=e["labels"][:4]),
                     "labels", "(4,)"),
    "target-shape": (lambda e: mk.lira.score(e["s"][0, :4], mk.lira.fit(e["s"], e["keep"])),
                     "target_scores", "(4, 2)"),
    "targets": (lambda e: mk.lira.leave_one_out(e["s"], e["keep"], targets=[9]), "targets",
                "9"),
    "center": (lambda e: mk.lira.fit(e["s"], e["keep"], center="mode"), "center", "'mode'"),
    "min_std": (lambda e: mk.lira.fit(e["s"], e["keep"], min_std=-1.0), "min_std", "-1.0"),
    "no-out": (lambda e: mk.lira.leave_one_out(e["s"], np.ones_like(e["keep"])), "keep",
               "5 examples have no OUT model"),
}


@pytest.mark.parametrize("case", list(MESSAGE_CASES))
def test_error_messages_name_argument_and_received_value(exp, case):
    call, name, received = MESSAGE_CASES[case]
    with pytest.raises((ValueError, TypeError)) as ei:
        call(exp)
    msg = str(ei.value)
    assert msg.startswith(name), msg
    assert "expected" in msg or "needs" in msg, msg
    assert received in msg, msg


# ===================================================================== balanced references
def paired_keep(rng, n_models, n_examples):
    """Complementary pairs (2i, 2i + 1), independent of miakit.shadow."""
    first = rng.random((n_models // 2, n_examples)) < 0.5
    keep = np.empty((n_models, n_examples), dtype=bool)
    keep[0::2], keep[1::2] = first, ~first
    return keep


@pytest.mark.parametrize("variance", VARIANCES)
@pytest.mark.parametrize("center", CENTERS)
def test_balanced_leave_one_out_of_pairs_is_a_refit_without_the_pair(center, variance, rng):
    """With complementary pairs the partner of target k is k ^ 1 on every example: each row
    is fit() on the other M - 2 models and score()."""
    m, n, a = 8, 13, 2
    keep = paired_keep(rng, m, n)
    s = member_scores(rng, keep, a)
    for mode, offline in MODES:
        loo = mk.lira.leave_one_out(s, keep, mode=mode, offline=offline, center=center,
                                    variance=variance)
        for k in range(m):
            others = [i for i in range(m) if i not in (k, k ^ 1)]
            f = mk.lira.fit(s[others], keep[others], center=center, variance=variance)
            assert (f.n_in == m // 2 - 1).all() and (f.n_out == m // 2 - 1).all()
            np.testing.assert_allclose(loo[k], mk.lira.score(s[k], f, mode, offline),
                                       rtol=LOO_RTOL, atol=ATOL)


@pytest.mark.parametrize("m", [2, 3, 5, 8, 9])
def test_balanced_partners_match_the_reference_rule(m, rng):
    for keep in (random_keep(rng, m, 17, n_in=max(1, m // 3)), paired_keep(rng, m, 17)
                 if m % 2 == 0 else random_keep(rng, m, 17)):
        keep[:, 0] = True  # nobody on the other side
        got = mk.lira.balanced_partners(keep)
        for t in range(m):
            for n in range(keep.shape[1]):
                want = ref.balanced_partner(keep, t, n)
                assert got[t, n] == (-1 if want is None else want)
                if want is not None:
                    assert keep[want, n] != keep[t, n]
        np.testing.assert_array_equal(mk.lira.balanced_partners(keep, targets=[m - 1]),
                                      got[m - 1:])


def test_balanced_partners_pin_the_rule_on_an_unpaired_keep():
    """The pair partner k ^ 1 when it is on the other side, else the first model after k,
    cyclically, that is (model 4 has no pair); -1 when the other side is empty. This is
    the compiled kernels' own rule, so it pins what leave_one_out leaves out."""
    keep = np.array([[1, 1, 1],
                     [1, 0, 1],
                     [0, 1, 1],
                     [0, 0, 1],
                     [0, 1, 1]], dtype=bool)
    want = [[2, 1, -1],   # 0: pair 1 is IN on example 0 too -> 2
            [2, 0, -1],   # 1: pair 0 is IN on example 0 too -> 2
            [0, 3, -1],   # 2: 3 and 4 share its side on example 0 -> wraps to 0
            [0, 2, -1],
            [0, 1, -1]]   # 4: no pair -> the first model after it on the other side
    np.testing.assert_array_equal(mk.lira.balanced_partners(keep), want)
    np.testing.assert_array_equal(mk.lira.balanced_partners(keep, targets=[4, 2]),
                                  [want[4], want[2]])


def test_balanced_reference_counts_do_not_depend_on_membership(rng):
    """Unequal sides (3 IN, 6 OUT): every target sees 2 IN and 5 OUT references."""
    m, n = 9, 40
    keep = random_keep(rng, m, n, n_in=3)
    part = mk.lira.balanced_partners(keep)
    for t in range(m):
        use = np.ones((m, n), dtype=bool)
        use[t] = False
        use[part[t], np.arange(n)] = False
        assert ((keep & use).sum(axis=0) == 2).all() and ((~keep & use).sum(axis=0) == 5).all()


@pytest.mark.parametrize("mode,offline", MODES)
def test_balanced_empty_sides(mode, offline, rng):
    """An example with a single model on one side has no reference there for any target."""
    keep = random_keep(rng, 6, 5)
    keep[:, 1] = [True, False, False, False, False, False]  # one IN model
    keep[:, 3] = [True, True, True, True, True, False]      # one OUT model
    s = member_scores(rng, keep, 2)
    with pytest.raises(ValueError, match="no OUT model once target model 0"):
        mk.lira.leave_one_out(s, keep, mode=mode, offline=offline)
    got = loo_quiet(s, keep, mode=mode, offline=offline, on_empty="nan")
    assert_loo_equal(got, ref.lira_leave_one_out(s, keep, None, mode, offline))
    assert np.isnan(got[:, 3]).all()
    assert np.isnan(got[:, 1]).all() == (mode == "online")
    assert np.isfinite(got[:, [0, 2, 4]]).all()


def test_references_option_is_checked(rng):
    keep = random_keep(rng, 4, 3)
    with pytest.raises(ValueError, match="references"):
        mk.lira.leave_one_out(member_scores(rng, keep, 1), keep, references="pairs")


def test_global_variance_is_bit_reproducible():
    # the pooled spread is summed per tile and the tiles added in order: threads take
    # tiles in any order (dynamic schedule), the result must not change
    rng = np.random.default_rng(11)
    keep = mk.shadow.balanced_keep(12, 4000, seed=1)
    s = rng.normal(size=(12, 4000, 2)) + keep[..., None]
    runs = [mk.lira.leave_one_out(s, keep, variance="global") for _ in range(6)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])
