"""Queries: a scalar or a vector per record, from the synthetic data or a user function.

:func:`dcr_query` is the distance to the closest synthetic record(s) (exact, by
:func:`miakit.neighbors.closest_distances`); :func:`apply_query` applies any function
(a discriminator score, a reconstruction loss) to records in batches. Their values are
what the advantage (:mod:`miakit.generative.advantage`) and the risks
(:mod:`miakit.generative.risk`) take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit._validation import check_choice, check_int, check_records
from miakit.neighbors import METRICS, closest_distances, renamed_error

__all__ = ["dcr_query", "apply_query"]


def dcr_query(records: Any, synthetic: Any, k: int = 1, *, metric: str = "euclidean"
              ) -> np.ndarray:
    """Distance of each record to its closest synthetic record(s) (DCR).

    Parameters
    ----------
    records : array [N, D]
        The records to query (training or hold-out records).
    synthetic : array [S, D]
        The generated records.
    k : int
        Neighbours: ``k = 1`` gives a scalar query, ``k > 1`` the vector of the k
        smallest distances (ascending).
    metric : {"euclidean", "sqeuclidean", "cosine"}
        As :func:`miakit.neighbors.closest_distances` (exact float64 distances).

    Returns
    -------
    numpy.ndarray float64
        ``[N]`` for ``k = 1``, ``[N, k]`` otherwise.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> synthetic = np.array([[0.0, 0.0], [1.0, 1.0]])
    >>> mk.generative.dcr_query([[0.0, 0.1], [3.0, 1.0]], synthetic)
    array([0.1, 2. ])
    """
    check_choice(metric, "metric", METRICS)
    x = check_records(records, "records")
    s = check_records(synthetic, "synthetic", x.shape[1], "records")
    k = check_int(k, "k", 1)
    if k > s.shape[0]:
        raise ValueError(f"k: expected 1 <= k <= {s.shape[0]} (the synthetic records), "
                         f"got {k}")
    try:
        d, _ = closest_distances(x, s, k, metric=metric)
    except ValueError as exc:  # name this function's arguments, not the neighbours' ones
        raise renamed_error(exc, "records", "synthetic") from None
    d = np.asarray(ar.to_numpy(d), dtype=np.float64)
    return d[:, 0].copy() if k == 1 else d


def apply_query(fn: Callable[[Any], Any], records: Any, *, batch_size: int | None = None
                ) -> np.ndarray:
    """Apply a user query (discriminator score, reconstruction loss, ...) to records.

    Parameters
    ----------
    fn : callable
        ``fn(batch) -> values``, a batch of records in, one scalar or one vector per
        record out (numpy arrays or torch tensors; torch outputs are detached).
    records : array [N, ...]
        The records, passed to ``fn`` as they are (sliced into batches if asked).
    batch_size : int, optional
        Records per call (default: all at once).

    Returns
    -------
    numpy.ndarray float64
        ``[N]`` (scalar query) or ``[N, d]`` (vector query).

    Raises
    ------
    ValueError
        When ``fn`` returns a different number of values than records, more than one
        axis of values per record, or NaN/inf.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> x = np.arange(6.0).reshape(3, 2)
    >>> mk.generative.apply_query(lambda b: (b ** 2).sum(1), x, batch_size=2)
    array([ 1., 13., 41.])
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    try:
        n = len(records)
    except TypeError:
        raise TypeError(f"records: expected an array or a sequence of records, got "
                        f"{type(records).__name__}") from None
    if n < 1:
        raise ValueError("records: expected at least one record, got none")
    bs = n if batch_size is None else check_int(batch_size, "batch_size", 1)
    parts = []
    for start in range(0, n, bs):
        batch = records[start:start + bs]
        out = fn(batch)
        if ar.is_torch(out):  # bfloat16 and conjugate views have no numpy form
            out = out.detach().cpu()
            out = out.resolve_conj() if out.is_complex() else out.to(ar.loaded_torch().float64)
        v = np.asarray(out)
        if v.dtype.kind not in "biuf":  # a complex part would be dropped, a string parsed
            raise TypeError(f"fn: expected real query values, got dtype {v.dtype}")
        v = v.astype(np.float64)
        m = len(batch)
        if v.ndim == 0 or v.shape[0] != m or v.ndim > 2:
            raise ValueError(f"fn: expected one scalar or one vector per record (shape "
                             f"[{m}] or [{m}, d] for a batch of {m}), got shape {v.shape}")
        parts.append(v)
    q = np.concatenate(parts, axis=0)
    if not np.isfinite(q).all():
        raise ValueError(f"fn: expected finite query values, got "
                         f"{int((~np.isfinite(q)).sum())} NaN or inf")
    return q
