"""The audit's figures: the ROC of every attack on both of its tails, with the limit a
DP guarantee sets.

``roc.png`` has two log-log panels. The left one is the usual low-FPR ROC: the members an
attack calls at or above a threshold (TPR) against the non-members it calls (FPR). The
right one is the other tail of the same curve: the non-members below the threshold (TNR)
against the members below it (FNR). An (epsilon, delta)-DP guarantee bounds both,
``TPR <= e^eps FPR + delta`` and ``TNR <= e^eps FNR + delta``
(:func:`miakit.bounds.dp_tpr_bound`, docs/methods/bounds.md), and the empirical epsilon
comes from whichever side proves more, so the point behind it is marked on its panel.

The per-example figures (vulnerability against memorization, gradient norm, curvature)
are :func:`miakit.vulnerability.save_plots`; every figure is drawn on its own canvas
(:mod:`miakit._plotting`) and written atomically (:func:`miakit.io.save_figure`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit.audit.report import AttackResult
from miakit.io import save_figure

__all__ = ["plot_roc"]


def _default_bands(results: Mapping[str, AttackResult]) -> list[str]:
    """The attacks whose pointwise intervals :func:`plot_roc` shades by default: the one
    the verdict rests on and the one behind the largest empirical epsilon (when it is
    above 0), or, where there is neither (no attack significant, no epsilon proven), the
    attack with the highest AUC, so that a reader sees whether chance lies in its band."""
    from miakit.audit.evaluation import verdict

    names: list[str] = []
    first = verdict(results)["strongest"]
    if first is not None:
        names.append(first["attack"])
    eps = {k: r.empirical_epsilon["epsilon"] for k, r in results.items()}
    if eps:
        top = max(eps, key=lambda k: eps[k])
        if eps[top] > 0 and top not in names:
            names.append(top)
    if not names and results:
        names.append(max(results, key=lambda k: results[k].auc))
    return names


def _label(r: AttackResult) -> str:
    """An attack's legend entry: its AUC and its TPR at the lowest budget that measures
    one (a point that cannot gets no number: metrics.TprAtFpr)."""
    points = [p for p in r.tpr_at_fpr if p.get("resolvable", True)]
    low = min(points, key=lambda p: p["target_fpr"]) if points else None
    extra = (f", TPR {100 * low['tpr']:.1f}% @ FPR {100 * low['target_fpr']:g}%" if low
             else ", no budget resolvable")
    return f"{r.label} (AUC {r.auc:.3f}{extra})"


def _epsilon_point(r: AttackResult) -> tuple[str, tuple[float, float], tuple[float, float]]:
    """The operating point behind an attack's empirical epsilon, on its panel: ``"tpr"``
    (left: (FPR, TPR)) or ``"fnr"`` (right: (FNR, TNR)), measured and at the confidence
    bounds that prove the epsilon."""
    e = r.empirical_epsilon
    tpr, fpr = e["tp"] / r.n_members, e["fp"] / r.n_nonmembers
    if e["side"] == "fnr":
        return "fnr", (1.0 - tpr, 1.0 - fpr), (1.0 - e["tpr_lower"], 1.0 - e["fpr_upper"])
    return "tpr", (fpr, tpr), (e["fpr_upper"], e["tpr_lower"])


def plot_roc(results: Mapping[str, AttackResult], path: str | Path, title: str = "",
             dp: tuple[float, float] | None = None,
             bands: Sequence[str] | str | None = None) -> Path:
    """Both tails of every attack's ROC, log-log, with pointwise intervals, the limit a DP
    guarantee sets and the operating point behind the largest empirical epsilon; returns
    the path.

    Left: TPR against FPR down to FPR = 1 / (number of non-members); right: TNR (the
    non-members below the threshold) against FNR (the members below it) down to
    FNR = 1 / (number of members), the side an empirical epsilon of side ``"fnr"`` comes
    from. Each attack's curve is its :attr:`AttackResult.curve`; its band is the
    two-sided interval of its ``roc`` grid (pointwise, at the audit's confidence level).
    With ``dp = (epsilon, delta)``, the limit ``TPR <= e^eps FPR + delta`` (and the same
    for TNR and FNR, :func:`miakit.bounds.dp_tpr_bound`) is drawn on both panels and the
    region it rules out shaded; the marked point, when it lies there, is what makes the
    report call the attack inconsistent with the claim. The legend is below the panels.

    Parameters
    ----------
    results : mapping of str to AttackResult
        What :func:`miakit.audit.evaluate` returns (a report read back from JSON holds
        no curves: ``ValueError``).
    path : path
        The PNG to write.
    title : str
        Drawn above the panels.
    dp : (epsilon, delta), optional
        A DP guarantee to draw.
    bands : sequence of str, "all" or None
        The attacks whose intervals are shaded; None (default): the attack the verdict rests
        on and the one behind the largest empirical epsilon, or, where there is neither,
        the attack with the highest AUC.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> import miakit as mk
    >>> from miakit.audit import evaluate, plot_roc
    >>> keep = mk.shadow.balanced_keep(4, 300, seed=0)
    >>> scores = np.random.default_rng(0).normal(size=keep.shape) + keep
    >>> plot_roc(evaluate({"shifted": {"scores": scores}}, keep),
    ...          tempfile.mkdtemp() + "/roc.png", dp=(1.0, 1e-5)).name
    'roc.png'
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from miakit._plotting import colormap, subplots
    from miakit.audit.evaluation import _check_results
    from miakit.audit.report import _check_output_path

    _check_results(results)
    path = _check_output_path(path)
    if not isinstance(title, str):
        raise TypeError(f"title: expected a str, got {type(title).__name__}")
    for r in results.values():
        if r.curve is None:
            raise ValueError(f"results: attack {r.label!r} has no ROC curve (a report "
                             "read back from JSON holds none; draw it from evaluate())")
    if not results:
        raise ValueError("results: expected at least one attack")
    names = list(results)
    shaded = (names if bands == "all" else _default_bands(results) if bands is None
              else [b for b in bands if b in results])
    # its own canvas: no pyplot state (sized below, once the legend's rows are known)
    fig, (ax_hi, ax_lo) = subplots(1, 2, figsize=(11.0, 6.0), dpi=110)
    n_neg = max(r.n_nonmembers for r in results.values())
    n_pos = max(r.n_members for r in results.values())
    lo_f, lo_t = 1.0 / n_neg, 1.0 / n_pos  # the smallest rates the counts can show
    colors = colormap("tab10").colors
    handles: list[Any] = []
    for i, (name, r) in enumerate(results.items()):
        assert r.curve is not None  # checked above
        fpr, tpr = (np.asarray(c, dtype=np.float64) for c in r.curve)
        color = colors[i % len(colors)]
        # attacks with reference models solid, threshold attacks dashed
        uses_refs = "references" in r.settings
        style = {"color": color, "ls": "-" if uses_refs else "--",
                 "lw": 1.5 if uses_refs else 1.1}
        ax_hi.step(np.maximum(fpr, lo_f), np.maximum(tpr, lo_t), where="post", **style)
        # the other tail: (FNR, TNR), ascending in FNR, each FNR's best TNR last
        ax_lo.step(np.maximum(1.0 - tpr[::-1], lo_t), np.maximum(1.0 - fpr[::-1], lo_f),
                   where="post", **style)
        handles.append(Line2D([], [], label=_label(r), **style))
        if name in shaded and "tpr_lower" in r.roc:
            roc = r.roc
            ax_hi.fill_between(roc["fpr"], np.maximum(roc["tpr_lower"], lo_t),
                               np.maximum(roc["tpr_upper"], lo_t), color=color, alpha=0.2,
                               lw=0)
            ax_lo.fill_between(roc["fnr"], np.maximum(roc["tnr_lower"], lo_f),
                               np.maximum(roc["tnr_upper"], lo_f), color=color, alpha=0.2,
                               lw=0)
    for ax, lo_x, lo_y in ((ax_hi, lo_f, lo_t), (ax_lo, lo_t, lo_f)):
        ax.plot([min(lo_x, lo_y), 1], [min(lo_x, lo_y), 1], ls=":", color="0.3", lw=1)
    handles.append(Line2D([], [], ls=":", color="0.3", lw=1, label="chance"))
    level = next(iter(results.values())).empirical_epsilon.get("level", 0.95)
    for k in shaded:
        handles.append(Patch(color=colors[names.index(k) % len(colors)], alpha=0.3, lw=0,
                             label=f"shaded: {results[k].label}'s {100 * level:.0f}% "
                                   "pointwise interval"))
    if dp is not None:
        from miakit.bounds import dp_tpr_bound

        for ax, lo_x, lo_y in ((ax_hi, lo_f, lo_t), (ax_lo, lo_t, lo_f)):
            grid = np.geomspace(lo_x, 1.0, 300)
            limit = np.maximum(dp_tpr_bound(grid, dp[0], dp[1]), lo_y)
            ax.fill_between(grid, limit, 1.0, color="0.55", alpha=0.12, lw=0, hatch="//",
                            edgecolor="0.75")
            ax.plot(grid, limit, color="black", lw=1.6, ls="-.")
        handles.append(Line2D([], [], color="black", lw=1.6, ls="-.",
                              label=f"({dp[0]:g}, {dp[1]:g})-DP limit (TPR <= e^eps FPR + "
                                    "delta; TNR <= e^eps FNR + delta)"))
        handles.append(Patch(facecolor="0.55", alpha=0.25, hatch="//", edgecolor="0.75",
                             label="ruled out by the DP claim"))
    _mark_epsilon(results, ax_hi, ax_lo, dp, handles, (lo_f, lo_t))
    for ax in (ax_hi, ax_lo):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    ax_hi.set_xlim(lo_f, 1)
    ax_hi.set_ylim(lo_t, 1)
    ax_lo.set_xlim(lo_t, 1)
    ax_lo.set_ylim(lo_f, 1)
    ax_hi.set_xlabel("false-positive rate (non-members at or above the threshold)")
    ax_hi.set_ylabel("true-positive rate (members at or above the threshold)")
    ax_hi.set_title("high-score side: members caught", fontsize=10)
    ax_lo.set_xlabel("false-negative rate (members below the threshold)")
    ax_lo.set_ylabel("true-negative rate (non-members below the threshold)")
    ax_lo.set_title("low-score side: non-members cleared", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    # the legend below the panels, never over a curve, two entries a row, each entry
    # wrapped to half the figure's width; fixed margins (a layout engine would measure
    # every log tick label: seconds)
    lines = 0
    for h in handles:
        h.set_label(textwrap.fill(h.get_label(), 95, subsequent_indent="  ",
                                  break_on_hyphens=False))
        lines += h.get_label().count("\n") + 1
    legend_h = 0.25 + 0.16 * (-(-lines // 2) + 1)  # inches
    height = 5.0 + legend_h
    fig.set_size_inches(11.0, height)
    fig.subplots_adjust(left=0.07, right=0.985, wspace=0.22, top=1 - 0.55 / height,
                        bottom=(legend_h + 0.62) / height)
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=2,
               fontsize=7.5, frameon=False, borderaxespad=0.3)
    save_figure(fig, path)
    return Path(path)


def _mark_epsilon(results: Mapping[str, AttackResult], ax_hi: Any, ax_lo: Any,
                  dp: tuple[float, float] | None, handles: list[Any],
                  lows: tuple[float, float]) -> None:
    """Mark the operating point behind the largest empirical epsilon (when one is above
    0) on its panel: the measured point (star) and the confidence bounds that prove the
    epsilon (hollow square), joined by a line; red, and said so, when it breaks ``dp``."""
    from matplotlib.lines import Line2D

    eps = {k: r.empirical_epsilon["epsilon"] for k, r in results.items()}
    best = max(eps, key=lambda k: eps[k])
    if eps[best] <= 0:
        return
    r = results[best]
    side, point, corner = _epsilon_point(r)
    ax, (lo_x, lo_y) = (ax_lo, lows[::-1]) if side == "fnr" else (ax_hi, lows)
    breaks = dp is not None and eps[best] > dp[0]
    color = "crimson" if breaks else "black"
    x = [max(point[0], lo_x), max(corner[0], lo_x)]
    y = [max(point[1], lo_y), max(corner[1], lo_y)]
    # a rate of 0 is drawn on the axis (log scale): the markers unclipped, whole
    ax.plot(x, y, color=color, lw=1, zorder=5, clip_on=False)
    ax.plot(x[:1], y[:1], marker="*", ms=13, color=color, mec="white", mew=0.8, ls="",
            zorder=6, clip_on=False)
    ax.plot(x[1:], y[1:], marker="s", ms=7, mfc="none", mec=color, mew=1.4, ls="",
            zorder=6, clip_on=False)
    text = f"epsilon >= {eps[best]:.2f}" + (
        f"\nbreaks the ({dp[0]:g}, {dp[1]:g})-DP claim" if breaks and dp is not None else "")
    # the note in the lower right corner, below chance, where an attack's curve rarely is
    ax.annotate(text, (x[0], y[0]), xytext=(0.97, 0.04), textcoords="axes fraction",
                ha="right", va="bottom", fontsize=8.5, color=color,
                fontweight="bold" if breaks else "normal",
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": color, "alpha": 0.95},
                arrowprops={"arrowstyle": "->", "color": color, "lw": 0.8, "alpha": 0.7,
                            "shrinkA": 0, "shrinkB": 7}, zorder=7)
    where = "right panel, low-score side" if side == "fnr" else "left panel, high-score side"
    handles.append(Line2D([], [], color=color, marker="*", ms=10, mec="white", ls="",
                          label=f"the largest empirical epsilon, {eps[best]:.2f}: {r.label}'s "
                                f"operating point ({where})"
                                + ("; it breaks the DP claim" if breaks else "")))
    handles.append(Line2D([], [], color=color, marker="s", mfc="none", ms=6, ls="",
                          label=f"the same at its {100 * r.empirical_epsilon['level']:.0f}% "
                                "confidence bounds, which prove the epsilon"))
