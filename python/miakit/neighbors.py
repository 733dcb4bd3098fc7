"""Exact nearest neighbours without a distance matrix (docs/methods/generative.md).

The distance to the closest record is the basic query of membership risk for generative
models: how close each training (or hold-out) record lies to the synthetic data. For Q
queries against R reference rows of width D, :func:`closest_distances` computes
``d^2 = |q|^2 + |r|^2 - 2 q.r`` as a blocked matrix product (the register-tiled kernel
behind influence top-k, AVX-512/AVX2 on x86, CUDA on GPUs) whose tiles feed a running
top-k per query; the Q x R matrix is never stored. The product runs in float32 and only
screens: every distance that can enter a list is recomputed in float64 as
``sum_d (q_d - r_d)^2``, so the result is the exact float64 answer, with ties broken
towards the lower reference index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar
from miakit._status import message, raise_for_status
from miakit._validation import check_choice, check_int
from miakit._validation import renamed_error as _renamed

__all__ = ["closest_distances", "METRICS"]

METRICS = ("euclidean", "sqeuclidean", "cosine")


def renamed_error(exc: ValueError, queries: str, reference: str) -> ValueError:
    """``exc`` of :func:`closest_distances` with its arguments' names replaced by the
    caller's (``records:`` for ``queries:``), so that a caller's error names its own
    arguments."""
    return _renamed(exc, {"queries": queries, "reference": reference})


def _float32_culprit(q: ar.Array, r: ar.Array) -> str:
    """The input whose values or squared row norms leave float32's range, as the kernel
    checks them (it counts them without saying which input holds them)."""
    for x, name in ((q, "queries"), (r, "reference")):
        a = np.asarray(ar.to_numpy(x), dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            ok = (np.isfinite(a.astype(np.float32)).all()
                  and np.isfinite((a * a).sum(axis=1).astype(np.float32)).all())
        if not ok:
            return name
    return "queries/reference"


def _check_rows(x: Any, name: str) -> ar.Array:
    """A 2-D [rows, features] array of floats (bool and integer inputs become float64)."""
    x = ar.as_array(x, name)
    shape = ar.shape_of(x)
    if len(shape) != 2:
        raise ValueError(f"{name}: expected a 2-D array [records, features], got shape {shape}")
    kind = ar.kind(x)
    if kind in ("b", "i", "u"):
        xp = ar.namespace(x)
        x = xp.astype(x, xp.float64)
    elif kind != "f":
        raise TypeError(f"{name}: expected a floating-point, integer or boolean array, got "
                        f"dtype {ar.dtype_name(x)}")
    if shape[0] < 1:
        raise ValueError(f"{name}: expected at least one record, got shape {shape}")
    if shape[1] < 1:
        raise ValueError(f"{name}: expected at least one feature, got shape {shape}")
    return x


def _common_dtype(q: ar.Array, r: ar.Array) -> tuple[ar.Array, ar.Array]:
    """Both arrays in the wider of their two float dtypes (the kernel takes one)."""
    if q.dtype == r.dtype:
        return q, r
    xp = ar.namespace(q, r)
    dt = xp.result_type(q.dtype, r.dtype)
    return xp.astype(q, dt), xp.astype(r, dt)


def _unit_rows(x: ar.Array, name: str) -> ar.Array:
    """Rows scaled to unit Euclidean norm in float64 (cosine distance); zero rows refused."""
    xp = ar.namespace(x)
    x64 = xp.astype(x, xp.float64)
    norms = xp.vector_norm(x64, axis=1, keepdims=True)
    bad = int((norms[:, 0] == 0).sum())
    if bad:
        raise ValueError(f"{name}: metric='cosine' needs rows of non-zero norm, got {bad} "
                         "zero row(s)")
    return x64 / norms


def closest_distances(
    queries: Any,
    reference: Any,
    k: int = 1,
    *,
    metric: str = "euclidean",
    exclude_self: bool = False,
) -> tuple[Any, Any]:
    """Exact distances from each query row to its ``k`` nearest reference rows.

    Parameters
    ----------
    queries : array [Q, D]
        Query records (float16 to float64; bool and integer become float64), numpy or
        torch on any device, any strides.
    reference : array [R, D]
        Reference records (for example the synthetic data), same width and device.
    k : int
        Neighbours per query, ``1 <= k <= R`` (``R - 1`` with ``exclude_self``).
    metric : {"euclidean", "sqeuclidean", "cosine"}
        Euclidean distance, its square, or cosine distance ``1 - cos(q, r)`` (rows
        must have non-zero norm).
    exclude_self : bool
        Queries and reference are the same records: skip reference row i for query i
        (the distance of a record to the closest *other* record).

    Returns
    -------
    distances : array [Q, k] float64
        Sorted ascending; ties keep the lower reference index first.
    indices : array [Q, k] int64
        Reference rows of ``distances``. Both of the array type and on the device of
        ``queries``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> reference = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    >>> d, i = mk.neighbors.closest_distances([[0.0, 0.5], [3.0, 3.0]], reference, k=2)
    >>> d.round(4), i
    (array([[0.5   , 1.118 ],
           [1.    , 3.6056]]), array([[0, 2],
           [1, 2]]))
    """
    check_choice(metric, "metric", METRICS)
    if not isinstance(exclude_self, (bool, np.bool_)):
        raise TypeError(f"exclude_self: expected a bool, got {type(exclude_self).__name__}")
    q = _check_rows(queries, "queries")
    r = ar.match_device(_check_rows(reference, "reference"), q, "reference", "queries")
    (nq, dq), (nr, dr) = ar.shape_of(q), ar.shape_of(r)
    if dq != dr:
        raise ValueError(f"reference: expected {dq} features per row (the width of queries "
                         f"{(nq, dq)}), got shape {(nr, dr)}")
    if exclude_self and nq != nr:
        raise ValueError(f"exclude_self: queries and reference must be the same records, got "
                         f"{nq} queries and {nr} reference rows")
    k_max = nr - 1 if exclude_self else nr
    k = check_int(k, "k", 1, k_max, what=f"1 <= k <= {k_max} (the reference rows"
                  f"{' other than the query itself' if exclude_self else ''})")
    q, r = _common_dtype(q, r)
    if metric == "cosine":
        for x, name in ((q, "queries"), (r, "reference")):
            if not ar.is_all_finite(x):
                raise ValueError(f"{name}: expected finite values, got NaN or inf")
        q, r = _unit_rows(q, "queries"), _unit_rows(r, "reference")
    vals = ar.empty_like_device(q, (nq, k), "float64")
    idx = ar.empty_like_device(q, (nq, k), "int64")
    st = _C.knn(ar.kernel_arg(q), ar.kernel_arg(r), ar.kernel_arg(vals), ar.kernel_arg(idx),
                bool(exclude_self), ar.stream_of(q))
    if st["nonfinite"]:  # the kernel counts; name the input that holds them
        raise_for_status(st, {"nonfinite": message("nonfinite_float32", _float32_culprit(q, r))
                              + " (or beyond float32's range)"})
    if metric == "euclidean":
        vals = ar.namespace(vals).sqrt(vals)
    elif metric == "cosine":
        vals = vals * 0.5  # |a - b|^2 = 2 - 2 cos for unit rows
    return vals, idx
