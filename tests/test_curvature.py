"""Input-loss curvature (docs/methods/curvature.md) and the counter-based probe generator."""

from __future__ import annotations

import math

import numpy as np
import pytest

import miakit as mk

torch = pytest.importorskip("torch")
nn = torch.nn

MASK = (1 << 64) - 1


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def probe_reference(seed: int, example: int, probe: int, d: int) -> np.ndarray:
    """Pure-Python reference of include/miakit/rng.h."""
    key = splitmix64(splitmix64(splitmix64(seed) ^ example) ^ ((probe * 0xD1B54A32D192ED03) & MASK))
    out = np.empty(d)
    for e in range(d):
        word = splitmix64((key + (e >> 6) * 0x9E3779B97F4A7C15) & MASK)
        out[e] = 1.0 if (word >> (e & 63)) & 1 else -1.0
    return out


# ---------------------------------------------------------------------- probes


@pytest.mark.parametrize("seed", [0, 7, 2**64 - 1])
def test_probes_match_the_python_reference(seed):
    ids = np.array([0, 5, 2**40 + 3])
    v = mk.curvature.probes(ids, 3, 130, seed=seed, first_probe=4, dtype="float64")
    assert v.shape == (3, 3, 130)
    for r, i in enumerate(ids):
        for k in range(3):
            np.testing.assert_array_equal(v[r, k], probe_reference(seed, int(i), 4 + k, 130))


def test_probes_are_independent_of_batching_dtype_and_array_type():
    ids = np.arange(10)
    full = mk.curvature.probes(ids, 4, (3, 5), seed=3)
    sub = mk.curvature.probes(ids[[7, 2]], 2, (3, 5), seed=3, first_probe=2)
    np.testing.assert_array_equal(sub, full[[7, 2]][:, 2:])
    for dtype in ("float16", "float64"):
        np.testing.assert_array_equal(
            mk.curvature.probes(ids, 4, (3, 5), seed=3, dtype=dtype).astype(np.float32), full)
    t = mk.curvature.probes(torch.arange(10), 4, (3, 5), seed=3, dtype="bfloat16")
    assert isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16
    np.testing.assert_array_equal(t.float().numpy(), full)
    strided = np.arange(20)[::2]  # non-contiguous ids
    np.testing.assert_array_equal(mk.curvature.probes(strided, 1, 3, seed=3),
                                  mk.curvature.probes(strided.copy(), 1, 3, seed=3))


def test_probes_are_balanced_and_uncorrelated():
    v = mk.curvature.probes(np.arange(200), 8, 256, seed=11, dtype="float64").reshape(1600, 256)
    assert abs(v.mean()) < 0.01
    corr = (v @ v.T) / 256
    off = corr[~np.eye(1600, dtype=bool)]
    assert abs(off.mean()) < 0.005 and off.std() < 1.2 / math.sqrt(256)
    assert not np.array_equal(mk.curvature.probes(np.array([1]), 1, 64, seed=1),
                              mk.curvature.probes(np.array([1]), 1, 64, seed=2))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"example_ids": np.array([0.5])}, TypeError, r"example_ids: expected a 1-D integer"),
    ({"example_ids": np.array([-1])}, ValueError, r"example_ids: expected non-negative"),
    ({"n_probes": 0}, ValueError, r"n_probes: expected an int >= 1, got 0"),
    ({"seed": -1}, ValueError, r"seed: expected a non-negative int below 2\*\*64, got -1"),
    ({"seed": 1.5}, TypeError, r"seed: expected an int"),
    ({"dtype": "int8"}, ValueError, r"dtype: expected one of"),
    ({"dtype": "bfloat16"}, ValueError, r"bfloat16 probes need torch"),
])
def test_probes_bad_input(kwargs, exc, match):
    args = {"example_ids": np.array([0, 1]), "n_probes": 2, "shape": 3}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        mk.curvature.probes(**args)


# ---------------------------------------------------------------- model-based

CE = nn.CrossEntropyLoss(reduction="none")


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Softplus(), nn.Linear(8, 8), nn.Tanh(),
                         nn.Linear(8, 3)).double().eval()


def exact_traces(model, x, y):
    out = []
    for i in range(len(x)):
        def f(xi, i=i):
            return CE(model(xi[None]), y[i:i + 1]).sum()
        out.append(torch.autograd.functional.hessian(f, x[i]).trace())
    return torch.stack(out)


def test_hutchinson_is_unbiased_against_the_exact_hessian():
    model = small_model()
    x, y = torch.randn(6, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    t, se = mk.curvature.hutchinson_trace(model, CE, x, y, n_probes=64, seed=1)
    exact = exact_traces(model, x, y)
    assert torch.all(se > 0)
    assert torch.all((t - exact).abs() <= 3 * se), ((t - exact) / se)


def test_hutchinson_matches_a_loop_over_the_same_probes():
    model = small_model(1)
    x, y = torch.randn(5, 6, dtype=torch.float64), torch.tensor([2, 1, 0, 0, 1])
    t, se = mk.curvature.hutchinson_trace(model, CE, x, y, n_probes=4, seed=9)
    v = mk.curvature.probes(torch.arange(5), 4, 6, seed=9, dtype="float64")
    ests = torch.empty(5, 4, dtype=torch.float64)
    for i in range(5):
        h = torch.autograd.functional.hessian(lambda xi, i=i: CE(model(xi[None]), y[i:i + 1]).sum(),
                                              x[i])
        for k in range(4):
            ests[i, k] = v[i, k] @ h @ v[i, k]
    torch.testing.assert_close(t, ests.mean(1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(se, ests.std(1) / 2, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 7, None])
def test_curvature_does_not_depend_on_batch_size(batch_size):
    model = small_model(2)
    x, y = torch.randn(11, 6, dtype=torch.float64), torch.randint(0, 3, (11,))
    kw = {"batch_size": batch_size}
    t_all, se_all = mk.curvature.hutchinson_trace(model, CE, x, y, n_probes=3)
    t, se = mk.curvature.hutchinson_trace(model, CE, x, y, n_probes=3, **kw)
    torch.testing.assert_close(t, t_all, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(se, se_all, rtol=1e-10, atol=1e-14)
    for fn in (mk.curvature.finite_difference, mk.curvature.zero_order):
        torch.testing.assert_close(fn(model, CE, x, y, n_probes=3, **kw),
                                   fn(model, CE, x, y, n_probes=3), rtol=1e-12, atol=1e-14)


def test_example_ids_select_the_probes():
    model = small_model(3)
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    t_all, _ = mk.curvature.hutchinson_trace(model, CE, x, y, n_probes=2, seed=4)
    sub = [6, 1, 3]
    t_sub, _ = mk.curvature.hutchinson_trace(model, CE, x[sub], y[sub], n_probes=2, seed=4,
                                             example_ids=sub)
    torch.testing.assert_close(t_sub, t_all[sub], rtol=1e-12, atol=1e-14)


def quadratic(a_mat):
    """loss(x) = 0.5 x^T A x per example (identity model): H = A."""
    def loss(out, t):
        return 0.5 * torch.einsum("bi,ij,bj->b", out, a_mat, out)
    return loss


def test_finite_difference_and_zero_order_on_a_quadratic():
    torch.manual_seed(5)
    m = torch.randn(5, 5, dtype=torch.float64)
    a_mat = m + m.T
    loss = quadratic(a_mat)
    x = torch.randn(4, 5, dtype=torch.float64)
    y = torch.zeros(4)
    h = 0.01
    v = mk.curvature.probes(torch.arange(4), 6, 5, seed=2, dtype="float64")
    hv = torch.einsum("ij,bkj->bki", a_mat, h * v)  # the gradient difference, exactly
    fd = mk.curvature.finite_difference(nn.Identity(), loss, x, y, h=h, n_probes=6, seed=2)
    torch.testing.assert_close(fd, hv.norm(dim=2).mean(1), rtol=1e-9, atol=0)
    fd2 = mk.curvature.finite_difference(nn.Identity(), loss, x, y, h=h, n_probes=6, seed=2,
                                         squared=True)
    torch.testing.assert_close(fd2, hv.pow(2).sum(2).mean(1), rtol=1e-9, atol=0)
    zo = mk.curvature.zero_order(nn.Identity(), loss, x, y, h=h, n_probes=3, seed=2)
    vv, uu = h * v[:, 0::2], h * v[:, 1::2]
    want = torch.einsum("bki,ij,bkj->bk", uu, a_mat, vv).abs().mul(4).div(4 * h).mean(1)
    torch.testing.assert_close(zo, want, rtol=1e-7, atol=1e-12)


def test_squared_finite_difference_estimates_h2_tr_h2():
    torch.manual_seed(6)
    m = torch.randn(8, 8, dtype=torch.float64)
    a_mat = m @ m.T / 8
    x = torch.randn(1, 8, dtype=torch.float64)
    h = 1e-2
    fd2 = mk.curvature.finite_difference(nn.Identity(), quadratic(a_mat), x, torch.zeros(1), h=h,
                                         n_probes=2000, squared=True, seed=1)
    np.testing.assert_allclose(float(fd2[0]), h * h * float((a_mat @ a_mat).trace()), rtol=0.05)


def test_training_mode_is_switched_with_a_warning():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.3), nn.Linear(4, 2)).double()
    x, y = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 1])
    with pytest.warns(UserWarning, match="hutchinson_trace: the model is in training mode"):
        t, _ = mk.curvature.hutchinson_trace(model, CE, x, y, n_probes=2)
    assert model.training
    torch.testing.assert_close(t, mk.curvature.hutchinson_trace(model.eval(), CE, x, y,
                                                                n_probes=2)[0])


def test_linear_loss_has_zero_curvature():
    model = nn.Linear(3, 1).double()
    t, se = mk.curvature.hutchinson_trace(model, lambda o, t: o[:, 0], torch.randn(2, 3).double(),
                                          torch.zeros(2), n_probes=2)
    assert torch.all(t == 0) and torch.all(se == 0)


@pytest.mark.parametrize("fn", [mk.curvature.hutchinson_trace, mk.curvature.finite_difference,
                                mk.curvature.zero_order])
@pytest.mark.parametrize("kwargs,exc,match", [
    ({"loss_fn": nn.CrossEntropyLoss()}, ValueError, r"loss_fn: returned a scalar"),
    ({"x": torch.zeros(3, 4, dtype=torch.long)}, TypeError, r"x: expected a floating-point"),
    ({"y": torch.zeros(2, dtype=torch.long)}, ValueError, r"y: expected a batch axis of length 3"),
    ({"n_probes": 0}, ValueError, r"n_probes: expected an int >= 1"),
    ({"seed": -2}, ValueError, r"seed:"),
    ({"batch_size": 0}, ValueError, r"batch_size: expected a positive int"),
    ({"example_ids": [0, 1]}, ValueError, r"example_ids: expected 3 integer indices"),
    ({"example_ids": [0, -1, 2]}, ValueError, r"example_ids: expected non-negative"),
    ({"model": "m"}, TypeError, r"model: expected a torch.nn.Module"),
])
def test_curvature_bad_input(fn, kwargs, exc, match):
    args = {"model": nn.Linear(4, 2).double(), "loss_fn": CE,
            "x": torch.randn(3, 4, dtype=torch.float64), "y": torch.tensor([0, 1, 0])}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fn(**args)


@pytest.mark.parametrize("h", [0.0, -1.0, float("nan")])
def test_step_size_must_be_positive(h):
    for fn in (mk.curvature.finite_difference, mk.curvature.zero_order):
        with pytest.raises(ValueError, match=r"h: expected a positive finite float"):
            fn(nn.Identity(), CE, torch.randn(2, 3), torch.tensor([0, 1]), h=h)


# ------------------------------------------------------------------ head_trace


def head_trace_reference(x, w, b):
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    w = torch.as_tensor(np.asarray(w, dtype=np.float64))
    bb = 0.0 if b is None else torch.as_tensor(np.asarray(b, dtype=np.float64))
    out = []
    for xi in x:
        def f(v):
            return torch.logsumexp(w @ v + bb, 0)  # CE minus the linear term z_y
        out.append(torch.autograd.functional.hessian(f, xi).trace())
    return torch.stack(out).numpy()


@pytest.mark.parametrize("n,d,c", [(1, 1, 1), (1, 4, 2), (19, 7, 5), (201, 16, 10)])
@pytest.mark.parametrize("bias", [True, False])
def test_head_trace_exact(n, d, c, bias):
    rng = np.random.default_rng(n + 10 * d + c)
    x, w = rng.normal(size=(n, d)), rng.normal(size=(c, d))
    b = rng.normal(size=c) if bias else None
    got = mk.curvature.head_trace(x, w, b)
    assert got.dtype == np.float64 and got.shape == (n,)
    np.testing.assert_allclose(got, head_trace_reference(x, w, b), rtol=1e-10, atol=1e-13)


def test_head_trace_float16_noncontiguous_torch_and_hutchinson():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 30)).astype(np.float16).T
    w = rng.normal(size=(8, 3)).astype(np.float32).T  # [3, 8], non-contiguous
    got = mk.curvature.head_trace(x, w)
    np.testing.assert_allclose(got, head_trace_reference(x.astype(np.float64),
                                                         w.astype(np.float64), None),
                               rtol=1e-10, atol=1e-13)
    head = nn.Linear(8, 3).double()
    xt = torch.from_numpy(rng.normal(size=(5, 8)))
    exact = mk.curvature.head_trace(xt, head.weight, head.bias)
    assert isinstance(exact, torch.Tensor)
    t, se = mk.curvature.hutchinson_trace(head, CE, xt, torch.zeros(5, dtype=torch.long),
                                          n_probes=200)
    assert torch.all((t - exact).abs() <= 3 * se + 1e-12)


def test_head_trace_bad_input():
    with pytest.raises(ValueError, match=r"weight: expected shape \(C, 3\)"):
        mk.curvature.head_trace(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"features: expected finite values"):
        mk.curvature.head_trace(np.array([[np.inf, 0.0]]), np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"weight: expected finite values"):
        mk.curvature.head_trace(np.ones((1, 2)), np.array([[np.nan, 0.0]]))


@pytest.mark.cuda
def test_cuda_probes_and_head_trace_match_cpu():
    if not (torch.cuda.is_available() and mk.backend_info()["cuda_available"]):
        pytest.skip("needs a CUDA device and a CUDA build")
    ids = torch.arange(33)
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        gpu = mk.curvature.probes(ids.cuda(), 3, 100, seed=5, dtype=dtype)
        cpu = mk.curvature.probes(ids, 3, 100, seed=5, dtype=dtype)
        assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(70, 9)), rng.normal(size=(4, 9))
    gpu = mk.curvature.head_trace(torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda())
    np.testing.assert_allclose(gpu.cpu().numpy(), mk.curvature.head_trace(x, w), rtol=1e-12)


# --- compiled probe reductions (csrc/cpu/curvature.cpp, csrc/cuda/curvature.cu) --------

def quad_ref(v, hv):
    q = (np.asarray(v, np.float64) * np.asarray(hv, np.float64)).sum(2)
    se = q.std(1, ddof=1) / np.sqrt(q.shape[1]) if q.shape[1] > 1 else np.full(len(q), np.nan)
    return q.mean(1), se


def diff_ref(g1, g0, squared):
    sq = ((np.asarray(g1, np.float64) - np.asarray(g0, np.float64)[:, None]) ** 2).sum(2)
    return (sq if squared else np.sqrt(sq)).mean(1)


@pytest.mark.parametrize("n,p,d", [(1, 1, 1), (1, 2, 7), (5, 3, 1), (4, 10, 33),
                                   (3, 17, 4099), (0, 3, 5)])
def test_probe_kernels_match_numpy(n, p, d):
    rng = np.random.default_rng(n * 100 + p)
    v = rng.choice([-1.0, 1.0], size=(n, p, d))
    hv = rng.standard_normal((n, p, d))
    m, se = mk.curvature.probe_quadratic(v, hv)
    rm, rse = quad_ref(v, hv)
    np.testing.assert_allclose(m, rm, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(se, rse, rtol=1e-12, atol=1e-12, equal_nan=True)
    g0 = rng.standard_normal((n, d))
    for squared in (False, True):
        np.testing.assert_allclose(mk.curvature.probe_differences(hv, g0, squared),
                                   diff_ref(hv, g0, squared), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-12), (np.float16, 1e-12)])
def test_probe_kernels_dtypes_and_strides(dtype, rtol):
    rng = np.random.default_rng(7)
    v = rng.standard_normal((6, 9, 5)).astype(dtype).transpose(0, 2, 1)   # [6, 5, 9]
    hv = rng.standard_normal((6, 5, 18)).astype(dtype)[:, :, ::2]          # [6, 5, 9]
    g0 = rng.standard_normal((9, 6)).astype(dtype).T                       # [6, 9]
    m, se = mk.curvature.probe_quadratic(v, hv)
    rm, rse = quad_ref(v, hv)
    np.testing.assert_allclose(m, rm, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(se, rse, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(mk.curvature.probe_differences(v, g0), diff_ref(v, g0, False),
                               rtol=rtol)
    t = mk.curvature.probe_quadratic(torch.from_numpy(np.ascontiguousarray(v)),
                                     torch.from_numpy(np.ascontiguousarray(hv)))[0]
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), rm, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("fn,args,match", [
    ("probe_quadratic", (np.ones((2, 3, 4)), np.ones((2, 3, 5))), "hvp"),
    ("probe_quadratic", (np.ones((2, 3, 4)), np.ones((2, 2, 4))), "hvp"),
    ("probe_quadratic", (np.ones((2, 3)), np.ones((2, 3))), "probes"),
    ("probe_quadratic", (np.ones((2, 0, 4)), np.ones((2, 0, 4))), "probe"),
    ("probe_differences", (np.ones((2, 3, 4)), np.ones((3, 4))), "grad0"),
    ("probe_differences", (np.ones((2, 3, 4)), np.ones((2, 5))), "grad0"),
    ("probe_differences", (np.ones((2, 3, 4)), np.ones((2, 3, 4))), "grad0"),
])
def test_probe_kernels_bad_shapes(fn, args, match):
    with pytest.raises(ValueError, match=match):
        getattr(mk.curvature, fn)(*args)


def test_probe_kernels_bad_values():
    v, hv = np.ones((2, 3, 4)), np.ones((2, 3, 4))
    bad = hv.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="hvp"):
        mk.curvature.probe_quadratic(v, bad)
    with pytest.raises(ValueError, match="probes"):
        mk.curvature.probe_quadratic(bad, hv)
    with pytest.raises(ValueError, match="grad0"):
        mk.curvature.probe_differences(v, np.full((2, 4), np.inf))
    with pytest.raises(ValueError, match="grads"):
        mk.curvature.probe_differences(bad, np.ones((2, 4)))
    with pytest.raises(TypeError, match="probes"):
        mk.curvature.probe_quadratic(np.ones((2, 3, 4), dtype=np.int32), hv)


def test_estimators_match_torch_reductions():
    """The kernel-backed estimators equal the same reductions done with torch ops."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 3).double()
    model = torch.nn.Sequential(lin, torch.nn.Tanh())
    loss = lambda out, t: (out ** 2).sum(1) * t  # noqa: E731
    x = torch.randn(5, 6, dtype=torch.float64)
    y = torch.rand(5, dtype=torch.float64) + 0.5
    tr, se = mk.curvature.hutchinson_trace(model, loss, x, y, n_probes=4, seed=3)
    v = mk.curvature.probes(torch.arange(5), 4, (6,), 3, like=x).to(x.dtype)
    est = torch.empty(5, 4, dtype=torch.float64)
    for k in range(4):
        xb = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(model(xb), y).sum(), xb, create_graph=True)
        (hv,) = torch.autograd.grad(g, xb, grad_outputs=v[:, k])
        est[:, k] = (v[:, k] * hv).sum(1)
    torch.testing.assert_close(tr, est.mean(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(se, est.std(1) / 2, rtol=1e-10, atol=1e-12)
    fd = mk.curvature.finite_difference(model, loss, x, y, h=1e-2, n_probes=4, seed=3,
                                        squared=True)

    def ig(xx):
        xx = xx.clone().requires_grad_(True)
        return torch.autograd.grad(loss(model(xx), y).sum(), xx)[0]

    ref = sum((ig(x + 1e-2 * v[:, k]) - ig(x)).pow(2).sum(1) for k in range(4)) / 4
    torch.testing.assert_close(fd, ref, rtol=1e-10, atol=1e-15)


def _cuda_ok():
    return torch.cuda.is_available() and mk.backend_info()["cuda_built"]


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_ok(), reason="needs a CUDA GPU and a CUDA build")
@pytest.mark.parametrize("n,p,d", [(1, 1, 1), (4, 10, 33), (3, 17, 4099), (100, 3, 5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_probe_kernels_cuda_match_cpu(n, p, d, dtype):
    torch.manual_seed(n)
    v = torch.randn(n, d, p, dtype=torch.float64).transpose(1, 2).to(dtype)
    hv = torch.randn(n, p, d, dtype=torch.float64).to(dtype)
    g0 = torch.randn(n, d, dtype=torch.float64).to(dtype)
    m, se = mk.curvature.probe_quadratic(v, hv)
    mc, sec = mk.curvature.probe_quadratic(v.cuda(), hv.cuda())
    torch.testing.assert_close(mc.cpu(), m, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(sec.cpu(), se, rtol=1e-11, atol=1e-11, equal_nan=True)
    for squared in (False, True):
        torch.testing.assert_close(
            mk.curvature.probe_differences(hv.cuda(), g0.cuda(), squared).cpu(),
            mk.curvature.probe_differences(hv, g0, squared), rtol=1e-11, atol=1e-11)
    bad = hv.cuda().clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="hvp"):
        mk.curvature.probe_quadratic(v.cuda(), bad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_difference_estimates_refuse_half_precision(dtype):
    # x + h v rounds to 2^-8 of x in bfloat16: zero_order gave 0.39 for an exact 0.60
    a = torch.tensor([1.0, 2.0, 3.0], dtype=dtype)

    def loss(out, t):
        return 0.5 * (a * out ** 2).sum(1)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).to(dtype)
    for fn in (mk.curvature.finite_difference, mk.curvature.zero_order):
        with pytest.raises(TypeError, match=r"^x: .*expected float32 or float64, got "):
            fn(torch.nn.Identity(), loss, x, torch.zeros(4), h=0.1)
    # exact Hessian-vector products: the trace 6 of diag(1, 2, 3) in any dtype
    t, _ = mk.curvature.hutchinson_trace(torch.nn.Identity(), loss, x, torch.zeros(4))
    assert torch.allclose(t.double(), torch.full((4,), 6.0, dtype=torch.float64), rtol=2e-2)
