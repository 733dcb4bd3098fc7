"""The CUDA kernels against the CPU kernels and the float64 references.

Every test here runs torch CUDA tensors through the public API and compares the result
with the same call on the CPU (the CPU kernel is the CUDA kernel's twin: same formulas,
same median/removal rules, same status counting) and with the plain numpy reference of
tests/references.py. The CPU and CUDA kernels share their math but not their summation
order, nor the libm behind exp/log, so they agree to rounding, not bit for bit.

All tests are marked ``cuda`` and skipped without torch, a GPU, or a miakit built with
CUDA kernels (``pytest -m cuda`` selects them on a GPU machine). With
MIAKIT_TEST_CUDA_ON_CPU=1 they run on CPU tensors instead: a dry run that checks the
tests themselves (their references, tolerances and plumbing) on a machine without a GPU.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import references as ref
from conftest import member_logits, member_scores, random_keep

import miakit as mk

torch = pytest.importorskip("torch")


def _cuda_usable() -> bool:
    try:
        return bool(torch.cuda.is_available() and mk.backend_info()["cuda_available"])
    except Exception:  # noqa: BLE001 - any failure means: no usable GPU
        return False


DRY_RUN = os.environ.get("MIAKIT_TEST_CUDA_ON_CPU") == "1"
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not (DRY_RUN or _cuda_usable()),
                       reason="needs a CUDA GPU and a miakit build with CUDA kernels"),
]
gpu_only = pytest.mark.skipif(DRY_RUN, reason="dry run on the CPU")

DEV = "cpu" if DRY_RUN else "cuda"
SIGNALS = ref.SIGNALS


def gpu(x, dtype=None):
    """A numpy array (or CPU tensor) as a CUDA tensor, optionally cast."""
    t = torch.as_tensor(x)
    if dtype is not None:
        t = t.to(dtype)
    return t.to(DEV)


def host(x) -> np.ndarray:
    assert isinstance(x, torch.Tensor) and x.device.type == DEV, "result left the device"
    return x.detach().cpu().numpy()


def assert_close(got, want, rtol=1e-9, scale_atol=1e-12):
    """Equal to rounding; the absolute floor follows the magnitude of the values, since
    a clamped spread (1e-6) turns rounding-level differences into large absolute ones."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = want[np.isfinite(want)]
    mag = float(np.abs(finite).max()) if finite.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=scale_atol * max(1.0, mag))


# ------------------------------------------------------------------------------ backend
@gpu_only
def test_backend_reports_the_devices():
    info = mk.backend_info()
    assert info["cuda_built"] and info["cuda_available"]
    assert info["cuda_device_count"] == torch.cuda.device_count()
    assert info["cuda_archs"]  # the architectures it was compiled for


# ------------------------------------------------------------------------------ signals
TORCH_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def _compare_signal(kind, got, z_cpu, labels_cpu):
    """got (CUDA) against the CPU kernel on the same tensor, and the float64 reference."""
    cpu = getattr(mk.signals, kind)(z_cpu, labels_cpu)
    want = ref.signal(z_cpu.double().numpy(), labels_cpu.numpy(), kind)
    g = host(got)
    if kind == "correct":
        assert got.dtype == torch.bool
        np.testing.assert_array_equal(g, cpu.numpy())
        np.testing.assert_array_equal(g, want)
        return
    assert got.dtype == cpu.dtype
    if got.dtype == torch.float64:
        np.testing.assert_allclose(g, cpu.numpy(), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12)
    else:  # float32 results of double arithmetic: equal up to the last float32 bit
        np.testing.assert_allclose(g, cpu.numpy(), rtol=2.5e-7, atol=1e-30)
        np.testing.assert_allclose(g.astype(np.float64), want, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("shape", [(5,), (1, 2), (7, 3), (3, 5, 1, 10), (2, 9, 18, 7)])
def test_signal_matches_cpu_and_reference(kind, dtype, shape, rng):
    z = torch.from_numpy(rng.normal(scale=3.0, size=shape)).to(dtype)
    if len(shape) == 4:
        labels = torch.from_numpy(rng.integers(0, shape[-1], size=shape[1]))[:, None]
    elif len(shape) == 1:
        labels = torch.tensor(int(rng.integers(shape[-1])))
    else:
        labels = torch.from_numpy(rng.integers(0, shape[-1], size=shape[:-1]))
    got = getattr(mk.signals, kind)(z.to(DEV), labels.to(DEV))
    assert got.shape == z.shape[:-1]
    _compare_signal(kind, got, z, labels)


# The same view of a CPU tensor and of its copy on the GPU (transposed, step-sliced, and
# expanded with a zero stride), with labels for its leading shape.
VIEWS = [
    (lambda b: b.transpose(0, 2), (5, 11)),
    (lambda b: b[::2, 1::3, :], (3, 4)),
    (lambda b: b.expand(3, 6, 11, 5)[:, :, ::2], (6, 1)),
]


@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("view,label_shape", VIEWS)
def test_signal_non_contiguous_views(kind, dtype, view, label_shape, rng):
    base = torch.from_numpy(rng.normal(scale=2.0, size=(6, 11, 5))).to(dtype)
    z_cpu, z_gpu = view(base), view(base.to(DEV))
    assert not z_gpu.is_contiguous() and z_gpu.stride() == z_cpu.stride()
    n_classes = z_cpu.shape[-1]
    labels = torch.from_numpy(rng.integers(0, n_classes, size=label_shape))
    got = getattr(mk.signals, kind)(z_gpu, labels.to(DEV))
    _compare_signal(kind, got, z_cpu, labels)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compute_several_signals_on_the_gpu(dtype, rng):
    """One call for several signals (one launch per signal on a GPU): each equal to its
    single call, written into a strided slice given as out, and bad rows counted once."""
    base = torch.from_numpy(rng.normal(scale=3.0, size=(3, 40, 2, 10))).to(dtype)
    z = base.to(DEV)[:, ::2]
    labels = torch.from_numpy(rng.integers(0, 10, size=20))[:, None].to(DEV)
    names = list(SIGNALS)
    dst = torch.empty((3, 20, 2, 2), dtype=torch.float64, device=DEV)
    got = mk.signals.compute(z, labels, names, out={"grad_norm": dst[..., 1]},
                             dtype={"loss": "float64"})
    assert got["grad_norm"].data_ptr() == dst[..., 1].data_ptr()
    for kind in names:
        single = getattr(mk.signals, kind)(z, labels)
        g = got[kind]
        assert g.device.type == DEV
        if kind in ("grad_norm", "loss"):  # float64 asked for: the float64 reference
            assert g.dtype == torch.float64
            np.testing.assert_allclose(host(g), host(single).astype(np.float64), rtol=2.5e-7)
            want = ref.signal(base[:, ::2].double().numpy(), labels.cpu().numpy(), kind)
            np.testing.assert_allclose(host(g), want, rtol=1e-12, atol=1e-12)
        else:
            assert torch.equal(g, single)
            _compare_signal(kind, g, base[:, ::2], labels.cpu())
    bad = base.clone()
    bad[0, 2, 1, 3] = float("nan")
    bad[2, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="in 2 rows"):
        mk.signals.compute(bad.to(DEV), labels.repeat_interleave(2, 0)[:40] * 0,
                           ["loss", "hinge", "grad_norm"])


def test_signal_rejects_nan_on_the_gpu(rng):
    z = rng.normal(size=(4, 3, 5))
    z[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="logits"):
        mk.signals.loss(gpu(z), gpu(rng.integers(0, 5, size=(4, 3))))


def test_signal_large_batch_grid_stride(rng):
    # More rows than one grid covers (grid-stride loop) and a float64 output.
    z = torch.randn(3, 70_001, 10, dtype=torch.float64, device=DEV)
    labels = torch.randint(0, 10, (70_001,), device=DEV)
    got = mk.signals.scaled_confidence(z, labels)
    cpu = mk.signals.scaled_confidence(z.cpu(), labels.cpu())
    np.testing.assert_allclose(host(got), cpu.numpy(), rtol=1e-13, atol=1e-14)


# --------------------------------------------------------------------------------- LiRA
def _data(rng, m, n, a, c=None, n_in=None):
    keep = random_keep(rng, m, n, n_in)
    if c is None:
        return member_scores(rng, keep, a), keep, None
    labels = rng.integers(0, c, size=n)
    return member_logits(rng, keep, labels, a, c), keep, labels


def _fit_pair(data, keep, labels, dtype, **kw):
    """fit on the GPU and the CPU (same values: the CPU gets the GPU tensor's dtype)."""
    t = torch.from_numpy(np.ascontiguousarray(data)).to(dtype)
    extra = {} if labels is None else {"labels": gpu(labels)}
    g = mk.lira.fit(t.to(DEV), gpu(keep), **extra, **kw)
    extra = {} if labels is None else {"labels": labels}
    c = mk.lira.fit(t, keep, **extra, **kw)
    return g, c, t


def _assert_fits_equal(g, c, rtol=1e-9):
    for name in ("mu_in", "mu_out", "sigma_in", "sigma_out"):
        assert_close(host(getattr(g, name)), np.asarray(getattr(c, name)), rtol=rtol)
    for name in ("n_in", "n_out"):
        np.testing.assert_array_equal(host(getattr(g, name)), np.asarray(getattr(c, name)))
    assert g.n_clamped == c.n_clamped


SIZES = [(2, 1, 1), (3, 5, 2), (4, 7, 18), (9, 1, 3), (16, 33, 2), (64, 17, 1),
         (256, 6, 2), (257, 5, 2), (300, 9, 3)]


@pytest.mark.parametrize("m,n,a", SIZES)
@pytest.mark.parametrize("center", ["median", "mean"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_fit_from_scores(m, n, a, center, dtype, rng):
    s, keep, _ = _data(rng, m, n, a)
    g, c, t = _fit_pair(s, keep, None, dtype, center=center)
    _assert_fits_equal(g, c)
    want = ref.lira_fit(t.double().numpy(), keep, center=center)
    for name in ("mu_in", "mu_out", "sigma_in", "sigma_out"):
        assert_close(host(getattr(g, name)), want[name], rtol=1e-8)
    np.testing.assert_array_equal(host(g.n_in), want["n_in"])


@pytest.mark.parametrize("m,n,a", [(3, 5, 2), (8, 9, 18), (32, 21, 2), (300, 4, 1)])
@pytest.mark.parametrize("center", ["median", "mean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fit_from_logits(m, n, a, center, dtype, rng):
    z, keep, labels = _data(rng, m, n, a, c=10)
    g, c, t = _fit_pair(z, keep, labels, dtype, center=center)
    _assert_fits_equal(g, c)
    scores = ref.signal(t.double().numpy(), labels[:, None], "scaled_confidence")
    want = ref.lira_fit(scores, keep, center=center)
    for name in ("mu_in", "mu_out", "sigma_in", "sigma_out"):
        assert_close(host(getattr(g, name)), want[name], rtol=1e-8)


def test_fit_global_variance_and_empty_sides(rng):
    s, keep, _ = _data(rng, 6, 11, 2)
    keep[:, 3] = True  # no OUT model for example 3
    keep[:, 4] = False  # no IN model for example 4
    g, c, _ = _fit_pair(s, keep, None, torch.float64, variance="global")
    _assert_fits_equal(g, c)
    assert np.isnan(host(g.mu_out)[3]).all() and np.isnan(host(g.mu_in)[4]).all()


def test_fit_many_models_and_augmentations_use_the_global_workspace(rng):
    # M * A too large for shared memory: observations live in global scratch memory.
    s, keep, _ = _data(rng, 1000, 3, 18)
    g, c, _ = _fit_pair(s, keep, None, torch.float32, center="median")
    _assert_fits_equal(g, c)


def test_fit_rejects_nan_scores_and_logits(rng):
    s, keep, _ = _data(rng, 4, 5, 2)
    s[2, 3, 1] = np.inf
    with pytest.raises(ValueError, match="shadow_scores"):
        mk.lira.fit(gpu(s), gpu(keep))
    z, keep, labels = _data(rng, 4, 5, 2, c=3)
    z[0, 1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="logits"):
        mk.lira.fit(gpu(z), gpu(keep), labels=gpu(labels))


@pytest.mark.parametrize("mode,offline", [("online", "one_sided"), ("offline", "one_sided"),
                                          ("offline", "two_sided")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_score(mode, offline, dtype, rng):
    s, keep, _ = _data(rng, 17, 23, 3)
    f_g = mk.lira.fit(gpu(s[1:]), gpu(keep[1:]))
    f_c = mk.lira.fit(s[1:], keep[1:])
    target = torch.from_numpy(s[0]).to(dtype)
    got = mk.lira.score(target.to(DEV), f_g, mode=mode, offline=offline)
    cpu = mk.lira.score(target, f_c, mode=mode, offline=offline)
    assert_close(host(got), np.asarray(cpu))
    want = ref.lira_score(target.double().numpy(), ref.lira_fit(s[1:], keep[1:]), mode, offline)
    assert_close(host(got), want, rtol=1e-8)


def _loo_pair(data, keep, labels, dtype, **kw):
    t = torch.from_numpy(np.ascontiguousarray(data)).to(dtype)
    targets = kw.pop("targets", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = {} if labels is None else {"labels": gpu(labels)}
        g = mk.lira.leave_one_out(t.to(DEV), gpu(keep), targets=targets, on_empty="nan",
                                  **extra, **kw)
        extra = {} if labels is None else {"labels": labels}
        c = mk.lira.leave_one_out(t, keep, targets=targets, on_empty="nan", **extra, **kw)
    return g, c, t


MODES = [("online", "one_sided"), ("offline", "one_sided"), ("offline", "two_sided")]


@pytest.mark.parametrize("m,n,a", [(2, 3, 1), (3, 1, 2), (4, 7, 18), (9, 13, 2), (33, 5, 1)])
@pytest.mark.parametrize("mode,offline", MODES)
@pytest.mark.parametrize("center", ["median", "mean"])
@pytest.mark.parametrize("variance", ["per_example", "global"])
@pytest.mark.parametrize("references", ["balanced", "all"])
def test_leave_one_out_from_scores(m, n, a, mode, offline, center, variance, references, rng):
    s, keep, _ = _data(rng, m, n, a)
    if references == "balanced" and m % 2 == 0 and n > 1:  # complementary pairs too
        keep[1::2] = ~keep[0::2]
    kw = dict(mode=mode, offline=offline, center=center, variance=variance,
              references=references)
    g, c, _ = _loo_pair(s, keep, None, torch.float64, **kw)
    assert g.shape == (m, n)
    assert_close(host(g), c.numpy())
    want = ref.lira_leave_one_out(s, keep, **kw)
    assert_close(host(g), want, rtol=1e-7)


@pytest.mark.parametrize("big", [1e6, 1e10, 1e80])
@pytest.mark.parametrize("references", ["balanced", "all"])
def test_leave_one_out_global_when_one_model_dominates(big, references, rng):
    # The pooled spread without target 0 sums the others' deviations directly (the device
    # pre-pass and pooled_sd_kernel), not the total minus target 0's share
    s, keep, _ = _data(rng, 12, 9, 2)
    s[0, 0, 0] = big
    for variance in ("global", "per_example"):  # per example: the side recomputed
        kw = dict(variance=variance, center="mean", references=references)
        g, c, _ = _loo_pair(s, keep, None, torch.float64, **kw)
        assert_close(host(g), c.numpy())
        assert_close(host(g), ref.lira_leave_one_out(s, keep, **kw), rtol=1e-9)


@pytest.mark.parametrize("m", [256, 257, 300])
@pytest.mark.parametrize("variance", ["per_example", "global"])
def test_leave_one_out_many_models(m, variance, rng):
    # 256 models: the register sort; more: the shared-memory bitonic sort.
    s, keep, _ = _data(rng, m, 11, 2, n_in=m // 2 + 1)
    g, c, _ = _loo_pair(s, keep, None, torch.float32, variance=variance)
    assert_close(host(g), c.numpy())
    sub = [0, m - 1, 7]
    want = np.stack([ref.lira_leave_one_out(s.astype(np.float32), keep, targets=[k],
                                            variance=variance)[0] for k in sub])
    assert_close(host(g)[sub], want, rtol=1e-7)


@pytest.mark.parametrize("m,n,a,c", [(3, 1, 1, 2), (8, 9, 2, 10), (16, 31, 18, 7),
                                     (64, 101, 2, 10), (260, 7, 2, 10)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("center", ["median", "mean"])
def test_leave_one_out_fused_logits(m, n, a, c, dtype, center, rng):
    z, keep, labels = _data(rng, m, n, a, c=c)
    g, cpu, t = _loo_pair(z, keep, labels, dtype, center=center)
    assert_close(host(g), cpu.numpy())
    scores = ref.signal(t.double().numpy(), labels[:, None], "scaled_confidence")
    g_s, _, _ = _loo_pair(scores, keep, None, torch.float64, center=center)
    assert_close(host(g), host(g_s), rtol=1e-8)
    sub = sorted({0, m // 2, m - 1})  # the float64 reference refits per target: a few
    want = ref.lira_leave_one_out(scores, keep, targets=sub, center=center)
    assert_close(host(g)[sub], want, rtol=1e-7)


@pytest.mark.parametrize("signal", ["hinge", "loss", "confidence"])
def test_leave_one_out_fused_other_signals(signal, rng):
    z, keep, labels = _data(rng, 12, 15, 2, c=5)
    g, c, _ = _loo_pair(z, keep, labels, torch.float64, signal=signal, mode="offline")
    assert_close(host(g), c.numpy())
    want = ref.lira_leave_one_out(ref.signal(z, labels[:, None], signal), keep, mode="offline")
    assert_close(host(g), want, rtol=1e-7)


def test_leave_one_out_non_contiguous_inputs(rng):
    m, n, a, c = 24, 19, 3, 6
    z, keep, labels = _data(rng, m, n, a, c=c)
    cpu = mk.lira.leave_one_out(z, keep, labels=labels, on_empty="nan")
    # logits [M, N, A, C] as a permuted view of [M, A, N, C] storage: not stageable
    zg = gpu(np.ascontiguousarray(z.transpose(0, 2, 1, 3))).permute(0, 2, 1, 3)
    kg = gpu(np.ascontiguousarray(keep.T)).T  # column-major keep
    lg = gpu(np.repeat(labels, 2))[::2]  # strided labels
    assert not zg.is_contiguous() and not kg.is_contiguous() and not lg.is_contiguous()
    got = mk.lira.leave_one_out(zg, kg, labels=lg, on_empty="nan")
    assert_close(host(got), np.asarray(cpu))
    want = ref.lira_leave_one_out(ref.signal(z, labels[:, None], "scaled_confidence"), keep)
    assert_close(host(got), want, rtol=1e-7)
    # every other example of a larger contiguous tensor
    big = rng.normal(size=(m, 2 * n, a, c))
    big[:, ::2] = z
    got = mk.lira.leave_one_out(gpu(big)[:, ::2], gpu(keep), labels=gpu(labels), on_empty="nan")
    assert_close(host(got), np.asarray(cpu))


@pytest.mark.parametrize("m,n,a,c", [(1000, 2, 18, None), (600, 3, 18, None),
                                     (8, 5, 1, 5000), (4, 3, 2, 40_000)])
def test_leave_one_out_unusual_sizes(m, n, a, c, rng):
    # Observations in global scratch memory (M x A too large for shared memory), a tile
    # that fills one SM alone, and logits with so many classes that fewer models are
    # staged at a time, or none.
    data, keep, labels = _data(rng, m, n, a, c=c)
    targets = [0, m - 1, m // 2]
    data32 = data.astype(np.float32)  # what both kernels read
    scores = data32 if c is None else ref.signal(data32, labels[:, None], "scaled_confidence")
    for variance in ("per_example", "global"):
        g, cpu, _ = _loo_pair(data, keep, labels, torch.float32, targets=targets,
                              variance=variance)
        assert_close(host(g), cpu.numpy())
        want = ref.lira_leave_one_out(scores, keep, targets=targets, variance=variance)
        assert_close(host(g), want, rtol=1e-7)


def test_leave_one_out_target_subsets_and_repeats(rng):
    s, keep, _ = _data(rng, 10, 12, 2)
    g_all, c_all, _ = _loo_pair(s, keep, None, torch.float64)
    g, c, _ = _loo_pair(s, keep, None, torch.float64, targets=[7, 0, 7])
    assert_close(host(g), c.numpy())
    assert_close(host(g), ref.lira_leave_one_out(s, keep, targets=[7, 0, 7]), rtol=1e-7)
    assert_close(host(g), host(g_all)[[7, 0, 7]], rtol=1e-12)


def test_leave_one_out_counts_clamped_spreads(rng):
    s, keep, _ = _data(rng, 4, 6, 2)
    s[:, 2, :] = 1.5  # identical observations: every spread of example 2 is zero
    with pytest.warns(mk.lira.ClampedSpreadWarning) as w_gpu:
        mk.lira.leave_one_out(gpu(s), gpu(keep), on_empty="nan")
    with pytest.warns(mk.lira.ClampedSpreadWarning) as w_cpu:
        mk.lira.leave_one_out(s, keep, on_empty="nan")
    assert str(w_gpu[0].message) == str(w_cpu[0].message)


def test_leave_one_out_empty_side_raises_like_the_cpu(rng):
    s, keep, _ = _data(rng, 4, 6, 1)
    keep[:, 1] = [True, False, False, False]  # leaving model 0 out empties IN
    with pytest.raises(ValueError, match="no IN model") as e_gpu:
        mk.lira.leave_one_out(gpu(s), gpu(keep))
    with pytest.raises(ValueError, match="no IN model") as e_cpu:
        mk.lira.leave_one_out(s, keep)
    assert str(e_gpu.value) == str(e_cpu.value)
    g, c, _ = _loo_pair(s, keep, None, torch.float64)
    assert np.isnan(host(g)[0, 1]) and np.isnan(c.numpy()[0, 1])
    assert_close(host(g), c.numpy())


# ------------------------------------------------------------------ streams and devices
@gpu_only
def test_work_runs_on_the_current_stream(rng):
    # The input is written on a side stream after a long sleep; a kernel on any other
    # stream (the legacy default stream does not wait for torch's non-blocking streams)
    # would read the zeros that are there before.
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        pytest.skip("torch.cuda._sleep is not available")
    s, keep, _ = _data(rng, 16, 4001, 2)
    src, kg = gpu(s), gpu(keep)
    dst = torch.zeros_like(src)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        sleep(200_000_000)
        dst.copy_(src)
        f = mk.lira.fit(dst, kg, center="mean")
        # and a signal of logits written on the side stream (labels 0: z_0 = s, z_1 = 0)
        logits = torch.stack([dst, torch.zeros_like(dst)], dim=-1)
        sig = mk.signals.hinge(logits, torch.zeros(4001, 1, dtype=torch.int64, device=DEV))
    torch.cuda.synchronize()
    _assert_fits_equal(f, mk.lira.fit(s, keep, center="mean"))
    np.testing.assert_allclose(host(sig), s, rtol=1e-6)


@gpu_only
def test_results_stay_on_the_input_device(rng):
    s, keep, _ = _data(rng, 6, 7, 2)
    f = mk.lira.fit(gpu(s), gpu(keep))
    for x in (f.mu_in, f.mu_out, f.sigma_in, f.sigma_out, f.n_in, f.n_out):
        assert x.device == torch.device(DEV, torch.cuda.current_device())
    sc = mk.lira.score(gpu(s[0]), f)
    loo = mk.lira.leave_one_out(gpu(s), gpu(keep), on_empty="nan")
    assert sc.device.type == "cuda" and loo.device.type == "cuda"


@gpu_only
def test_arrays_on_different_devices_raise(rng):
    s, keep, _ = _data(rng, 6, 7, 2)
    with pytest.raises(ValueError, match="device"):
        mk.lira.fit(gpu(s), keep)  # keep on the CPU
    with pytest.raises(ValueError, match="device"):
        mk.lira.leave_one_out(s, gpu(keep))
    z = rng.normal(size=(3, 4))
    with pytest.raises(ValueError, match="device"):
        mk.signals.loss(gpu(z), np.array([0, 1, 2]))
    f = mk.lira.fit(s, keep)
    with pytest.raises(ValueError, match="device"):
        mk.lira.score(gpu(s[0]), f)


@gpu_only
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="needs two GPUs")
def test_second_gpu_and_mixed_gpus(rng):
    s, keep, _ = _data(rng, 6, 7, 2)
    torch.cuda.set_device(0)
    f1 = mk.lira.fit(gpu(s).to("cuda:1"), gpu(keep).to("cuda:1"))
    assert f1.mu_in.device == torch.device("cuda:1")
    assert torch.cuda.current_device() == 0  # the caller's device is restored
    _assert_fits_equal(f1, mk.lira.fit(s, keep))
    with pytest.raises(ValueError, match="device"):
        mk.lira.fit(gpu(s).to("cuda:0"), gpu(keep).to("cuda:1"))


def _softmax_ce_reference(z, y, w):
    """The kernel's outputs in float64 (numpy): residual w (softmax - onehot) [R, C, K],
    zero on rows whose label is outside [0, C); weighted cross-entropy per head [K]; bias
    gradient [C * K] (the residual summed over the rows)."""
    z, w = np.asarray(z, np.float64), np.asarray(w, np.float64)
    y = np.asarray(y)
    r, c, _ = z.shape
    ok = (y >= 0) & (y < c)
    zmax = z.max(1, keepdims=True)
    lse = np.log(np.exp(z - zmax).sum(1)) + zmax[:, 0]
    p = np.exp(z - lse[:, None])
    rows = np.flatnonzero(ok)
    p[rows, y[rows]] -= 1.0
    res = p * w[:, None, :] * ok[:, None, None]
    ce = lse[rows] - z[rows, y[rows]]
    return res, (w[rows] * ce).sum(0), res.sum(0).reshape(-1)


def _assert_softmax_ce_close(res, loss, gbias, want, r):
    """float32 kernel outputs against the float64 reference: to float32 rounding (the sums
    over R rows round like sqrt(R) terms)."""
    np.testing.assert_allclose(res, want[0], atol=1e-6)
    np.testing.assert_allclose(loss, want[1], rtol=2e-6, atol=1e-7 * r)
    np.testing.assert_allclose(gbias, want[2], atol=1e-6 * r ** 0.5 + 1e-7)


@pytest.mark.parametrize("shape", [(1, 2, 1), (333, 17, 3), (2000, 10, 300)])
def test_softmax_ce_kernel_matches_cpu(shape):
    """The fused training kernel (shadow heads) on the device against its CPU twin."""
    from miakit import _C
    from miakit._arrays import kernel_arg, stream_of

    r, c, k = shape
    g = torch.Generator().manual_seed(r + c + k)
    z = torch.randn(r, c, k, generator=g) * 4
    y = torch.randint(0, c, (r,), generator=g)
    y[0] = c  # a bad label: its row is left out and counted
    w = torch.rand(r, k, generator=g)

    def run(dev):
        zz, yy, ww = z.clone().to(dev), y.to(dev), w.to(dev)
        loss = torch.zeros(k, dtype=torch.float64, device=dev)
        gbias = torch.zeros(c * k, device=dev)
        bad = _C.softmax_ce(kernel_arg(zz), kernel_arg(yy), kernel_arg(ww), kernel_arg(loss),
                            kernel_arg(gbias), stream_of(zz))
        return bad, zz.cpu(), loss.cpu(), gbias.cpu()

    bad_d, z_d, l_d, g_d = run(DEV)
    bad_c, z_c, l_c, g_c = run("cpu")
    assert bad_d == bad_c == 1
    np.testing.assert_allclose(z_d.numpy(), z_c.numpy(), atol=1e-6)
    np.testing.assert_allclose(l_d.numpy(), l_c.numpy(), rtol=1e-5)
    np.testing.assert_allclose(g_d.numpy(), g_c.numpy(), atol=1e-5 * r ** 0.5)
    # and both against float64 (the residual is written in place over the logits; the
    # bad label's row is left out: its logits stay as they were)
    want = _softmax_ce_reference(z.numpy(), y.numpy(), w.numpy())
    want[0][0] = z[0].numpy()
    for zz, loss, gbias in ((z_d, l_d, g_d), (z_c, l_c, g_c)):
        _assert_softmax_ce_close(zz.numpy(), loss.numpy(), gbias.numpy(), want, r)


@pytest.mark.parametrize("shape", [(1, 2, 1), (333, 17, 3), (2000, 10, 300)])
def test_softmax_ce_kernel_separate_residual_implied_last_matches_cpu(shape):
    """The kernel's other form: residual into its own array, last class implied."""
    from miakit import _C
    from miakit._arrays import kernel_arg, stream_of

    r, c, k = shape
    g = torch.Generator().manual_seed(r + 2 * c + k)
    z = torch.randn(r, c, k, generator=g) * 4
    y = torch.randint(0, c, (r,), generator=g)
    y[-1] = -1  # a bad label: zeros in the residual
    w = torch.rand(r, k, generator=g)

    def run(dev):
        zz, yy, ww = z.clone().to(dev), y.to(dev), w.to(dev)
        res = torch.full((r, c, k), 3.0, device=dev)
        loss = torch.zeros(k, dtype=torch.float64, device=dev)
        gbias = torch.zeros(c * k, device=dev)
        out = torch.zeros(k + 1, r + 3, c, device=dev)
        dest = torch.arange(k, device=dev).flip(0)
        dest[0] = -1
        bad = _C.softmax_ce(kernel_arg(zz), kernel_arg(yy), kernel_arg(ww), kernel_arg(loss),
                            kernel_arg(gbias), stream_of(zz), res=kernel_arg(res),
                            implied_last=True, out=kernel_arg(out),
                            out_heads=kernel_arg(dest), row0=2,
                            bias=kernel_arg(torch.linspace(-1, 1, c * k, device=dev)))
        return bad, zz.cpu(), res.cpu(), loss.cpu(), gbias.cpu(), out.cpu()

    out_d, out_c = run(DEV), run("cpu")
    assert out_d[0] == out_c[0] == 1
    assert float(out_c[2][-1].abs().max()) == 0.0
    for a, b in zip(out_d[1:], out_c[1:]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5 * r ** 0.5)
    # against float64: the logits the kernel works on are z plus the bias on every class
    # but the last, which is minus the sum of the others (the implied last class)
    zb = z.double().numpy() + np.linspace(-1, 1, c * k).reshape(c, k)
    zb[:, -1] = -zb[:, :-1].sum(1)
    want = _softmax_ce_reference(zb, y.numpy(), w.numpy())
    dest = np.arange(k)[::-1].copy()
    dest[0] = -1
    for _, zz, res, loss, gbias, out in (out_d, out_c):
        _assert_softmax_ce_close(res.numpy(), loss.numpy(), gbias.numpy(), want, r)
        np.testing.assert_allclose(zz.numpy(), zb, rtol=1e-6, atol=1e-5)  # filled in
        for j, head in enumerate(dest):  # each head's logits in its row of out
            if head >= 0:
                np.testing.assert_allclose(out.numpy()[head, 2:2 + r], zb[:, :, j],
                                           rtol=1e-6, atol=1e-5)
        assert (out.numpy()[k - 1] == 0).all()  # head 0 was not written (dest -1)


# ===================================================================== RMIA
@pytest.mark.parametrize("m,n,z", [(2, 1, 1), (6, 37, 5), (9, 300, 1000)])
def test_rmia_count_matches_the_cpu_exactly(m, n, z, rng):
    from miakit.rmia import _count

    x = np.round(rng.uniform(0, 2, size=(m, n)), 1)
    pop = np.round(rng.uniform(0, 2, size=(m, z)), 1)
    pop[rng.random((m, z)) < 0.3] = np.nan
    self_mask = rng.random((m, n)) < 0.2
    for gamma in (1.0, 0.5):
        g = _count(gpu(x), gpu(pop), gpu(self_mask), gamma)
        c = _count(x, pop, self_mask, gamma)
        np.testing.assert_array_equal(host(g), c)  # same ratios, same comparisons


@pytest.mark.parametrize("offline", [False, True])
@pytest.mark.parametrize("aggregate", ["mean", "vote"])
def test_rmia_leave_one_out_on_the_gpu(offline, aggregate, rng):
    keep = mk.shadow.balanced_keep(8, 200, seed=0)
    q = np.clip(rng.uniform(0.1, 0.7, size=(8, 200, 2)) + 0.2 * keep[..., None], 0, 1)
    pop = rng.uniform(0.1, 0.7, size=(8, 300, 2))
    for population in (None, pop):
        kw = dict(offline=offline, aggregate=aggregate, a=0.3)
        g = mk.rmia.leave_one_out(gpu(q), gpu(keep), **kw,
                                  population=None if population is None else gpu(population))
        c = mk.rmia.leave_one_out(q, keep, **kw, population=population)
        assert_close(host(g), c, rtol=0, scale_atol=1e-12)
        targets = [0, 3, 7]
        want = ref.rmia_leave_one_out(q, keep, targets=targets, population=population, **kw)
        assert_close(host(g)[targets], want, rtol=0, scale_atol=1e-12)


# ===================================================================== K-S
@pytest.mark.parametrize("n,m", [(1, 3), (50, 50), (200, 77)])
def test_ks_merge_on_the_gpu_equals_scipy(n, m, rng):
    from scipy import stats

    a = np.round(rng.normal(size=(5, n)), 1)
    b = np.round(rng.normal(0.2, size=(5, m)), 1)
    for alternative in ("two-sided", "less", "greater"):
        got = mk.ks.ks_2samp(gpu(a), gpu(b), alternative=alternative)
        for i in range(5):
            want = stats.ks_2samp(a[i], b[i], alternative=alternative)
            assert got.statistic[i] == want.statistic
            assert got.statistic_location[i] == want.statistic_location
            np.testing.assert_allclose(got.pvalue[i], want.pvalue, rtol=1e-12)


# ===================================================================== shadow heads
def _mlp_float64(x_rows, y_rows, rows, params, epochs, lr, wd):
    """Full-batch Adam on one ReLU head in float64, from the head's initial parameters:
    the loop train_heads runs for it (as tests/test_shadow_heads.py's reference)."""
    d, h = params["w1"].shape
    c = params["w2"].shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(),
                              torch.nn.Linear(h, c)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.as_tensor(params["w1"]).T)
        net[0].bias.copy_(torch.as_tensor(params["b1"]))
        net[2].weight.copy_(torch.as_tensor(params["w2"]).T)
        net[2].bias.copy_(torch.as_tensor(params["b2"]))
    opt = torch.optim.Adam([{"params": [net[0].weight, net[2].weight], "weight_decay": wd},
                            {"params": [net[0].bias, net[2].bias], "weight_decay": 0.0}],
                           lr=lr)
    xt, yt = torch.from_numpy(x_rows.astype(np.float64)), torch.from_numpy(y_rows)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt[rows]), yt[rows]).backward()
        opt.step()
    with torch.no_grad():
        return net(xt).numpy()


def test_heads_meet_the_float64_references():
    """Heads trained on the device against float64 references (not only the CPU twin):
    the linear head against the optimum found by scipy, the MLP head against the same
    Adam steps in float64."""
    from test_shadow_heads import _centred, _data, _reference_logreg

    from miakit.shadow.heads import initial_params

    x, y = _data(n=200, d=8, a=2)
    n, a, d = x.shape
    keep = mk.shadow.balanced_keep(8, n, seed=0)
    x_rows, y_rows = x.reshape(n * a, d), np.repeat(y, a)
    z, info = mk.shadow.train_heads(x, y, keep, device=DEV, head="linear", weight_decay=1e-2,
                                    tol=1e-6, return_info=True)
    assert info["converged"].all() and (info["grad_max"] <= 1e-6).all()
    for m in (0, 5):
        rows = np.repeat(keep[m], a)  # every view of the head's examples
        w, b = _reference_logreg(x_rows, y_rows, rows, 1e-2, 3)
        np.testing.assert_allclose(_centred(z[m].reshape(n * a, 3)),
                                   _centred(x_rows @ w + b), atol=5e-4)
    z = mk.shadow.train_heads(x, y, keep, device=DEV, head="mlp", hidden=16, epochs=30,
                              lr=1e-2, weight_decay=1e-3, seed=0)
    for m in (0, 7):
        want = _mlp_float64(x_rows, y_rows, np.flatnonzero(np.repeat(keep[m], a)),
                            initial_params("mlp", d, 3, 16, 0, m), epochs=30, lr=1e-2,
                            wd=1e-3)
        np.testing.assert_allclose(z[m].reshape(n * a, 3), want, atol=5e-4, rtol=1e-3)
