"""Membership risk of generative models (MACE, Xu et al.; docs/methods/generative.md).

A generative model trained on private records releases synthetic records. A *query*
maps each record to a scalar or a vector: the distance to the closest synthetic record
(:func:`dcr_query`), a discriminator score, a reconstruction loss, any function
(:func:`apply_query`). With the query on the training records and on hold-out records
of the same population:

- :func:`membership_advantage`: the optimal membership advantage, the total-variation
  distance between the two query distributions (it does not depend on how many members
  and non-members there are). Scalar queries: the Kolmogorov-Smirnov statistic (the best
  threshold's advantage), its threshold and direction, and a two-sample DKW interval;
  vector queries: a cross-fitted classifier two-sample estimate ``2 acc - 1`` on balanced
  folds with a Clopper-Pearson interval.
- :func:`individual_risk`: ``P(member | q) = pi f_in(q) / (pi f_in(q) + (1 - pi) f_out(q))``
  per record for any member prior ``pi``, the density ratio from kernel density
  estimates or a classifier; :func:`risk_attack` scores every training and hold-out
  record with cross-fitted risks and reports the attack's TPR at low FPR.
- :func:`domias_scores`: the density-ratio attack of DOMIAS (van Breugel et al. 2023),
  ``log p_synthetic(x) - log p_reference(x)``; :func:`attack_power` measures any attack's
  scores (AUC, TPR at low FPR with intervals).

The study behind ``miakit generative`` is :mod:`miakit.generative_study`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit._validation import (
    check_choice,
    check_finite,
    check_int,
    check_probabilities,
    check_probability,
    check_real,
    check_records,
)
from miakit.neighbors import METRICS, closest_distances

__all__ = ["closest_distances", "dcr_query", "apply_query", "min_records",
           "membership_advantage", "MembershipAdvantage", "individual_risk",
           "risk_attack", "RiskAttack", "attack_power", "AttackPower", "domias_scores",
           "CLASSIFIERS"]

CLASSIFIERS = ("logistic", "boosting")


# -- input checks ------------------------------------------------------------------------

def _query(q: Any, name: str, width: int | None = None, width_of: str = "") -> np.ndarray:
    """Query values as float64 [n] (scalar queries) or [n, d] (vector queries), finite."""
    x = ar.as_array(q, name)
    if ar.kind(x) not in ("f", "i", "u", "b"):
        raise TypeError(f"{name}: expected real query values, got dtype {ar.dtype_name(x)}")
    x = np.asarray(ar.to_numpy(x), dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim not in (1, 2):
        raise ValueError(f"{name}: expected query values of shape [records] (scalar query) "
                         f"or [records, dims] (vector query), got shape {x.shape}")
    if x.shape[0] < 1 or (x.ndim == 2 and x.shape[1] < 1):
        raise ValueError(f"{name}: expected at least one record, got shape {x.shape}")
    check_finite(x, name)
    if width is not None and _width(x) != width:
        raise ValueError(f"{name}: expected query values of width {width} (the width of "
                         f"{width_of}), got shape {x.shape}")
    return x


def _width(x: np.ndarray) -> int:
    return 1 if x.ndim == 1 else int(x.shape[1])


def min_records(level: float = 0.95) -> int:
    """Fewest records each of the two samples needs for an interval at ``level``.

    ``ceil(8 ln(4 / alpha))`` with ``alpha = 1 - level``: the DKW band of each empirical
    CDF, ``eps = sqrt(ln(4 / alpha) / (2 n))``, is then at most 0.25 wide on either side,
    so the interval of the advantage can exclude 0 and 1. The same minimum applies to
    the smaller sample of the classifier estimate (its balanced folds).

    Examples
    --------
    >>> from miakit.generative import min_records
    >>> min_records(0.95), min_records(0.99)
    (36, 48)
    """
    alpha = 1.0 - check_probability(level, "level")
    return int(math.ceil(8.0 * math.log(4.0 / alpha) - 1e-9))


def _check_counts(n_train: int, n_holdout: int, level: float) -> None:
    need = min_records(level)
    for name, n in (("q_holdout", n_holdout), ("q_train", n_train)):
        if n < need:
            raise ValueError(f"{name}: expected at least {need} records for an interval at "
                             f"level {level:g} (ceil(8 ln(4 / (1 - level))), see "
                             f"miakit.generative.min_records), got {n}")


# -- queries -----------------------------------------------------------------------------

def dcr_query(records: Any, synthetic: Any, k: int = 1, *, metric: str = "euclidean"
              ) -> np.ndarray:
    """Distance of each record to its closest synthetic record(s) (DCR).

    Parameters
    ----------
    records : array [N, D]
        The records to query (training or hold-out records).
    synthetic : array [S, D]
        The generated records.
    k : int
        Neighbours: ``k = 1`` gives a scalar query, ``k > 1`` the vector of the k
        smallest distances (ascending).
    metric : {"euclidean", "sqeuclidean", "cosine"}
        As :func:`miakit.neighbors.closest_distances` (exact float64 distances).

    Returns
    -------
    numpy.ndarray float64
        ``[N]`` for ``k = 1``, ``[N, k]`` otherwise.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> synthetic = np.array([[0.0, 0.0], [1.0, 1.0]])
    >>> mk.generative.dcr_query([[0.0, 0.1], [3.0, 1.0]], synthetic)
    array([0.1, 2. ])
    """
    check_choice(metric, "metric", METRICS)
    x = check_records(records, "records")
    s = check_records(synthetic, "synthetic", x.shape[1], "records")
    k = check_int(k, "k", 1)
    if k > s.shape[0]:
        raise ValueError(f"k: expected 1 <= k <= {s.shape[0]} (the synthetic records), "
                         f"got {k}")
    d, _ = closest_distances(x, s, k, metric=metric)
    d = np.asarray(ar.to_numpy(d), dtype=np.float64)
    return d[:, 0].copy() if k == 1 else d


def apply_query(fn: Callable[[Any], Any], records: Any, *, batch_size: int | None = None
                ) -> np.ndarray:
    """Apply a user query (discriminator score, reconstruction loss, ...) to records.

    Parameters
    ----------
    fn : callable
        ``fn(batch) -> values``, a batch of records in, one scalar or one vector per
        record out (numpy arrays or torch tensors; torch outputs are detached).
    records : array [N, ...]
        The records, passed to ``fn`` as they are (sliced into batches if asked).
    batch_size : int, optional
        Records per call (default: all at once).

    Returns
    -------
    numpy.ndarray float64
        ``[N]`` (scalar query) or ``[N, d]`` (vector query).

    Raises
    ------
    ValueError
        When ``fn`` returns a different number of values than records, more than one
        axis of values per record, or NaN/inf.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> x = np.arange(6.0).reshape(3, 2)
    >>> mk.generative.apply_query(lambda b: (b ** 2).sum(1), x, batch_size=2)
    array([ 1., 13., 41.])
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    n = len(records)
    if n < 1:
        raise ValueError("records: expected at least one record, got none")
    bs = n if batch_size is None else check_int(batch_size, "batch_size", 1)
    parts = []
    for start in range(0, n, bs):
        batch = records[start:start + bs]
        out = fn(batch)
        out = out.detach().cpu() if ar.is_torch(out) else out
        v = np.asarray(out, dtype=np.float64)
        m = len(batch)
        if v.ndim == 0 or v.shape[0] != m or v.ndim > 2:
            raise ValueError(f"fn: expected one scalar or one vector per record (shape "
                             f"[{m}] or [{m}, d] for a batch of {m}), got shape {v.shape}")
        parts.append(v)
    q = np.concatenate(parts, axis=0)
    if not np.isfinite(q).all():
        raise ValueError(f"fn: expected finite query values, got "
                         f"{int((~np.isfinite(q)).sum())} NaN or inf")
    return q


# -- the optimal membership advantage ----------------------------------------------------

@dataclass(frozen=True)
class MembershipAdvantage:
    """The optimal membership advantage estimated from query values.

    Attributes
    ----------
    advantage : float
        Scalar queries: the K-S statistic ``max_t |F_train(t) - F_holdout(t)|``, the
        advantage (TPR - FPR) of the best threshold rule. Vector queries: ``2 acc - 1``
        of a cross-fitted classifier on balanced folds (can be slightly negative when
        there is nothing to find).
    ci : tuple of float
        Confidence interval at ``level``: two-sample DKW (K-S) or Clopper-Pearson
        (classifier), clipped to [0, 1] and [-1, 1].
    level : float
    method : {"ks", "classifier"}
    n_train, n_holdout : int
        Records in each sample (the classifier uses ``min`` of both from each).
    pvalue : float
        K-S test p-value, or the one-sided binomial test of accuracy > 1/2.
    threshold : float or None
        Scalar queries: the best threshold.
    direction : {"<=", ">"} or None
        The rule ``member if q <= threshold`` (members have smaller values, as with the
        distance to the closest synthetic record) or ``member if q > threshold``.
    tpr, fpr : float or None
        Scalar queries: the rule's rates on training and hold-out records
        (``tpr - fpr == advantage``).
    dkw_eps : tuple of float or None
        The DKW half-widths ``(eps_train, eps_holdout)``.
    accuracy : float or None
        Classifier: held-out accuracy over ``n_test`` balanced predictions.
    n_test : int or None
    classifier : str or None
    """

    advantage: float
    ci: tuple[float, float]
    level: float
    method: str
    n_train: int
    n_holdout: int
    pvalue: float
    threshold: float | None = None
    direction: str | None = None
    tpr: float | None = None
    fpr: float | None = None
    dkw_eps: tuple[float, float] | None = None
    accuracy: float | None = None
    n_test: int | None = None
    classifier: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        d = asdict(self)
        for key in ("ci", "dkw_eps"):
            if d[key] is not None:
                d[key] = [float(v) for v in d[key]]
        return d


def _dkw_eps(n: int, alpha: float) -> float:
    return math.sqrt(math.log(4.0 / alpha) / (2.0 * n))


def _make_classifier(classifier: Any, seed: int) -> Any:
    from sklearn.base import clone

    if isinstance(classifier, str):
        check_choice(classifier, "classifier", CLASSIFIERS)
        if classifier == "logistic":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1,
                                              random_state=seed)
    if not (hasattr(classifier, "fit") and hasattr(classifier, "predict")):
        raise TypeError(f"classifier: expected one of {list(CLASSIFIERS)} or a scikit-learn "
                        f"classifier, got {type(classifier).__name__}")
    return clone(classifier)


def _classifier_name(classifier: Any) -> str:
    return classifier if isinstance(classifier, str) else type(classifier).__name__


def membership_advantage(q_train: Any, q_holdout: Any, level: float = 0.95, *,
                         method: str = "auto", classifier: Any = "logistic",
                         folds: int = 5, seed: int = 0) -> MembershipAdvantage:
    """Optimal membership advantage of a query, with a confidence interval.

    Parameters
    ----------
    q_train : array [n] or [n, d]
        Query values of the training records (members).
    q_holdout : array [m] or [m, d]
        Query values of hold-out records of the same population (non-members).
    level : float
        Confidence level of the interval, in (0, 1). Each sample needs at least
        :func:`min_records` records (36 at 0.95).
    method : {"auto", "ks", "classifier"}
        "auto": K-S for scalar queries, the classifier for vector queries.
    classifier : {"logistic", "boosting"} or scikit-learn classifier
        Of the two-sample estimate: standardised logistic regression, histogram
        gradient boosting, or any estimator with ``fit``/``predict`` (cloned per fold).
    folds : int
        Cross-fitting folds of the classifier estimate (stratified).
    seed : int
        Seeds the balancing subsample, the folds and the classifier.

    Returns
    -------
    MembershipAdvantage

    Notes
    -----
    K-S: ``D = max_t |F_train(t) - F_holdout(t)|`` over the empirical CDFs
    (:func:`miakit.ks.ks_2samp`); the population's best threshold advantage ``D*`` lies
    in ``[D - eps_train - eps_holdout, D + eps_train + eps_holdout]`` with probability at
    least ``level``, with ``eps_i = sqrt(ln(4 / alpha) / (2 n_i))``: the DKW inequality
    (Massart's constant) for each empirical CDF at ``alpha / 2``, a union bound, and the
    triangle inequality. ``D*`` is a lower bound on the total-variation distance (equal
    to it when the density ratio is monotone in the query, as for most distances).

    Classifier: the larger sample is subsampled to the smaller one's size m, each of the
    2m records is predicted by a classifier fitted on the other folds, and
    ``advantage = 2 acc - 1`` with the Clopper-Pearson interval of ``acc`` over the 2m
    predictions mapped through ``2 p - 1``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> q_in, q_out = rng.normal(0.0, 1.0, 500), rng.normal(1.0, 1.0, 500)
    >>> r = mk.generative.membership_advantage(q_in, q_out)
    >>> r.method, r.direction, round(r.advantage, 3), r.ci[0] < r.advantage < r.ci[1]
    ('ks', '<=', 0.398, True)
    """
    level = check_probability(level, "level")
    check_choice(method, "method", ["auto", "ks", "classifier"])
    a = _query(q_train, "q_train")
    b = _query(q_holdout, "q_holdout", _width(a), "q_train")
    seed = check_int(seed, "seed", 0)
    _check_counts(a.shape[0], b.shape[0], level)
    if method == "auto":
        method = "ks" if a.ndim == 1 else "classifier"
    if method == "ks":
        if a.ndim != 1:
            raise ValueError(f"method: 'ks' needs scalar queries, got q_train of shape "
                             f"{a.shape}; use method='classifier'")
        return _advantage_ks(a, b, level)
    return _advantage_classifier(a, b, level, classifier, check_int(folds, "folds", 2), seed)


def _advantage_ks(a: np.ndarray, b: np.ndarray, level: float) -> MembershipAdvantage:
    from miakit.ks import ks_2samp

    r = ks_2samp(a, b)
    d = float(r.statistic)
    t = float(r.statistic_location)
    f_a, f_b = float(np.mean(a <= t)), float(np.mean(b <= t))
    if int(r.statistic_sign) >= 0:  # F_train above F_holdout: members have small values
        direction, tpr, fpr = "<=", f_a, f_b
    else:
        direction, tpr, fpr = ">", 1.0 - f_a, 1.0 - f_b
    alpha = 1.0 - level
    e_a, e_b = _dkw_eps(a.size, alpha), _dkw_eps(b.size, alpha)
    ci = (max(0.0, d - e_a - e_b), min(1.0, d + e_a + e_b))
    return MembershipAdvantage(advantage=d, ci=ci, level=level, method="ks",
                               n_train=int(a.size), n_holdout=int(b.size),
                               pvalue=float(r.pvalue), threshold=t, direction=direction,
                               tpr=tpr, fpr=fpr, dkw_eps=(e_a, e_b))


def _balanced(a: np.ndarray, b: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """Both samples subsampled (without replacement) to the smaller one's size."""
    m = min(a.shape[0], b.shape[0])
    a = a[np.sort(rng.permutation(a.shape[0])[:m])]
    b = b[np.sort(rng.permutation(b.shape[0])[:m])]
    return a, b


def _as_2d(x: np.ndarray) -> np.ndarray:
    return x[:, None] if x.ndim == 1 else x


def _advantage_classifier(a: np.ndarray, b: np.ndarray, level: float, classifier: Any,
                          folds: int, seed: int) -> MembershipAdvantage:
    from scipy import stats
    from sklearn.model_selection import StratifiedKFold

    from miakit.metrics import clopper_pearson

    rng = np.random.default_rng([seed, 17])
    a2, b2 = _balanced(a, b, rng)
    m = a2.shape[0]
    folds = min(folds, m)
    x = np.concatenate([_as_2d(a2), _as_2d(b2)])
    y = np.r_[np.ones(m, np.int64), np.zeros(m, np.int64)]
    pred = np.empty(2 * m, np.int64)
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        clf = _make_classifier(classifier, seed)
        clf.fit(x[tr], y[tr])
        pred[te] = np.asarray(clf.predict(x[te])).astype(np.int64)
    correct = int((pred == y).sum())
    n = 2 * m
    lo, hi = clopper_pearson(correct, n, level)
    acc = correct / n
    p = float(stats.binomtest(correct, n, 0.5, alternative="greater").pvalue)
    return MembershipAdvantage(advantage=2.0 * acc - 1.0, ci=(2.0 * lo - 1.0, 2.0 * hi - 1.0),
                               level=level, method="classifier", n_train=int(a.shape[0]),
                               n_holdout=int(b.shape[0]), pvalue=p, accuracy=acc,
                               n_test=n, classifier=_classifier_name(classifier))


# -- individual risk ---------------------------------------------------------------------

def _kde_logpdf(fit: np.ndarray, at: np.ndarray, bandwidth: Any, name: str) -> np.ndarray:
    from scipy import stats

    f2, t2 = _as_2d(fit), _as_2d(at)
    if f2.shape[0] <= f2.shape[1]:
        raise ValueError(f"{name}: expected more records than query dimensions for a "
                         f"kernel density estimate, got shape {f2.shape}")
    try:
        kde = stats.gaussian_kde(f2.T, bw_method=bandwidth)
        return kde.logpdf(t2.T)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"{name}: the query values have a singular covariance (constant "
                         "or collinear dimensions): drop them, or use "
                         "method='classifier'") from exc


def _density_classifier(classifier: Any, seed: int, dim: int) -> Any:
    if isinstance(classifier, str):
        check_choice(classifier, "classifier", CLASSIFIERS)
        if classifier == "logistic":
            # log-odds additive in cubic splines of each (standardised) query dimension:
            # logistic regression is calibrated on its own training distribution
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import SplineTransformer, StandardScaler

            return make_pipeline(StandardScaler(), SplineTransformer(n_knots=6, degree=3),
                                 LogisticRegression(C=1.0, max_iter=2000))
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.ensemble import HistGradientBoostingClassifier

        return CalibratedClassifierCV(HistGradientBoostingClassifier(
            max_iter=100, random_state=seed), method="sigmoid", cv=3)
    return _make_classifier(classifier, seed)


def _log_ratio(q: np.ndarray, a: np.ndarray, b: np.ndarray, method: str, bandwidth: Any,
               classifier: Any, seed: int) -> np.ndarray:
    """log f_in(q) - log f_out(q) from the samples a (members) and b (non-members)."""
    if method == "kde":
        return (_kde_logpdf(a, q, bandwidth, "q_train")
                - _kde_logpdf(b, q, bandwidth, "q_holdout"))
    x = np.concatenate([_as_2d(a), _as_2d(b)])
    y = np.r_[np.ones(a.shape[0], np.int64), np.zeros(b.shape[0], np.int64)]
    clf = _density_classifier(classifier, seed, x.shape[1])
    clf.fit(x, y)
    classes = list(clf.classes_)
    p = np.asarray(clf.predict_proba(_as_2d(q)))[:, classes.index(1)]
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    # the classifier's odds are the density ratio times its training ratio n_in / n_out
    return np.log(p) - np.log1p(-p) - math.log(a.shape[0] / b.shape[0])


def _check_bandwidth(bandwidth: Any) -> Any:
    if isinstance(bandwidth, str):
        return check_choice(bandwidth, "bandwidth", ["scott", "silverman"])
    return check_real(bandwidth, "bandwidth", 0.0, open_lo=True,
                      what="'scott', 'silverman' or a positive number")


def individual_risk(q: Any, q_train: Any, q_holdout: Any, prior: float = 0.5, *,
                    method: str = "kde", bandwidth: Any = "scott",
                    classifier: Any = "logistic", seed: int = 0) -> np.ndarray:
    """Individual privacy risk ``P(member | q)`` of records with query values ``q``.

    Parameters
    ----------
    q : array [N] or [N, d]
        Query values of the records to assess.
    q_train, q_holdout : array
        Query values of known members and non-members, from which the densities
        ``f_in`` and ``f_out`` are estimated (same width as ``q``).
    prior : float
        The member prior ``pi`` in (0, 1): the share of members among the records an
        attacker considers (0.5: balanced; usually much smaller in practice).
    method : {"kde", "classifier"}
        "kde": Gaussian kernel density estimates of ``f_in`` and ``f_out``
        (``scipy.stats.gaussian_kde``, bandwidth by ``bandwidth``). "classifier": a
        probabilistic classifier of members against non-members whose odds, divided by
        its training ratio ``n_train / n_holdout``, estimate ``f_in / f_out``.
    bandwidth : {"scott", "silverman"} or float
        KDE bandwidth rule: Scott's factor ``n^(-1 / (d + 4))`` times each sample's
        covariance (default), Silverman's, or a fixed factor.
    classifier : {"logistic", "boosting"} or scikit-learn classifier
        "logistic": logistic regression on cubic splines of each standardised query
        dimension; "boosting": gradient boosting, sigmoid-calibrated (3-fold); or any
        estimator with ``predict_proba``.
    seed : int

    Returns
    -------
    numpy.ndarray [N] float64
        ``pi f_in / (pi f_in + (1 - pi) f_out)``, computed as
        ``expit(logit(pi) + log f_in - log f_out)``.

    Notes
    -----
    Densities fitted on the same records that are scored overstate those records' risk
    (each sits on its own kernel); :func:`risk_attack` cross-fits.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> q_in, q_out = rng.normal(0.0, 1.0, 2000), rng.normal(1.0, 1.0, 2000)
    >>> r = mk.generative.individual_risk([-2.0, 0.5, 3.0], q_in, q_out)
    >>> bool(r[0] > 0.8 and abs(r[1] - 0.5) < 0.1 and r[2] < 0.2)
    True
    >>> small = mk.generative.individual_risk([-2.0], q_in, q_out, prior=0.01)
    >>> bool(small[0] < r[0])
    True
    """
    prior = check_probability(prior, "prior")
    check_choice(method, "method", ["kde", "classifier"])
    bandwidth = _check_bandwidth(bandwidth)
    a = _query(q_train, "q_train")
    b = _query(q_holdout, "q_holdout", _width(a), "q_train")
    x = _query(q, "q", _width(a), "q_train")
    seed = check_int(seed, "seed", 0)
    for name, s in (("q_train", a), ("q_holdout", b)):
        if s.shape[0] < 2:
            raise ValueError(f"{name}: expected at least 2 records to estimate a density, "
                             f"got {s.shape[0]}")
    from scipy.special import expit

    return expit(_log_odds(x, a, b, prior, method, bandwidth, classifier, seed))


def _log_odds(x: np.ndarray, a: np.ndarray, b: np.ndarray, prior: float, method: str,
              bandwidth: Any, classifier: Any, seed: int) -> np.ndarray:
    """logit P(member | q) = logit(pi) + log f_in(q) - log f_out(q)."""
    lr = _log_ratio(x, a, b, method, bandwidth, classifier, seed)
    return math.log(prior) - math.log1p(-prior) + lr


# -- attacks and their power -------------------------------------------------------------

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
        """The TprAtFpr of budget ``fpr``."""
        for t in self.tpr:
            if t.target_fpr == fpr:
                return t
        raise KeyError(f"fpr: no TPR measured at {fpr!r}; budgets: "
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


@dataclass(frozen=True)
class RiskAttack:
    """Cross-fitted individual risks of every training and hold-out record.

    Attributes
    ----------
    risk_train, risk_holdout : numpy.ndarray
        ``P(member | q)`` of each record, from densities fitted without its fold.
    power : AttackPower
        The risks used as attack scores.
    prior : float
    method : str
    """

    risk_train: np.ndarray
    risk_holdout: np.ndarray
    power: AttackPower
    prior: float
    method: str


def _folds(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % folds)


def risk_attack(q_train: Any, q_holdout: Any, prior: float = 0.5, *, method: str = "kde",
                folds: int = 2, fprs: Sequence[float] = (0.01, 0.001), level: float = 0.95,
                bandwidth: Any = "scott", classifier: Any = "logistic",
                seed: int = 0) -> RiskAttack:
    """Individual risks of all training and hold-out records, cross-fitted, as an attack.

    Each sample is split at random into ``folds`` parts; the records of part f are
    scored by :func:`individual_risk` with densities estimated from the other parts of
    both samples, so no record is scored by a density it helped fit.

    Parameters
    ----------
    q_train, q_holdout : array
        Query values of members and non-members.
    prior : float
        Member prior of the risks. The ranking, hence the AUC and the TPR at every FPR,
        does not depend on it.
    method, bandwidth, classifier, seed
        As :func:`individual_risk` (the seed also draws the folds).
    folds : int
        Cross-fitting folds (at least 2).
    fprs : sequence of float
        FPR budgets of the attack's TPR.
    level : float
        Confidence level of the TPR intervals.

    Returns
    -------
    RiskAttack

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> r = mk.generative.risk_attack(rng.normal(0, 1, 800), rng.normal(2, 1, 800))
    >>> round(r.power.auc, 2), r.risk_train.shape, bool(r.risk_train.mean() > 0.5)
    (0.93, (800,), True)
    """
    prior = check_probability(prior, "prior")
    check_choice(method, "method", ["kde", "classifier"])
    a = _query(q_train, "q_train")
    b = _query(q_holdout, "q_holdout", _width(a), "q_train")
    folds = check_int(folds, "folds", 2)
    seed = check_int(seed, "seed", 0)
    for name, s in (("q_train", a), ("q_holdout", b)):
        if s.shape[0] < 2 * folds:
            raise ValueError(f"{name}: expected at least {2 * folds} records (2 per fold, "
                             f"folds={folds}), got {s.shape[0]}")
    rng = np.random.default_rng([seed, 29])
    fa, fb = _folds(a.shape[0], folds, rng), _folds(b.shape[0], folds, rng)
    bandwidth = _check_bandwidth(bandwidth)
    odds_a, odds_b = np.empty(a.shape[0]), np.empty(b.shape[0])
    for f in range(folds):
        fit_a, fit_b = a[fa != f], b[fb != f]
        for odds, x, part in ((odds_a, a, fa == f), (odds_b, b, fb == f)):
            odds[part] = _log_odds(x[part], fit_a, fit_b, prior, method, bandwidth,
                                   classifier, seed)
    # the attack ranks by the log-odds: the risks themselves round to 0 or 1 in float64
    # far in the tails, where the log-odds still order the records
    from scipy.special import expit

    power = attack_power(odds_a, odds_b, fprs, level)
    return RiskAttack(risk_train=expit(odds_a), risk_holdout=expit(odds_b), power=power,
                      prior=prior, method=method)


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
    seed = check_int(seed, "seed", 0)
    if n_components is not None:
        k = check_int(n_components, "n_components", 1, x.shape[1])
        from sklearn.decomposition import PCA

        pca = PCA(n_components=k, random_state=seed).fit(np.concatenate([s, r]))
        x, s, r = pca.transform(x), pca.transform(s), pca.transform(r)
    return (_kde_logpdf(s, x, bandwidth, "synthetic")
            - _kde_logpdf(r, x, bandwidth, "reference"))
