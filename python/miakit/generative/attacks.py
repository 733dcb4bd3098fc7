"""Attack scores against members and non-members: their power, and the DOMIAS attack.

:func:`attack_power` measures any attack's scores (AUC, TPR at low FPR with intervals,
:class:`AttackPower`); :func:`domias_scores` is the density-ratio attack of DOMIAS (van
Breugel et al. 2023), ``log p_synthetic(x) - log p_reference(x)``. The risk attack
(:mod:`miakit.generative.risk`) reports its power with :func:`attack_power`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from miakit._validation import (
    check_int,
    check_probabilities,
    check_probability,
    check_records,
    check_seed,
    sklearn_random_state,
)
from miakit.generative._estimators import _check_bandwidth, _kde_logpdf, _query

__all__ = ["attack_power", "AttackPower", "domias_scores"]


@dataclass(frozen=True)
class AttackPower:
    """How well scores (larger = member) separate members from non-members.

    Attributes
    ----------
    auc : float
    tpr : tuple of miakit.metrics.TprAtFpr
        One per FPR budget asked for (with its Clopper-Pearson interval, the achieved
        FPR, the counts, and ``resolvable``: False when not one false positive fits the
        budget).
    n_members, n_nonmembers : int
    """

    auc: float
    tpr: tuple[Any, ...]
    n_members: int
    n_nonmembers: int

    def at(self, fpr: float) -> Any:
        """The TprAtFpr of budget ``fpr``; a budget not measured is a ValueError."""
        wanted = check_probability(fpr, "fpr")
        for t in self.tpr:
            if t.target_fpr == wanted:
                return t
        raise ValueError(f"fpr: no TPR measured at {wanted!r}; budgets: "
                         f"{[t.target_fpr for t in self.tpr]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: AUC and, per budget, TPR, interval, achieved FPR, counts."""
        return {"auc": self.auc, "n_members": self.n_members,
                "n_nonmembers": self.n_nonmembers,
                "tpr_at_fpr": {f"{t.target_fpr:g}": {
                    "tpr": t.tpr, "ci": [float(v) for v in t.ci], "fpr": t.fpr,
                    "tp": t.tp, "fp": t.fp, "threshold": t.threshold,
                    "resolvable": t.resolvable} for t in self.tpr}}


def attack_power(scores_members: Any, scores_nonmembers: Any,
                 fprs: Sequence[float] = (0.01, 0.001), level: float = 0.95) -> AttackPower:
    """AUC and TPR at low FPR of attack scores on members and non-members.

    Parameters
    ----------
    scores_members, scores_nonmembers : array_like [n], [m]
        Attack scores, larger = more likely a member (negate a distance).
    fprs : sequence of float
        FPR budgets.
    level : float
        Confidence level of the Clopper-Pearson intervals.

    Returns
    -------
    AttackPower

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> p = mk.generative.attack_power(rng.normal(3, 1, 1000), rng.normal(0, 1, 1000))
    >>> round(p.auc, 2), p.at(0.01).fpr <= 0.01, p.at(0.001).resolvable
    (0.98, True, True)
    """
    from miakit.metrics import RankedScores

    f_list = check_probabilities(fprs, "fprs")
    level = check_probability(level, "level")
    s_in = _query(scores_members, "scores_members")
    s_out = _query(scores_nonmembers, "scores_nonmembers")
    if s_in.ndim != 1 or s_out.ndim != 1:
        raise ValueError(f"scores_members, scores_nonmembers: expected 1-D scores, got "
                         f"shapes {s_in.shape} and {s_out.shape}")
    r = RankedScores(np.r_[s_in, s_out], np.r_[np.ones(s_in.size, bool),
                                               np.zeros(s_out.size, bool)])
    return AttackPower(auc=r.auc(), tpr=tuple(r.tpr_at_fpr(f, level) for f in f_list),
                       n_members=int(s_in.size), n_nonmembers=int(s_out.size))


def domias_scores(records: Any, synthetic: Any, reference: Any, *,
                  n_components: int | None = None, bandwidth: Any = "scott",
                  seed: int = 0) -> np.ndarray:
    """DOMIAS density-ratio attack scores ``log p_synthetic(x) - log p_reference(x)``.

    A model that memorises puts more synthetic density on its training records than the
    population has there (van Breugel et al. 2023): the score compares the density of
    the synthetic data with that of reference data from the population.

    Parameters
    ----------
    records : array [N, D]
        Records to score (larger score = more likely a member).
    synthetic : array [S, D]
        The generated records.
    reference : array [R, D]
        Records of the population that are not the records scored (the attacker's own).
    n_components : int, optional
        Project records, synthetic and reference data on the first principal components
        of the synthetic and reference data together (scikit-learn PCA) before the
        density estimates; needed when D is large compared with S and R (64-pixel
        digits: a few components).
    bandwidth : {"scott", "silverman"} or float
        Gaussian KDE bandwidth rule (``scipy.stats.gaussian_kde``), each density its own.
    seed : int
        Seed of the PCA's randomised solver.

    Returns
    -------
    numpy.ndarray [N] float64

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> members = rng.normal(size=(200, 2))
    >>> synthetic = np.r_[members + 0.05 * rng.normal(size=(200, 2)), rng.normal(size=(200, 2))]
    >>> s = mk.generative.domias_scores(np.r_[members, rng.normal(size=(200, 2))], synthetic,
    ...                                 rng.normal(size=(1000, 2)))
    >>> bool(s[:200].mean() > s[200:].mean())
    True
    """
    bandwidth = _check_bandwidth(bandwidth)
    x = check_records(records, "records")
    s = check_records(synthetic, "synthetic", x.shape[1], "records")
    r = check_records(reference, "reference", x.shape[1], "records")
    seed = check_seed(seed)
    if n_components is not None:
        k = check_int(n_components, "n_components", 1, x.shape[1])
        from sklearn.decomposition import PCA

        pca = PCA(n_components=k, random_state=sklearn_random_state(seed))
        pca.fit(np.concatenate([s, r]))
        x, s, r = pca.transform(x), pca.transform(s), pca.transform(r)
    log_synthetic = _kde_logpdf(s, x, bandwidth, "synthetic")
    log_reference = _kde_logpdf(r, x, bandwidth, "reference")
    scores = log_synthetic - log_reference
    # a record so far from the data that its squared distances overflow gets a NaN
    # density from scipy (inf - inf), or both densities underflow to 0 (-inf - -inf): no
    # defined ratio, so refuse it rather than score it NaN
    lost = np.isnan(scores)
    if lost.any():
        raise ValueError(f"records: {int(lost.sum())} record(s) (first at index "
                         f"{int(np.argmax(lost))}) lie too far from both the synthetic and "
                         "the reference data for a float64 density ratio")
    return scores
