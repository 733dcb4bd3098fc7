"""Label memorization and influence (Feldman & Zhang 2020; docs/methods/memorization.md).

From a shadow-model experiment, with ``keep[m, n]`` true when model m trained on example
n and ``correct[m, n]`` whether model m classifies example n correctly (or its
true-class probability):

- memorization ``mem[n] = mean_{m: keep} correct[m, n] - mean_{m: not keep} correct[m, n]``;
- influence of training example i on test example j,
  ``infl[i, j] = mean_{m: keep[m, i]} correct_test[m, j]
  - mean_{m: not keep[m, i]} correct_test[m, j]``.

Influence is a pair of matrix products; the compiled kernel fuses them (one product
``keep^T correct_test`` suffices, see :func:`influence`) with a running top-k per test
example, and never materializes the N x T matrix. The reference setting trains each
model on a random 70% subset; LiRA's balanced 50% split works too.
"""

from __future__ import annotations

from typing import Any

from miakit import _C
from miakit import _arrays as ar
from miakit._status import message, raise_for_status
from miakit._validation import check_choice, check_int, check_keep

__all__ = ["feldman_zhang", "influence"]

_SIGNALS = ("correct", "prob")


def _check_signal_matrix(x: Any, name: str, signal: str) -> ar.Array:
    """A 2-D [M, K] matrix of 0/1 correctness (``signal="correct"``) or probabilities."""
    x = ar.as_array(x, name)
    shape = ar.shape_of(x)
    if len(shape) != 2:
        raise ValueError(f"{name}: expected a 2-D array [models, examples], got shape {shape}")
    kind = ar.kind(x)
    if kind == "b":
        return ar.as_uint8(x)
    if kind not in ("f", "i", "u"):
        raise TypeError(f"{name}: expected a boolean, integer or floating-point array, "
                        f"got dtype {ar.dtype_name(x)}")
    if not ar.is_torch(x) and not x.dtype.isnative:  # the kernels read native byte order
        x = x.astype(x.dtype.newbyteorder("="))
    if 0 in shape:
        return x
    if kind == "f" and not ar.is_all_finite(x):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    lo, hi = ar.minmax(x)
    if signal == "correct":
        if bool(((x != 0) & (x != 1)).any()):
            raise ValueError(
                f"{name}: signal='correct' expects 0/1 (or boolean) correctness, got values in "
                f"[{lo:g}, {hi:g}]; pass signal='prob' for probabilities")
    elif lo < 0 or hi > 1:
        raise ValueError(f"{name}: signal='prob' expects probabilities in [0, 1], got values "
                         f"in [{lo:g}, {hi:g}]")
    if kind in ("i", "u"):  # 0/1 integers (checked above) travel as uint8
        return ar.as_uint8(x)
    return x


def _from_logits(logits: Any, labels: Any, signal: str, name: str) -> ar.Array:
    from miakit import signals

    logits = ar.as_array(logits, name)
    shape = ar.shape_of(logits)
    if len(shape) != 3:
        raise ValueError(f"{name}: with labels, expected logits [models, examples, classes], "
                         f"got shape {shape}")
    lab = ar.as_array(labels, "labels")
    if ar.shape_of(lab) != (shape[1],):
        raise ValueError(f"labels: expected shape ({shape[1]},) (one label per example), "
                         f"got {ar.shape_of(lab)}")
    fn = signals.correct if signal == "correct" else signals.confidence
    return fn(logits, lab[None, :])


def _counts(keep_u8: ar.Array) -> tuple[int, int]:
    """Examples without an IN model, and without an OUT model."""
    m = ar.shape_of(keep_u8)[0]
    n_in = ar.to_numpy(keep_u8.sum(0))
    return int((n_in == 0).sum()), int((n_in == m).sum())


def _empty_message(no_in: int, no_out: int, what: str, option: str) -> str:
    parts = []
    if no_in:
        parts.append(f"{no_in} examples have no IN model (keep is false in every model)")
    if no_out:
        parts.append(f"{no_out} examples have no OUT model (keep is true in every model)")
    return (f"keep: {what} needs at least one IN and one OUT model per example, but "
            f"{' and '.join(parts)}; train more shadow models, or pass {option}")


def feldman_zhang(
    correct: Any,
    keep: Any,
    signal: str = "correct",
    *,
    labels: Any = None,
    on_empty: str = "raise",
) -> Any:
    """Label memorization of every example (Feldman & Zhang 2020).

    ``mem[n] = mean_{m: keep[m, n]} correct[m, n] - mean_{m: not keep[m, n]} correct[m, n]``:
    how much more often a model gets example n right when it trained on it.

    Parameters
    ----------
    correct : array [M, N]
        Per model and example: 0/1 correctness (bool, integer or float) when
        ``signal="correct"``, the true-class probability when ``signal="prob"``. With
        ``labels``, logits ``[M, N, C]`` from which the signal is computed.
    keep : array [M, N] bool
        ``keep[m, n]`` is true when model m trained on example n.
    signal : {"correct", "prob"}
        What ``correct`` holds (or is computed from logits): correctness, or ``p_y``.
    labels : array [N] int, optional
        True classes; given, ``correct`` holds logits.
    on_empty : {"raise", "nan"}
        An example whose models are all IN or all OUT raises a ValueError naming how many
        examples are affected, or gets NaN.

    Returns
    -------
    array [N] float64
        In ``[-1, 1]``; same array type and device as ``correct``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> keep = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    >>> correct = np.array([[1, 1], [1, 0], [0, 1], [0, 1]])
    >>> mk.memorization.feldman_zhang(correct, keep)   # (1 - 0), (1 - 0.5)
    array([1. , 0.5])
    """
    check_choice(signal, "signal", _SIGNALS)
    check_choice(on_empty, "on_empty", ("raise", "nan"))
    if labels is not None:
        correct = _from_logits(correct, labels, signal, "correct")
    c = _check_signal_matrix(correct, "correct", signal)
    m, n = ar.shape_of(c)
    if m < 1 or n < 1:
        raise ValueError(f"correct: expected at least one model and one example, got shape "
                         f"{(m, n)}")
    keep_u8 = ar.match_device(check_keep(keep, (m, n)), c, "keep", "correct")
    if on_empty == "raise":
        no_in, no_out = _counts(keep_u8)
        if no_in or no_out:
            raise ValueError(_empty_message(no_in, no_out, "memorization",
                                            "on_empty='nan' to give those examples NaN"))
    out = ar.empty_like_device(c, (n,), "float64")
    n_in = ar.empty_like_device(c, (n,), "int64")
    st = _C.memorization(ar.kernel_arg(c), ar.kernel_arg(keep_u8), ar.kernel_arg(out),
                         ar.kernel_arg(n_in), ar.stream_of(c))
    raise_for_status(st, {"nonfinite": message("nonfinite", "correct")})
    return out


def influence(
    keep: Any,
    correct_test: Any,
    top_k: int = 10,
    *,
    signal: str = "correct",
    on_empty: str = "raise",
) -> tuple[Any, Any]:
    """The ``top_k`` most influential training examples of every test example.

    ``infl[i, j] = mean_{m: keep[m, i]} c[m, j] - mean_{m: not keep[m, i]} c[m, j]`` with
    ``c = correct_test``: how much training on example i raises model m's correctness on
    test example j. With ``S = keep^T c``, ``n_in``/``n_out`` the IN/OUT counts of i and
    ``colsum[j] = sum_m c[m, j]``, ``infl[i, j] = S[i, j] / n_in[i] - (colsum[j] - S[i, j])
    / n_out[i]``: one matrix product, computed by a blocked, register-tiled kernel
    (AVX-512/AVX2 on x86, CUDA on GPUs) whose tiles feed a running top-k per test example;
    the N x T matrix is never stored. Products accumulate in float32 (exact for 0/1
    correctness with fewer than 2^24 models; relative error about ``M * 6e-8`` for
    probabilities); each listed value is then evaluated in float64.

    Parameters
    ----------
    keep : array [M, N] bool
        Training membership of the N training examples in the M shadow models.
    correct_test : array [M, T]
        Per model and test example: 0/1 correctness (``signal="correct"``) or the
        true-class probability (``signal="prob"``); bool, integer or float (float16 to
        float64).
    top_k : int
        List length, ``1 <= top_k <= N``.
    signal : {"correct", "prob"}
        What ``correct_test`` holds (checked: 0/1 values, or values in [0, 1]).
    on_empty : {"raise", "skip"}
        A training example whose models are all IN or all OUT has no influence estimate:
        raise a ValueError naming how many, or leave those examples out of every list.

    Returns
    -------
    vals : array [T, top_k] float64
        Influences, sorted: larger value first, lower training index first on ties.
        NaN where fewer than ``top_k`` examples qualify (``on_empty="skip"``).
    idx : array [T, top_k] int64
        Training-example indices of ``vals`` (-1 where ``vals`` is NaN).
        Both on the device and of the array type of ``correct_test``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> keep = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
    >>> correct_test = np.array([[1], [1], [0], [0]])   # right exactly when trained on 0
    >>> vals, idx = mk.memorization.influence(keep, correct_test, top_k=2)
    >>> vals, idx
    (array([[1., 0.]]), array([[0, 1]]))
    """
    check_choice(signal, "signal", _SIGNALS)
    check_choice(on_empty, "on_empty", ("raise", "skip"))
    c = _check_signal_matrix(correct_test, "correct_test", signal)
    keep_a = ar.as_array(keep, "keep")
    ks = ar.shape_of(keep_a)
    if len(ks) != 2:
        raise ValueError(f"keep: expected a 2-D array [models, training examples], got shape {ks}")
    m, t = ar.shape_of(c)
    if ks[0] != m:
        raise ValueError(f"correct_test: expected {ks[0]} rows (one per shadow model, as in "
                         f"keep {ks}), got shape {(m, t)}")
    n = ks[1]
    if m < 1 or n < 1 or t < 1:
        raise ValueError(f"keep/correct_test: expected at least one model, training example "
                         f"and test example, got keep {ks} and correct_test {(m, t)}")
    keep_u8 = ar.match_device(check_keep(keep_a, (m, n)), c, "keep", "correct_test")
    top_k = check_int(top_k, "top_k", 1, n,
                      what=f"1 <= top_k <= {n} (the number of training examples)")
    if on_empty == "raise":
        no_in, no_out = _counts(keep_u8)
        if no_in or no_out:
            raise ValueError(_empty_message(no_in, no_out, "influence",
                                            "on_empty='skip' to leave them out of the lists"))
    vals = ar.empty_like_device(c, (t, top_k), "float64")
    idx = ar.empty_like_device(c, (t, top_k), "int64")
    st = _C.influence(ar.kernel_arg(keep_u8), ar.kernel_arg(c), ar.kernel_arg(vals),
                      ar.kernel_arg(idx), ar.stream_of(c))
    raise_for_status(st, {"nonfinite": message("nonfinite_float32", "correct_test")})
    return vals, idx
