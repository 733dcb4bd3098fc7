"""The batched linear-head solver's parts against dense float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miakit.shadow._linear import (
    KroneckerPreconditioner,
    SoftmaxObjective,
    SubspacePreconditioner,
    lbfgs_heads,
)


def _problem(r=301, d=7, c=4, k=5, seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(r, d - 1, generator=g) + offset
    x = torch.cat([x, torch.ones(r, 1)], 1)  # the bias column, last
    y = torch.randint(0, c, (r,), generator=g)
    w = (torch.rand(r, k, generator=g) < 0.5).float()
    w /= w.sum(0)
    lam = torch.full((d - 1,), 1e-2)
    theta = torch.randn(d, c, generator=g) * 0.5
    return x, y, w, lam, theta


def _dense_loss_grad(x, y, w, lam, theta):
    """float64 numpy: per-head weighted CE + lam/2 ||W||^2 (bias free)."""
    x, w, th = x.double().numpy(), w.double().numpy(), theta.double().numpy()
    c = th.shape[1]
    onehot = np.eye(c)[y.numpy()]
    losses, grads = [], []
    for k in range(w.shape[1]):
        z = x @ th[:, :, k]
        z = z - z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        p = np.exp(z - lse[:, None])
        ce = lse - (z * onehot).sum(1)
        pen = np.r_[lam.double().numpy(), 0.0][:, None] * th[:, :, k]
        losses.append((w[:, k] * ce).sum() + 0.5 * (pen * th[:, :, k]).sum())
        grads.append(x.T @ (w[:, k, None] * (p - onehot)) + pen)
    return np.array(losses), np.stack(grads, 2)


def _dense_hessian(x, theta, lam, w=None):
    """float64 Hessian of the weighted CE at ``theta`` [D, C], laid out [(d, c), (e, f)]."""
    x = x.double().numpy()
    r, d = x.shape
    w = np.full(r, 1.0 / r) if w is None else w
    z = x @ theta.double().numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    c = p.shape[1]
    h = np.zeros((d, c, d, c))
    for n in range(r):
        b = np.diag(p[n]) - np.outer(p[n], p[n])
        h += w[n] * np.einsum("d,e,cf->dcef", x[n], x[n], b)
    reg = np.r_[lam.double().numpy(), 0.0]
    h += np.einsum("de,cf->dcef", np.diag(reg), np.eye(c))
    return h.reshape(d * c, d * c)


@pytest.mark.parametrize("k", [1, 5, 50])  # 50: C - 1 = 3 classes x 50 heads, the wide product
@pytest.mark.parametrize("block_bytes", [None, 2048])
def test_objective_matches_float64_reference(k, block_bytes, monkeypatch):
    import miakit.shadow._linear_objective as lin

    if block_bytes is not None:  # many small row blocks, the last one partial
        monkeypatch.setattr(lin, "_ROW_BLOCK_BYTES", block_bytes)
    x, y, w, lam, _ = _problem(k=k)
    theta = torch.randn(x.shape[1], 4, k, generator=torch.Generator().manual_seed(1))
    obj = SoftmaxObjective(x[:, :-1], y, w, lam, 4, torch.arange(50))
    loss, grad = obj(theta, torch.arange(k))
    # the objective reads its point centred over the classes (the optimum is centred)
    theta = theta - theta.mean(1, keepdim=True)
    ref_loss, ref_grad = _dense_loss_grad(x, y, w, lam, theta)
    np.testing.assert_allclose(loss.numpy(), ref_loss, rtol=1e-6)
    np.testing.assert_allclose(grad.numpy(), ref_grad, atol=2e-6)
    # large logits take the shifted path and still agree
    loss, grad = obj(theta * 40, torch.arange(k))
    ref_loss, ref_grad = _dense_loss_grad(x, y, w, lam, theta * 40)
    np.testing.assert_allclose(loss.numpy(), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), ref_grad, atol=1e-4)


def test_shared_point_evaluation_equals_full_one():
    x, y, w, lam, theta = _problem()
    obj = SoftmaxObjective(x[:, :-1], y, w, lam, 4, torch.arange(50))
    th = theta[:, :, None].expand(-1, -1, 5).contiguous()
    loss, grad = obj.at_shared_point(th, torch.arange(5))
    ref_loss, ref_grad = _dense_loss_grad(x, y, w, lam, th - th.mean(1, keepdim=True))
    full_loss, full_grad = obj(th, torch.arange(5))
    np.testing.assert_allclose(loss.numpy(), full_loss.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad.numpy(), full_grad.numpy(), atol=2e-6)
    np.testing.assert_allclose(loss.numpy(), ref_loss, rtol=1e-6)
    np.testing.assert_allclose(grad.numpy(), ref_grad, atol=2e-6)


def test_logits_are_head_major():
    x, y, w, lam, _ = _problem(r=1000)
    theta = torch.randn(x.shape[1], 4, 5)
    obj = SoftmaxObjective(x[:, :-1], y, w, lam, 4, torch.arange(50))
    ref = np.einsum("rd,dck->krc", x.double().numpy(), theta.double().numpy())
    z = obj.logits(theta)
    assert z.shape == (5, 1000, 4) and z.is_contiguous()
    np.testing.assert_allclose(z.numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_subspace_preconditioner_is_the_inverse_of_its_model(offset):
    """P q == M^-1 q with M = K + K S G^-1 (E - G) G^-1 S^T K built densely: the
    Kronecker model K, S = W (x) I on the logit directions, G = S^T K S and E the exact
    curvature there; and S^T M S == E."""
    x, _, _, lam, theta = _problem(offset=offset)
    pre = SubspacePreconditioner(x[:, :-1], lam, theta)
    d, c = theta.shape
    assert pre.r == c  # C - 1 logit directions and the constant input
    xd = x.double().numpy()
    a = xd.T @ xd / len(xd)
    z = xd @ theta.double().numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    b = np.diag(p.mean(0)) - p.T @ p / len(p)
    damp = pre.kron.damp
    kron = np.einsum("de,cf->dcef", a, b).reshape(d * c, d * c) + damp * np.eye(d * c)
    hess = np.zeros((d, c, d, c))
    for n in range(len(xd)):
        bn = np.diag(p[n]) - np.outer(p[n], p[n])
        hess += np.einsum("d,e,cf->dcef", xd[n], xd[n], bn) / len(xd)
    hess = hess.reshape(d * c, d * c) + damp * np.eye(d * c)
    s = np.einsum("di,cf->dcif", pre.w.double().numpy(), np.eye(c)).reshape(d * c, -1)
    e, g = s.T @ hess @ s, s.T @ kron @ s
    gi = np.linalg.inv(g)
    model = kron + kron @ s @ gi @ (e - g) @ gi @ s.T @ kron
    np.testing.assert_allclose(s.T @ model @ s, e, atol=1e-10 * np.abs(e).max())
    grad = torch.randn(d, c, 3, generator=torch.Generator().manual_seed(2))
    ref = np.linalg.solve(model, grad.double().numpy().reshape(d * c, 3)).reshape(d, c, 3)
    np.testing.assert_allclose(pre(grad).double().numpy(), ref, rtol=2e-3,
                               atol=2e-3 * np.abs(ref).max())


def test_subspace_preconditioner_beats_kronecker_against_the_exact_hessian():
    """On the logit subspace the corrected model is the exact curvature: the
    preconditioned Hessian is much closer to the identity than with Kronecker alone."""
    x, _, _, lam, theta = _problem(r=2000, d=9, c=4, seed=3)
    theta = theta * 3  # confident predictions: curvature far from independent of x
    h = _dense_hessian(x, theta, lam)
    d, c = theta.shape
    kron = KroneckerPreconditioner(x[:, :-1], lam)
    z = torch.softmax(x @ theta, 1)
    kron.set_output_factor((torch.diag(z.mean(0)) - z.T @ z / len(z))[None].double())
    sub = SubspacePreconditioner(x[:, :-1], lam, theta)
    eye = torch.eye(d * c).reshape(d * c, d, c).permute(1, 2, 0).contiguous()

    # Shifting every class's bias alike changes nothing: leave that direction out.
    null = np.zeros((d, c))
    null[-1] = 1.0
    basis = np.linalg.svd(np.eye(d * c) - np.outer(null.ravel(), null.ravel()) / c)[0]
    basis = basis[:, : d * c - 1]

    def spread(pre):
        pm = pre(eye).reshape(d * c, d * c).double().numpy()
        m = (basis.T @ pm @ basis) @ (basis.T @ h @ basis)
        ev = np.sort(np.linalg.eigvals(m).real)
        return ev[-1] / ev[0]

    assert spread(sub) < 0.5 * spread(kron)


def test_zero_reference_point_is_plain_kronecker():
    x, _, _, lam, theta = _problem()
    sub = SubspacePreconditioner(x[:, :-1], lam, torch.zeros_like(theta))
    kron = KroneckerPreconditioner(x[:, :-1], lam)
    kron.set_output_factor(sub.kron.v.new_tensor(
        np.diag(np.full(4, 0.25)) - np.full((4, 4), 1 / 16))[None].double())
    g = torch.randn(x.shape[1], 4, 2)
    np.testing.assert_allclose(sub(g).numpy(), kron(g).numpy(), rtol=1e-4, atol=1e-6)


# -- the fused softmax cross-entropy kernel --------------------------------------------


def _softmax_ce(z, y, w, **kw):
    """Run the kernel on copies; returns (residual, loss, bias gradient, bad labels)."""
    from miakit import _C
    from miakit._arrays import kernel_arg as arg
    from miakit._arrays import stream_of

    z = z.clone()
    r, c, k = z.shape
    loss = torch.zeros(k, dtype=torch.float64, device=z.device)
    gbias = torch.zeros(c * k, device=z.device)
    for key in ("res", "bias"):
        if key in kw:
            kw[key] = arg(kw[key])
    bad = _C.softmax_ce(arg(z), arg(y), arg(w), arg(loss), arg(gbias), stream_of(z), **kw)
    return z, loss, gbias, bad


def _softmax_ce_reference(z, y, w):
    z, w = z.double(), w.double()
    lse = torch.logsumexp(z, 1)
    zy = z.gather(1, y[:, None, None].expand(-1, 1, z.shape[2]))[:, 0]
    p = torch.softmax(z, 1)
    p[torch.arange(len(y)), y] -= 1.0
    res = p * w[:, None, :]
    return res, (w * (lse - zy)).sum(0), res.sum(0).reshape(-1)


@pytest.mark.parametrize("shape", [(1, 2, 1), (7, 3, 5), (1000, 10, 64), (333, 17, 3),
                                   (64, 1000, 2)])
@pytest.mark.parametrize("spread", [1.0, 30.0])
def test_softmax_ce_kernel_matches_float64(shape, spread):
    r, c, k = shape
    g = torch.Generator().manual_seed(r * c + k)
    z = torch.randn(r, c, k, generator=g) * spread
    y = torch.randint(0, c, (r,), generator=g)
    w = torch.rand(r, k, generator=g)
    res, loss, gbias, bad = _softmax_ce(z, y, w)
    ref_res, ref_loss, ref_gbias = _softmax_ce_reference(z, y, w)
    assert bad == 0
    np.testing.assert_allclose(res.numpy(), ref_res.numpy(), atol=5e-7)
    np.testing.assert_allclose(loss.numpy(), ref_loss.numpy(), rtol=2e-6, atol=1e-7 * r)
    np.testing.assert_allclose(gbias.numpy(), ref_gbias.numpy(), atol=5e-7 * r ** 0.5 + 1e-7)


@pytest.mark.parametrize("shape", [(1, 2, 1), (7, 3, 5), (1000, 10, 64), (333, 17, 3)])
def test_softmax_ce_kernel_separate_residual_and_implied_last_class(shape):
    r, c, k = shape
    g = torch.Generator().manual_seed(3 * r + c)
    z = torch.randn(r, c, k, generator=g) * 3
    y = torch.randint(0, c, (r,), generator=g)
    w = torch.rand(r, k, generator=g)
    centred = z.clone()
    centred[:, -1] = -z[:, :-1].sum(1)  # the logits when the classes sum to zero
    ref_res, ref_loss, ref_gbias = _softmax_ce_reference(centred, y, w)
    garbage = z.clone()
    garbage[:, -1] = float("nan")  # the last class is never read
    for implied, zin in ((False, centred), (True, garbage)):
        res = torch.full((r, c, k), 7.0)
        zout, loss, gbias, bad = _softmax_ce(zin, y, w, res=res, implied_last=implied)
        assert bad == 0
        np.testing.assert_allclose(res.numpy(), ref_res.numpy(), atol=5e-7)
        np.testing.assert_allclose(loss.numpy(), ref_loss.numpy(), rtol=2e-6, atol=1e-7 * r)
        np.testing.assert_allclose(gbias.numpy(), ref_gbias.numpy(), atol=5e-7 * r ** 0.5 + 1e-7)
        # the logits stay, the last class filled in
        np.testing.assert_allclose(zout.numpy(), centred.numpy(), rtol=1e-6, atol=1e-5)
    # in place, with the last class implied: the same residuals
    res, loss, _, _ = _softmax_ce(garbage, y, w, implied_last=True)
    np.testing.assert_allclose(res.numpy(), ref_res.numpy(), atol=5e-7)
    # a bias [C * K] added by the kernel: to every class, or to all but the implied last
    bias = torch.randn(c, k, generator=g)
    for implied in (False, True):
        zb = z.clone() + bias
        if implied:
            zb[:, -1] = -zb[:, :-1].sum(1)
        ref_res, ref_loss, ref_gbias = _softmax_ce_reference(zb, y, w)
        zin = garbage if implied else z
        zout, loss, gbias, _ = _softmax_ce(zin, y, w, res=torch.empty(r, c, k),
                                           implied_last=implied, bias=bias.reshape(-1))
        np.testing.assert_allclose(zout.numpy(), zb.numpy(), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(loss.numpy(), ref_loss.numpy(), rtol=2e-6, atol=1e-7 * r)


def test_softmax_ce_kernel_separate_residual_is_zero_for_bad_labels():
    z = torch.randn(4, 3, 2)
    res = torch.full((4, 3, 2), 5.0)
    _, _, _, bad = _softmax_ce(z, torch.tensor([0, 3, -1, 2]), torch.ones(4, 2), res=res)
    assert bad == 2 and (res[1] == 0).all() and (res[2] == 0).all()
    with pytest.raises(ValueError, match="res must have the shape of z"):
        _softmax_ce(z, torch.zeros(4, dtype=torch.int64), torch.ones(4, 2),
                    res=torch.zeros(4, 3, 3))
    with pytest.raises(ValueError, match="bias must have C \\* K = 6 entries, got 5"):
        _softmax_ce(z, torch.zeros(4, dtype=torch.int64), torch.ones(4, 2),
                    bias=torch.zeros(5))
    with pytest.raises(ValueError, match="implied_last needs C >= 2"):
        _softmax_ce(torch.zeros(4, 1, 2), torch.zeros(4, dtype=torch.int64),
                    torch.ones(4, 2), implied_last=True)


def test_softmax_ce_kernel_writes_the_logits_of_chosen_heads():
    from miakit import _C
    from miakit._arrays import kernel_arg as arg

    r, c, k, m, n, row0 = 37, 5, 6, 9, 100, 41
    g = torch.Generator().manual_seed(11)
    z = torch.randn(r, c, k, generator=g)
    centred = z.clone()
    centred[:, -1] = -z[:, :-1].sum(1)
    y = torch.randint(0, c, (r,), generator=g)
    w = torch.rand(r, k, generator=g)
    out = torch.full((m, n, c), -7.0)
    dest = torch.tensor([3, -1, 0, 8, -1, 5])
    for in_place in (True, False):
        out.fill_(-7.0)
        zz = z.clone()
        res = None if in_place else arg(torch.empty(r, c, k))
        _C.softmax_ce(arg(zz), arg(y), arg(w), arg(torch.zeros(k, dtype=torch.float64)),
                      arg(torch.zeros(c * k)), 0, res=res, implied_last=True,
                      out=arg(out), out_heads=arg(dest), row0=row0)
        for col, head in enumerate(dest.tolist()):
            if head >= 0:
                np.testing.assert_allclose(out[head, row0:row0 + r].numpy(),
                                           centred[:, :, col].numpy(), rtol=1e-6, atol=1e-6)
        written = torch.zeros(m, n, dtype=torch.bool)
        written[dest[dest >= 0][:, None], torch.arange(row0, row0 + r)] = True
        assert bool((out[~written] == -7.0).all())  # nothing else touched

    def call(**kw):
        _C.softmax_ce(arg(z.clone()), arg(y), arg(w), arg(torch.zeros(k, dtype=torch.float64)),
                      arg(torch.zeros(c * k)), 0, **kw)

    with pytest.raises(ValueError, match="out_heads\\[0\\] = 9 is not a head"):
        call(out=arg(out), out_heads=arg(torch.full((k,), 9)))
    with pytest.raises(ValueError, match="outside out's 100"):
        call(out=arg(out), out_heads=arg(dest), row0=n - r + 1)
    with pytest.raises(ValueError, match="out and out_heads go together"):
        call(out=arg(out))
    with pytest.raises(ValueError, match="out must be"):
        call(out=arg(torch.zeros(m, n, c + 1)), out_heads=arg(dest))


def test_solver_leaves_each_heads_final_logits_in_logits_out():
    x, y, w, lam, theta = _problem(r=400, k=6)
    xw = x[:, :-1].contiguous()
    obj = SoftmaxObjective(xw, y, w, lam, 4, torch.arange(50))
    out = torch.full((6, 400, 4), float("nan"))
    start = torch.zeros(x.shape[1], 4, 6)
    res = lbfgs_heads(obj, start, tol=1e-5, max_iter=200, logits_out=out)
    assert res.converged.all() and res.logits_written.any()
    # every written head holds the logits of the point returned for it
    ref = obj.logits(res.theta)
    ok = torch.from_numpy(res.logits_written)
    np.testing.assert_allclose(out[ok].numpy(), ref[ok].numpy(), rtol=1e-5, atol=1e-5)
    assert bool(torch.isnan(out[~ok]).all())  # the others are left to the caller
    # the point returned is centred over the classes, as the optimum is
    assert float(res.theta.sum(1).abs().max()) < 1e-5


def test_softmax_ce_kernel_extreme_logits_stay_finite():
    z = torch.tensor([[[1e4, -1e4], [-1e4, 1e4], [0.0, 0.0]]])  # [1, 3, 2]
    res, loss, _, _ = _softmax_ce(z, torch.tensor([1]), torch.ones(1, 2))
    assert torch.isfinite(res).all() and torch.isfinite(loss).all()
    np.testing.assert_allclose(loss.numpy(), [2e4, 0.0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res[0, :, 0].numpy(), [1.0, -1.0, 0.0], atol=1e-6)


def test_softmax_ce_kernel_same_bits_every_run():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(5000, 10, 8, generator=g)
    y = torch.randint(0, 10, (5000,), generator=g)
    w = torch.rand(5000, 8, generator=g)
    a, b = _softmax_ce(z, y, w), _softmax_ce(z, y, w)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_softmax_ce_kernel_counts_bad_labels_and_rejects_bad_arrays():
    z = torch.zeros(4, 3, 2)
    res, loss, _, bad = _softmax_ce(z, torch.tensor([0, 3, -1, 2]), torch.ones(4, 2))
    assert bad == 2 and torch.equal(res[1], z[1]) and torch.equal(res[2], z[2])
    with pytest.raises(ValueError, match="z: expected a C-contiguous"):
        _softmax_ce(torch.zeros(4, 2, 3).transpose(1, 2), torch.zeros(4, dtype=torch.int64),
                    torch.ones(4, 2))
    with pytest.raises(ValueError, match="w: expected float32"):
        _softmax_ce(z, torch.zeros(4, dtype=torch.int64), torch.ones(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="shapes of y, w, loss, gbias do not match"):
        _softmax_ce(z, torch.zeros(5, dtype=torch.int64), torch.ones(5, 2))
