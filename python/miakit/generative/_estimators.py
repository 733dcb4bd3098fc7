"""What the advantage, the risks and DOMIAS share: query values and two estimators.

Every public function checks its query values here, into float64 ``[n]`` (scalar
query) or ``[n, d]`` (vector query) arrays; the classifiers (the advantage's two-sample
estimate, the risks' density ratio) and the Gaussian kernel density estimate are built
here, so that each module uses the same ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit._validation import check_choice, check_finite, check_real, sklearn_random_state

CLASSIFIERS = ("logistic", "boosting")


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
                                              random_state=sklearn_random_state(seed))
    if not (hasattr(classifier, "fit") and hasattr(classifier, "predict")):
        raise TypeError(f"classifier: expected one of {list(CLASSIFIERS)} or a scikit-learn "
                        f"classifier, got {type(classifier).__name__}")
    return clone(classifier)


def _as_2d(x: np.ndarray) -> np.ndarray:
    return x[:, None] if x.ndim == 1 else x


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
    except ValueError as exc:  # scipy's "array must not contain infs or NaNs"
        raise ValueError(f"{name}: the query values overflow a kernel density estimate "
                         f"(their covariance is not finite in float64): {exc}") from exc


def _check_bandwidth(bandwidth: Any) -> Any:
    if isinstance(bandwidth, str):
        return check_choice(bandwidth, "bandwidth", ["scott", "silverman"])
    return check_real(bandwidth, "bandwidth", 0.0, open_lo=True,
                      what="'scott', 'silverman' or a positive number")
