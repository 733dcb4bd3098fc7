"""ROC curves and low-FPR metrics (docs/methods/metrics.md).

Scores are oriented so that larger means "member". An operating point predicts member
for every score at or above a threshold; ties move together. Inputs of any matching
shape are flattened (leave-one-out scores ``[K, N]`` are judged with ``keep[targets]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from miakit import _C
from miakit import _arrays as ar
from miakit._validation import (
    check_bool_array,
    check_choice,
    check_clusters,
    check_probabilities,
    check_probability,
)

__all__ = ["RankedScores", "RankWorkspace", "roc", "auc", "auc_ci", "AucCI", "tpr_at_fpr",
           "TprAtFpr",
           "clopper_pearson",
           "clustered_proportion_ci", "ClusteredProportion", "korn_graubard", "clustered_roc",
           "leakage_test", "LeakagePoint"]


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


class RankWorkspace:
    """Buffers that a series of rankings (:class:`RankedScores`) can share.

    A ranking of n scores needs 28 bytes per score: each ROC point's threshold and counts
    and the ranked payloads (the sort itself runs inside these buffers). Fresh memory
    costs a page fault per page on first touch, which for millions of scores is a good
    part of the ranking's time; rankings made one after another in one workspace touch
    the pages once. A ranking made in a workspace reads its buffers: it is valid until the
    next ranking made in the same workspace.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> ws = mk.metrics.RankWorkspace()
    >>> s, y = np.array([[0.9, 0.2], [0.4, 0.1]]), np.array([[1, 0], [0, 1]])
    >>> mk.metrics.RankedScores.by_columns(s, y, ws).auc()
    0.5
    """

    _LAYOUT = (("thr", np.float64, 1), ("tp", np.int64, 1), ("fp", np.int64, 1),
               ("order", np.int32, 0))

    def __init__(self) -> None:
        self._store: dict[str, np.ndarray] = {}

    def buffers(self, n: int) -> dict[str, np.ndarray]:
        """Views of the buffers for n scores, grown (never shrunk) as needed."""
        out = {}
        for name, dtype, extra in self._LAYOUT:
            buf = self._store.get(name)
            if buf is None or buf.size < n + extra:
                buf = self._store[name] = np.empty(n + extra, dtype=dtype)
            out[name] = buf[: n + extra]
        return out


class RankedScores:
    """One attack's scores sorted once, with every ROC quantity derived from that order.

    The audit ranks each attack's M x N scores once: the ROC, the AUC and its clustered
    standard error, every TPR at FPR with its (clustered) interval, the leakage tests and
    the empirical epsilon all come from the same sort (plus one grouping of the clusters),
    instead of a sort per metric.

    Parameters
    ----------
    scores, members : array_like
        As in :func:`roc`.
    clusters : array_like of int, optional
        Cluster id of every score (broadcast to the scores' shape).

    Attributes
    ----------
    thresholds, tp, fp : numpy.ndarray
        The ROC's points: point i calls ``scores >= thresholds[i]`` members, with ``tp[i]``
        members and ``fp[i]`` non-members among them (point 0: none).
    n_pos, n_neg : int
        Members and non-members ranked.
    youden_point : int
        The first point of the largest ``TPR - FPR`` (Youden's J; 0 when none is above 0).
    excluded : int
        Scores left out as NaN or inf (:meth:`by_columns`; 0 otherwise).

    Examples
    --------
    >>> import miakit as mk
    >>> r = mk.metrics.RankedScores([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> r.auc(), r.tpr_at_fpr(0.5).tpr
    (0.75, 1.0)
    """

    def __init__(self, scores: Any, members: Any, clusters: Any = None):
        shape = np.shape(ar.to_numpy(ar.as_array(scores, "scores")))
        s, y = _prepare(scores, members)
        c = check_clusters(clusters, shape)
        if c is not None:
            c = np.ascontiguousarray(c, dtype=np.int64)
        self._rank(s, y, c, 0, False, s.size if c is None else int(c.max()) + 1)

    @classmethod
    def by_columns(cls, scores: Any, members: Any,
                   workspace: RankWorkspace | None = None) -> RankedScores:
        """A ranking of a ``[rows, columns]`` score matrix (an attack's ``[M, N]``
        leave-one-out scores) clustered by column (example), NaN and inf scores left out
        (``excluded`` counts them): the audit's ranking, without a masked copy of the
        scores or a matrix of cluster ids. With a :class:`RankWorkspace`, its buffers are
        used (and the previous ranking made in it is no longer valid).

        Examples
        --------
        >>> import numpy as np, miakit as mk
        >>> s = np.array([[0.9, np.nan, 0.2], [0.4, 0.8, 0.1]])
        >>> r = mk.metrics.RankedScores.by_columns(s, [[1, 0, 0], [0, 1, 0]])
        >>> r.excluded, r.n_pos, r.auc()
        (1, 2, 1.0)
        """
        s = np.ascontiguousarray(ar.to_numpy(ar.as_array(scores, "scores")), dtype=np.float64)
        if s.ndim != 2 or 0 in s.shape:
            raise ValueError(f"scores: expected a non-empty 2-D [rows, columns] matrix, got "
                             f"shape {s.shape}")
        y = check_bool_array(members, "members", s.shape)
        self = cls.__new__(cls)
        self._rank(s.ravel(), np.ascontiguousarray(y).ravel(), None, s.shape[1], True,
                   s.shape[1], workspace)
        if self.n_pos == 0 or self.n_neg == 0:
            what = "no members" if self.n_pos == 0 else "no non-members"
            raise ValueError(f"members: expected both members and non-members among the "
                             f"finite scores, got {what}")
        return self

    def _rank(self, s: np.ndarray, y: np.ndarray, c: np.ndarray | None, period: int,
              skip_nonfinite: bool, n_clusters: int,
              workspace: RankWorkspace | None = None) -> None:
        n = s.size
        self._clustered = c is not None or period > 0
        # One compiled pass (radix sort + walk, see docs/methods/metrics.md): per ROC point
        # the threshold and counts; per cluster the counts and AUC placement sums; and the
        # ranked order, from which the cluster sums behind a point's variance are read
        # for the few points the metrics use (cluster_variances).
        w = (workspace or RankWorkspace()).buffers(n)
        thr, tp, fp, order = w["thr"], w["tp"], w["fp"], w["order"]
        per_cluster = [np.empty(n_clusters, dtype=np.int64) for _ in range(2)]
        per_cluster += [np.empty(n_clusters) for _ in range(2)]
        st = _C.rank_scores(np.ascontiguousarray(s), y.view(np.uint8), c, period,
                            skip_nonfinite, thr, tp, fp, order, *per_cluster)
        if st["nonfinite"]:
            raise ValueError(f"scores: expected finite values, got {st['nonfinite']} NaN or inf")
        g = st["points"]
        self.excluded = int(st["skipped"])
        self._order = order[: n - self.excluded]
        self.thresholds, self.tp, self.fp = thr[:g], tp[:g], fp[:g]
        self._per_cluster = per_cluster
        self.n_pos, self.n_neg = int(st["n_pos"]), int(st["n_neg"])
        self._wins2 = int(st["wins2"])  # the Mann-Whitney count, doubled, from the walk
        self.youden_point = int(st["youden_point"])  # first point of the largest TPR - FPR
        self._var: tuple | None = None

    # -- the curve ---------------------------------------------------------------------
    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fpr, tpr, thresholds), as :func:`roc`."""
        return self.fp / self.n_neg, self.tp / self.n_pos, self.thresholds

    def point(self, fpr: float) -> int:
        """Index of the operating point of :func:`tpr_at_fpr` for the budget ``fpr``."""
        # the rule roc() users apply: FPR = fp / n_neg <= f (``fp <= f * n_neg`` would
        # reject FPR == f whenever f * n_neg rounds down, e.g. 0.29 * 100 = 28.99999...);
        # fp / n_neg is monotone in fp, so the largest admissible count is found around
        # floor(f * n_neg), then the first point with the most true positives among the
        # admissible ones (fp and tp never decrease along the curve).
        k = min(max(int(np.floor(fpr * self.n_neg)) + 1, 0), self.n_neg)
        while k > 0 and k / self.n_neg > fpr:
            k -= 1
        last = int(np.searchsorted(self.fp, k, side="right")) - 1
        return int(np.searchsorted(self.tp, self.tp[last], side="left"))

    def auc(self) -> float:
        """Mann-Whitney AUC (ties one half), exactly: integer counts over tie groups,
        summed in the ranking's walk."""
        return float(self._wins2 / (2 * self.n_pos * self.n_neg))

    # -- clusters ----------------------------------------------------------------------
    def cluster_variances(self, points: Any = None
                          ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Cluster-robust variances of the TPR and the FPR at every point (or at the
        indices ``points``), and the clusters holding members and non-members (see
        :func:`clustered_roc`)."""
        if points is None and self._var is not None:
            return self._var
        sel = (np.arange(self.tp.size) if points is None
               else np.asarray(points, dtype=np.int64).ravel())
        n_pos_c, n_neg_c = self._per_cluster[:2]
        # the walk's running sums at the points, in ascending order of position
        pos = self.tp[sel] + self.fp[sel]
        by = np.argsort(pos, kind="stable")
        sums = np.empty((4, sel.size))
        _C.rank_cluster_sums(self._order, np.ascontiguousarray(pos[by]), n_pos_c, n_neg_c,
                             sums)
        s2p, knp, s2n, knn = np.empty_like(sums)
        for dst, src in zip((s2p, knp, s2n, knn), sums):
            dst[by] = src
        out = []
        for k, s2, skn, n_c in ((self.tp, s2p, knp, n_pos_c), (self.fp, s2n, knn, n_neg_c)):
            # sum_c (k_c - p n_c)^2 = sum_c k_c^2 - 2 p sum_c k_c n_c + p^2 sum_c n_c^2,
            # with k_c the class's elements of cluster c at or above the point
            total = float(n_c.sum())
            sq = float((n_c.astype(np.float64) ** 2).sum())
            used = int(np.count_nonzero(n_c))  # clusters with trials of this class
            p = k[sel] / total
            ssq = np.maximum(s2 - 2.0 * p * skn + p * p * sq, 0.0)
            var = (used / (used - 1) * ssq / total ** 2 if used > 1
                   else np.zeros_like(ssq))
            out.append((var, used))
        res = (out[0][0], out[1][0], (out[0][1], out[1][1]))
        if points is None:
            self._var = res
        return res

    def _bounds_at(self, i: int, level: float, alternative: str
                   ) -> tuple[ClusteredProportion, ClusteredProportion]:
        """(TPR, FPR) of point i as clustered proportions with their intervals."""
        var_t, var_f, (c_t, c_f) = self.cluster_variances([i])
        tail = (1.0 - level) / 2 if alternative == "two-sided" else 1.0 - level
        res = []
        for k, n, var, nc, alt in ((self.tp[i], self.n_pos, var_t[0], c_t, alternative),
                                   (self.fp[i], self.n_neg, var_f[0], c_f,
                                    {"greater": "less"}.get(alternative, alternative))):
            lo, hi, deff, n_eff = korn_graubard(np.array([float(k)]), float(n),
                                                np.array([var]), nc, tail)
            lo_, hi_ = float(lo[0]), float(hi[0])
            if alt == "greater":
                hi_ = 1.0
            elif alt == "less":
                lo_ = 0.0
            res.append(ClusteredProportion(float(k) / n, (lo_, hi_), float(deff[0]),
                                           float(n_eff[0]), nc))
        return res[0], res[1]

    # -- the metrics -------------------------------------------------------------------
    def tpr_at_fpr(self, fpr: float, level: float = 0.95) -> TprAtFpr:
        """As :func:`tpr_at_fpr` (intervals cluster-robust when clusters were given)."""
        i = self.point(fpr)
        tp, fp = int(self.tp[i]), int(self.fp[i])
        if not self._clustered:
            ci = clopper_pearson(tp, self.n_pos, level)
            fpr_ci = clopper_pearson(fp, self.n_neg, level)
            deff = (1.0, 1.0)
        else:
            t, u = self._bounds_at(i, level, "two-sided")
            ci, fpr_ci, deff = t.ci, u.ci, (t.design_effect, u.design_effect)
        return TprAtFpr(tpr=tp / self.n_pos, fpr=fp / self.n_neg, ci=ci, fpr_ci=fpr_ci,
                        design_effect=deff, n_pos=self.n_pos, n_neg=self.n_neg, tp=tp,
                        fp=fp, threshold=float(self.thresholds[i]), target_fpr=float(fpr),
                        level=float(level), resolvable=bool(1.0 / self.n_neg <= fpr))

    def auc_ci(self, level: float = 0.95) -> AucCI:
        """As :func:`auc_ci`: the placements summed per cluster in the ranking pass."""
        n_pos_c, n_neg_c, sum_v, sum_w = self._per_cluster
        a = self.auc()
        # cluster c's share of the AUC's influence function:
        # sum over its members of (v - a) / n_pos plus over its non-members of (w - a) / n_neg
        contrib = (sum_v - n_pos_c * a) / self.n_pos + (sum_w - n_neg_c * a) / self.n_neg
        used = (n_pos_c + n_neg_c) > 0
        k = int(used.sum())
        var = k / (k - 1) * float((contrib[used] ** 2).sum()) if k > 1 else float("nan")
        se = float(np.sqrt(var))
        z = float(stats.norm.ppf(0.5 + level / 2))
        return AucCI(a, se, (max(0.0, a - z * se), min(1.0, a + z * se)), k, float(level))

    def leakage_test(self, fprs: Any, alpha: float = 0.05, n_tests: int | None = None
                     ) -> list[LeakagePoint]:
        """As :func:`leakage_test`."""
        f_list = _check_leakage_args(fprs, alpha, n_tests)
        n_tests = len(f_list) if n_tests is None else int(n_tests)
        alpha_each = alpha / n_tests
        level = 1.0 - alpha_each / 2
        out = []
        for f in f_list:
            i = self.point(f)
            t, u = self._bounds_at(i, level, "greater")
            deff = max(t.design_effect, u.design_effect)
            out.append(LeakagePoint(
                target_fpr=f, tpr=t.estimate, fpr=u.estimate,
                threshold=float(self.thresholds[i]), tpr_lower=t.ci[0], fpr_upper=u.ci[1],
                leak=bool(t.ci[0] > u.ci[1]),
                min_detectable_tpr=_min_detectable(
                    _upper_at(f, self.n_neg, u.design_effect, u.n_clusters, level),
                    self.n_pos, t.design_effect, t.n_clusters, level),
                alpha_each=alpha_each, design_effect=deff,
                resolvable=bool(1.0 / self.n_neg <= f), n_pos=self.n_pos,
                n_neg=self.n_neg, tp=int(self.tp[i]), fp=int(self.fp[i])))
        return out


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


def tpr_at_fpr(scores: Any, members: Any, fpr: float = 1e-3, level: float = 0.95,
               clusters: Any = None) -> TprAtFpr:
    """TPR at a low FPR, with the achieved FPR, the counts and a confidence interval.

    Parameters
    ----------
    scores, members : array_like
        As in :func:`roc`.
    fpr : float
        The false-positive budget, in (0, 1).
    level : float
        Confidence level of the Clopper–Pearson intervals.
    clusters : array_like of int, optional
        Cluster id of every score (broadcast to the scores' shape). Given, both
        intervals are cluster-robust (:func:`clustered_proportion_ci`): use it for
        leave-one-out scores ``[K, N]`` with ``clusters=np.arange(N)``, where the same
        example is scored once per target and the pairs are not independent trials.

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


@dataclass(frozen=True)
class ClusteredProportion:
    """A proportion measured on clustered trials, with a Korn–Graubard interval.

    Attributes
    ----------
    estimate : float
        ``sum(k) / sum(n)``.
    ci : tuple of float
        The interval (one-sided intervals have 0 or 1 as the other end).
    design_effect : float
        Cluster-robust variance of the estimate over the binomial variance (at least 1;
        1 when it cannot be estimated, e.g. at an estimate of 0 or 1).
    n_effective : float
        ``sum(n) / design_effect``, further reduced by the degrees-of-freedom factor
        ``(z / t_{C-1})^2``: the binomial sample size the interval is computed for.
    n_clusters : int
        Clusters with at least one trial.
    """

    estimate: float
    ci: tuple[float, float]
    design_effect: float
    n_effective: float
    n_clusters: int


def clustered_proportion_ci(k: Any, n: Any, level: float = 0.95,
                            alternative: str = "two-sided") -> ClusteredProportion:
    """Confidence interval of a proportion whose trials come in correlated clusters.

    Pooled over leave-one-out targets, the same example is a trial once per model, so
    the trials are not independent and the binomial (Clopper–Pearson) interval of the
    pooled count is too narrow. Korn and Graubard (1998) keep the exact interval's shape
    and replace the sample size by an effective one: with ``p = sum(k) / sum(n)``, the
    cluster-robust variance of the ratio
    ``v = C / (C - 1) * sum_c (k_c - p n_c)^2 / sum(n)^2`` and the design effect
    ``d = max(1, v / (p (1 - p) / sum(n)))``, the Clopper–Pearson interval is computed
    for ``n* = sum(n) / d * (z / t_{C-1})^2`` trials with ``p n*`` successes (beta
    quantiles accept fractional counts). With every trial its own cluster it is the
    Clopper–Pearson interval of about ``n (C - 1) / C`` trials; where the design effect
    rounds to 1 (no excess variance), exactly the Clopper–Pearson interval.

    Parameters
    ----------
    k, n : array_like [C] of int
        Successes and trials of each cluster.
    level : float
        Confidence level.
    alternative : {"two-sided", "greater", "less"}
        ``"greater"``: a lower bound (the interval is ``[lo, 1]``); ``"less"``: an upper
        bound (``[0, hi]``); ``"two-sided"``: both, each at ``(1 - level) / 2``.

    Returns
    -------
    ClusteredProportion

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> r = mk.metrics.clustered_proportion_ci([3, 0, 1, 0], [10, 10, 10, 10])
    >>> round(r.estimate, 3), r.design_effect > 1, r.ci[0] < r.estimate < r.ci[1]
    (0.1, True, True)
    >>> r = mk.metrics.clustered_proportion_ci(np.ones(50, int), np.ones(50, int) * 2)
    >>> r.design_effect, r.ci == mk.metrics.clopper_pearson(50, 100)
    (1.0, True)
    """
    check_choice(alternative, "alternative", ["two-sided", "greater", "less"])
    check_probability(level, "level")
    kk = np.asarray(k, dtype=np.float64).ravel()
    nn = np.asarray(n, dtype=np.float64).ravel()
    if kk.shape != nn.shape:
        raise ValueError(f"k, n: expected one count of each per cluster, got shapes "
                         f"{np.shape(k)} and {np.shape(n)}")
    if not (np.isfinite(kk).all() and np.isfinite(nn).all()) or (kk < 0).any() \
            or (kk > nn).any():
        raise ValueError("k, n: expected finite counts with 0 <= k <= n in every cluster")
    used = nn > 0
    kk, nn = kk[used], nn[used]
    total, hits, n_clusters = float(nn.sum()), float(kk.sum()), int(used.sum())
    if total <= 0:
        raise ValueError("n: expected at least one trial, got none")
    p = hits / total
    var = n_clusters / (n_clusters - 1) * float(((kk - p * nn) ** 2).sum()) / total ** 2 \
        if n_clusters > 1 else 0.0
    tail = (1.0 - level) / 2 if alternative == "two-sided" else 1.0 - level
    lo_a, hi_a, deff_a, n_eff_a = korn_graubard(np.array([hits]), total, np.array([var]),
                                                n_clusters, tail)
    lo, hi, deff, n_eff = float(lo_a[0]), float(hi_a[0]), float(deff_a[0]), float(n_eff_a[0])
    if alternative == "greater":
        hi = 1.0
    elif alternative == "less":
        lo = 0.0
    return ClusteredProportion(p, (lo, hi), deff, n_eff, n_clusters)


def korn_graubard(hits: np.ndarray, total: float, var: np.ndarray, n_clusters: int,
                  tail: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Korn-Graubard bounds of many proportions ``hits / total`` at once.

    ``var`` is each proportion's cluster-robust variance over ``n_clusters`` clusters;
    each bound leaves ``tail`` outside. Returns (lower, upper, design effect, effective
    sample size), one entry per proportion (:func:`clustered_proportion_ci` for one).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> lo, hi, d, n = mk.metrics.korn_graubard(np.array([30.0]), 100.0, np.array([0.0021]),
    ...                                         100, 0.025)
    >>> round(float(d[0]), 3), bool(lo[0] < 0.3 < hi[0])
    (1.0, True)
    """
    k = np.asarray(hits, dtype=np.float64)
    p = k / total
    inner = (p > 0.0) & (p < 1.0) & (n_clusters > 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        deff = np.where(inner, np.maximum(1.0, np.asarray(var) / (p * (1.0 - p) / total)),
                        1.0)
    n_eff = total / deff
    if n_clusters > 1:
        z = stats.norm.ppf(1.0 - tail)
        t = stats.t.ppf(1.0 - tail, n_clusters - 1)
        n_eff = np.where(deff > 1.0, n_eff * (z / t) ** 2, n_eff)
    x = p * n_eff
    with np.errstate(invalid="ignore"):
        lo = np.where(x <= 0.0, 0.0, stats.beta.ppf(tail, np.maximum(x, 1e-300),
                                                    n_eff - x + 1.0))
        hi = np.where(x >= n_eff, 1.0, stats.beta.ppf(1.0 - tail, x + 1.0,
                                                      np.maximum(n_eff - x, 1e-300)))
    return lo, hi, deff, n_eff


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
        ``auc -/+ z se``, clipped to [0, 1].
    n_clusters : int
        Clusters the variance is computed over (the number of scores without clusters).
    level : float
    """

    auc: float
    se: float
    ci: tuple[float, float]
    n_clusters: int
    level: float


def auc_ci(scores: Any, members: Any, clusters: Any = None, level: float = 0.95) -> AucCI:
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
    clusters : array_like of int, optional
        Cluster id of every score (broadcast to the scores' shape); default: every
        score its own cluster.
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
    >>> naive, clustered = mk.metrics.auc_ci(s, y), mk.metrics.auc_ci(s, y, np.arange(500))
    >>> clustered.se > naive.se, abs(clustered.auc - 0.5) < 3 * clustered.se
    (True, True)
    """
    check_probability(level, "level")
    return RankedScores(scores, members, clusters).auc_ci(level)


@dataclass(frozen=True)
class LeakagePoint:
    """One operating point of :func:`leakage_test`.

    Attributes
    ----------
    target_fpr, tpr, fpr : float
        The FPR budget, the TPR and the FPR achieved at the threshold chosen for it
        (as :func:`tpr_at_fpr`).
    threshold : float
    tpr_lower : float
        One-sided lower confidence bound of the TPR at level ``1 - alpha_each / 2``.
    fpr_upper : float
        One-sided upper confidence bound of the FPR at the same threshold and level.
    leak : bool
        ``tpr_lower > fpr_upper``: members are called members more often than
        non-members, with family-wise confidence ``1 - alpha``.
    min_detectable_tpr : float
        The smallest TPR the test would declare a leak at for an attack that operates
        exactly at the FPR budget, with these counts and design effects:
        ``min_detectable_tpr - target_fpr`` is the smallest TPR excess the audit could
        resolve at that budget (NaN if none could be).
    alpha_each : float
        The error rate spent on this point (``alpha / n_tests``).
    design_effect : float
        The larger of the TPR's and the FPR's design effects (1 without clusters).
    resolvable : bool
        Whether at least one false positive fits the budget (see :class:`TprAtFpr`).
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


def leakage_test(scores: Any, members: Any, fprs: Any = (1e-1, 1e-2, 1e-3), *,
                 clusters: Any = None, alpha: float = 0.05,
                 n_tests: int | None = None) -> list[LeakagePoint]:
    """Is the TPR above the FPR at a low-FPR operating point, with confidence?

    For each FPR budget f the threshold is the one of :func:`tpr_at_fpr`. Without
    membership signal, members and non-members cross any threshold at the same rate,
    so the test declares a leak when the TPR's one-sided lower bound exceeds the FPR's
    one-sided upper bound at that threshold, each at ``alpha_each / 2`` with
    ``alpha_each = alpha / n_tests`` (Bonferroni over every attack and FPR tried; the
    union bound makes the family-wise error at most ``alpha``). The bounds are
    Clopper–Pearson, made cluster-robust by :func:`clustered_proportion_ci` when
    ``clusters`` are given: leave-one-out scores pool every target's view of the same
    example, so cluster them by example.

    Parameters
    ----------
    scores, members : array_like
        As in :func:`roc`.
    fprs : sequence of float
        FPR budgets in (0, 1).
    clusters : array_like of int, optional
        Cluster id of every score (broadcast to the scores' shape).
    alpha : float
        Family-wise error rate.
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


def _check_leakage_args(fprs: Any, alpha: float, n_tests: int | None) -> list[float]:
    check_probability(alpha, "alpha")
    f_list = check_probabilities(fprs, "fprs")
    if n_tests is not None and int(n_tests) < len(f_list):
        raise ValueError(f"n_tests: expected at least len(fprs) = {len(f_list)}, got "
                         f"{n_tests}")
    return f_list


def _effective_n(n: int, deff: float, n_clusters: int, level: float) -> float:
    n_eff = n / deff
    if n_clusters > 1 and deff > 1.0:
        n_eff *= (stats.norm.ppf(level) / stats.t.ppf(level, n_clusters - 1)) ** 2
    return n_eff


def _upper_at(rate: float, n: int, deff: float, n_clusters: int, level: float) -> float:
    """One-sided upper bound (Korn-Graubard) of a proportion measured at exactly ``rate``
    on ``n`` trials with design effect ``deff``."""
    n_eff = _effective_n(n, deff, n_clusters, level)
    x = rate * n_eff
    return 1.0 if x >= n_eff else float(stats.beta.ppf(level, x + 1.0, n_eff - x))


def _min_detectable(bound: float, n_pos: int, deff: float, n_clusters: int,
                    level: float) -> float:
    """Smallest TPR whose one-sided lower bound, for ``n_pos`` trials with design effect
    ``deff``, exceeds ``bound`` (bisection on the monotone lower bound)."""
    n_eff = _effective_n(n_pos, deff, n_clusters, level)

    def lower(p: float) -> float:
        x = p * n_eff
        return 0.0 if x <= 0 else float(stats.beta.ppf(1.0 - level, x, n_eff - x + 1.0))

    if lower(1.0) <= bound:
        return float("nan")
    lo, hi = bound, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if lower(mid) > bound:
            hi = mid
        else:
            lo = mid
    return hi
