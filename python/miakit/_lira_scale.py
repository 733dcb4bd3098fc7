"""Dividing LiRA's observations by a power of two, for finite values beyond 2^256
(docs/methods/lira.md): the scale that keeps sums of squared deviations finite, the span
of values one scale cannot serve, and the per-example scales of a score.

Split from :mod:`miakit.lira`, which calls these around its kernels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar

# The largest observation magnitude the kernels take as it is, 2^256
# (csrc/include/miakit/lira_math.h): beyond it, sums of squared deviations could overflow
# float64. Larger finite observations are divided by a power of two first, which changes
# no digit of any statistic; the results are scaled back (the scores of online and
# one-sided offline LiRA do not depend on the scale at all).
_MAX_ABS = float(_C.lira_max_abs_observation)
_MAX_ABS_EXP = math.frexp(_MAX_ABS)[1] - 1  # 256


def _scale_exponent(*arrays: Any, name: str, min_std: float) -> int:
    """The k >= 0 for which the finite values of ``arrays`` divided by ``2^k`` are at most
    ``_MAX_ABS`` in magnitude: 0 unless one exceeds it. Non-finite values are left to the
    kernels, which refuse them.

    One scale serves every example, so it must not push the others' squared deviations
    below float64's normal range: see :func:`_check_range`."""
    top = _largest_magnitude(*arrays)
    if top <= _MAX_ABS:
        return 0
    k = math.frexp(top)[1] - _MAX_ABS_EXP  # top < 2^e, so top / 2^(e - 256) < 2^256
    _check_range(arrays, k, top, name, min_std)
    return k


def _largest_magnitude(*arrays: Any) -> float:
    """The largest finite magnitude in the float64 ``arrays`` (0 for others: float32 and
    below cannot exceed ``_MAX_ABS``); min and max make no temporary copy."""
    top = 0.0
    for x in arrays:
        if x is None or ar.dtype_name(x) != "float64" or 0 in ar.shape_of(x):
            continue
        for v in ar.minmax(x):
            if math.isfinite(v):
                top = max(top, abs(v))
    return top


# A value v scaled to v / 2^k keeps every deviation it can have (at least v 2^-53, the
# spacing of float64 near v) squared within the normal range (>= 2^-1022) while
# v / 2^k >= 2^-458.
_SMALLEST_SCALED_EXP = -458


def check_span(*arrays: Any, name: str, min_std: float = 1e-6) -> None:
    """Refuse, under the caller's ``name``, scores that :func:`fit`, :func:`score` and
    :func:`leave_one_out` would refuse for their span (see :func:`_check_range`): for
    callers that derive the scores from their own arguments."""
    _scale_exponent(*arrays, name=name, min_std=min_std)


def _check_range(arrays: Any, k: int, top: float, name: str, min_std: float) -> None:
    """Refuse values that the scale ``2^-k`` would take out of float64's range of squares.

    A value whose magnitude is below ``min_std`` cannot carry a spread that survives the
    clamp to ``min_std`` anyway, so only values in ``[min_std, 2^(k - 458))`` are lost:
    with the default ``min_std`` that needs the largest finite value to exceed about
    1e209 (2^694) while others are of order 1."""
    lost_below = math.ldexp(1.0, k + _SMALLEST_SCALED_EXP)
    if lost_below <= min_std:
        return
    small = math.inf
    for x in arrays:
        if x is None or 0 in ar.shape_of(x):
            continue
        xp = ar.namespace(x)
        a = xp.abs(xp.astype(x, xp.float64))
        keep = xp.isfinite(a) & (a >= min_std) & (a < lost_below)
        if bool(keep.any()):  # methods of both numpy arrays and torch tensors
            small = min(small, float(xp.where(keep, a, math.inf).min()))
    if small < math.inf:
        raise ValueError(
            f"{name}: finite values span too wide a range for float64 spreads: the largest "
            f"magnitude is {top:.3g} while others are as small as {small:.3g}; the squared "
            f"deviations of the smaller ones would underflow next to the larger ones "
            f"(a ratio above 2^{_MAX_ABS_EXP - 1 - _SMALLEST_SCALED_EXP}). Clip or rescale "
            "the scores, or leave out the model that produced the largest")


def _scaled(x: Any, k: int) -> Any:
    """``x / 2^k`` in float64, exactly (a power of two); ``x`` itself for k = 0."""
    if k == 0:
        return x
    xp = ar.namespace(x)
    return xp.astype(x, xp.float64) * (2.0 ** -k)


def _row_exponents(*arrays: Any) -> np.ndarray | None:
    """Per example (row of the [N, A] arrays), the k >= 0 for which its finite values
    divided by 2^k are at most ``_MAX_ABS``; None when no value exceeds it (the common
    case, found without a copy). A score takes no squares across examples, so each
    example gets its own power of two: one scale for all would push the others' values
    out of float64's normal range beside a target score of 1e300."""
    if _largest_magnitude(*arrays) <= _MAX_ABS:
        return None
    top = np.zeros(ar.shape_of(arrays[0])[0])
    for x in arrays:
        a = np.abs(np.asarray(ar.to_numpy(x), dtype=np.float64))
        top = np.maximum(top, np.where(np.isfinite(a), a, 0.0).max(axis=1))
    _, e = np.frexp(top)
    return np.maximum(e - _MAX_ABS_EXP, 0).astype(np.int64)
