"""RMIA, the Robust Membership Inference Attack (Zarifzadeh et al. 2024;
docs/methods/rmia.md).

With ``q`` the probability a model gives the true class (averaged over query views by
default), the attacker compares the target's ``q`` on an example with what reference
models give it:

- online: ``Pr(x) = mean over the reference models of q_ref(x)``;
- offline (OUT models only): ``Pr(x) = 0.5 ((1 + a) mean_OUT q(x) + (1 - a))``;

``ratio(x) = q_target(x) / Pr(x)``, and the score of x is the share of population
examples z (known non-members of the target) with ``ratio(x) / ratio(z) > gamma``. An
example never counts against itself. Larger scores mean "more likely a member".

The count is exact and never forms the N x Z comparison matrix: each population's ratios
are sorted once and every example is placed by binary search with the pairwise test
itself (compiled kernel, CPU and CUDA), O((N + Z) log Z) time and O(N + Z) memory.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar
from miakit._options import REFERENCES
from miakit._validation import (
    check_choice,
    check_float_array,
    check_int,
    check_keep,
    check_keep_matrix,
    check_real,
    check_real_array,
    check_targets,
)
from miakit.lira import balanced_partners
from miakit.signals import compute

__all__ = ["score", "leave_one_out", "tune_a", "TunedA", "ratios"]

_AGGREGATES = ("mean", "vote")
_ON_EMPTY = ("raise", "nan")
# scored (row, example) pairs per kernel call of leave_one_out: bounds the working memory
_CHUNK_ELEMENTS = 1 << 18


# --------------------------------------------------------------------------- inputs
def _f64(x: Any) -> Any:
    xp = ar.namespace(x)
    return xp.astype(x, xp.float64)


def _probabilities(data: Any, labels: Any, name: str, lead: int) -> Any:
    """``q`` as float64 ``[*lead dims, N, A]`` from probabilities, or logits with labels.

    ``lead`` is the number of leading axes before the example axis (1 for [M, N, A]).
    """
    if labels is None:
        x = check_float_array(data, name, ndim=(lead + 1, lead + 2))
        if len(ar.shape_of(x)) == lead + 1:
            x = ar.reshape(x, ar.shape_of(x) + (1,))
        bad = ~((x >= 0) & (x <= 1))  # NaN fails both
        if bool(bad.any()):
            raise ValueError(f"{name}: expected probabilities in [0, 1] (the true class's "
                             f"softmax probability), got {int(bad.sum())} values outside it "
                             f"(or NaN); pass logits with labels= to compute them")
        return x
    z = check_float_array(data, f"{name} (logits)", ndim=(lead + 2, lead + 3))
    shape = ar.shape_of(z)
    if len(shape) == lead + 2:
        z = ar.reshape(z, shape[:-1] + (1, shape[-1]))
    lab = ar.as_array(labels, "labels")
    n = ar.shape_of(z)[lead]
    if ar.shape_of(lab) != (n,):
        raise ValueError(f"labels: expected shape ({n},) (one label per example), got "
                         f"{ar.shape_of(lab)}")
    # float64: a float32 probability is exactly 0 beyond a logit gap of about 104
    return compute(z, ar.reshape(lab, (n, 1)), ["confidence"], dtype="float64")["confidence"]


def _aggregate(q: Any, aggregate: str) -> Any:
    """``[..., N, A]`` -> float64 ``[..., N, R]``: R = 1 (mean over views) or A (vote).

    The mean accumulates in float64 straight from the caller's precision, without a
    float64 copy of every view."""
    if aggregate == "mean":
        return q.mean(-1, dtype=ar.namespace(q).float64)[..., None]
    return _f64(q)


# --------------------------------------------------------------------------- counting
def _count(x_ratio: Any, pop_ratio: Any, self_mask: Any, gamma: float) -> Any:
    """The kernel: share of each row's population that each x beats. [R, N] -> [R, N]."""
    r, n = ar.shape_of(x_ratio)
    z = ar.shape_of(pop_ratio)[1]
    out = ar.empty_like_device(x_ratio, (r, n), "float64")
    scratch = ar.empty_like_device(x_ratio, (r, z), "float64")
    _C.rmia_count(ar.kernel_arg(x_ratio), ar.kernel_arg(pop_ratio),
                  None if self_mask is None else ar.kernel_arg(ar.as_uint8(self_mask)),
                  ar.kernel_arg(scratch), ar.kernel_arg(out), float(gamma),
                  ar.stream_of(x_ratio))
    return out


def _rows(x: Any) -> Any:
    """``[B, N, R]`` -> contiguous ``[B * R, N]`` kernel rows."""
    b, n, r = ar.shape_of(x)
    xp = ar.namespace(x)
    return xp.contiguous(xp.permute_dims(x, (0, 2, 1)).reshape(b * r, n))


def _offline_pr(mean_out: Any, a: float) -> Any:
    return 0.5 * ((1.0 + a) * mean_out + (1.0 - a))


def _divide(q: Any, pr: Any) -> Any:
    """``q / Pr``, defined where every reference gives the true class a probability of
    exactly 0 (a float underflows there for logit gaps beyond about 104 in float32, 745
    in float64; a mislabelled record does it): the ratio is +inf where ``q > 0`` (the
    target is infinitely more confident than its references: it beats every finite
    ratio) and 1 where ``q`` is 0 too (no model gives the example any probability, so it
    says nothing either way). NaN only where ``Pr`` is (no reference at all)."""
    xp = ar.namespace(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = q / pr
    return xp.where((pr == 0) & (q == 0), 1.0, r)


# --------------------------------------------------------------------------- one target
def ratios(target_q: Any, ref_q: Any, ref_keep: Any, *, offline: bool = False,
           a: float = 0.3, aggregate: str = "mean", labels: Any = None) -> Any:
    """``ratio(x) = q_target(x) / Pr(x)`` of every example, against reference models.

    Parameters
    ----------
    target_q : array [N, A] (or [N]) float
        The target's true-class probabilities (or logits [N, A, C] with ``labels``).
    ref_q : array [M, N, A] (or [M, N]) float
        The reference models' (or logits [M, N, A, C]).
    ref_keep : array [M, N] bool
        Which reference models trained on which example.
    offline : bool
        Use the OUT reference models only, with ``a``.
    a : float
        The offline interpolation in [0, 1].
    aggregate : {"mean", "vote"}
        ``"mean"``: q averaged over query views, one ratio per example ([N]);
        ``"vote"``: one ratio per view ([N, A]).
    labels : array [N] int, optional
        Given, ``target_q`` and ``ref_q`` are logits.

    Returns
    -------
    array [N] (mean) or [N, A] (vote) float64
        NaN where ``offline`` finds no OUT reference model.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> ref = np.array([[0.25, 0.5], [0.75, 0.5]])            # 2 reference models, N = 2
    >>> mk.rmia.ratios(np.array([0.75, 0.25]), ref, np.zeros((2, 2), bool)).tolist()
    [1.5, 0.5]
    """
    aggregate = check_choice(aggregate, "aggregate", list(_AGGREGATES))
    a = check_real(a, "a", 0.0, 1.0)
    qt, qr, keep = _target_and_references(target_q, ref_q, ref_keep, labels, aggregate)
    r = _ratio(qt, qr, keep, offline, a)
    return r[:, 0] if aggregate == "mean" else r


def _target_and_references(target_q: Any, ref_q: Any, ref_keep: Any, labels: Any,
                           aggregate: str) -> tuple[Any, Any, Any]:
    """Validated ``q`` of the target [N, R], of the references [M, N, R], keep (bool)."""
    qt = _aggregate(_probabilities(target_q, labels, "target_q", 0), aggregate)
    qr = _aggregate(_probabilities(ref_q, labels, "ref_q", 1), aggregate)
    m, n = ar.shape_of(qr)[:2]
    if ar.shape_of(qt)[0] != n or ar.shape_of(qt)[1] != ar.shape_of(qr)[2]:
        raise ValueError(f"target_q: expected {n} examples and the views of ref_q, got "
                         f"shape {ar.shape_of(qt)} against ref_q's {ar.shape_of(qr)}")
    qt = ar.match_device(qt, qr, "target_q", "ref_q")
    keep = check_keep(ref_keep, (m, n), "ref_keep")
    return qt, qr, ar.match_device(keep, qr, "ref_keep", "ref_q") != 0


def _ratio(qt: Any, qr: Any, keep: Any, offline: bool, a: float) -> Any:
    """``q_target / Pr`` [N, R] (NaN where offline finds no OUT reference)."""
    if not offline:
        pr = qr.mean(0)
    else:
        out = _as_float((~keep)[..., None], qr)
        pr = _offline_pr((qr * out).sum(0) / out.sum(0), a)  # 0 / 0 = NaN: no OUT model
    return _divide(qt, pr)


def _as_float(mask: Any, like: Any) -> Any:
    return ar.namespace(mask).astype(mask, like.dtype)


def score(target_q: Any, ref_q: Any, ref_keep: Any, population: Any, *,
          offline: bool = False, a: float = 0.3, gamma: float = 1.0,
          aggregate: str = "mean", labels: Any = None, population_labels: Any = None,
          on_empty: str = "raise") -> Any:
    """RMIA scores of one target model's examples.

    Parameters
    ----------
    target_q, ref_q, ref_keep, offline, a, aggregate, labels
        As in :func:`ratios`.
    population : array of int, or (pop_target_q, pop_ref_q)
        Indices of examples (among the N) known not to be in the target's training set;
        an example in the population never counts against itself. Or separate
        population examples: the target's ``[Z, A]`` and the same reference models'
        ``[M, Z, A]`` true-class probabilities (logits with ``population_labels``),
        non-members of every model.
    gamma : float
        The pairwise threshold, > 0 (``ratio(x) / ratio(z) > gamma``, strict).
    population_labels : array [Z] int, optional
        Labels of separate population examples given as logits.
    on_empty : {"raise", "nan"}
        Offline, an example without OUT reference models raises, or scores NaN (it is
        then left out of the population too).

    Returns
    -------
    array [N] float64
        The share of the population each example beats (vote: averaged over views).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 400, seed=0)          # 8 reference models
    >>> member = rng.random(400) < 0.5                         # the target's training set
    >>> ref = rng.uniform(0.3, 0.7, size=(8, 400)) + 0.2 * keep
    >>> tgt = rng.uniform(0.3, 0.7, size=400) + 0.2 * member
    >>> s = mk.rmia.score(tgt, ref, keep, population=np.flatnonzero(~member))
    >>> bool(s[member].mean() > s[~member].mean())
    True
    """
    gamma = check_real(gamma, "gamma", 0.0, open_lo=True)
    on_empty = check_choice(on_empty, "on_empty", list(_ON_EMPTY))
    aggregate = check_choice(aggregate, "aggregate", list(_AGGREGATES))
    a = check_real(a, "a", 0.0, 1.0)
    qt, qr, keep = _target_and_references(target_q, ref_q, ref_keep, labels, aggregate)
    r = _ratio(qt, qr, keep, offline, a)
    n = ar.shape_of(r)[0]
    r2 = r[:, None] if len(ar.shape_of(r)) == 1 else r  # [N, R]
    xp = ar.namespace(r2)
    empty = xp.isnan(r2).any(1)
    n_empty = int(empty.sum())
    if n_empty and on_empty == "raise":
        raise ValueError(f"ref_keep: offline RMIA needs an OUT reference model for every "
                         f"example, but {n_empty} examples have none; pass on_empty='nan' "
                         "to score them NaN")
    x_rows = _rows(r2[None])
    if isinstance(population, tuple):
        if len(population) != 2:
            raise ValueError("population: expected indices, or a pair (pop_target_q, "
                             f"pop_ref_q), got a tuple of {len(population)}")
        pt = _aggregate(_probabilities(population[0], population_labels, "population[0]",
                                       0), aggregate)
        pq = _aggregate(_probabilities(population[1], population_labels, "population[1]",
                                       1), aggregate)
        pq = ar.match_device(pq, qr, "population[1]", "ref_q")
        pt = ar.match_device(pt, qr, "population[0]", "ref_q")
        m = ar.shape_of(qr)[0]
        if ar.shape_of(pq)[0] != m or ar.shape_of(pq)[2] != ar.shape_of(qr)[2]:
            raise ValueError(f"population[1]: expected [{m}, Z, A] scored by the {m} "
                             f"reference models of ref_q, got shape {ar.shape_of(pq)}")
        z = ar.shape_of(pq)[1]
        if z == 0:
            raise ValueError("population: expected at least one example, got none")
        if ar.shape_of(pt) != (z, ar.shape_of(qr)[2]):
            raise ValueError(f"population[0]: expected the target's view of the {z} "
                             f"population examples, got shape {ar.shape_of(pt)}")
        # population examples are non-members of every reference model: all are OUT
        pop2 = _ratio(pt, pq, xp.zeros(ar.shape_of(pq)[:2], dtype=xp.bool), offline, a)
        out = _count(x_rows, _rows(pop2[None]), None, gamma)
    else:
        idx = ar.to_numpy(population)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError("population: expected a 1-D array of example indices or a pair "
                            f"of arrays, got {type(population).__name__} {idx.dtype}")
        if idx.size == 0:
            raise ValueError("population: expected at least one example index, got none")
        if idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"population: expected indices in [0, {n}), got "
                             f"{int(idx.min())}..{int(idx.max())}")
        if np.unique(idx).size != idx.size:
            raise ValueError("population: expected distinct example indices, got repeats")
        in_pop = np.zeros(n, dtype=bool)
        in_pop[idx] = True
        mask = xp.asarray(in_pop)
        pop2 = xp.where(mask[:, None], r2, float("nan"))
        self_rows = _rows(xp.broadcast_to(mask[:, None], ar.shape_of(r2))[None])
        out = _count(x_rows, _rows(pop2[None]), self_rows, gamma)
    res = out.mean(0)
    if n_empty:
        res = xp.where(empty, float("nan"), res)
    return res


# --------------------------------------------------------------------------- all targets
def leave_one_out(q: Any, keep: Any, targets: Any = None, *, offline: bool = False,
                  a: float = 0.3, gamma: float = 1.0, aggregate: str = "mean",
                  population: Any = None, labels: Any = None, population_labels: Any = None,
                  references: str = "balanced", on_empty: str = "raise") -> Any:
    """Attack each target model with the other models as references.

    Parameters
    ----------
    q : array [M, N, A] (or [M, N]) float
        True-class probabilities of all M models (or logits [M, N, A, C] with
        ``labels``).
    keep : array [M, N] bool
        Training membership of every model.
    targets : sequence of int, optional
        Models to attack (default: all).
    offline, a, gamma, aggregate
        As in :func:`score`.
    population : array [M, Z, A] (or [M, Z]) float, optional
        Separate population examples scored by all M models (non-members of every
        model; logits with ``population_labels``). Default: each target's own
        non-members among the N, an example never counting against itself.
    labels, population_labels : array of int, optional
        Given, ``q`` / ``population`` are logits.
    references : {"balanced", "all"}
        ``"balanced"`` (default): besides the target, leave out one model from the other
        side of each example (its pair partner for paired keep matrices; see
        :func:`miakit.lira.leave_one_out`), so the references of an example do not
        depend on the target's membership. ``"all"``: leave out the target only.
    on_empty : {"raise", "nan"}
        An example left without references (offline: OUT references), or a target
        without a population to compare with (by default its non-members: a target
        that has none), raises or scores NaN. A non-member that is its target's only
        one has nothing to be compared with but itself and scores NaN either way.

    Returns
    -------
    array [K, N] float64
        Row k scores target ``targets[k]``; judge it with ``keep[targets]``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 300, seed=0)
    >>> q = rng.uniform(0.2, 0.6, size=(8, 300, 2)) + 0.3 * keep[..., None]
    >>> s = mk.rmia.leave_one_out(q, keep)
    >>> s.shape, mk.metrics.auc(s, keep) > 0.8
    ((8, 300), True)
    """
    aggregate = check_choice(aggregate, "aggregate", list(_AGGREGATES))
    references = check_choice(references, "references", list(REFERENCES))
    on_empty = check_choice(on_empty, "on_empty", list(_ON_EMPTY))
    a = check_real(a, "a", 0.0, 1.0)
    gamma = check_real(gamma, "gamma", 0.0, open_lo=True)
    qa = _aggregate(_probabilities(q, labels, "q", 1), aggregate)  # [M, N, R]
    m, n, nr = ar.shape_of(qa)
    if m < 2:
        raise ValueError(f"q: leave-one-out needs at least 2 models, got {m}")
    k_u8 = ar.match_device(check_keep(keep, (m, n)), qa, "keep", "q")
    kb = k_u8 != 0
    tg = check_targets(targets, m)
    xp = ar.namespace(qa)
    dev = xp.asarray  # host indices follow q to its device

    total = qa.sum(0)  # [N, R]
    # OUT sums one model at a time: working memory O(N), not another [M, N] array
    total_out = xp.zeros_like(total)
    n_out = xp.zeros_like(total[:, 0])
    for j in range(m):
        out_j = _as_float(~kb[j], qa)
        total_out += qa[j] * out_j[:, None]
        n_out += out_j
    if population is not None:
        pq = _aggregate(_probabilities(population, population_labels, "population", 1),
                        aggregate)
        pq = ar.match_device(pq, qa, "population", "q")
        if ar.shape_of(pq)[0] != m or ar.shape_of(pq)[2] != nr:
            raise ValueError(f"population: expected [{m}, Z, A] scored by the {m} models of "
                             f"q with its query views, got shape {ar.shape_of(pq)}")
        if ar.shape_of(pq)[1] == 0:
            raise ValueError("population: expected at least one example, got none")
        pop_total = pq.sum(0)  # [Z, R]
    ar_n = dev(np.arange(n))
    keep_np = ar.to_numpy(kb)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n * nr))
    result = ar.empty_like_device(qa, (len(tg), n), "float64")
    n_empty = 0
    no_non_member = []  # targets without a single non-member (the default population)
    for c0 in range(0, len(tg), chunk):
        tk = tg[c0:c0 + chunk]
        tkd = dev(tk)
        qt = qa[tkd]  # [B, N, R]
        kt = kb[tkd]  # [B, N]
        # the models left out of example n's references: the target, and (balanced) its
        # partner p from the other side; has = a partner exists
        if references == "balanced":
            part = dev(balanced_partners(keep_np, tk))
            has = _as_float(part >= 0, qa)
            pi = xp.where(part >= 0, part, 0)
            qp = qa[pi, ar_n[None, :]] * has[..., None]
            p_out = has * _as_float(~kb[pi, ar_n[None, :]], qa)
        else:
            has = xp.zeros_like(_as_float(kt, qa))
            qp = xp.zeros_like(qt)
            p_out = has
        # the references' sum: every model's, less the ones left out (q >= 0, so the
        # sum has no cancellation until this subtraction; entries it leaves within
        # 2^-20 of the total are summed again directly, as LiRA refits such sides)
        if not offline:
            cnt = (m - 1) - has
            s_ref = total[None] - qt - qp
            whole = total
        else:
            t_out = _as_float(~kt, qa)
            cnt = n_out[None] - t_out - p_out
            s_ref = total_out[None] - qt * t_out[..., None] - qp * p_out[..., None]
            whole = total_out
        s_ref = _resum_cancelled(s_ref, whole, qa, kb if offline else None, tkd,
                                 part if references == "balanced" else None)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = s_ref / cnt[..., None]
        mean = xp.where((cnt > 0)[..., None], mean, float("nan"))
        pr = _offline_pr(mean, a) if offline else mean
        rx = _divide(qt, pr)  # [B, N, R]
        empty = xp.isnan(rx).any(-1)
        n_empty += int(empty.sum())
        if population is None:
            pop = xp.where(kt[..., None], float("nan"), rx)
            self_mask = _rows(xp.broadcast_to((~kt)[..., None], ar.shape_of(rx)))
        else:
            pqt = pq[tkd]  # [B, Z, R]: each target's own view of the population
            pr_pop = _resum_cancelled(pop_total[None] - pqt, pop_total, pq, None, tkd,
                                      None) / (m - 1)
            if offline:
                pr_pop = _offline_pr(pr_pop, a)
            pop = _divide(pqt, pr_pop)
            self_mask = None
        out = _count(_rows(rx), _rows(pop), self_mask, gamma)
        res = out.reshape(len(tk), nr, n).mean(1)
        if population is None:  # without non-members the default population is empty
            no_non_member += [int(t) for t, k in zip(tk, ar.to_numpy(kt.all(1))) if k]
        result[c0:c0 + len(tk)] = xp.where(empty, float("nan"), res)
    if n_empty and on_empty == "raise":
        need = "an OUT reference model" if offline else "a reference model"
        left = "and its partner are" if references == "balanced" else "is"
        raise ValueError(f"keep: {'offline' if offline else 'online'} RMIA needs {need} for "
                         f"every example, but {n_empty} (target, example) pairs have none "
                         f"once the target {left} left out; train more shadow models, or "
                         "pass on_empty='nan'")
    if no_non_member and on_empty == "raise":
        shown = ", ".join(str(t) for t in no_non_member[:10])
        more = ", ..." if len(no_non_member) > 10 else ""
        raise ValueError(
            f"keep: without population=, RMIA compares each example with its target's "
            f"non-members, but target model(s) {shown}{more} have no non-member among the "
            f"{n} examples; pass population= (examples none of the models trained on), or "
            "on_empty='nan' to score them NaN")
    return result


def _resum_cancelled(s_ref: Any, whole: Any, qa: Any, keep: Any, tk: Any,
                     part: Any) -> Any:
    """Recompute, by direct summation over the references, the entries of ``s_ref``
    ([B, N, R], total less the left-out models) that the subtraction may have left with
    a large relative error: those below 2^-20 of the total ``whole`` [N, R] (a total of
    0 has no rounding error to lose). ``qa`` [M, N, R] holds every model's values (the
    examples', or the population's); ``keep`` (offline: OUT models only) and ``part`` (the
    balanced partners) as for the examples' references, None for the population's."""
    bad = s_ref < whole[None] * 2.0 ** -20
    if not bool(bad.any()):
        return s_ref
    xp = ar.namespace(qa)
    b_all, n_all, r_all = xp.nonzero(bad)
    s_ref = xp.copy(s_ref)
    step = max(1, (1 << 22) // max(1, ar.shape_of(qa)[0]))  # [M, step] temporaries
    for i0 in range(0, len(n_all), step):
        b, n, r = b_all[i0:i0 + step], n_all[i0:i0 + step], r_all[i0:i0 + step]
        vals = qa[:, n, r]  # [M, nb]
        cols, use = xp.arange(len(n)), xp.ones(vals.shape, dtype=xp.bool)
        if keep is not None:  # offline: OUT models only
            use &= ~keep[:, n]
        use[tk[b], cols] = False
        if part is not None:
            p = part[b, n]
            ok = p >= 0
            use[p[ok], cols[ok]] = False
        s_ref[b, n, r] = (vals * _as_float(use, vals)).sum(0)
    return s_ref


# --------------------------------------------------------------------------- tuning a
@dataclass(frozen=True)
class TunedA:
    """The offline ``a`` chosen by :func:`tune_a`.

    Attributes
    ----------
    a : float
        The grid value with the largest AUC (the smallest such value on ties).
    grid, auc : numpy.ndarray
        Every value tried and the AUC it gave.
    target : int
        The reference model attacked.
    """

    a: float
    grid: np.ndarray
    auc: np.ndarray
    target: int


def tune_a(q: Any, keep: Any, *, target: int = 0, grid: Any = None, gamma: float = 1.0,
           aggregate: str = "mean", labels: Any = None,
           references: str = "balanced") -> TunedA:
    """Pick offline RMIA's ``a`` by AUC, attacking one reference model with the others.

    Parameters
    ----------
    q, keep, gamma, aggregate, labels, references
        As in :func:`leave_one_out` (reference models only, never the audited target).
    target : int
        The reference model used as the target.
    grid : sequence of float, optional
        Values of ``a`` to try (default 0, 0.1, ..., 1).

    Returns
    -------
    TunedA

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 400, seed=0)
    >>> q = rng.beta(2, 2, size=(8, 400)) ** (1 - 0.5 * keep)
    >>> t = mk.rmia.tune_a(q, keep)
    >>> 0.0 <= t.a <= 1.0, t.auc.shape
    (True, (11,))
    """
    from miakit.metrics import auc

    g = np.linspace(0.0, 1.0, 11) if grid is None else check_real_array(grid, "grid")
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"grid: expected a non-empty 1-D sequence of a values, got {grid!r}")
    for v in g:
        check_real(v, "grid", 0.0, 1.0)
    keep_np = check_keep_matrix(keep, even=False)
    t = check_int(target, "target", 0, keep_np.shape[0] - 1,
                  what=f"a reference model index in [0, {keep_np.shape[0]})")
    kt = keep_np[t]
    if kt.all() or not kt.any():  # the AUC needs members and non-members of the target
        raise ValueError(f"keep: expected both members and non-members of reference model "
                         f"{t} (the target), got {'only members' if kt.all() else 'none'}")
    aucs = []
    for v in g:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = ar.to_numpy(leave_one_out(q, keep, [t], offline=True, a=float(v), gamma=gamma,
                                          aggregate=aggregate, labels=labels,
                                          references=references, on_empty="nan"))[0]
        ok = np.isfinite(s)
        if kt[ok].all() or not kt[ok].any():  # every example of one side was left NaN
            raise ValueError(f"keep: expected reference models with and without each example "
                             f"(no example of one side of model {t} could be scored)")
        aucs.append(auc(s[ok], kt[ok]))
    auc_per_a = np.asarray(aucs)
    return TunedA(float(g[int(np.argmax(auc_per_a))]), g, auc_per_a, t)
