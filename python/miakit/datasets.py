"""Small datasets that need no download, for the default audit and for tests.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 grey 8x8 images, 10
  classes, shipped inside scikit-learn). Features are the 64 pixel intensities scaled to
  [0, 1]; the second query view shifts the image one pixel to the right (digits are not
  mirror-symmetric, so a horizontal flip would change the class).
- ``synthetic``: a Gaussian mixture, one isotropic cluster per class (numpy only).

Both can plant records that a model can only get right by memorizing them
(``planted=0.02``; docs/methods/vulnerability.md), in the spirit of Choi et al.'s mix of
in-distribution and out-of-distribution data: ``planted_kind="relabel"`` gives a random
share of the records another class, ``"ood"`` replaces them by uniform noise with a random
label. ``Dataset.planted`` says which records were planted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from miakit._validation import check_choice, check_int, check_real, check_seed

__all__ = ["Dataset", "load", "digits", "synthetic", "NAMES", "PLANTED_KINDS"]

NAMES = ("digits", "synthetic")
PLANTED_KINDS = ("relabel", "ood")


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
        JSON-serialisable parameters (source, sizes, seed); with planted records, under
        ``"planted"``: the fraction, kind, seed and the planted ``indices``.
    planted : numpy.ndarray [N] bool or None
        Which records were planted (relabelled or out of distribution); None when the
        dataset was loaded without ``planted``.
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    n_classes: int
    views: tuple[str, ...]
    description: str
    images: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    planted: np.ndarray | None = None


def _check_planted(planted: float, planted_kind: str, planted_seed: int) -> float:
    frac = check_real(planted, "planted", 0.0, 1.0, open_hi=True, what="a fraction in [0, 1)")
    check_choice(planted_kind, "planted_kind", PLANTED_KINDS)
    check_seed(planted_seed, "planted_seed")
    return frac


def _plant(n: int, n_classes: int, labels: np.ndarray, frac: float, kind: str,
           seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Which records to plant (round(frac * n) of them, at least 1 when frac > 0) and their
    new labels: another class for "relabel", any class for "ood". Drawn from their own
    generator, so that the unplanted records are the same with or without planting."""
    rng = np.random.default_rng([seed, 0x9A17])
    k = max(1, int(round(frac * n))) if frac > 0 else 0
    idx = np.sort(rng.permutation(n)[:k])
    y = labels.copy()
    if kind == "relabel":
        y[idx] = (labels[idx] + rng.integers(1, n_classes, k)) % n_classes
    else:
        y[idx] = rng.integers(0, n_classes, k)
    mask = np.zeros(n, bool)
    mask[idx] = True
    return mask, y, rng


def _planted_info(mask: np.ndarray, frac: float, kind: str, seed: int) -> dict[str, Any]:
    return {"fraction": frac, "kind": kind, "seed": seed,
            "indices": np.flatnonzero(mask).tolist()}


def digits(n_examples: int | None = None, views: int = 2, subset_seed: int = 0, *,
           planted: float = 0.0, planted_kind: str = "relabel",
           planted_seed: int = 0) -> Dataset:
    """scikit-learn's bundled handwritten digits (no download), optionally with planted
    records that a model can only fit by memorizing them.

    Parameters
    ----------
    n_examples : int, optional
        Keep a random subset of this many of the 1,797 images (drawn with
        ``subset_seed``, independent of any run seed); default all.
    views : {1, 2}
        1: the image only; 2: the image and the image shifted right by one pixel.
    subset_seed : int
        Seed of the subset.
    planted : float
        Fraction in [0, 1) of the records to plant (``round(planted * N)``, at least one
        when positive); 0: none, and ``Dataset.planted`` is None.
    planted_kind : {"relabel", "ood"}
        "relabel": a planted record keeps its image and gets another class, drawn
        uniformly. "ood": its image is replaced by uniform noise in [0, 1] (both views
        derived from the noise image as from a digit) and its label is drawn uniformly.
    planted_seed : int
        Seed of the planted records, their labels and noise (independent of
        ``subset_seed`` and of any run seed).

    Examples
    --------
    >>> from miakit.datasets import digits
    >>> d = digits()
    >>> d.features.shape, d.n_classes
    ((1797, 2, 64), 10)
    >>> digits(n_examples=600).labels.shape
    (600,)
    >>> p = digits(n_examples=600, planted=0.02)
    >>> int(p.planted.sum()), bool((p.labels != digits(n_examples=600).labels)[p.planted].all())
    (12, True)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - sklearn is in the audit extra
        raise ImportError("the digits dataset comes with scikit-learn: "
                          "pip install 'miakit[audit]'") from exc
    check_int(views, "views", 1, 2, what="1 or 2")
    check_seed(subset_seed, "subset_seed")
    frac = _check_planted(planted, planted_kind, planted_seed)
    d = load_digits()
    n_all = len(d.target)
    if n_examples is None:
        idx = np.arange(n_all)
    else:
        check_int(n_examples, "n_examples", 2, n_all)
        idx = np.sort(np.random.default_rng(subset_seed).permutation(n_all)[:n_examples])
    images = (d.images[idx] / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    labels = d.target[idx].astype(np.int64)
    mask = None
    if frac > 0:
        mask, labels, rng = _plant(len(idx), 10, labels, frac, planted_kind, planted_seed)
        if planted_kind == "ood":
            images[mask] = rng.random((int(mask.sum()), *images.shape[1:])).astype(np.float32)
    shifted = np.zeros_like(images)
    shifted[..., 1:] = images[..., :-1]
    stack = [images, shifted][:views]
    feats = np.stack([v.reshape(len(v), -1) for v in stack], axis=1)
    names = ("identity", "shift_right")[:views]
    info: dict[str, Any] = {"source": "sklearn.datasets.load_digits", "n_examples": len(idx),
                            "subset_seed": subset_seed if n_examples is not None else None,
                            "views": list(names)}
    desc = (f"scikit-learn handwritten digits: {len(idx)} of {n_all} 8x8 images, 10 classes, "
            "pixel features in [0, 1]")
    if mask is not None:
        info["planted"] = _planted_info(mask, frac, planted_kind, planted_seed)
        desc += f"; {int(mask.sum())} planted records ({planted_kind})"
    return Dataset("digits", np.ascontiguousarray(feats), labels, 10, names, desc, images,
                   info, mask)


def synthetic(n: int = 2000, dim: int = 32, n_classes: int = 10, separation: float = 1.0,
              seed: int = 0, *, planted: float = 0.0, planted_kind: str = "relabel",
              planted_seed: int = 0) -> Dataset:
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
    planted, planted_kind, planted_seed
        Planted records, as for :func:`digits`; "ood" records are uniform noise over the
        box ``[-a, a]^dim`` with ``a`` the largest absolute feature of the mixture.

    Examples
    --------
    >>> from miakit.datasets import synthetic
    >>> d = synthetic(n=100, dim=8, n_classes=3)
    >>> d.features.shape, int(d.labels.max())
    ((100, 1, 8), 2)
    """
    for name, v, lo in (("n", n, 2), ("dim", dim, 1), ("n_classes", n_classes, 2)):
        check_int(v, name, lo)
    for rows, name in ((n, "n"), (n_classes, "n_classes")):
        if rows * dim > 2**31:  # the float64 draws of the features and of the means
            raise ValueError(f"{name}, dim: {rows} x {dim} values are more than 2**31")
    separation = check_real(separation, "separation", 0.0)
    frac = _check_planted(planted, planted_kind, planted_seed)
    rng = np.random.default_rng(check_seed(seed))
    means = rng.normal(size=(n_classes, dim)) * separation * np.sqrt(n_classes / dim)
    y = rng.integers(0, n_classes, n).astype(np.int64)
    x = (means[y] + rng.normal(size=(n, dim))).astype(np.float32)
    info: dict[str, Any] = {"n": n, "dim": dim, "n_classes": n_classes,
                            "separation": separation, "seed": seed}
    desc = f"Gaussian mixture: {n} examples, {dim} features, {n_classes} classes"
    mask = None
    if frac > 0:
        mask, y, prng = _plant(n, n_classes, y, frac, planted_kind, planted_seed)
        if planted_kind == "ood":
            a = float(np.abs(x).max())
            x[mask] = prng.uniform(-a, a, (int(mask.sum()), dim)).astype(np.float32)
        info["planted"] = _planted_info(mask, frac, planted_kind, planted_seed)
        desc += f"; {int(mask.sum())} planted records ({planted_kind})"
    return Dataset("synthetic", x[:, None, :], y, n_classes, ("identity",), desc, None, info,
                   mask)


def load(name: str, **kwargs: Any) -> Dataset:
    """A dataset by name: "digits" or "synthetic" (keyword arguments go to its loader).

    Examples
    --------
    >>> import miakit.datasets as ds
    >>> ds.load("synthetic", n=50, dim=4, n_classes=2).labels.shape
    (50,)
    """
    check_choice(name, "name", NAMES)
    return digits(**kwargs) if name == "digits" else synthetic(**kwargs)
