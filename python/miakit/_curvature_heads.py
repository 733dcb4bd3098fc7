"""The closed forms of :mod:`miakit.curvature`: the exact input-Hessian trace of the
cross-entropy loss of a linear-softmax head (compiled) and of a one-hidden-layer ReLU
head (float64), on features. Imported from miakit.curvature, where they are public.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar
from miakit._models import (
    check_head,
    check_mlp_head,
    check_result_finite,
    like_features,
    mlp_blocks,
    mlp_forward,
    raise_head_status,
)

__all__ = ["head_trace", "mlp_head_trace"]


def head_trace(features: Any, weight: Any, bias: Any = None) -> Any:
    """Exact input-Hessian trace of the cross-entropy loss of a linear-softmax head.

    For ``z = W x + b``, ``H = W^T (diag p - p p^T) W`` and
    ``tr(H) = sum_k p_k ||w_k||^2 - ||sum_k p_k w_k||^2``, computed as the p-weighted spread
    ``sum_k p_k ||w_k - W^T p||^2`` (never negative, no cancellation) in float64 by a
    compiled kernel (CPU or CUDA). It does not depend on the label.

    Parameters
    ----------
    features : array [N, d] float
        Inputs of the head.
    weight : array [C, d] float
        The head's weight.
    bias : array [C] float, optional
        The head's bias.

    Returns
    -------
    array [N] float64
        Same array type and device as ``features``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> w = np.array([[1.0, 0.0], [-1.0, 0.0]])        # p = (1/2, 1/2) at x = 0
    >>> mk.curvature.head_trace(np.zeros((1, 2)), w)     # 1/2 * 1 + 1/2 * 1 - 0
    array([1.])
    """
    x, w, bias = check_head(features, weight, bias)
    n = ar.shape_of(x)[0]
    out = ar.empty_like_device(x, (n,), "float64")
    st = _C.head(ar.kernel_arg(x), None, ar.kernel_arg(w),
                 None if bias is None else ar.kernel_arg(bias), ar.kernel_arg(out),
                 _C.HeadQuantity.input_trace, ar.stream_of(x))
    raise_head_status(st, ar.shape_of(w)[0])
    return check_result_finite(out, {"features": x, "weight": w, "bias": bias},
                               "Hessian trace")


def mlp_head_trace(features: Any, weight1: Any, bias1: Any, weight2: Any, bias2: Any) -> Any:
    """Exact input-Hessian trace of the cross-entropy loss of a one-hidden-layer ReLU head.

    For ``a = W1 x + b1``, logits ``z = W2 relu(a) + b2``: ReLU is piecewise linear, so
    wherever the Hessian exists (``a`` has no zero entry) the logits are locally the linear
    map ``J x + const`` with ``J = W2 D W1``, ``D = diag(1[a > 0])``, and
    ``H = J^T (diag p - p p^T) J``: the :func:`head_trace` formula with the example's own
    J, ``tr(H) = sum_k p_k ||J_k - J^T p||^2`` (never negative). This is also what
    autograd's double backward gives (ReLU's second derivative is 0), so it is the value
    :func:`hutchinson_trace` estimates for the same model. Computed in float64 (numpy)
    in blocks of examples, as ``J`` rows (cost ``C H D`` per example) or, when D > H,
    through the Gram matrix ``W1 W1^T`` (cost ``C H^2``). It does not depend on the label.

    Parameters
    ----------
    features : array [N, D] float
        Inputs of the head (numpy, or torch on any device).
    weight1 : array [H, D] float
        First layer (``nn.Linear`` layout).
    bias1 : array [H] float or None
    weight2 : array [C, H] float
        Second layer.
    bias2 : array [C] float or None

    Returns
    -------
    array [N] float64
        numpy, or a torch tensor on the device of a torch ``features``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> w1 = np.eye(2); w2 = np.array([[1.0, 0.0], [-1.0, 0.0]])
    >>> x = np.array([[0.0, 1.0]])          # h = (0, 1): unit 0 is off, so J = 0
    >>> mk.curvature.mlp_head_trace(x, w1, np.array([0.0, 0.0]), w2, None)
    array([0.])
    >>> x = np.array([[1.0, 1.0]])          # both units on: J = W2, the linear head
    >>> t = mk.curvature.mlp_head_trace(x, w1, None, w2, None)
    >>> bool(np.isclose(t[0], mk.curvature.head_trace(x, w2)[0]))
    True
    """
    x, w1, b1, w2, b2 = check_mlp_head(features, weight1, bias1, weight2, bias2)
    n, d = ar.shape_of(x)
    c, h = w2.shape
    gram = w1 @ w1.T if d > h else None
    out = np.empty(n, dtype=np.float64)
    for sl, xb in mlp_blocks(x, 2 * c * h + c * min(d, h) + 2 * h + d):
        active, _, p = mlp_forward(xb, w1, b1, w2, b2)
        u = w2[None, :, :] * active[:, None, :]  # rows of W2 D: [n, C, H]
        u -= np.where(active, p @ w2, 0.0)[:, None, :]  # minus their p-weighted mean
        flat = u.reshape(-1, h)
        if gram is None:
            j = (flat @ w1).reshape(len(xb), c, d)  # J_k - J^T p
            out[sl] = ((j * j).sum(2) * p).sum(1)
        else:
            ug = (flat @ gram).reshape(len(xb), c, h)
            out[sl] = np.maximum(((ug * u).sum(2) * p).sum(1), 0.0)
    check_result_finite(out, {"features": x, "weight1": w1, "bias1": b1, "weight2": w2,
                              "bias2": b2}, "Hessian trace")
    return like_features(out, x)
