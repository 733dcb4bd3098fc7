"""Small datasets that need no download, for the default audit and for tests.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 grey 8x8 images, 10
  classes, shipped inside scikit-learn). Features are the 64 pixel intensities scaled to
  [0, 1]; the second query view shifts the image one pixel to the right (digits are not
  mirror-symmetric, so a horizontal flip would change the class).
- ``synthetic``: a Gaussian mixture, one isotropic cluster per class (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from miakit._validation import check_choice, check_int

__all__ = ["Dataset", "load", "digits", "synthetic", "NAMES"]

NAMES = ("digits", "synthetic")


@dataclass(frozen=True)
class Dataset:
    """Features with query views, labels and a description.

    Attributes
    ----------
    name : str
    features : numpy.ndarray [N, A, D] float32
        Feature vector of each example under each of A query views.
    labels : numpy.ndarray [N] int64
    n_classes : int
    views : tuple of str
        Name of each view (the A axis).
    description : str
    images : numpy.ndarray or None
        [N, 1, H, W] float32 images for datasets that have them.
    info : dict
        JSON-serialisable parameters (source, sizes, seed).
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    n_classes: int
    views: tuple[str, ...]
    description: str
    images: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def digits(n_examples: int | None = None, views: int = 2, subset_seed: int = 0) -> Dataset:
    """scikit-learn's bundled handwritten digits (no download).

    Parameters
    ----------
    n_examples : int, optional
        Keep a random subset of this many of the 1,797 images (drawn with
        ``subset_seed``, independent of any run seed); default all.
    views : {1, 2}
        1: the image only; 2: the image and the image shifted right by one pixel.
    subset_seed : int
        Seed of the subset.

    Examples
    --------
    >>> from miakit.datasets import digits
    >>> d = digits()
    >>> d.features.shape, d.n_classes
    ((1797, 2, 64), 10)
    >>> digits(n_examples=600).labels.shape
    (600,)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - sklearn is in the audit extra
        raise ImportError("the digits dataset comes with scikit-learn: "
                          "pip install 'miakit[audit]'") from exc
    check_int(views, "views", 1, 2, what="1 or 2")
    d = load_digits()
    n_all = len(d.target)
    if n_examples is None:
        idx = np.arange(n_all)
    else:
        check_int(n_examples, "n_examples", 2, n_all)
        idx = np.sort(np.random.default_rng(subset_seed).permutation(n_all)[:n_examples])
    images = (d.images[idx] / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    shifted = np.zeros_like(images)
    shifted[..., 1:] = images[..., :-1]
    stack = [images, shifted][:views]
    feats = np.stack([v.reshape(len(v), -1) for v in stack], axis=1)
    names = ("identity", "shift_right")[:views]
    return Dataset("digits", np.ascontiguousarray(feats), d.target[idx].astype(np.int64), 10,
                   names, f"scikit-learn handwritten digits: {len(idx)} of {n_all} 8x8 images, "
                   "10 classes, pixel features in [0, 1]", images,
                   {"source": "sklearn.datasets.load_digits", "n_examples": len(idx),
                    "subset_seed": subset_seed if n_examples is not None else None,
                    "views": list(names)})


def synthetic(n: int = 2000, dim: int = 32, n_classes: int = 10, separation: float = 1.0,
              seed: int = 0) -> Dataset:
    """A Gaussian mixture: class c is ``N(mu_c, I)`` with
    ``mu_c ~ N(0, separation^2 * n_classes / dim * I)``.

    The spread of the class means grows with the number of classes: two means are
    ``separation * sqrt(2 * n_classes)`` noise standard deviations apart on average
    (``E||mu_a - mu_b||^2 = 2 separation^2 n_classes``), whatever ``dim``. With the
    defaults (10 classes, 32 features) that is about 4.5, so the classes are well but not
    perfectly separable, as the default audit and ``miakit leakage`` want.

    Parameters
    ----------
    n : int
        Number of examples (>= 2); labels are drawn uniformly from the classes.
    dim : int
        Number of features.
    n_classes : int
        Number of classes (>= 2).
    separation : float
        Scale of the class means (0: every class is the same standard normal).
    seed : int
        Seed of the means, the labels and the noise (one ``numpy.random.default_rng``).

    Examples
    --------
    >>> from miakit.datasets import synthetic
    >>> d = synthetic(n=100, dim=8, n_classes=3)
    >>> d.features.shape, int(d.labels.max())
    ((100, 1, 8), 2)
    """
    for name, v, lo in (("n", n, 2), ("dim", dim, 1), ("n_classes", n_classes, 2)):
        check_int(v, name, lo)
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_classes, dim)) * separation * np.sqrt(n_classes / dim)
    y = rng.integers(0, n_classes, n)
    x = (means[y] + rng.normal(size=(n, dim))).astype(np.float32)
    return Dataset("synthetic", x[:, None, :], y.astype(np.int64), n_classes, ("identity",),
                   f"Gaussian mixture: {n} examples, {dim} features, {n_classes} classes",
                   None, {"n": n, "dim": dim, "n_classes": n_classes,
                          "separation": separation, "seed": seed})


def load(name: str, **kwargs: Any) -> Dataset:
    """A dataset by name: "digits" or "synthetic" (keyword arguments go to its loader).

    Examples
    --------
    >>> import miakit.datasets as ds
    >>> ds.load("synthetic", n=50, dim=4, n_classes=2).labels.shape
    (50,)
    """
    check_choice(name, "dataset", NAMES)
    return digits(**kwargs) if name == "digits" else synthetic(**kwargs)
