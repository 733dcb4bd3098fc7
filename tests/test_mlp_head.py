"""Closed forms for one-hidden-layer ReLU heads against torch autograd in float64:
parameter-gradient norms (torch.func vmap(grad)) and input-Hessian traces
(torch.func.hessian, one example at a time)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad, hessian, vmap

import miakit as mk


def _head(rng, n, d, h, c, biases=True):
    x = rng.normal(size=(n, d))
    y = rng.integers(0, c, n)
    w1 = rng.normal(size=(h, d)) / np.sqrt(d)
    w2 = rng.normal(size=(c, h)) * 2.0 / np.sqrt(h)
    b1 = rng.normal(size=h) * 0.3 if biases else None
    b2 = rng.normal(size=c) if biases else None
    return x, y, w1, b1, w2, b2


def _torch_model(w1, b1, w2, b2):
    h, d = w1.shape
    c = w2.shape[0]
    model = torch.nn.Sequential(torch.nn.Linear(d, h, bias=b1 is not None), torch.nn.ReLU(),
                                torch.nn.Linear(h, c, bias=b2 is not None)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w1))
        model[2].weight.copy_(torch.from_numpy(w2))
        if b1 is not None:
            model[0].bias.copy_(torch.from_numpy(b1))
        if b2 is not None:
            model[2].bias.copy_(torch.from_numpy(b2))
    return model


def _reference(x, y, w1, b1, w2, b2):
    """(||grad_theta loss||, tr grad_x^2 loss) per example, by autograd in float64."""
    model = _torch_model(w1, b1, w2, b2)
    params = {k: v.detach() for k, v in model.named_parameters()}
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def loss_p(p, xi, yi):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (xi[None],)),
                                                 yi[None])

    grads = vmap(grad(loss_p), in_dims=(None, 0, 0))(params, xt, yt)
    sq = sum(g.reshape(len(x), -1).pow(2).sum(1) for g in grads.values())

    def loss_x(xi, yi):
        return torch.nn.functional.cross_entropy(model(xi[None]), yi[None])

    trace = [torch.trace(hessian(loss_x)(xt[i], yt[i])).item() for i in range(len(x))]
    return sq.sqrt().numpy(), np.array(trace)


@pytest.mark.parametrize("n,d,h,c,biases", [(9, 4, 11, 3, True),    # D < H: J rows
                                            (8, 13, 5, 4, True),    # D > H: Gram form
                                            (7, 6, 6, 2, False),    # no biases
                                            (1, 1, 1, 2, True)])
def test_mlp_head_closed_forms_match_autograd(n, d, h, c, biases):
    rng = np.random.default_rng(n * 100 + d)
    x, y, w1, b1, w2, b2 = _head(rng, n, d, h, c, biases)
    g_ref, t_ref = _reference(x, y, w1, b1, w2, b2)
    g = mk.gradients.mlp_head_norms(x, y, w1, b1, w2, b2)
    t = mk.curvature.mlp_head_trace(x, w1, b1, w2, b2)
    assert g.dtype == t.dtype == np.float64 and g.shape == t.shape == (n,)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(t, t_ref, rtol=1e-10, atol=1e-13)
    # The autograd-hook norms of mk.gradients agree as well.
    model = _torch_model(w1, b1, w2, b2)
    pe = mk.gradients.per_example_norms(
        model, lambda o, t_: torch.nn.functional.cross_entropy(o, t_, reduction="none"),
        torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(np.asarray(pe), g, rtol=1e-12)


def test_mlp_head_matches_hutchinson_in_expectation():
    rng = np.random.default_rng(5)
    x, y, w1, b1, w2, b2 = _head(rng, 6, 5, 8, 3)
    model = _torch_model(w1, b1, w2, b2)
    est, se = mk.curvature.hutchinson_trace(
        model, lambda o, t_: torch.nn.functional.cross_entropy(o, t_, reduction="none"),
        torch.from_numpy(x), torch.from_numpy(y), n_probes=300, seed=1)
    exact = mk.curvature.mlp_head_trace(x, w1, b1, w2, b2)
    assert np.all(np.abs(est.numpy() - exact) <= 5 * se.numpy() + 1e-12)


def test_mlp_head_degenerate_cases_and_blocks(monkeypatch):
    rng = np.random.default_rng(2)
    x, y, w1, b1, w2, b2 = _head(rng, 50, 4, 6, 3)
    whole_g = mk.gradients.mlp_head_norms(x, y, w1, b1, w2, b2)
    whole_t = mk.curvature.mlp_head_trace(x, w1, b1, w2, b2)
    # Blocks of a few examples give the same numbers.
    import miakit._models as models  # the block size gradients and curvature share

    monkeypatch.setattr(models, "MLP_CHUNK_BYTES", 8 * 40 * 7)
    np.testing.assert_array_equal(mk.gradients.mlp_head_norms(x, y, w1, b1, w2, b2), whole_g)
    np.testing.assert_array_equal(mk.curvature.mlp_head_trace(x, w1, b1, w2, b2), whole_t)
    # All hidden units off: the logits are b2, the input has no influence.
    off = mk.curvature.mlp_head_trace(x, w1, np.full(6, -1e3), w2, b2)
    np.testing.assert_array_equal(off, 0.0)
    # A confident example keeps full relative accuracy (1 - p_y from the other classes).
    w2c = np.zeros((3, 6))
    b2c = np.array([40.0, 0.0, 0.0])
    g = mk.gradients.mlp_head_norms(x[:1], np.array([0]), w1, b1, w2c, b2c)
    p1 = np.exp(-40.0) / (1 + 2 * np.exp(-40.0))
    h1 = np.maximum(x[:1] @ w1.T + b1, 0)
    want = np.sqrt(6.0) * p1 * np.sqrt((h1 ** 2).sum() + 1)  # g = (-2 p1, p1, p1), W2 = 0
    np.testing.assert_allclose(g, [want], rtol=1e-12)


def test_mlp_head_torch_in_torch_out_and_errors():
    rng = np.random.default_rng(3)
    x, y, w1, b1, w2, b2 = _head(rng, 5, 3, 4, 2)
    g = mk.gradients.mlp_head_norms(torch.from_numpy(x), torch.from_numpy(y), w1, b1, w2, b2)
    assert isinstance(g, torch.Tensor) and g.dtype == torch.float64
    np.testing.assert_array_equal(g.numpy(), mk.gradients.mlp_head_norms(x, y, w1, b1, w2, b2))
    with pytest.raises(ValueError, match=r"weight1: expected shape \(H, 3\)"):
        mk.curvature.mlp_head_trace(x, w1[:, :2], b1, w2, b2)
    with pytest.raises(ValueError, match=r"weight2: expected shape \(C, 4\)"):
        mk.curvature.mlp_head_trace(x, w1, b1, w2[:, :3], b2)
    with pytest.raises(ValueError, match=r"bias2: expected shape \(2,\)"):
        mk.gradients.mlp_head_norms(x, y, w1, b1, w2, np.zeros(3))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        mk.gradients.mlp_head_norms(x, y + 2, w1, b1, w2, b2)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="features: expected finite"):
        mk.curvature.mlp_head_trace(bad, w1, b1, w2, b2)
    w1n = w1.copy()
    w1n[0, 0] = np.inf
    with pytest.raises(ValueError, match="weight1: expected finite"):
        mk.gradients.mlp_head_norms(x, y, w1n, b1, w2, b2)
