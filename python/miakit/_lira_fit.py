"""The fitted IN/OUT Gaussians of LiRA, on their own so that :mod:`miakit.lira` (which
makes them) and its risk measures in :mod:`miakit._lira_risk` (which read them) both
import this module and neither imports the other.

:class:`LiraFit` is public as ``miakit.lira.LiraFit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["LiraFit"]


@dataclass(frozen=True)
class LiraFit:
    """Per-example Gaussians fitted to shadow-model observations.

    Attributes
    ----------
    mu_in, mu_out : array [N, A] float64
        Centre (median or mean) of the IN and OUT observations; NaN where a side is empty.
    sigma_in, sigma_out : array [N, A] float64
        Spread, already clamped to ``min_std``; with ``variance="global"`` every entry
        holds the one pooled value of its side.
    n_in, n_out : array [N] int64
        Number of IN and OUT models per example.
    center, variance : str
        The options the fit was made with.
    min_std : float
        The floor applied to the spreads.
    n_clamped : int
        How many spread entries were below ``min_std`` (sides with at least one model).
    """

    mu_in: Any
    mu_out: Any
    sigma_in: Any
    sigma_out: Any
    n_in: Any
    n_out: Any
    center: str
    variance: str
    min_std: float
    n_clamped: int
