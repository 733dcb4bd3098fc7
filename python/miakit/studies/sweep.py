"""The shots/classes study (``miakit sweep``; docs/methods/powerlaw.md).

For every cell (S shots, C classes) of a grid: choose C classes and 2S examples of each,
train M heads on the fixed features, each on exactly S examples of every class (a keep
matrix balanced within each class), attack every head leave-one-out with LiRA online,
and take the TPR at each FPR asked. Then fit the power law of :mod:`miakit.powerlaw` at
each FPR, check it on held-out cells, and write ``sweep.json``, ``sweep.csv`` and
``powerlaw.png``. Each cell is a resumable run with its result written atomically, so a
killed sweep loses at most the cell in progress.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit._params import option, validate
from miakit._plotting import colormap, subplots
from miakit._validation import check_features, check_int, check_int_array, check_seed
from miakit.io import atomic_write, save_figure, write_json
from miakit.studies._config import resolve
from miakit.studies._result import StudyResult

__all__ = ["SweepConfig", "SweepResult", "run", "sweep", "cell_examples", "DEFAULT_SHOTS",
           "DEFAULT_CLASSES", "SYNTHETIC_CLASSES"]

DEFAULT_SHOTS = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_CLASSES = (2, 5, 10)
SYNTHETIC_CLASSES = (2, 5, 10, 20, 50)
"""The classes of ``miakit sweep --dataset synthetic`` (a mixture with as many classes)."""


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """The options of the shots/classes study (``miakit sweep``).

    Examples
    --------
    >>> from miakit.studies.sweep import SweepConfig
    >>> SweepConfig(shots=[1, 2], classes=[2]).n_models
    64
    >>> SweepConfig(shots=[1], classes=[2])
    Traceback (most recent call last):
    ...
    ValueError: shots, classes: expected a grid of at least 2 cells, got 1
    """

    shots: tuple[int, ...] = option(DEFAULT_SHOTS, "shots per class (examples of each "
                                    "class every head trains on)", low=1)
    classes: tuple[int, ...] = option(DEFAULT_CLASSES, "classes per cell", low=2)
    n_models: int = option(64, "heads per cell (even)", low=4, flag="--models")
    fprs: tuple[float, ...] = option((0.1, 0.01, 0.001), "FPRs of the TPR and of the fits",
                                     low=0.0, high=1.0, open_low=True, open_high=True,
                                     flag="--fpr")
    seed: int = option(0, "seed of the cells' data, keep matrices and heads", seed=True)
    head: str = option("linear", "linear heads (L-BFGS) or one-hidden-layer MLP heads",
                       choices=("linear", "mlp"))
    hidden: int = option(64, "hidden units of the MLP heads", low=1)
    epochs: int = option(100, "training epochs of the MLP heads", low=1)
    device: str = option("cpu", "where the heads train: 'cpu', 'cuda' or 'cuda:N' (not "
                         "part of the sweep's identity)")
    dataset: str = option("features", "name of the data in the report", cli=False)
    plot: bool = option(True, "write powerlaw.png", flag="--no-plot")

    def __post_init__(self) -> None:
        validate(self)
        if self.n_models % 2:
            raise ValueError(f"n_models: expected an even number >= 4, got {self.n_models}")
        if len(set(self.shots)) * len(set(self.classes)) < 2:
            raise ValueError("shots, classes: expected a grid of at least 2 cells, got 1")


def run(features: Any, labels: Any, config: SweepConfig | None = None, *,
        out_dir: str | Path | None = None, progress: Callable[[str], Any] | None = None,
        **overrides: Any) -> SweepResult:
    """Run (or resume) the shots/classes study and fit the power law.

    Parameters
    ----------
    features : array [N, D] or [N, A, D] float
        Fixed features (e.g. a pretrained backbone's); all query views are used.
    labels : array [N] int
    config : SweepConfig, optional
        The options (default: ``SweepConfig()``); ``overrides`` replace its fields.
    out_dir : path, optional
        Cells go to ``out_dir/cells/S{S}_C{C}/`` (a run and ``cell.json``: a killed sweep
        resumes there); the report to ``sweep.json``, ``sweep.csv`` and ``powerlaw.png``.
        Without it, the cells train in a temporary folder and nothing is written.
    progress : callable, optional
        Called with a line of text after each cell (and first, when resuming, with how
        many cells were already done).

    Returns
    -------
    SweepResult
        The report (what ``sweep.json`` holds).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from miakit.studies import sweep
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 20); x = rng.normal(size=(60, 5)) + y[:, None]
    >>> r = sweep.run(x, y, shots=[2, 4, 8], classes=[2, 3], n_models=4, fprs=[0.1],
    ...               out_dir=tempfile.mkdtemp(), plot=False)
    >>> len(r["cells"]), sorted(r["fits"])
    (6, ['0.1'])
    """
    cfg = resolve(SweepConfig, config, overrides)
    if out_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return _run(features, labels, cfg, Path(tmp), progress, write=False)
    return _run(features, labels, cfg, Path(out_dir), progress, write=True)


def sweep(features: Any, labels: Any, out_dir: str | Path, **options: Any) -> SweepResult:
    """:func:`run` with the options as keywords, writing to ``out_dir``.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from miakit.studies.sweep import sweep
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 20); x = rng.normal(size=(60, 5)) + y[:, None]
    >>> r = sweep(x, y, tempfile.mkdtemp(), shots=[2, 4], classes=[2], n_models=4,
    ...           fprs=[0.1], plot=False)
    >>> [(c["shots"], c["classes"]) for c in r["cells"]]
    [(2, 2), (4, 2)]
    """
    return run(features, labels, SweepConfig(**options), out_dir=out_dir)


def _run(features: Any, labels: Any, config: SweepConfig, out: Path,
         progress: Callable[[str], Any] | None, write: bool) -> SweepResult:
    from miakit import io as mkio
    from miakit import powerlaw

    x = check_features(features)
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"labels: expected 1-D integer labels, got shape {y.shape} "
                         f"dtype {y.dtype}")
    if len(y) != x.shape[0]:
        raise ValueError(f"labels: expected one label per feature row ({x.shape[0]}), got "
                         f"{len(y)}")
    if np.unique(y).size < 2:
        raise ValueError("labels: expected at least 2 classes, got 1")
    grid_s = sorted(set(config.shots))
    grid_c = sorted(set(config.classes))
    f_list = list(config.fprs)
    head, seed, device = config.head, config.seed, config.device
    for s_ in grid_s:  # every cell's data exists, before any training
        for c_ in grid_c:
            cell_examples(y, s_, c_, seed)
    cfg = {"n_models": config.n_models, "seed": seed, "head": head, "fprs": f_list,
           "hidden": config.hidden if head == "mlp" else None,
           "epochs": config.epochs if head == "mlp" else None,
           "data": mkio.digest_arrays(x, y)}
    (out / "cells").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cells = []
    n_cells = len(grid_s) * len(grid_c)
    n_done = sum((out / "cells" / f"S{s_}_C{c_}" / "cell.json").exists()
                 for s_ in grid_s for c_ in grid_c)
    if progress is not None and n_done:
        progress(f"resuming: {n_done} of {n_cells} cells already done")
    for s_ in grid_s:
        for c_ in grid_c:
            cell_dir = out / "cells" / f"S{s_}_C{c_}"
            path = cell_dir / "cell.json"
            if path.exists():
                done = json.loads(path.read_text())
                if done.get("config") != cfg:
                    raise ValueError(f"out_dir: {cell_dir} holds a cell of a different sweep "
                                     "(data, models, seed, head or FPRs); use a new "
                                     "directory")
                cells.append(done)
                continue
            cell_dir.mkdir(parents=True, exist_ok=True)
            res = _run_cell(x, y, s_, c_, cfg, cell_dir, device)
            write_json(path, res, f"the result of cell S={s_} C={c_}")
            cells.append(res)
            if progress is not None:
                p = res["tpr_at_fpr"][0]
                progress(f"cell {len(cells)} of {n_cells}, S={s_} C={c_}: AUC "
                         f"{res['auc']:.3f}, TPR {p['tpr']:.4f} at FPR {p['target_fpr']:g} "
                         f"({res['timing_s']['training']:.1f} s)")
    t_cells = time.perf_counter() - t0
    fits: dict[str, Any] = {}
    heldout: dict[str, Any] = {}
    for j, f in enumerate(f_list):
        s_arr = np.array([c["shots"] for c in cells], float)
        c_arr = np.array([c["classes"] for c in cells], float)
        t_arr = np.array([c["tpr_at_fpr"][j]["tpr"] for c in cells])
        res_arr = np.array([c["tpr_at_fpr"][j]["resolvable"] for c in cells])
        try:
            fit = powerlaw.fit(s_arr, c_arr, t_arr, f, resolvable=res_arr)
        except ValueError as exc:
            fits[str(f)] = {"fpr": f, "error": str(exc)}
            continue
        fits[str(f)] = fit.to_dict()
        heldout[str(f)] = _heldout_check(s_arr, c_arr, t_arr, res_arr, f)
    report = {"dataset": config.dataset,
              "config": {k: v for k, v in cfg.items() if k != "data"},
              "grid": {"shots": grid_s, "classes": grid_c},
              "cells": [{k: v for k, v in c.items() if k not in ("examples", "config")}
                        for c in cells], "fits": fits, "heldout": heldout,
              "timing_s": {"cells": round(t_cells, 3),
                           "training": round(sum(c["timing_s"]["training"] for c in cells), 3),
                           "attack": round(sum(c["timing_s"]["attack"] for c in cells), 3),
                           "fit": round(time.perf_counter() - t0 - t_cells, 3)}}
    result = SweepResult(report, cells)
    if write:
        result.write(out, plot=config.plot)
    return result


class SweepResult(StudyResult):
    """The shots/classes report (``sweep.json``): the cells, the fits and the held-out
    check. ``write`` also writes ``sweep.csv`` (a row per cell) and draws
    ``powerlaw.png``.

    Examples
    --------
    >>> from miakit.studies.sweep import SweepResult
    >>> r = SweepResult({"dataset": "d", "grid": {"shots": [1, 2], "classes": [2]},
    ...      "cells": [{}, {}], "config": {"n_models": 4},
    ...      "fits": {"0.1": {"fpr": 0.1, "error": "too few"}}, "heldout": {},
    ...      "timing_s": {"training": 1, "attack": 0.1, "fit": 0.01}})
    >>> "too few" in r.summary()
    True
    """

    name = "sweep"

    def __init__(self, report: dict[str, Any], cells: list[dict] | None = None) -> None:
        super().__init__(report)
        self._cells = cells  # with each cell's full TPR table, for sweep.csv

    def write(self, out_dir: str | os.PathLike, plot: bool = True) -> dict[str, str]:
        """Write ``sweep.json``, ``sweep.csv`` (a row per cell) and, with ``plot``,
        ``powerlaw.png`` in ``out_dir``; the files are recorded in the report's ``files``
        and returned."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"report": str(out / "sweep.json"), "table": str(out / "sweep.csv")}
        _write_csv(out / "sweep.csv", self._cells or self._report["cells"],
                   [float(f) for f in self._report["config"]["fprs"]])
        if plot:
            files["plot"] = str(self.plot(out / "powerlaw.png"))
        self._report["files"] = files
        write_json(out / "sweep.json", self._report, "the sweep report")
        return dict(files)

    def summary(self) -> str:
        """What ``miakit sweep`` prints: the fit at each FPR and the held-out check."""
        report = self._report
        g = report["grid"]
        lines = [f"miakit sweep: {report['dataset']}, shots {g['shots']} x classes "
                 f"{g['classes']} ({len(report['cells'])} cells, {report['config']['n_models']} "
                 "heads each)"]
        for fit in report["fits"].values():
            f = fit["fpr"]
            if "error" in fit:
                lines.append(f"FPR {f:g}: no fit ({fit['error']})")
                continue
            lo, hi = fit["ci"]["beta_s"]
            c = (f", beta_C {fit['beta_c']:+.3f} [{fit['ci']['beta_c'][0]:+.3f}, "
                 f"{fit['ci']['beta_c'][1]:+.3f}]" if fit.get("beta_c") is not None else "")
            left = sum(not cell["used"] for cell in fit["cells"])
            lines.append(f"FPR {f:g}: beta_S {fit['beta_s']:+.3f} [{lo:+.3f}, {hi:+.3f}]{c}, "
                         f"beta_0 {fit['beta_0']:+.3f}, R^2 {fit['r2']:.3f} on {fit['n_cells']} "
                         f"cells" + (f" ({left} left out: TPR <= FPR or unresolvable)"
                                     if left else ""))
            h = report["heldout"].get(str(f))
            if h and "error" not in h:
                lines.append(f"  held out ({h['held_out']}): {h['covered']} of {h['n_cells']} "
                             f"inside the {100 * h['level']:.0f}% prediction interval")
        t = report["timing_s"]
        lines.append(f"time: training {t['training']:.1f} s, attacks {t['attack']:.1f} s, fits "
                     f"{t['fit']:.2f} s; theory (Tobaben et al.): beta_S = -1/2")
        return "\n".join(lines + self._files_line())

    def _draw(self, path: Path) -> None:
        """log10(TPR - FPR) against log10 S, one colour per class count, with the fits;
        one panel per FPR that has a fit. Each cell carries its TPR's 95% interval; the
        cells the held-out check predicts are diamonds beside the refit's prediction
        interval; cells left out of the fit are hollow."""
        from matplotlib.lines import Line2D

        report = self._report
        # largest FPR first, whatever the order of the keys in sweep.json
        fits = {k: v for k, v in sorted(report["fits"].items(), key=lambda kv: -kv[1]["fpr"])
                if "error" not in v}
        n = max(1, len(fits))
        fig, axes = subplots(1, n, figsize=(4.6 * n, 4.6), dpi=110, squeeze=False)
        colors = colormap("viridis")
        grid_c = report["grid"]["classes"]
        shown: set[str] = set()  # which marker kinds appear, for the legend
        for ax, fit in zip(axes[0], fits.values()):
            shown |= _draw_fpr(ax, fit, report, colors)
        level = 100 * next(iter(fits.values()))["level"] if fits else 95
        handles = [Line2D([], [], color=colors(i / max(1, len(grid_c) - 1)), marker="o",
                          lw=1, label=f"C = {c} classes (line: the fit)")
                   for i, c in enumerate(grid_c)]
        kinds = {"used": Line2D([], [], color="k", marker="o", ls="none",
                                label="cell in the fit"),
                 "heldout": Line2D([], [], color="k", marker="D", ls="none",
                                   label="held out: refit without the largest S predicts it"),
                 "pred": Line2D([], [], color="k", alpha=0.35, lw=4, marker="_", ms=7,
                                label=f"refit's prediction, {level:g}% interval"),
                 "left": Line2D([], [], color="k", marker="o", mfc="none", ls="none",
                                label="left out of the fit (unresolvable at this FPR)"),
                 "ci": Line2D([], [], color="grey", marker="|", ms=10, ls="-", lw=1,
                              label="95% interval of the cell's TPR (cluster-robust)"),
                 "cut": Line2D([], [], color="grey", marker="v", ls="none",
                               label="interval reaching TPR <= FPR (cut)")}
        handles += [h for k, h in kinds.items() if k in shown]
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
        fig.suptitle(f"{report['dataset']}: membership vulnerability against shots and classes "
                     f"({report['config']['n_models']} heads per cell)", fontsize=9)
        rows = -(-len(handles) // 4)
        fig.tight_layout(rect=(0, 0.04 * rows + 0.01, 1, 1))
        save_figure(fig, path)


def _draw_fpr(ax: Any, fit: dict, report: dict, colors: Any) -> set[str]:
    """One FPR's panel of ``powerlaw.png``; the kinds of marks it drew."""
    f = fit["fpr"]
    grid_c = report["grid"]["classes"]
    j = [float(v) for v in report["config"]["fprs"]].index(f)
    ci = {(float(c["shots"]), float(c["classes"])): c["tpr_at_fpr"][j].get("tpr_ci")
          for c in report["cells"]}
    held = report.get("heldout", {}).get(str(f), {})
    pred = {(h["shots"], h["classes"]): h for h in held.get("cells", [])}
    drawn = [cell for cell in fit["cells"] if cell["tpr"] > f]
    ys = [np.log10(cell["tpr"] - f) for cell in drawn] + [
        np.log10(h["lower"] - f) for h in pred.values() if h["lower"] > f]
    floor = (min(ys) if ys else -3.0) - 0.5  # where cut intervals end
    shown: set[str] = set()
    for i, c in enumerate(grid_c):
        col = colors(i / max(1, len(grid_c) - 1))
        # the class counts a little apart at each S, so that their intervals stay apart
        dx = 0.025 * (i - (len(grid_c) - 1) / 2)
        for cell in (x for x in drawn if x["classes"] == c):
            key = (cell["shots"], cell["classes"])
            xv, yv = np.log10(cell["shots"]) + dx, np.log10(cell["tpr"] - f)
            kind = ("left" if not cell["used"] else "heldout" if key in pred else "used")
            shown.add(kind)
            lo_hi = ci.get(key)
            if lo_hi is not None:  # the measured TPR's own uncertainty
                lo = np.log10(lo_hi[0] - f) if lo_hi[0] > f else floor
                hi = np.log10(max(lo_hi[1], cell["tpr"]) - f)
                ax.plot([xv, xv], [lo, hi], color=col, lw=1, alpha=0.7)
                shown.add("ci")
                if lo_hi[0] <= f:
                    ax.plot(xv, floor, marker="v", color=col, ms=4)
                    shown.add("cut")
            ax.plot(xv, yv, marker="D" if kind == "heldout" else "o", ms=5, color=col,
                    mfc="none" if kind == "left" else col, ls="none", zorder=3)
            if key in pred:  # right of the cells: what the refit without them predicted
                h = pred[key]
                xp = np.log10(cell["shots"]) + 0.07 + 0.04 * i
                lo = np.log10(h["lower"] - f) if h["lower"] > f else floor
                ax.plot([xp, xp], [lo, np.log10(h["upper"] - f)], color=col, alpha=0.35,
                        lw=4, solid_capstyle="butt")
                ax.plot(xp, np.log10(h["predicted"] - f), marker="_", ms=7, mew=1.5,
                        color=col)
                shown.add("pred")
        s_line = np.array(report["grid"]["shots"], float)
        line = fit["beta_s"] * np.log10(s_line) + fit["beta_0"] + (
            (fit["beta_c"] or 0.0) * np.log10(c))
        ax.plot(np.log10(s_line), line, color=col, lw=1)
    ticks = np.array(report["grid"]["shots"], float)
    ax.set_xticks(np.log10(ticks), [f"{t:g}" for t in ticks])
    ax.set_xlabel("shots per class S (log scale)")
    ax.set_ylabel("log10(TPR - FPR)")
    lo, hi = fit["ci"]["beta_s"]
    below = len(fit["cells"]) - len(drawn)
    ax.set_title(f"FPR {f:g}: beta_S {fit['beta_s']:.2f} [{lo:.2f}, {hi:.2f}], "
                 f"R^2 {fit['r2']:.2f}" + (f"\n{below} cells at TPR <= FPR not drawn"
                                          if below else ""), fontsize=9)
    ax.grid(True, alpha=0.3)
    return shown


def cell_examples(labels: np.ndarray, shots: int, n_classes: int, seed: int) -> np.ndarray:
    """Indices of one cell's examples: ``n_classes`` classes, ``2 * shots`` examples each.

    The classes and examples are drawn from ``(seed, shots, n_classes)``: every cell has
    its own draw, the same on every run.

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.studies.sweep import cell_examples
    >>> y = np.repeat(np.arange(4), 10)
    >>> idx = cell_examples(y, shots=3, n_classes=2, seed=0)
    >>> len(idx), len(np.unique(y[idx]))
    (12, 2)
    """
    y = np.asarray(ar.to_numpy(check_int_array(labels, "labels")))
    if y.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array of class labels, got shape {y.shape}")
    shots = check_int(shots, "shots", 1)
    n_classes = check_int(n_classes, "n_classes", 1)
    seed = check_seed(seed)
    present, counts = np.unique(y, return_counts=True)
    if n_classes > present.size:
        raise ValueError(f"n_classes: a cell of {n_classes} classes needs that many classes, "
                         f"the labels have {present.size}")
    rng = np.random.default_rng([int(seed), int(shots), int(n_classes)])
    eligible = present[counts >= 2 * shots]
    if eligible.size < n_classes:
        raise ValueError(f"shots: {shots} shots need {2 * shots} examples in each of "
                         f"{n_classes} classes; only {eligible.size} classes have that many "
                         f"(largest class: {int(counts.max())} examples)")
    chosen = np.sort(rng.choice(eligible, size=n_classes, replace=False))
    return np.concatenate([np.sort(rng.choice(np.flatnonzero(y == c), 2 * shots,
                                              replace=False)) for c in chosen])


def _run_cell(x: np.ndarray, y: np.ndarray, shots: int, n_classes: int, cfg: dict,
              cell_dir: Path, device: Any = "cpu") -> dict:
    from miakit import lira, metrics, shadow

    idx = cell_examples(y, shots, n_classes, cfg["seed"])
    ys = np.unique(y[idx], return_inverse=True)[1].astype(np.int64)  # classes 0..C-1
    m = cfg["n_models"]
    keep = shadow.balanced_keep(m, len(idx), seed=cfg["seed"], strata=ys)
    t0 = time.perf_counter()
    kw = {"head": cfg["head"], "seed": cfg["seed"], "progress": False, "device": device}
    if cfg["head"] == "mlp":
        kw.update(hidden=cfg["hidden"], epochs=cfg["epochs"])
    z = shadow.train_heads(x[idx], ys, keep, run_dir=cell_dir / "run", n_classes=n_classes,
                           **kw)
    t1 = time.perf_counter()
    variance = "global" if m < 64 else "per_example"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lira.ClampedSpreadWarning)
        s = np.asarray(lira.leave_one_out(np.asarray(z), keep, labels=ys, variance=variance,
                                          on_empty="nan"))
    ok = np.isfinite(s)
    cl = np.broadcast_to(np.arange(len(idx)), s.shape)[ok]
    ranked = metrics.RankedScores(s[ok], keep[ok], cl)  # one sort for every metric
    points = []
    for f in cfg["fprs"]:
        r = ranked.tpr_at_fpr(f)
        points.append({"target_fpr": f, "tpr": r.tpr, "fpr": r.fpr, "tpr_ci": list(r.ci),
                       "tp": r.tp, "fp": r.fp, "n_members": r.n_pos,
                       "n_nonmembers": r.n_neg, "resolvable": r.resolvable})
    t2 = time.perf_counter()
    return {"shots": shots, "classes": n_classes, "n_examples": int(len(idx)),
            "examples": idx.tolist(), "auc": ranked.auc(),
            "lira": {"mode": "online", "variance": variance, "references": "balanced"},
            "tpr_at_fpr": points, "config": cfg,
            "timing_s": {"training": round(t1 - t0, 3), "attack": round(t2 - t1, 3)}}


def _heldout_check(s: np.ndarray, c: np.ndarray, t: np.ndarray, resolvable: np.ndarray,
                   f: float) -> dict[str, Any]:
    """Fit without the cells of the largest shot count, predict them (extrapolation)."""
    from miakit import powerlaw

    test = (s == s.max()) & resolvable & (t > f)
    train = s < s.max()
    if not test.any():
        return {"error": "no usable cell at the largest shot count"}
    try:
        fit = powerlaw.fit(s[train], c[train], t[train], f, resolvable=resolvable[train])
    except ValueError as exc:
        return {"error": str(exc)}
    pred = fit.predict(s[test], c[test])
    inside = (pred["tpr_lower"] <= t[test]) & (t[test] <= pred["tpr_upper"])
    return {"held_out": "cells with the largest shot count", "n_cells": int(test.sum()),
            "covered": int(inside.sum()), "level": fit.level,
            "cells": [{"shots": float(a), "classes": float(b), "tpr": float(v),
                       "predicted": float(p), "lower": float(lo), "upper": float(hi)}
                      for a, b, v, p, lo, hi in zip(s[test], c[test], t[test], pred["tpr"],
                                                    pred["tpr_lower"], pred["tpr_upper"])]}


def _write_csv(path: Path, cells: list[dict], fprs: list[float]) -> None:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["shots", "classes", "n_examples", "auc"] +
               [f"{k}@{f:g}" for f in fprs for k in ("tpr", "fpr", "resolvable")])
    for c in cells:
        row = [c["shots"], c["classes"], c["n_examples"], f"{c['auc']:.6f}"]
        for p in c["tpr_at_fpr"]:
            row += [f"{p['tpr']:.6g}", f"{p['fpr']:.6g}", int(p["resolvable"])]
        w.writerow(row)
    data = buf.getvalue().encode()
    atomic_write(path, lambda f: f.write(data), "the sweep table")
