"""The optimal membership advantage of a query, with a confidence interval.

Scalar queries: the Kolmogorov-Smirnov statistic (the best threshold's advantage), its
threshold and direction, and a two-sample DKW interval; vector queries: a cross-fitted
classifier two-sample estimate ``2 acc - 1`` on balanced folds with a Clopper-Pearson
interval. :func:`min_records` is the sample size either interval needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from miakit._validation import (
    check_choice,
    check_int,
    check_probability,
    check_seed,
    sklearn_random_state,
)
from miakit.generative._estimators import _as_2d, _make_classifier, _query, _width

__all__ = ["min_records", "membership_advantage", "MembershipAdvantage"]


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
    seed = check_seed(seed)
    folds = check_int(folds, "folds", 2)  # checked when unused too: a typo is not ignored
    _check_counts(a.shape[0], b.shape[0], level)
    if method == "auto":
        method = "ks" if a.ndim == 1 else "classifier"
    if method == "ks":
        if a.ndim != 1:
            raise ValueError(f"method: 'ks' needs scalar queries, got q_train of shape "
                             f"{a.shape}; use method='classifier'")
        return _advantage_ks(a, b, level)
    return _advantage_classifier(a, b, level, classifier, folds, seed)


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
    folding = StratifiedKFold(folds, shuffle=True, random_state=sklearn_random_state(seed))
    for tr, te in folding.split(x, y):
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
