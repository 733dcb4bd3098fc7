"""ROC curves and low-FPR metrics (SCIENCE.md section 13).

Scores are oriented so that larger means "member". An operating point predicts member
for every score at or above a threshold; ties move together. Inputs of any matching
shape are flattened (leave-one-out scores ``[K, N]`` are judged with ``keep[targets]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from miakit import _arrays as ar

__all__ = ["roc", "auc", "tpr_at_fpr", "TprAtFpr", "clopper_pearson"]


def _prepare(scores: Any, members: Any) -> tuple[np.ndarray, np.ndarray]:
    s = ar.to_numpy(ar.as_array(scores, "scores"))
    y = ar.to_numpy(ar.as_array(members, "members"))
    if s.dtype.kind not in "fiu":
        raise TypeError(f"scores: expected a real-valued array, got dtype {s.dtype}")
    if s.shape != y.shape:
        raise ValueError(f"members: expected the shape of scores {s.shape}, got {y.shape}")
    if y.dtype.kind != "b":
        if y.dtype.kind not in "iuf" or not np.isin(y, (0, 1)).all():
            raise ValueError(
                f"members: expected booleans (or 0/1 values), got dtype {y.dtype} "
                "with other values"
            )
    s = s.astype(np.float64, copy=False).ravel()
    y = y.astype(bool, copy=False).ravel()
    if not np.isfinite(s).all():
        n_bad = int((~np.isfinite(s)).sum())
        raise ValueError(
            f"scores: expected finite values, got {n_bad} NaN or inf (drop examples scored "
            "NaN, e.g. by LiRA with on_empty='nan', before computing metrics)"
        )
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        what = "no members" if n_pos == 0 else "no non-members"
        raise ValueError(
            f"members: expected both members and non-members, got {what} among {y.size} scores"
        )
    return s, y


def _curve(s: np.ndarray, y: np.ndarray):
    """True and false positive counts at each distinct threshold, highest first."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    return np.r_[0, tp], np.r_[0, fp], np.r_[np.inf, s_sorted[last_of_tie]]


def roc(scores: Any, members: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve over every distinct score threshold.

    Parameters
    ----------
    scores : array_like
        Attack scores, larger = more likely a member.
    members : array_like of bool
        Ground truth, same shape as ``scores``.

    Returns
    -------
    fpr, tpr, thresholds : numpy.ndarray
        Point i predicts member for ``scores >= thresholds[i]``; the first point has
        threshold +inf (nothing predicted member). Matches
        ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

    Examples
    --------
    >>> import miakit as mk
    >>> fpr, tpr, thr = mk.metrics.roc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> tpr.tolist(), fpr.tolist()
    ([0.0, 0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5, 1.0])
    """
    s, y = _prepare(scores, members)
    tp, fp, thr = _curve(s, y)
    return fp / fp[-1], tp / tp[-1], thr


def auc(scores: Any, members: Any) -> float:
    """Area under the ROC curve: the Mann–Whitney statistic, ties counted one half.

    Examples
    --------
    >>> import miakit as mk
    >>> mk.metrics.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    s, y = _prepare(scores, members)
    ranks = stats.rankdata(s)  # average ranks: ties count one half
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided confidence interval of a binomial proportion.

    Examples
    --------
    >>> import miakit as mk
    >>> lo, hi = mk.metrics.clopper_pearson(0, 10)
    >>> lo, round(hi, 4)
    (0.0, 0.3085)
    """
    if n <= 0:
        raise ValueError(f"n: expected a positive count, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k: expected 0 <= k <= n = {n}, got {k}")
    alpha = 1.0 - level
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


@dataclass(frozen=True)
class TprAtFpr:
    """True-positive rate at a false-positive budget, with the evidence behind it.

    Attributes
    ----------
    tpr : float
        The largest TPR among operating points with FPR <= the target.
    fpr : float
        The FPR actually achieved at that point (often below the target).
    ci : tuple of float
        Clopper–Pearson interval of the TPR at ``level``.
    fpr_ci : tuple of float
        Clopper–Pearson interval of the achieved FPR.
    n_pos, n_neg : int
        Members and non-members the rates are measured on.
    tp, fp : int
        Counts behind ``tpr`` and ``fpr``.
    threshold : float
        Scores at or above it are called members (+inf: none).
    target_fpr : float
        The FPR budget asked for.
    level : float
        Confidence level of the intervals.
    resolvable : bool
        False when ``1 / n_neg > target_fpr``: not one false positive fits the budget,
        so the point only says "zero false positives" and its TPR is not a rate at
        that FPR.
    """

    tpr: float
    fpr: float
    ci: tuple[float, float]
    fpr_ci: tuple[float, float]
    n_pos: int
    n_neg: int
    tp: int
    fp: int
    threshold: float
    target_fpr: float
    level: float
    resolvable: bool


def tpr_at_fpr(scores: Any, members: Any, fpr: float = 1e-3, level: float = 0.95) -> TprAtFpr:
    """TPR at a low FPR, with the achieved FPR, the counts and a confidence interval.

    Parameters
    ----------
    scores, members : array_like
        As in :func:`roc`.
    fpr : float
        The false-positive budget, in (0, 1).
    level : float
        Confidence level of the Clopper–Pearson intervals.

    Returns
    -------
    TprAtFpr

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> y = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    >>> s = rng.normal(size=2000) + 2.0 * y
    >>> r = mk.metrics.tpr_at_fpr(s, y, fpr=0.01)
    >>> r.fpr <= 0.01, r.n_neg, r.ci[0] <= r.tpr <= r.ci[1]
    (True, 1000, True)
    """
    try:
        f = float(fpr)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"fpr: expected a float in (0, 1), got {fpr!r}") from exc
    if not 0.0 < f < 1.0:
        raise ValueError(f"fpr: expected a value in (0, 1), got {fpr!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a value in (0, 1), got {level!r}")
    s, y = _prepare(scores, members)
    tp, fp, thr = _curve(s, y)
    n_pos, n_neg = int(tp[-1]), int(fp[-1])
    # the rule roc() users apply: FPR = fp / n_neg <= f (``fp <= f * n_neg`` would reject
    # FPR == f whenever f * n_neg rounds down, e.g. 0.29 * 100 = 28.999999999999996)
    ok = np.nonzero(fp / n_neg <= f)[0]
    i = ok[np.argmax(tp[ok])]
    return TprAtFpr(
        tpr=float(tp[i] / n_pos),
        fpr=float(fp[i] / n_neg),
        ci=clopper_pearson(int(tp[i]), n_pos, level),
        fpr_ci=clopper_pearson(int(fp[i]), n_neg, level),
        n_pos=n_pos,
        n_neg=n_neg,
        tp=int(tp[i]),
        fp=int(fp[i]),
        threshold=float(thr[i]),
        target_fpr=f,
        level=float(level),
        resolvable=bool(1.0 / n_neg <= f),
    )
