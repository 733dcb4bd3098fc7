"""The shots/classes power law of membership vulnerability (Tobaben et al. 2024;
docs/methods/powerlaw.md).

At a fixed FPR, with S examples per class ("shots") and C classes,

    log10(TPR - FPR) = beta_S log10(S) + beta_C log10(C) + beta_0,

fitted by ordinary least squares (statsmodels) over experiments ("cells"). Cells whose
TPR does not exceed the FPR cannot enter the logarithm; they are listed with the reason,
never dropped silently. :func:`fit` returns the coefficients with confidence intervals,
R^2 and residuals; :meth:`PowerLawFit.predict` predicts the TPR of new cells with
prediction intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from miakit._validation import check_probability, check_real_array

__all__ = ["fit", "PowerLawFit"]


def _statsmodels() -> Any:
    try:
        import statsmodels.api as sm
    except ImportError as exc:
        raise ImportError("the power-law fit uses statsmodels: pip install 'miakit[sweep]' "
                          "(or pip install statsmodels)") from exc
    return sm


def _design(shots: np.ndarray, classes: np.ndarray, with_classes: bool) -> np.ndarray:
    cols = [np.log10(shots)] + ([np.log10(classes)] if with_classes else [])
    return np.column_stack(cols + [np.ones(len(shots))])


@dataclass(frozen=True)
class PowerLawFit:
    """The fitted power law at one FPR.

    Attributes
    ----------
    fpr : float
    beta_s, beta_c, beta_0 : float
        Coefficients (``beta_c`` is NaN when every cell has the same number of classes,
        which cannot identify it).
    ci : dict
        ``{"beta_s": (lo, hi), ...}`` at ``level``.
    std_err : dict
    r2 : float
    n_cells : int
        Cells in the fit.
    residuals : numpy.ndarray
        ``log10(TPR - FPR)`` minus the fit, per cell in the fit.
    cells : list of dict
        Every cell given, with ``used`` and, for the others, ``reason``.
    level : float
    """

    fpr: float
    beta_s: float
    beta_c: float
    beta_0: float
    ci: dict
    std_err: dict
    r2: float
    n_cells: int
    residuals: np.ndarray
    cells: list
    level: float
    _result: Any = field(repr=False, default=None)

    @property
    def with_classes(self) -> bool:
        return bool(np.isfinite(self.beta_c))

    def predict(self, shots: Any, classes: Any, level: float | None = None
                ) -> dict[str, np.ndarray]:
        """Predicted TPR at this FPR for cells ``(shots, classes)``, with intervals.

        Returns ``{"tpr", "tpr_lower", "tpr_upper", "log10_excess", "log10_lower",
        "log10_upper"}``: the fit's prediction of ``log10(TPR - FPR)`` with its
        prediction interval (for a new cell, not the mean) at ``level`` (default: the
        fit's), and the TPR they give.

        Examples
        --------
        >>> import numpy as np, miakit as mk
        >>> s = np.array([1, 2, 4, 8, 1, 2, 4, 8]); c = np.array([2] * 4 + [10] * 4)
        >>> tpr = 0.01 + 0.3 * s ** -0.5 * c ** 0.2 * np.exp([.01, -.02, .0, .02] * 2)
        >>> f = mk.powerlaw.fit(s, c, tpr, fpr=0.01)
        >>> p = f.predict([16], [5])
        >>> bool(p["tpr_lower"][0] < p["tpr"][0] < p["tpr_upper"][0])
        True
        """
        lv = self.level if level is None else check_probability(level, "level")
        s, c = _cells(shots, classes)
        x = _design(s, c, self.with_classes)
        frame = self._result.get_prediction(x).summary_frame(alpha=1.0 - lv)
        mean = frame["mean"].to_numpy()
        lo, hi = frame["obs_ci_lower"].to_numpy(), frame["obs_ci_upper"].to_numpy()
        return {"tpr": self.fpr + 10.0 ** mean, "tpr_lower": self.fpr + 10.0 ** lo,
                "tpr_upper": self.fpr + 10.0 ** hi, "log10_excess": mean,
                "log10_lower": lo, "log10_upper": hi}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (coefficients, intervals, R^2, residuals, cells)."""
        return {"fpr": self.fpr, "beta_s": self.beta_s,
                "beta_c": None if not self.with_classes else self.beta_c,
                "beta_0": self.beta_0, "ci": {k: list(v) for k, v in self.ci.items()},
                "std_err": self.std_err, "r2": self.r2, "n_cells": self.n_cells,
                "level": self.level, "residuals": self.residuals.tolist(),
                "cells": self.cells}


def _cells(shots: Any, classes: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.atleast_1d(check_real_array(shots, "shots"))
    c = np.atleast_1d(check_real_array(classes, "classes"))
    if s.shape != c.shape or s.ndim != 1:
        raise ValueError(f"shots, classes: expected 1-D arrays of one length, got shapes "
                         f"{s.shape} and {c.shape}")
    if not (np.isfinite(s).all() and (s >= 1).all()):
        raise ValueError("shots: expected examples per class >= 1")
    if not (np.isfinite(c).all() and (c >= 2).all()):
        raise ValueError("classes: expected at least 2 classes per cell")
    # both are counts: a fractional one is a mix-up of columns, not a cell of the grid
    for values, name in ((s, "shots"), (c, "classes")):
        if not (values == np.round(values)).all():
            raise ValueError(f"{name}: expected whole counts per cell, got "
                             f"{values[values != np.round(values)][0]:g}")
    return s, c


def fit(shots: Any, classes: Any, tpr: Any, fpr: float, level: float = 0.95,
        resolvable: Any = None) -> PowerLawFit:
    """Fit ``log10(TPR - FPR) = beta_S log10 S + beta_C log10 C + beta_0`` by OLS.

    Parameters
    ----------
    shots, classes : array_like [K]
        S and C of every cell: whole counts, S >= 1 and C >= 2.
    tpr : array_like [K]
        The TPR each cell's attack reached at ``fpr``.
    fpr : float
        In (0, 1).
    level : float
        Confidence level of the coefficient intervals (and default of predictions).
    resolvable : array_like of bool [K], optional
        False for cells with fewer than 1/FPR non-members, whose TPR at FPR is not a
        rate at that FPR: they are left out with that reason.

    Returns
    -------
    PowerLawFit

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> s = np.array([1, 2, 4, 8, 16] * 2); c = np.array([2] * 5 + [10] * 5)
    >>> tpr = 0.001 + 0.5 * s ** -0.5 * c ** 0.3
    >>> f = mk.powerlaw.fit(s, c, tpr, fpr=0.001)
    >>> round(f.beta_s, 6), round(f.beta_c, 6), f.r2 == 1.0 or round(f.r2, 12)
    (-0.5, 0.3, True)
    """
    sm = _statsmodels()
    f = check_probability(fpr, "fpr")
    check_probability(level, "level")
    s, c = _cells(shots, classes)
    t = np.atleast_1d(check_real_array(tpr, "tpr"))
    if t.shape != s.shape:
        raise ValueError(f"tpr: expected one value per cell ({s.size}), got shape {t.shape}")
    if not ((t >= 0) & (t <= 1)).all():
        raise ValueError("tpr: expected rates in [0, 1]")
    ok = np.ones(s.size, bool) if resolvable is None else np.asarray(resolvable, bool)
    if ok.shape != s.shape:
        raise ValueError(f"resolvable: expected one flag per cell ({s.size})")
    if s.size < 2:
        raise ValueError(f"shots: expected a grid of at least 2 cells, got {s.size}")
    cells, use = [], np.zeros(s.size, bool)
    for i in range(s.size):
        cell: dict[str, Any] = {"shots": float(s[i]), "classes": float(c[i]),
                                "tpr": float(t[i])}
        if not ok[i]:
            cell.update(used=False, reason="unresolvable: fewer than 1/FPR non-members")
        elif t[i] <= f:
            cell.update(used=False, reason=f"TPR {t[i]:.4g} <= FPR {f:g}: log(TPR - FPR) "
                                           "undefined")
        else:
            cell["used"] = use[i] = True
        cells.append(cell)
    n_used = int(use.sum())
    with_c = np.unique(c[use]).size > 1
    need = 3 + with_c
    if n_used < need:
        raise ValueError(f"tpr: the fit needs at least {need} cells with TPR > FPR, got "
                         f"{n_used} of {s.size} (see which and why: attack at a larger "
                         "FPR, or with more models/examples)")
    if np.unique(s[use]).size < 2:
        raise ValueError("shots: the usable cells need at least 2 different shot values")
    y = np.log10(t[use] - f)
    x = _design(s[use], c[use], with_c)
    res = sm.OLS(y, x).fit()
    ci = res.conf_int(alpha=1.0 - level)
    names = ["beta_s", "beta_c", "beta_0"] if with_c else ["beta_s", "beta_0"]
    coef = dict(zip(names, res.params))
    return PowerLawFit(
        fpr=f, beta_s=float(coef["beta_s"]), beta_c=float(coef.get("beta_c", np.nan)),
        beta_0=float(coef["beta_0"]),
        ci={k: (float(lo), float(hi)) for k, (lo, hi) in zip(names, ci)},
        std_err={k: float(v) for k, v in zip(names, res.bse)}, r2=float(res.rsquared),
        n_cells=n_used, residuals=np.asarray(res.resid), cells=cells, level=float(level),
        _result=res)
