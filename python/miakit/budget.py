"""How many shadow models does an attack need? (Choi et al., "Why Train More?";
docs/methods/vulnerability.md).

From one run of M shadow models, :func:`shadow_budget` attacks held-out target models with
LiRA online fitted on b reference models, for budgets b = 2, 4, 8, ... (repeated random
draws of complementary pairs), and reports the attack's power against b, for all examples
and for groups ranked by their label memorization (measured on the whole run): examples
that a model only gets right when it trained on them separate IN from OUT far more
strongly, so an attack focused on them needs far fewer shadow models.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit._plotting import subplots
from miakit._validation import check_int, check_probabilities
from miakit.shadow._files import write_report

__all__ = ["shadow_budget", "DEFAULT_BUDGETS", "DEFAULT_QUANTILES"]

DEFAULT_BUDGETS = (2, 4, 8, 16, 32, 64)
DEFAULT_QUANTILES = (0.5, 0.9)


def _groups(mem: np.ndarray, quantiles: Sequence[float]) -> dict[str, np.ndarray]:
    """All examples, and for each quantile q the top (1 - q) share by memorization
    (ranked, ties to the lower index: many examples share a memorization of 0)."""
    out = {"all examples": np.ones(mem.size, bool)}
    finite = np.flatnonzero(np.isfinite(mem))
    order = finite[np.argsort(-mem[finite], kind="stable")]
    for q in quantiles:
        top = np.zeros(mem.size, bool)
        top[order[: max(1, int(round((1.0 - q) * finite.size)))]] = True
        out[f"top {100 * (1 - q):g}% by memorization"] = top
    return out


def shadow_budget(logits: Any, keep: Any, labels: Any, out_dir: str | Path | None = None, *,
                  budgets: Sequence[int] = DEFAULT_BUDGETS, draws: int = 5,
                  targets: int = 8, fprs: Sequence[float] = (0.01, 0.001),
                  quantiles: Sequence[float] = DEFAULT_QUANTILES, seed: int = 0,
                  plot: bool = True) -> dict[str, Any]:
    """Attack power against the number of shadow models, overall and by memorization.

    Parameters
    ----------
    logits : array [M, N, A, C]
        A run's logits (``run.logits()``); keep should be drawn in complementary pairs.
    keep : array [M, N] bool
    labels : array [N] int
    out_dir : path, optional
        Where to write ``budget.json`` and ``budget.png``.
    budgets : sequence of int
        Reference models per attack (even, at most M - 2: the pairs left are targets).
    draws : int
        Random draws of the references (and targets) per budget.
    targets : int
        Target models attacked per draw (from the pairs not used as references).
    fprs : sequence of float
        FPRs of the TPR table.
    quantiles : sequence of float
        Memorization groups: the examples at or above each quantile, in (0, 1).
    seed : int
    plot : bool

    Returns
    -------
    dict
        ``rows``: per budget and group, the mean and range over draws of AUC and TPR at
        each FPR; ``groups`` with their sizes; ``needed``: per group, the smallest budget
        whose mean TPR at the lowest FPR reaches half the group's best.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.budget import shadow_budget
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(12, 200, seed=0)
    >>> y = rng.integers(0, 3, 200)
    >>> z = rng.normal(size=(12, 200, 1, 3)).astype(np.float32)
    >>> z[np.arange(12)[:, None], np.arange(200), 0, y] += 2.0 * keep
    >>> r = shadow_budget(z, keep, y, budgets=[2, 8], draws=2, targets=2, plot=False)
    >>> sorted({row["budget"] for row in r["rows"]})
    [2, 8]
    """
    from miakit import lira, memorization, metrics, signals

    k = np.asarray(keep, dtype=bool)
    y = np.asarray(labels)
    m, n = k.shape
    b_list = sorted({int(b) for b in budgets})
    if not b_list or b_list[0] < 2 or any(b % 2 for b in b_list):
        raise ValueError(f"budgets: expected even numbers of reference models >= 2, got "
                         f"{list(budgets)}")
    if b_list[-1] > m - 2:
        raise ValueError(f"budgets: the run has {m} models; a budget of {b_list[-1]} leaves "
                         f"fewer than 2 targets (largest possible: {m - 2 - (m % 2)})")
    q_list = check_probabilities(quantiles, "quantiles", allow_empty=True)
    f_list = check_probabilities(fprs, "fprs")
    for name, v in (("draws", draws), ("targets", targets)):
        check_int(v, name, 1, what="a positive int")
    z = np.asarray(logits)
    s = np.asarray(signals.scaled_confidence(z, y[:, None]), dtype=np.float64)  # [M, N, A]
    mem = np.asarray(memorization.feldman_zhang(signals.correct(z[:, :, 0, :], y), k))
    groups = _groups(mem, q_list)
    pairs = np.arange(m // 2)
    rng = np.random.default_rng(seed)
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
                     **{f"tpr@{f:g}": ranked.tpr_at_fpr(f).tpr for f in f_list}})
    rows = []
    for (b, name), vals in raw.items():
        row: dict[str, Any] = {"budget": b, "group": name, "draws": len(vals)}
        for key in vals[0]:
            v = np.array([x[key] for x in vals])
            row[key] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
        rows.append(row)
    low = f"tpr@{min(f_list):g}"
    needed = {}
    for name in groups:
        series = [(r["budget"], r[low]["mean"]) for r in rows if r["group"] == name]
        best = max(t for _, t in series)
        needed[name] = next((b for b, t in series if best > 0 and t >= best / 2), None)
    report = {"n_models": m, "n_examples": n, "budgets": b_list, "draws": draws,
              "targets_per_draw": targets, "fprs": f_list,
              "groups": {g: int(sel.sum()) for g, sel in groups.items()},
              "attack": "LiRA online on the scaled confidence, fitted on the budget's "
                        "reference models (complementary pairs), scoring held-out targets",
              "rows": rows, "needed_for_half_the_best_tpr": needed,
              "needed_tpr": low}
    if out_dir is not None:
        write_report(out_dir, "budget", report, _plot if plot else None)
    return report


def _plot(report: dict, path: Path) -> None:
    key = report["needed_tpr"]
    fig, ax = subplots(figsize=(5.5, 4.2), dpi=110)
    for name in report["groups"]:
        rows = [r for r in report["rows"] if r["group"] == name]
        b = [r["budget"] for r in rows]
        mean = [r[key]["mean"] for r in rows]
        lo = [r[key]["min"] for r in rows]
        hi = [r[key]["max"] for r in rows]
        ax.plot(b, mean, "o-", label=f"{name} ({report['groups'][name]})")
        ax.fill_between(b, lo, hi, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("shadow (reference) models")
    ax.set_ylabel(f"TPR at FPR {key.split('@')[1]}")
    ax.set_title("attack power against the shadow budget", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
