"""Membership signals computed from logits (docs/methods/signals.md).

Every function takes ``logits`` of shape ``[..., C]`` and integer ``labels`` that
broadcast against ``logits.shape[:-1]`` by numpy's rules (for shadow logits
``[M, N, A, C]`` pass ``labels[:, None]``), and returns one value per logit row on the
caller's device. float16/bfloat16/float32 logits give float32 results, float64 logits
give float64 (all arithmetic is done in float64 either way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar
from miakit._arrays import match_device
from miakit._options import SIGNALS
from miakit._status import message, raise_for_status
from miakit._validation import check_choice, check_float_array, check_labels

__all__ = ["scaled_confidence", "hinge", "loss", "confidence", "max_confidence", "correct",
           "grad_norm", "compute"]

# Signal names -> members of the compiled kernel's Signal enum (miakit._options, the one
# table; csrc/include/miakit/signals.h).
SIGNAL_CODES = SIGNALS


def prepare_logits_labels(logits: Any, labels: Any, lead_shape=None, name: str = "logits"):
    """Validate logits ``[..., C]`` and labels; return (logits, int64 labels broadcast).
    ``name`` is the logits' argument in the caller, as errors name it."""
    logits = check_float_array(logits, name, min_ndim=1)
    shape = ar.shape_of(logits)
    n_classes = shape[-1]
    if n_classes < 2:
        raise ValueError(f"{name}: expected at least 2 classes in the last axis, got shape "
                         f"{shape}")
    labels = match_device(check_labels(labels, n_classes), logits, "labels", name)
    target = shape[:-1] if lead_shape is None else lead_shape
    try:
        labels = ar.broadcast_to(ar.as_int64(labels), target)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(
            f"labels: expected a shape that broadcasts against {target} "
            f"({'logits.shape[:-1]' if lead_shape is None else 'one label per example'}), "
            f"got shape {ar.shape_of(labels)}"
        ) from exc
    return logits, labels


def _signal(logits: Any, labels: Any, name: str) -> Any:
    logits, labels = prepare_logits_labels(logits, labels)
    out_dtype = "float64" if ar.dtype_name(logits) == "float64" else "float32"
    out = ar.empty_like_device(logits, ar.shape_of(logits)[:-1], out_dtype)
    st = _C.signal(
        ar.kernel_arg(logits), ar.kernel_arg(labels), ar.kernel_arg(out),
        SIGNAL_CODES[name], ar.stream_of(logits),
    )
    raise_for_status(st, _signal_checks(ar.shape_of(logits)[-1]))
    return out


def _signal_checks(n_classes: int) -> dict[str, str]:
    # the signal kernels count rows: a row with a NaN logit, a row whose label is outside
    return {"nonfinite": message("nonfinite_rows", "logits"),
            "bad_label": message("bad_label", "labels", n_classes=n_classes)}


def scaled_confidence(logits: Any, labels: Any) -> Any:
    """LiRA's scaled confidence ``z_y - logsumexp_{j != y} z_j``.

    This equals ``log p_y - log(1 - p_y)`` but is computed without cancellation, so it
    stays exact when ``p_y`` rounds to 1.

    Parameters
    ----------
    logits : array_like or torch.Tensor, shape [..., C]
        Logits, float16/bfloat16/float32/float64, any strides, on the CPU or a GPU.
    labels : array_like or torch.Tensor of int
        True classes in ``[0, C)``, broadcastable against ``logits.shape[:-1]``.

    Returns
    -------
    array, shape ``logits.shape[:-1]``
        float32 (float64 for float64 logits), same array type and device as ``logits``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> z = np.array([[2.0, 0.0, 0.0]], dtype=np.float32)
    >>> float(mk.signals.scaled_confidence(z, np.array([0]))[0])  # 2 - log(2)
    1.3068528...
    """
    return _signal(logits, labels, "scaled_confidence")


def hinge(logits: Any, labels: Any) -> Any:
    """Hinge signal ``z_y - max_{j != y} z_j`` (see :func:`scaled_confidence` for the
    arguments).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.signals.hinge(np.array([[2.0, 0.5, 1.0]]), np.array([0]))
    array([1.])
    """
    return _signal(logits, labels, "hinge")


def loss(logits: Any, labels: Any) -> Any:
    """Cross-entropy loss ``-log p_y`` per row (see :func:`scaled_confidence`).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.signals.loss(np.array([[0.0, 0.0]]), np.array([1]))  # log 2
    array([0.69314718])
    """
    return _signal(logits, labels, "loss")


def confidence(logits: Any, labels: Any) -> Any:
    """True-class probability ``p_y = softmax(z)_y`` (see :func:`scaled_confidence`).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.signals.confidence(np.array([[0.0, 0.0]]), np.array([1]))
    array([0.5])
    """
    return _signal(logits, labels, "confidence")


def max_confidence(logits: Any, labels: Any = 0) -> Any:
    """Largest softmax probability ``max_j p_j``; ``labels`` is not used but is checked
    when given (see :func:`scaled_confidence`).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.signals.max_confidence(np.array([[0.0, 0.0, 0.0, 0.0]]))
    array([0.25])
    """
    return _signal(logits, labels, "max_confidence")


def correct(logits: Any, labels: Any) -> Any:
    """Correctness ``argmax z == y`` as a boolean array (first maximum wins on ties).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.signals.correct(np.array([[1.0, 3.0], [2.0, 2.0]]), np.array([1, 1]))
    array([ True, False])
    """
    return _as_bool(_signal(logits, labels, "correct"))


def _out_target(x: Any, name: str, lead: tuple, logits: Any) -> Any:
    """The caller's array for one result of :func:`compute`, checked: never a copy of it
    (a copy would take the values and leave the caller's array as it was)."""
    if not (isinstance(x, np.ndarray) or ar.is_torch(x)):
        raise TypeError(f"{name}: expected a numpy array or torch tensor to write into, got "
                        f"{type(x).__name__}")
    if ar.is_torch(x) and (x.is_conj() or x.is_neg()):
        raise ValueError(f"{name}: expected a tensor without torch's lazy negative bit (the "
                         "kernel would write past it); pass a tensor of your own memory")
    # a numpy array's dtype by name in either byte order (">f8" is float64)
    dtype = x.dtype.newbyteorder("=").name if isinstance(x, np.ndarray) else ar.dtype_name(x)
    if ar.shape_of(x) != lead or dtype not in ("float32", "float64"):
        raise ValueError(f"{name}: expected a float32 or float64 array of shape {lead} (the "
                         f"logits' leading shape), got {dtype} {ar.shape_of(x)}")
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        raise ValueError(f"{name}: expected a writable array, got a read-only one")
    ar.same_device(**{"logits": logits, name: x})
    return x


def _as_bool(out: Any) -> Any:
    """The kernel's 0/1 correctness as booleans, same array type and device."""
    # astype keeps a 0-d result an array (``out != 0`` would give a numpy scalar)
    xp = ar.namespace(out)
    return xp.astype(out, xp.bool)


def grad_norm(logits: Any, labels: Any) -> Any:
    """Norm of the loss's gradient in the logits, ``||softmax(z) - e_y||_2`` (see
    :func:`scaled_confidence` for the arguments).

    The per-example gradient norm of the cross-entropy with respect to the logits: 0 for
    a confident correct prediction, up to ``sqrt(2)`` for a confident wrong one. The
    true class's term ``1 - p_y`` is formed as the other classes' total probability, so a
    confident model keeps full precision.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> mk.signals.grad_norm(np.array([[0.0, 0.0]]), np.array([0]))  # |(-0.5, 0.5)|
    array([0.70710678])
    """
    return _signal(logits, labels, "grad_norm")


def compute(logits: Any, labels: Any, names: Sequence[str], *,
            dtype: str | Mapping[str, str] | None = None,
            out: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Several signals of the same logits in one pass over them.

    The reductions the signals share (maxima, sums of exponentials) are computed once
    per row, so asking for all of them costs little more than the dearest one. The
    values are those of the single-signal functions, bit for bit.

    Parameters
    ----------
    logits, labels
        As for :func:`scaled_confidence`.
    names : sequence of str
        Signals among ``scaled_confidence``, ``hinge``, ``loss``, ``confidence``,
        ``max_confidence``, ``correct`` and ``grad_norm`` (at most 8, each once).
    dtype : {"float32", "float64"} or dict, optional
        The results' dtype, for all of them or by name (default: as the single-signal
        functions, float64 for float64 logits and float32 otherwise). ``correct`` is
        returned as booleans unless it is written into ``out``.
    out : dict, optional
        Arrays to write some of the results into, by name: numpy arrays or torch tensors
        of shape ``logits.shape[:-1]``, float32 or float64 (any strides, either byte
        order), writable, on the logits' device. Their dtype takes the place of
        ``dtype``. The results are written into these very arrays; anything else (a
        list, say) is refused rather than copied.

    Returns
    -------
    dict
        name -> array of shape ``logits.shape[:-1]`` on the caller's device (the given
        array for the names in ``out``).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> s = mk.signals.compute(np.array([[2.0, 0.0]]), np.array([0]), ["loss", "correct"])
    >>> s["loss"].round(4), s["correct"]
    (array([0.1269]), array([ True]))
    """
    if isinstance(names, str):
        raise TypeError(f"names: expected a sequence of signal names, got the string {names!r}")
    try:
        names = list(names)
    except TypeError:  # None, a number, an object: not a sequence at all
        raise TypeError(f"names: expected a sequence of signal names, got {names!r}") from None
    for name in names:
        check_choice(name, "names", tuple(SIGNALS))
    if not names:
        raise ValueError("names: expected at least one signal, got none")
    if len(set(names)) != len(names):
        raise ValueError(f"names: expected each signal once, got {names}")
    if len(names) > 8:
        raise ValueError(f"names: expected at most 8 signals, got {len(names)}")
    if out is not None and not isinstance(out, Mapping):
        raise TypeError(f"out: expected a dict of signal name -> array, got {type(out).__name__}")
    out = dict(out or {})
    for name in out:
        if name not in names:
            raise ValueError(f"out: {name!r} is not among the names asked for ({names})")
    dtypes = dict(dtype) if isinstance(dtype, Mapping) else {}
    for name in dtypes:
        check_choice(name, "dtype", names)
    logits, labels = prepare_logits_labels(logits, labels)
    default = "float64" if ar.dtype_name(logits) == "float64" else "float32"
    if dtype is not None and not isinstance(dtype, Mapping):
        default = check_choice(dtype, "dtype", ("float32", "float64"))
    lead = ar.shape_of(logits)[:-1]
    arrays = []
    copy_back = {}  # name -> the caller's array, where the kernel writes a native copy
    for name in names:
        if name in out:
            target = _out_target(out[name], f"out[{name!r}]", lead, logits)
            if isinstance(target, np.ndarray) and not target.dtype.isnative:
                # the kernel writes native byte order: into a copy, then into the caller's
                copy_back[name] = target
                arrays.append(np.empty(lead, target.dtype.newbyteorder("=")))
            else:
                arrays.append(target)  # written in place, whatever its array type
        else:
            want = check_choice(dtypes.get(name, default), f"dtype[{name!r}]",
                                ("float32", "float64"))
            arrays.append(ar.empty_like_device(logits, lead, want))
    st = _C.signals(
        ar.kernel_arg(logits), ar.kernel_arg(labels), [SIGNAL_CODES[n] for n in names],
        [ar.kernel_arg(a) for a in arrays], ar.stream_of(logits))
    raise_for_status(st, _signal_checks(ar.shape_of(logits)[-1]))
    result = dict(zip(names, arrays))
    for name, target in copy_back.items():
        np.copyto(target, result[name])
        result[name] = target
    if "correct" in result and "correct" not in out:
        result["correct"] = _as_bool(result["correct"])
    return result
