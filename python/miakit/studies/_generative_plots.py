"""The figures of ``miakit generative`` (see :mod:`miakit.studies.generative`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from miakit._plotting import subplots
from miakit.io import save_figure
from miakit.metrics.intervals import clopper_pearson


def _tpr_and_interval(attack: dict, fpr_key: str, level: float) -> tuple[float, float, float]:
    """An attack's TPR at one FPR with its Clopper-Pearson interval: the one the study
    stored, or (a report without it) the same from the true-positive count."""
    t = attack["tpr_at_fpr"][fpr_key]
    if t.get("ci") is not None:
        lo, hi = t["ci"]
    else:
        lo, hi = clopper_pearson(int(t["tp"]), int(attack["n_members"]), level)
    return float(t["tpr"]), float(lo), float(hi)


def plot_generative(report: dict, path: str | Path) -> None:
    """Advantage (with its interval) and TPR at the lowest FPRs against capacity (number
    of parameters); for a single model without capacity, its attacks' TPRs as bars.
    Every TPR carries its Clopper-Pearson interval at the report's level."""
    models = report["models"]
    f_keys = [f"{f:g}" for f in report["fprs"]]
    level = float(report.get("level", 0.95))
    fig, (ax, ax2) = subplots(1, 2, figsize=(11, 4.2), dpi=110)
    with_cap = [m for m in models if m.get("n_parameters")]
    attacks = (("dcr", "DCR threshold", "o"), ("risk", "risk (KDE posterior)", "s"),
               ("domias", "DOMIAS", "^"))
    if with_cap:
        for kind, color in (("gmm", "tab:blue"), ("vae", "tab:red")):
            ms = sorted([m for m in with_cap if m["kind"] == kind],
                        key=lambda m: m["n_parameters"])
            if not ms:
                continue
            xs = [m["n_parameters"] for m in ms]
            a = np.array([m["advantage"]["advantage"] for m in ms])
            lo = a - np.array([m["advantage"]["ci"][0] for m in ms])
            hi = np.array([m["advantage"]["ci"][1] for m in ms]) - a
            ax.errorbar(xs, a, yerr=[lo, hi], fmt="o-" if kind == "gmm" else "D",
                        color=color, capsize=3,
                        label="Gaussian mixtures" if kind == "gmm" else "VAE")
            for m, xv, yv in zip(ms, xs, a):
                ax.annotate(m["name"].replace("GMM ", ""), (xv, yv), fontsize=7,
                            xytext=(4, -10), textcoords="offset points")
            for j, (key, label, marker) in enumerate(attacks):
                t, lo, hi = np.array([_tpr_and_interval(m["attacks"][key], f_keys[0], level)
                                      for m in ms]).T
                # the three attacks side by side (a few percent apart on the log axis),
                # so that their intervals do not hide each other
                ax2.errorbar(np.array(xs) * 10.0 ** (0.04 * (j - 1)), t, yerr=[t - lo, hi - t],
                             marker=marker, ls="-" if kind == "gmm" else "none", color=color,
                             alpha=0.8, capsize=2, elinewidth=0.8, ms=5,
                             label=f"{label} ({kind.upper()})")
        ax.set_xscale("log")
        ax2.set_xscale("log")
        ax.set_xlabel("model parameters")
        ax2.set_xlabel("model parameters")
        ax2.axhline(report["fprs"][0], ls=":", color="grey", label="chance (TPR = FPR)")
    else:
        m = models[0]
        names = [label for _, label, _ in attacks]
        for j, fk in enumerate(f_keys):
            t, lo, hi = np.array([_tpr_and_interval(m["attacks"][k], fk, level)
                                  for k, _, _ in attacks]).T
            ax2.bar(np.arange(3) + 0.35 * j, t, 0.35, yerr=[t - lo, hi - t], capsize=3,
                    label=f"FPR {fk}")
        ax2.set_xticks(np.arange(3) + 0.175, names, fontsize=8)
        a = m["advantage"]
        ax.bar([0], [a["advantage"]], yerr=[[a["advantage"] - a["ci"][0]],
                                            [a["ci"][1] - a["advantage"]]], capsize=4)
        ax.set_xticks([0], [m["name"]])
    ax.set_ylabel(f"membership advantage of DCR ({100 * report['level']:g}% DKW)")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax2.set_ylabel((f"TPR at FPR {f_keys[0]}" if with_cap else "TPR")
                   + f" ({100 * level:g}% Clopper-Pearson interval)")
    if with_cap:
        # most models sit near chance (TPR = FPR, a few percent): on a log axis their
        # intervals, and whether they clear the chance line, stay readable beside the
        # memorisers' TPRs near 1 (an interval reaching 0 runs off the bottom)
        ax2.set_yscale("log", nonpositive="clip")
        ax2.set_ylim(report["fprs"][0] / 10, 1.0)
    else:
        ax2.set_ylim(0, 1)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=7)
    if with_cap:
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['dataset']}: membership leakage of synthetic data", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def plot_records(report: dict, train: np.ndarray, samples: dict[str, np.ndarray],
                 side: int, path: str | Path) -> None:
    """Per model, the training records most at risk (top row of each pair) above their
    closest synthetic record, as side x side images, with risk and DCR."""
    models = report["models"]
    cols = max(1, max(len(m["at_risk"]) for m in models))
    fig, axes = subplots(2 * len(models), cols,
                         figsize=(1.1 * cols + 1.2, 2.3 * len(models)), dpi=100,
                         squeeze=False)
    for r, m in enumerate(models):
        syn = samples[m["name"]]
        for c in range(cols):
            top, bot = axes[2 * r, c], axes[2 * r + 1, c]
            for a in (top, bot):
                a.set_xticks([])
                a.set_yticks([])
            if c >= len(m["at_risk"]):
                top.axis("off")
                bot.axis("off")
                continue
            rec = m["at_risk"][c]
            top.imshow(train[rec["train_index"]].reshape(side, side), cmap="gray_r")
            bot.imshow(syn[rec["closest_synthetic"]].reshape(side, side), cmap="gray_r")
            top.set_title(f"risk {rec['risk']:.2f}\nDCR {rec['dcr']:.2f}", fontsize=6)
        axes[2 * r, 0].set_ylabel(m["name"], fontsize=7)
        axes[2 * r + 1, 0].set_ylabel("closest\nsynthetic", fontsize=6)
    fig.suptitle("training records most at risk (above) and their closest synthetic "
                 "record (below)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
