"""Kolmogorov-Smirnov tests: many pairs of samples at once, source assignment, and the
leakage test of Sablayrolles et al. ("Deja Vu", 2018; docs/methods/ks.md).

- :func:`ks_2samp` computes the two-sample statistic of many pairs in one call (a batch
  axis, or ragged samples given as values and group ids with :func:`ks_2samp_groups`).
  On the CPU a compiled kernel works on the unsorted samples: values dealt into buckets
  of value, exact CDF differences at the bucket ends, and only the buckets that can hold
  the extreme sorted out and merged; CUDA tensors are sorted and merged on their device.
  The statistic, where it is attained, and the p-value equal ``scipy.stats.ks_2samp``'s
  for every ``alternative`` and ``method``: the p-value depends only on the two sizes and
  the statistic, so it is computed once for every distinct (sizes, statistic) of the
  batch, compiled or vectorized where scipy's formula allows (miakit._ks_pvalues).
- :func:`smirnov_threshold` is the critical distance at level alpha.
- :func:`assign_source` and :func:`source_accuracy`: which of two reference samples a set
  of values comes from, by the smaller K-S distance, and how often that is right.
- :func:`leakage_test`: are a model's confidences on a test set distributed like those on
  a validation set? If test examples leaked into training, they are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar
from miakit._ks_pvalues import _kstwo_sf, _pvalues  # noqa: F401 - tests import _kstwo_sf here
from miakit._options import KS_SIDES, kernel_option
from miakit._validation import (
    check_int,
    check_probability,
    check_real_array,
    check_real_values,
    check_seed,
)

__all__ = ["ks_2samp", "ks_2samp_groups", "KS2Result", "smirnov_threshold",
           "assign_source", "source_accuracy", "leakage_test", "LeakageTest"]

_ALTERNATIVES = ("two-sided", "less", "greater")
_METHODS = ("auto", "exact", "asymp")


@dataclass(frozen=True)
class KS2Result:
    """Two-sample K-S results, one entry per pair (arrays of the batch's shape).

    Attributes
    ----------
    statistic, pvalue : numpy.ndarray float64
        As ``scipy.stats.ks_2samp`` returns them (its exact method reports the statistic
        rounded to a multiple of 1 / lcm(n, m)).
    statistic_location : numpy.ndarray float64
        The value at which the empirical CDFs differ by the statistic.
    statistic_sign : numpy.ndarray int8
        +1 when the first sample's CDF is the larger there, -1 otherwise.
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    statistic_location: np.ndarray
    statistic_sign: np.ndarray


def _check_options(alternative: str, method: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative: expected one of {list(_ALTERNATIVES)}, got "
                         f"{alternative!r}")
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {list(_METHODS)}, got {method!r}")


def _finite(x: np.ndarray, name: str) -> None:
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: expected finite values, got {int((~np.isfinite(x)).sum())} "
                         "NaN or inf")


def _no_nan(x: np.ndarray, name: str) -> None:
    n_nan = int(np.isnan(x).sum())
    if n_nan:
        raise ValueError(f"{name}: expected numbers (infinities allowed), got {n_nan} NaN")


def _ranked(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x and y through one strictly increasing map onto finite numbers (the compiled
    kernels take finite values only): -inf, the distinct finite values in order, +inf
    become -1, 0, 1, ..., k. A K-S statistic depends on the order of the values only, so
    it is unchanged; :func:`_unranked` maps a location back. Returns (x, y, values)."""
    finite = np.unique(np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]]))

    def rank(v: np.ndarray) -> np.ndarray:
        r = np.searchsorted(finite, v).astype(np.float64)
        r[v == -np.inf] = -1.0
        r[v == np.inf] = float(finite.size)
        return r

    return rank(x), rank(y), finite


def _unranked(loc: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """The values that :func:`_ranked` mapped to the ranks ``loc``."""
    r = np.asarray(loc, dtype=np.float64)
    table = np.concatenate([[-np.inf], finite, [np.inf]])
    return table[np.clip(r, -1, finite.size).astype(np.int64) + 1]


def _merge(a_vals: Any, a_off: Any, b_vals: Any, b_off: Any) -> tuple[np.ndarray, ...]:
    """The compiled merge on the samples' device (numpy, or torch CPU/CUDA tensors);
    the four [B] results come back as numpy arrays."""
    b = ar.shape_of(a_off)[0] - 1
    out = [ar.empty_like_device(a_vals, (b,), "float64") for _ in range(4)]
    _C.ks_merge(*(ar.kernel_arg(x) for x in (a_vals, a_off, b_vals, b_off, *out)),
                ar.stream_of(a_vals))
    return tuple(ar.to_numpy(o) for o in out)


def _unsorted(a_vals: np.ndarray, a_begin: np.ndarray, a_len: Any, b_vals: np.ndarray,
              b_begin: np.ndarray, b_len: Any, sides: str = "both"
              ) -> tuple[np.ndarray, ...]:
    """The compiled K-S extremes of unsorted CPU samples: pair r compares
    ``a_vals[a_begin[r]:a_begin[r] + a_len[r]]`` with the like slice of b (lengths scalar
    or per pair). ``sides`` names the extremes that must be exact: "both", those an
    alternative uses ("greater": the max, "less": the min), or "two-sided" (the one of
    larger magnitude; the other is then some difference attained, not beyond it)."""
    a_begin = np.ascontiguousarray(a_begin, dtype=np.int64)
    b_begin = np.ascontiguousarray(b_begin, dtype=np.int64)
    out = [np.empty(a_begin.size) for _ in range(4)]
    _C.ks_unsorted(np.ascontiguousarray(a_vals, dtype=np.float64), a_begin,
                   np.ascontiguousarray(a_begin + a_len, dtype=np.int64),
                   np.ascontiguousarray(b_vals, dtype=np.float64), b_begin,
                   np.ascontiguousarray(b_begin + b_len, dtype=np.int64), *out,
                   kernel_option(sides, "sides", KS_SIDES))
    return tuple(out)


def _finish(d_max: np.ndarray, d_min: np.ndarray, loc_max: np.ndarray, loc_min: np.ndarray,
            n: Any, m: Any, alternative: str, method: str, representatives: Any
            ) -> KS2Result:
    """Statistic per scipy's rules, then the p-value of each distinct (n, m, statistic).
    n and m are the sizes per pair, or one size each for the whole batch."""
    min_s = np.clip(-d_min, 0.0, 1.0)
    if alternative == "less":
        use_min = np.ones(d_max.shape, bool)
    elif alternative == "greater":
        use_min = np.zeros(d_max.shape, bool)
    else:
        use_min = min_s > d_max
    d = np.where(use_min, min_s, d_max)
    loc = np.where(use_min, loc_min, loc_max)
    sign = np.where(use_min, -1, 1).astype(np.int8)
    if np.ndim(n) == 0 and np.ndim(m) == 0:  # one pair of sizes: distinct statistics only
        u_d, first, inverse = np.unique(d, return_index=True, return_inverse=True)
        u_n, u_m = np.full(u_d.size, int(n), np.int64), np.full(u_d.size, int(m), np.int64)
    else:
        keys = np.stack([np.asarray(n, np.float64), np.asarray(m, np.float64), d], axis=1)
        uniq, first, inverse = np.unique(keys, axis=0, return_index=True,
                                         return_inverse=True)
        u_n, u_m, u_d = uniq[:, 0].astype(np.int64), uniq[:, 1].astype(np.int64), uniq[:, 2]
    u_stat, u_p = _pvalues(u_n, u_m, u_d, alternative, method,
                           lambda k: representatives(int(first[k])))
    inverse = inverse.ravel()
    return KS2Result(u_stat[inverse], u_p[inverse], loc, sign)


def ks_2samp(a: Any, b: Any, alternative: str = "two-sided", method: str = "auto",
             axis: int = -1) -> KS2Result:
    """Two-sample K-S tests of many pairs of samples at once.

    Parameters
    ----------
    a, b : array_like
        Samples along ``axis``; the other axes are batch axes and broadcast against each
        other (``a [B, n]`` and ``b [m]`` tests every row of a against b). NaN is
        refused; +-inf are values like any other (a statistic depends on the order only).
    alternative : {"two-sided", "less", "greater"}
        As scipy: "less" tests whether F_a lies below F_b somewhere (statistic
        ``max(F_b - F_a)``), "greater" the reverse.
    method : {"auto", "exact", "asymp"}
        As scipy (auto: exact when both samples have at most 10,000 values).
    axis : int
        The sample axis.

    Returns
    -------
    KS2Result
        numpy arrays of the broadcast batch shape. CUDA tensors are sorted and merged on
        their device.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from scipy import stats
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(3, 50)); b = rng.normal(0.5, size=60)
    >>> r = mk.ks.ks_2samp(a, b)
    >>> s = stats.ks_2samp(a[1], b)
    >>> bool(r.statistic[1] == s.statistic), bool(r.pvalue[1] == s.pvalue)
    (True, True)
    """
    _check_options(alternative, method)
    axis = check_int(axis, "axis")
    if ar.is_torch(a) and a.device.type == "cuda":
        return _ks_2samp_torch(a, b, alternative, method, axis)
    x, y = check_real_array(a, "a"), check_real_array(b, "b")
    for v, name in ((x, "a"), (y, "b")):
        if v.ndim == 0:
            raise ValueError(f"{name}: expected samples along axis {axis}, got a scalar")
        if not -v.ndim <= axis < v.ndim:
            raise ValueError(f"axis: expected an axis of {name} (shape {v.shape}), got {axis}")
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    if x.shape[-1] == 0 or y.shape[-1] == 0:
        raise ValueError(f"a, b: expected non-empty samples along axis {axis}, got shapes "
                         f"{np.shape(a)} and {np.shape(b)}")
    try:
        batch = np.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    except ValueError as exc:
        raise ValueError(f"a, b: batch shapes {x.shape[:-1]} and {y.shape[:-1]} do not "
                         "broadcast") from exc
    n, m = x.shape[-1], y.shape[-1]
    xr = np.ascontiguousarray(x.reshape(-1, n))
    yr = np.ascontiguousarray(y.reshape(-1, m))
    ia = np.broadcast_to(np.arange(xr.shape[0]).reshape(x.shape[:-1]), batch).ravel()
    ib = np.broadcast_to(np.arange(yr.shape[0]).reshape(y.shape[:-1]), batch).ravel()
    d_max, d_min, l_max, l_min = _unsorted(xr.ravel(), ia * n, n, yr.ravel(), ib * m, m,
                                           alternative)
    finite = None
    if np.isnan(d_max).any():  # the kernel's mark of a NaN or infinite value
        _no_nan(x, "a")
        _no_nan(y, "b")
        # infinities: legitimate values (a loss of +inf); only their order matters
        xr, yr, finite = _ranked(xr, yr)
        d_max, d_min, l_max, l_min = _unsorted(xr.ravel(), ia * n, n, yr.ravel(), ib * m,
                                               m, alternative)
    res = _finish(d_max, d_min, l_max, l_min, n, m, alternative, method,
                  lambda i: (xr[ia[i]], yr[ib[i]]))
    if finite is not None:
        res = KS2Result(res.statistic, res.pvalue, _unranked(res.statistic_location, finite),
                        res.statistic_sign)
    return KS2Result(*(v.reshape(batch) for v in (res.statistic, res.pvalue,
                                                  res.statistic_location,
                                                  res.statistic_sign)))


def _ks_2samp_torch(a: Any, b: Any, alternative: str, method: str, axis: int) -> KS2Result:
    """:func:`ks_2samp` of CUDA tensors: sorted and merged on the device (the CUDA twin of
    the merge kernel); only the statistics and one representative pair per distinct
    (sizes, statistic) come back for scipy's p-values."""
    torch = ar.loaded_torch()
    a = check_real_values(a, "a")  # a cast to float64 would drop an imaginary part
    b = ar.match_device(check_real_values(b, "b"), a, "b", "a")
    x = torch.movedim(a.to(torch.float64), axis, -1)
    y = torch.movedim(b.to(torch.float64), axis, -1)
    if x.ndim == 0 or y.ndim == 0 or x.shape[-1] == 0 or y.shape[-1] == 0:
        raise ValueError(f"a, b: expected non-empty samples along axis {axis}, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    for v, name in ((x, "a"), (y, "b")):
        if bool(torch.isnan(v).any()):
            raise ValueError(f"{name}: expected numbers (infinities allowed), got NaN")
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        # infinities (rare): the CPU path maps the values to ranks first
        return ks_2samp(a.cpu(), b.cpu(), alternative, method, axis)
    try:
        batch = tuple(torch.broadcast_shapes(x.shape[:-1], y.shape[:-1]))
    except RuntimeError as exc:
        raise ValueError(f"a, b: batch shapes {tuple(x.shape[:-1])} and "
                         f"{tuple(y.shape[:-1])} do not broadcast") from exc
    n, m = x.shape[-1], y.shape[-1]
    xs = torch.sort(x, dim=-1).values.expand(batch + (n,)).reshape(-1, n).contiguous()
    ys = torch.sort(y, dim=-1).values.expand(batch + (m,)).reshape(-1, m).contiguous()
    rows = xs.shape[0]
    a_off = torch.arange(rows + 1, dtype=torch.int64, device=x.device) * n
    b_off = torch.arange(rows + 1, dtype=torch.int64, device=x.device) * m
    d_max, d_min, l_max, l_min = _merge(xs.reshape(-1), a_off, ys.reshape(-1), b_off)
    res = _finish(d_max, d_min, l_max, l_min, n, m, alternative, method,
                  lambda i: (xs[i].cpu().numpy(), ys[i].cpu().numpy()))
    return KS2Result(*(v.reshape(batch) for v in (res.statistic, res.pvalue,
                                                  res.statistic_location,
                                                  res.statistic_sign)))


def ks_2samp_groups(a: Any, groups_a: Any, b: Any, groups_b: Any,
                    alternative: str = "two-sided", method: str = "auto"
                    ) -> tuple[np.ndarray, KS2Result]:
    """Two-sample K-S tests of ragged samples: values with group ids.

    Group g's test compares ``a[groups_a == g]`` with ``b[groups_b == g]``, for every id
    present in both.

    Returns
    -------
    groups : numpy.ndarray
        The ids tested, ascending.
    result : KS2Result
        One entry per id.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> g, r = mk.ks.ks_2samp_groups([1.0, 2.0, 3.0, 9.0], [0, 0, 1, 1],
    ...                              [1.5, 2.5, 8.0], [0, 1, 1])
    >>> g.tolist(), r.statistic.tolist()
    ([0, 1], [0.5, 0.5])
    """
    _check_options(alternative, method)
    va = check_real_array(a, "a").ravel()
    vb = check_real_array(b, "b").ravel()
    ga = np.asarray(ar.to_numpy(ar.as_array(groups_a, "groups_a"))).ravel()
    gb = np.asarray(ar.to_numpy(ar.as_array(groups_b, "groups_b"))).ravel()
    for g, v, name in ((ga, va, "groups_a"), (gb, vb, "groups_b")):
        if g.shape != v.shape or g.dtype.kind not in "iu":
            raise ValueError(f"{name}: expected one integer group id per value ({v.size}), "
                             f"got shape {g.shape} dtype {g.dtype}")
    _no_nan(va, "a")
    _no_nan(vb, "b")
    finite = None
    if not (np.isfinite(va).all() and np.isfinite(vb).all()):
        va, vb, finite = _ranked(va, vb)  # only the order matters: infinities as ranks
    ids = np.intersect1d(ga, gb)
    if ids.size == 0:
        raise ValueError("groups_a, groups_b: no group id has values in both samples")

    def packed(v: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = np.isin(g, ids)
        v, g = v[keep], g[keep]
        order = np.argsort(g, kind="stable")  # by group (the kernel needs no value order)
        counts = np.bincount(np.searchsorted(ids, g), minlength=ids.size)
        return np.ascontiguousarray(v[order]), np.r_[0, np.cumsum(counts)].astype(np.int64)

    sa, oa = packed(va, ga)
    sb, ob = packed(vb, gb)
    d_max, d_min, l_max, l_min = _unsorted(sa, oa[:-1], np.diff(oa), sb, ob[:-1], np.diff(ob),
                                           alternative)
    res = _finish(d_max, d_min, l_max, l_min, np.diff(oa), np.diff(ob), alternative, method,
                  lambda i: (sa[oa[i]:oa[i + 1]], sb[ob[i]:ob[i + 1]]))
    if finite is not None:
        res = KS2Result(res.statistic, res.pvalue, _unranked(res.statistic_location, finite),
                        res.statistic_sign)
    return ids, res


def smirnov_threshold(alpha: float, n: int, m: int) -> float:
    """The K-S distance above which two samples of sizes n and m differ at level alpha.

    ``c(alpha) sqrt((n + m) / (n m))`` with ``c(alpha) = sqrt(-ln(alpha / 2) / 2)``
    (Smirnov's asymptotic critical value).

    Examples
    --------
    >>> import miakit as mk
    >>> round(mk.ks.smirnov_threshold(0.05, 100, 100), 4)
    0.1921
    """
    a = check_probability(alpha, "alpha")
    for name, v in (("n", n), ("m", m)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive sample size, got {v!r}")
    return float(np.sqrt(-0.5 * np.log(a / 2.0)) * np.sqrt((n + m) / (n * m)))


def _statistics(samples: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Two-sided K-S statistics (no p-values) of every row against one reference."""
    rows, k = samples.shape
    xs = np.ascontiguousarray(samples)
    d_max, d_min, _, _ = _unsorted(xs.ravel(), np.arange(rows, dtype=np.int64) * k, k,
                                   np.ascontiguousarray(reference),
                                   np.zeros(rows, np.int64), reference.size, "two-sided")
    return np.maximum(d_max, np.clip(-d_min, 0.0, 1.0))


def assign_source(samples: Any, source_a: Any, source_b: Any) -> np.ndarray:
    """Which reference sample each set of values is closer to, by K-S distance.

    Parameters
    ----------
    samples : array [B, m] (or [m])
        B sets of m values each.
    source_a, source_b : array [n_a], [n_b]
        The two reference samples.

    Returns
    -------
    numpy.ndarray [B] bool
        True where the set is strictly closer to ``source_a`` (ties go to b).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=500), rng.normal(2.0, size=500)
    >>> mk.ks.assign_source(np.stack([rng.normal(size=20), rng.normal(2.0, size=20)]), a, b)
    array([ True, False])
    """
    s = check_real_array(samples, "samples")
    if s.ndim == 1:
        s = s[None]
    if s.ndim != 2 or s.shape[1] == 0 or s.shape[0] == 0:
        raise ValueError(f"samples: expected [B, m] sets of values, got shape {s.shape}")
    ra = check_real_array(source_a, "source_a").ravel()
    rb = check_real_array(source_b, "source_b").ravel()
    for v, name in ((s, "samples"), (ra, "source_a"), (rb, "source_b")):
        if v.size == 0:
            raise ValueError(f"{name}: expected a non-empty sample")
        _finite(v, name)
    return _statistics(s, ra) < _statistics(s, rb)


def source_accuracy(source_a: Any, source_b: Any, sizes: Any = (1, 2, 5, 10, 20, 50),
                    n_trials: int = 2000, seed: int = 0) -> dict[str, Any]:
    """How often :func:`assign_source` names the right source, for sets of m values.

    Each source is split at random into a reference half and a query half; for each m,
    ``n_trials`` sets of m values are drawn without replacement from each query half and
    assigned against the two reference halves (so no value is compared with itself), all
    in one batched call per m. For m = 1 the nearest-CDF rule is a threshold rule.

    Returns
    -------
    dict
        ``sizes``, ``accuracy`` (one per m, both sources' sets pooled), ``n_trials``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> r = mk.ks.source_accuracy(rng.normal(size=400), rng.normal(1.0, size=400),
    ...                           sizes=[1, 20], n_trials=200)
    >>> r["accuracy"][0] < r["accuracy"][1]
    True
    """
    ra = check_real_array(source_a, "source_a").ravel()
    rb = check_real_array(source_b, "source_b").ravel()
    _finite(ra, "source_a")
    _finite(rb, "source_b")
    for v, name in ((ra, "source_a"), (rb, "source_b")):
        if v.size < 2:  # split into a reference half and a query half
            raise ValueError(f"{name}: expected at least 2 values, got {v.size}")
    n_trials = check_int(n_trials, "n_trials", 1)
    given = np.atleast_1d(np.asarray(sizes))
    if given.ndim != 1 or given.size == 0 or given.dtype.kind not in "iu":
        raise TypeError(f"sizes: expected a non-empty sequence of ints, got {sizes!r}")
    ms = [int(v) for v in given]
    # each m draws [n_trials, half] random keys at once: refuse what cannot fit
    need = 8 * n_trials * max(ra.size, rb.size)
    if need > 2**34:
        raise ValueError(f"n_trials: {n_trials} trials of {max(ra.size, rb.size)} values "
                         f"would need {need / 2**30:.0f} GiB at once")
    rng = np.random.default_rng(check_seed(seed))
    halves = []
    for v in (ra, rb):
        perm = rng.permutation(v.size)
        halves.append((v[perm[: v.size // 2]], v[perm[v.size // 2:]]))
    for m in ms:
        smallest = min(h[1].size for h in halves)
        if m < 1 or m > smallest:
            raise ValueError(f"sizes: expected set sizes in [1, {smallest}] (half of the "
                             f"smaller source), got {m}")
    acc = []
    for m in ms:
        correct = 0
        for truth, (_, query) in enumerate(halves):
            idx = np.argsort(rng.random((n_trials, query.size)), axis=1)[:, :m]
            closer_a = assign_source(query[idx], halves[0][0], halves[1][0])
            correct += int((closer_a if truth == 0 else ~closer_a).sum())
        acc.append(correct / (2 * n_trials))
    return {"sizes": ms, "accuracy": acc, "n_trials": int(n_trials),
            "rule": "nearest empirical CDF (K-S distance) to each source's reference half"}


@dataclass(frozen=True)
class LeakageTest:
    """The K-S leakage test of one model.

    Attributes
    ----------
    statistic, pvalue : float
        Two-sided K-S between the confidences on the validation and the test set.
    threshold : float
        Smirnov's critical distance at ``alpha``.
    leaked : bool
        ``pvalue < alpha``: the test set's confidences are not distributed like unseen
        data's.
    n_validation, n_test : int
    alpha : float
    """

    statistic: float
    pvalue: float
    threshold: float
    leaked: bool
    n_validation: int
    n_test: int
    alpha: float


def leakage_test(validation_conf: Any, test_conf: Any, alpha: float = 0.05) -> LeakageTest:
    """Did the test set leak into training? K-S of a model's confidences (e.g. max
    softmax) on a held-out validation set against those on the test set.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> t = mk.ks.leakage_test(rng.beta(5, 1, 500), rng.beta(5, 1, 500))
    >>> t.leaked, t.n_test
    (False, 500)
    """
    a = check_probability(alpha, "alpha")
    v = check_real_array(validation_conf, "validation_conf").ravel()
    t = check_real_array(test_conf, "test_conf").ravel()
    if v.size == 0 or t.size == 0:
        raise ValueError("validation_conf, test_conf: expected non-empty samples")
    _no_nan(v, "validation_conf")
    _no_nan(t, "test_conf")
    r = ks_2samp(v, t)
    p = float(r.pvalue)
    return LeakageTest(float(r.statistic), p, smirnov_threshold(a, v.size, t.size), p < a,
                       int(v.size), int(t.size), a)
