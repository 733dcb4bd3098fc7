"""Pins of the formulas behind mk.bounds' audit bounds (docs/methods/bounds.md,
SCIENCE.md section 10): each test compares a value with the formula written out here, on
data chosen so that a plausible one-line slip in the formula changes the value (and one
checks an invariance that holds whatever the degrees-of-freedom rule of the clustered
bounds: each side's bound ignores the other side's clusters).

The references below use scipy only (Clopper-Pearson from ``scipy.stats.beta``, the
Korn-Graubard bound from ``scipy.stats.norm``/``t``/``beta``) and brute-force loops over
thresholds; nothing here reuses miakit's own bound helpers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import references as ref
from scipy import special, stats

import miakit as mk

# --------------------------------------------------------------------------- references


def _cp_lower(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson lower bound of k / n, error alpha."""
    return 0.0 if k == 0 else float(stats.beta.ppf(alpha, k, n - k + 1))


def _cp_upper(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper bound of k / n, error alpha."""
    return 1.0 if k == n else float(stats.beta.ppf(1 - alpha, k + 1, n - k))


def _eps_sides(t_lo: float, f_hi: float, delta: float) -> tuple[float, float]:
    """(ln((TPR_lo - delta) / FPR_hi), ln((1 - FPR_hi - delta) / (1 - TPR_lo))), -inf where
    a side proves nothing."""
    e_tpr = (math.log((t_lo - delta) / f_hi) if t_lo - delta > 0 and f_hi > 0
             else -math.inf)
    e_fnr = (math.log((1 - f_hi - delta) / (1 - t_lo)) if 1 - f_hi - delta > 0 and t_lo < 1
             else -math.inf)
    return e_tpr, e_fnr


def _counts(s: np.ndarray, y: np.ndarray, thresholds) -> list[tuple[int, int]]:
    """(tp, fp) of the rule "member if score >= t" for every t, by brute force."""
    return [(int((s[y] >= t).sum()), int((s[~y] >= t).sum())) for t in thresholds]


def _brute_epsilon(s, y, thresholds, delta, level=0.95, sides=("tpr", "fnr")):
    """Empirical epsilon over the given thresholds: Bonferroni over all of them, each
    threshold's TPR from below and FPR from above at (1 - level) / (2 T), both sides of
    the bound at every threshold (or only those in ``sides``). Returns (epsilon, side of
    the best, tpr_lo, fpr_hi at the best)."""
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    alpha = (1 - level) / (2 * len(thresholds))
    tp, fp = np.array(_counts(s, y, thresholds)).T
    with np.errstate(divide="ignore", invalid="ignore"):  # the masked-out ends
        t_lo = np.where(tp == 0, 0.0, stats.beta.ppf(alpha, tp, n_pos - tp + 1))
        f_hi = np.where(fp == n_neg, 1.0, stats.beta.ppf(1 - alpha, fp + 1, n_neg - fp))
    best = (0.0, None, None, None)
    for lo, hi in zip(t_lo, f_hi):
        for side, e in zip(("tpr", "fnr"), _eps_sides(lo, hi, delta)):
            if side in sides and e > best[0]:
                best = (e, side, float(lo), float(hi))
    return best


# --------------------------------------------------------------------------- gdp_mu


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_gdp_mu_lower_is_bonferroni_corrected_over_the_roc_points(level, rng):
    """Guards against: gdp_mu's ``mu_lower`` taking each Clopper-Pearson bound at
    ``(1 - level) / 2`` instead of ``(1 - level) / (2 T)`` (no Bonferroni division by the
    T operating points searched), which overstates the mu an attack proves."""
    y = rng.random(600) < 0.5
    s = np.round(rng.normal(size=600) + 1.5 * y, 2)  # ties: fewer points than scores
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    # every operating point "score >= t" strictly inside the unit square
    inner = [(tp, fp) for tp, fp in _counts(s, y, np.unique(s))
             if 0 < tp < n_pos and 0 < fp < n_neg]
    big_t = len(inner)
    assert big_t > 50

    def mu_lower(alpha: float) -> float:
        return max(0.0, max(special.ndtri(_cp_lower(tp, n_pos, alpha))
                            - special.ndtri(_cp_upper(fp, n_neg, alpha))
                            for tp, fp in inner))

    want = mu_lower((1 - level) / (2 * big_t))
    g = mk.bounds.gdp_mu(s, y, level)
    assert g.level == level
    assert g.mu_lower == pytest.approx(want, rel=1e-9, abs=1e-12)
    # the point estimate: the largest probit gap of the measured rates
    mu = max(special.ndtri(tp / n_pos) - special.ndtri(fp / n_neg) for tp, fp in inner)
    assert g.mu == pytest.approx(mu, rel=1e-12)
    # the data make the correction matter: without it the bound is visibly larger
    assert mu_lower((1 - level) / 2) > want + 0.05
    assert 0 < g.mu_lower < g.mu


# ------------------------------------------------------------ clustered empirical epsilon


def _kg_bound(k_c: np.ndarray, n_c: np.ndarray, tail: float, upper: bool,
              var: float | None = None, n_clusters: int | None = None) -> float:
    """Korn-Graubard one-sided bound of sum(k_c) / sum(n_c), written out: the cluster-
    robust variance over the C clusters holding trials, design effect
    ``max(1, var / (p (1 - p) / n))``, effective size ``n / deff`` times
    ``(z / t_{C-1})^2`` when deff > 1, then Clopper-Pearson with fractional counts.

    ``var`` and ``n_clusters`` override this side's own values: only to show that the
    test data would notice the other side's being used."""
    used = n_c > 0
    k_c, n_c = k_c[used].astype(float), n_c[used].astype(float)
    c = int(used.sum()) if n_clusters is None else n_clusters
    n = n_c.sum()
    p = k_c.sum() / n
    if var is None:
        var = c / (c - 1) * np.sum((k_c - p * n_c) ** 2) / n ** 2
    deff = max(1.0, var / (p * (1 - p) / n)) if (c > 1 and 0 < p < 1) else 1.0
    n_eff = n / deff
    if c > 1 and deff > 1:
        n_eff *= (stats.norm.isf(tail) / stats.t.isf(tail, c - 1)) ** 2
    x = p * n_eff
    if upper:
        return 1.0 if x >= n_eff else float(stats.beta.isf(tail, x + 1, n_eff - x))
    return 0.0 if x <= 0 else float(stats.beta.ppf(tail, x, n_eff - x + 1))


def _designed_clusters(mirror: bool):
    """Scores of 60 clusters (examples) and one threshold (0): every cluster holds 8
    non-members, the first 12 also 4 members. Above the threshold: members 4 or 2 of 4
    (6 clusters each: TPR = 3/4), non-members 0 or 4 of 8 (30 clusters each: FPR = 1/4).
    ``mirror`` swaps the roles (scores negated, members and non-members exchanged): 60
    member clusters, 12 non-member ones, TPR 3/4 and FPR 1/4 again.

    The residuals ``k_c - p n_c`` are +-1 in the 4-clusters and +-2 in the 8-clusters:
    both rates are over-dispersed (design effect > 1), and a variance carried equally by
    all C clusters has C - 1 degrees of freedom by any rule (C - 1, or Satterthwaite's
    ``(sum r^2)^2 / sum r^4 - 1``), so the bounds do not depend on that choice."""
    s, y, c = [], [], []
    for cl in range(60):
        if cl < 12:
            above = 4 if cl % 2 else 2
            s += [1.0] * above + [-1.0] * (4 - above)
            y += [True] * 4
            c += [cl] * 4
        above = 0 if cl % 2 else 4
        s += [1.0] * above + [-1.0] * (8 - above)
        y += [False] * 8
        c += [cl] * 8
    s, y, c = np.array(s), np.array(y), np.array(c)
    return (-s, ~y, c) if mirror else (s, y, c)


def _own_stats(k_c, n_c):
    """(cluster-robust variance, clusters holding trials) of sum(k_c) / sum(n_c)."""
    used = n_c > 0
    big_c, n = int(used.sum()), n_c.sum()
    p = k_c.sum() / n
    return big_c / (big_c - 1) * np.sum((k_c[used] - p * n_c[used]) ** 2) / n ** 2, big_c


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("level", [0.9, 0.99])
@pytest.mark.parametrize("delta", [0.0, 1e-2])
def test_clustered_bounds_use_each_sides_own_clusters(mirror, level, delta):
    """Guards against: the clustered empirical epsilon computing the TPR's Korn-Graubard
    bound with the FPR's cluster count, cluster variance (design effect) or degrees of
    freedom, or the FPR's with the TPR's. One side sits in 12 clusters and the other in
    60, with different variances, so each swap moves the bounds (either way round:
    ``mirror``)."""
    s, y, c = _designed_clusters(mirror)
    n_pos, n_neg = (480, 48) if mirror else (48, 480)
    assert (int(y.sum()), int((~y).sum())) == (n_pos, n_neg)
    k_pos, n_pos_c = np.bincount(c[y & (s > 0)], minlength=60), np.bincount(c[y], minlength=60)
    k_neg, n_neg_c = (np.bincount(c[~y & (s > 0)], minlength=60),
                      np.bincount(c[~y], minlength=60))
    assert (k_pos.sum(), k_neg.sum()) == (3 * n_pos // 4, n_neg // 4)
    tail = (1 - level) / 2  # one threshold: no Bonferroni factor over thresholds
    t_lo = _kg_bound(k_pos, n_pos_c, tail, upper=False)
    f_hi = _kg_bound(k_neg, n_neg_c, tail, upper=True)
    want = max(0.0, *_eps_sides(t_lo, f_hi, delta))
    e = mk.bounds.empirical_epsilon(s, y, delta=delta, level=level, thresholds=[0.0],
                                    clusters=c)
    assert (e.n_thresholds, e.tp, e.fp) == (1, k_pos.sum(), k_neg.sum())
    assert (e.tpr_lower, e.fpr_upper) == pytest.approx((t_lo, f_hi), rel=1e-9)
    assert e.epsilon == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert want > 0.1  # the bound proves something
    # the data discriminate: each side's own clusters versus the other side's
    (var_t, c_t), (var_f, c_f) = _own_stats(k_pos, n_pos_c), _own_stats(k_neg, n_neg_c)
    assert {c_t, c_f} == {12, 60}
    for kw_t, kw_f in (({"n_clusters": c_f}, {"n_clusters": c_t}),
                       ({"var": var_f}, {"var": var_t})):
        assert _kg_bound(k_pos, n_pos_c, tail, False, **kw_t) != pytest.approx(t_lo, rel=1e-3)
        assert _kg_bound(k_neg, n_neg_c, tail, True, **kw_f) != pytest.approx(f_hi, rel=1e-3)


def _extra_clusters(rng, first_id, count, member):
    """``count`` new clusters of 8 scores each, all members or all non-members, with
    uneven numbers above the thresholds used (cluster-level offsets)."""
    s = (rng.normal(size=(count, 1)) * 2.0 + rng.normal(size=(count, 8))).ravel()
    return s, np.full(s.size, member), np.repeat(np.arange(first_id, first_id + count), 8)


@pytest.mark.parametrize("threshold", [0.5, 1.5, 2.5])
def test_clustered_bound_of_each_side_ignores_the_other_sides_clusters(threshold, rng):
    """Guards against the same swap, whatever the degrees-of-freedom rule: at a fixed
    threshold the TPR's bound is a function of the members' scores and clusters only, so
    clusters holding only non-members must leave it unchanged (and change the FPR's
    bound); clusters holding only members must leave the FPR's bound unchanged."""
    m, n = 8, 40
    keep = np.zeros((m, n), bool)
    for j in range(n):
        keep[rng.permutation(m)[:4], j] = True
    s0 = (rng.normal(size=n)[None] * 1.5 + rng.normal(size=(m, n)) + 2.0 * keep).ravel()
    y0, c0 = keep.ravel(), np.broadcast_to(np.arange(n), (m, n)).ravel()

    def bound(s, y, c):
        e = mk.bounds.empirical_epsilon(s, y, thresholds=[threshold], clusters=c)
        assert e.tp > 0 and e.fp < e.n_neg  # a finite bound at that threshold
        return e.tpr_lower, e.fpr_upper

    t0, f0 = bound(s0, y0, c0)
    for member in (False, True):
        s1, y1, c1 = _extra_clusters(rng, n, 30, member)
        t1, f1 = bound(np.r_[s0, s1], np.r_[y0, y1], np.r_[c0, c1])
        # the other side's bound stays; this side's moves (the data do change it)
        (other0, other1), (own0, own1) = ((f0, f1), (t0, t1)) if member else ((t0, t1),
                                                                             (f0, f1))
        assert other1 == pytest.approx(other0, rel=1e-12), f"clusters of member={member}"
        assert own1 != pytest.approx(own0, rel=1e-3)


# ------------------------------------------------------- empirical epsilon, both halves


def _fnr_data(rng, n=1000):
    """Two tails: a fifth of the members score far above everyone, two fifths of the
    non-members far below everyone, the rest share one distribution. Both sides of the
    bound prove something, the false-negative side ``ln((1 - FPR - delta) / (1 - TPR))``
    (at a low threshold: TPR = 1, FPR ~ 0.6) clearly more than the true-positive side
    (at a high one: TPR ~ 0.2, FPR ~ 0). The low thresholds that prove it have small
    ``TPR / FPR``: a search ranking the thresholds by the TPR side alone visits them last."""
    y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    s = np.r_[rng.normal(size=n * 4 // 5), rng.normal(8.0, 1.0, n // 5),
              rng.normal(size=n * 3 // 5), rng.normal(-8.0, 1.0, n * 2 // 5)]
    return np.round(s, 3), y  # some ties


@pytest.mark.parametrize("delta", [0.0, 1e-2])
def test_empirical_epsilon_keeps_the_false_negative_side(delta, rng):
    """Guards against: the empirical epsilon using only ``ln((TPR_lo - delta) / FPR_hi)``
    and dropping ``ln((1 - FPR_hi - delta) / (1 - TPR_lo))``. On these data the second
    side is the one that proves the bound (by a wide margin)."""
    s, y = _fnr_data(rng)
    thr = np.unique(s)
    want, side, t_lo, f_hi = _brute_epsilon(s, y, thr, delta)
    tpr_only = _brute_epsilon(s, y, thr, delta, sides=("tpr",))[0]
    assert side == "fnr" and want > tpr_only + 0.5  # the data discriminate
    e = mk.bounds.empirical_epsilon(s, y, delta=delta, thresholds="all")
    assert e.epsilon == pytest.approx(want, rel=1e-10)
    assert e.side == "fnr" and e.n_thresholds == thr.size
    assert (e.tpr_lower, e.fpr_upper) == pytest.approx((t_lo, f_hi), rel=1e-10)
    assert e.epsilon == pytest.approx(_eps_sides(e.tpr_lower, e.fpr_upper, delta)[1],
                                      rel=1e-12)
    # mirrored attack (scores negated, roles swapped): the false-negative side of one is
    # the true-positive side of the other, and with distinct scores the operating points
    # correspond one to one, so both searches prove the same bound
    u = rng.permutation(s.size) * 1e-6  # break ties: distinct scores
    a = mk.bounds.empirical_epsilon(s + u, y, delta=delta, thresholds="all")
    b = mk.bounds.empirical_epsilon(-(s + u), ~y, delta=delta, thresholds="all")
    assert a.epsilon == pytest.approx(b.epsilon, rel=1e-10)
    assert (a.side, b.side) == ("fnr", "tpr")


def _grid_reference(s, y, points_per_side=40):
    """The default grid of docs/methods/bounds.md, by brute force over the ROC points:
    for each k in {0} + round(geomspace(1, n, 40)), the lowest-threshold point with at
    most k false positives (the most true positives), and the highest-threshold point
    with at most k false negatives (the fewest false positives); the empty point (none
    called member) is not a threshold."""
    pts = ref.roc_points(s, y)  # (fp, tp, threshold), from +inf down
    n_pos, n_neg = int(y.sum()), int((~y).sum())

    def ks(n):
        return np.unique(np.r_[0, np.round(np.geomspace(1, n, points_per_side))])

    chosen = set()
    for k in ks(n_neg):
        chosen.add(max(i for i, (fp, _, _) in enumerate(pts) if fp <= k))
    for k in ks(n_pos):
        chosen.add(min(i for i, (_, tp, _) in enumerate(pts) if n_pos - tp <= k))
    chosen.discard(0)
    return [pts[i][2] for i in sorted(chosen)]


@pytest.mark.parametrize("delta", [0.0, 1e-2])
def test_default_grid_has_both_halves_and_is_bonferroni_over_its_size(delta, rng):
    """Guards against: the default threshold grid dropping its false-negative half (the
    points at k false negatives) or the epsilon dropping its false-negative side: on
    these data the bound comes from that side, and the Bonferroni factor is the size of
    the whole grid."""
    assert mk.bounds.GRID_POINTS == 40  # the documented grid
    s, y = _fnr_data(rng)
    grid = _grid_reference(s, y)
    want, side, t_lo, f_hi = _brute_epsilon(s, y, grid, delta)
    assert side == "fnr"
    e = mk.bounds.empirical_epsilon(s, y, delta=delta)
    assert e.n_thresholds == len(grid)
    assert e.epsilon == pytest.approx(want, rel=1e-10)
    assert e.side == "fnr" and (e.tpr_lower, e.fpr_upper) == pytest.approx((t_lo, f_hi),
                                                                           rel=1e-10)
    # a smaller search (fewer thresholds, less Bonferroni) proves more than "all"
    assert e.epsilon > mk.bounds.empirical_epsilon(s, y, delta=delta,
                                                   thresholds="all").epsilon
