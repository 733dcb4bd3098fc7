"""Privacy bounds and auditing (docs/methods/bounds.md).

- What differential privacy allows an attack: ``dp_tpr_bound`` ((epsilon, delta)-DP),
  ``gdp_tpr_bound`` (mu-GDP), ``memorization_bound`` (label memorization under
  epsilon-DP, Ravikumar et al. 2024).
- What DP-SGD guarantees: ``dpsgd_epsilon`` and its inverse ``dpsgd_noise``, through the
  accountants of the ``dp-accounting`` package (``pip install 'miakit[dp]'``); there is
  no hand-written accountant here.
- What an attack proves: ``empirical_epsilon``, a lower bound on epsilon that holds with
  a chosen confidence, and ``gdp_mu``, the mu-GDP an ROC implies.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from miakit import metrics
from miakit._binomial import one_sided
from miakit._validation import (
    check_choice,
    check_int,
    check_probability,
    check_real,
    check_real_array,
)

__all__ = ["dp_tpr_bound", "gdp_tpr_bound", "memorization_bound", "dpsgd_epsilon",
           "dpsgd_noise", "empirical_epsilon", "EmpiricalEpsilon", "gdp_mu", "GdpMu",
           "GRID_POINTS", "empirical_epsilon_ranked", "RDP_ORDERS"]


# --------------------------------------------------------------------------- checks
def _positive(value: Any, name: str, *, allow_inf: bool = False) -> float:
    return check_real(value, name, 0.0, open_lo=True, allow_inf=allow_inf,
                      what="a positive number" if allow_inf else "a positive finite number")


def _delta(value: Any, name: str = "delta") -> float:
    return check_real(value, name, 0.0, 1.0, open_hi=True, what="a value in [0, 1)")


def _rates(x: Any, name: str) -> np.ndarray:
    r = check_real_array(x, name)
    if not (np.all(r >= 0.0) and np.all(r <= 1.0)):  # NaN fails
        raise ValueError(f"{name}: expected rates in [0, 1], got values outside it (or NaN)")
    return r


# --------------------------------------------------------------------------- DP limits
def dp_tpr_bound(fpr: Any, epsilon: Any, delta: Any = 0.0) -> np.ndarray:
    """The largest TPR an attack can reach at a given FPR against (epsilon, delta)-DP.

    ``TPR <= min(e^eps FPR + delta, 1 - e^-eps (1 - delta - FPR))``, clipped to [0, 1].
    Several (epsilon, delta) pairs, all valid for the mechanism (an epsilon(delta) curve),
    give the pointwise minimum of their bounds.

    Parameters
    ----------
    fpr : float or array
        False-positive rates in [0, 1].
    epsilon : float or sequence of float
        epsilon > 0 (one per pair).
    delta : float or sequence of float
        delta in [0, 1) (one per pair, or one for all).

    Returns
    -------
    numpy.ndarray
        The bound, shaped like ``fpr``.

    Examples
    --------
    >>> import miakit as mk
    >>> float(mk.bounds.dp_tpr_bound(0.01, 1.0))            # e * 0.01
    0.027182818284590453
    >>> float(mk.bounds.dp_tpr_bound(0.01, [1.0, 0.5], [0.0, 1e-2]))   # the tighter pair
    0.02648721270700128
    """
    f = _rates(fpr, "fpr")
    eps = np.atleast_1d(check_real_array(epsilon, "epsilon"))
    dl = np.atleast_1d(check_real_array(delta, "delta"))
    if eps.ndim != 1 or eps.size == 0:
        raise ValueError(f"epsilon: expected a number or a 1-D sequence, got {epsilon!r}")
    for e in eps:
        _positive(e, "epsilon", allow_inf=True)
    for d in dl:
        _delta(d)
    if dl.size not in (1, eps.size):
        raise ValueError(f"delta: expected one value or one per epsilon ({eps.size}), got "
                         f"{dl.size}")
    dl = np.broadcast_to(dl, eps.shape)
    out = np.ones_like(f)
    for e, d in zip(eps, dl):
        with np.errstate(over="ignore", invalid="ignore"):
            a = np.exp(e) * f + d
            b = 1.0 - np.exp(-e) * (1.0 - d - f)
        out = np.minimum(out, np.minimum(np.where(np.isnan(a), 1.0, a), b))
    return np.clip(out, 0.0, 1.0)


def gdp_tpr_bound(fpr: Any, mu: float) -> np.ndarray:
    """The largest TPR at a given FPR against mu-GDP: ``Phi(Phi^-1(FPR) + mu)``.

    Examples
    --------
    >>> import miakit as mk
    >>> round(float(mk.bounds.gdp_tpr_bound(0.05, 1.0)), 6)
    0.259511
    """
    f = _rates(fpr, "fpr")
    m = check_real(mu, "mu", 0.0, what="a finite value >= 0")
    return special.ndtr(special.ndtri(f) + m)


def memorization_bound(epsilon: float) -> float:
    """Label memorization of any example under epsilon-DP is at most ``1 - e^-eps``
    (Ravikumar et al. 2024, Theorem 5.4).

    Examples
    --------
    >>> import miakit as mk
    >>> round(mk.bounds.memorization_bound(1.0), 6)
    0.632121
    """
    return float(-math.expm1(-_positive(epsilon, "epsilon", allow_inf=True)))


# --------------------------------------------------------------------------- DP-SGD
def _dp_accounting() -> Any:
    try:
        import dp_accounting
    except ImportError as exc:
        raise ImportError("DP-SGD accounting uses the dp-accounting package: "
                          "pip install 'miakit[dp]' (or pip install dp-accounting)") from exc
    # its RDP accountant logs a warning for every order it drops while calibrating
    logging.getLogger("absl").setLevel(logging.ERROR)
    return dp_accounting


def _dpsgd_event(dpa: Any, noise: float, rate: float, steps: int) -> Any:
    return dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(rate, dpa.GaussianDpEvent(noise)), steps)


def _check_dpsgd(sample_rate: Any, steps: Any) -> tuple[float, int]:
    q = check_real(sample_rate, "sample_rate", 0.0, 1.0, open_lo=True, what="a value in (0, 1]")
    return q, check_int(steps, "steps", 1, what="a positive int")


RDP_ORDERS = tuple([1 + x / 10 for x in range(1, 100)] + list(range(12, 64)))
"""The Rényi orders of ``accountant="rdp"``: Opacus' default grid, 1.1, 1.2, ..., 10.9
(2.0, 3.0, ... among them) and the integers 12, ..., 63. dp-accounting's own default adds
128, 256, 512 and 1024, which at large noise multipliers and small sampling rates gives
epsilons up to several times smaller than Opacus reports (still valid bounds); this grid
reports Opacus' number."""


def _accountant(dpa: Any, name: str) -> Any:
    check_choice(name, "accountant", ("pld", "rdp"))
    return dpa.pld.PLDAccountant() if name == "pld" else dpa.rdp.RdpAccountant(RDP_ORDERS)


def _warn_dropped_orders(acc: Any, noise: float, rate: float) -> None:
    """Warn when dp-accounting left orders of :data:`RDP_ORDERS` out: the fractional
    orders whose series has not converged after its 1000 terms (orders near 1 at large
    sample rates) get an infinite RDP, so the epsilon comes from the other orders."""
    rdp = getattr(acc, "_rdp", None)  # the RDP per order (no public accessor)
    if rdp is None or len(rdp) != len(RDP_ORDERS):
        return
    dropped = [a for a, r in zip(RDP_ORDERS, rdp) if not math.isfinite(r)]
    if dropped:
        warnings.warn(
            f"dpsgd_epsilon: dp-accounting's RDP series did not converge at order(s) "
            f"{', '.join(f'{a:g}' for a in dropped)} for noise multiplier {noise:g} and "
            f"sample rate {rate:g}; they are left out, so this epsilon can be well above "
            "Opacus' (a valid but looser upper bound); the PLD accountant (the default) "
            "is tight", RuntimeWarning, stacklevel=3)


def dpsgd_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  accountant: str = "pld") -> float:
    """epsilon(delta) of DP-SGD: ``steps`` Poisson-sampled Gaussian mechanisms.

    Parameters
    ----------
    noise_multiplier : float
        Noise standard deviation over the clipping norm, > 0.
    sample_rate : float
        Poisson sampling probability of each example per step, in (0, 1].
    steps : int
    delta : float
        In [0, 1).
    accountant : {"pld", "rdp"}
        dp-accounting's privacy-loss-distribution accountant (tight; default) or its
        Renyi-DP accountant at the orders :data:`RDP_ORDERS` (Opacus' default grid): a
        valid upper bound on epsilon, never below the PLD's beyond its discretisation.
        The RDP at integer orders is the closed binomial sum; at fractional orders a
        series that dp-accounting stops after 1000 terms, leaving out (with a
        ``RuntimeWarning`` naming them) the orders where it has not converged: orders
        up to 1.8 at sample rates of 0.05 and more, which matter where the best order
        is near 1, at large epsilons. RDP is converted to
        epsilon by ``min_a RDP(a) + log(1 - 1/a) - log(delta a) / (a - 1)`` (Canonne,
        Kamath and Steinke 2020, Proposition 12; the conversion Opacus'
        ``get_privacy_spent`` uses, Balle et al. 2020, Theorem 21). Where every order
        converges this is Opacus' RDP accountant's epsilon (to about 1e-6 relative);
        where low orders are left out it is larger (noise 0.5, sample rate 0.1, 10,000
        steps, delta 1e-5: 2231 against Opacus' 807 and the PLD's 783).

    Examples
    --------
    >>> import miakit as mk
    >>> eps = mk.bounds.dpsgd_epsilon(1.0, 0.01, 1000, 1e-5)
    >>> 1.7 < eps < 1.9
    True
    """
    dpa = _dp_accounting()
    noise = _positive(noise_multiplier, "noise_multiplier")
    q, t = _check_dpsgd(sample_rate, steps)
    d = _delta(delta)
    acc = _accountant(dpa, accountant)
    try:
        acc.compose(_dpsgd_event(dpa, noise, q, t))
        if accountant == "rdp":
            _warn_dropped_orders(acc, noise, q)
        return float(acc.get_epsilon(d))
    except (ValueError, MemoryError) as exc:
        if accountant != "pld":
            raise
        # the PLD's discretisation grows without bound as the noise vanishes
        warnings.warn(f"dpsgd_epsilon: the PLD accountant cannot represent noise multiplier "
                      f"{noise:g} ({exc}); reporting the RDP accountant's epsilon, an upper "
                      "bound", RuntimeWarning, stacklevel=2)
        return dpsgd_epsilon(noise, q, t, d, "rdp")


def dpsgd_noise(epsilon: float, delta: float, sample_rate: float, steps: int,
                accountant: str = "pld") -> float:
    """The smallest noise multiplier whose DP-SGD run reaches (epsilon, delta).

    The inverse of :func:`dpsgd_epsilon`, by dp-accounting's mechanism calibration.
    Unlike there, ``delta`` must be in (0, 1): no finite noise reaches delta 0. A sample
    rate so small that a noise multiplier of 0.01 already reaches (epsilon, delta) is a
    ValueError naming ``sample_rate`` (the noise needed is below what the accountants
    resolve).

    Examples
    --------
    >>> import miakit as mk
    >>> z = mk.bounds.dpsgd_noise(2.0, 1e-5, 0.01, 1000)
    >>> abs(mk.bounds.dpsgd_epsilon(z, 0.01, 1000, 1e-5) - 2.0) < 0.01
    True
    """
    dpa = _dp_accounting()
    eps = _positive(epsilon, "epsilon")
    # no finite noise makes a Gaussian mechanism pure DP: there is nothing to solve for
    d = check_real(delta, "delta", 0.0, 1.0, open_lo=True, open_hi=True,
                   what="a value in (0, 1) (no noise reaches delta 0)")
    q, t = _check_dpsgd(sample_rate, steps)
    check_choice(accountant, "accountant", ["pld", "rdp"])

    def event(z: float) -> Any:
        return _dpsgd_event(dpa, z, q, t)

    # At a tiny sample rate the run is (epsilon, delta)-DP with almost no noise (a member
    # is seldom sampled at all): the calibration's search, which starts at a noise of
    # 0.01, then finds no bracket. Say so, naming the sample rate that causes it.
    if _epsilon_of_rdp(dpa, event(_NOISE_FLOOR), d) <= eps:
        raise ValueError(f"sample_rate: at sample_rate {q:g} over {t} steps a noise multiplier "
                         f"of {_NOISE_FLOOR:g} already reaches epsilon {eps:g} at delta {d:g}; "
                         "the noise needed lies below what the accountants resolve")

    # Bracket with the RDP accountant (cheap at any noise, and an upper bound on epsilon,
    # so its noise is at least the PLD one), then solve in that bracket: the PLD
    # accountant's work grows without bound as the noise goes to 0.
    z_rdp = float(dpa.calibrate_dp_mechanism(
        lambda: _accountant(dpa, "rdp"), event, eps, d,
        dpa.LowerEndpointAndGuess(_NOISE_FLOOR, 1.0), tol=1e-5))
    if accountant == "rdp":
        return z_rdp
    lo = z_rdp / 2
    while lo > _NOISE_FLOOR and _epsilon_of(dpa, event(lo), d) <= eps:
        lo /= 2
    return float(dpa.calibrate_dp_mechanism(
        lambda: _accountant(dpa, "pld"), event, eps, d,
        dpa.ExplicitBracketInterval(lo, z_rdp), tol=1e-5))


_NOISE_FLOOR = 1e-2
"""The smallest noise multiplier :func:`dpsgd_noise` searches."""


def _epsilon_of_rdp(dpa: Any, event: Any, delta: float) -> float:
    acc = _accountant(dpa, "rdp")
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def _epsilon_of(dpa: Any, event: Any, delta: float) -> float:
    acc = dpa.pld.PLDAccountant()
    acc.compose(event)
    return float(acc.get_epsilon(delta))


# --------------------------------------------------------------------------- auditing
@dataclass(frozen=True)
class EmpiricalEpsilon:
    """A lower bound on epsilon proven by an attack's scores.

    Attributes
    ----------
    epsilon : float
        With probability at least ``level``, the mechanism is not (e, delta)-DP for any
        e below this (0 when nothing is proven).
    threshold : float
        The score threshold that proves it ("member" for scores at or above it).
    tp, fp, n_pos, n_neg : int
        Counts at that threshold.
    tpr_lower, fpr_upper : float
        The one-sided confidence bounds behind it.
    side : str
        Which inequality gave the bound: ``"tpr"`` (``ln((TPR - delta) / FPR)``) or
        ``"fnr"`` (``ln((1 - FPR - delta) / FNR)``).
    n_thresholds : int
        Thresholds searched (the Bonferroni factor).
    delta, level : float
    """

    epsilon: float
    threshold: float
    tp: int
    fp: int
    n_pos: int
    n_neg: int
    tpr_lower: float
    fpr_upper: float
    side: str
    n_thresholds: int
    delta: float
    level: float


GRID_POINTS = 40
"""Operating points per side of the default threshold grid of :func:`empirical_epsilon`."""


def _grid_points(tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int) -> np.ndarray:
    """ROC points at a log grid of counts fixed in advance: for k false positives in
    {0, 1, 2, ..., n_neg} (log-spaced), the point with the most true positives among those
    with at most k; for k false negatives likewise, the point with the fewest false
    positives among those with at most k. Each point's threshold is a data order
    statistic, so the one-sided bounds stay valid, and the Bonferroni factor is the grid's
    size, not the number of distinct scores."""
    def ks(n: int) -> np.ndarray:
        return np.unique(np.r_[0, np.round(np.geomspace(1, max(n, 1), GRID_POINTS))]
                         ).astype(np.int64)

    a = np.searchsorted(fp, ks(n_neg), side="right") - 1  # last point with fp <= k
    b = np.searchsorted(tp, n_pos - ks(n_pos), side="left")  # first with tp >= n_pos - k
    pick = np.unique(np.r_[a, b])
    return pick[(pick >= 1) & (pick < tp.size)]


def empirical_epsilon(scores: Any, members: Any, delta: float = 0.0, level: float = 0.95,
                      *, thresholds: Any = "grid", clusters: Any = "auto") -> EmpiricalEpsilon:
    """A lower bound on the epsilon of the mechanism that produced an attack's scores.

    At a threshold with true rates TPR and FPR, (epsilon, delta)-DP implies
    ``TPR <= e^eps FPR + delta`` and ``1 - FPR <= e^eps (1 - TPR) + delta``, so
    ``eps >= max(ln((TPR - delta) / FPR), ln((1 - FPR - delta) / (1 - TPR)))``. The
    rates are replaced by one-sided Clopper-Pearson bounds (TPR from below, FPR from
    above); searching T thresholds costs a Bonferroni correction: each of the two bounds
    at a threshold is taken at ``(1 - level) / (2 T)``, so the bound holds with
    probability at least ``level`` overall. By default the thresholds are a grid of
    operating points fixed in advance by their counts (:data:`GRID_POINTS` per side, at
    k false positives, and at k false negatives, for k on a log scale): a small T keeps
    the bounds tight and the search fast on millions of scores.

    Parameters
    ----------
    scores, members : array_like
        Member-oriented scores and the truth (as :func:`miakit.metrics.roc`).
    delta : float
        In [0, 1).
    level : float
        Overall confidence.
    thresholds : {"grid", "all"} or array_like
        ``"grid"`` (default): the operating points at log-spaced counts of false positives
        and of false negatives; ``"all"``: every distinct score (the largest search, the
        largest Bonferroni factor, and one quantile per score: slow on millions);
        or thresholds fixed in advance.
    clusters : "auto", None or array_like of int
        Cluster id of every score (leave-one-out scores pooled over targets: the
        example): the bounds become Korn-Graubard's cluster-robust ones
        (:func:`miakit.metrics.clustered_proportion_ci`). ``"auto"`` (default): 2-D
        scores ``[K, N]`` clustered by column, other shapes not; None: no clusters.

    Returns
    -------
    EmpiricalEpsilon

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> y = np.r_[np.ones(5000, bool), np.zeros(5000, bool)]
    >>> e = mk.bounds.empirical_epsilon(rng.normal(size=10000) + 4.0 * y, y)
    >>> 2.0 < e.epsilon < 8.0, e.side in ("tpr", "fnr")
    (True, True)
    >>> mk.bounds.empirical_epsilon(rng.normal(size=10000), y).epsilon
    0.0
    """
    ranked = metrics.RankedScores(scores, members, clusters)
    return empirical_epsilon_ranked(ranked, delta, level, thresholds=thresholds,
                                    clustered=ranked.clustered)


def empirical_epsilon_ranked(ranked: metrics.RankedScores, delta: float = 0.0,
                             level: float = 0.95, *, thresholds: Any = "grid",
                             clustered: bool = False) -> EmpiricalEpsilon:
    """:func:`empirical_epsilon` of scores already ranked (``metrics.RankedScores``), with
    cluster-robust bounds when ``clustered`` (the ranking's clusters).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> y = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    >>> r = mk.metrics.RankedScores(np.where(y, 1.0, 0.0), y)
    >>> mk.bounds.empirical_epsilon_ranked(r).epsilon > 3
    True
    """
    d = _delta(delta)
    check_probability(level, "level")
    thr, tp, fp = ranked.thresholds, ranked.tp, ranked.fp
    n_pos, n_neg = ranked.n_pos, ranked.n_neg
    if isinstance(thresholds, str) and thresholds == "grid":
        pick = _grid_points(tp, fp, n_pos, n_neg)
    elif isinstance(thresholds, str) and thresholds == "all":
        pick = np.arange(1, thr.size)  # every distinct score
    elif isinstance(thresholds, str):
        raise ValueError(f"thresholds: expected 'grid', 'all' or an array of thresholds, got "
                         f"{thresholds!r}")
    else:
        cand = np.unique(check_real_array(thresholds, "thresholds").ravel())
        if cand.size == 0 or not np.isfinite(cand).all():
            raise ValueError("thresholds: expected finite thresholds, got none or NaN/inf")
        # the operating point of "score >= t": the last curve point with threshold >= t
        pick = np.searchsorted(-thr, -cand, side="right") - 1
    var_t: np.ndarray | None
    var_f: np.ndarray | None
    df_t: np.ndarray | None
    df_f: np.ndarray | None
    if clustered:  # the variances at the candidate points only
        var_t, var_f, n_cl, (df_t, df_f) = ranked.cluster_moments(pick)
    else:
        var_t = var_f = df_t = df_f = None
        n_cl = (0, 0)
    cand, tp, fp = thr[pick], tp[pick], fp[pick]
    n_thr = int(pick.size)
    alpha = (1.0 - level) / (2 * n_thr)

    def bounds(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not clustered:
            return (one_sided(tp[idx], n_pos, alpha, upper=False),
                    one_sided(fp[idx], n_neg, alpha, upper=True))
        # set together with clustered above
        assert var_t is not None and var_f is not None and df_t is not None \
            and df_f is not None
        return (metrics.korn_graubard(tp[idx], n_pos, var_t[idx], n_cl[0], alpha,
                                      dof=df_t[idx])[0],
                metrics.korn_graubard(fp[idx], n_neg, var_f[idx], n_cl[1], alpha,
                                      dof=df_f[idx])[1])

    def epsilon(t_lo: np.ndarray, f_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            e_tpr = np.log(np.maximum(t_lo - d, 0.0) / f_hi)
            e_fnr = np.log(np.maximum(1.0 - f_hi - d, 0.0) / (1.0 - t_lo))
        return (np.where(np.isnan(e_tpr), -np.inf, e_tpr),
                np.where(np.isnan(e_fnr), -np.inf, e_fnr))

    # Every threshold's bound is at most the same formula on the measured rates (a lower
    # confidence bound of a rate lies below it, an upper one above), so the thresholds are
    # visited best measured value first and the search stops once no remaining one can
    # beat the best bound found: the exact maximum over all thresholds, with the
    # Bonferroni factor of all of them, at the cost of a few quantile evaluations.
    with np.errstate(divide="ignore", invalid="ignore"):
        ceiling = np.maximum(*epsilon(tp / n_pos, fp / n_neg))
    order = np.argsort(-ceiling, kind="stable")
    best, best_i, best_side = -np.inf, int(order[0]), "tpr"
    best_b = (0.0, 1.0)
    step = 256
    for start in range(0, order.size, step):
        idx = order[start:start + step]
        if ceiling[idx[0]] <= best:
            break
        t_lo, f_hi = bounds(idx)
        e_tpr, e_fnr = epsilon(t_lo, f_hi)
        e = np.maximum(e_tpr, e_fnr)
        j = int(np.argmax(e))
        if e[j] > best:
            best, best_i = float(e[j]), int(idx[j])
            best_side = "tpr" if e_tpr[j] >= e_fnr[j] else "fnr"
            best_b = (float(t_lo[j]), float(f_hi[j]))
        step = min(step * 4, 1 << 16)
    i = best_i
    eps = float(max(best, 0.0))
    return EmpiricalEpsilon(eps, float(cand[i]), int(tp[i]), int(fp[i]), n_pos, n_neg,
                            best_b[0], best_b[1], best_side, n_thr, d, float(level))


@dataclass(frozen=True)
class GdpMu:
    """The mu-GDP an ROC implies.

    Attributes
    ----------
    mu : float
        ``max over operating points of Phi^-1(TPR) - Phi^-1(FPR)``: the smallest mu
        whose GDP trade-off curve lies above every point of the empirical ROC.
    mu_lower : float
        The same with the TPR from below and the FPR from above (one-sided
        Clopper-Pearson, Bonferroni over the points): a lower bound on the mechanism's
        mu with confidence ``level``.
    level : float
    """

    mu: float
    mu_lower: float
    level: float


def gdp_mu(scores: Any, members: Any, level: float = 0.95) -> GdpMu:
    """The Gaussian-DP mu implied by an attack's ROC (and a lower confidence bound).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> y = np.r_[np.ones(20000, bool), np.zeros(20000, bool)]
    >>> g = mk.bounds.gdp_mu(rng.normal(size=40000) + 1.0 * y, y)
    >>> 0.9 < g.mu < 1.3, g.mu_lower < g.mu
    (True, True)
    """
    check_probability(level, "level")
    r = metrics.RankedScores(scores, members)
    n_pos, n_neg = r.n_pos, r.n_neg
    inner = (r.fp > 0) & (r.fp < n_neg) & (r.tp > 0) & (r.tp < n_pos)
    if not inner.any():
        return GdpMu(0.0, 0.0, float(level))
    f, t = r.fp[inner] / n_neg, r.tp[inner] / n_pos
    mu = float(max(0.0, np.max(special.ndtri(t) - special.ndtri(f))))
    alpha = (1.0 - level) / (2 * f.size)
    t_lo = one_sided(r.tp[inner], n_pos, alpha, upper=False)
    f_hi = one_sided(r.fp[inner], n_neg, alpha, upper=True)
    with np.errstate(divide="ignore"):
        lo = np.max(special.ndtri(t_lo) - special.ndtri(f_hi))
    return GdpMu(mu, float(max(0.0, lo)), float(level))

