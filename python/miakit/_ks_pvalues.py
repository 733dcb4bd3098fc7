"""The p-values of :func:`miakit.ks.ks_2samp`, as ``scipy.stats.ks_2samp`` computes them
(docs/methods/ks.md): the exact two-sided distribution of equal sizes and the pieces of
``scipy.stats.kstwo.sf`` compiled (csrc/cpu/ks.cpp), the asymptotic formulas vectorized,
scipy's own exact routine for the rest. A p-value depends only on the two sizes and the
statistic, so each is computed once per distinct (sizes, statistic) of a batch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from miakit import _C


def _pvalues(n1: np.ndarray, n2: np.ndarray, d: np.ndarray, alternative: str, method: str,
             representative: Any) -> tuple[np.ndarray, np.ndarray]:
    """(statistic, p-value) as scipy's ks_2samp reports them, for distinct (n1, n2, d).

    Vectorized where scipy's formula is closed or compiled here operation for operation
    (the asymptotic p-values; the exact two-sided p-value of equal sizes); otherwise
    scipy's exact routine per entry, and where that fails (scipy then warns and falls
    back), scipy's own call on the entry's representative pair of samples."""
    from scipy import stats

    stat, p = d.astype(np.float64).copy(), np.empty(d.size)
    g = np.gcd(n1, n2)
    if method == "auto":
        asymp = np.maximum(n1, n2) > _MAX_AUTO_N
    elif method == "exact":  # lcm too large for the exact computation
        asymp = (n1 // g) >= np.iinfo(np.int32).max / (n2 // g)
    else:
        asymp = np.ones(d.size, bool)
    fallback = np.zeros(d.size, bool)
    exact = np.flatnonzero(~asymp)
    if exact.size:
        lcm = (n1[exact] // g[exact]) * n2[exact]
        h = np.round(d[exact] * lcm).astype(np.int64)
        stat[exact] = h * 1.0 / lcm
        p[exact[h == 0]] = 1.0
        square = (n1[exact] == n2[exact]) & (h > 0) & (alternative == "two-sided")
        if square.any():
            sq = exact[square]
            ps = np.empty(sq.size)
            _C.ks_prob_outside_square(np.ascontiguousarray(n1[sq]),
                                      np.ascontiguousarray(h[square]), ps)
            ok = (ps >= 0) & (ps <= 1)  # scipy: otherwise the exact computation failed
            p[sq[ok]] = ps[ok]
            fallback[sq[~ok]] = True
        for k in exact[~square & (h > 0)]:
            r = _exact_pvalue(int(n1[k]), int(n2[k]), float(d[k]), alternative)
            if r is None:
                fallback[k] = True
            else:
                stat[k], p[k] = r
    if asymp.any():
        p[asymp] = _asymp_pvalue(n1[asymp], n2[asymp], d[asymp], alternative)
    for k in np.flatnonzero(fallback):  # scipy's own call: its fallback and warning
        a, b = representative(int(k))
        r = stats.ks_2samp(a, b, alternative=alternative, method=method)
        stat[k], p[k] = r.statistic, r.pvalue
    return stat, np.clip(p, 0, 1)


_MAX_AUTO_N = 10000  # scipy: 'auto' is exact when both sizes are at most this


def _asymp_pvalue(n1: np.ndarray, n2: np.ndarray, d: np.ndarray, alternative: str
                  ) -> np.ndarray:
    """Smirnov's asymptotic p-values, elementwise as scipy computes them."""
    n1, n2 = np.asarray(n1, np.float64), np.asarray(n2, np.float64)
    big, small = np.maximum(n1, n2), np.minimum(n1, n2)
    en = big * small / (big + small)
    if alternative == "two-sided":
        p = _kstwo_sf(d, np.round(en))
    else:
        z = np.sqrt(en) * d
        # Hodges' approximation (eq. 5.3), with big the larger sample
        expt = -2 * z ** 2 - 2 * z * (big + 2 * small) / np.sqrt(big * small * (big + small)) / 3.0
        p = np.exp(expt)
    return np.clip(p, 0, 1)


def _kstwo_sf(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``scipy.stats.kstwo.sf(x, n)``, vectorized where scipy evaluates it elementwise in
    Python (scipy.stats._ksstats._kolmogn, Simard and L'Ecuyer's choice of method).

    For n > 140 scipy's value is 0 for n x^2 >= 370; 2 smirnov(n, x) for
    2.2 <= n x^2 < 370 (compiled here, _C.ks_kstwo_piece: the same sum of positive terms,
    each from a logarithm arranged to lose at most ~ n x 2^-53, in extended precision
    beyond n x = 1000; within 1e-12 of scipy's double-double sum); for n x^2 < 2.2,
    1 minus Durbin's matrix (compiled here) where n <= 100,000 and n x^1.5 <= 1.4, else
    1 minus the Pelz-Good series (ported, _pelz_good_cdf). Every other entry (n <= 140,
    the Ruben-Gambino ends, x >= 1/2, sizes beyond those supported here, p-values near
    the subnormal doubles) is scipy's own evaluation."""
    from scipy import special, stats

    x = np.asarray(x, np.float64)
    n = np.asarray(n, np.float64)
    out = np.full(x.shape, np.nan)
    inside = (n >= 1) & (n == np.round(n)) & (x > 0.5 / np.maximum(n, 1)) & (x < 1.0)
    t = n * x
    nx2 = t * x
    big = inside & (n > 140) & (t > 1.0) & (t < n - 1) & (x < 0.5)
    zero = big & (nx2 >= 370.0)
    smir = big & (nx2 >= 2.2) & ~zero & (n <= _C.ks_smirnov_max_n)
    durbin = big & (nx2 < 2.2) & (n <= 100000) & (n * x ** 1.5 <= 1.4)
    pelz = big & (nx2 < 2.2) & ~((n <= 100000) & (n * x ** 1.5 <= 1.4))
    with np.errstate(divide="ignore", invalid="ignore"):  # scipy: P = 0 below z ~ 0.0417
        pelz &= -_PI_SQUARED / 8 / (np.sqrt(n) * x) ** 2 >= -708
    out[zero] = 0.0
    for mask, kind in ((smir, _C.KsPiece.smirnov), (durbin, _C.KsPiece.durbin)):
        if mask.any():
            nk, xk = n[mask].astype(np.int64), x[mask]
            piece = np.empty(nk.size)
            _C.ks_kstwo_piece(kind, np.ascontiguousarray(nk), np.ascontiguousarray(xk), piece)
            if kind is _C.KsPiece.smirnov:
                tiny = piece < 1e-280  # near and below the subnormal doubles: scipy's
                if tiny.any():
                    piece[tiny] = special.smirnov(nk[tiny], xk[tiny])
            out[mask] = np.clip(2 * piece if kind is _C.KsPiece.smirnov else 1.0 - piece,
                                0.0, 1.0)
    if pelz.any():
        out[pelz] = np.clip(1.0 - _pelz_good_cdf(n[pelz], x[pelz]), 0.0, 1.0)
    rest = ~(zero | smir | durbin | pelz)
    if rest.any():
        out[rest] = stats.kstwo.sf(x[rest], n[rest])
    return out


_PI_SQUARED, _PI_FOUR, _PI_SIX = np.pi ** 2, np.pi ** 4, np.pi ** 6
_SQRT2PI = np.sqrt(2 * np.pi)
_SQRT3 = np.sqrt(3)


def _pelz_good_cdf(n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The Pelz-Good approximation of P(D_n <= x) (Pelz and Good 1976), operation for
    operation as scipy.stats._ksstats._kolmogn_PelzGood, vectorized (0 < x < 1 and
    n x^2 >= pi^2 / (8 * 708), which the callers' range ensures)."""
    z = np.sqrt(n) * x
    zsquared, zthree, zfour, zsix = z ** 2, z ** 3, z ** 4, z ** 6
    q = np.exp(-_PI_SQUARED / 8 / zsquared)
    k1a = -zsquared
    k1b = _PI_SQUARED / 4
    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16
    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * z ** 8
    maxk = np.ceil(16 * z / np.pi).astype(np.int64)
    kk = np.zeros((4, z.size))
    for k in range(int(maxk.max()), 0, -1):  # Horner over the odd integers m = 2k - 1
        on = k <= maxk
        m = 2 * k - 1
        msquared, mfour, msix = m ** 2, m ** 4, m ** 6
        qpower = np.power(q[on], 8 * k)
        coeffs = np.stack([np.ones(int(on.sum())),
                           k1a[on] + k1b * msquared,
                           k2a[on] + k2b[on] * msquared + k2c[on] * mfour,
                           k3a[on] + k3b[on] * msquared + k3c[on] * mfour + k3d[on] * msix])
        kk[:, on] = kk[:, on] * qpower + coeffs
    kk *= q
    kk *= _SQRT2PI
    kk /= np.stack([z, 6 * zfour, 72 * z ** 7, 6480 * z ** 10])
    q = np.exp(-_PI_SQUARED / 2 / zsquared)
    sqrt3z = _SQRT3 * z
    k2extra = np.zeros(z.size)
    k3extra = np.zeros(z.size)
    for k in range(int(maxk.max()), 0, -1):
        on = k <= maxk
        ksquared = k ** 2
        kspi = np.pi * k
        qpwers = q[on] ** ksquared
        k2extra[on] += ksquared * qpwers
        k3extra[on] += (sqrt3z[on] + kspi) * (sqrt3z[on] - kspi) * ksquared * qpwers
    kk[2] += k2extra * (_PI_SQUARED * _SQRT2PI / (-36 * zthree))
    kk[3] += k3extra * (_PI_SQUARED * _SQRT2PI / (216 * zsix))
    kk /= np.power(n * 1.0, np.arange(4)[:, None] / 2.0)
    return kk[0] + kk[1] + kk[2] + kk[3]


def _exact_pvalue(n1: int, n2: int, d: float, alternative: str) -> tuple[float, float] | None:
    """(statistic, p-value) of scipy's exact computation, or None to let scipy's own
    ks_2samp decide (its exact routine is private; where it is missing, or fails and falls
    back to the asymptotic formula with a warning, the public call gives the answer)."""
    try:
        from scipy.stats._stats_py import _attempt_exact_2kssamp
    except ImportError:  # pragma: no cover - scipy moved it
        return None
    try:
        ok, stat, p = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, alternative)
    except Exception:  # noqa: BLE001 - any change of its signature: ask the public call
        return None
    if not ok:
        return None
    return float(stat), float(np.clip(p, 0, 1))
