"""How many shadow models does an attack need? (Choi et al., "Why Train More?";
docs/methods/vulnerability.md).

From one run of M shadow models, :func:`run` attacks held-out target models with LiRA
online fitted on b reference models, for budgets b = 2, 4, 8, ... (repeated random draws
of complementary pairs), and reports the attack's power against b, for all examples and
for groups: the examples ranked highest by label memorization or by the Hellinger
distance between their IN and OUT distributions (both measured on the whole run), and
planted records (``miakit.datasets.digits(planted=...)``) against the rest. Examples that a
model only gets right when it trained on them separate IN from OUT far more strongly, so an
attack focused on them needs far fewer shadow models; the report says how many.
:func:`memorization_aware` ranks the examples with a few pilot models instead, attacks the
top candidates, and reports the power per shadow model spent (pilot + references) against
a random selection and all examples (``aware=True``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from miakit import _progress
from miakit._params import option, validate
from miakit._plotting import subplots
from miakit.io import save_figure
from miakit.studies import _budget_draws as draws_mod
from miakit.studies._budget_draws import (
    ALL,
    AWARE,
    PLANTED,
    RANDOM,
    RANK_NAMES,
    RANKINGS,
    REST,
    memorization_aware,
    planted_mask,
)
from miakit.studies._config import maybe_empty, resolve
from miakit.studies._result import StudyResult

__all__ = ["BudgetConfig", "BudgetResult", "run", "shadow_budget", "memorization_aware",
           "planted_mask", "RANKINGS"]

_FPR: dict[str, Any] = dict(low=0.0, high=1.0, open_low=True, open_high=True)


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    """The options of the shadow-budget study (``miakit budget``).

    Examples
    --------
    >>> from miakit.studies.budget import BudgetConfig
    >>> BudgetConfig(budgets=[2, 4]).budgets
    (2, 4)
    >>> BudgetConfig(budgets=[3])
    Traceback (most recent call last):
    ...
    ValueError: budgets: expected even numbers of reference models >= 2, got [3]
    """

    budgets: tuple[int, ...] = option(
        (2, 4, 8, 16, 32), "reference models per attack (even, at most M - 2: the pairs "
        "left are the targets)", low=2)
    draws: int = option(5, "random draws of the references (and targets) per budget", low=1,
                        high=draws_mod.MAX_DRAWS)
    targets: int = option(8, "target models attacked per draw (from the pairs not used as "
                          "references)", low=1)
    fprs: tuple[float, ...] = option((0.01, 0.001), "FPRs of the TPR", flag="--fpr", **_FPR)
    quantiles: tuple[float, ...] = maybe_empty(
        (0.5, 0.9), "ranked groups: the examples at or above each quantile of each "
        "ranking (--rank-by)", **_FPR)
    rank_by: tuple[str, ...] = maybe_empty(
        RANKINGS, "rankings of the groups, measured on the whole run: label memorization "
        "(Feldman-Zhang), Hellinger distance of the IN/OUT Gaussians of the scaled "
        "confidence. Runs trained with planted records add the groups 'planted' and 'the "
        "rest'", choices=RANKINGS)
    target_tpr: float | None = option(
        None, "the TPR at the lowest FPR whose budget each group needs (default: what 'the "
        "rest', else all examples, reach with the largest budget)", kind=float, **_FPR)
    seed: int = option(0, "seed of the draws", seed=True)
    plot: bool = option(True, "write budget.png", flag="--no-plot")
    aware: bool = option(False, "also run the memorization-aware attack: a pilot of a few "
                         "models ranks the examples, LiRA on b further reference models "
                         "attacks the top candidates; reported per model spent (pilot + b) "
                         "against a random selection and all examples")
    pilot: int = option(4, "aware: models of the pilot (even)", low=2)
    candidates: float | int = option(
        0.1, "aware: the candidates, a share in (0, 1] (a float: 0.1) or a count (an "
        "int: 60)", kind=object)
    aware_score: str = option("memorization", "aware: the pilot's ranking",
                              choices=RANKINGS)

    def __post_init__(self) -> None:
        validate(self)
        if any(b % 2 for b in self.budgets):
            raise ValueError("budgets: expected even numbers of reference models >= 2, got "
                             f"{list(self.budgets)}")
        if self.pilot % 2:
            raise ValueError("pilot: expected an even number of models (complementary "
                             f"pairs), got {self.pilot}")
        draws_mod._check_candidates(self.candidates, None)


def run(logits: Any, keep: Any, labels: Any, config: BudgetConfig | None = None, *,
        planted: Any = None, out_dir: str | Path | None = None,
        progress: Callable[[str], Any] | None = None, **overrides: Any) -> BudgetResult:
    """Attack power against the number of shadow models, overall and by group.

    Parameters
    ----------
    logits : array [M, N, A, C] or miakit.shadow.Run
        Logits of every model, or a finished run (what ``miakit budget`` passes), whose
        model files are then read one block of models at a time: no stacked copy of the
        logits, on disk or in memory, and the same results. Every option is checked
        before any logits are read, and nothing is written into the run.
    keep : array [M, N] bool
        In complementary pairs (rows 2i and 2i + 1, as :func:`miakit.shadow.balanced_keep`
        draws them), with at least 2 models on each side of every example.
    labels : array [N] int
    config : BudgetConfig, optional
        The options (default: ``BudgetConfig()``); ``overrides`` replace its fields.
    planted : array [N] bool or sequence of int, optional
        Planted records (``Dataset.planted``, or a run's
        ``meta["metadata"]["dataset_info"]["planted"]["indices"]``): adds the groups
        "planted" and "the rest".
    out_dir : path, optional
        Where to write ``budget.json`` (and ``budget.png`` with ``config.plot``).
    progress : callable, optional
        Called with a line of text when the draws and the aware attack are done.

    Returns
    -------
    BudgetResult
        The report: ``rows``: per budget and group, the mean, standard deviation and
        range over draws of the AUC and of the TPR at each FPR, with the mean number of
        member and non-member scores per draw (``n_pos``, ``n_neg``); ``groups`` with
        their sizes; ``needed``: ``target_tpr``, its source, and per group the smallest
        budget whose mean TPR at the lowest FPR reaches it, with its interval over draws
        (the best draw's and the worst draw's smallest budget; None: not within the
        budgets); ``needed_for_half_the_best_tpr``; with ``aware``, the memorization-aware
        attack's report (:func:`memorization_aware`) under ``"aware"``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.studies import budget
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(12, 200, seed=0)
    >>> y = rng.integers(0, 3, 200)
    >>> z = rng.normal(size=(12, 200, 1, 3)).astype(np.float32)
    >>> z[np.arange(12)[:, None], np.arange(200), 0, y] += 2.0 * keep
    >>> z[np.arange(12)[:, None], np.arange(10), 0, y[:10]] += 4.0 * keep[:, :10] - 2.0
    >>> r = budget.run(z, keep, y, budgets=[2, 8], draws=2, targets=2,
    ...                planted=np.arange(10), quantiles=[0.9])
    >>> sorted({row["budget"] for row in r["rows"]})
    [2, 8]
    >>> r["groups"]["planted"], r["needed"]["groups"]["planted"]["budget"]
    (10, 2)

    A run, read from its model files (the same numbers as its logits in memory):

    >>> import tempfile
    >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/run", keep, y, n_augmentations=1,
    ...                            n_classes=3)
    >>> for m in range(12):
    ...     run.write_model(m, z[m])
    >>> budget.run(run, run.keep, run.labels, budgets=[2, 8], draws=2, targets=2,
    ...            planted=np.arange(10), quantiles=[0.9])["rows"] == r["rows"]
    True
    """
    cfg = resolve(BudgetConfig, config, overrides)
    k = draws_mod._check_inputs(keep)
    m, n = k.shape
    b_list = draws_mod._check_budgets(cfg.budgets, m)
    draws_mod._check_keep(k)
    q_list = [float(q) for q in cfg.quantiles]
    f_list = [float(f) for f in cfg.fprs]
    r_list = list(dict.fromkeys(cfg.rank_by))
    mask = None if planted is None else planted_mask(planted, n)
    if cfg.aware:
        a_pilot = draws_mod._check_pilot(cfg.pilot, m)
        draws_mod._check_budgets(b_list, m, pilot=a_pilot)
        a_count = draws_mod._check_candidates(cfg.candidates, n)
    logits, y = draws_mod._check_source(logits, k, labels)
    _progress.phase(f"budget: reading the signals of {m} models")
    # the logits are read here, once (a run's model files one block at a time)
    s, correct, ranks = draws_mod._signals(logits, k, y, r_list, correct=cfg.aware)
    groups = draws_mod._groups(ranks, q_list, mask) if (ranks or mask is not None) else {
        "all examples": np.ones(n, bool)}
    rng = np.random.default_rng(cfg.seed)
    _progress.phase(f"budget: LiRA on {len(b_list)} budgets x {cfg.draws} draws x "
                    f"{len(groups)} groups")
    rows = draws_mod._attack_draws(s, k, groups, b_list, cfg.draws, cfg.targets, f_list, rng)
    if progress is not None:
        progress(f"LiRA on {len(b_list)} budgets x {cfg.draws} draws x {len(groups)} groups "
                 "done")
    low = f"tpr@{min(f_list):g}"
    half = {}
    for name in groups:
        series = [(r["budget"], r[low]["mean"]) for r in rows if r["group"] == name]
        best = max(t for _, t in series)
        half[name] = draws_mod._first_budget(series, best / 2) if best > 0 else None
    ref = REST if mask is not None else "all examples"
    if cfg.target_tpr is None:
        target, source = next(r[low]["mean"] for r in rows if r["group"] == ref
                              and r["budget"] == b_list[-1]), \
            f"mean TPR of {ref!r} with {b_list[-1]} reference models"
    else:
        target, source = cfg.target_tpr, "given"
    report: dict[str, Any] = {
        "n_models": m, "n_examples": n, "budgets": b_list, "draws": cfg.draws,
        "targets_per_draw": cfg.targets, "fprs": f_list, "rank_by": r_list,
        "groups": {g: int(sel.sum()) for g, sel in groups.items()},
        "attack": "LiRA online on the scaled confidence, fitted on the budget's "
                  "reference models (complementary pairs), scoring held-out targets",
        "rows": rows, "needed_for_half_the_best_tpr": half,
        "needed": {"tpr": low, "target_tpr": float(target), "source": source,
                   "groups": draws_mod._needed(rows, list(groups), low, target)},
        "needed_tpr": low}
    if mask is not None:
        report["planted"] = np.flatnonzero(mask).tolist()
    if cfg.aware:
        assert correct is not None  # asked for with cfg.aware
        _progress.phase("budget: memorization-aware attack")
        report["aware"] = draws_mod._aware(
            s, correct, k, pilot=a_pilot,
            count=a_count, score=cfg.aware_score, b_list=b_list, draws=cfg.draws,
            targets=cfg.targets, f_list=f_list, planted=mask, seed=cfg.seed,
            full=ranks.get(cfg.aware_score))
        if progress is not None:
            progress("memorization-aware attack done")
    result = BudgetResult(report)
    if out_dir is not None:
        result.write(out_dir, plot=cfg.plot)
    return result


def shadow_budget(logits: Any, keep: Any, labels: Any, out_dir: str | Path | None = None, *,
                  planted: Any = None, aware: Mapping[str, Any] | None = None,
                  **options: Any) -> BudgetResult:
    """:func:`run` with the options as keywords, and the memorization-aware attack's
    options as one mapping: ``aware={"pilot": 4, "candidates": 0.1, "score":
    "memorization"}`` (``{}``: the defaults; None: no aware attack).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.studies.budget import shadow_budget
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 100, seed=0)
    >>> y = rng.integers(0, 3, 100)
    >>> z = rng.normal(size=(8, 100, 1, 3)).astype(np.float32)
    >>> r = shadow_budget(z, keep, y, budgets=[2, 4], draws=1, targets=2, plot=False)
    >>> r["budgets"]
    [2, 4]
    """
    if aware is not None:
        names = {"pilot": "pilot", "candidates": "candidates", "score": "aware_score"}
        unknown = sorted(set(aware) - set(names))
        if unknown:
            raise ValueError(f"aware: expected options among {list(names)}, got {unknown}")
        options = {**options, "aware": True, **{names[k]: v for k, v in aware.items()}}
    return run(logits, keep, labels, BudgetConfig(**options), planted=planted,
               out_dir=out_dir)


class BudgetResult(StudyResult):
    """The shadow-budget report (``budget.json``): TPR against the budget per group.

    Examples
    --------
    >>> from miakit.studies.budget import BudgetResult
    >>> r = BudgetResult({"n_models": 8, "draws": 1, "targets_per_draw": 2,
    ...      "needed_tpr": "tpr@0.01", "groups": {"all examples": 5},
    ...      "rows": [{"budget": 2, "group": "all examples", "n_pos": 5, "n_neg": 5,
    ...                "tpr@0.01": {"mean": 0.5, "min": 0.5, "max": 0.5}}],
    ...      "needed": {"target_tpr": 0.5, "source": "given",
    ...                 "groups": {"all examples": {"budget": 2, "interval": [2, 2]}}}})
    >>> print(r.summary().splitlines()[-1])
      all examples: 2 [2, 2]
    """

    name = "budget"

    def summary(self) -> str:
        """What ``miakit budget`` prints: TPR against the budget per group, and the budget
        each group needs for the target TPR."""
        report = self._report
        key = report["needed_tpr"]
        fpr = key.split("@")[1]
        lines = [f"{report['n_models']} models, LiRA online on b reference models, "
                 f"{report['draws']} draws x {report['targets_per_draw']} targets per budget; "
                 f"TPR at FPR {fpr}, mean [min, max] over draws:"]
        for g, size in report["groups"].items():
            rows = [row for row in report["rows"] if row["group"] == g]
            cells = [f"b={row['budget']}: {100 * row[key]['mean']:.1f}% "
                     f"[{100 * row[key]['min']:.1f}, {100 * row[key]['max']:.1f}]"
                     for row in rows]
            neg = rows[0]["n_neg"] if rows else 0
            note = (f"; only ~{neg:.0f} non-member scores per draw: FPR {fpr} is below one "
                    "false positive" if neg * float(fpr) < 1 else "")
            lines.append(f"  {g} ({size} examples{note}): " + ", ".join(cells))
        need = report["needed"]

        def fmt(b: int | None) -> str:
            return "-" if b is None else str(b)

        lines.append(f"shadow models needed for TPR {100 * need['target_tpr']:.1f}% at FPR "
                     f"{fpr} ({need['source']}), mean [best draw, worst draw] ('-': not "
                     "within the budgets):")
        for g, v in need["groups"].items():
            lo, hi = v["interval"]
            lines.append(f"  {g}: {fmt(v['budget'])} [{fmt(lo)}, {fmt(hi)}]")
        if report.get("aware"):
            lines += _summarize_aware(report["aware"])
        return "\n".join(lines + self._files_line())

    def _draw(self, path: Path) -> None:
        report = self._report
        key = report["needed_tpr"]
        aware = report.get("aware")
        if aware is None:
            fig, ax = subplots(figsize=(6, 4.4), dpi=110)
        else:
            fig, (ax, ax2) = subplots(1, 2, figsize=(11.5, 4.4), dpi=110)
            _plot_aware(aware, ax2)
        for name in report["groups"]:
            rows = [r for r in report["rows"] if r["group"] == name]
            b = [r["budget"] for r in rows]
            style = dict(lw=2.2) if name == PLANTED else dict(lw=1.2)
            ax.plot(b, [r[key]["mean"] for r in rows], "o-",
                    label=f"{name} ({report['groups'][name]})", **style)
            ax.fill_between(b, [r[key]["min"] for r in rows], [r[key]["max"] for r in rows],
                            alpha=0.15)
        need = report.get("needed")
        if need is not None and need["target_tpr"] > 0:
            ax.axhline(need["target_tpr"], color="0.4", ls="--", lw=0.9,
                       label=f"target TPR {100 * need['target_tpr']:.1f}%")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("shadow (reference) models")
        ax.set_ylabel(f"TPR at FPR {key.split('@')[1]}")
        ax.set_title("attack power against the shadow budget (range over draws)", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, path)


def _plot_aware(aware: dict, ax: Any) -> None:
    """TPR at the lowest FPR against the models spent: the memorization-aware attack
    (pilot + b), a random selection of as many examples and all examples (b)."""
    key = aware["tpr"]
    for name, style in ((AWARE, dict(lw=2.2, ls="-")), (RANDOM, dict(lw=1.2, ls="--")),
                        (ALL, dict(lw=1.2, ls="-"))):
        rows = [r for r in aware["rows"] if r["group"] == name]
        x = [r["models_spent"] for r in rows]
        ax.plot(x, [r[key]["mean"] for r in rows], marker="o", label=name, **style)
        ax.fill_between(x, [r[key]["min"] for r in rows], [r[key]["max"] for r in rows],
                        alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("shadow models spent (aware: pilot + reference models)")
    ax.set_ylabel(f"TPR at FPR {key.split('@')[1]}")
    ax.set_title(f"memorization-aware: {aware['candidates']} candidates by "
                 f"{RANK_NAMES[aware['score']]} from a pilot of {aware['pilot']} models",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def _summarize_aware(aware: dict) -> list[str]:
    """A line per budget: the aware attack's TPR with pilot + b models against a random
    selection and all examples with b; then how well the pilot picked."""
    key = aware["tpr"]
    fpr = key.split("@")[1]

    def cell(row: dict) -> str:
        v = row[key]
        return (f"{100 * v['mean']:.1f}% [{100 * v['min']:.1f}, {100 * v['max']:.1f}] "
                f"(~{row['n_neg']:.0f} non-members)")

    lines = [f"memorization-aware attack: {aware['candidates']} candidates "
             f"({100 * aware['candidate_share']:.3g}%) by {RANK_NAMES[aware['score']]} "
             f"from a pilot of {aware['pilot']} models; TPR at FPR {fpr}, mean [min, max] "
             "over draws:"]
    rows = {(r["group"], r["budget"]): r for r in aware["rows"]}
    need = {x["budget"]: x["all_examples_need"] for x in aware["models_for_the_same_tpr"]}
    for b in aware["budgets"]:
        a = rows[(AWARE, b)]
        same = need.get(b)
        lines.append(f"  b={b}: aware with {a['models_spent']} models {cell(a)}; with {b}: "
                     f"random {cell(rows[(RANDOM, b)])}, all {cell(rows[(ALL, b)])}; "
                     + ("all examples do not reach it within the budgets" if same is None
                        else f"all examples reach it with {same} models"))
    ov = aware["agreement"]["overlap_with_full_run_top"]
    line = (f"  pilot's pick: {100 * ov['mean']:.0f}% [{100 * ov['min']:.0f}, "
            f"{100 * ov['max']:.0f}] of the top {aware['candidates']} by "
            f"{RANK_NAMES[aware['score']]} on the whole run")
    if "planted_recovered" in aware:
        rec, pre = aware["planted_recovered"], aware["planted_precision"]
        line += (f"; {100 * rec['mean']:.0f}% of the planted records picked "
                 f"({100 * pre['mean']:.0f}% of the picks planted)")
    lines.append(line)
    return lines
