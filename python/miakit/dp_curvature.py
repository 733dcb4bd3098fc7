"""Memorization and input curvature under differential privacy (Ravikumar et al.;
docs/methods/curvature.md).

:func:`dp_curvature` trains shadow heads with DP-SGD at several epsilon (and once without
DP, with the same optimizer, batches and steps but no clipping or noise) on the embedded
digits, and reports per epsilon the mean and upper quantiles of every example's label
memorization (Feldman-Zhang, over the heads) and of its exact input-loss curvature (the
trace of the input Hessian of the cross-entropy, :func:`miakit.curvature.head_trace` /
:func:`miakit.curvature.mlp_head_trace`, averaged over the heads that trained on it),
against the bound ``1 - e^-eps`` on the memorization of an eps-DP algorithm
(:func:`miakit.bounds.memorization_bound`), and the Spearman correlation of curvature with
memorization at each epsilon.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit._plotting import subplots
from miakit._validation import check_choice, check_int, check_probabilities, check_real
from miakit.io import save_figure, write_report

__all__ = ["dp_curvature", "summarize", "DEFAULT_EPSILONS"]

DEFAULT_EPSILONS = (1.0, 4.0, 16.0)


def _curvature_in(x: np.ndarray, params: dict, keep: np.ndarray, head: str) -> np.ndarray:
    """Exact input curvature of every example, averaged over the heads that trained on it."""
    from miakit import curvature

    total = np.zeros(x.shape[0])
    for m in range(keep.shape[0]):
        if head == "linear":
            t = curvature.head_trace(x, params["weight"][m], params["bias"][m])
        else:
            t = curvature.mlp_head_trace(x, params["weight1"][m], params["bias1"][m],
                                         params["weight2"][m], params["bias2"][m])
        total += np.where(keep[m], np.asarray(t, dtype=np.float64), 0.0)
    return total / keep.sum(axis=0)


def _stats(v: np.ndarray, quantiles: Sequence[float]) -> dict[str, float]:
    return {"mean": float(v.mean()), **{f"q{100 * q:g}": float(np.quantile(v, q))
                                        for q in quantiles}}


def dp_curvature(out_dir: str | Path | None = None, *,
                 epsilons: Sequence[float] = DEFAULT_EPSILONS, models: int = 32,
                 n_examples: int = 400, head: str = "linear", hidden: int = 64,
                 steps: int = 100, sample_rate: float = 0.5, clip: float = 1.0,
                 lr: float = 0.2, delta: float = 1e-5,
                 quantiles: Sequence[float] = (0.9, 0.99), seed: int = 0,
                 plot: bool = True,
                 progress: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Memorization and exact input curvature of DP-SGD heads against epsilon.

    Parameters
    ----------
    out_dir : path, optional
        Where to write ``dp_curvature.json`` and ``dp_curvature.png``.
    epsilons : sequence of float
        Privacy budgets (positive); the noise multiplier of each is calibrated at
        ``delta`` for ``sample_rate`` and ``steps`` (:func:`miakit.bounds.dpsgd_noise`).
        A row without DP (epsilon ``inf``) is always added.
    models : int
        Heads per epsilon (even, >= 4), each trained on a random half of the examples
        (:func:`miakit.shadow.balanced_keep`), so that each example has ``models / 2``
        heads on each side.
    n_examples : int
        A fixed random subset of the 1,797 digits (one view, pixel features).
    head : {"linear", "mlp"}
    hidden : int
        Hidden units of the MLP head.
    steps, sample_rate, clip, lr : int, float, float, float
        DP-SGD: steps, Poisson sampling rate, per-example clipping norm, learning rate
        (SGD with momentum 0.9, no weight decay). Without DP: the same SGD with batches of
        ``round(sample_rate * n_examples / 2)`` rows for as many steps, unclipped.
    delta : float
        delta of the DP guarantee, in (0, 1).
    quantiles : sequence of float
        Upper quantiles reported, in (0, 1).
    seed : int
        Seed of the keep matrix and of the heads (the same for every epsilon).
    plot : bool
    progress : callable, optional
        Called with a line per epsilon.

    Returns
    -------
    dict
        ``rows``: per epsilon (``None`` for no DP), the noise multiplier, the bound
        ``1 - e^-eps``, train and test accuracy, ``memorization`` and ``curvature``
        (mean and quantiles), ``spearman`` (rho and p-value of curvature against
        memorization), and ``within_bound`` (the mean memorization is at most the bound).

    Examples
    --------
    >>> from miakit.dp_curvature import dp_curvature
    >>> r = dp_curvature(epsilons=[2.0], models=4, n_examples=60, steps=20, plot=False)
    >>> [row["epsilon"] for row in r["rows"]]
    [2.0, None]
    >>> r["rows"][0]["bound"] == 1 - 2.718281828459045 ** -2.0
    True
    """
    from scipy import stats

    import miakit as mk
    from miakit import datasets, signals

    eps_list = sorted({check_real(e, "epsilons", 0.0, open_lo=True,
                                  what="positive finite epsilons") for e in epsilons})
    check_int(models, "models", 4)
    if models % 2:
        raise ValueError(f"models: expected an even number >= 4, got {models}")
    check_int(n_examples, "n_examples", 8, 1797)
    check_choice(head, "head", ("linear", "mlp"))
    check_int(hidden, "hidden", 1)
    check_int(steps, "steps", 1)
    check_real(sample_rate, "sample_rate", 0.0, 1.0, open_lo=True)
    check_real(clip, "clip", 0.0, open_lo=True)
    check_real(lr, "lr", 0.0, open_lo=True)
    check_real(delta, "delta", 0.0, 1.0, open_lo=True, open_hi=True)
    q_list = check_probabilities(quantiles, "quantiles")
    data = datasets.digits(n_examples=n_examples, views=1)
    x, y = data.features, data.labels
    keep = mk.shadow.balanced_keep(models, len(y), seed=seed)
    common = dict(head=head, hidden=hidden, lr=lr, weight_decay=0.0, seed=seed,
                  return_info=True, progress=False)
    rows = []
    for eps in [*eps_list, None]:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if eps is None:
                noise = None
                batch = max(1, round(sample_rate * len(y) / 2))
                z, info = mk.shadow.train_heads(
                    x, y, keep, optimizer="sgd", batch_size=batch,
                    epochs=max(1, round(steps * batch / (len(y) / 2))), **common)
            else:
                noise = mk.bounds.dpsgd_noise(eps, delta, sample_rate, steps)
                z, info = mk.shadow.train_heads(
                    x, y, keep, dp={"noise_multiplier": noise, "clip": clip,
                                    "sample_rate": sample_rate, "steps": steps,
                                    "delta": delta}, **common)
        correct = np.asarray(signals.correct(z[:, :, 0, :], y), dtype=bool)
        mem = np.asarray(mk.memorization.feldman_zhang(correct, keep), dtype=np.float64)
        curv = _curvature_in(x[:, 0], info["params"], keep, head)
        rho, pval = stats.spearmanr(curv, mem)
        bound = mk.bounds.memorization_bound(eps) if eps is not None else 1.0
        row = {"epsilon": eps, "noise_multiplier": noise, "bound": bound,
               "train_accuracy": float(correct[keep].mean()),
               "test_accuracy": float(correct[~keep].mean()),
               "memorization": _stats(mem, q_list), "curvature": _stats(curv, q_list),
               "spearman": {"rho": None if math.isnan(rho) else float(rho),
                            "pvalue": None if math.isnan(pval) else float(pval)},
               "within_bound": bool(mem.mean() <= bound),
               "seconds": round(time.perf_counter() - t0, 2)}
        rows.append(row)
        if progress is not None:
            progress(_row_line(row, q_list[-1]))
    report = {"dataset": data.description, "n_examples": len(y), "models": models,
              "head": head, "hidden": hidden if head == "mlp" else None,
              "dp": {"steps": steps, "sample_rate": sample_rate, "clip": clip, "lr": lr,
                     "delta": delta, "accountant": "pld"},
              "quantiles": q_list, "seed": seed,
              "memorization": "Feldman-Zhang label memorization over the heads "
                              f"({models // 2} per side)",
              "curvature": "exact trace of the input Hessian of the cross-entropy, mean "
                           "over the heads that trained on the example",
              "bound": "1 - e^-eps (memorization of an eps-DP algorithm; Ravikumar et al.)",
              "rows": rows}
    if out_dir is not None:
        write_report(out_dir, "dp_curvature", report, _plot if plot else None)
    return report


def _row_line(row: dict, q: float) -> str:
    key = f"q{100 * q:g}"
    eps = "no DP" if row["epsilon"] is None else f"eps {row['epsilon']:g}"
    rho = row["spearman"]["rho"]
    return (f"{eps:>9}: bound {row['bound']:.3f}, memorization mean "
            f"{row['memorization']['mean']:.3f} {key} {row['memorization'][key]:.3f}; "
            f"curvature mean {row['curvature']['mean']:.3g} {key} {row['curvature'][key]:.3g}; "
            f"Spearman {'n/a' if rho is None else f'{rho:+.2f}'}; accuracy train "
            f"{100 * row['train_accuracy']:.0f}% test {100 * row['test_accuracy']:.0f}%")


def summarize(report: dict) -> str:
    """What ``miakit dp-curvature`` prints: a line per epsilon.

    Examples
    --------
    >>> from miakit.dp_curvature import summarize
    >>> row = {"epsilon": None, "bound": 1.0, "memorization": {"mean": 0.1, "q99": 0.5},
    ...        "curvature": {"mean": 0.2, "q99": 1.0}, "spearman": {"rho": 0.5},
    ...        "train_accuracy": 1.0, "test_accuracy": 0.9}
    >>> r = {"dataset": "d", "models": 4, "head": "linear", "quantiles": [0.99],
    ...      "rows": [row]}
    >>> print(summarize(r).splitlines()[1].split(";")[0].strip())
    no DP: bound 1.000, memorization mean 0.100 q99 0.500
    """
    lines = [f"miakit dp-curvature: {report['dataset']}; {report['models']} {report['head']} "
             "heads per epsilon"]
    lines += [_row_line(row, report["quantiles"][-1]) for row in report["rows"]]
    if report.get("files"):
        lines.append("wrote " + ", ".join(report["files"].values()))
    return "\n".join(lines)


def _plot(report: dict, path: Path) -> None:
    rows = report["rows"]
    finite = [r["epsilon"] for r in rows if r["epsilon"] is not None]
    nodp = 4 * max(finite) if finite else 1.0
    xs = [r["epsilon"] if r["epsilon"] is not None else nodp for r in rows]
    fig, axes = subplots(1, 2, figsize=(9, 3.8), dpi=110)
    for ax, key, label in ((axes[0], "memorization", "label memorization"),
                           (axes[1], "curvature", "input curvature tr(H)")):
        ax.plot(xs, [r[key]["mean"] for r in rows], "o-", label="mean")
        for q in report["quantiles"]:
            k = f"q{100 * q:g}"
            ax.plot(xs, [r[key][k] for r in rows], "s--", lw=1, label=f"{100 * q:g}th pct")
        if key == "memorization" and finite:
            grid = np.geomspace(min(finite) / 2, nodp, 100)
            ax.plot(grid, -np.expm1(-grid), color="k", lw=1, label="bound 1 - e^-eps")
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" for x in finite] + ["no DP"])
        ax.minorticks_off()
        ax.set_xlabel("epsilon")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    rho = ", ".join("no DP" if r["epsilon"] is None else f"{r['epsilon']:g}" for r in rows)
    fig.suptitle(f"DP-SGD {report['head']} heads on digits; Spearman(curvature, memorization)"
                 f" at eps {rho}: " + ", ".join(
                     "n/a" if r["spearman"]["rho"] is None else f"{r['spearman']['rho']:+.2f}"
                     for r in rows), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
