"""How separable an example's IN and OUT distributions are (docs/methods/vulnerability.md;
Choi et al., "Why Train More?").

From a :class:`miakit.lira.LiraFit` (per example and augmentation, Gaussians
``N(mu_in, sigma_in^2)`` and ``N(mu_out, sigma_out^2)``):

- :func:`hellinger`: the Hellinger distance between the two Gaussians;
- :func:`privacy_score`: ``|mu_in - mu_out| / (sigma_in + sigma_out)``;
- :func:`shadow_models_needed`: how many observations (shadow models) tell IN from OUT
  with a given error rate, of order ``ln(1/error) / H^2``.

These functions are re-exported as ``miakit.lira.hellinger`` etc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit._lira_fit import LiraFit
from miakit._validation import check_choice, check_real

__all__ = ["hellinger", "privacy_score", "shadow_models_needed", "ShadowModelsNeeded",
           "SHADOW_MODELS_FORMULAS"]

SHADOW_MODELS_FORMULAS = {
    "bhattacharyya": "n = ceil(ln(1 / (2 error)) / -ln(1 - H^2))",
    "order": "n = ceil(ln(1 / error) / H^2)",
}


def _check_fit(fit: Any) -> None:
    if not isinstance(fit, LiraFit):
        raise TypeError(f"fit: expected a LiraFit from miakit.lira.fit, got {type(fit).__name__}")


def _log_bc(fit: Any) -> Any:
    """log of the Bhattacharyya coefficient BC = 1 - H^2 of the two Gaussians, [N, A].

    ``log BC = 1/2 log(1 - (s1 - s2)^2 / (s1^2 + s2^2)) - (m1 - m2)^2 / (4 (s1^2 + s2^2))``,
    which equals ``log(sqrt(2 s1 s2 / (s1^2 + s2^2)) exp(-(m1 - m2)^2 / (4 (s1^2 + s2^2))))``
    but keeps full relative accuracy when the two distributions are close.
    """
    xp = ar.namespace(fit.mu_in)
    d, s1, s2 = _relative_to_spread(fit)
    ss = s1 * s1 + s2 * s2
    return 0.5 * xp.log1p(-((s1 - s2) ** 2) / ss) - d * d / (4.0 * ss)


def _relative_to_spread(fit: Any) -> tuple[Any, Any, Any]:
    """``mu_in - mu_out``, ``sigma_in`` and ``sigma_out`` divided by ``2^e``, the power of
    two just above the larger spread, [N, A].

    The measures here are ratios of these quantities, which a power of two divides
    exactly: the values are those of the unscaled formulas, but squares of spreads
    near 1e154 and beyond no longer overflow (fits of scores of any finite magnitude)."""
    m = ar.namespace(fit.mu_in).module  # numpy or torch: both have frexp and ldexp
    _, e = m.frexp(m.maximum(fit.sigma_in, fit.sigma_out))
    # the difference of halves cannot overflow; the 1 in 1 - e restores the factor 2
    d = m.ldexp(fit.mu_in * 0.5 - fit.mu_out * 0.5, 1 - e)
    return d, m.ldexp(fit.sigma_in, -e), m.ldexp(fit.sigma_out, -e)


def hellinger(fit: Any, squared: bool = False) -> Any:
    """Hellinger distance between each example's fitted IN and OUT Gaussians.

    ``H^2 = 1 - sqrt(2 s1 s2 / (s1^2 + s2^2)) exp(-(m1 - m2)^2 / (4 (s1^2 + s2^2)))`` with
    ``m1, s1 = mu_in, sigma_in`` and ``m2, s2 = mu_out, sigma_out`` (docs/methods/vulnerability.md),
    evaluated as ``-expm1(log BC)`` so that nearly identical distributions keep full
    relative accuracy. ``H`` lies in [0, 1]: 0 for identical distributions, 1 for
    disjoint ones.

    Parameters
    ----------
    fit : miakit.lira.LiraFit
        From :func:`miakit.lira.fit` (spreads already clamped to ``min_std``).
    squared : bool
        Return ``H^2`` instead of ``H``.

    Returns
    -------
    array [N, A] float64
        Same array type and device as the fit; NaN where an example has no IN or no OUT
        model.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> keep = mk.shadow.balanced_keep(64, 3, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> s = rng.normal(size=(64, 3, 1)) + np.array([0.0, 1.0, 8.0])[None, :, None] * keep[..., None]
    >>> h = mk.lira.hellinger(mk.lira.fit(s, keep, center="mean"))
    >>> h.shape, bool(h[0, 0] < h[1, 0] < h[2, 0])
    ((3, 1), True)
    """
    _check_fit(fit)
    xp = ar.namespace(fit.mu_in)
    h2 = xp.clip(-xp.expm1(_log_bc(fit)), 0.0, 1.0)
    return h2 if squared else xp.sqrt(h2)


def privacy_score(fit: Any) -> Any:
    """Privacy score ``|mu_in - mu_out| / (sigma_in + sigma_out)`` per example and
    augmentation (docs/methods/vulnerability.md): how many spreads apart the IN and OUT centres are.

    Parameters
    ----------
    fit : miakit.lira.LiraFit
        From :func:`miakit.lira.fit`.

    Returns
    -------
    array [N, A] float64
        Same array type and device as the fit; NaN where a side is empty.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> keep = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    >>> s = np.array([[3.0, 0.0], [5.0, 1.0], [0.0, 2.0], [1.0, 4.0]])  # [M, N]
    >>> mk.lira.privacy_score(mk.lira.fit(s, keep, center="mean"))  # 3.5 / 1.5, 2.5 / 1.5
    array([[2.33333333],
           [1.66666667]])
    """
    _check_fit(fit)
    d, s1, s2 = _relative_to_spread(fit)  # the same ratio, without overflow
    return abs(d) / (s1 + s2)


@dataclass(frozen=True)
class ShadowModelsNeeded:
    """Shadow models needed per example and augmentation, and how the number was derived.

    Attributes
    ----------
    n : array [N, A] float64
        Observations (shadow models) needed; ``inf`` where the IN and OUT Gaussians are
        identical, NaN where a side is empty.
    error : float
        The target error rate.
    formula : str
        The formula used (one of :data:`SHADOW_MODELS_FORMULAS`).
    hellinger_sq : array [N, A] float64
        The squared Hellinger distances the count was computed from.
    """

    n: Any
    error: float
    formula: str
    hellinger_sq: Any

    def __array__(self, dtype=None, copy=None):
        out = ar.to_numpy(self.n)
        return out if dtype is None else out.astype(dtype)


def shadow_models_needed(fit: Any, error: float = 0.05,
                         formula: str = "bhattacharyya") -> ShadowModelsNeeded:
    """How many shadow models tell an example's IN distribution from its OUT distribution.

    Telling two distributions apart with error rate ``error`` takes a number of
    observations of order ``ln(1/error) / H^2`` (docs/methods/vulnerability.md; Choi et al.).
    Two formulas are offered:

    - ``"bhattacharyya"`` (default): ``n = ceil(ln(1 / (2 error)) / -ln(1 - H^2))``, the
      smallest n for which the Bhattacharyya bound on the Bayes error of the
      likelihood-ratio test from n independent observations with equal priors,
      ``(1/2) BC^n = (1/2) (1 - H^2)^n``, is at most ``error``. It is a sufficient count
      (the test is at least this good), and ``~ ln(1/(2 error)) / H^2`` when H is small.
    - ``"order"``: ``n = ceil(ln(1 / error) / H^2)``, the order of magnitude as usually
      quoted.

    Parameters
    ----------
    fit : miakit.lira.LiraFit
        From :func:`miakit.lira.fit`.
    error : float
        Target error rate, in (0, 0.5).
    formula : {"bhattacharyya", "order"}
        Which formula; the one used is recorded in the result's ``formula``.

    Returns
    -------
    ShadowModelsNeeded
        ``.n`` [N, A] float64 (same array type and device as the fit; ``inf`` where
        ``H = 0``), with ``.formula``, ``.error`` and ``.hellinger_sq``.
        ``numpy.asarray(result)`` gives ``.n``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> keep = mk.shadow.balanced_keep(64, 2, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> s = rng.normal(size=(64, 2, 1)) + np.array([0.5, 4.0])[None, :, None] * keep[..., None]
    >>> need = mk.lira.shadow_models_needed(mk.lira.fit(s, keep, center="mean"), error=0.05)
    >>> need.formula
    'n = ceil(ln(1 / (2 error)) / -ln(1 - H^2))'
    >>> bool(need.n[0, 0] > need.n[1, 0])
    True
    """
    _check_fit(fit)
    err = check_real(error, "error", 0.0, 0.5, open_lo=True, open_hi=True,
                     what="a float in (0, 0.5)")
    # the names as a tuple: a list given as formula is then refused, not unhashable
    check_choice(formula, "formula", tuple(SHADOW_MODELS_FORMULAS))
    xp = ar.namespace(fit.mu_in)
    log_bc = _log_bc(fit)
    h2 = xp.clip(-xp.expm1(log_bc), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if formula == "bhattacharyya":
            n = xp.ceil(math.log(1.0 / (2.0 * err)) / (0.0 - log_bc))  # +0 -> inf
        else:
            n = xp.ceil(math.log(1.0 / err) / h2)
    n = xp.clip(n, 1.0, None)
    return ShadowModelsNeeded(n, err, SHADOW_MODELS_FORMULAS[formula], h2)
