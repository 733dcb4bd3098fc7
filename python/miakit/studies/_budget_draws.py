"""The attacks behind ``miakit budget``: groups of examples, LiRA draws over reference
budgets, and the memorization-aware attack (see :mod:`miakit.studies.budget`).

Everything here works on checked arrays; :func:`memorization_aware` is public through
:mod:`miakit.studies.budget`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit._validation import (
    check_choice,
    check_float_array,
    check_int,
    check_keep_matrix,
    check_probabilities,
    check_real,
    check_run_labels,
    check_seed,
)
from miakit.shadow.keep import is_paired

MAX_DRAWS = 10_000
"""The most random draws per budget: each draw fits and scores LiRA once per budget, so
more would run for days; a larger ``draws`` is refused by name rather than looping."""

MAX_EXAMPLES = 2**32
"""The most examples a planted mask may cover (4 GiB of booleans)."""

RANKINGS = ("memorization", "hellinger")
RANK_NAMES = {"memorization": "memorization", "hellinger": "Hellinger distance"}
PLANTED, REST = "planted", "the rest"
AWARE, RANDOM, ALL = "memorization-aware", "random selection", "all examples"


def planted_mask(planted: Any, n: int) -> np.ndarray:
    """The planted records as a bool mask [n]: from a mask, or from indices.

    Parameters
    ----------
    planted : array [n] bool, or sequence of int
        ``Dataset.planted``, or the indices of a run's ``dataset_info["planted"]``.
    n : int
        Number of examples.

    Returns
    -------
    numpy.ndarray [n] bool

    Examples
    --------
    >>> from miakit.studies.budget import planted_mask
    >>> planted_mask([1, 3], 5).tolist()
    [False, True, False, True, False]
    """
    n = check_int(n, "n", 1, MAX_EXAMPLES, what=f"a number of examples in [1, {MAX_EXAMPLES}]")
    a = np.asarray(planted)
    if a.dtype == bool:
        if a.shape != (n,):
            raise ValueError(f"planted: expected a mask of shape ({n},), got {a.shape}")
        mask = a.copy()
    else:
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"planted: expected a bool mask [{n}] or integer indices, got "
                             f"dtype {a.dtype} and shape {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= n):
            raise ValueError(f"planted: indices must lie in [0, {n}), got "
                             f"[{a.min()}, {a.max()}]")
        mask = np.zeros(n, bool)
        mask[a.astype(np.int64)] = True
    if not mask.any() or mask.all():
        raise ValueError(f"planted: expected some but not all of the {n} examples, got "
                         f"{int(mask.sum())}")
    return mask


def _top(values: np.ndarray, q: float) -> np.ndarray:
    """The top (1 - q) share of the finite values (ranked, ties to the lower index: many
    examples share a memorization of 0)."""
    finite = np.flatnonzero(np.isfinite(values))
    order = finite[np.argsort(-values[finite], kind="stable")]
    top = np.zeros(values.size, bool)
    top[order[: max(1, int(round((1.0 - q) * finite.size)))]] = True
    return top


def _groups(ranks: dict[str, np.ndarray], quantiles: Sequence[float],
            planted: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """All examples; the planted records and the rest; for each ranking and quantile q
    the top (1 - q) share by that ranking."""
    n = next(iter(ranks.values())).size if ranks else planted.size  # type: ignore[union-attr]
    out = {"all examples": np.ones(n, bool)}
    if planted is not None:
        out[PLANTED] = planted
        out[REST] = ~planted
    for key, values in ranks.items():
        for q in quantiles:
            out[f"top {100 * (1 - q):g}% by {RANK_NAMES[key]}"] = _top(values, q)
    return out


def _first_budget(series: list[tuple[int, float]], target: float) -> int | None:
    return next((b for b, t in series if t >= target), None)


def _needed(rows: list[dict], groups: Sequence[str], key: str,
            target: float) -> dict[str, dict[str, Any]]:
    """Per group, the smallest budget whose mean TPR reaches ``target``, and the interval
    over draws: [smallest budget where the best draw reaches it, smallest budget where
    the worst draw does] (None: not reached within the budgets)."""
    out = {}
    for g in groups:
        rs = [r for r in rows if r["group"] == g]
        out[g] = {"budget": _first_budget([(r["budget"], r[key]["mean"]) for r in rs], target),
                  "interval": [_first_budget([(r["budget"], r[key]["max"]) for r in rs], target),
                               _first_budget([(r["budget"], r[key]["min"]) for r in rs],
                                             target)]}
    return out


def _check_budgets(budgets: Sequence[int], m: int, name: str = "budgets",
                   pilot: int = 0) -> list[int]:
    if isinstance(budgets, (str, bytes)) or not hasattr(budgets, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of even ints >= 2, got "
                        f"{type(budgets).__name__}")
    items = list(budgets)
    if any(np.ndim(b) != 0 for b in items):  # a nested list: check_int would name nothing
        raise TypeError(f"{name}: expected a flat sequence of even ints >= 2, got {budgets!r}")
    b_list = sorted({check_int(b, name) for b in items})
    if not b_list or b_list[0] < 2 or any(b % 2 for b in b_list):
        raise ValueError(f"{name}: expected even numbers of reference models >= 2, got "
                         f"{list(budgets)}")
    left = m - pilot
    if b_list[-1] > left - 2:
        of = f", {pilot} of them the pilot" if pilot else ""
        raise ValueError(f"{name}: the run has {m} models{of}; a budget of {b_list[-1]} "
                         f"leaves fewer than 2 targets (largest possible: "
                         f"{left - 2 - (left % 2)})")
    return b_list


def _check_keep(k: np.ndarray) -> None:
    m = k.shape[0]
    n_in = k.sum(axis=0)
    if not is_paired(k):
        raise ValueError("keep: expected complementary pairs of models (rows 2i and 2i + 1, "
                         "as mk.shadow.balanced_keep draws them)")
    if n_in.min() < 2 or (m - n_in).min() < 2:
        raise ValueError(f"keep: expected at least 2 models per side (IN and OUT) of every "
                         f"example, got {int(min(n_in.min(), (m - n_in).min()))}")


def _ranking(key: str, correct: np.ndarray, s: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per-example values of a ranking on the given models: label memorization from
    ``correct`` [M, N], or the Hellinger distance of the IN/OUT Gaussians fitted to the
    scaled confidence ``s`` [M, N, A] (mean over the query views)."""
    from miakit import lira, memorization

    if key == "memorization":
        return np.asarray(memorization.feldman_zhang(correct, keep), dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        fit = lira.fit(s, keep, variance="global" if keep.shape[0] < 64 else "per_example")
        return np.nanmean(np.asarray(lira.hellinger(fit)), axis=1)


# Models read per block when the logits are a run's model files: one kernel call per
# block, and one block's logits in memory (the audit reads its runs the same way).
_BLOCK_BYTES = 64 << 20


def _check_inputs(keep: Any) -> np.ndarray:
    """The keep matrix: booleans (or 0/1 values) [M, N] in complementary pairs, M >= 2."""
    return check_keep_matrix(keep, even=True)


def _check_draws(draws: Any, targets: Any) -> tuple[int, int]:
    """``draws`` in [1, MAX_DRAWS] and ``targets`` >= 1."""
    draws = check_int(draws, "draws", 1, MAX_DRAWS, what=f"a positive int <= {MAX_DRAWS}")
    return draws, check_int(targets, "targets", 1, what="a positive int")


def _check_source(logits: Any, keep: np.ndarray, labels: Any) -> tuple[Any, np.ndarray]:
    """The logits (a run, or a float numpy array [M, N, A, C] matching ``keep``) and the
    labels [N] as int64 class indices; a run's model files are not read here (only its
    completeness and shapes are checked)."""
    from miakit.shadow._run import Run

    if not isinstance(logits, Run):
        z = check_float_array(logits, "logits", ndim=4)
        if ar.is_torch(z):
            z = ar.to_numpy(z.float() if z.dtype.itemsize < 4 else z)  # bfloat16: no numpy
        z = np.asarray(z)
        m, n = keep.shape
        if z.shape[:2] != (m, n) or 0 in z.shape:
            raise ValueError(f"logits: expected [M, N, A, C] with M, N = {m}, {n} (keep's "
                             f"shape) and A, C >= 1, got shape {z.shape}")
        return z, check_run_labels(labels, n, z.shape[3])
    labels = np.asarray(ar.to_numpy(labels) if ar.is_torch(labels) else labels)
    logits.require_finished()  # every model, or an error listing the missing ones
    want = (logits.n_models, logits.n_examples)
    if keep.shape != want:
        raise ValueError(f"keep: expected the run's shape [{want[0]}, {want[1]}] (models, "
                         f"examples), got {list(keep.shape)}")
    if labels.shape != (want[1],):
        raise ValueError(f"labels: expected the run's shape [{want[1]}], got "
                         f"{list(labels.shape)}")
    return logits, check_run_labels(labels, want[1], logits.n_classes)


def _logit_signals(logits: Any, labels: np.ndarray, correct: bool
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Scaled confidence [M, N, A] (float64) and, with ``correct``, the first view's
    correctness [M, N], from an array of logits [M, N, A, C] or from a run
    (:class:`miakit.shadow.Run`), whose model files are read one block of models at a
    time: no stacked copy of its logits, on disk or in memory. Both give the same values
    (the same kernels, applied per model)."""
    from miakit import signals
    from miakit.shadow._run import Run

    if not isinstance(logits, Run):
        z = np.asarray(logits)
        s = np.asarray(signals.scaled_confidence(z, labels[:, None]), dtype=np.float64)
        return s, np.asarray(signals.correct(z[:, :, 0, :], labels)) if correct else None
    run = logits
    m, (n, a, c) = run.n_models, run.model_shape
    step = max(1, min(m, _BLOCK_BYTES // max(n * a * c * run.logits_dtype.itemsize, 1)))
    block = np.empty((step, n, a, c), dtype=run.logits_dtype)
    s = np.empty((m, n, a), dtype=np.float64)
    right = np.empty((m, n), dtype=bool) if correct else None
    for m0 in range(0, m, step):
        m1 = min(m, m0 + step)
        z = block[: m1 - m0]
        for k in range(m0, m1):  # verified when the run was opened, as the audit reads it
            z[k - m0] = run.model_logits(k, verify=False)
        s[m0:m1] = signals.scaled_confidence(z, labels[:, None])
        if right is not None:
            right[m0:m1] = signals.correct(z[:, :, 0, :], labels)
    return s, right


def _signals(logits: Any, keep: np.ndarray, labels: np.ndarray, rank_by: Sequence[str],
             correct: bool = False
             ) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """Scaled confidence [M, N, A], the first view's correctness [M, N] (when a ranking
    or ``correct`` asks for it, else None) and, per ranking, its per-example values on
    the whole run: label memorization, or the Hellinger distance of the fitted IN/OUT
    Gaussians (mean over the query views). ``logits``: an array or a run."""
    from miakit._lira_scale import check_span

    s, right = _logit_signals(logits, labels, correct or bool(rank_by))
    check_span(s, name="logits")  # before any draw fits them
    if not rank_by:
        return s, right, {}
    assert right is not None  # asked for by the rankings
    return s, right, {key: _ranking(key, right, s, keep) for key in rank_by}


def _attack_raw(s: np.ndarray, k: np.ndarray, groups: dict[str, np.ndarray],
                b_list: list[int], draws: int, targets: int, f_list: list[float],
                rng: np.random.Generator, columns: np.ndarray | None = None,
                exclude: np.ndarray | None = None) -> dict[tuple[int, str], list[dict]]:
    """The measures of every draw of :func:`_attack_draws`, per (budget, group)."""
    from miakit import lira, metrics

    m = k.shape[0]
    pairs = np.setdiff1d(np.arange(m // 2), [] if exclude is None else exclude)
    if columns is not None:
        s, k = s[:, columns], k[:, columns]
    raw: dict[tuple[int, str], list[dict]] = {}
    for b in b_list:
        for _ in range(draws):
            chosen = rng.permutation(pairs)
            refs = np.concatenate([[2 * p, 2 * p + 1] for p in chosen[: b // 2]])
            rest = np.concatenate([[2 * p, 2 * p + 1] for p in chosen[b // 2:]])
            tg = rng.choice(rest, size=min(targets, rest.size), replace=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = lira.fit(s[refs], k[refs], variance="global" if b < 64
                               else "per_example")
                sc = np.stack([lira.score(s[t], fit, on_empty="nan") for t in tg])
            for name, sel in groups.items():
                ok = np.isfinite(sc) & sel[None, :]
                ranked = metrics.RankedScores(sc[ok], k[tg][ok])
                raw.setdefault((b, name), []).append(
                    {"auc": ranked.auc(),
                     **{f"tpr@{f:g}": ranked.tpr_at_fpr(f).tpr for f in f_list},
                     "n_pos": int(k[tg][ok].sum()), "n_neg": int((~k[tg][ok]).sum())})
    return raw


def _attack_draws(s: np.ndarray, k: np.ndarray, groups: dict[str, np.ndarray],
                  b_list: list[int], draws: int, targets: int, f_list: list[float],
                  rng: np.random.Generator, columns: np.ndarray | None = None,
                  exclude: np.ndarray | None = None) -> list[dict]:
    """LiRA online fitted on b reference models (random complementary pairs, never one of
    ``exclude``'s pairs), scoring up to ``targets`` held-out models; per budget and group
    the mean, spread and range over draws of the AUC and the TPR at each FPR, and the mean
    count of member (``n_pos``) and non-member (``n_neg``) scores per draw. ``columns``
    restricts the attack to those examples (the groups are then masks over them)."""
    return _rows(_attack_raw(s, k, groups, b_list, draws, targets, f_list, rng, columns,
                             exclude))


def _rows(raw: dict[tuple[int, str], list[dict]]) -> list[dict]:
    """Per (budget, group): the mean, spread and range over draws of each measure, and
    the mean of the counts."""
    rows = []
    for (b, name), vals in raw.items():
        row: dict[str, Any] = {"budget": b, "group": name, "draws": len(vals)}
        for key in vals[0]:
            v = np.array([x[key] for x in vals], dtype=np.float64)
            if key.startswith("n_"):
                row[key] = float(v.mean())
            else:
                row[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1
                            else 0.0, "min": float(v.min()), "max": float(v.max())}
        rows.append(row)
    return rows


def _check_pilot(pilot: int, m: int) -> int:
    p = check_int(pilot, "pilot", 2, what="an even number of models >= 2")
    if p % 2:
        raise ValueError(f"pilot: expected an even number of models (complementary pairs), "
                         f"got {p}")
    if p > m - 4:
        raise ValueError(f"pilot: the run has {m} models; a pilot of {p} leaves fewer than "
                         f"4 (a pair of reference models and a pair of targets; largest "
                         f"possible: {m - 4 - (m % 2)})")
    return p


def _check_candidates(candidates: Any, n: int | None) -> int:
    """The number of candidates: an int is a count in [1, n], a float a share in (0, 1]
    (``n`` None: the count is checked against 1 only, and a share counts 1 example)."""
    what = (f"a count in [1, {n}]" if n is not None else "a count >= 1") + \
        " (an int) or a share in (0, 1] (a float)"
    if isinstance(candidates, (int, np.integer)) and not isinstance(candidates, bool):
        return check_int(candidates, "candidates", 1, n, what=what)
    share = check_real(candidates, "candidates", 0.0, 1.0, open_lo=True, what=what)
    return max(1, int(round(share * (n or 1))))


def _pick(values: np.ndarray, count: int, rng: np.random.Generator,
          then: np.ndarray | None = None) -> np.ndarray:
    """The indices of the ``count`` largest finite values, sorted; ties (a memorization
    measured on a few models takes few distinct values) broken by the larger ``then``,
    and at random after that."""
    finite = rng.permutation(np.flatnonzero(np.isfinite(values)))
    second = np.zeros(finite.size) if then is None else np.nan_to_num(
        then[finite], nan=-np.inf)
    order = finite[np.lexsort((-second, -values[finite]))]
    return np.sort(order[:count])


def _gap(s: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mean scaled confidence of the IN models minus that of the OUT models, per example
    (mean over the query views): memorization's tie-break on a few models."""
    sm = s.mean(axis=2)
    n_in, n_out = keep.sum(axis=0), (~keep).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(keep, sm, 0.0).sum(axis=0) / n_in
                - np.where(keep, 0.0, sm).sum(axis=0) / n_out)


def _spread(v: list[float]) -> dict[str, float]:
    a = np.asarray(v, dtype=np.float64)
    return {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max())}


def _aware(s: np.ndarray, correct: np.ndarray, k: np.ndarray, *, pilot: int, count: int,
           score: str, b_list: list[int], draws: int, targets: int, f_list: list[float],
           planted: np.ndarray | None, seed: int,
           full: np.ndarray | None = None) -> dict[str, Any]:
    """The memorization-aware attack on checked arrays (see :func:`memorization_aware`)."""
    m, n = k.shape
    if full is None:
        full = _ranking(score, correct, s, k)
    finite = np.flatnonzero(np.isfinite(full))
    full_top = finite[np.argsort(-full[finite], kind="stable")][:count]
    rng = np.random.default_rng(seed)
    raw: dict[tuple[int, str], list[dict]] = {}
    overlap, recall, precision, picks = [], [], [], []
    for _ in range(draws):
        pairs = rng.choice(m // 2, size=pilot // 2, replace=False)
        rows = np.concatenate([[2 * p, 2 * p + 1] for p in pairs])
        pick = _pick(_ranking(score, correct[rows], s[rows], k[rows]), count, rng,
                     _gap(s[rows], k[rows]) if score == "memorization" else None)
        rand = np.sort(rng.choice(n, size=pick.size, replace=False))
        picks.append(pick.tolist())
        overlap.append(float(np.isin(pick, full_top).mean()))
        if planted is not None:
            recall.append(float(planted[pick].sum() / planted.sum()))
            precision.append(float(planted[pick].mean()))
        # the three selections are attacked with the same references and targets
        attack_seed = int(rng.integers(2 ** 63))
        for name, cols in ((AWARE, pick), (RANDOM, rand), (ALL, None)):
            size = n if cols is None else cols.size
            got = _attack_raw(s, k, {name: np.ones(size, bool)}, b_list, 1, targets, f_list,
                              np.random.default_rng(attack_seed), columns=cols, exclude=pairs)
            for key, vals in got.items():
                raw.setdefault(key, []).extend(vals)
    rows_out = _rows(raw)
    for row in rows_out:
        row["models_spent"] = row["budget"] + (pilot if row["group"] == AWARE else 0)
    low = f"tpr@{min(f_list):g}"
    all_series = [(r["models_spent"], r[low]["mean"]) for r in rows_out if r["group"] == ALL]
    per_budget = []
    for r in rows_out:
        if r["group"] == AWARE:
            per_budget.append({"budget": r["budget"], "models_spent": r["models_spent"],
                               "all_examples_need": _first_budget(all_series,
                                                                  r[low]["mean"])})
    report: dict[str, Any] = {
        "pilot": pilot, "score": score, "candidates": count,
        "candidate_share": count / n, "budgets": b_list, "draws": draws,
        "targets_per_draw": targets, "fprs": f_list, "tpr": low,
        "attack": "per draw: a pilot of complementary pairs ranks every example by "
                  f"{RANK_NAMES[score]} measured on the pilot alone; LiRA online on b "
                  "further reference models (never a pilot model), fitted and scored on the "
                  "top candidates only, on a random selection of as many examples, and on "
                  "all examples, with the same references and held-out targets",
        "rows": rows_out,
        "models_for_the_same_tpr": per_budget,
        "agreement": {"overlap_with_full_run_top": _spread(overlap),
                      "full_run_top": full_top.tolist(),
                      "meaning": f"share of the pilot's {count} candidates among the top "
                                 f"{count} by {RANK_NAMES[score]} measured on all {m} "
                                 "models"},
        "picks": picks}
    if planted is not None:
        report["planted_recovered"] = _spread(recall)
        report["planted_precision"] = _spread(precision)
    return report


def memorization_aware(logits: Any, keep: Any, labels: Any, *, pilot: int = 4,
                       budgets: Sequence[int] = (2, 4, 8, 16, 32),
                       candidates: float | int = 0.1, score: str = "memorization",
                       draws: int = 5, targets: int = 8,
                       fprs: Sequence[float] = (0.01, 0.001), planted: Any = None,
                       seed: int = 0) -> dict[str, Any]:
    """A memorization-aware attack: rank the examples with a few pilot models, attack the
    top candidates, and report the attack's power per shadow model spent.

    Per draw: ``pilot`` models (random complementary pairs) alone estimate every
    example's label memorization (or the Hellinger distance of its IN/OUT Gaussians); the
    top ``candidates`` examples by that estimate are attacked with LiRA online fitted
    on b further reference models (never a pilot model) and scored on held-out target
    models, for each budget b (ties of a memorization measured on a few models are
    broken by the gap between the IN and OUT models' mean scaled confidence). The same
    references and targets also attack a random selection of as many examples, and all
    examples, so that the power of the selection shows against not selecting: the aware
    attack spends ``pilot + b`` models, the others b (Choi et al., "Why Train More?";
    docs/methods/vulnerability.md).

    Parameters
    ----------
    logits : array [M, N, A, C] or miakit.shadow.Run
        Logits of every model, or a finished run, whose model files are then read one
        block of models at a time (no stacked copy of the logits; the same results).
    keep : array [M, N] bool
        In complementary pairs (rows 2i and 2i + 1), at least 2 models per side of every
        example.
    labels : array [N] int
    pilot : int
        Models (even: complementary pairs) that estimate the ranking; at most M - 4.
    budgets : sequence of int
        Reference models per attack (even, at most M - pilot - 2).
    candidates : float or int
        The candidates attacked: a share of the examples in (0, 1] (a float), or a count
        in [1, N] (an int).
    score : {"memorization", "hellinger"}
        The pilot's ranking: label memorization (Feldman-Zhang), or the Hellinger
        distance between the IN and OUT Gaussians of the scaled confidence.
    draws : int
        Random draws of the pilot, references and targets per budget.
    targets : int
        Target models per draw.
    fprs : sequence of float
        FPRs of the TPR table, in (0, 1).
    planted : array [N] bool or sequence of int, optional
        Planted records: the report says how many of them the pilot picks.
    seed : int

    Returns
    -------
    dict
        ``rows``: per budget and group ("memorization-aware", "random selection", "all
        examples") the mean, standard deviation and range over draws of the AUC and of
        the TPR at each FPR, the mean member and non-member counts per draw (``n_pos``,
        ``n_neg``) and the models spent (``models_spent``: pilot + b for the aware
        attack, b for the others); ``models_for_the_same_tpr``: per budget, the smallest
        budget with which all examples reach the aware attack's mean TPR at the lowest
        FPR (None: not within the budgets); ``agreement``: the share of the pilot's
        candidates among the top as many by the same score on the whole run (mean and
        range over draws); ``picks``: each draw's candidates; with ``planted``,
        ``planted_recovered`` (share of the planted records picked) and
        ``planted_precision`` (share of the picks that are planted).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.studies.budget import memorization_aware
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(16, 200, seed=0)
    >>> y = rng.integers(0, 3, 200)
    >>> z = rng.normal(size=(16, 200, 1, 3)).astype(np.float32)
    >>> z[np.arange(16)[:, None], np.arange(200), 0, y] += 0.3 * keep
    >>> z[np.arange(16)[:, None], np.arange(20), 0, y[:20]] += 5.0 * keep[:, :20] - 2.5
    >>> r = memorization_aware(z, keep, y, pilot=4, budgets=[2, 4], candidates=20,
    ...                        draws=2, targets=2, fprs=[0.05], planted=np.arange(20))
    >>> sorted({(row["group"], row["models_spent"]) for row in r["rows"]})[:2]
    [('all examples', 2), ('all examples', 4)]
    >>> r["planted_recovered"]["mean"] > 0.8
    True
    """
    k = _check_inputs(keep)
    m, n = k.shape
    p = _check_pilot(pilot, m)
    b_list = _check_budgets(budgets, m, pilot=p)
    _check_keep(k)
    count = _check_candidates(candidates, n)
    score = check_choice(score, "score", RANKINGS)
    f_list = check_probabilities(fprs, "fprs")
    draws, targets = _check_draws(draws, targets)
    seed = check_seed(seed)
    mask = None if planted is None else planted_mask(planted, n)
    logits, y = _check_source(logits, k, labels)
    s, correct = _logit_signals(logits, y, correct=True)
    assert correct is not None  # asked for
    out = _aware(s, correct, k, pilot=p, count=count, score=score, b_list=b_list,
                 draws=draws, targets=targets, f_list=f_list, planted=mask, seed=seed)
    return {"n_models": m, "n_examples": n, **out}
