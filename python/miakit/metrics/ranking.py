"""One attack's scores sorted once, every ROC quantity read from that order.

:class:`RankedScores` ranks the scores in one compiled pass and derives from it the ROC,
the AUC and its clustered standard error, every TPR at FPR with its (clustered)
interval and the leakage test; :class:`RankWorkspace` lets a series of rankings share
their buffers. The intervals themselves are in :mod:`miakit.metrics.intervals`, the
records it returns in :mod:`miakit.metrics.records` and
:mod:`miakit.metrics.membership_test`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from miakit import _C
from miakit import _arrays as ar
from miakit._status import message, raise_for_status
from miakit._validation import (
    check_bool_array,
    check_choice,
    check_clusters,
    check_int,
    check_int_array,
    check_probability,
    check_real_array,
)
from miakit.metrics.intervals import (
    ClusteredProportion,
    _clustered_bounds,
    clopper_pearson,
    effective_dof,
)
from miakit.metrics.membership_test import LeakagePoint, _check_leakage_args, _MembershipTest
from miakit.metrics.records import AucCI, TprAtFpr

__all__ = ["RankedScores", "RankWorkspace"]


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
        # the order buffer holds int32 positions: no more scores than int32 can index
        n = check_int(n, "n", 0, np.iinfo(np.int32).max)
        out = {}
        for name, dtype, extra in self._LAYOUT:
            buf = self._store.get(name)
            if buf is None or buf.size < n + extra:
                try:
                    buf = self._store[name] = np.empty(n + extra, dtype=dtype)
                except MemoryError:
                    raise MemoryError(f"n: no memory for the buffers of {n} scores") from None
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

    # the [rows, columns] scores and members of a column-clustered ranking, for the
    # paired test; None otherwise
    _matrix: tuple[np.ndarray, np.ndarray] | None

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
        s = np.ascontiguousarray(check_real_array(scores, "scores"))
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
        self._matrix = None
        # One compiled pass (radix sort + walk, see docs/methods/metrics.md): per ROC point
        # the threshold and counts; per cluster the counts and AUC placement sums; and the
        # ranked order, from which the cluster sums behind a point's variance are read
        # for the few points the metrics use (cluster_variances).
        w = (workspace or RankWorkspace()).buffers(n)
        thr, tp, fp, order = w["thr"], w["tp"], w["fp"], w["order"]
        per_cluster: list[np.ndarray] = [np.empty(n_clusters, dtype=np.int64)
                                         for _ in range(2)]
        per_cluster += [np.empty(n_clusters) for _ in range(2)]
        st = _C.rank_scores(np.ascontiguousarray(s), y.view(np.uint8), c, period,
                            skip_nonfinite, thr, tp, fp, order, *per_cluster)
        raise_for_status(st, {"nonfinite": message("nonfinite", "scores")})
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
        """Index of the operating point of :func:`tpr_at_fpr` for the budget ``fpr``
        (a number in (0, 1); ``ValueError``/``TypeError`` naming ``fpr`` otherwise)."""
        fpr = check_probability(fpr, "fpr")
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
        sel = np.arange(self.tp.size) if points is None else self._check_points(points)
        n_pos_c, n_neg_c = self._per_cluster[:2]
        # the walk's running sums at the points, in ascending order of position
        pos = self.tp[sel] + self.fp[sel]
        by = np.argsort(pos, kind="stable")
        sums = np.zeros((12, sel.size))
        if sel.size:  # (the kernel takes no empty array)
            _C.rank_cluster_sums(self._order, np.ascontiguousarray(pos[by]), n_pos_c,
                                 n_neg_c, sums)
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

    def _check_points(self, points: Any) -> np.ndarray:
        """Indices of ROC points (integers in ``[0, len(tp))``, any shape) as a flat
        int64 array."""
        sel = np.asarray(ar.to_numpy(check_int_array(points, "points"))).ravel()
        if sel.size and (sel.min() < 0 or sel.max() >= self.tp.size):
            raise ValueError(f"points: expected indices of ROC points in [0, {self.tp.size}), "
                             f"got {int(sel.min())}..{int(sel.max())}")
        return sel.astype(np.int64)

    def _bounds_at(self, i: int, tail: float, alternative: str
                   ) -> tuple[ClusteredProportion, ClusteredProportion]:
        """(TPR, FPR) of point i as clustered proportions with their intervals, each bound
        leaving ``tail`` outside (given as such: a level ``1 - tail`` would round tails
        below 1e-16 away)."""
        var_t, var_f, (c_t, c_f), (df_t, df_f) = self.cluster_moments([i])
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
        fpr = check_probability(fpr, "fpr")
        level = check_probability(level, "level")
        i = self.point(fpr)
        tp, fp = int(self.tp[i]), int(self.fp[i])
        if not self._clustered:
            ci = clopper_pearson(tp, self.n_pos, level)
            fpr_ci = clopper_pearson(fp, self.n_neg, level)
            deff = (1.0, 1.0)
        else:
            t, u = self._bounds_at(i, (1.0 - level) / 2, "two-sided")
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
        level = check_probability(level, "level")
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
        n_tests = len(f_list) if n_tests is None else n_tests
        alpha_each = alpha / n_tests
        out = []
        for f in f_list:
            i = self._share_point(f)
            tp, fp = int(self.tp[i]), int(self.fp[i])
            test = self._membership_test(i)
            p_value = test.p_value(tp) if i > 0 else 1.0
            min_tp = test.min_detectable(alpha_each) if i > 0 else float("nan")
            t, u = self._bounds_at(i, alpha_each / 2, "greater")
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
