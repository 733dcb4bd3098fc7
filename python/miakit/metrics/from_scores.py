"""The metrics in one call from scores and membership: ROC, AUC, TPR at FPR, leakage test.

Each function ranks the scores once (:class:`~miakit.metrics.ranking.RankedScores`) and
reads one metric from the ranking; code that needs several metrics of the same scores
ranks them itself and reads them all from one ranking.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from miakit._validation import check_probability
from miakit.metrics.membership_test import LeakagePoint
from miakit.metrics.ranking import RankedScores
from miakit.metrics.records import AucCI, TprAtFpr

__all__ = ["roc", "auc", "auc_ci", "tpr_at_fpr", "clustered_roc", "leakage_test"]


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
    return RankedScores(scores, members).roc()


def auc(scores: Any, members: Any) -> float:
    """Area under the ROC curve: the Mann–Whitney statistic, ties counted one half.

    Examples
    --------
    >>> import miakit as mk
    >>> mk.metrics.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    return RankedScores(scores, members).auc()


def tpr_at_fpr(scores: Any, members: Any, fpr: float = 1e-3, level: float = 0.95,
               clusters: Any = "auto") -> TprAtFpr:
    """TPR at a low FPR, with the achieved FPR, the counts and a confidence interval.

    Parameters
    ----------
    scores, members : array_like
        As in :func:`roc`.
    fpr : float
        The false-positive budget, in (0, 1).
    level : float
        Confidence level of the Clopper–Pearson intervals.
    clusters : "auto", None or array_like of int
        Cluster id of every score (broadcast to the scores' shape). With clusters, both
        intervals are cluster-robust (:func:`clustered_proportion_ci`). ``"auto"``
        (default): 2-D scores ``[K, N]`` are clustered by column, as leave-one-out
        scores must be (the same example is scored once per target, and its K scores
        are not independent trials); other shapes are not clustered. None: no
        clusters (Clopper–Pearson intervals of independent trials).

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
    f = check_probability(fpr, "fpr")
    check_probability(level, "level")
    return RankedScores(scores, members, clusters).tpr_at_fpr(f, level)


def clustered_roc(scores: Any, members: Any, clusters: Any
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                             tuple[int, int]]:
    """Every operating point of the ROC with the cluster-robust variances of its rates.

    Parameters
    ----------
    scores, members : array_like
        As in :func:`roc`.
    clusters : array_like of int
        Cluster id of every score (broadcast to the scores' shape).

    Returns
    -------
    thresholds, tp, fp : numpy.ndarray
        As :func:`roc` (thresholds from +inf down), with counts instead of rates.
    var_tpr, var_fpr : numpy.ndarray
        ``C / (C - 1) sum_c (k_c - p n_c)^2 / n^2`` of the TPR and of the FPR at each
        point, from running sums: every threshold in O(n log n) time in all.
    n_clusters : tuple of int
        Clusters holding members, and clusters holding non-members.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> thr, tp, fp, vt, vf, c = mk.metrics.clustered_roc([3.0, 2.0, 1.0, 0.0],
    ...                                                   [1, 0, 1, 0], [0, 0, 1, 1])
    >>> tp.tolist(), fp.tolist(), c
    ([0, 1, 1, 2, 2], [0, 0, 1, 1, 2], (2, 2))
    """
    if clusters is None:
        raise ValueError("clusters: expected a cluster id for every score, got None")
    r = RankedScores(scores, members, clusters)
    var_t, var_f, n_clusters = r.cluster_variances()
    return r.thresholds, r.tp, r.fp, var_t, var_f, n_clusters


def auc_ci(scores: Any, members: Any, clusters: Any = "auto", level: float = 0.95) -> AucCI:
    """AUC with a standard error that accounts for clustered scores.

    Every member i gets the placement ``V_i = P(non-member score < s_i)`` (ties one
    half) and every non-member j ``W_j = P(member score > s_j)``; the AUC is the mean of
    either. Its variance is that of the linearisation
    ``sum_i (V_i - AUC) / n_pos + sum_j (W_j - AUC) / n_neg``, summed within clusters
    and squared across them, times ``C / (C - 1)`` (DeLong et al. 1988 with Obuchowski's
    clusters). Leave-one-out scores ``[K, N]`` should be clustered by example
    (``clusters=np.arange(N)``): the same example is scored once per target.

    Parameters
    ----------
    scores, members : array_like
        As in :func:`roc`.
    clusters : "auto", None or array_like of int
        Cluster id of every score (broadcast to the scores' shape); ``"auto"``
        (default): 2-D scores ``[K, N]`` clustered by column, other shapes every score
        its own cluster; None: every score its own cluster.
    level : float
        Confidence level of the interval.

    Returns
    -------
    AucCI

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> y = rng.random((8, 500)) < 0.5
    >>> s = rng.normal(size=(8, 500)) + rng.normal(size=500) * 3   # per-example offsets
    >>> naive, clustered = mk.metrics.auc_ci(s, y, None), mk.metrics.auc_ci(s, y)  # by column
    >>> clustered.se > naive.se, abs(clustered.auc - 0.5) < 3 * clustered.se
    (True, True)
    """
    check_probability(level, "level")
    return RankedScores(scores, members, clusters).auc_ci(level)


def leakage_test(scores: Any, members: Any, fprs: Any = (1e-1, 1e-2, 1e-3), *,
                 clusters: Any = "auto", alpha: float = 0.05,
                 n_tests: int | None = None) -> list[LeakagePoint]:
    """Is the TPR above the FPR at a low-FPR operating point? A test of membership.

    For each budget f the threshold calls a share f of all scores members, chosen
    without looking at membership. Were membership without effect on the scores, which
    of the called scores belong to members would be a matter of chance alone, fixed by
    the design: the test asks how likely at least the observed members are, given
    which scores are called, and declares a leak when that p-value is at most
    ``alpha_each = alpha / n_tests`` (Bonferroni over every attack and budget tried:
    the family-wise error is at most ``alpha``). The chance law is:

    - leave-one-out scores ``[M, N]`` of complementary model pairs (rows 2j and 2j + 1,
      ``mk.shadow.balanced_keep``): a pair with one called score of an example gives it
      to the member with probability 1/2, independently (paired sign test; exact);
    - other clustered scores: within each cluster, members are exchangeable with
      non-members, so the members among its called scores are hypergeometric
      (stratified Mantel–Haenszel test, normal approximation of the sum);
    - unclustered scores: one hypergeometric (Fisher's exact test).

    Conditioning on each example's called scores takes its difficulty out of the test:
    a leak carried by a handful of examples is found as soon as their members are
    called and their non-members are not, however few they are. ``tpr_lower`` and
    ``fpr_upper`` describe the point with one-sided cluster-robust bounds
    (docs/methods/metrics.md).

    Parameters
    ----------
    scores, members : array_like
        As in :func:`roc`.
    fprs : sequence of float
        FPR budgets in (0, 1).
    clusters : "auto", None or array_like of int
        Cluster id of every score (broadcast to the scores' shape); ``"auto"``
        (default): 2-D scores ``[K, N]`` clustered by column (and tested pair by pair
        when their rows are complementary pairs), other shapes not clustered; None: no
        clusters.
    alpha : float
        Family-wise error rate, in (0, 1). However small (a Bonferroni share of 1e-300,
        say), the bounds are computed from the tails themselves, never from a level
        ``1 - alpha`` that would round to 1; at such tails they may well span nearly
        all of [0, 1], which is then what the data allow.
    n_tests : int, optional
        Number of tests the family holds (default ``len(fprs)``); an audit of several
        attacks passes ``n_attacks * len(fprs)``.

    Returns
    -------
    list of LeakagePoint

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> y = rng.random(20000) < 0.5
    >>> null = mk.metrics.leakage_test(rng.normal(size=20000), y, [0.01])
    >>> leak = mk.metrics.leakage_test(rng.normal(size=20000) + 3.0 * y * (rng.random(20000)
    ...                                < 0.05), y, [0.01])
    >>> null[0].leak, leak[0].leak
    (False, True)
    """
    return RankedScores(scores, members, clusters).leakage_test(fprs, alpha, n_tests)
