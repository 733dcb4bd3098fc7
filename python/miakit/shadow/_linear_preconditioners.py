"""Curvature models of the batched linear-head solver, applied as inverse Hessians.

:class:`KroneckerPreconditioner` applies the inverse of the Kronecker-factored model
``E[x x^T] (x) E[diag(p) - p p^T]`` to every head's direction at once;
:class:`SubspacePreconditioner` corrects it, on the few directions the logits read, to
the exact curvature of one shared reference point. The L-BFGS loop of ``_linear`` uses
them as its initial inverse Hessian; they change the number of iterations, never the
solution.
"""

from __future__ import annotations

import copy
from typing import Any

from miakit.shadow._linear_objective import _affine, _torch


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


def _inv_sym(a: Any) -> Any:
    """Inverse of a symmetric positive definite float64 matrix (Cholesky)."""
    torch = _torch()
    a = 0.5 * (a + a.T)
    return torch.cholesky_inverse(torch.linalg.cholesky(a))


def _einsum(eq: str, *ops: Any) -> Any:
    return _torch().einsum(eq, *ops)
