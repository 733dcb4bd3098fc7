"""The result records of the ROC metrics: TPR at an FPR budget, AUC with its interval.

Plain frozen dataclasses: :class:`RankedScores <miakit.metrics.ranking.RankedScores>`
fills them, and it and the one-call functions (:mod:`miakit.metrics.from_scores`) return
them; kept apart so that the ranking module holds the computation only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TprAtFpr", "AucCI"]


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
        False when the point cannot measure a TPR at the budget: ``1 / n_neg >
        target_fpr`` (not one false positive fits it), or the score's top tie group
        alone holds more than the budget of non-members (a score with few distinct
        values: the point calls nothing, TPR = FPR = 0 by construction). Such a point
        is not a measurement; report it as not resolvable.
    unresolvable_reason : str
        Why, in words ("" when resolvable).
    design_effect : tuple of float
        Design effects of the TPR and the FPR (1, 1 without clusters): how much wider
        than binomial the cluster-robust intervals are, in variance.
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
    design_effect: tuple[float, float] = (1.0, 1.0)
    unresolvable_reason: str = ""


@dataclass(frozen=True)
class AucCI:
    """AUC with its standard error and a normal-approximation interval.

    Attributes
    ----------
    auc : float
    se : float
        Standard error: DeLong's, made cluster-robust (Obuchowski 1997) when clusters
        are given.
    ci : tuple of float
        ``auc -/+ t se``, clipped to [0, 1], with t the quantile of Student's t at
        ``dof`` degrees of freedom.
    n_clusters : int
        Clusters the variance is computed over (the number of scores without clusters).
    level : float
    dof : float
        Degrees of freedom of the interval's t quantile: the effective number of clusters
        carrying the variance, less one (:func:`effective_dof`).
    """

    auc: float
    se: float
    ci: tuple[float, float]
    n_clusters: int
    level: float
    dof: float = float("nan")
