"""Confidence intervals of proportions: independent trials and clustered ones.

The binomial interval (Clopper-Pearson) and its clustered counterpart (Korn-Graubard,
with the effective degrees of freedom of a cluster-robust variance and the floor for a
share of clusters the sample can miss; docs/methods/metrics.md, "Intervals"). They
depend on counts and variances only, not on scores: the ranking
(:mod:`miakit.metrics.ranking`) computes those and calls these; the privacy bounds use
:func:`korn_graubard` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from miakit._validation import (
    check_choice,
    check_int,
    check_probability,
    check_real,
    check_real_array,
)

__all__ = ["clopper_pearson", "clustered_proportion_ci", "ClusteredProportion",
           "korn_graubard", "effective_dof", "unseen_share_floor"]


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided confidence interval of a binomial proportion.

    Examples
    --------
    >>> import miakit as mk
    >>> lo, hi = mk.metrics.clopper_pearson(0, 10)
    >>> lo, round(hi, 4)
    (0.0, 0.3085)
    """
    n = check_int(n, "n", 1, what="a positive count")
    k = check_int(k, "k", 0, n, what=f"a count in [0, n = {n}]")
    tail = (1.0 - check_probability(level, "level")) / 2
    # float counts: scipy's beta takes no int beyond int64 (n = 2**70 is a valid count)
    lo = 0.0 if k == 0 else float(stats.beta.ppf(tail, float(k), float(n - k + 1)))
    hi = 1.0 if k == n else float(stats.beta.isf(tail, float(k + 1), float(n - k)))
    return lo, hi


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
    level = check_probability(level, "level")
    kk = _check_counts(k, "k")
    nn = _check_counts(n, "n")
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
    # a level below 1e-16 would round a one-sided tail to 1: keep it inside (0, 1)
    tail = min(tail, float(np.nextafter(1.0, 0.0)))
    return _clustered_bounds(hits, total, var, n_clusters, float(dof), tail, alternative)


def _check_counts(counts: Any, name: str) -> np.ndarray:
    """Counts of every cluster (whole, non-negative, finite numbers) as a flat float64
    array; the error names the argument."""
    c = check_real_array(counts, name).ravel()
    if not np.isfinite(c).all() or (c < 0).any() or (c != np.floor(c)).any():
        raise ValueError(f"{name}: expected finite non-negative whole counts, got "
                         f"{np.asarray(counts)!r}")
    return c


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
    p = check_real(p, "p", 0.0, 1.0)
    lo = check_real(lo, "lo", 0.0, 1.0)
    hi = check_real(hi, "hi", 0.0, 1.0)
    tail = check_real(tail, "tail", 0.0, 1.0, open_hi=True)
    n_clusters = check_int(n_clusters, "n_clusters", 1)
    # a tail that underflowed to 0 misses nothing: every share could have gone unseen
    u = float(-np.expm1(np.log(tail) / n_clusters)) if tail > 0.0 else 1.0
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
    n_clusters = check_int(n_clusters, "n_clusters", 1)
    top = max(n_clusters - 1, 1)
    s2, s4 = (_check_sums(v, name) for v, name in ((sum_sq, "sum_sq"), (sum_4th, "sum_4th")))
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(s4 > 0.0, s2 * s2 / s4, float(n_clusters))
    return np.clip(nu - 1.0, 1.0, top)


def _check_sums(sums: Any, name: str) -> np.ndarray:
    """Sums of squares or of fourth powers: finite, non-negative numbers (any shape)."""
    v = check_real_array(sums, name)
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name}: expected finite non-negative sums, got {sums!r}")
    return v


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
    total = check_real(total, "total", 0.0, open_lo=True)
    n_clusters = check_int(n_clusters, "n_clusters", 1)
    tail = check_real(tail, "tail", 0.0, 1.0, open_hi=True)
    k = check_real_array(hits, "hits")
    if not np.isfinite(k).all() or (k < 0).any() or (k > total).any():
        raise ValueError(f"hits: expected counts in [0, total = {total}], got {hits!r}")
    var = check_real_array(var, "var")
    if not np.isfinite(var).all() or (var < 0).any():
        raise ValueError(f"var: expected finite non-negative variances, got {var!r}")
    if var.ndim and var.shape != k.shape:
        raise ValueError(f"var: expected one variance per proportion (the shape of hits, "
                         f"{k.shape}), got shape {var.shape}")
    p = k / total
    inner = (p > 0.0) & (p < 1.0) & (n_clusters > 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        deff = np.where(inner, np.maximum(1.0, var / (p * (1.0 - p) / total)), 1.0)
    n_eff = total / deff
    n_lo = n_hi = n_eff
    if n_clusters > 1 and tail > 0.0:
        # upper quantiles from the upper tail itself (isf): 1 - tail would round to 1 for
        # a tail below 1e-16, and z / t to inf / inf
        excess = deff > 1.0
        # the bound towards 1/2 (the upper one of a proportion below 1/2) with the
        # effective degrees of freedom, the other with C - 1 (see the docstring)
        n_all = np.where(excess, n_eff * _z_over_t(tail, float(n_clusters - 1)) ** 2, n_eff)
        if dof is None:
            n_lo = n_hi = n_all
        else:
            df = np.clip(np.asarray(dof, dtype=np.float64), 1.0, float(n_clusters - 1))
            n_few = np.where(excess, n_eff * _z_over_t(tail, df) ** 2, n_eff)
            n_lo = np.where(p > 0.5, n_few, n_all)
            n_hi = np.where(p > 0.5, n_all, n_few)
        n_eff = np.minimum(n_lo, n_hi)
    x_lo, x_hi = p * n_lo, p * n_hi
    with np.errstate(invalid="ignore"):
        lo = np.where(x_lo <= 0.0, 0.0, stats.beta.ppf(tail, np.maximum(x_lo, 1e-300),
                                                       n_lo - x_lo + 1.0))
        hi = np.where(x_hi >= n_hi, 1.0, stats.beta.isf(tail, x_hi + 1.0,
                                                        np.maximum(n_hi - x_hi, 1e-300)))
    if tail <= 0.0:  # no error allowed at all (a tail that underflowed): nothing excluded
        lo, hi = np.zeros_like(p), np.ones_like(p)
    return lo, hi, deff, n_eff


def _z_over_t(tail: float, df: Any) -> np.ndarray:
    """The normal quantile over Student's t quantile, both with upper tail ``tail``.

    At a tail of 1/2 both quantiles are 0; the ratio's limit there is the ratio of the
    densities at 0, ``f_t(0) / phi(0)``.
    """
    z = stats.norm.isf(tail)
    t = _t_isf(tail, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = z / t
    at_half = t == 0.0
    if np.any(at_half):
        ratio = np.where(at_half, stats.t.pdf(0.0, df) / stats.norm.pdf(0.0), ratio)
    return ratio


def _t_isf(tail: float, df: Any) -> np.ndarray:
    """Student's t quantile with upper tail ``tail`` (< 1/2) and ``df`` degrees of freedom.

    scipy's ``t.isf`` returns -inf for tails below about 1e-300 at a few degrees of
    freedom; there the quantile comes from ``P(T > x) = I_w(df / 2, 1 / 2) / 2`` with
    ``w = df / (df + x^2)`` (the regularized incomplete beta), which is +inf only where
    the quantile itself is beyond float64 (one degree of freedom and a tail below 1e-300,
    say).
    """
    x = np.asarray(stats.t.isf(tail, df), dtype=np.float64)
    # (a tail of 1/2 or more has a quantile of 0 or below: no underflow to repair there)
    bad = ~np.isfinite(x) | ((x <= 0.0) & (tail < 0.5))
    if bad.any():
        df_b = np.broadcast_to(np.asarray(df, dtype=np.float64), x.shape)
        w = special.betaincinv(df_b / 2.0, 0.5, 2.0 * tail)
        with np.errstate(divide="ignore"):
            x = np.where(bad, np.sqrt(df_b * (1.0 / w - 1.0)), x)
    return x
