"""Input checks that name the argument, what was expected and what was received.

Every public function checks its arguments through these helpers, so that one kind of
argument (an integer in a range, a number in an interval, a choice among names, a
boolean keep matrix, labels, a finite array) is checked, and its error worded, in one
place. A value of the wrong type raises ``TypeError``, a value of the right type outside
its range ``ValueError``; both name the argument, say what was expected and show what
was received.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from miakit import _arrays as ar

FLOAT_KINDS = ("f",)


class NotAnIntegerError(TypeError, ValueError):
    """An integer argument received something else (a float, a bool, a string).

    A ``TypeError``; also a ``ValueError``, as these checks raised before they were
    gathered here, so that callers catching either keep working."""


def check_int(value: Any, name: str, lo: int | None = None, hi: int | None = None, *,
              what: str | None = None) -> int:
    """An integer in ``[lo, hi]`` (a bound of None: no bound), returned as an ``int``.

    Parameters
    ----------
    value : Any
        A Python or numpy integer; ``bool`` is refused.
    name : str
        The argument's name, first in the error message.
    lo, hi : int or None
        Inclusive bounds.
    what : str, optional
        How the message words what was expected ("a positive int"); by default the
        bounds ("an int >= 1", "an int in [2, 10]").

    Raises
    ------
    NotAnIntegerError
        ``value`` is not an integer (a ``TypeError``, and a ``ValueError``); the message
        says "expected an int" and the type received.
    ValueError
        ``value`` lies outside the bounds.
    """
    if lo is not None and hi is not None:
        want = f"an int in [{lo}, {hi}]"
    elif lo is not None:
        want = f"an int >= {lo}"
    elif hi is not None:
        want = f"an int <= {hi}"
    else:
        want = "an int"
    want = what or want
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise NotAnIntegerError(f"{name}: expected an int, got {type(value).__name__}")
    v = operator.index(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name}: expected {want}, got {v}")
    return v


SEED_LIMIT = 2**64
"""Seeds are ints in ``[0, SEED_LIMIT)``: what numpy's ``SeedSequence`` and
``torch.manual_seed`` both take without folding or refusing a value."""

SEED_EXPECTED = "a non-negative int below 2**64"


def check_seed(value: Any, name: str = "seed") -> int:
    """A random seed: an int in ``[0, 2**64)`` (bools refused), returned as an ``int``.

    Every seed that enters the public API goes through here, so that ``seed=-1``,
    ``True``, ``2.5``, ``"3"`` or ``2**64`` fail at once, naming the argument, rather
    than inside numpy or torch with a message that names nothing.

    Examples
    --------
    >>> from miakit._validation import check_seed
    >>> check_seed(7)
    7
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    ValueError: seed: expected a non-negative int below 2**64, got -1
    """
    return check_int(value, name, 0, SEED_LIMIT - 1, what=SEED_EXPECTED)


def sklearn_random_state(seed: int) -> Any:
    """A checked seed as scikit-learn's ``random_state``, which takes ints below 2**32
    only: the seed itself there (so such seeds give what they always gave), else a
    ``RandomState`` seeded with the whole seed.

    Examples
    --------
    >>> from miakit._validation import sklearn_random_state
    >>> sklearn_random_state(7), type(sklearn_random_state(2**40)).__name__
    (7, 'RandomState')
    """
    if seed < 2**32:
        return seed
    return np.random.RandomState(np.random.MT19937(seed))


def check_real(value: Any, name: str, lo: float | None = None, hi: float | None = None, *,
               open_lo: bool = False, open_hi: bool = False, allow_inf: bool = False,
               what: str | None = None) -> float:
    """A real number in an interval, returned as a ``float``; NaN is always refused, and
    infinity unless ``allow_inf``.

    Parameters
    ----------
    value : Any
        A real number (Python, numpy, a 0-d array or tensor); not a bool or a string.
    name : str
        The argument's name, first in the error message.
    lo, hi : float or None
        The bounds (None: none); ``open_lo`` / ``open_hi`` exclude them.
    allow_inf : bool
        Accept an infinite value that the bounds admit (an epsilon of ``inf``).
    what : str, optional
        How the message words what was expected ("a positive finite float"); by
        default the interval ("a number in (0, 1]").

    Raises
    ------
    TypeError
        ``value`` is not a number.
    ValueError
        ``value`` is NaN, infinite (unless allowed) or outside the interval.
    """
    if what is None:
        left = "(" if open_lo else "["
        right = ")" if open_hi else "]"
        if lo is not None and hi is not None:
            what = f"a number in {left}{lo}, {hi}{right}"
        elif lo is not None:
            what = f"a {'' if allow_inf else 'finite '}number {'>' if open_lo else '>='} {lo}"
        elif hi is not None:
            what = f"a {'' if allow_inf else 'finite '}number {'<' if open_hi else '<='} {hi}"
        else:
            what = "a finite number" if not allow_inf else "a number"
    if isinstance(value, (bool, np.bool_, str, bytes)) or _is_complex(value):
        raise TypeError(f"{name}: expected {what}, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected {what}, got {value!r}") from exc
    except OverflowError:  # an int beyond the float range: a number, out of every range
        raise ValueError(f"{name}: expected {what}, got a number beyond the float range "
                         f"({type(value).__name__})") from None
    ok = not math.isnan(v) and (allow_inf or not math.isinf(v))
    if lo is not None:
        ok = ok and (v > lo if open_lo else v >= lo)
    if hi is not None:
        ok = ok and (v < hi if open_hi else v <= hi)
    if not ok:
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return v


def _is_complex(value: Any) -> bool:
    """A complex number or array (numpy or torch), which ``float()`` would cut to its real
    part (numpy with a warning, a torch tensor silently)."""
    if ar.is_torch(value):
        return bool(value.dtype.is_complex)
    return isinstance(value, complex) or np.iscomplexobj(value)


def check_choice(value: Any, name: str, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices`` (names of options), else ``ValueError``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_float_array(
    x: Any, name: str, ndim: int | Sequence[int] | None = None, min_ndim: int | None = None
) -> ar.Array:
    """A floating-point array (numpy in native byte order, or torch) with ``ndim`` (one
    or several allowed) or at least ``min_ndim`` dimensions, else ``TypeError`` (dtype)
    or ``ValueError`` (shape)."""
    x = ar.as_array(x, name)
    if ar.kind(x) not in FLOAT_KINDS:
        raise TypeError(f"{name}: expected a floating-point array, got dtype {ar.dtype_name(x)}")
    if not ar.is_torch(x) and not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))  # the kernels read native byte order only
    _check_ndim(x, name, ndim, min_ndim)
    return x


def check_real_array(x: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """Real numbers (floats, integers or booleans; numpy, torch or a sequence) as a numpy
    array of ``dtype`` on the host, else ``TypeError``.

    Complex numbers would lose their imaginary part and strings ("0.5") would be parsed:
    both are refused, as are objects. bfloat16 tensors are read exactly; any shape.
    """
    return np.asarray(ar.to_numpy(check_real_values(x, name)), dtype=dtype)


def check_real_values(x: Any, name: str) -> ar.Array:
    """:func:`check_real_array` for code that keeps a torch tensor on its device: ``x``
    as a numpy array or torch tensor of real numbers (any dtype), else ``TypeError``."""
    a = ar.as_array(x, name)
    if ar.kind(a) not in "fiub":
        raise TypeError(f"{name}: expected real numbers, got dtype {ar.dtype_name(a)}")
    return a


def check_int_array(x: Any, name: str) -> ar.Array:
    """An array of integers (numpy or torch, any shape), else ``TypeError``."""
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


def check_bool_array(x: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Booleans (or 0/1 numbers) as a numpy bool array, of ``shape`` when given; torch
    tensors are copied to the host."""
    y = np.asarray(ar.to_numpy(ar.as_array(x, name)))
    if shape is not None and y.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {y.shape}")
    if y.dtype.kind != "b" and (y.dtype.kind not in "iuf" or not np.isin(y, (0, 1)).all()):
        raise ValueError(f"{name}: expected booleans (or 0/1 values), got dtype {y.dtype}")
    return y.astype(bool)


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
    return check_real(value, name, 0.0, 1.0, open_lo=True, open_hi=True,
                      what="a value in (0, 1)")


def check_probabilities(values: Any, name: str, *, allow_empty: bool = False) -> list[float]:
    """A sequence of numbers strictly between 0 and 1 (FPR budgets, quantiles), as a list
    of floats; the error names the argument and shows what was received."""
    try:
        given = np.atleast_1d(np.asarray(values))
        if given.dtype.kind not in "iuf":  # no strings ("0.1"), complex, bools or objects
            raise TypeError(given.dtype)
        v = [float(x) for x in given.astype(np.float64).ravel()]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected numbers in (0, 1), got {values!r}") from exc
    if (not v and not allow_empty) or not all(0.0 < x < 1.0 for x in v):
        raise ValueError(f"{name}: expected values in (0, 1), got {v}")
    return v


def renamed_error(exc: ValueError, names: dict[str, str]) -> ValueError:
    """``exc`` with the argument it names (the text before its first ``:``) replaced by
    the caller's name for it (``{"shadow_scores": "curvature"}``), so that an error raised
    by a function called with derived arguments names the caller's own argument; ``exc``
    itself when it names none of ``names``."""
    text = str(exc)
    for inner, outer in names.items():
        if text.startswith(inner + ":"):
            return ValueError(f"{outer}:{text[len(inner) + 1:]}")
    return exc


def check_finite(x: ar.Array, name: str) -> None:
    """``ValueError`` when ``x`` (numpy or torch) holds a NaN or an infinity."""
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


# -- the shadow-model experiment: keep matrices, labels and features as runs store them --

def check_keep_matrix(keep: Any, even: bool = True) -> np.ndarray:
    """A keep matrix ``[models, examples]`` as a C-contiguous numpy bool array: booleans
    (or 0/1 values), at least 2 models (an even number when ``even``), at least one
    example. Torch tensors are copied to the host."""
    if hasattr(keep, "detach"):
        keep = ar.to_numpy(keep)
    keep = np.asarray(keep)
    if keep.ndim != 2:
        raise ValueError(f"keep: expected a 2-D [models, examples] array, got shape {keep.shape}")
    if keep.dtype != np.bool_:
        if keep.dtype.kind not in "iuf" or not np.isin(keep, (0, 1)).all():
            raise ValueError(f"keep: expected booleans (or 0/1 values), got dtype {keep.dtype}")
        keep = keep.astype(bool)
    m, n = keep.shape
    if m < 2 or (even and m % 2):
        raise ValueError(f"keep: expected an even number of models >= 2 (rows), got {m}; "
                         "LiRA needs each example IN and OUT for as many models")
    if n < 1:
        raise ValueError("keep: expected at least one example (column)")
    return np.ascontiguousarray(keep)


def check_run_labels(labels: Any, n: int, n_classes: int) -> np.ndarray:
    """``n`` integer class indices in ``[0, n_classes)`` as a numpy int64 array (the
    labels of a run); float labels that are whole numbers get a hint in the error."""
    if hasattr(labels, "detach"):
        labels = ar.to_numpy(labels)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and labels.size and np.all(np.isfinite(labels)) and \
                np.all(labels == np.round(labels)):
            hint = " (they are whole numbers: pass labels.astype(int))"
        else:
            hint = ""
        raise TypeError(f"labels: expected integer class indices, got dtype {labels.dtype}{hint}")
    if labels.shape != (n,):
        raise ValueError(f"labels: expected shape ({n},) to match keep, got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise ValueError(f"labels: expected class indices in [0, {n_classes}), got {int(bad)}")
    return labels.astype(np.int64)


def check_features(features: Any) -> np.ndarray:
    """Features as shadow heads are trained on, stored and digested: a C-contiguous
    float32 numpy array ``[N, A, D]`` (``[N, D]`` is read as one view)."""
    if hasattr(features, "detach"):
        features = ar.to_numpy(features)
    x = np.asarray(features)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise TypeError(f"features: expected a real-valued array, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"features: expected a non-empty [N, D] or [N, A, D] array, got shape "
                         f"{np.shape(features)}")
    return np.ascontiguousarray(x, dtype=np.float32)


def check_records(x: Any, name: str, width: int | None = None, width_of: str = "") -> np.ndarray:
    """Records as a finite float64 numpy array ``[n, D]`` with ``n, D >= 1`` (and
    ``D == width`` when given; ``width_of`` names what sets that width)."""
    a = ar.as_array(x, name)
    if ar.kind(a) not in ("f", "i", "u", "b"):
        raise TypeError(f"{name}: expected real-valued records, got dtype {ar.dtype_name(a)}")
    a = np.asarray(ar.to_numpy(a), dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name}: expected a 2-D array [records, features] with at least "
                         f"one record, got shape {a.shape}")
    check_finite(a, name)
    if width is not None and a.shape[1] != width:
        raise ValueError(f"{name}: expected {width} features per record (the width of "
                         f"{width_of}), got shape {a.shape}")
    return a
