"""Individual privacy risk ``P(member | q)`` per record, and the cross-fitted risk attack.

``P(member | q) = pi f_in(q) / (pi f_in(q) + (1 - pi) f_out(q))`` for any member prior
``pi``, the density ratio from kernel density estimates or a classifier
(:func:`individual_risk`); :func:`risk_attack` scores every training and hold-out
record with cross-fitted risks and reports the attack's power
(:func:`miakit.generative.attacks.attack_power`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from miakit._validation import (
    check_choice,
    check_int,
    check_probability,
    check_seed,
    sklearn_random_state,
)
from miakit.generative._estimators import (
    CLASSIFIERS,
    _as_2d,
    _check_bandwidth,
    _kde_logpdf,
    _make_classifier,
    _query,
    _width,
)
from miakit.generative.attacks import AttackPower, attack_power

__all__ = ["individual_risk", "risk_attack", "RiskAttack"]


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
            max_iter=100, random_state=sklearn_random_state(seed)), method="sigmoid", cv=3)
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
    seed = check_seed(seed)
    for name, s in (("q_train", a), ("q_holdout", b)):
        if s.shape[0] < 2:
            raise ValueError(f"{name}: expected at least 2 records to estimate a density, "
                             f"got {s.shape[0]}")
    from scipy.special import expit

    return expit(_log_odds(x, a, b, prior, method, bandwidth, classifier, seed))


def _log_odds(x: np.ndarray, a: np.ndarray, b: np.ndarray, prior: float, method: str,
              bandwidth: Any, classifier: Any, seed: int, name: str = "q") -> np.ndarray:
    """logit P(member | q) = logit(pi) + log f_in(q) - log f_out(q); ``name`` is the
    argument that holds ``x`` (for the error)."""
    lr = _log_ratio(x, a, b, method, bandwidth, classifier, seed)
    lost = np.isnan(lr)
    if lost.any():  # both densities underflow to 0 (or overflow): the ratio is lost
        raise ValueError(f"{name}: {int(lost.sum())} values lie so far from both samples "
                         f"that neither density is representable in float64 (e.g. "
                         f"{_as_2d(x)[np.flatnonzero(lost)[0]].tolist()})")
    return math.log(prior) - math.log1p(-prior) + lr


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
    seed = check_seed(seed)
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
        for odds, x, part, name in ((odds_a, a, fa == f, "q_train"),
                                    (odds_b, b, fb == f, "q_holdout")):
            odds[part] = _log_odds(x[part], fit_a, fit_b, prior, method, bandwidth,
                                   classifier, seed, name)
    # the attack ranks by the log-odds: the risks themselves round to 0 or 1 in float64
    # far in the tails, where the log-odds still order the records
    from scipy.special import expit

    power = attack_power(odds_a, odds_b, fprs, level)
    return RiskAttack(risk_train=expit(odds_a), risk_holdout=expit(odds_b), power=power,
                      prior=prior, method=method)
