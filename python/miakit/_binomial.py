"""Exact (Clopper–Pearson) bounds of a binomial proportion, in one place.

:func:`one_sided` is the bound every interval of a rate is made of
(docs/methods/metrics.md): a two-sided interval at level ``1 - alpha`` is the lower and
the upper one-sided bound at ``alpha / 2`` each, and the empirical-epsilon search of
:mod:`miakit.bounds` takes one-sided bounds at a Bonferroni-corrected ``alpha``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats


def one_sided(k: Any, n: Any, alpha: float, upper: bool) -> np.ndarray:
    """The Clopper–Pearson one-sided bound of ``k / n`` at error ``alpha``, elementwise.

    Parameters
    ----------
    k : int or array of int
        Successes, ``0 <= k <= n``.
    n : int or array of int
        Trials, ``n >= 1``.
    alpha : float
        The probability that the true rate lies beyond the bound.
    upper : bool
        The upper bound ``Beta^-1(1 - alpha; k + 1, n - k)`` (1 at ``k = n``), else the
        lower bound ``Beta^-1(alpha; k, n - k + 1)`` (0 at ``k = 0``).

    Returns
    -------
    numpy.ndarray of float64
        Shaped like ``k`` (a 0-d array for scalars).
    """
    k = np.asarray(k, dtype=np.float64)
    if upper:
        # the upper quantile from the upper tail itself: 1 - alpha would round to 1 for
        # an alpha below 1e-16 (a Bonferroni-corrected one can be that small)
        return np.where(k >= n, 1.0, stats.beta.isf(alpha, k + 1.0, n - k))
    return np.where(k <= 0, 0.0, stats.beta.ppf(alpha, k, n - k + 1.0))
