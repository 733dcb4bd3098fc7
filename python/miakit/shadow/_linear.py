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
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from miakit import _C
from miakit import _arrays as ar

# The float32 logits of one block of rows: written by one product, read by the softmax
# kernel and the gradient product; 8 MiB stays in a server CPU's last-level cache, so
# those two passes read cache, not memory.
_ROW_BLOCK_BYTES = 8 << 20
# Gradient columns ((C - 1) K) below which the product runs as R^T X: about twice as fast
# as X^T R for narrow products on a many-core machine, equal on a 2-core one.
_NARROW = 128
# Rows that estimate the C x C output curvature factor E[diag(p) - p p^T] (no warm
# start): its entries are then within ~1/sqrt(1024) = 3%, ample for a preconditioner,
# which changes the iteration count, never the solution.
SUB_ROWS = 1024


@dataclass
class LbfgsResult:
    theta: Any  # [D, C, M] torch tensor
    iterations: Any  # [M] int64 numpy
    evaluations: int  # batched objective evaluations
    grad_max: Any  # [M] float64 numpy
    converged: Any  # [M] bool numpy
    loss: Any  # [M] float64 numpy
    logits_written: Any = None  # [M] bool numpy: final logits already in logits_out


class SoftmaxObjective:
    """Loss, gradient and output-curvature factor of many heads on one feature matrix.

    Parameters
    ----------
    x : torch.Tensor [R, D - 1] float32
        Rows of features; the bias is the last row of ``theta`` (a constant input 1).
    y : torch.Tensor [R] int64
        Class of each row.
    w : torch.Tensor [R, M] float32
        Row weights per head, each column summing to 1.
    lam : torch.Tensor [D - 1] float32
        L2 penalty of each weight row of ``theta`` (the last row, the bias, has none).
    n_classes : int
    sub_rows : torch.Tensor [S] int64
        Rows used for the curvature factor.
    masked : bool or None
        Evaluate each head on its own rows only (``_C.masked_heads_ce``, CPU): True,
        False, or None to decide here -- on a CPU with AVX-512 when at most
        ``_MASKED_DENSITY`` of the row weights are non-zero.
    """

    def __init__(self, x: Any, y: Any, w: Any, lam: Any, n_classes: int, sub_rows: Any,
                 masked: bool | None = None):
        torch = _torch()
        # The bias is added to the products, not multiplied by a column of ones: a
        # product over 256 features runs at full speed, over 257 it does not.
        self.xw, self.y, self.w_all = x, y, w
        self.lam = lam
        self.c = int(n_classes)
        self.r, self.d = x.shape[0], x.shape[1] + 1
        self.arange = torch.arange(self.r, device=x.device)
        self.sub = sub_rows
        self.evaluations = 0
        self._heads: Any = None
        self._w: Any = None
        # One logits buffer, reused by every evaluation: a fresh 50 MB tensor per call
        # costs as much in page faults as the GEMM that fills it.
        self._buf = torch.empty(0, device=x.device)
        self._rows = _head_rows(masked, x, w, self.c)

    def logits(self, theta: Any) -> Any:
        """Logits of every head on every row, ``[K, R, C]`` (head-major, contiguous)."""
        torch = _torch()
        d, c, k = theta.shape
        # Heads outer, classes inner: the transposition into the head-major result then
        # moves runs of C contiguous values, not single ones.
        t = theta.permute(0, 2, 1).contiguous()  # [D, K, C]
        flat_w = t[:-1].reshape(d - 1, k * c)
        bias = t[-1].reshape(1, k * c)
        out = torch.empty(k, self.r, c, dtype=theta.dtype, device=theta.device)
        block = self._rows_per_block(c * k)  # each product still in cache when transposed
        for start in range(0, self.r, block):
            stop = min(self.r, start + block)
            z2 = self._block(stop - start, c * k)
            torch.addmm(bias, self.xw[start:stop], flat_w, out=z2)
            out[:, start:stop].copy_(z2.view(stop - start, k, c).permute(1, 0, 2))
        return out

    def _rows_per_block(self, width: int) -> int:
        # Blocks of rows small enough that a block's logits stay in cache between the
        # product that makes them and the steps that consume them.
        # At least 64 rows: below that a GEMM runs far from its peak.
        return max(64, min(self.r, _ROW_BLOCK_BYTES // (4 * width)))

    def _weights(self, heads: Any) -> Any:
        if self._heads is None or not _same(self._heads, heads):
            self._w = self.w_all.index_select(1, heads).contiguous()
            self._heads = heads.clone()
        return self._w

    def _block(self, rows: int, cols: int) -> Any:
        if self._buf.numel() < rows * cols:
            self._buf = _torch().empty(rows * cols, device=self.xw.device)
        return self._buf[: rows * cols].view(rows, cols)

    def __call__(self, theta: Any, heads: Any, need_grad: bool = True, out: Any = None,
                 out_heads: Any = None):
        """(loss [K] float64, grad [D, C, K] or None) of heads ``heads`` at ``theta``.

        ``theta`` is read centred over the classes (see :func:`centre_classes`), and the
        gradient returned is centred: the products then need only C - 1 of the C classes.
        ``out`` [M, R, C] with ``out_heads`` [K] int64: the logits of column k are also
        written to ``out[out_heads[k]]`` (not where ``out_heads[k] < 0``).
        """
        torch = _torch()
        self.evaluations += 1
        theta = centre_classes(theta)
        # The masked kernel computes the logits of a head's own rows only; a head whose
        # logits are written needs them on every row, which takes back part of what the
        # masked kernel saves: past a quarter of the heads, one dense product is used.
        if self._rows is not None and (out is None or
                                       4 * int((out_heads >= 0).sum()) <= out_heads.numel()):
            return self._masked(theta, heads, out, out_heads)
        d, c, k = theta.shape
        w = self._weights(heads)
        # Columns are (class, head): the first (C - 1) K of them are every class but the
        # last, whose logits and gradient are minus the sum of the others'.
        cm = (c - 1) * k
        flat_w = theta[:-1].reshape(d - 1, c * k)[:, :cm]
        bias = ar.kernel_arg(theta[-1].reshape(c * k))  # the kernel adds it
        block = self._rows_per_block(c * k)  # logits in cache: product, kernel, product
        loss = torch.zeros(k, dtype=torch.float64, device=theta.device)
        grad = torch.zeros(d, c * k, dtype=theta.dtype, device=theta.device)
        grad_w, grad_b = grad[:-1], grad[-1]
        # A narrow gradient product is twice as fast as R^T X than as X^T R.
        grad_t = torch.zeros(cm, d - 1, dtype=theta.dtype, device=theta.device) \
            if need_grad and cm < _NARROW else None
        stream = ar.stream_of(theta)
        dest = {} if out is None else {"out": ar.kernel_arg(out),
                                       "out_heads": ar.kernel_arg(out_heads)}
        for start in range(0, self.r, block):
            stop = min(self.r, start + block)
            xb = self.xw[start:stop]
            z2 = self._block(stop - start, c * k)
            torch.mm(xb, flat_w, out=z2[:, :cm])
            # logits -> w * (softmax - onehot); loss and the bias gradient accumulated
            _C.softmax_ce(ar.kernel_arg(z2.view(stop - start, c, k)),
                          ar.kernel_arg(self.y[start:stop]), ar.kernel_arg(w[start:stop]),
                          ar.kernel_arg(loss), ar.kernel_arg(grad_b), stream,
                          implied_last=True, row0=start, bias=bias, **dest)
            if grad_t is not None:
                grad_t.addmm_(z2[:, :cm].T, xb)
            elif need_grad:
                grad_w[:, :cm].addmm_(xb.T, z2[:, :cm])
        if grad_t is not None:
            grad_w[:, :cm] = grad_t.T
        return self._penalised(theta, loss, grad if need_grad else None)

    def _masked(self, theta: Any, heads: Any, out: Any, out_heads: Any):
        """``self(theta, heads)`` with every head evaluated on its own rows only."""
        torch = _torch()
        d, c, k = theta.shape
        dx, cm = d - 1, c - 1
        dp = (dx + 15) // 16 * 16  # one AVX-512 vector holds 16 floats
        # Weights laid out [K, C - 1, D] (features padded to whole vectors), as the
        # kernel's dot products read them; the last class is minus the others.
        wt = torch.zeros(k, cm, dp, dtype=theta.dtype)
        wt[:, :, :dx] = theta[:-1, :cm].permute(2, 1, 0)
        bias = theta[-1, :cm].T.contiguous()
        loss = torch.zeros(k, dtype=torch.float64)
        gw = torch.zeros(k, cm, dp, dtype=theta.dtype)
        gb = torch.zeros(k, c, dtype=theta.dtype)
        ptr, idx, val = self._rows
        dest = {} if out is None else {"out": ar.kernel_arg(out),
                                       "out_heads": ar.kernel_arg(out_heads)}
        _C.masked_heads_ce(ar.kernel_arg(self.xw), wt.numpy(), bias.numpy(), ptr, idx, val,
                           ar.kernel_arg(heads), ar.kernel_arg(self.y), loss.numpy(),
                           gw.numpy(), gb.numpy(), **dest)
        grad = torch.empty(d, c, k, dtype=theta.dtype)
        grad[:-1, :cm] = gw[:, :, :dx].permute(2, 1, 0)
        grad[-1] = gb.T
        return self._penalised(theta, loss, grad.view(d, c * k))

    def _penalised(self, theta: Any, loss: Any, grad: Any):
        """Adds the penalty to the losses [K] and to ``grad`` [D, C * K] (if not None),
        whose last class is first filled in as minus the others (residuals sum to 0)."""
        torch = _torch()
        d, c, k = theta.shape
        wgt = theta[:-1]
        pen = self.lam[:, None, None] * wgt
        loss += 0.5 * (pen * wgt).reshape(-1, k).sum(0).double()
        if grad is None:
            return loss, None
        grad = grad.view(d, c, k)
        torch.sum(grad[:-1, :-1], 1, out=grad[:-1, -1]).neg_()
        grad[:-1].add_(pen)
        return loss, grad

    def at_shared_point(self, theta: Any, heads: Any):
        """Like ``self(theta, heads)`` when every head sits at the same point.

        ``theta`` [D, C, K] with identical columns (e.g. all heads at the pooled
        solution): the residual ``p - onehot`` and the per-row losses are then common to
        every head, so one narrow forward product serves all of them and only the
        gradient's product is wide -- about half the cost of a full evaluation.
        """
        torch = _torch()
        self.evaluations += 1
        theta = centre_classes(theta)
        d, c, k = theta.shape
        w = self._weights(heads)
        t0 = theta[:, :, 0]
        z = _affine(self.xw, t0)  # [R, C]
        lse = torch.logsumexp(z, 1, keepdim=True)
        res = torch.exp(z - lse)  # softmax
        ell = lse[:, 0] - z.gather(1, self.y[:, None])[:, 0]  # per-row loss [R]
        res[self.arange, self.y] -= 1.0  # p - onehot, [R, C]
        loss = torch.mv(w.T.double(), ell.double())
        grad = torch.zeros(d, c * k, dtype=theta.dtype, device=theta.device)
        grad[-1] = (res.T @ w).reshape(-1)  # bias: sum_r w[r, k] res[r, c]
        if self._rows is not None:  # each head's own rows only
            dx = d - 1
            dp = (dx + 15) // 16 * 16
            gw = torch.zeros(k, c - 1, dp, dtype=theta.dtype)
            ptr, idx, val = self._rows
            _C.masked_heads_grad(ar.kernel_arg(self.xw), res[:, :-1].contiguous().numpy(),
                                 ptr, idx, val, ar.kernel_arg(heads), gw.numpy())
            grad.view(d, c, k)[:-1, :-1] = gw[:, :, :dx].permute(2, 1, 0)
            return self._penalised(theta, loss, grad)
        cm = (c - 1) * k  # as in __call__: the last class is minus the others
        block = self._rows_per_block(c * k)
        for start in range(0, self.r, block):
            stop = min(self.r, start + block)
            rw = self._block(stop - start, cm).view(stop - start, c - 1, k)
            torch.mul(res[start:stop, :-1, None], w[start:stop, None, :], out=rw)
            grad[:-1, :cm].addmm_(self.xw[start:stop].T, rw.view(stop - start, cm))
        return self._penalised(theta, loss, grad)

    def output_factor(self, theta: Any, heads: Any) -> Any:
        """``E_k[diag(p) - p p^T]`` per head over the subsample rows: [K, C, C] float64."""
        torch = _torch()
        d, c, k = theta.shape
        xs, ws = self.xw[self.sub], self._weights(heads)[self.sub]  # [S, D - 1], [S, K]
        z = _affine(xs, theta.reshape(d, c * k)).view(-1, c, k)
        p = torch.softmax(z, dim=1).permute(2, 0, 1).contiguous()  # [K, S, C]
        wn = (ws / ws.sum(0).clamp_min(1e-30)).T[:, :, None]  # [K, S, 1]
        pw = p * wn
        b = torch.diag_embed(pw.sum(1)) - pw.transpose(1, 2) @ p
        return b.double()


class KroneckerPreconditioner:
    """Applies ``(A (x) B_k + damping)^-1`` to every head's direction at once."""

    def __init__(self, x: Any, lam: Any):
        """``x`` [R, D - 1]: the features; the input factor is that of ``[x, 1]``."""
        torch = _torch()
        # float32 GEMM, float64 eigensolver: the factor only needs to be a good model.
        r, d = x.shape[0], x.shape[1] + 1
        a = torch.empty(d, d, dtype=torch.float64, device=x.device)
        a[:-1, :-1] = x.T @ x
        a[:-1, -1] = a[-1, :-1] = x.sum(0).double()  # float32 sums are pairwise: accurate
        a[-1, -1] = r
        a = a / r
        a = 0.5 * (a + a.T)
        ev, self.u = torch.linalg.eigh(a)
        self.ev_a = ev.clamp_min(0.0)
        self.u = self.u.to(x.dtype)
        # Damping: the mean penalty, floored (1e-6 of the mean input eigenvalue, far below
        # any real curvature) so that directions without curvature (the softmax's shift
        # invariance, constant features) stay finite when weight_decay is 0.
        mean_lam = float(lam.mean()) if lam.numel() else 0.0
        self.damp = max(mean_lam, 1e-6 * float(self.ev_a.mean()))
        self.ev_b: Any = None
        self.v: Any = None
        self._shared: Any = None

    def set_output_factor(self, b: Any) -> None:
        """``b`` [K, C, C]: one output factor per head, or [1, C, C] shared by all."""
        torch = _torch()
        ev, v = torch.linalg.eigh(b)  # [K, C], [K, C, C]
        self.ev_b = ev.clamp_min(0.0).to(self.u.dtype)
        self.v = v.to(self.u.dtype)
        self._shared = None
        if self.v.shape[0] == 1:  # one factor: apply it along the class axis of every head
            denom = self.ev_a.to(self.u.dtype)[:, None] * self.ev_b[0][None, :] + self.damp
            self._shared = (self.v[0].T.contiguous(), 1.0 / denom[:, :, None], self.v[0])

    def select(self, keep: Any) -> None:
        if self._shared is None:
            self.ev_b, self.v = self.ev_b[keep], self.v[keep]

    def __call__(self, q: Any) -> Any:
        d, c, k = q.shape
        if self._shared is not None:
            vt, inv, v = self._shared
            r = (self.u.T @ q.reshape(d, c * k)).view(d, c, k)
            r = (vt @ r).mul_(inv)  # class axis into the eigenbasis, [D, C, K]
            return (self.u @ (v @ r).view(d, c * k)).view(d, c, k)
        r = (self.u.T @ q.reshape(d, c * k)).view(d, c, k).permute(2, 0, 1)  # [K, D, C]
        r = r @ self.v  # into each head's output eigenbasis
        denom = self.ev_a.to(q.dtype)[None, :, None] * self.ev_b[:, None, :] + self.damp
        r = (r / denom) @ self.v.transpose(1, 2)
        r = r.permute(1, 2, 0).reshape(d, c * k)
        return (self.u @ r).view(d, c, k)


class SubspacePreconditioner:
    """The Kronecker model of one shared reference point with its inverse replaced, on
    the subspace the logits live in, by the exact curvature's.

    ``x`` [R, D - 1] float32 holds the features (the bias's constant input is implied).

    Every head starts at the pooled solution ``theta_ref`` and ends close to it, so one
    curvature model built there serves every head at every iteration. The Kronecker
    model ``K = E[x x^T] (x) E[diag(p) - p p^T] + damping`` assumes the inputs and the
    softmax curvature are independent. In whitened inputs they are independent --
    exactly for Gaussian features, closely for real ones -- except along the C - 1
    directions the logits read, ``theta_ref`` (classes centred), and the constant
    input: there the curvature is weighted by the very probabilities it multiplies.

    On ``S = span(W) (x) R^C`` (``W`` [D, r] those r <= C input directions) the model
    takes the exact curvature ``E = mean_n u_n u_n^T (x) (diag(p_n) - p_n p_n^T)``
    (``u_n = W^T x_n``, plus the damping) in place of ``G = S^T K S``; the model
    ``M = K + K S G^-1 (E - G) G^-1 S^T K`` is positive definite, has ``S^T M S = E``,
    and is inverted in closed form:

        M^-1 = K^-1 - S (G^-1 - E^-1) S^T

    Building it costs a few products of the rows with r columns; applying it, one
    Kronecker solve and two products with ``W`` per head. Iterations from the pooled
    solution drop to about the count with the exact Hessian of the pooled problem.
    """

    refresh = False  # the curvature model is fixed: lbfgs_heads skips output factors

    def __init__(self, x: Any, lam: Any, theta_ref: Any, w: Any = None,
                 kron: KroneckerPreconditioner | None = None):
        torch = _torch()
        f64 = torch.float64
        # The input factor (one GEMM over the rows and an eigensolver) may be shared.
        self.kron = KroneckerPreconditioner(x, lam) if kron is None else copy.copy(kron)
        u_a, ev_a = self.kron.u.to(f64), self.kron.ev_a
        r_rows, c = x.shape[0], theta_ref.shape[1]
        w = None if w is None else (w / w.sum()).to(f64)  # None: every row 1 / R
        # float32 products over the rows, float64 for everything of subspace size
        z = _affine(x, theta_ref)
        p32 = torch.exp(z - torch.logsumexp(z, 1, keepdim=True))  # softmax [R, C]
        p = p32.to(f64)
        pw = p / r_rows if w is None else p * w[:, None]
        b = torch.diag(pw.sum(0)) - pw.T @ p
        self.kron.set_output_factor(b[None])
        # Directions the logits read: span of theta_ref's centred columns and the
        # constant input, found in whitened coordinates (A^(1/2)), where rank decisions
        # are scale-free; directions without input variance (eigenvalues below 1e-10 of
        # the largest: float32 products leave ~1e-7 relative noise, squared) are left out.
        keep_a = ev_a > 1e-10 * float(ev_a.max())
        sq = torch.where(keep_a, ev_a.clamp_min(0).sqrt(), torch.zeros_like(ev_a))
        isq = torch.where(keep_a, 1.0 / sq.clamp_min(1e-300), torch.zeros_like(ev_a))
        # The logits' common part across classes does not change the softmax: centre the
        # classes, which leaves rank <= C - 1 and no direction made of rounding noise.
        # The constant input (the bias column, last) joins them: the Kronecker model has
        # no cross-curvature between it and the logit directions; the exact one has.
        t = (theta_ref - theta_ref.mean(1, keepdim=True)).to(f64)
        ones = torch.zeros(t.shape[0], 1, dtype=f64, device=t.device)
        ones[-1] = 1.0
        t = u_a.T @ torch.cat([t, ones], 1)  # [D, C + 1] in A's eigenbasis
        sv_u, sv, _ = torch.linalg.svd(sq[:, None] * t, full_matrices=False)
        top = float(sv.max()) if sv.numel() else 0.0
        # Singular values below 1e-4 of the largest are float32 rounding of the centring,
        # not directions the logits read.
        r = int((sv > 1e-4 * top).sum()) if top > 0 else 0
        self.r, self.c = r, c
        if r == 0:  # nothing to correct
            return
        wdir = u_a @ (isq[:, None] * sv_u[:, :r])  # W [D, r]: u_n = W^T x_n is whitened
        self.w = wdir.to(x.dtype)
        u = _affine(x, self.w)  # [R, r]
        # E: sum_n w_n u_n u_n^T (x) (diag(p_n) - p_n p_n^T), laid out [(i, c), (j, d)]
        up = (u[:, :, None] * p32[:, None, :]).reshape(r_rows, r * c)  # u_i p_c
        upw = up.T if w is None else (up * w[:, None].to(x.dtype)).T
        scale = 1.0 / r_rows if w is None else 1.0
        diag = (upw @ u).to(f64).mul_(scale).reshape(r, c, r)  # sum_n w p_c u_i u_j
        exact = (upw @ up).to(f64).mul_(-scale).reshape(r, c, r, c)
        cls = torch.arange(c, device=x.device)
        exact[:, cls, :, cls] += diag.permute(1, 0, 2)
        eye_c = torch.eye(c, dtype=f64, device=x.device)
        damp = self.kron.damp
        exact += damp * torch.einsum("ij,cd->icjd", wdir.T @ wdir, eye_c)
        # G = S^T K S from K's eigenbases: K = (U (x) V) diag(ev_a ev_b + damp) (U (x) V)^T
        wu = wdir.T @ u_a  # [r, D]
        v, ev_b = self.kron.v[0].to(f64), self.kron.ev_b[0].to(f64)
        lam_k = ev_a[:, None] * ev_b[None, :] + damp  # [D, C]
        t = torch.einsum("ce,ae,de->acd", v, lam_k, v).reshape(-1, c * c)  # [D, C*C]
        g = (wu[:, None, :] * wu[None, :, :]).reshape(r * r, -1) @ t  # [(i,j), (c,d)]
        g = g.view(r, r, c, c).permute(0, 2, 1, 3).reshape(r * c, r * c)
        e = exact.reshape(r * c, r * c)
        self.n = (_inv_sym(g) - _inv_sym(e)).to(x.dtype)  # G^-1 - E^-1

    def select(self, keep: Any) -> None:
        pass  # shared by every head

    def __call__(self, q: Any) -> Any:
        kq = self.kron(q)  # its one output factor broadcasts over the heads
        if self.r == 0:
            return kq
        k = q.shape[2]
        t = _einsum("di,dck->ick", self.w, q).reshape(self.r * self.c, k)
        return kq.sub_(_einsum("di,ick->dck", self.w, (self.n @ t).view(self.r, self.c, k)))


# Row-weight density up to which evaluating every head on its own rows beats one dense
# product over all rows (measured at 1/2: ~33 ms against ~46 ms for 64 heads, 20,000 x 256).
# The masked cost grows with the density and the dense one does not, so they break even
# near 0.7; 0.75 rounds that up (keep matrices are 1/2 dense, far from it).
_MASKED_DENSITY = 0.75


def _head_rows(masked: bool | None, x: Any, w: Any, n_classes: int):
    """The rows of every head with a non-zero weight, as the masked kernel reads them:
    (ptr [M + 1] int64, idx [nnz] int32, val [nnz] float32) numpy arrays; or None where
    the dense products are to be used (``masked`` False, not on the CPU, or -- for
    ``masked`` None -- no AVX-512 or row weights denser than ``_MASKED_DENSITY``)."""
    import numpy as np

    if masked is False or x.device.type != "cpu":
        return None
    if masked is None and (n_classes < 2 or _C.masked_heads_ce_kernel() != "avx512"):
        return None
    wt = w.T.contiguous().numpy()  # [M, R]
    nonzero = wt != 0
    counts = np.count_nonzero(nonzero, axis=1)
    if masked is None and counts.sum() > _MASKED_DENSITY * wt.size:
        return None
    flat = np.flatnonzero(nonzero)  # increasing (head, row)
    ptr = np.zeros(wt.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr, (flat % wt.shape[1]).astype(np.int32), wt.ravel()[flat]


def _inv_sym(a: Any) -> Any:
    """Inverse of a symmetric positive definite float64 matrix (Cholesky)."""
    torch = _torch()
    a = 0.5 * (a + a.T)
    return torch.cholesky_inverse(torch.linalg.cholesky(a))


def _affine(x: Any, t: Any) -> Any:
    """``[x, 1] @ t``: features times all but the last row of ``t``, plus that row."""
    return _torch().addmm(t[-1:], x, t[:-1])


def centre_classes(theta: Any) -> Any:
    """``theta`` [D, C, K] minus its mean over the classes.

    The cross-entropy does not change when a vector is added to every class's weights,
    and the penalty is smallest when they sum to zero, so the optimum is centred; so is
    every gradient (the residual ``p - onehot`` sums to zero). The objective reads its
    point centred, which keeps the solver on that subspace whatever the rounding.
    """
    return theta - theta.mean(1, keepdim=True)


def _einsum(eq: str, *ops: Any) -> Any:
    return _torch().einsum(eq, *ops)


def _dot(a: Any, b: Any) -> Any:
    # A float32 column sum over a contiguous [D*C, K] view is the fast reduction; its
    # rounding (~1e-7 relative) is far below what L-BFGS needs.
    k = a.shape[-1]
    return (a * b).reshape(-1, k).sum(0).double()


def _same(a: Any, b: Any) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _torch() -> Any:
    import torch

    return torch


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
