"""Input-loss curvature (docs/methods/curvature.md; Garg et al. 2023, Ravikumar et al. 2024).

For the per-example loss as a function of the input x, ``H = grad_x^2 loss``:

- :func:`hutchinson_trace`: ``tr(H) ~ (1/n) sum_k v_k^T H v_k`` with Rademacher v and
  exact Hessian-vector products (double backward), with its standard error;
- :func:`finite_difference`: ``(1/n) sum_k || grad_x loss(x + h v_k) - grad_x loss(x) ||_2``
  (the papers' code; ``squared=True`` averages the squared norms, an estimate of
  ``h^2 tr(H^2)``);
- :func:`zero_order`: ``(1/n) sum_k |l(x+v+u) - l(x-v+u) - l(x+v-u) + l(x-v-u)| / (4h)``
  with u, v independent h-scaled Rademacher vectors (Curvature Clues), from losses only;
- :func:`head_trace`: the exact trace for a linear-softmax head,
  ``tr(H) = sum_k p_k ||w_k||^2 - ||sum_k p_k w_k||^2`` (compiled kernel);
- :func:`mlp_head_trace`: the exact trace for a one-hidden-layer ReLU head, the same
  formula with the example's input Jacobian ``J = W2 diag(1[a > 0]) W1`` in place of W.

Probes come from a counter-based generator (splitmix64 hashing, compiled, CPU and CUDA)
keyed by (seed, example index, probe index): :func:`probes`. An example's estimate is
the same whatever the batch size, the batch order or the device. Example indices are the
positions in ``x`` unless ``example_ids`` gives others (e.g. dataset indices, so that
subsets reuse the same probes).

Models in training mode with BatchNorm/dropout are switched to eval mode with a warning
and restored afterwards, as in :func:`miakit.gradients.per_example_norms`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar
from miakit._curvature_heads import head_trace, mlp_head_trace
from miakit._models import check_model_args, check_per_example_loss, eval_mode
from miakit._status import nonfinite_culprit, raise_for_status
from miakit._validation import (
    check_choice,
    check_float_array,
    check_int,
    check_real,
    check_seed,
)

__all__ = ["hutchinson_trace", "finite_difference", "zero_order", "head_trace",
           "mlp_head_trace", "probes", "probe_quadratic", "probe_differences"]

_DTYPES = ("float16", "bfloat16", "float32", "float64")


def probes(
    example_ids: Any,
    n_probes: int,
    shape: tuple[int, ...] | int,
    seed: int = 0,
    *,
    first_probe: int = 0,
    dtype: str = "float32",
    like: Any = None,
) -> Any:
    """Rademacher probes from the counter-based generator.

    Entry ``[r, k, e]`` is ``+1`` when bit ``e % 64`` of
    ``splitmix64(key + (e // 64) * 0x9E3779B97F4A7C15)`` is set, else ``-1``, with
    ``key = splitmix64(splitmix64(splitmix64(seed) ^ i) ^ (p * 0xD1B54A32D192ED03))`` for
    example index ``i = example_ids[r]`` and probe index ``p = first_probe + k`` (all
    arithmetic modulo 2^64; ``include/miakit/rng.h``). It depends on nothing else, so
    probes are identical for any batching and on any device.

    Parameters
    ----------
    example_ids : array [R] int
        Example indices (non-negative).
    n_probes : int
        Probes per example.
    shape : tuple of int or int
        Shape of one probe (an example's input shape).
    seed : int
        Seed, in ``[0, 2^64)``.
    first_probe : int
        Index of the first probe (probe k uses index ``first_probe + k``).
    dtype : {"float16", "bfloat16", "float32", "float64"}
        Output dtype (bfloat16 needs torch).
    like : array, optional
        Output as this array's type and device (default: numpy, or torch when
        ``example_ids`` is a torch tensor).

    Returns
    -------
    array [R, n_probes, *shape]

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> v = mk.curvature.probes(np.array([4, 9]), 3, (2, 5), seed=1)
    >>> v.shape, sorted(np.unique(v).tolist())
    ((2, 3, 2, 5), [-1.0, 1.0])
    >>> bool((mk.curvature.probes(np.array([9]), 3, (2, 5), seed=1)[0] == v[1]).all())
    True
    """
    ids = ar.as_array(example_ids, "example_ids")
    if ar.kind(ids) not in ("i", "u") or len(ar.shape_of(ids)) != 1:
        raise TypeError(f"example_ids: expected a 1-D integer array, got dtype "
                        f"{ar.dtype_name(ids)} and shape {ar.shape_of(ids)}")
    if ar.shape_of(ids)[0] and ar.minmax(ids)[0] < 0:
        raise ValueError("example_ids: expected non-negative indices, got a negative one")
    n_probes = check_int(n_probes, "n_probes", 1)
    if n_probes > 2**62:
        raise ValueError(f"n_probes: expected at most 2**62 probes, got {n_probes}")
    # probe numbers are int64 in the kernel
    first_probe = check_int(first_probe, "first_probe", 0, 2**63 - 1 - n_probes)
    seed = check_seed(seed)
    check_choice(dtype, "dtype", _DTYPES)
    like = ids if like is None else like
    if dtype == "bfloat16" and not ar.is_torch(like):
        raise ValueError("dtype: bfloat16 probes need torch (pass like= a torch tensor)")
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    d = int(np.prod(shape)) if shape else 1
    ids = ar.as_int64(ar.match_device(ids, like, "example_ids", "like"))
    r = ar.shape_of(ids)[0]
    try:
        out = ar.empty_like_device(like, (r, n_probes, d), dtype)
    except (MemoryError, OverflowError, ValueError, TypeError, RuntimeError) as exc:
        # numpy's MemoryError or "maximum dimension", torch's allocator RuntimeError
        raise MemoryError(f"n_probes: {r} examples x {n_probes} probes x {d} values do not "
                          f"fit in memory ({type(exc).__name__}: {exc})") from None
    if r and d:  # the kernel wants a non-empty output
        _C.rademacher(ar.kernel_arg(ids), ar.kernel_arg(out), seed, first_probe,
                      ar.stream_of(out))
    return out.reshape((r, n_probes) + shape)


def _prepare(model, loss_fn, x, y, batch_size, example_ids):
    torch = ar.import_torch()
    n = check_model_args(model, loss_fn, x, y, batch_size)
    if not isinstance(x, torch.Tensor):
        raise TypeError("x: curvature needs a single floating-point input tensor, got a "
                        f"{type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor (the loss is differentiated "
                        f"with respect to the input), got dtype {x.dtype}")
    if example_ids is None:
        ids = torch.arange(n, device=x.device)
    else:
        try:
            ids = torch.as_tensor(np.asarray(example_ids) if isinstance(example_ids, list)
                                  else example_ids, device=x.device)
        except (TypeError, RuntimeError, ValueError) as exc:
            raise TypeError(f"example_ids: expected {n} integer indices, got "
                            f"{type(example_ids).__name__} ({exc})") from None
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or tuple(ids.shape) != (n,):
            raise ValueError(f"example_ids: expected {n} integer indices (one per example), "
                             f"got dtype {ids.dtype} and shape {tuple(ids.shape)}")
        if n and int(ids.min()) < 0:
            raise ValueError("example_ids: expected non-negative indices, got a negative one")
    step = n if batch_size is None else int(batch_size)
    return torch, n, ids.to(torch.int64), step


def _batch_probes(ids, n_probes, x, seed, first_probe=0):
    """Probes for a batch [B, P, *x.shape[1:]] in x's dtype and device."""
    dtype = str(x.dtype).replace("torch.", "")
    if dtype not in _DTYPES:
        dtype = "float64"
    v = probes(ids, n_probes, tuple(x.shape[1:]), seed, first_probe=first_probe, dtype=dtype,
               like=x)
    return v.to(x.dtype)


def _losses(model, loss_fn, xb, yb):
    losses = loss_fn(model(xb), yb)
    check_per_example_loss(losses, int(xb.shape[0]))
    return losses


def hutchinson_trace(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    x: Any,
    y: Any,
    n_probes: int = 10,
    seed: int = 0,
    *,
    batch_size: int | None = None,
    example_ids: Any = None,
) -> tuple[Any, Any]:
    """Hutchinson estimate of the trace of each example's input-loss Hessian.

    ``tr(H) ~ (1/n) sum_k v_k^T H v_k``, v_k Rademacher (unbiased; exact when H is
    diagonal). One forward pass and one backward pass with ``create_graph=True`` give
    every example's input gradient g; each probe then costs one more backward pass,
    ``H v = grad_x (g . v)`` (exact Hessian-vector products). Examples are independent,
    so one pass serves the whole batch.

    Parameters
    ----------
    model : torch.nn.Module
        Model mapping ``x`` to outputs; examples must not interact (eval mode).
    loss_fn : callable
        ``loss_fn(outputs, targets)`` -> per-example losses ``[B]``; a scalar is rejected.
    x : torch.Tensor [N, ...] float
        Inputs (the Hessian is taken with respect to them).
    y : torch.Tensor [N, ...]
        Targets.
    n_probes : int
        Number of probes n (at least 2 for a standard error).
    seed : int
        Probe seed; probes are keyed by (seed, example index, probe index).
    batch_size : int, optional
        Examples per pass (default: all); the result does not depend on it.
    example_ids : array [N] int, optional
        Example indices for the probes (default: ``0 .. N-1``).

    Returns
    -------
    trace : torch.Tensor [N]
        The estimates, in x's dtype, on x's device.
    stderr : torch.Tensor [N]
        Their standard errors, ``std_k(v_k^T H v_k) / sqrt(n)`` (ddof 1; NaN for n = 1).

    Examples
    --------
    >>> import torch, miakit as mk
    >>> model = torch.nn.Identity()                   # loss = 0.5 * sum(a * x^2): H = diag(a)
    >>> a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    >>> loss = lambda out, t: 0.5 * (a * out ** 2).sum(1)
    >>> x = torch.randn(4, 3, dtype=torch.float64)
    >>> t, se = mk.curvature.hutchinson_trace(model, loss, x, torch.zeros(4), n_probes=3)
    >>> t.tolist(), se.tolist()                       # diagonal H: exact, no spread
    ([6.0, 6.0, 6.0, 6.0], [0.0, 0.0, 0.0, 0.0])
    """
    n_probes = check_int(n_probes, "n_probes", 1)
    seed = check_seed(seed)
    torch, n, ids, step = _prepare(model, loss_fn, x, y, batch_size, example_ids)
    use_kernel = _kernel_ok(x)
    if use_kernel:
        trace = torch.empty(n, dtype=x.dtype, device=x.device)
        stderr = torch.empty(n, dtype=x.dtype, device=x.device)
    else:
        est = torch.empty((n, n_probes), dtype=x.dtype, device=x.device)
    with eval_mode(model, "hutchinson_trace", "curvatures"):
        for s in range(0, n, step):
            sl = slice(s, min(n, s + step))
            xb = x[sl].detach().clone().requires_grad_(True)
            v = _batch_probes(ids[sl], n_probes, xb, seed)
            with torch.enable_grad():
                losses = _losses(model, loss_fn, xb, y[sl])
                (g,) = torch.autograd.grad(losses.sum(), xb, create_graph=True)
                if use_kernel:
                    hvs = torch.empty_like(v)
                for k in range(n_probes):
                    vk = v[:, k]
                    (hv,) = torch.autograd.grad(g, xb, grad_outputs=vk,
                                                retain_graph=k + 1 < n_probes,
                                                allow_unused=True)
                    if hv is None:  # the loss is linear in x
                        hv = torch.zeros_like(xb)
                    if use_kernel:
                        hvs[:, k] = hv.detach()
                    else:
                        est[sl, k] = (vk * hv).reshape(len(vk), -1).sum(1).detach()
            if use_kernel:
                b = len(xb)
                m, se, _ = _probe_call(_C.ProbeReduction.quadratic, v.reshape(b, n_probes, -1),
                                       hvs.reshape(b, n_probes, -1), False)
                trace[sl], stderr[sl] = m, se
    if use_kernel:
        return trace, stderr
    trace = est.mean(1)
    stderr = est.std(1, correction=1) / math.sqrt(n_probes) if n_probes > 1 else \
        torch.full_like(trace, float("nan"))
    return trace, stderr


def _check_difference_dtype(x: Any, fname: str) -> None:
    """Finite differences in half precision keep no digit: ``x + h v`` is rounded to 2^-8
    (bfloat16) or 2^-11 (float16) of ``x``, and the losses or gradients subtracted then
    cancel (zero_order gave 0.39 for an exact 0.60). Refused, rather than returned."""
    name = str(x.dtype).replace("torch.", "")
    if name in ("float16", "bfloat16"):
        raise TypeError(f"x: {fname} takes differences of the loss at steps of h, which "
                        f"{name} rounds away; expected float32 or float64, got {name} "
                        "(pass x.float() and model.float(); hutchinson_trace, exact "
                        "Hessian-vector products, takes half precision)")


def finite_difference(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    x: Any,
    y: Any,
    h: float = 1e-3,
    n_probes: int = 10,
    squared: bool = False,
    seed: int = 0,
    *,
    batch_size: int | None = None,
    example_ids: Any = None,
) -> Any:
    """Finite-difference curvature score (Garg et al. 2023, the papers' code).

    ``(1/n) sum_k || grad_x loss(x + h v_k) - grad_x loss(x) ||_2`` with Rademacher v_k;
    ``squared=True`` averages ``|| . ||_2^2`` instead, which estimates ``h^2 tr(H^2)``.
    Costs one forward and backward pass per probe, plus one.

    Parameters
    ----------
    model, loss_fn, x, y
        As in :func:`hutchinson_trace`.
    h : float
        Step size (default 1e-3).
    n_probes : int
        Number of probes.
    squared : bool
        Average squared norms (``h^2 tr(H^2)``) rather than norms.
    seed : int
        Probe seed (same probes as :func:`hutchinson_trace` with the same seed).
    batch_size, example_ids
        As in :func:`hutchinson_trace`.

    Returns
    -------
    torch.Tensor [N]
        In x's dtype, on x's device.

    Examples
    --------
    >>> import torch, miakit as mk
    >>> loss = lambda out, t: 0.5 * 2.0 * (out ** 2).sum(1)   # H = 2 I
    >>> x = torch.randn(3, 4, dtype=torch.float64)
    >>> c = mk.curvature.finite_difference(torch.nn.Identity(), loss, x, torch.zeros(3), h=0.1)
    >>> [round(v, 12) for v in c.tolist()]                  # ||0.1 * 2 v|| = 0.2 * sqrt(4)
    [0.4, 0.4, 0.4]
    """
    h = check_real(h, "h", 0.0, open_lo=True, what="a positive finite float")
    n_probes = check_int(n_probes, "n_probes", 1)
    seed = check_seed(seed)
    torch, n, ids, step = _prepare(model, loss_fn, x, y, batch_size, example_ids)
    _check_difference_dtype(x, "finite_difference")
    out = torch.empty(n, dtype=x.dtype, device=x.device)

    def input_grad(xb, yb):
        xb = xb.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(_losses(model, loss_fn, xb, yb).sum(), xb,
                                       allow_unused=True)
        return torch.zeros_like(xb) if g is None else g

    with eval_mode(model, "finite_difference", "curvatures"):
        for s in range(0, n, step):
            sl = slice(s, min(n, s + step))
            xb, yb = x[sl].detach(), y[sl]
            v = _batch_probes(ids[sl], n_probes, xb, seed)
            g0 = input_grad(xb, yb)
            b = len(xb)
            if _kernel_ok(x):
                g1 = torch.empty_like(v)
                for k in range(n_probes):
                    g1[:, k] = input_grad(xb + h * v[:, k], yb)
                out[sl] = _probe_call(_C.ProbeReduction.difference,
                                      g1.reshape(b, n_probes, -1), g0.reshape(b, -1),
                                      squared)[0]
                continue
            acc = torch.zeros(b, dtype=x.dtype, device=x.device)
            for k in range(n_probes):
                diff = (input_grad(xb + h * v[:, k], yb) - g0).reshape(b, -1)
                sq = diff.pow(2).sum(1)
                acc += sq if squared else sq.sqrt()
            out[sl] = acc / n_probes
    return out


def _kernel_ok(x) -> bool:
    """The compiled probe reductions serve x's device (CPU, or CUDA in a CUDA build)."""
    return x.device.type != "cuda" or bool(_C.backend_info()["cuda_built"])


def _probe_call(which: _C.ProbeReduction, a, b, squared: bool):
    """Run the probe-reduction kernel: ``quadratic`` -> (mean, stderr) of a.b over probes,
    ``difference`` -> mean over probes of ||a - b||_2 (squared); float64 outputs and the
    status."""
    n = int(a.shape[0])
    mean = ar.empty_like_device(a, (n,), "float64")
    se = (ar.empty_like_device(a, (n,), "float64")
          if which is _C.ProbeReduction.quadratic else None)
    st = _C.probe_reduce(ar.kernel_arg(a), ar.kernel_arg(b), ar.kernel_arg(mean),
                         None if se is None else ar.kernel_arg(se), which, bool(squared),
                         ar.stream_of(a))
    return mean, se, st


def _probe_inputs(x: Any, y: Any, xn: str, yn: str, y_ndim: int) -> tuple[Any, Any]:
    # floating point, numpy in native byte order (the kernel reads raw memory)
    x = check_float_array(x, xn, ndim=3)
    y = check_float_array(y, yn, ndim=y_ndim)
    want = ar.shape_of(x) if y_ndim == 3 else (ar.shape_of(x)[0], ar.shape_of(x)[2])
    if ar.shape_of(y) != want:
        raise ValueError(f"{yn}: expected shape {want} to match {xn} {ar.shape_of(x)}, got "
                         f"{ar.shape_of(y)}")
    ar.same_device(**{xn: x, yn: y})
    return x, ar.match_device(y, x, yn, xn)


def _raise_nonfinite(st: dict, arrays: dict) -> None:
    def largest() -> str:  # finite inputs whose products overflow: the biggest is to blame
        sizes = {name: float(np.max(np.abs(ar.to_numpy(a)))) if int(np.prod(ar.shape_of(a)))
                 else 0.0 for name, a in arrays.items()}
        return max(sizes, key=lambda name: sizes[name])

    raise_for_status(st, {"nonfinite": lambda count: nonfinite_culprit(
        arrays, f"{largest()}: the reduction overflowed to a non-finite value")})


def probe_quadratic(probes: Any, hvp: Any) -> tuple[Any, Any]:
    """Per-example Hutchinson statistics from probes and Hessian-vector products.

    ``q[n, k] = probes[n, k] . hvp[n, k]``; returns ``mean_k q`` and its standard error
    ``std_k(q) / sqrt(P)`` (ddof 1; NaN for P = 1), accumulated in float64.

    Parameters
    ----------
    probes : array [N, P, D] float
        Probe vectors v (any strides; numpy, or torch on the CPU or a CUDA device).
    hvp : array [N, P, D] float
        The products H v.

    Returns
    -------
    mean, stderr : arrays [N] float64
        The caller's array type, on the caller's device.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> v = np.array([[[1.0, -1.0], [1.0, 1.0]]]); hv = 2 * v
    >>> m, se = mk.curvature.probe_quadratic(v, hv)
    >>> m.tolist(), se.tolist()
    ([4.0], [0.0])
    """
    v, hv = _probe_inputs(probes, hvp, "probes", "hvp", 3)
    mean, se, st = _probe_call(_C.ProbeReduction.quadratic, v, hv, False)
    _raise_nonfinite(st, {"probes": v, "hvp": hv})
    return mean, se


def probe_differences(grads: Any, grad0: Any, squared: bool = False) -> Any:
    """Per-example mean over probes of ``||grads[n, k] - grad0[n]||_2`` (squared when
    ``squared``), the finite-difference curvature reduction, accumulated in float64.

    Parameters
    ----------
    grads : array [N, P, D] float
        Gradients at the perturbed inputs.
    grad0 : array [N, D] float
        Gradients at the inputs.
    squared : bool
        Average squared norms.

    Returns
    -------
    array [N] float64
        The caller's array type, on the caller's device.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> g1 = np.array([[[3.0, 4.0], [0.0, 0.0]]]); g0 = np.zeros((1, 2))
    >>> mk.curvature.probe_differences(g1, g0).tolist()
    [2.5]
    """
    g1, g0 = _probe_inputs(grads, grad0, "grads", "grad0", 2)
    mean, _, st = _probe_call(_C.ProbeReduction.difference, g1, g0, squared)
    _raise_nonfinite(st, {"grads": g1, "grad0": g0})
    return mean


def zero_order(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    x: Any,
    y: Any,
    h: float = 1e-3,
    n_probes: int = 10,
    seed: int = 0,
    *,
    batch_size: int | None = None,
    example_ids: Any = None,
) -> Any:
    """Zero-order curvature score (Curvature Clues): losses only, no gradients.

    ``(1/n) sum_k |l(x+v+u) - l(x-v+u) - l(x+v-u) + l(x-v-u)| / (4h)`` with
    ``v = h r_{2k}``, ``u = h r_{2k+1}`` for Rademacher probes r (probe indices 2k and
    2k+1 of :func:`probes`, so u and v are independent). The numerator is
    ``4 u^T H v + O(h^4)``, so the score is about ``h * mean_k |r_{2k+1}^T H r_{2k}|``.
    The four perturbed copies go through the model in one forward pass per probe.

    Parameters
    ----------
    model, loss_fn, x, y
        As in :func:`hutchinson_trace`.
    h : float
        Scale of u and v (default 1e-3).
    n_probes : int
        Number of (u, v) pairs.
    seed : int
        Probe seed.
    batch_size, example_ids
        As in :func:`hutchinson_trace`.

    Returns
    -------
    torch.Tensor [N]
        In x's dtype, on x's device.

    Examples
    --------
    >>> import torch, miakit as mk
    >>> loss = lambda out, t: (out[:, 0] * out[:, 1])       # H = [[0, 1], [1, 0]]
    >>> x = torch.randn(2, 2, dtype=torch.float64)
    >>> c = mk.curvature.zero_order(torch.nn.Identity(), loss, x, torch.zeros(2), h=0.5)
    >>> c.shape, bool((c <= 0.5 * 2).all())                 # h |r_u^T H r_v| <= 2 h
    (torch.Size([2]), True)
    """
    h = check_real(h, "h", 0.0, open_lo=True, what="a positive finite float")
    n_probes = check_int(n_probes, "n_probes", 1)
    seed = check_seed(seed)
    torch, n, ids, step = _prepare(model, loss_fn, x, y, batch_size, example_ids)
    _check_difference_dtype(x, "zero_order")
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    with eval_mode(model, "zero_order", "curvatures"), torch.no_grad():
        for s in range(0, n, step):
            sl = slice(s, min(n, s + step))
            xb, yb = x[sl].detach(), y[sl]
            b = len(xb)
            r = _batch_probes(ids[sl], 2 * n_probes, xb, seed)
            acc = torch.zeros(b, dtype=x.dtype, device=x.device)
            y4 = torch.cat([yb] * 4)
            for k in range(n_probes):
                v, u = h * r[:, 2 * k], h * r[:, 2 * k + 1]
                batch = torch.cat([xb + v + u, xb - v + u, xb + v - u, xb - v - u])
                ls = _losses(model, loss_fn, batch, y4).reshape(4, b)
                acc += (ls[0] - ls[1] - ls[2] + ls[3]).abs() / (4 * h)
            out[sl] = acc / n_probes
    return out
