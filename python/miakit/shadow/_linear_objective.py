"""The objective of the batched linear-head solver: loss, gradient, curvature factor.

:class:`SoftmaxObjective` evaluates every head's penalised cross-entropy and its
gradient in wide products over blocks of rows (or, on an AVX-512 CPU with sparse row
weights, each head on its own rows: ``_C.masked_heads_ce``), and the output-curvature
factor the preconditioners need. The solver that drives it is in ``_linear`` (the
overview of the whole method is there), the preconditioners in
``_linear_preconditioners``; docs/methods/linear-heads.md gives the reason for every
constant below.
"""

from __future__ import annotations

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


# Row-weight density up to which evaluating every head on its own rows beats one dense
# product over all rows (measured at 1/2: ~33 ms against ~46 ms for 64 heads, 20,000 x 256,
# on a 2-core Intel Xeon; docs/methods/linear-heads.md says when).
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


def _same(a: Any, b: Any) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _torch() -> Any:
    import torch

    return torch
