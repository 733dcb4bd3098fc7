"""The audit's figures: the ROC of every attack, with the limit a DP guarantee sets.

The per-example figures (vulnerability against memorization, gradient norm, curvature)
are :func:`miakit.vulnerability.save_plots`; every figure is drawn on its own canvas
(:mod:`miakit._plotting`) and written atomically (:func:`miakit.io.save_figure`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from miakit.audit.report import AttackResult
from miakit.io import save_figure

__all__ = ["plot_roc"]


def plot_roc(results: Mapping[str, AttackResult], path: str | Path, title: str = "",
             dp: tuple[float, float] | None = None) -> Path:
    """A log-log ROC plot of every attack of an audit, down to FPR = 1 / (number of
    non-members), with the TPR a DP guarantee allows when ``dp = (epsilon, delta)``;
    returns the path. Each attack's curve is its :attr:`AttackResult.curve`.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> import miakit as mk
    >>> from miakit.audit import evaluate, plot_roc
    >>> keep = mk.shadow.balanced_keep(4, 300, seed=0)
    >>> scores = np.random.default_rng(0).normal(size=keep.shape) + keep
    >>> plot_roc(evaluate({"shifted": {"scores": scores}}, keep),
    ...          tempfile.mkdtemp() + "/roc.png").name
    'roc.png'

    """
    from miakit._plotting import colormap, subplots

    fig, ax = subplots(figsize=(5.5, 5.0), dpi=120)  # its own canvas: no pyplot state
    n_neg = max(r.n_nonmembers for r in results.values())
    lo = 1.0 / n_neg
    colors = colormap("tab10").colors
    for i, r in enumerate(results.values()):
        if r.curve is None:
            raise ValueError(f"results: attack {r.label!r} has no ROC curve (a report "
                             "read back from JSON holds none; draw it from evaluate())")
        fpr, tpr = r.curve
        low = next((p for p in r.tpr_at_fpr if p["target_fpr"] == 1e-3), None)
        # a point that cannot measure a TPR at 0.1% gets no number (metrics.TprAtFpr)
        extra = ("" if not low else f", TPR {100 * low['tpr']:.1f}% @ 0.1%"
                 if low.get("resolvable", True) else ", not resolvable @ 0.1%")
        # attacks with reference models solid, threshold attacks dashed
        uses_refs = "references" in r.settings
        ax.step(np.maximum(fpr, lo), np.maximum(tpr, lo), where="post",
                color=colors[i % len(colors)], ls="-" if uses_refs else "--",
                lw=1.4 if uses_refs else 1.1,
                label=f"{r.label} (AUC {r.auc:.3f}{extra})")
    ax.plot([lo, 1], [lo, 1], ls=":", color="black", lw=1, label="chance")
    if dp is not None:
        from miakit.bounds import dp_tpr_bound

        grid = np.geomspace(lo, 1.0, 200)
        ax.plot(grid, np.maximum(dp_tpr_bound(grid, dp[0], dp[1]), lo), color="crimson",
                lw=1.6, ls="-.", label=f"({dp[0]:g}, {dp[1]:g})-DP limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7 if len(results) > 4 else 8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)
