"""Property-based tests (hypothesis): the public kernels on random inputs.

Random shapes (0 and 1 included), dtypes, memory layouts (Fortran order, step slices,
negative strides), NaN/inf and out-of-range labels. Every call either returns the value of
the float64 reference (tests/references.py, scipy, or a closed form written here) or
raises ValueError/TypeError; it never crashes the interpreter or returns garbage.
Inputs that the documentation calls valid must give a value; inputs it calls invalid
(non-finite values, labels outside [0, C), probabilities outside [0, 1]) must raise.

And the run store: a writer killed by SIGKILL at a random moment leaves a run that opens,
and that resumes to exactly the uninterrupted result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import references as ref
from scipy import special, stats

import miakit as mk

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Modest and fixed: the whole file runs in well under a minute on two cores.
FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FLOATS = (np.float64, np.float32, np.float16)
LAYOUTS = ("c", "fortran", "step", "reversed")


# ------------------------------------------------------------------------------ inputs
def _layout(a: np.ndarray, how: str) -> np.ndarray:
    """The same values as ``a`` in another memory layout."""
    if a.ndim == 0:  # (np.asfortranarray and np.ascontiguousarray would make it 1-d)
        return a.copy()
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "step" and a.ndim:  # every other element of a twice-as-long last axis
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if how == "reversed" and a.ndim:  # a negative stride on the first axis
        return np.array(a[::-1], order="C")[::-1]
    return np.array(a, order="C")


@st.composite
def values(draw, shape, dtype, lo=-20.0, hi=20.0, poison=True, round_to=None):
    """(array, poisoned): random values of ``dtype`` in [lo, hi], in a random layout;
    with ``poison`` sometimes one NaN or +-inf (then ``poisoned`` is True)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = np.asarray(rng.uniform(lo, hi, size=shape))
    if round_to is not None:
        a = np.round(a, round_to)  # ties
    a = a.astype(dtype)
    bad = False
    if poison and a.size and a.dtype.kind == "f" and draw(st.booleans()) and \
            draw(st.booleans()):
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf,
                                                                         -np.inf]))
        bad = True
    return _layout(a, draw(st.sampled_from(LAYOUTS))), bad


def _call(fn, *args, **kwargs):
    """The result, or None when the call raised ValueError or TypeError (any other
    exception fails the test)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs), None
    except (ValueError, TypeError) as exc:
        return None, exc


def _rtol(dtype) -> float:
    return {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-6,
            np.dtype(np.float16): 2e-3}[np.dtype(dtype)]


def _close(got, want, rtol, atol=0.0):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- signals
@FAST
@given(data=st.data(), kind=st.sampled_from(ref.SIGNALS),
       lead=st.lists(st.integers(0, 4), min_size=0, max_size=2),
       n_classes=st.integers(0, 5), dtype=st.sampled_from(FLOATS + (np.int64,)),
       bad_label=st.booleans())
def test_signals(data, kind, lead, n_classes, dtype, bad_label):
    z, poisoned = data.draw(values(tuple(lead) + (n_classes,), dtype, lo=-15, hi=15))
    labels = data.draw(values(tuple(lead), np.float64, lo=0, hi=max(n_classes - 1e-9, 0),
                              poison=False))[0].astype(np.int64)
    if bad_label and labels.size:
        labels.flat[0] = data.draw(st.sampled_from([-1, n_classes, n_classes + 7]))
    got, exc = _call(getattr(mk.signals, kind), z, labels)
    floating = np.dtype(dtype).kind == "f"
    empty = int(np.prod(lead)) == 0
    if n_classes < 2 or not floating or (not empty and (poisoned or bad_label)):
        assert exc is not None, "invalid input accepted"
        return
    assert exc is None, exc
    want = ref.signal(z.astype(np.float64), labels, kind)
    assert np.shape(got) == tuple(lead)
    if kind == "correct":
        np.testing.assert_array_equal(got, want)
    else:
        _close(got, want, rtol=_rtol(np.asarray(got).dtype), atol=2e-3 if dtype == np.float16
               else 1e-12)


@FAST
@given(data=st.data(), names=st.lists(st.sampled_from(ref.SIGNALS), min_size=1, max_size=7,
                                      unique=True),
       lead=st.lists(st.integers(0, 4), min_size=0, max_size=2),
       n_classes=st.integers(0, 5), dtype=st.sampled_from(FLOATS + (np.int64,)),
       bad_label=st.booleans(), out_dtype=st.sampled_from([None, "float32", "float64"]))
def test_signals_in_one_pass(data, names, lead, n_classes, dtype, bad_label, out_dtype):
    """mk.signals.compute: any subset, dtype and layout gives each single function's value
    (bit for bit at the same dtype), or raises; never crashes."""
    z, poisoned = data.draw(values(tuple(lead) + (n_classes,), dtype, lo=-15, hi=15))
    labels = data.draw(values(tuple(lead), np.float64, lo=0, hi=max(n_classes - 1e-9, 0),
                              poison=False))[0].astype(np.int64)
    if bad_label and labels.size:
        labels.flat[0] = data.draw(st.sampled_from([-1, n_classes, n_classes + 7]))
    got, exc = _call(mk.signals.compute, z, labels, names, dtype=out_dtype)
    floating = np.dtype(dtype).kind == "f"
    empty = int(np.prod(lead)) == 0
    if n_classes < 2 or not floating or (not empty and (poisoned or bad_label)):
        assert exc is not None, "invalid input accepted"
        return
    assert exc is None, exc
    assert list(got) == names
    for kind in names:
        single = getattr(mk.signals, kind)(z, labels)
        assert np.shape(got[kind]) == tuple(lead)
        if kind == "correct" or out_dtype is None or np.dtype(out_dtype) == single.dtype:
            np.testing.assert_array_equal(np.asarray(got[kind]), np.asarray(single))
        else:
            _close(got[kind], single, rtol=_rtol(np.float32), atol=1e-30)


# -------------------------------------------------------------------------------- LiRA
@st.composite
def lira_inputs(draw, min_models=1):
    m = draw(st.integers(min_models, 6))
    n = draw(st.integers(0, 4))
    a = draw(st.integers(0, 3))
    dtype = draw(st.sampled_from(FLOATS))
    s, poisoned = draw(values((m, n, a), dtype, lo=-5, hi=5, round_to=draw(
        st.sampled_from([None, 0]))))  # rounded: ties, zero spreads
    keep = draw(values((m, n), np.float64, lo=0, hi=1, poison=False))[0] > 0.5
    keep = _layout(keep, draw(st.sampled_from(LAYOUTS)))
    return s, keep, poisoned


@FAST
@given(inputs=lira_inputs(), center=st.sampled_from(["median", "mean"]),
       variance=st.sampled_from(["per_example", "global"]),
       mode=st.sampled_from(["online", "offline"]))
def test_lira_fit_and_score(inputs, center, variance, mode):
    s, keep, poisoned = inputs
    fit, exc = _call(mk.lira.fit, s, keep, center=center, variance=variance)
    if poisoned:
        assert exc is not None, "NaN or inf scores accepted"
        return
    if 0 in s.shape:
        assert exc is not None, "empty scores accepted"
        return
    assert exc is None, exc
    s64 = s.astype(np.float64)
    want = ref.lira_fit(s64, keep, center=center, variance=variance)
    for name in ("mu_in", "mu_out", "sigma_in", "sigma_out"):
        _close(getattr(fit, name), want[name], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(fit.n_in, want["n_in"])
    np.testing.assert_array_equal(fit.n_out, want["n_out"])
    got, exc = _call(mk.lira.score, s[0], fit, mode=mode, on_empty="nan")
    assert exc is None, exc
    _close(got, ref.lira_score(s64[0], want, mode), rtol=1e-8, atol=1e-10)


@FAST
@given(inputs=lira_inputs(min_models=2), mode=st.sampled_from(["online", "offline"]),
       references=st.sampled_from(["balanced", "all"]),
       variance=st.sampled_from(["per_example", "global"]))
def test_lira_leave_one_out(inputs, mode, references, variance):
    s, keep, poisoned = inputs
    got, exc = _call(mk.lira.leave_one_out, s, keep, mode=mode, variance=variance,
                     references=references, on_empty="nan")
    if poisoned or 0 in s.shape:
        assert exc is not None, "invalid scores accepted"
        return
    assert exc is None, exc
    want = ref.lira_leave_one_out(s.astype(np.float64), keep, mode=mode, variance=variance,
                                  references=references)
    _close(got, want, rtol=1e-7, atol=1e-9)


@FAST
@given(data=st.data(), m=st.integers(1, 5), n=st.integers(0, 4), a=st.integers(1, 2),
       c=st.integers(2, 4), bad_label=st.booleans())
def test_lira_from_logits(data, m, n, a, c, bad_label):
    z, poisoned = data.draw(values((m, n, a, c), np.float32, lo=-6, hi=6))
    keep = data.draw(values((m, n), np.float64, lo=0, hi=1, poison=False))[0] > 0.5
    labels = (data.draw(values((n,), np.float64, lo=0, hi=c - 1e-9, poison=False))[0]
              .astype(np.int64))
    if bad_label and n:
        labels[-1] = c
    fit, exc = _call(mk.lira.fit, z, keep, labels=labels)
    if n == 0 or poisoned or (bad_label and n):
        assert exc is not None, "invalid input accepted"
        return
    assert exc is None, exc
    want = ref.lira_fit(ref.signal(z.astype(np.float64), labels[:, None], "scaled_confidence"),
                        keep)
    for name in ("mu_in", "mu_out", "sigma_in", "sigma_out"):
        _close(getattr(fit, name), want[name], rtol=1e-8, atol=1e-10)


# ----------------------------------------------------------------------------- metrics
@FAST
@given(data=st.data(), n=st.integers(0, 30), dtype=st.sampled_from(FLOATS + (np.int64,)),
       fpr=st.sampled_from([1e-3, 0.01, 0.1, 0.5, 0.99]))
def test_metrics(data, n, dtype, fpr):
    s, poisoned = data.draw(values((n,), dtype, lo=-3, hi=3, round_to=1))  # ties
    y = data.draw(values((n,), np.float64, lo=0, hi=1, poison=False))[0] > 0.5
    both = y.any() and (~y).any()
    auc, exc = _call(mk.metrics.auc, s, y)
    if poisoned or not both:
        assert exc is not None, "invalid input accepted"
        return
    assert exc is None, exc
    s64 = np.asarray(s, dtype=np.float64)
    assert auc == pytest.approx(ref.auc_pairs(s64, y), abs=1e-12)
    fp, tp, _ = mk.metrics.roc(s, y)
    pts = ref.roc_points(s64, y)
    np.testing.assert_allclose(fp, [p[0] / (~y).sum() for p in pts], rtol=1e-12)
    np.testing.assert_allclose(tp, [p[1] / y.sum() for p in pts], rtol=1e-12)
    r = mk.metrics.tpr_at_fpr(s, y, fpr=fpr)
    want = ref.tpr_at_fpr(s64, y, fpr)
    assert (r.tpr, r.fpr, r.tp, r.fp) == pytest.approx(want[:4], abs=1e-12)


# -------------------------------------------------------------------------------- RMIA
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's empty means
@FAST
@given(data=st.data(), m=st.integers(2, 6), n=st.integers(0, 4), a=st.integers(1, 2),
       offline=st.booleans(), aggregate=st.sampled_from(["mean", "vote"]),
       out_of_range=st.booleans(), dtype=st.sampled_from([np.float64, np.float32]))
def test_rmia_leave_one_out(data, m, n, a, offline, aggregate, out_of_range, dtype):
    # continuous values: RMIA compares likelihood ratios, and exact ties between ratios
    # computed in two summation orders would be decided by rounding
    q, poisoned = data.draw(values((m, n, a), dtype, lo=0, hi=1))
    if out_of_range and q.size:
        q = np.array(q)
        q.flat[0] = data.draw(st.sampled_from([-0.5, 1.5]))
    keep = data.draw(values((m, n), np.float64, lo=0, hi=1, poison=False))[0] > 0.5
    got, exc = _call(mk.rmia.leave_one_out, q, keep, offline=offline, aggregate=aggregate,
                     on_empty="nan")
    if q.size and (poisoned or out_of_range):
        assert exc is not None, "invalid probabilities accepted"
        return
    if n == 0:
        assert exc is not None or np.shape(got) == (m, 0)
        return
    assert exc is None, exc
    want = ref.rmia_leave_one_out(q.astype(np.float64), keep, offline=offline,
                                  aggregate=aggregate)
    _close(got, want, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------- K-S
@FAST
@given(data=st.data(), b=st.integers(1, 3), n=st.integers(0, 12), m=st.integers(0, 12),
       alternative=st.sampled_from(["two-sided", "less", "greater"]),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_ks_2samp(data, b, n, m, alternative, dtype):
    x, bad_x = data.draw(values((b, n), dtype, lo=-2, hi=2, round_to=1))
    y, bad_y = data.draw(values((b, m), dtype, lo=-2, hi=2, round_to=1))
    got, exc = _call(mk.ks.ks_2samp, x, y, alternative=alternative)
    # +-inf is a value like any other (only the order matters, as for scipy); NaN is not
    if n == 0 or m == 0 or np.isnan(x).any() or np.isnan(y).any():
        assert exc is not None, "invalid samples accepted"
        return
    assert exc is None, exc
    for i in range(b):
        want = stats.ks_2samp(x[i].astype(np.float64), y[i].astype(np.float64),
                              alternative=alternative)
        assert got.statistic[i] == pytest.approx(want.statistic, abs=1e-12)
        assert got.pvalue[i] == pytest.approx(want.pvalue, rel=1e-8, abs=1e-14)


# ------------------------------------------------------------------------ memorization
@FAST
@given(data=st.data(), m=st.integers(1, 6), n=st.integers(0, 5),
       sig=st.sampled_from(["correct", "prob"]), out_of_range=st.booleans())
def test_feldman_zhang(data, m, n, sig, out_of_range):
    if sig == "correct":
        x = data.draw(values((m, n), np.float64, lo=0, hi=1, poison=False))[0] > 0.5
        poisoned = False
    else:
        x, poisoned = data.draw(values((m, n), np.float64, lo=0, hi=1))
        if out_of_range and x.size:
            x = np.array(x)
            x.flat[0] = 1.25
    keep = data.draw(values((m, n), np.float64, lo=0, hi=1, poison=False))[0] > 0.5
    got, exc = _call(mk.memorization.feldman_zhang, x, keep, sig, on_empty="nan")
    if x.size and (poisoned or (sig == "prob" and out_of_range)):
        assert exc is not None, "invalid signal accepted"
        return
    if n == 0:
        assert exc is not None or np.shape(got) == (0,)
        return
    assert exc is None, exc
    xf = x.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = (xf * keep).sum(0) / keep.sum(0) - (xf * ~keep).sum(0) / (~keep).sum(0)
    _close(got, want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------- linear-head kernels
@st.composite
def head_inputs(draw):
    n, d, c = draw(st.integers(0, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(FLOATS))
    x, bad_x = draw(values((n, d), dtype, lo=-3, hi=3))
    w, bad_w = draw(values((c, d), np.float64, lo=-2, hi=2))
    b = None
    if draw(st.booleans()):
        b = draw(values((c,), np.float64, lo=-1, hi=1, poison=False))[0]
    labels = draw(values((n,), np.float64, lo=0, hi=c - 1e-9, poison=False))[0].astype(int)
    bad_label = bool(n) and draw(st.booleans()) and draw(st.booleans())
    if bad_label:
        labels[0] = draw(st.sampled_from([-1, c]))
    return x, labels, w, b, (bad_x and n > 0) or bad_w, bad_label


def _probabilities(x, w, b):
    z = x @ w.T + (0.0 if b is None else b)
    return special.softmax(z, axis=1)


@FAST
@given(inputs=head_inputs())
def test_head_norms(inputs):
    x, labels, w, b, poisoned, bad_label = inputs
    got, exc = _call(mk.gradients.head_norms, x, labels, w, b)
    if poisoned or bad_label:
        assert exc is not None, "invalid input accepted"
        return
    assert exc is None, exc
    x64 = x.astype(np.float64)
    r = _probabilities(x64, w, b)
    r[np.arange(len(labels)), labels] -= 1.0  # dCE/dz
    g2 = (r * r).sum(1)
    want = np.sqrt(g2 * ((x64 * x64).sum(1) + (0.0 if b is None else 1.0)))
    _close(got, want, rtol=1e-9, atol=1e-12)


@FAST
@given(inputs=head_inputs())
def test_head_trace(inputs):
    x, _, w, b, poisoned, _ = inputs
    got, exc = _call(mk.curvature.head_trace, x, w, b)
    if poisoned:
        assert exc is not None, "invalid input accepted"
        return
    assert exc is None, exc
    p = _probabilities(x.astype(np.float64), w, b)
    # tr(W^T (diag p - p p^T) W), the trace of the input Hessian of the cross-entropy
    want = p @ (w * w).sum(1) - ((p @ w) ** 2).sum(1)
    _close(got, want, rtol=1e-8, atol=1e-10)


@FAST
@given(data=st.data(), n=st.integers(0, 3), t=st.integers(0, 4), d=st.integers(1, 4),
       p=st.integers(1, 4), dtype=st.sampled_from(FLOATS), bias=st.booleans())
def test_ghost_norms(data, n, t, d, p, dtype, bias):
    a, bad_a = data.draw(values((n, t, d), dtype, lo=-2, hi=2))
    g, bad_g = data.draw(values((n, t, p), dtype, lo=-2, hi=2))
    got, exc = _call(mk.gradients.ghost_norms, a, g, bias=bias)
    if (bad_a or bad_g) and n * t:
        assert exc is not None, "invalid input accepted"
        return
    if exc is not None:
        assert n * t == 0, exc  # only degenerate shapes may be refused
        return
    a64, g64 = a.astype(np.float64), g.astype(np.float64)
    want = (np.einsum("ntp,ntd->npd", g64, a64) ** 2).sum((1, 2))
    if bias:
        want = want + (g64.sum(1) ** 2).sum(1)
    _close(np.asarray(got, dtype=np.float64), want, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ run store: SIGKILL
WRITER = textwrap.dedent("""
    import sys, numpy as np, miakit as mk
    path, seed = sys.argv[1], int(sys.argv[2])
    m, n = 8, 400
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    run = mk.shadow.create_run(path, keep, np.arange(n) % 5, n_augmentations=2,
                               n_classes=5, config={"seed": seed})
    print("ready", flush=True)
    with run.writer():
        for k in run.missing.tolist():
            z = np.random.default_rng([seed, k]).normal(size=(n, 2, 5)).astype(np.float32)
            p = {"w": np.random.default_rng([seed, k, 1]).normal(size=(64, 5))}
            run.write_model(k, z, params=p)
""")


def _expected(seed: int, k: int):
    z = np.random.default_rng([seed, k]).normal(size=(400, 2, 5)).astype(np.float32)
    w = np.random.default_rng([seed, k, 1]).normal(size=(64, 5)).astype(np.float32)
    return z, w


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@settings(max_examples=6, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(delay=st.floats(0.0, 0.4), seed=st.integers(0, 3))
def test_run_store_survives_sigkill_at_a_random_moment(tmp_path_factory, delay, seed):
    tmp = tmp_path_factory.mktemp("kill")
    script = tmp / "writer.py"
    script.write_text(WRITER)
    run_dir = tmp / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MIAKIT_TEST_KILL_AT", None)
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir), str(seed)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(delay)  # the writes take about this long: the kill lands among them
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    # whatever moment it hit, the run opens cleanly and every listed model is intact
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no corrupt model reported
        run = mk.shadow.open_run(run_dir)
    assert not run.corrupt
    for k in run.completed.tolist():
        z, w = _expected(seed, k)
        np.testing.assert_array_equal(run.model_logits(k), z)
        np.testing.assert_array_equal(run.model_params(k)["w"], w)
    # resuming finishes it, byte for byte as an uninterrupted writer would
    done = subprocess.run([sys.executable, str(script), str(run_dir), str(seed)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run = mk.shadow.open_run(run_dir)
    assert run.is_complete
    np.testing.assert_array_equal(run.logits(), np.stack([_expected(seed, k)[0]
                                                           for k in range(8)]))
    leftovers = [p.name for p in run_dir.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, leftovers
