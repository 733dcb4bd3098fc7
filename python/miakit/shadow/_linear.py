"""Many multinomial logistic-regression heads on shared features, solved together.

Head k minimises over its weights ``theta_k`` (``[D, C]``, the last row the bias)

    f_k(theta_k) = sum_r w[r, k] * CE(x_r theta_k, y_r) + (lam / 2) * ||W_k||^2

where ``w[:, k]`` spreads weight 1 over the rows head k trains on (so the loss is a mean)
and ``W_k`` excludes the bias row. The problem is convex, so all heads can share one
optimizer run:

* one wide product per step: logits of every head are ``X @ Theta`` with ``Theta``
  laid out ``[D, C * K]``, and the gradient of every head is ``X^T @ R`` -- two GEMMs
  per evaluation, whatever the number of heads K, over blocks of rows small enough
  that the logits stay in cache for the fused softmax kernel between them
  (``_C.softmax_ce``: residual, loss and bias gradient in one pass). The optimum and
  every gradient are centred over the classes, so both products skip the last class
  (minus the sum of the others): C - 1 columns of every C;
* on the CPU (AVX-512), each head is evaluated on its own rows only
  (``_C.masked_heads_ce``): with half the rows per head, one dense product spends half
  its work on rows of weight zero, while the masked kernel fuses a head's product,
  softmax and gradient over chunks of its rows held in L1 (about 0.7 of the dense time on
  the issue's benchmark). An evaluation that writes the logits of many heads (which need
  every row) and problems with dense row weights keep the dense products;
* the evaluation that finishes a head also writes its logits, head-major, into the
  result (the heads predicted to finish there), so no last pass over the rows is needed;
* a warm start: the pooled problem (every row, one head) is solved first, and every
  head starts there; at that shared point the first evaluation needs only one narrow
  forward product (:meth:`SoftmaxObjective.at_shared_point`);
* L-BFGS per head (its own history, curvature pairs and line search, all as batched
  tensor ops) with one curvature model of the pooled solution as the initial inverse
  Hessian (:class:`SubspacePreconditioner`: the Kronecker-factored model
  ``E[x x^T] (x) E[diag(p) - p p^T]``, inverted exactly from two eigendecompositions,
  corrected to the exact curvature on the few directions the logits read). Unit steps
  are accepted almost always, so an iteration costs one evaluation, and the heads need
  about as many iterations as with the exact Hessian of the pooled problem (6 instead
  of 17 for the Kronecker model alone on the issue's benchmark);
* heads that converge (max |gradient| <= tol) leave the batch, so the work shrinks as
  they finish; a line-search retry evaluates only the heads that need it.

Without a warm start the heads start at zero with the Kronecker model alone, its
output factor refreshed per head each iteration (:class:`KroneckerPreconditioner`).

Every per-head quantity is computed from that head's own column, so a head's result
does not depend on the other heads beyond the rounding of the shared GEMMs.

docs/methods/linear-heads.md explains the solver, when each path runs, and the reason
for every tuned constant below and in the compiled kernels.

This module holds the L-BFGS loop (:func:`lbfgs_heads`, with its line search); the
objective is in ``_linear_objective`` and the preconditioners in
``_linear_preconditioners``, both re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from miakit.shadow._linear_objective import SUB_ROWS as SUB_ROWS
from miakit.shadow._linear_objective import SoftmaxObjective, _torch, centre_classes
from miakit.shadow._linear_preconditioners import KroneckerPreconditioner
from miakit.shadow._linear_preconditioners import (
    SubspacePreconditioner as SubspacePreconditioner,
)


@dataclass
class LbfgsResult:
    theta: Any  # [D, C, M] torch tensor
    iterations: Any  # [M] int64 numpy
    evaluations: int  # batched objective evaluations
    grad_max: Any  # [M] float64 numpy
    converged: Any  # [M] bool numpy
    loss: Any  # [M] float64 numpy
    logits_written: Any = None  # [M] bool numpy: final logits already in logits_out


def _dot(a: Any, b: Any) -> Any:
    # A float32 column sum over a contiguous [D*C, K] view is the fast reduction; its
    # rounding (~1e-7 relative) is far below what L-BFGS needs.
    k = a.shape[-1]
    return (a * b).reshape(-1, k).sum(0).double()


def lbfgs_heads(obj: SoftmaxObjective, theta0: Any, *, tol: float, max_iter: int,
                grad_scale: Any = None, history: int = 10, pre: Any = None,
                tick: Any = None, shared_start: bool = False,
                rel_tol: float = 0.0, logits_out: Any = None) -> LbfgsResult:
    """Minimise every head's objective from ``theta0`` [D, C, M]; see the module notes.

    A head stops when ``max |grad_scale * gradient| <= tol`` (``grad_scale`` [D] maps the
    gradient back to the caller's coordinates when the features were standardised).
    ``pre`` is a :class:`KroneckerPreconditioner` of ``obj.xw`` (built here if None);
    ``tick(n_done)`` is called whenever heads finish (for progress bars). ``history``:
    curvature pairs kept per head (10, within the 3 to 20 that L-BFGS usually keeps; the
    preconditioner, not the history, carries most of the curvature here).
    ``shared_start``: every column of ``theta0`` is the same point, so the first
    evaluation can share its forward product (:meth:`SoftmaxObjective.at_shared_point`).
    ``rel_tol``: also stop a head once its largest gradient entry has fallen by this
    factor from the start (for a warm start, which needs no more accuracy than that).
    ``logits_out`` [M, R, C]: where each head's logits at its final point go. An
    evaluation writes them for the heads whose gradient is predicted to pass the
    tolerance there (the last ratio of successive gradients, with a margin), so the
    evaluation that finishes a head usually leaves its logits behind and no further pass
    over the rows is needed; ``result.logits_written`` says for which heads that held.
    """
    torch = _torch()
    dev = theta0.device
    d, c, m = theta0.shape
    pre = KroneckerPreconditioner(obj.xw, obj.lam) if pre is None else pre
    out = theta0.clone()
    iters = torch.zeros(m, dtype=torch.int64)
    gmax_out = torch.full((m,), float("nan"), dtype=torch.float64)
    loss_out = torch.full((m,), float("nan"), dtype=torch.float64)
    conv = torch.zeros(m, dtype=torch.bool)
    written = torch.zeros(m, dtype=torch.bool)

    ids = torch.arange(m, device=dev)  # global head index of each working column
    fresh = torch.zeros(m, dtype=torch.bool, device=dev)  # logits of the point in out
    gmax_prev = None
    theta = theta0.clone()
    loss, grad = obj.at_shared_point(theta, ids) if shared_start else obj(theta, ids)
    refresh = getattr(pre, "refresh", True)
    if refresh:
        pre.set_output_factor(obj.output_factor(theta, ids))
    hist_s: list[Any] = []
    hist_y: list[Any] = []
    hist_rho: list[Any] = []
    stalled = torch.zeros(m, dtype=torch.bool, device=dev)
    it = 0
    scale = None if grad_scale is None else grad_scale.to(theta0.dtype)[:, None, None]
    gtol = None
    while ids.numel():
        gmax = (grad if scale is None else grad * scale).abs().amax((0, 1)).double()
        if gtol is None:  # per head: tol, or rel_tol times the starting gradient
            gtol = torch.clamp(rel_tol * gmax, min=tol)
        done = (gmax <= gtol) | stalled
        if it >= max_iter:
            done = torch.ones_like(done)
        if bool(done.any()):
            fin = ids[done]
            out[:, :, fin] = theta[:, :, done]
            gmax_out[fin.cpu()] = gmax[done].cpu()
            loss_out[fin.cpu()] = loss[done].cpu()
            conv[fin.cpu()] = (gmax[done] <= gtol[done]).cpu()
            written[fin.cpu()] = fresh[done].cpu()
            iters[fin.cpu()] = it
            live = ~done
            ids, theta, grad, loss = ids[live], theta[:, :, live], grad[:, :, live], loss[live]
            stalled, gtol, gmax, fresh = stalled[live], gtol[live], gmax[live], fresh[live]
            gmax_prev = None if gmax_prev is None else gmax_prev[live]
            hist_s = [s[:, :, live] for s in hist_s]
            hist_y = [y[:, :, live] for y in hist_y]
            hist_rho = [r[live] for r in hist_rho]
            pre.select(live)
            if tick is not None:
                tick(int(done.sum()))
            if not ids.numel():
                break
        it += 1
        # Two-loop recursion with the Kronecker model as the initial inverse Hessian.
        q = -grad
        alphas = []
        for s, y, rho in zip(reversed(hist_s), reversed(hist_y), reversed(hist_rho)):
            a = rho * _dot(s, q)
            q = q - y * a.to(q.dtype)
            alphas.append(a)
        q = pre(q)
        for s, y, rho, a in zip(hist_s, hist_y, hist_rho, reversed(alphas)):
            b = rho * _dot(y, q)
            q = q + s * (a - b).to(q.dtype)
        slope = _dot(grad, q)
        bad = slope >= 0  # not a descent direction (numerical trouble): restart there
        if bool(bad.any()):
            q[:, :, bad] = -grad[:, :, bad]
            slope = torch.where(bad, _dot(grad, q), slope)
        dest = None
        if logits_out is not None:
            # Predict which heads this step finishes: the gradient falls by about the
            # same ratio each iteration (L-BFGS with a fixed model converges linearly).
            # The clamp keeps one erratic step from predicting a finish (or none).
            ratio = 0.5 if gmax_prev is None else (gmax / gmax_prev).clamp(0.05, 1.0)
            fresh = gmax * ratio <= _WRITE_MARGIN * gtol
            dest = torch.where(fresh, ids, torch.full_like(ids, -1))
        gmax_prev = gmax
        new_theta, new_loss, new_grad, stalled = _line_search(obj, ids, theta, loss, q, slope,
                                                              logits_out, dest)
        if refresh:
            pre.set_output_factor(obj.output_factor(new_theta, ids))
        s, y = new_theta - theta, new_grad - grad
        sy = _dot(s, y)
        ok = (sy > 1e-12 * _dot(y, y).sqrt() * _dot(s, s).sqrt()).to(s.dtype)
        # Heads without positive curvature along s keep an inert pair (rho = 0): such a
        # pair would make the L-BFGS model indefinite.
        hist_s.append(s * ok)
        hist_y.append(y * ok)
        hist_rho.append(torch.where(ok > 0, 1.0 / sy.clamp_min(1e-300), torch.zeros_like(sy)))
        if len(hist_s) > history:
            hist_s.pop(0)
            hist_y.pop(0)
            hist_rho.pop(0)
        theta, loss, grad = new_theta, new_loss, new_grad
    return LbfgsResult(centre_classes(out), iters.numpy(), obj.evaluations, gmax_out.numpy(),
                       conv.numpy(), loss_out.numpy(), written.numpy())


# A head's logits are written by an evaluation when its gradient is predicted to end
# within this factor of the tolerance: a write that was not needed costs one pass over
# that head's logits, a missed one a product over the rows afterwards.
_WRITE_MARGIN = 1.2


def _line_search(obj: SoftmaxObjective, ids: Any, theta: Any, loss: Any, direction: Any,
                 slope: Any, logits_out: Any = None, dest: Any = None, c1: float = 1e-4,
                 max_tries: int = 30):
    """Backtracking (Armijo) per head, trying the unit step first.

    Returns the new point, loss and gradient of every head, and which heads found no
    decrease at all (they stay where they were and are stopped by the caller).
    ``logits_out``, ``dest``: as ``out``, ``out_heads`` of :class:`SoftmaxObjective`; a
    head's last evaluation here is at the point returned, so its logits there are the
    ones left in ``logits_out``.

    Heads whose trial fails are re-evaluated alone, with a step from the minimiser of the
    quadratic through f(0), f'(0) and f(step), kept within [0.1, 0.5] of the last step;
    ``max_tries`` = 30 such cuts reach 1e-9 of the unit step, below which float32 shows
    no decrease. ``c1`` = 1e-4 is the usual Armijo constant (Nocedal and Wright).
    The sufficient-decrease test allows a few float32 ulps of |f(0)| (8 x 1.2e-7 of it):
    near the optimum, rounding in the loss would otherwise reject every step the gradient
    still justifies.
    """
    torch = _torch()
    k = ids.numel()
    step = torch.ones(k, dtype=torch.float64, device=theta.device)
    new_theta = theta + direction

    def evaluate(point: Any, idx: Any = None):
        sel = slice(None) if idx is None else idx
        return obj(point, ids[sel], out=logits_out, out_heads=None if dest is None else dest[sel])

    new_loss, new_grad = evaluate(new_theta)
    noise = 8 * 1.2e-7 * loss.abs()
    todo = ~(new_loss <= loss + c1 * step * slope + noise)
    tries = 0
    while bool(todo.any()) and tries < max_tries:
        tries += 1
        idx = todo.nonzero()[:, 0]
        st, f0, g0, f1 = step[idx], loss[idx], slope[idx], new_loss[idx]
        curv = f1 - f0 - g0 * st
        quad = torch.where(curv > 0, -g0 * st * st / (2 * curv.clamp_min(1e-300)), 0.5 * st)
        st = torch.minimum(torch.maximum(quad, 0.1 * st), 0.5 * st)
        step[idx] = st
        trial = theta[:, :, idx] + direction[:, :, idx] * st.to(theta.dtype)
        tl, tg = evaluate(trial, idx)
        new_theta[:, :, idx], new_loss[idx], new_grad[:, :, idx] = trial, tl, tg
        todo[idx] = ~(tl <= f0 + c1 * st * g0 + noise[idx])
    if bool(todo.any()):  # no decrease found (the float32 noise floor): stop those heads
        idx = todo.nonzero()[:, 0]
        new_theta[:, :, idx] = theta[:, :, idx]
        new_loss[idx] = loss[idx]
        _, g = evaluate(theta[:, :, idx], idx)
        new_grad[:, :, idx] = g
    return new_theta, new_loss, new_grad, todo
