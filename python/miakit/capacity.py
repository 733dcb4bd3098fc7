"""Explicit memorization capacity: the bits needed to remember which n of N items are in a
set (Sablayrolles et al., "Déjà Vu"; docs/methods/capacity.md).

A model trained to answer 1 on n chosen items and 0 on the N - n others must single out
one of ``binom(N, n)`` subsets, so it stores at least

    C(n) = log2 binom(N, n) ~ n log2(N / n) + n / ln 2    (n << N)

bits. :func:`capacity_bits` computes C(n) exactly through the log-gamma function (no
overflow at N = 1e9) or by the approximation; :func:`n_at_capacity` inverts it: the
largest set a model of ``params`` parameters could hold at one bit per parameter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from miakit._validation import check_real, check_real_array

__all__ = ["capacity_bits", "n_at_capacity"]

LN2 = math.log(2.0)


def _total(total: Any) -> float:
    return check_real(total, "total", 1.0)


def _log_binom(big_n: float, n: np.ndarray) -> np.ndarray:
    """``log binom(N, n)`` in nats, to about 1e-15 relative at any N.

    ``gammaln(N + 1) - gammaln(N - n + 1)`` loses the digits that the two ~N log N terms
    share (1e-7 relative at N = 1e9, n = 1). Where ``N - m >= 100`` (``m = min(n, N - n)``)
    that difference is taken from Stirling's series written around ``log1p(-m / (N + 1))``
    instead, whose terms are as small as the result; the truncation error is below
    ``1 / (1260 (N - m)^5)``.
    """
    from scipy.special import gammaln

    m = np.minimum(n, big_n - n)
    z1, z2 = big_n + 1, big_n - m + 1
    stirling = np.asarray(z2 >= 100)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv1, inv2 = 1 / z1, 1 / np.where(stirling, z2, 1.0)
        falling = (-(z2 - 0.5) * np.log1p(-m / z1) + m * math.log(z1) - m
                   + (inv1 - inv2) / 12 - (inv1 ** 3 - inv2 ** 3) / 360)
    direct = gammaln(z1) - gammaln(z2)
    return np.where(stirling, falling, direct) - gammaln(m + 1)


def capacity_bits(n: Any, total: Any, exact: bool = True) -> Any:
    """Bits needed to remember which ``n`` of ``total`` items are positive.

    Parameters
    ----------
    n : float or array of float
        Set sizes, each in ``[0, total]`` (real values are allowed: the exact formula
        is the log-gamma extension of the binomial).
    total : float
        N, the number of items the set is chosen from (>= 1).
    exact : bool
        True: ``log2 binom(N, n)`` through the log-gamma function
        (``scipy.special.gammaln``, with Stirling's series for the ratio
        ``N! / (N - n)!`` when N is large); False: the
        approximation ``n log2(N / n) + n / ln 2`` (0 at n = 0), which overestimates by
        about ``log2(2 pi n) / 2 + n^2 / (2 N ln 2)`` bits for n << N.

    Returns
    -------
    float or ndarray
        C(n) in bits, with the shape of ``n`` (a float for a scalar ``n``).

    Examples
    --------
    >>> import math
    >>> from miakit.capacity import capacity_bits
    >>> capacity_bits(2, 4) == math.log2(6)
    True
    >>> capacity_bits([0, 1, 4], 4).round(9).tolist()
    [0.0, 2.0, 0.0]
    >>> exact, approx = capacity_bits(1000, 1e9), capacity_bits(1000, 1e9, exact=False)
    >>> round(exact), round(approx - exact, 1)
    (21368, 6.3)
    """
    big_n = _total(total)
    arr = check_real_array(n, "n")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > big_n):
        bad = arr[~(np.isfinite(arr) & (arr >= 0) & (arr <= big_n))].ravel()[0]
        raise ValueError(f"n: expected values in [0, total={big_n:g}], got {bad:g}")
    if exact:
        out = np.maximum(_log_binom(big_n, arr) / LN2, 0.0)  # rounding can leave -1e-15
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(arr > 0, arr * np.log2(big_n / np.where(arr > 0, arr, 1.0))
                           + arr / LN2, 0.0)
    return float(out) if out.ndim == 0 else out


def n_at_capacity(params: Any, total: Any) -> Any:
    """The set size n where C(n) equals ``params`` bits (bisection on the exact C).

    C grows on ``[0, total / 2]`` and is symmetric about ``total / 2``; the n returned is
    the one on the growing side. A model with more parameters than ``C(total / 2)`` bits
    could hold any subset: its n is ``nan``.

    Parameters
    ----------
    params : float or array of float
        Parameter counts (bits at one bit per parameter), >= 0.
    total : float
        N, the number of items the set is chosen from (>= 1).

    Returns
    -------
    float or ndarray
        The real n in ``[0, total / 2]`` with ``capacity_bits(n, total) == params`` (to
        1e-9 relative), shaped like ``params``.

    Examples
    --------
    >>> from miakit.capacity import capacity_bits, n_at_capacity
    >>> n = n_at_capacity(1000, 1797)
    >>> round(n, 1), round(capacity_bits(n, 1797), 6)
    (234.9, 1000.0)
    >>> n_at_capacity([0, 1e6], 100).tolist()
    [0.0, nan]
    """
    big_n = _total(total)
    bits = check_real_array(params, "params")
    if not np.all(np.isfinite(bits)) or np.any(bits < 0):
        raise ValueError(f"params: expected finite values >= 0, got {bits.ravel().tolist()}")
    lo = np.zeros_like(bits)
    hi = np.full_like(bits, big_n / 2)
    top = capacity_bits(hi, big_n)
    # C is increasing on [0, N/2]: halving the bracket 200 times reaches float precision
    for _ in range(200):
        mid = (lo + hi) / 2
        below = capacity_bits(mid, big_n) < bits
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
        if np.all(hi - lo <= 1e-12 * np.maximum(hi, 1.0)):
            break
    out = np.where(bits > top, np.nan, np.where(bits == 0, 0.0, (lo + hi) / 2))
    return float(out) if out.ndim == 0 else out
