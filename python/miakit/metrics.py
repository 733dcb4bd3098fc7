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
           "effective_dof", "unseen_share_floor",
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
    clusters : "auto", None or array_like of int
        Cluster id of every score (broadcast to the scores' shape); ``"auto"`` (default):
        2-D scores ``[K, N]`` (leave-one-out: K targets, N examples) are clustered by
        column, other shapes not at all; None: no clusters (independent scores).

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

    def __init__(self, scores: Any, members: Any, clusters: Any = "auto"):
        shape = np.shape(ar.to_numpy(ar.as_array(scores, "scores")))
        s, y = _prepare(scores, members)
        if _by_column(clusters, shape):  # the cluster of a score is its column
            self._rank(s, y, None, shape[1], False, shape[1])
            self._matrix = (s.reshape(shape), y.reshape(shape))  # for the paired test
            return
        c = check_clusters(None if isinstance(clusters, str) else clusters, shape)
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
        self._matrix = (s, y)  # views, for the paired test (no copy)
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
        self._matrix: tuple[np.ndarray, np.ndarray] | None = None
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

    @property
    def clustered(self) -> bool:
        """Whether the ranking has clusters (its intervals are cluster-robust)."""
        return self._clustered

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
        var_t, var_f, n_clusters, _ = self.cluster_moments(points)
        return var_t, var_f, n_clusters

    def cluster_moments(self, points: Any = None
                        ) -> tuple[np.ndarray, np.ndarray, tuple[int, int],
                                   tuple[np.ndarray, np.ndarray]]:
        """:meth:`cluster_variances` and the degrees of freedom of each variance.

        With ``r_c = k_c - p n_c`` the residual of cluster c, the variance is
        ``C / (C - 1) sum_c r_c^2 / n^2``; its degrees of freedom are
        ``nu - 1`` with ``nu = (sum_c r_c^2)^2 / sum_c r_c^4`` the effective number of
        clusters behind it (Satterthwaite: ``nu`` = m when m clusters carry equal
        residuals and the rest none), clipped to ``[1, C - 1]``. At a low FPR only a few
        clusters hold the false positives (or the members above the threshold), and an
        interval with ``C - 1`` degrees of freedom would take the variance of those few
        for a precise one (docs/methods/metrics.md, "Intervals")."""
        if points is None and self._var is not None:
            return self._var
        sel = (np.arange(self.tp.size) if points is None
               else np.asarray(points, dtype=np.int64).ravel())
        n_pos_c, n_neg_c = self._per_cluster[:2]
        # the walk's running sums at the points, in ascending order of position
        pos = self.tp[sel] + self.fp[sel]
        by = np.argsort(pos, kind="stable")
        sums = np.empty((12, sel.size))
        _C.rank_cluster_sums(self._order, np.ascontiguousarray(pos[by]), n_pos_c, n_neg_c,
                             sums)
        unsorted = np.empty_like(sums)
        unsorted[:, by] = sums
        out = []
        for k, side, n_c in ((self.tp, unsorted[:6], n_pos_c), (self.fp, unsorted[6:], n_neg_c)):
            s2, skn, k4, k3n, k2n2, kn3 = side
            # sum_c (k_c - p n_c)^2 = sum_c k_c^2 - 2 p sum_c k_c n_c + p^2 sum_c n_c^2,
            # with k_c the class's elements of cluster c at or above the point; the fourth
            # power likewise, expanded binomially
            nf = n_c.astype(np.float64)
            total = float(nf.sum())
            sq, n4 = float((nf ** 2).sum()), float((nf ** 4).sum())
            used = int(np.count_nonzero(n_c))  # clusters with trials of this class
            p = k[sel] / total
            ssq = np.maximum(s2 - 2.0 * p * skn + p * p * sq, 0.0)
            s4 = np.maximum(k4 - p * (4.0 * k3n - p * (6.0 * k2n2 - p * (4.0 * kn3 - p * n4))),
                            0.0)
            var = (used / (used - 1) * ssq / total ** 2 if used > 1
                   else np.zeros_like(ssq))
            out.append((var, used, effective_dof(ssq, s4, used)))
        res = (out[0][0], out[1][0], (out[0][1], out[1][1]), (out[0][2], out[1][2]))
        if points is None:
            self._var = res
        return res

    def _bounds_at(self, i: int, level: float, alternative: str
                   ) -> tuple[ClusteredProportion, ClusteredProportion]:
        """(TPR, FPR) of point i as clustered proportions with their intervals."""
        var_t, var_f, (c_t, c_f), (df_t, df_f) = self.cluster_moments([i])
        tail = (1.0 - level) / 2 if alternative == "two-sided" else 1.0 - level
        res = []
        for k, n, var, nc, df, alt in (
                (self.tp[i], self.n_pos, var_t[0], c_t, df_t[0], alternative),
                (self.fp[i], self.n_neg, var_f[0], c_f, df_f[0],
                 {"greater": "less"}.get(alternative, alternative))):
            res.append(_clustered_bounds(float(k), float(n), var, nc, df, tail, alt))
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
        why = self._unresolvable(i, fpr)
        return TprAtFpr(tpr=tp / self.n_pos, fpr=fp / self.n_neg, ci=ci, fpr_ci=fpr_ci,
                        design_effect=deff, n_pos=self.n_pos, n_neg=self.n_neg, tp=tp,
                        fp=fp, threshold=float(self.thresholds[i]), target_fpr=float(fpr),
                        level=float(level), resolvable=not why, unresolvable_reason=why)

    def _unresolvable(self, i: int, fpr: float) -> str:
        """Why point i cannot measure a TPR at the budget ``fpr`` ("" when it can)."""
        if 1.0 / self.n_neg > fpr:
            return (f"fewer non-members ({self.n_neg:,}) than 1/FPR ({1.0 / fpr:,.0f}): not "
                    "one false positive fits the budget")
        if i == 0 and self.fp.size > 1 and self.fp[1] / self.n_neg > fpr:
            return (f"the highest score is shared by {self.fp[1]:,} non-members "
                    f"({100.0 * self.fp[1] / self.n_neg:.2g}%, more than the FPR): the score "
                    "cannot call anything at this budget")
        return ""

    def auc_ci(self, level: float = 0.95) -> AucCI:
        """As :func:`auc_ci`: the placements summed per cluster in the ranking pass."""
        n_pos_c, n_neg_c, sum_v, sum_w = self._per_cluster
        a = self.auc()
        # cluster c's share of the AUC's influence function:
        # sum over its members of (v - a) / n_pos plus over its non-members of (w - a) / n_neg
        contrib = (sum_v - n_pos_c * a) / self.n_pos + (sum_w - n_neg_c * a) / self.n_neg
        used = (n_pos_c + n_neg_c) > 0
        k = int(used.sum())
        u = contrib[used]
        var = k / (k - 1) * float((u ** 2).sum()) if k > 1 else float("nan")
        se = float(np.sqrt(var))
        # Student's t with the effective number of clusters behind the variance, less one:
        # a handful of strongly leaking examples can carry all of it
        dof = float(effective_dof(float((u ** 2).sum()), float((u ** 4).sum()), k))
        q = float(stats.t.ppf(0.5 + level / 2, dof)) if k > 1 else float("nan")
        return AucCI(a, se, (max(0.0, a - q * se), min(1.0, a + q * se)), k, float(level),
                     dof)

    def leakage_test(self, fprs: Any, alpha: float = 0.05, n_tests: int | None = None
                     ) -> list[LeakagePoint]:
        """As :func:`leakage_test`."""
        f_list = _check_leakage_args(fprs, alpha, n_tests)
        n_tests = len(f_list) if n_tests is None else int(n_tests)
        alpha_each = alpha / n_tests
        level = 1.0 - alpha_each / 2
        out = []
        for f in f_list:
            i = self._share_point(f)
            tp, fp = int(self.tp[i]), int(self.fp[i])
            test = self._membership_test(i)
            p_value = test.p_value(tp) if i > 0 else 1.0
            min_tp = test.min_detectable(alpha_each) if i > 0 else float("nan")
            t, u = self._bounds_at(i, level, "greater")
            out.append(LeakagePoint(
                target_fpr=f, tpr=t.estimate, fpr=u.estimate,
                threshold=float(self.thresholds[i]), tpr_lower=t.ci[0], fpr_upper=u.ci[1],
                leak=bool(p_value <= alpha_each),
                min_detectable_tpr=min_tp / self.n_pos,
                alpha_each=alpha_each, design_effect=max(t.design_effect, u.design_effect),
                resolvable=bool(1.0 / self.n_neg <= f and i > 0), n_pos=self.n_pos,
                n_neg=self.n_neg, tp=tp, fp=fp, p_value=float(p_value), test=test.name))
        return out

    def _share_point(self, f: float) -> int:
        """The last point that calls at most a share ``f`` of all scores members: a
        threshold chosen without looking at membership (the test's conditioning)."""
        # binary search on tp + fp (non-decreasing), without forming the sum of every point
        tp, fp = self.tp, self.fp
        budget = int(np.floor(f * (int(tp[-1]) + int(fp[-1])) + 1e-9))
        lo, hi = 0, tp.size - 1  # the answer lies in [lo, hi]; point 0 calls nothing
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(tp[mid]) + int(fp[mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _membership_test(self, i: int) -> _MembershipTest:
        """The null distribution of the members among the scores called at point i."""
        called = int(self.tp[i] + self.fp[i])
        if self._matrix is not None and self.excluded == 0:
            s, y = self._matrix
            from miakit.shadow.keep import is_paired  # a leaf module: no import cycle

            if is_paired(y):  # models 2j, 2j + 1 train on complementary halves
                above = s >= self.thresholds[i]
                pairs = above.reshape(s.shape[0] // 2, 2, s.shape[1])
                both = int(np.count_nonzero(pairs[:, 0] & pairs[:, 1]))
                one = int(np.count_nonzero(pairs[:, 0] ^ pairs[:, 1]))
                return _MembershipTest("paired sign test", "binom", (one, 0.5), both)
        if not self._clustered:
            n = self.n_pos + self.n_neg
            return _MembershipTest("Fisher's exact test", "hypergeom",
                                   (n, self.n_pos, called), 0)
        # one stratum per cluster: the members among its called scores are hypergeometric
        n_pos_c, n_neg_c = self._per_cluster[:2]
        pl = self._order[:called]
        cl = (pl.view(np.uint32) & np.uint32(0x7FFFFFFF)).astype(np.int64)
        a = np.bincount(cl, minlength=n_pos_c.size).astype(np.float64)
        n_c = (n_pos_c + n_neg_c).astype(np.float64)
        share = np.divide(n_pos_c, n_c, out=np.zeros_like(n_c), where=n_c > 0)
        mean = float((a * share).sum())
        var = float((a * share * (1.0 - share) * (n_c - a)
                     / np.maximum(n_c - 1.0, 1.0)).sum())
        return _MembershipTest("stratified test (Mantel-Haenszel)", "normal",
                               (mean, np.sqrt(var)), 0)

def _by_column(clusters: Any, shape: tuple[int, ...]) -> bool:
    """Whether ``clusters`` asks for one cluster per column: ``"auto"`` on 2-D scores."""
    if isinstance(clusters, str):
        check_choice(clusters, "clusters", ["auto"])
        return len(shape) == 2
    return False


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
        ``(z / t_dof)^2``: the binomial sample size the interval is computed for.
    n_clusters : int
        Clusters with at least one trial.
    dof : float
        Degrees of freedom of the variance: the effective number of clusters carrying it,
        less one (:meth:`RankedScores.cluster_moments`).
    """

    estimate: float
    ci: tuple[float, float]
    design_effect: float
    n_effective: float
    n_clusters: int
    dof: float = float("nan")


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
    for ``n* = sum(n) / d * (z / t_dof)^2`` trials with ``p n*`` successes (beta
    quantiles accept fractional counts). The degrees of freedom are those of the
    variance: ``dof = nu - 1`` with ``nu = (sum_c r_c^2)^2 / sum_c r_c^4`` the effective
    number of clusters carrying the residuals ``r_c = k_c - p n_c`` (Satterthwaite),
    clipped to ``[1, C - 1]``: when a handful of clusters hold all the successes, the
    interval is as wide as a handful of clusters allows, however many there are. With
    every trial its own cluster it is the Clopper–Pearson interval of about
    ``n (C - 1) / C`` trials; where the design effect rounds to 1 (no excess variance),
    exactly the Clopper–Pearson interval.

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
    resid = kk - p * nn
    var = n_clusters / (n_clusters - 1) * float((resid ** 2).sum()) / total ** 2 \
        if n_clusters > 1 else 0.0
    dof = effective_dof(float((resid ** 2).sum()), float((resid ** 4).sum()), n_clusters)
    tail = (1.0 - level) / 2 if alternative == "two-sided" else 1.0 - level
    return _clustered_bounds(hits, total, var, n_clusters, float(dof), tail, alternative)


def _clustered_bounds(hits: float, total: float, var: float, n_clusters: int, dof: float,
                      tail: float, alternative: str) -> ClusteredProportion:
    """One clustered proportion: Korn-Graubard's bounds, the bound towards 1/2 widened by
    the unseen share, and the open side of a one-sided interval set to 0 or 1."""
    lo, hi, deff, n_eff = korn_graubard(np.array([hits]), total, np.array([var]),
                                        n_clusters, tail, dof=dof)
    p = hits / total
    lo_, hi_ = unseen_share_floor(p, float(lo[0]), float(hi[0]), tail, n_clusters)
    if alternative == "greater":
        hi_ = 1.0
    elif alternative == "less":
        lo_ = 0.0
    return ClusteredProportion(p, (lo_, hi_), float(deff[0]), float(n_eff[0]), n_clusters,
                               float(dof))


def unseen_share_floor(p: float, lo: float, hi: float, tail: float,
                       n_clusters: int) -> tuple[float, float]:
    """Widen a clustered proportion's bound towards 1/2 by the share of clusters a sample
    of ``n_clusters`` can miss: with probability ``1 - tail``, no share larger than
    ``u = 1 - tail^(1 / n_clusters)`` (the Clopper–Pearson bound of 0 in
    ``n_clusters``) went unseen, and an unseen share could be called at every score
    (a few strongly leaking examples that the sample happens to hold none of). The
    upper bound of ``p <= 1/2`` is at least ``p + u``, the lower bound of ``p > 1/2`` at
    most ``p - u``.

    Examples
    --------
    >>> import miakit as mk
    >>> lo, hi = mk.metrics.unseen_share_floor(0.001, 0.0005, 0.002, 0.025, 300)
    >>> lo, round(hi, 4)   # 300 examples can miss 1.2% of the population
    (0.0005, 0.0132)
    """
    if n_clusters < 1:
        return lo, hi
    u = float(-np.expm1(np.log(tail) / n_clusters))
    if p <= 0.5:
        return lo, max(hi, min(1.0, p + u))
    return min(lo, max(0.0, p - u)), hi


def effective_dof(sum_sq: Any, sum_4th: Any, n_clusters: int) -> Any:
    """Degrees of freedom of a cluster-robust variance ``sum_c r_c^2``: ``nu - 1`` with
    ``nu = (sum_c r_c^2)^2 / sum_c r_c^4``, the effective number of clusters carrying it
    (Satterthwaite), clipped to ``[1, C - 1]`` (``C - 1`` where no residual is non-zero).

    Examples
    --------
    >>> import miakit as mk
    >>> float(mk.metrics.effective_dof(4.0, 4.0, 100))   # four clusters of residual 1
    3.0
    >>> float(mk.metrics.effective_dof(100.0, 100.0, 100))  # every cluster alike
    99.0
    """
    top = max(n_clusters - 1, 1)
    s2 = np.asarray(sum_sq, dtype=np.float64)
    s4 = np.asarray(sum_4th, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(s4 > 0.0, s2 * s2 / s4, float(n_clusters))
    return np.clip(nu - 1.0, 1.0, top)


def korn_graubard(hits: np.ndarray, total: float, var: np.ndarray, n_clusters: int,
                  tail: float, dof: Any = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Korn-Graubard bounds of many proportions ``hits / total`` at once.

    ``var`` is each proportion's cluster-robust variance over ``n_clusters`` clusters;
    each bound leaves ``tail`` outside. ``dof`` (one per proportion, or one for all) are
    the variance's effective degrees of freedom (:func:`effective_dof`): they set the
    bound towards 1/2 (the upper bound of a proportion up to 1/2, the lower bound of one
    above it), the other bound keeps ``n_clusters - 1``. A proportion carried by a few
    clusters is a right-skewed sum (left-skewed above 1/2): its variance is
    underestimated exactly when it comes out low, so the bound on the far side needs
    the few clusters' degrees of freedom, while the near side is already held by the
    exact interval's shape. Without ``dof`` both bounds use ``n_clusters - 1``. Returns
    (lower, upper, design effect, effective sample size: the smaller of the two
    bounds'), one entry per proportion (:func:`clustered_proportion_ci` for one).

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
    n_lo = n_hi = n_eff
    if n_clusters > 1:
        z = stats.norm.ppf(1.0 - tail)
        excess = deff > 1.0
        # the bound towards 1/2 (the upper one of a proportion below 1/2) with the
        # effective degrees of freedom, the other with C - 1 (see the docstring)
        n_all = np.where(excess, n_eff * (z / stats.t.ppf(1.0 - tail, n_clusters - 1)) ** 2,
                         n_eff)
        if dof is None:
            n_lo = n_hi = n_all
        else:
            df = np.clip(np.asarray(dof, dtype=np.float64), 1.0, n_clusters - 1)
            n_few = np.where(excess, n_eff * (z / stats.t.ppf(1.0 - tail, df)) ** 2, n_eff)
            n_lo = np.where(p > 0.5, n_few, n_all)
            n_hi = np.where(p > 0.5, n_all, n_few)
        n_eff = np.minimum(n_lo, n_hi)
    x_lo, x_hi = p * n_lo, p * n_hi
    with np.errstate(invalid="ignore"):
        lo = np.where(x_lo <= 0.0, 0.0, stats.beta.ppf(tail, np.maximum(x_lo, 1e-300),
                                                       n_lo - x_lo + 1.0))
        hi = np.where(x_hi >= n_hi, 1.0, stats.beta.ppf(1.0 - tail, x_hi + 1.0,
                                                        np.maximum(n_hi - x_hi, 1e-300)))
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
