"""Per-example gradient norms (docs/methods/gradients.md) against torch.func vmap(grad)
in float64."""

from __future__ import annotations

import numpy as np
import pytest

import miakit as mk

torch = pytest.importorskip("torch")
nn = torch.nn
from torch.func import functional_call, grad, vmap  # noqa: E402


def vmap_norms(model, loss_fn, x, y, names=None):
    """Reference: per-example gradients by vmap(grad), then their norm."""
    params = {k: v.detach() for k, v in model.named_parameters()
              if names is None or k in names}
    fixed = {k: v.detach() for k, v in model.named_parameters() if k not in params}
    fixed.update(dict(model.named_buffers()))

    def one(p, xi, yi):
        args = tuple(t.unsqueeze(0) for t in xi) if isinstance(xi, tuple) else (xi.unsqueeze(0),)
        return loss_fn(functional_call(model, {**fixed, **p}, args), yi.unsqueeze(0)).sum()

    g = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    return torch.sqrt(sum(v.reshape(len(y), -1).pow(2).sum(1) for v in g.values()))


class Mixed(nn.Module):
    """Linear (plain, ghost and direct sequence forms, called twice), Conv2d (stride,
    groups, reflect padding), eval BatchNorm, LayerNorm, GroupNorm, Embedding with a
    padding index, an in-place ReLU after a hooked layer, and a PReLU (fallback)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 2, groups=2, padding=1, padding_mode="reflect", bias=False)
        self.gn = nn.GroupNorm(2, 4)
        self.emb = nn.Embedding(11, 12, padding_idx=0)
        self.ln = nn.LayerNorm(12)
        self.seq_ghost = nn.Linear(12, 24)  # T = 4: T (d + p) <= d p, ghost form
        self.seq_direct = nn.Linear(24, 2)  # called twice, T = 8: materialized
        self.prelu = nn.PReLU()
        self.head = nn.Linear(4 * 6 * 6 + 2, 3)

    def forward(self, img, tok):
        a = torch.relu_(self.bn(self.conv(img)))
        a = torch.tanh(self.gn(self.conv2(a))).flatten(1)
        e = self.seq_ghost(self.ln(self.emb(tok)))
        e = self.prelu(self.seq_direct(e) + self.seq_direct(torch.sin(e)))
        return self.head(torch.cat([a, e.mean(1)], 1))


def mixed_setup(n=13, seed=0):
    torch.manual_seed(seed)
    model = Mixed().double()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
        for m in (model.bn, model.gn, model.ln):
            m.weight.normal_()
            m.bias.normal_()
    model.eval()
    img = torch.randn(n, 2, 9, 9, dtype=torch.float64)
    tok = torch.randint(0, 11, (n, 4))
    tok[0, :2] = 0  # padding tokens
    tok[1] = 3      # one token repeated
    y = torch.randint(0, 3, (n,))
    return model, (img, tok), y


CE = nn.CrossEntropyLoss(reduction="none")


def test_mixed_model_matches_vmap_grad():
    model, x, y = mixed_setup()
    res = mk.gradients.per_example_norms(model, CE, x, y)
    ref = vmap_norms(model, CE, x, y)
    torch.testing.assert_close(res.norms, ref, rtol=1e-10, atol=0)
    assert res.fallback_layers == ["prelu"]
    assert res.rules == {"conv": "conv2d", "bn": "batchnorm_eval", "conv2": "conv2d",
                         "gn": "groupnorm", "emb": "embedding", "ln": "layernorm",
                         "seq_ghost": "linear", "seq_direct": "linear", "prelu": "vmap",
                         "head": "linear"}
    assert np.asarray(res).shape == (13,) and len(res) == 13 and res.shape == (13,)


@pytest.mark.parametrize("t,d,p", [(1, 5, 3), (3, 16, 16), (9, 4, 3)])
def test_outer_rule_forms_match_materialized(t, d, p):
    """Both forms of the Linear rule (ghost Gram products, materialized G^T A) and T = 1."""
    from miakit.gradients import _outer_sq_norms

    a = torch.randn(5, t, d, dtype=torch.float64)
    g = torch.randn(5, t, p, dtype=torch.float64)
    want = torch.einsum("btp,btd->bpd", g, a).pow(2).sum((1, 2)) + g.sum(1).pow(2).sum(1)
    torch.testing.assert_close(_outer_sq_norms(a, g, True, True), want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("batch_size", [1, 7, None])
def test_batch_size_does_not_change_the_result(batch_size):
    model, x, y = mixed_setup(n=15, seed=1)
    full = mk.gradients.per_example_norms(model, CE, x, y).norms
    got = mk.gradients.per_example_norms(model, CE, x, y, batch_size=batch_size).norms
    torch.testing.assert_close(got, full, rtol=1e-12, atol=0)
    torch.testing.assert_close(got, vmap_norms(model, CE, x, y), rtol=1e-10, atol=0)


def test_parameter_subset_by_object_and_name():
    model, x, y = mixed_setup(n=6, seed=2)
    names = ["head.weight", "ln.bias", "emb.weight", "prelu.weight"]
    ref = vmap_norms(model, CE, x, y, names=set(names))
    by_name = mk.gradients.per_example_norms(model, CE, x, y, params=names)
    named = dict(model.named_parameters())
    by_obj = mk.gradients.per_example_norms(model, CE, x, y, params=[named[n] for n in names])
    torch.testing.assert_close(by_name.norms, ref, rtol=1e-10, atol=0)
    torch.testing.assert_close(by_obj.norms, ref, rtol=1e-10, atol=0)
    assert set(by_name.rules) == {"head", "ln", "emb", "prelu"}


def test_tied_weights_go_to_the_fallback():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(7, 5)
            self.out = nn.Linear(5, 7, bias=True)
            self.out.weight = self.emb.weight

        def forward(self, tok):
            return self.out(torch.tanh(self.emb(tok)).mean(1))

    torch.manual_seed(3)
    model = Tied().double()
    tok, y = torch.randint(0, 7, (9, 3)), torch.randint(0, 7, (9,))
    res = mk.gradients.per_example_norms(model, CE, tok, y)
    torch.testing.assert_close(res.norms, vmap_norms(model, CE, tok, y), rtol=1e-10, atol=0)
    assert "emb" in res.fallback_layers


def test_mse_loss_and_plain_mlp_float32():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(inplace=True), nn.Linear(16, 2))
    x, y = torch.randn(10, 8), torch.randn(10, 2)

    def mse(out, t):
        return ((out - t) ** 2).sum(1)

    res = mk.gradients.per_example_norms(model, mse, x, y)
    assert res.norms.dtype == torch.float32 and res.fallback_layers == []
    torch.testing.assert_close(res.norms, vmap_norms(model, mse, x, y), rtol=1e-5, atol=1e-6)


def test_layer_whose_output_misses_the_loss_counts_zero():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            self.a(x)  # computed, not used
            return self.b(x)

    model = Unused().double()
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0])
    res = mk.gradients.per_example_norms(model, CE, x, y)
    torch.testing.assert_close(res.norms, vmap_norms(model, CE, x, y), rtol=1e-10, atol=0)


def test_training_mode_switches_to_eval_with_a_warning():
    model, x, y = mixed_setup(n=5, seed=5)
    model.train()
    model.bn.momentum = 0.5
    before = model.bn.running_mean.clone()
    with pytest.warns(UserWarning, match=r"training mode .* \['bn'\].*eval mode"):
        res = mk.gradients.per_example_norms(model, CE, x, y)
    assert res.switched_to_eval and model.training and model.bn.training
    torch.testing.assert_close(model.bn.running_mean, before)  # no statistics update
    model.eval()
    torch.testing.assert_close(res.norms, vmap_norms(model, CE, x, y), rtol=1e-10, atol=0)


def test_dropout_in_training_mode_warns():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2)).double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 2, (6,))
    with pytest.warns(UserWarning, match="Dropout|'1'"):
        a = mk.gradients.per_example_norms(model, CE, x, y).norms
    b = mk.gradients.per_example_norms(model.eval(), CE, x, y).norms
    torch.testing.assert_close(a, b)


def test_batchnorm_without_running_stats_is_rejected():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False),
                          nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match=r"model: BatchNorm layers \['1'\] have no running"):
        mk.gradients.per_example_norms(model, CE, torch.randn(3, 4), torch.tensor([0, 1, 0]))


@pytest.mark.parametrize("loss,match", [
    (nn.CrossEntropyLoss(), r"loss_fn: returned a scalar.*reduction='none'"),
    (lambda o, t: nn.functional.cross_entropy(o, t, reduction="none")[:2],
     r"loss_fn: expected per-example losses of shape \(4,\), got \(2,\)"),
    (lambda o, t: 3.0, r"loss_fn: expected a tensor"),
])
def test_non_per_example_losses_are_rejected(loss, match):
    model = nn.Linear(3, 2)
    with pytest.raises((ValueError, TypeError), match=match):
        mk.gradients.per_example_norms(model, loss, torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    with pytest.raises((ValueError, TypeError), match=match):  # fallback-only path too
        mk.gradients.per_example_norms(nn.Sequential(nn.PReLU(), nn.Flatten()), loss,
                                       torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"model": lambda t: t}, TypeError, r"model: expected a torch.nn.Module"),
    ({"loss_fn": 3}, TypeError, r"loss_fn: expected a callable"),
    ({"x": np.zeros((4, 3))}, TypeError, r"x: expected a torch.Tensor"),
    ({"y": torch.tensor([0, 1])}, ValueError, r"y: expected a batch axis of length 4"),
    ({"batch_size": 0}, ValueError, r"batch_size: expected a positive int, got 0"),
    ({"batch_size": 2.5}, TypeError, r"batch_size: expected an int"),
    ({"params": ["nope"]}, ValueError, r"params: 'nope' is not a parameter name"),
    ({"params": [nn.Parameter(torch.zeros(2))]}, ValueError, r"params: every parameter"),
    ({"params": []}, ValueError, r"params: no parameters"),
])
def test_per_example_norms_bad_input(kwargs, exc, match):
    args = {"model": nn.Linear(3, 2), "loss_fn": CE, "x": torch.randn(4, 3),
            "y": torch.tensor([0, 1, 0, 1])}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        mk.gradients.per_example_norms(**args)


# ------------------------------------------------------------------- head_norms


def head_reference(x, labels, w, b):
    """float64 autograd: per-example gradients of CE w.r.t. (W, b), then their norm."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    w = torch.as_tensor(np.asarray(w, dtype=np.float64))
    bb = None if b is None else torch.as_tensor(np.asarray(b, dtype=np.float64))
    lab = torch.as_tensor(np.asarray(labels))

    def loss(wp, bp, xi, yi):
        z = wp @ xi + (bp if bp is not None else 0.0)
        return nn.functional.cross_entropy(z[None], yi[None])

    if bb is None:
        gw = vmap(grad(lambda wp, xi, yi: loss(wp, None, xi, yi)), in_dims=(None, 0, 0))(w, x, lab)
        sq = gw.pow(2).sum((1, 2))
    else:
        gw, gb = vmap(grad(loss, argnums=(0, 1)), in_dims=(None, None, 0, 0))(w, bb, x, lab)
        sq = gw.pow(2).sum((1, 2)) + gb.pow(2).sum(1)
    return sq.sqrt().numpy()


@pytest.mark.parametrize("n,d,c", [(1, 1, 1), (1, 3, 2), (17, 5, 3), (301, 33, 10)])
@pytest.mark.parametrize("bias", [True, False])
def test_head_norms_exact(n, d, c, bias):
    rng = np.random.default_rng(n * 100 + d + c)
    x = rng.normal(size=(n, d)) * 2
    w = rng.normal(size=(c, d))
    b = rng.normal(size=c) if bias else None
    lab = rng.integers(0, c, n)
    got = mk.gradients.head_norms(x, lab, w, b)
    assert got.dtype == np.float64 and got.shape == (n,)
    # the autograd reference forms p_y - 1 with cancellation: absolute error ~1e-16 ||x||
    np.testing.assert_allclose(got, head_reference(x, lab, w, b), rtol=1e-12, atol=1e-13)


def test_head_norms_float16_noncontiguous_and_confident():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 40)).astype(np.float16).T  # [40, 6], non-contiguous
    w = np.asfortranarray(rng.normal(size=(4, 6)).astype(np.float32))
    lab = rng.integers(0, 4, 40)
    got = mk.gradients.head_norms(x, lab, w)
    np.testing.assert_allclose(got, head_reference(x.astype(np.float64), lab,
                                                   w.astype(np.float64), None),
                               rtol=1e-12, atol=1e-13)
    # a very confident example: 1 - p_y is summed from the other classes, not cancelled
    z = np.array([[40.0, 0.0]])
    g = mk.gradients.head_norms(z, [0], np.eye(2))
    p1 = 1 / (1 + np.exp(40.0))
    np.testing.assert_allclose(g[0], np.sqrt(2 * p1 * p1 * 1600.0), rtol=1e-12)


def test_head_norms_torch():
    rng = np.random.default_rng(8)
    head = nn.Linear(7, 5).double()
    x = torch.from_numpy(rng.normal(size=(9, 7)))
    lab = torch.from_numpy(rng.integers(0, 5, 9))
    got = mk.gradients.head_norms(x, lab, head.weight, head.bias)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    ref = mk.gradients.per_example_norms(head, CE, x, lab).norms
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("args,exc,match", [
    ((np.ones((3, 2)), [0, 1, 0], np.ones((4, 3))), ValueError,
     r"weight: expected shape \(C, 2\) to match features \(3, 2\), got \(4, 3\)"),
    ((np.ones(3), [0, 1, 0], np.ones((4, 3))), ValueError, r"features: expected a 2-D array"),
    ((np.ones((3, 2)), [0, 1, 4], np.ones((4, 2))), ValueError,
     r"labels: expected class indices in \[0, 4\), got a value of 4"),
    ((np.ones((3, 2)), [0, 1], np.ones((4, 2))), ValueError, r"labels: expected shape \(3,\)"),
    ((np.ones((3, 2)), [0.0, 1.0, 0.0], np.ones((4, 2))), TypeError, r"labels: expected an int"),
    ((np.full((3, 2), np.nan), [0, 1, 0], np.ones((4, 2))), ValueError,
     r"features: expected finite values"),
    ((np.ones((3, 2)), [0, 1, 0], np.ones((4, 2)), np.ones(3)), ValueError,
     r"bias: expected shape \(4,\)"),
    ((np.ones((3, 2)), [0, 1, 0], np.ones((4, 2)), np.array([0, 0, np.inf, 0])), ValueError,
     r"bias: expected finite values"),
    ((np.ones((3, 2), int), [0, 1, 0], np.ones((4, 2))), TypeError,
     r"features: expected a floating-point array"),
])
def test_head_norms_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        mk.gradients.head_norms(*args)


@pytest.mark.cuda
def test_head_norms_cuda_matches_cpu():
    if not (torch.cuda.is_available() and mk.backend_info()["cuda_available"]):
        pytest.skip("needs a CUDA device and a CUDA build")
    rng = np.random.default_rng(9)
    x = rng.normal(size=(513, 31)).astype(np.float32)
    w, b = rng.normal(size=(10, 31)), rng.normal(size=10)
    lab = rng.integers(0, 10, 513)
    cpu = mk.gradients.head_norms(x, lab, w, b)
    gpu = mk.gradients.head_norms(*(torch.from_numpy(np.asarray(a)).cuda() for a in (x, lab, w, b)))
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, rtol=1e-12)


# --- compiled ghost-norm kernel (csrc/cpu/ghost.cpp, csrc/cuda/ghost.cu) ---------------

def ghost_ref(a, g, weight=True, bias=False):
    a = np.asarray(a, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    out = np.zeros(a.shape[0])
    if weight:
        out += (np.einsum("ntp,ntd->npd", g, a) ** 2).sum((1, 2))
    if bias:
        out += (g.sum(1) ** 2).sum(1)
    return out


@pytest.mark.parametrize("n,t,d,p", [
    (1, 1, 1, 1), (1, 1, 5, 3), (3, 2, 7, 5),    # T = 1, ghost form
    (4, 3, 7, 5), (2, 40, 3, 2),                 # direct form
    (5, 20, 128, 100), (3, 300, 33, 17),         # large: ghost, direct
    (2, 17, 1, 31), (7, 5, 0, 3),                # d = 1, d = 0
])
@pytest.mark.parametrize("bias", [False, True])
def test_ghost_kernel_matches_numpy(n, t, d, p, bias):
    rng = np.random.default_rng(n * 1000 + t)
    a = rng.standard_normal((n, t, d))
    g = rng.standard_normal((n, t, p))
    out = mk.gradients.ghost_norms(a, g, bias=bias)
    assert out.dtype == np.float64 and out.shape == (n,)
    np.testing.assert_allclose(out, ghost_ref(a, g, bias=bias), rtol=1e-12, atol=1e-12)
    only_b = mk.gradients.ghost_norms(a, g, weight=False, bias=True)
    np.testing.assert_allclose(only_b, ghost_ref(a, g, False, True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float16, 1e-12)])
def test_ghost_kernel_dtypes_and_strides(dtype, rtol):
    rng = np.random.default_rng(3)
    # non-contiguous: transposed, sliced with steps
    a = rng.standard_normal((9, 6, 11)).astype(dtype).transpose(0, 2, 1)[:, ::2, :]  # [9, 6, 6]
    g = rng.standard_normal((9, 4, 6)).astype(dtype).transpose(0, 2, 1)               # [9, 6, 4]
    assert not a.flags.c_contiguous and not g.flags.c_contiguous
    out = mk.gradients.ghost_norms(a, g, bias=True)
    # the reference sees the same (rounded) values in float64
    np.testing.assert_allclose(out, ghost_ref(a, g, bias=True), rtol=rtol)


def test_ghost_kernel_torch_matches_torch_ops():
    from miakit.gradients import _outer_sq_norms, _outer_sq_norms_torch
    torch.manual_seed(0)
    for t, d, p in [(1, 4, 3), (3, 16, 16), (30, 4, 3)]:
        a = torch.randn(5, t, d, dtype=torch.float64)
        g = torch.randn(5, p, t, dtype=torch.float64).transpose(1, 2)
        for w, b in [(True, True), (True, False), (False, True)]:
            torch.testing.assert_close(_outer_sq_norms(a, g, w, b),
                                       _outer_sq_norms_torch(a, g, w, b), rtol=1e-12, atol=0)
    res = mk.gradients.ghost_norms(a.float(), g.float())
    assert isinstance(res, torch.Tensor) and res.dtype == torch.float64


def test_ghost_kernel_propagates_nan_internally():
    from miakit.gradients import _outer_sq_norms
    a = torch.ones(3, 2, 4, dtype=torch.float64)
    g = torch.ones(3, 2, 5, dtype=torch.float64)
    a[1, 0, 2] = float("nan")
    out = _outer_sq_norms(a, g, True, False)
    assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("a,g,match", [
    (np.ones((2, 3, 4)), np.ones((2, 4, 5)), "grads"),            # T mismatch
    (np.ones((3, 3, 4)), np.ones((2, 3, 5)), "grads"),            # N mismatch
    (np.ones((2, 3)), np.ones((2, 3, 5)), "activations"),         # not 3-D
    (np.ones((2, 3, 4)), np.ones((2, 3)), "grads"),
])
def test_ghost_kernel_bad_shapes(a, g, match):
    with pytest.raises(ValueError, match=match):
        mk.gradients.ghost_norms(a, g)


def test_ghost_kernel_bad_values():
    a, g = np.ones((2, 3, 4)), np.ones((2, 3, 5))
    a2 = a.copy()
    a2[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="activations"):
        mk.gradients.ghost_norms(a2, g)
    g2 = g.copy()
    g2[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="grads"):
        mk.gradients.ghost_norms(a, g2)
    with pytest.raises(TypeError, match="activations"):
        mk.gradients.ghost_norms(np.ones((2, 3, 4), dtype=np.int64), g)


def _cuda_ok():
    return torch.cuda.is_available() and mk.backend_info()["cuda_built"]


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_ok(), reason="needs a CUDA GPU and a CUDA build")
@pytest.mark.parametrize("n,t,d,p", [(1, 1, 3, 2), (4, 3, 7, 5), (5, 20, 128, 100),
                                     (3, 300, 33, 17), (2, 33, 40, 50)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_ghost_kernel_cuda_matches_cpu(n, t, d, p, dtype):
    torch.manual_seed(n + t)
    a = torch.randn(n, d, t, dtype=torch.float64).transpose(1, 2).to(dtype)
    g = torch.randn(n, t, p, dtype=torch.float64).to(dtype)
    cpu = mk.gradients.ghost_norms(a, g, bias=True)
    gpu = mk.gradients.ghost_norms(a.cuda(), g.cuda(), bias=True)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-11, atol=1e-11)
    bad = a.cuda().clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="activations"):
        mk.gradients.ghost_norms(bad, g.cuda())


def test_head_norms_keep_precision_for_a_very_confident_head():
    """||p - e_y|| from the logits (the grad_norm signal): with a logit gap t the norm is
    sqrt(2) e^-t / (1 + e^-t) times sqrt(||x||^2 + 1), even where e^-2t underflows."""
    t = np.array([10.0, 200.0, 400.0, 700.0])
    x = np.ones((t.size, 1))
    w = np.array([[1.0], [0.0]])
    got = np.stack([mk.gradients.head_norms(x[i:i + 1], [0], w * t[i], np.zeros(2))[0]
                    for i in range(t.size)])
    want = np.sqrt(2.0) * np.exp(-t) / (1.0 + np.exp(-t)) * np.sqrt(2.0)
    np.testing.assert_allclose(got, want, rtol=1e-14)
