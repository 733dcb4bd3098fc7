"""Calls that used to end the interpreter or return silently wrong values from the compiled
kernels and the numerics around them: sizes beyond what a kernel can hold (a clean
ValueError or MemoryError, never an abort), results written into the caller's own array,
LiRA on scores of any finite magnitude, RMIA without a population, and confidence bounds
at tiny error rates."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import references as ref
from scipy import stats

import miakit as mk
from miakit import _C, _binomial

# Run in a child process with its address space limited to 2 GiB: a kernel that allocated
# its per-thread working memory inside an OpenMP region would abort the child (SIGABRT);
# every size below must instead end in a Python exception. The logits are broadcast from
# one zero (stride 0), so nothing large is ever materialized.
_CHILD = textwrap.dedent("""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    import numpy as np
    import miakit as mk

    def attempt(tag, call):
        try:
            call()
            print(tag, "returned")
        except Exception as exc:  # the type and the argument the message names
            kind = ("MemoryError" if isinstance(exc, MemoryError)
                    else "ValueError" if isinstance(exc, ValueError) else type(exc).__name__)
            print(tag, kind, str(exc).split(":")[0])

    def rows(c, lead=(1,)):
        return np.broadcast_to(np.float32(0), lead + (c,))

    attempt("scratch", lambda: mk.signals.loss(rows(2 ** 30), 0))
    attempt("int31", lambda: mk.signals.loss(rows(2 ** 31), 0))
    attempt("int32", lambda: mk.signals.compute(rows(2 ** 32), 0, ["loss", "hinge"]))
    keep = np.array([[True], [False]])
    attempt("lira", lambda: mk.lira.leave_one_out(rows(2 ** 30, (2, 1, 1)), keep, labels=[0],
                                                  on_empty="nan"))
    attempt("lira_int31", lambda: mk.lira.fit(rows(2 ** 31, (2, 1, 1)), keep, labels=[0]))
    weight = np.broadcast_to(np.float32(0), (2 ** 28, 1))
    attempt("head", lambda: mk.gradients.head_norms(np.ones((1, 1)), [0], weight))
    print("alive")
""")


def test_huge_sizes_raise_instead_of_aborting():
    env = dict(os.environ, OMP_NUM_THREADS="2", MALLOC_ARENA_MAX="2")
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    lines = done.stdout.splitlines()
    assert lines[-1] == "alive", done.stdout
    got = dict(line.split(" ", 1) for line in lines[:-1])
    assert got == {
        # per-thread scratch of 64 rows x 2^30 classes: refused before the parallel region
        "scratch": "MemoryError logits",
        # class counts beyond an int: refused by the bindings, naming the argument
        "int31": "ValueError logits",
        "int32": "ValueError logits",
        "lira": "MemoryError logits",
        "lira_int31": "ValueError logits",
        "head": "MemoryError weight",
    }, done.stdout


def test_durbin_piece_refuses_matrices_beyond_its_range():
    n, x, out = np.array([10 ** 9]), np.array([0.5]), np.empty(1)
    with pytest.raises(ValueError, match=r"n, x: Durbin's matrix"):
        _C.ks_kstwo_piece(_C.KsPiece.durbin, n, x, out)


# ------------------------------------------------------------------ signals.compute(out=)
def _logits():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 4)), rng.integers(0, 4, 6)


@pytest.mark.parametrize("make", [
    lambda: np.zeros(6, dtype=">f8"),          # big-endian
    lambda: np.zeros(6, dtype=">f4"),
    lambda: np.zeros(12)[::2],                 # non-contiguous
    lambda: np.zeros((6, 2), dtype=np.float32)[:, 1],
])
def test_compute_writes_into_the_callers_array(make):
    z, y = _logits()
    target = make()
    want = mk.signals.loss(z, y)
    got = mk.signals.compute(z, y, ["loss", "hinge"], out={"loss": target})
    assert got["loss"] is target
    np.testing.assert_allclose(target, want, rtol=1e-6 if target.dtype.itemsize == 4 else 0)
    np.testing.assert_array_equal(got["hinge"], mk.signals.hinge(z, y))


@pytest.mark.parametrize("bad, exc, pattern", [
    ([0.0] * 6, TypeError, r"out\['loss'\]: expected a numpy array or torch tensor to write "
                           r"into, got list"),
    (np.zeros(6, dtype=np.int64), ValueError, r"out\['loss'\]: expected a float32 or float64"),
    (np.zeros(6, dtype=np.float16), ValueError, r"out\['loss'\]: expected a float32 or "),
    (np.zeros(5), ValueError, r"out\['loss'\]: expected .* of shape \(6,\)"),
    (np.float64(0.0), TypeError, r"out\['loss'\]: expected a numpy array"),
])
def test_compute_refuses_what_it_cannot_write_in_place(bad, exc, pattern):
    z, y = _logits()
    with pytest.raises(exc, match=pattern):
        mk.signals.compute(z, y, ["loss"], out={"loss": bad})


def test_compute_refuses_read_only_arrays_and_non_mappings():
    z, y = _logits()
    frozen = np.zeros(6)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"out\['loss'\]: expected a writable array"):
        mk.signals.compute(z, y, ["loss"], out={"loss": frozen})
    with pytest.raises(TypeError, match=r"out: expected a dict"):
        mk.signals.compute(z, y, ["loss"], out=[np.zeros(6)])


# ------------------------------------------------------------------ LiRA at any scale
def _shadow(m=16, n=30, a=2, seed=0):
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    return rng.normal(size=(m, n, a)) + 2.0 * keep[:, :, None], keep


@pytest.mark.parametrize("scale", [1e154, 1e300, 2.0 ** 300, 3.0e77])
def test_lira_is_scale_invariant_for_finite_scores_of_any_magnitude(scale):
    s, keep = _shadow()
    # online and one-sided offline scores do not depend on the scale; the two-sided
    # offline score moves by log(scale); fits scale with it (float64 oracle at scale 1)
    for kwargs in ({}, {"mode": "offline"}, {"center": "mean"}):
        want = ref.lira_leave_one_out(s, keep, **kwargs)
        got = mk.lira.leave_one_out(s * scale, keep, **kwargs)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    want = ref.lira_leave_one_out(s, keep, mode="offline", offline="two_sided")
    got = mk.lira.leave_one_out(s * scale, keep, mode="offline", offline="two_sided")
    np.testing.assert_allclose(got - np.log(scale), want, rtol=1e-9, atol=1e-9)
    glob = mk.lira.leave_one_out(s * scale, keep, variance="global", center="mean")
    np.testing.assert_allclose(glob, mk.lira.leave_one_out(s, keep, variance="global",
                                                           center="mean"), rtol=1e-9, atol=1e-9)
    fit, fit_ref = mk.lira.fit(s * scale, keep), ref.lira_fit(s, keep)
    for name in ("mu_in", "mu_out", "sigma_in", "sigma_out"):
        np.testing.assert_allclose(getattr(fit, name) / scale, fit_ref[name], rtol=1e-12)
    target = mk.lira.score(s[0] * scale, mk.lira.fit(s[1:] * scale, keep[1:]))
    np.testing.assert_allclose(target, ref.lira_score(s[0], ref.lira_fit(s[1:], keep[1:])),
                               rtol=1e-9, atol=1e-9)
    # the fit's risk measures are ratios: the same at every scale
    unit = mk.lira.fit(s, keep)
    np.testing.assert_allclose(mk.lira.hellinger(fit), mk.lira.hellinger(unit), rtol=1e-12)
    np.testing.assert_allclose(mk.lira.privacy_score(fit), mk.lira.privacy_score(unit),
                               rtol=1e-12)


def test_lira_from_huge_logits_equals_lira_from_their_scores():
    rng = np.random.default_rng(1)
    keep = mk.shadow.balanced_keep(8, 20, seed=1)
    labels = rng.integers(0, 3, 20)
    z = rng.normal(size=(8, 20, 2, 3)) * 1e100  # signal values near 1e100: beyond 2^256
    scores = mk.signals.compute(z, labels[None, :, None], ["scaled_confidence"],
                                dtype="float64")["scaled_confidence"]
    fused = mk.lira.leave_one_out(z, keep, labels=labels)
    assert np.isfinite(fused).all()
    np.testing.assert_array_equal(fused, mk.lira.leave_one_out(scores, keep))
    f1, f2 = mk.lira.fit(z, keep, labels=labels), mk.lira.fit(scores, keep)
    np.testing.assert_array_equal(f1.sigma_out, f2.sigma_out)


@pytest.mark.parametrize("big", [1e6, 1e10, 1e80])
def test_lira_global_leave_one_out_exact_when_one_model_dominates(big):
    # One diverged model holds the largest deviation of all: the pooled spread without it
    # must be the spread of the others, not a total minus a nearly equal removal (which
    # lost every digit from 1e10 on, and 7 digits at 1e6)
    s, keep = _shadow()
    s[0, 0, 0] = big
    for center in ("mean", "median"):
        got = mk.lira.leave_one_out(s, keep, variance="global", center=center)
        want = ref.lira_leave_one_out(s, keep, variance="global", center=center)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("big", [1e2, 1e3, 1e4, 1e5])
def test_lira_per_example_leave_one_out_keeps_full_accuracy_beside_an_outlier(big):
    # Leaving out a model that holds nearly all of a side's M2 cancels in the running
    # update: each example's side is recomputed directly once the removed model held
    # more than 1 - 2^-10 of it (the bound was 1e-10, which let the scores of a model at
    # 1e5 among values of order 1 keep a relative error of 7e-5)
    rng = np.random.default_rng(0)
    s, keep = _shadow(a=1)
    s[0, :, 0] = big * np.sign(rng.normal(size=s.shape[1]))
    for center in ("mean", "median"):
        got = mk.lira.leave_one_out(s, keep, center=center)
        want = ref.lira_leave_one_out(s, keep, center=center)
        np.testing.assert_allclose(got, want, rtol=1e-11)


def test_lira_refuses_scores_spanning_more_than_float64_squares_hold():
    # one scale for all examples cannot keep both 1e300 and 1 squared within float64: the
    # spreads of the small examples were 0 (clamped to min_std) without a word
    s, keep = _shadow()
    s[0, 0, 0] = 1e300
    msg = r"^shadow_scores: finite values span too wide a range for float64 spreads"
    with pytest.raises(ValueError, match=msg):
        mk.lira.fit(s, keep)
    with pytest.raises(ValueError, match=msg):
        mk.lira.leave_one_out(s, keep, variance="global")
    # a score takes no squares across examples: each example gets its own power of two,
    # so a target's 1e300 leaves the other examples' scores exactly as without it
    fit = mk.lira.fit(s[1:, 1:], keep[1:, 1:])
    big = np.where(np.arange(29)[:, None] == 0, 1e300, s[0, 1:])
    for mode, offline in (("online", "one_sided"), ("offline", "one_sided"),
                          ("offline", "two_sided")):
        got = mk.lira.score(big, fit, mode=mode, offline=offline)
        want = mk.lira.score(s[0, 1:], fit, mode=mode, offline=offline)
        np.testing.assert_array_equal(got[1:], want[1:])
        assert not np.isnan(got[0])
    rng = np.random.default_rng(2)
    z = rng.normal(size=(16, 30, 2, 3))
    z[0, 0, 0, 0] = 1e300
    with pytest.raises(ValueError, match=r"^shadow_scores \(logits\): finite values span"):
        mk.lira.fit(z, keep, labels=rng.integers(0, 3, 30))
    # up to about 2^694 the others keep their exact spreads (the scale is needed above 2^256)
    s[0, 0, 0] = 1e200
    got, want = mk.lira.fit(s, keep), ref.lira_fit(s[:, 1:], keep[:, 1:])
    for name in ("mu_in", "mu_out", "sigma_in", "sigma_out"):
        np.testing.assert_allclose(getattr(got, name)[1:], want[name], rtol=1e-12)
    np.testing.assert_allclose(mk.lira.leave_one_out(s, keep)[:, 1:],
                               ref.lira_leave_one_out(s[:, 1:], keep[:, 1:]), rtol=1e-9)
    # values below min_std carry no spread the clamp keeps: they are no reason to refuse
    tiny = np.where(s == 1e200, 1e300, s * 1e-12)
    assert np.isfinite(mk.lira.fit(tiny, keep).sigma_in).all()


# ------------------------------------------------------------------ RMIA without population
@pytest.mark.parametrize("offline", [False, True])
def test_rmia_leave_one_out_without_any_non_member_raises(offline):
    rng = np.random.default_rng(0)
    q = rng.uniform(0.2, 0.6, size=(4, 10))
    keep = np.ones((4, 10), dtype=bool)
    with pytest.raises(ValueError, match=r"^keep: .*(non-member|OUT reference)"):
        mk.rmia.leave_one_out(q, keep, offline=offline, references="all")
    assert np.isnan(mk.rmia.leave_one_out(q, keep, offline=offline, references="all",
                                          on_empty="nan")).all()


def test_rmia_leave_one_out_names_targets_without_non_members():
    rng = np.random.default_rng(0)
    q = rng.uniform(0.2, 0.6, size=(4, 10))
    keep = np.ones((4, 10), dtype=bool)
    keep[0, 3] = keep[1, 3] = False
    with pytest.raises(ValueError, match=r"keep: .*target model\(s\) 2, 3 have no non-member "
                                         r"among the 10 examples; pass population="):
        mk.rmia.leave_one_out(q, keep, references="all")
    # a population of its own gives every target something to compare with
    pop = rng.uniform(0.2, 0.6, size=(4, 5))
    assert np.isfinite(mk.rmia.leave_one_out(q, keep, references="all", population=pop)).all()


# ------------------------------------------------------------------ tiny alpha
@pytest.mark.parametrize("alpha", [1e-300, 1e-30, 5e-324])
def test_leakage_test_bounds_stay_valid_at_tiny_alpha(alpha):
    rng = np.random.default_rng(0)
    keep = mk.shadow.balanced_keep(4, 200, seed=0)
    s = rng.normal(size=(4, 200)) + keep
    for scores, members, clusters in ((s, keep, "auto"), (s.ravel(), keep.ravel(), None)):
        for p in mk.metrics.leakage_test(scores, members, [0.01, 0.1], alpha=alpha,
                                         clusters=clusters):
            assert 0.0 <= p.tpr_lower <= p.tpr <= 1.0
            assert 0.0 <= p.fpr <= p.fpr_upper <= 1.0
            tail = p.alpha_each / 2
            if tail > 0 and p.tp > 0:  # never tighter than the exact binomial bounds
                cp_lo = stats.beta.ppf(tail, p.tp, p.n_pos - p.tp + 1)
                cp_hi = stats.beta.isf(tail, p.fp + 1, p.n_neg - p.fp)
                assert p.tpr_lower <= cp_lo * (1 + 1e-12)
                assert p.fpr_upper >= cp_hi * (1 - 1e-12)


def test_exact_bounds_at_tails_below_double_rounding():
    k, n = 7, 400
    # Clopper-Pearson from the tails themselves: equal to scipy's beta quantiles
    for tail in (1e-300, 1e-100, 1e-20):
        assert _binomial.one_sided(k, n, tail, upper=False) == stats.beta.ppf(tail, k, n - k + 1)
        assert _binomial.one_sided(k, n, tail, upper=True) == stats.beta.isf(tail, k + 1, n - k)
        lo, hi, deff, _ = mk.metrics.korn_graubard(np.array([7.0]), 400.0, np.array([0.0]), 50,
                                                   tail)
        assert deff[0] == 1.0 and 0.0 < lo[0] < 7 / 400 < hi[0] < 1.0
        np.testing.assert_allclose([lo[0], hi[0]], [stats.beta.ppf(tail, k, n - k + 1),
                                                    stats.beta.isf(tail, k + 1, n - k)],
                                   rtol=1e-12)
    # against scipy's binomtest where its level is representable
    want = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 1e-12, method="exact")
    np.testing.assert_allclose(mk.metrics.clopper_pearson(k, n, 1 - 1e-12),
                               (want.low, want.high), rtol=1e-9)
    # few clusters at a tail where scipy's t quantile fails: still a valid, finite interval
    lo, hi, _, _ = mk.metrics.korn_graubard(np.array([7.0]), 400.0, np.array([1e-3]), 8,
                                            1e-300, dof=[2.0])
    assert np.isfinite(lo).all() and np.isfinite(hi).all() and 0.0 <= lo[0] <= hi[0] <= 1.0
