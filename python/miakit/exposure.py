"""Which training records a model exposes: a membership p-value per record, and the
Benjamini-Hochberg q-values over them (docs/methods/exposure.md).

A record the target model trained on is tested against the null "this record was not in
training": under it, the target's signal on the record is one more draw from the
record's OUT distribution, which the reference models that did not train on it sample.
Two p-values, one per record, whichever its OUT reference count supports:

- ``"rank"`` (exact, distribution-free): ``(1 + #{OUT references >= t}) / (n_out + 1)``,
  valid whenever the target and the references are trained alike (exchangeable); its
  smallest value is ``1 / (n_out + 1)``, so it is used where that can survive the
  Benjamini-Hochberg threshold of even the most significant record,
  ``1 / (n_out + 1) <= fdr / n_records``;
- ``"gaussian"`` otherwise: LiRA's Gaussian model of the OUT signal, as a predictive
  test, ``P(T >= (t - mean) / (sd sqrt(1 + 1/n_out)))`` with ``T`` Student's t on
  ``n_out - 1`` degrees of freedom: exact when the OUT signal is Gaussian, whatever
  ``n_out`` (at least 2), where a plug-in normal tail would be too small with few
  references.

The signal is LiRA's (the logit-scaled true-class confidence, averaged over the views);
larger means more member-like, so both p-values are upper tails.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

from miakit._validation import check_int, check_probability, check_real_array

__all__ = ["benjamini_hochberg", "membership_pvalues", "MembershipPValues",
           "min_rank_references"]


def benjamini_hochberg(p_values: Any) -> np.ndarray:
    """Benjamini-Hochberg q-values (adjusted p-values) of independent or positively
    dependent tests: ``q_(i) = min_{j >= i} p_(j) n / j``, at most 1. Declaring every test
    with ``q <= fdr`` keeps the expected share of false discoveries at most ``fdr``.

    Examples
    --------
    >>> from miakit.exposure import benjamini_hochberg
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.5]).round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.5]
    """
    p = check_real_array(p_values, "p_values")
    if p.ndim != 1:
        raise ValueError(f"p_values: expected a 1-D array, got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("p_values: expected values in [0, 1] (no NaN)")
    n = p.size
    if n == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * n / np.arange(1, n + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(n)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


@dataclasses.dataclass(frozen=True)
class MembershipPValues:
    """Per record: its p-value, q-value, whether it is exposed and how it was tested.

    ``records`` are the indices tested (among the N examples), the arrays align with
    them; ``method`` is ``"rank"``, ``"gaussian"`` or ``"none"`` (fewer than two OUT
    references: p-value 1).
    """

    records: np.ndarray
    p_value: np.ndarray
    q_value: np.ndarray
    exposed: np.ndarray
    method: np.ndarray
    n_out: np.ndarray
    fdr: float

    @property
    def n_exposed(self) -> int:
        """Records declared exposed (``q_value <= fdr``)."""
        return int(np.count_nonzero(self.exposed))


def membership_pvalues(target_signal: Any, ref_signal: Any, ref_keep: Any,
                       records: Any = None, *, fdr: float = 0.05,
                       method: str = "auto") -> MembershipPValues:
    """Membership p-values of a target model's records against reference models' OUT
    signals, and their Benjamini-Hochberg q-values.

    Parameters
    ----------
    target_signal : array [N] float
        The target model's member-oriented signal on the N examples (LiRA's logit-scaled
        confidence, averaged over views).
    ref_signal : array [M, N] float
        The same signal of M reference models.
    ref_keep : array [M, N] bool
        Which reference models trained on which example (their OUT models sample the
        null).
    records : array of int, optional
        The examples to test (default: all N): the target's training records.
    fdr : float
        The false discovery rate at which records are declared exposed.
    method : {"auto", "rank", "gaussian"}
        ``"auto"``: the exact rank p-value where ``1 / (n_out + 1) <= fdr / n_records``,
        else the Gaussian (Student's t predictive) one.

    Returns
    -------
    MembershipPValues

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.exposure import membership_pvalues
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(32, 100)); keep = np.zeros((32, 100), bool)
    >>> target = rng.normal(size=100); target[:5] += 8.0  # five records leak
    >>> r = membership_pvalues(target, ref, keep)
    >>> r.records[r.exposed].tolist(), set(r.method.tolist())
    ([0, 1, 2, 3, 4], {'gaussian'})
    """
    t = check_real_array(target_signal, "target_signal")
    ref = check_real_array(ref_signal, "ref_signal")
    keep = np.asarray(ref_keep)
    if t.ndim != 1:
        raise ValueError(f"target_signal: expected shape [N], got {t.shape}")
    if ref.ndim != 2 or ref.shape[1] != t.size:
        raise ValueError(f"ref_signal: expected shape [M, {t.size}], got {ref.shape}")
    if keep.shape != ref.shape or keep.dtype != bool:
        raise ValueError(f"ref_keep: expected a bool array of shape {ref.shape}, got "
                         f"{keep.dtype} {keep.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(ref))):
        raise ValueError("target_signal, ref_signal: expected finite values, got NaN or inf")
    fdr = check_probability(fdr, "fdr")
    if method not in ("auto", "rank", "gaussian"):
        raise ValueError(f"method: expected 'auto', 'rank' or 'gaussian', got {method!r}")
    idx = np.arange(t.size) if records is None else np.asarray(records)
    if idx.size and idx.dtype.kind not in "iu":  # no floats, strings or bools as indices
        raise TypeError(f"records: expected integer indices, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= t.size)):
        raise ValueError(f"records: expected indices in [0, {t.size}), got {idx!r}")
    out = ~keep[:, idx]                                   # [M, R] OUT references
    n_out = out.sum(axis=0)
    x = ref[:, idx]
    tt = t[idx]
    # exact: the rank of the target among its OUT references (ties count against it)
    above = np.sum(out & (x >= tt[None, :]), axis=0)
    p_rank = (1.0 + above) / (n_out + 1.0)
    # Gaussian: Student's t predictive tail of one more OUT draw
    safe = np.maximum(n_out, 1)
    mean = np.where(out, x, 0.0).sum(axis=0) / safe
    dev2 = np.where(out, (x - mean[None, :]) ** 2, 0.0).sum(axis=0)
    sd = np.sqrt(dev2 / np.maximum(n_out - 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (tt - mean) / (sd * np.sqrt(1.0 + 1.0 / safe))
    z = np.where(sd > 0, z, np.where(tt > mean, np.inf, -np.inf))
    p_gauss = stats.t.sf(z, df=np.maximum(n_out - 1, 1))
    if method == "auto":
        use_rank = 1.0 / (n_out + 1.0) <= fdr / max(idx.size, 1)
    else:
        use_rank = np.full(idx.size, method == "rank")
    p = np.where(use_rank, p_rank, p_gauss)
    testable = np.where(use_rank, n_out >= 1, n_out >= 2)
    p = np.where(testable, p, 1.0)
    kind = np.where(~testable, "none", np.where(use_rank, "rank", "gaussian"))
    q = benjamini_hochberg(p)
    return MembershipPValues(idx, p, q, q <= fdr, kind, n_out.astype(np.int64), fdr)


def min_rank_references(n_records: int, fdr: float) -> int:
    """The OUT references a record needs for the exact rank p-value under ``"auto"``:
    the smallest ``n_out`` with ``1 / (n_out + 1) <= fdr / n_records``.

    Examples
    --------
    >>> from miakit.exposure import min_rank_references
    >>> min_rank_references(100, 0.05)
    1999
    """
    n_records = check_int(n_records, "n_records", 1)
    fdr = check_probability(fdr, "fdr")
    return max(int(math.ceil(n_records / fdr - 1 - 1e-9)), 1)
