"""The leakage test's pieces apart from the ranking: its result and its null laws.

:func:`miakit.metrics.leakage_test` asks whether more members are called at a low-FPR
threshold than chance allows. The ranking (:meth:`RankedScores.leakage_test
<miakit.metrics.ranking.RankedScores.leakage_test>`) finds the threshold and the called
scores; this module holds what it reports (:class:`LeakagePoint`), the chance law of the
members among the called scores (paired sign test, Fisher's exact test, stratified
Mantel-Haenszel) and the check of the test's arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from miakit._validation import check_int, check_probabilities, check_probability

__all__ = ["LeakagePoint"]


@dataclass(frozen=True)
class LeakagePoint:
    """One operating point of :func:`leakage_test`.

    Attributes
    ----------
    target_fpr : float
        The budget: the threshold calls at most this share of all scores (members and
        non-members together) members, so that it is chosen without looking at
        membership.
    tpr, fpr : float
        The TPR and FPR at that threshold.
    threshold : float
    tpr_lower : float
        One-sided lower confidence bound of the TPR at level ``1 - alpha_each / 2``
        (cluster-robust with clusters): a description of the point, not the test.
    fpr_upper : float
        One-sided upper confidence bound of the FPR at the same threshold and level.
    leak : bool
        ``p_value <= alpha_each``.
    p_value : float
        Probability, were membership without effect on the scores, of at least ``tp``
        members among the scores called at the threshold, given which scores are
        called (``test``).
    test : str
        ``"paired sign test"`` (rows of complementary model pairs: of a pair with one
        called score, that score is the member's with probability 1/2; exact),
        ``"stratified test (Mantel-Haenszel)"`` (clusters: members among a cluster's
        called scores are hypergeometric; normal approximation of their sum), or
        ``"Fisher's exact test"`` (no clusters: one hypergeometric).
    min_detectable_tpr : float
        The smallest TPR the test would declare a leak at, with the scores called at
        this threshold: ``min_detectable_tpr - fpr`` is the smallest TPR excess the audit
        could resolve at that budget (NaN if none could be).
    alpha_each : float
        The error rate spent on this point (``alpha / n_tests``).
    design_effect : float
        The larger of the TPR's and the FPR's design effects (1 without clusters).
    resolvable : bool
        Whether at least one false positive fits the budget and the threshold calls a
        score at all (a score whose top tie group holds more than the budget calls none).
    n_pos, n_neg, tp, fp : int
    """

    target_fpr: float
    tpr: float
    fpr: float
    threshold: float
    tpr_lower: float
    fpr_upper: float
    leak: bool
    min_detectable_tpr: float
    alpha_each: float
    design_effect: float
    resolvable: bool
    n_pos: int
    n_neg: int
    tp: int
    fp: int
    p_value: float = 1.0
    test: str = ""


@dataclass(frozen=True)
class _MembershipTest:
    """The null distribution of the members among the called scores, less ``fixed``:
    ``binom`` (n, 1/2) for complementary pairs with one called score (a pair with both
    called holds one member for sure), ``hypergeom`` (scores, members, called) for one
    stratum, ``normal`` (mean, sd) for a sum of hypergeometric strata."""

    name: str
    law: str
    args: tuple
    fixed: int

    def p_value(self, members_called: int) -> float:
        x = members_called - self.fixed
        if self.law == "binom":
            return float(stats.binom.sf(x - 1, *self.args)) if self.args[0] > 0 else 1.0
        if self.law == "hypergeom":
            return float(stats.hypergeom.sf(x - 1, *self.args))
        mean, sd = self.args
        # continuity-corrected; no variance: nothing could move, no evidence
        return float(stats.norm.sf((x - 0.5 - mean) / sd)) if sd > 0 else 1.0

    def min_detectable(self, alpha: float) -> float:
        """The fewest members among the called scores whose p-value is at most alpha
        (NaN when no count is)."""
        if self.law == "binom":
            n = self.args[0]
            if n == 0 or stats.binom.sf(n - 1, *self.args) > alpha:
                return float("nan")
            return float(self.fixed + stats.binom.isf(alpha, *self.args) + 1)
        if self.law == "hypergeom":
            top = min(self.args[1], self.args[2])
            if stats.hypergeom.sf(top - 1, *self.args) > alpha:
                return float("nan")
            return float(stats.hypergeom.isf(alpha, *self.args) + 1)
        mean, sd = self.args
        return float(np.ceil(mean + 0.5 + stats.norm.isf(alpha) * sd)) if sd > 0 \
            else float("nan")


def _check_leakage_args(fprs: Any, alpha: float, n_tests: int | None) -> list[float]:
    check_probability(alpha, "alpha")
    f_list = check_probabilities(fprs, "fprs")
    if n_tests is not None:  # an int (not "3", not 3.5): the Bonferroni divisor
        check_int(n_tests, "n_tests", lo=len(f_list),
                  what=f"an int >= len(fprs) = {len(f_list)}")
    return f_list
