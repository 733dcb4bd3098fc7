"""Input checks that name the argument, what was expected and what was received."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from miakit import _arrays as ar

FLOAT_KINDS = ("f",)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_float_array(
    x: Any, name: str, ndim: int | Sequence[int] | None = None, min_ndim: int | None = None
) -> ar.Array:
    x = ar.as_array(x, name)
    if ar.kind(x) not in FLOAT_KINDS:
        raise TypeError(f"{name}: expected a floating-point array, got dtype {ar.dtype_name(x)}")
    if not ar.is_torch(x) and not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))  # the kernels read native byte order only
    _check_ndim(x, name, ndim, min_ndim)
    return x


def check_int_array(x: Any, name: str) -> ar.Array:
    x = ar.as_array(x, name)
    if ar.kind(x) not in ("i", "u"):
        raise TypeError(f"{name}: expected an integer array, got dtype {ar.dtype_name(x)}")
    return x


def _check_ndim(x, name, ndim, min_ndim):
    nd = len(ar.shape_of(x))
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if nd not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name}: expected a {want} array, got shape {ar.shape_of(x)}")
    if min_ndim is not None and nd < min_ndim:
        raise ValueError(
            f"{name}: expected at least {min_ndim} dimensions, got shape {ar.shape_of(x)}"
        )


def check_labels(labels: Any, n_classes: int, name: str = "labels") -> ar.Array:
    labels = check_int_array(labels, name)
    if ar.shape_of(labels) and min(ar.shape_of(labels)) == 0:
        return labels
    lo, hi = ar.minmax(labels)
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name}: expected class indices in [0, {n_classes}), got a value of {int(bad)}"
        )
    return labels


def check_keep(keep: Any, shape: tuple[int, int], name: str = "keep") -> ar.Array:
    """A boolean-like [M, N] membership matrix, returned as a 0/1 uint8 array."""
    keep = ar.as_array(keep, name)
    if ar.shape_of(keep) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (models, examples), "
                         f"got {ar.shape_of(keep)}")
    k = ar.kind(keep)
    if k == "b":
        return ar.as_uint8(keep)
    if k in ("i", "u", "f"):
        bad = (keep != 0) & (keep != 1)
        if bool(bad.any()):
            raise ValueError(f"{name}: expected booleans (or 0/1 values), "
                             f"got other values in a {ar.dtype_name(keep)} array")
        return ar.as_uint8(keep)
    raise TypeError(f"{name}: expected a boolean array, got dtype {ar.dtype_name(keep)}")


def check_probability(value: Any, name: str) -> float:
    """A number strictly between 0 and 1 (an FPR budget, a confidence level, an alpha),
    as a float; the error names the argument."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a float in (0, 1), got {value!r}") from exc
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name}: expected a value in (0, 1), got {value!r}")
    return v


def check_probabilities(values: Any, name: str, *, allow_empty: bool = False) -> list[float]:
    """A sequence of numbers strictly between 0 and 1 (FPR budgets, quantiles), as a list
    of floats; the error names the argument and shows what was received."""
    try:
        v = [float(x) for x in np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected numbers in (0, 1), got {values!r}") from exc
    if (not v and not allow_empty) or not all(0.0 < x < 1.0 for x in v):
        raise ValueError(f"{name}: expected values in (0, 1), got {v}")
    return v


def check_finite(x: ar.Array, name: str) -> None:
    if not ar.is_all_finite(x):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")


def check_targets(targets: Any, m: int) -> np.ndarray:
    """Model indices to attack (default: all m), as an int64 numpy array."""
    if targets is None:
        return np.arange(m, dtype=np.int64)
    tg = np.asarray(ar.to_numpy(targets) if ar.is_torch(targets) else targets)
    if tg.ndim == 0:
        tg = tg.reshape(1)
    if tg.ndim != 1 or tg.size == 0 or tg.dtype.kind not in "iu":
        raise ValueError(f"targets: expected a non-empty 1-D sequence of model indices, got {tg!r}")
    if tg.min() < 0 or tg.max() >= m:
        raise ValueError(f"targets: expected model indices in [0, {m}), got {int(tg.min())}"
                         f"..{int(tg.max())}")
    return tg.astype(np.int64)


def check_clusters(clusters: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Cluster ids flattened like the scores, as codes in 0..C-1 (None: no clusters).

    Ids that are already non-negative and small are used as they are (codes need not be
    dense: empty clusters count nowhere); others are renumbered."""
    if clusters is None:
        return None
    c = ar.to_numpy(ar.as_array(clusters, "clusters"))
    if c.dtype.kind not in "iu":
        raise TypeError(f"clusters: expected integer cluster ids, got dtype {c.dtype}")
    try:
        c = np.broadcast_to(c, shape)
    except ValueError as exc:
        raise ValueError(f"clusters: expected a shape that broadcasts to the scores' "
                         f"{shape}, got {c.shape}") from exc
    flat = c.ravel()
    lo, hi = (int(flat.min()), int(flat.max())) if flat.size else (0, 0)
    if lo >= 0 and hi < 4 * max(flat.size, 1):
        return flat.astype(np.int64, copy=False)  # already small codes: no sort needed
    return np.unique(flat, return_inverse=True)[1].ravel()
