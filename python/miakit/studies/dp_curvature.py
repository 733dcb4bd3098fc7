"""Memorization and input curvature under differential privacy (Ravikumar et al.;
docs/methods/curvature.md).

:func:`run` trains shadow heads with DP-SGD at several epsilon (and once without
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

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit._params import option, validate
from miakit._plotting import subplots
from miakit.io import save_figure
from miakit.studies._config import resolve
from miakit.studies._result import StudyResult

__all__ = ["DpCurvatureConfig", "DpCurvatureResult", "run", "dp_curvature",
           "DEFAULT_EPSILONS"]

DEFAULT_EPSILONS = (1.0, 4.0, 16.0)


@dataclasses.dataclass(frozen=True)
class DpCurvatureConfig:
    """The options of the DP-SGD memorization and curvature study (``miakit
    dp-curvature``).

    Examples
    --------
    >>> from miakit.studies.dp_curvature import DpCurvatureConfig
    >>> DpCurvatureConfig(epsilons=[2]).epsilons
    (2.0,)
    >>> DpCurvatureConfig(models=5)
    Traceback (most recent call last):
    ...
    ValueError: models: expected an even number >= 4, got 5
    """

    epsilons: tuple[float, ...] = option(
        DEFAULT_EPSILONS, "privacy budgets (positive); the noise multiplier of each is "
        "calibrated at delta for the sample rate and steps; a row without DP is always "
        "added", low=0.0, open_low=True, flag="--epsilon")
    models: int = option(32, "heads per epsilon (even), each trained on a random half of "
                         "the examples", low=4)
    n_examples: int = option(400, "digits used (a fixed random subset of the 1,797)", low=8,
                             high=1797)
    head: str = option("linear", "the heads", choices=("linear", "mlp"))
    hidden: int = option(64, "hidden units of the MLP head", low=1)
    steps: int = option(100, "DP-SGD steps", low=1)
    sample_rate: float = option(0.5, "DP-SGD Poisson sampling rate", low=0.0, high=1.0,
                                open_low=True)
    clip: float = option(1.0, "DP-SGD per-example clipping norm", low=0.0, open_low=True)
    lr: float = option(0.2, "SGD learning rate (momentum 0.9, no weight decay)", low=0.0,
                       open_low=True)
    delta: float = option(1e-5, "delta of the guarantee", low=0.0, high=1.0, open_low=True,
                          open_high=True)
    quantiles: tuple[float, ...] = option((0.9, 0.99), "upper quantiles reported", low=0.0,
                                          high=1.0, open_low=True, open_high=True)
    seed: int = option(0, "seed of the keep matrix and of the heads (the same for every "
                       "epsilon)", seed=True)
    plot: bool = option(True, "write dp_curvature.png", flag="--no-plot")

    def __post_init__(self) -> None:
        validate(self)
        if self.models % 2:
            raise ValueError(f"models: expected an even number >= 4, got {self.models}")


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


def run(config: DpCurvatureConfig | None = None, *, out_dir: str | Path | None = None,
        progress: Callable[[str], Any] | None = None,
        **overrides: Any) -> DpCurvatureResult:
    """Memorization and exact input curvature of DP-SGD heads against epsilon.

    Per epsilon, ``config.models`` heads train on the embedded digits with DP-SGD (SGD with
    momentum 0.9, no weight decay; the noise multiplier from
    :func:`miakit.bounds.dpsgd_noise`), and once without DP: the same SGD with batches of
    ``round(sample_rate * n_examples / 2)`` rows for as many steps, unclipped.

    Parameters
    ----------
    config : DpCurvatureConfig, optional
        The options (default: ``DpCurvatureConfig()``); ``overrides`` replace its fields.
    out_dir : path, optional
        Where to write ``dp_curvature.json`` (and ``dp_curvature.png`` with
        ``config.plot``).
    progress : callable, optional
        Called with a line per epsilon.

    Returns
    -------
    DpCurvatureResult
        ``rows``: per epsilon (``None`` for no DP), the noise multiplier, the bound
        ``1 - e^-eps``, train and test accuracy, ``memorization`` and ``curvature``
        (mean and quantiles), ``spearman`` (rho and p-value of curvature against
        memorization), and ``within_bound`` (the mean memorization is at most the bound).

    Examples
    --------
    >>> from miakit.studies import dp_curvature
    >>> r = dp_curvature.run(epsilons=[2.0], models=4, n_examples=60, steps=20)
    >>> [row["epsilon"] for row in r["rows"]]
    [2.0, None]
    >>> r["rows"][0]["bound"] == 1 - 2.718281828459045 ** -2.0
    True
    """
    cfg = resolve(DpCurvatureConfig, config, overrides)
    from scipy import stats

    import miakit as mk
    from miakit import datasets, signals

    epsilons, models, n_examples, head = cfg.epsilons, cfg.models, cfg.n_examples, cfg.head
    hidden, steps, sample_rate, clip = cfg.hidden, cfg.steps, cfg.sample_rate, cfg.clip
    lr, delta, seed = cfg.lr, cfg.delta, cfg.seed
    eps_list = sorted(set(epsilons))
    q_list = list(cfg.quantiles)
    data = datasets.digits(n_examples=n_examples, views=1)
    x, y = data.features, data.labels
    keep = mk.shadow.balanced_keep(models, len(y), seed=seed)
    common: dict[str, Any] = dict(head=head, hidden=hidden, lr=lr, weight_decay=0.0,
                                  seed=seed, return_info=True, progress=False)
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
        if progress is not None:  # where the run is; the numbers are in the summary
            progress(f"{len(rows)} of {len(eps_list) + 1}: "
                     f"{'no DP' if eps is None else f'eps {eps:g}'}, {models} heads trained "
                     f"in {row['seconds']:.1f} s")
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
    result = DpCurvatureResult(report)
    if out_dir is not None:
        result.write(out_dir, plot=cfg.plot)
    return result


def dp_curvature(out_dir: str | Path | None = None, *,
                 progress: Callable[[str], Any] | None = None,
                 **options: Any) -> DpCurvatureResult:
    """:func:`run` with the options as keywords.

    Examples
    --------
    >>> from miakit.studies.dp_curvature import dp_curvature
    >>> r = dp_curvature(epsilons=[2.0], models=4, n_examples=60, steps=10, plot=False)
    >>> r["models"]
    4
    """
    return run(DpCurvatureConfig(**options), out_dir=out_dir, progress=progress)


def _row_line(row: dict, q: float) -> str:
    key = f"q{100 * q:g}"
    eps = "no DP" if row["epsilon"] is None else f"eps {row['epsilon']:g}"
    rho = row["spearman"]["rho"]
    return (f"{eps:>9}: bound {row['bound']:.3f}, memorization mean "
            f"{row['memorization']['mean']:.3f} {key} {row['memorization'][key]:.3f}; "
            f"curvature mean {row['curvature']['mean']:.3g} {key} {row['curvature'][key]:.3g}; "
            f"Spearman {'n/a' if rho is None else f'{rho:+.2f}'}; accuracy train "
            f"{100 * row['train_accuracy']:.0f}% test {100 * row['test_accuracy']:.0f}%")


class DpCurvatureResult(StudyResult):
    """The DP-SGD memorization and curvature report (``dp_curvature.json``).

    Examples
    --------
    >>> from miakit.studies.dp_curvature import DpCurvatureResult
    >>> row = {"epsilon": None, "bound": 1.0, "memorization": {"mean": 0.1, "q99": 0.5},
    ...        "curvature": {"mean": 0.2, "q99": 1.0}, "spearman": {"rho": 0.5},
    ...        "train_accuracy": 1.0, "test_accuracy": 0.9}
    >>> r = DpCurvatureResult({"dataset": "d", "models": 4, "head": "linear",
    ...                        "quantiles": [0.99], "rows": [row]})
    >>> print(r.summary().splitlines()[1].split(";")[0].strip())
    no DP: bound 1.000, memorization mean 0.100 q99 0.500
    """

    name = "dp_curvature"

    def summary(self) -> str:
        """What ``miakit dp-curvature`` prints: a line per epsilon."""
        report = self._report
        lines = [f"miakit dp-curvature: {report['dataset']}; {report['models']} "
                 f"{report['head']} heads per epsilon"]
        lines += [_row_line(row, report["quantiles"][-1]) for row in report["rows"]]
        return "\n".join(lines + self._files_line())

    def _draw(self, path: Path) -> None:
        report = self._report
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
