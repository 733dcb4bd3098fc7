"""The Kolmogorov-Smirnov test-set leakage experiment behind ``miakit leakage``
(Sablayrolles et al. 2018, Table 1; docs/methods/ks.md).

For each s (examples per class moved from the test part into training) and each seed,
split the dataset into train, validation and test parts (each model its own split),
train a classifier on ``train_size`` examples of the train part plus the moved ones, and
test with :func:`miakit.ks.leakage_test` whether its confidences on the test part are
distributed like those on the validation part. Report per s the median p-value and the
detection rate at alpha, with its binomial interval; at s = 0 (nothing leaked) the
detection rate is the test's false positive rate and must stay near alpha. A
source-assignment curve (how many values it takes to tell a model's training confidences
from its held-out ones) completes the report. All models of the experiment train at
once, as heads on fixed features.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from miakit._params import option, validate
from miakit._plotting import subplots
from miakit.io import save_figure
from miakit.studies._config import resolve
from miakit.studies._result import StudyResult

__all__ = ["KsLeakageConfig", "KsLeakageResult", "run", "leakage_experiment",
           "DEFAULT_SHOTS"]

DEFAULT_SHOTS = (0, 1, 2, 5, 10, 20)


@dataclasses.dataclass(frozen=True)
class KsLeakageConfig:
    """The options of the K-S test-set leakage experiment (``miakit leakage``).

    Examples
    --------
    >>> from miakit.studies.ks_leakage import KsLeakageConfig
    >>> KsLeakageConfig(shots=[0, 5]).shots
    (0, 5)
    >>> KsLeakageConfig(signal="loss")
    Traceback (most recent call last):
    ...
    ValueError: signal: expected one of ['confidence', 'max_confidence'], got 'loss'
    """

    shots: tuple[int, ...] = option(DEFAULT_SHOTS, "test examples per class moved into "
                                    "training (0: none)", low=0)
    seeds: int = option(20, "models per value of s (each its own split, training subsample "
                        "and moved examples)", low=1)
    alpha: float = option(0.05, "level of the K-S test", low=0.0, high=1.0, open_low=True,
                          open_high=True)
    head: str = option("linear", "the classifier", choices=("linear", "mlp"))
    train_size: int = option(200, "examples each model trains on from its train part "
                             "(besides the moved ones)", low=1)
    signal: str = option("confidence", "true-class softmax probability, or max softmax "
                         "probability (needs no label, misses confidently wrong answers)",
                         choices=("confidence", "max_confidence"))
    seed: int = option(0, "seed of the splits, subsamples and heads", seed=True)
    dataset: str = option("features", "name of the data in the report", cli=False)
    plot: bool = option(True, "write leakage.png", flag="--no-plot")

    def __post_init__(self) -> None:
        validate(self)


def _split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train (50%), validation (25%) and test (25%) indices, stratified by class."""
    rng = np.random.default_rng([seed, 7])
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a, b = len(idx) // 2, (3 * len(idx)) // 4
        for part, sl in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            part.append(sl)
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def run(features: Any, labels: Any, config: KsLeakageConfig | None = None, *,
        out_dir: str | Path | None = None, progress: Callable[[str], Any] | None = None,
        **overrides: Any) -> KsLeakageResult:
    """Run the leakage experiment; optionally write ``leakage.json`` and ``leakage.png``.

    Parameters
    ----------
    features : array [N, D] or [N, A, D] float
        Fixed features (the first query view is used).
    labels : array [N] int
    config : KsLeakageConfig, optional
        The options (default: ``KsLeakageConfig()``); ``overrides`` replace its fields.
        A model that has seen few examples (``train_size``) generalises less, which is
        what the test sees.
    out_dir : path, optional
        Where to write ``leakage.json`` (and ``leakage.png`` with ``config.plot``).
    progress : callable, optional
        Called with a line of text once the models are trained.

    Returns
    -------
    KsLeakageResult
        The report: per s, the p-values, their median and the detection rate at alpha
        with its interval; the false-positive check at s = 0; the source-assignment curve.

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.studies import ks_leakage
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 80); x = rng.normal(size=(240, 6)) + y[:, None]
    >>> r = ks_leakage.run(x, y, shots=[0, 10], seeds=4, train_size=60)
    >>> [row["shots"] for row in r["rows"]], len(r["rows"][0]["pvalues"])
    ([0, 10], 4)
    """
    cfg = resolve(KsLeakageConfig, config, overrides)
    from miakit import ks, metrics, shadow, signals

    shots, seeds, alpha, head = cfg.shots, cfg.seeds, cfg.alpha, cfg.head
    train_size, signal, seed, dataset = cfg.train_size, cfg.signal, cfg.seed, cfg.dataset
    t0 = time.perf_counter()
    x = np.asarray(features, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, 0, :]
    y = np.asarray(labels)
    if x.ndim != 2 or y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
        raise ValueError(f"features, labels: expected [N, D] features and N integer labels, "
                         f"got shapes {np.shape(features)} and {np.shape(labels)}")
    s_list = sorted(set(shots))
    train, val, test = _split(y, seed)
    classes = np.unique(y)
    per_class_test = min(int((y[test] == c).sum()) for c in classes)
    if train_size > len(train):
        raise ValueError(f"train_size: expected 1 to {len(train)} examples (the train part), "
                         f"got {train_size}")
    if not s_list or s_list[0] < 0 or s_list[-1] > per_class_test:
        raise ValueError(f"shots: expected values in [0, {per_class_test}] (test examples "
                         f"of the smallest class), got {list(s_list)}")
    n = len(y)
    models = [(s, r) for s in s_list for r in range(seeds)]
    if len(models) % 2:
        models.append(models[-1])  # heads train in pairs; the duplicate is dropped below
    keep = np.zeros((len(models), n), dtype=bool)
    splits = []
    for k, (s, r) in enumerate(models):
        # every model has its own split: over seeds, a split's own luck averages out,
        # so at s = 0 the detection rate estimates the test's false-positive rate
        tr, va, te = _split(y, seed * 100003 + r)
        rng = np.random.default_rng([seed, s, r])
        keep[k, rng.choice(tr, size=int(train_size), replace=False)] = True
        if s:
            keep[k, np.concatenate([rng.choice(te[y[te] == c], size=s, replace=False)
                                    for c in classes])] = True
        splits.append((va, te))
    kw: dict[str, Any] = ({"hidden": 128, "epochs": 200, "lr": 3e-3, "weight_decay": 0.0}
                          if head == "mlp" else {})
    logits = shadow.train_heads(x, y, keep, head=head, seed=seed, progress=False, **kw)
    z0 = logits[:, :, 0, :]
    conf = np.asarray(signals.confidence(z0, y[None, :]) if signal == "confidence"
                      else signals.max_confidence(z0), dtype=np.float64)  # [K, N]
    t_train = time.perf_counter() - t0
    if progress is not None:
        progress(f"{len(models)} models trained in {t_train:.1f} s")
    rows = []
    for s in s_list:
        ks_idx = [k for k, (s_, r) in enumerate(models[: len(s_list) * seeds]) if s_ == s]
        tests = [ks.leakage_test(conf[k, splits[k][0]], conf[k, splits[k][1]], alpha)
                 for k in ks_idx]
        p = np.array([t.pvalue for t in tests])
        detected = int((p < alpha).sum())
        lo, hi = metrics.clopper_pearson(detected, len(p))
        rows.append({"shots": s, "moved_examples": s * len(classes), "pvalues": p.tolist(),
                     "median_pvalue": float(np.median(p)), "detected": detected,
                     "detection_rate": detected / len(p), "detection_ci": [lo, hi],
                     "median_statistic": float(np.median([t.statistic for t in tests]))})
    first = 0  # the first model of the smallest s: its training vs held-out confidences
    own = np.flatnonzero(keep[first])
    held = splits[first][0]
    src = ks.source_accuracy(conf[first, own], conf[first, held],
                             sizes=[m for m in (1, 2, 5, 10, 20, 50, 100)
                                    if m <= min(len(own), len(held)) // 2], n_trials=1000,
                             seed=seed)
    zero = next((row for row in rows if row["shots"] == 0), None)
    report = {"dataset": dataset, "alpha": alpha, "head": head, "seeds": seeds,
              "split": {"train": int(len(train)), "validation": int(len(val)),
                        "test": int(len(test)), "train_size": int(train_size),
                        "per_model": "each model draws its own split"},
              "signal": ("true-class softmax probability" if signal == "confidence"
                         else "max softmax probability"), "rows": rows,
              "false_positive_check": None if zero is None else {
                  "detection_rate": zero["detection_rate"], "ci": zero["detection_ci"],
                  "within_alpha": bool(zero["detection_ci"][0] <= alpha)},
              "source_assignment": {**src, "sources": "one model's confidences on its "
                                                      "training examples vs on validation "
                                                      "examples"},
              "timing_s": {"training": round(t_train, 3),
                           "total": round(time.perf_counter() - t0, 3)}}
    result = KsLeakageResult(report)
    if out_dir is not None:
        result.write(out_dir, plot=cfg.plot)
    return result


def leakage_experiment(features: Any, labels: Any, out_dir: str | Path | None = None,
                       **options: Any) -> KsLeakageResult:
    """:func:`run` with the options as keywords.

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.studies.ks_leakage import leakage_experiment
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 80); x = rng.normal(size=(240, 6)) + y[:, None]
    >>> r = leakage_experiment(x, y, shots=[0, 10], seeds=2, train_size=60, plot=False)
    >>> r["seeds"]
    2
    """
    return run(features, labels, KsLeakageConfig(**options), out_dir=out_dir)


class KsLeakageResult(StudyResult):
    """The K-S leakage report (``leakage.json``).

    Examples
    --------
    >>> from miakit.studies.ks_leakage import KsLeakageResult
    >>> r = KsLeakageResult({"dataset": "d", "seeds": 2, "head": "linear", "alpha": 0.05,
    ...      "split": {"train_size": 50}, "signal": "true-class softmax probability",
    ...      "rows": [], "false_positive_check": None,
    ...      "source_assignment": {"sizes": [1], "accuracy": [0.5]}})
    >>> print(r.summary().splitlines()[-1])
    source assignment (training vs held-out confidences): m=1 50%
    """

    name = "leakage"

    def summary(self) -> str:
        """What ``miakit leakage`` prints: a line per s and the source assignment."""
        r = self._report
        lines = [f"miakit leakage: {r['dataset']}, {r['seeds']} {r['head']} models per s "
                 f"(each its own split, {r['split']['train_size']} training examples), K-S "
                 f"on the {r['signal']}, alpha {r['alpha']:g}",
                 f"{'s':>3}  {'moved':>5}  {'median p':>10}  {'detected':>8}  rate [95% CI]"]
        for row in r["rows"]:
            lo, hi = row["detection_ci"]
            lines.append(
                f"{row['shots']:>3}  {row['moved_examples']:>5}  "
                f"{row['median_pvalue']:>10.3g}  {row['detected']:>4}/{len(row['pvalues']):<3}  "
                f"{100 * row['detection_rate']:.0f}% [{100 * lo:.0f}%, {100 * hi:.0f}%]")
        fp = r["false_positive_check"]
        if fp is not None:
            lines.append(f"s = 0 (nothing leaked): detection rate "
                         f"{100 * fp['detection_rate']:.0f}%, "
                         f"{'consistent with' if fp['within_alpha'] else 'ABOVE'} alpha")
        sa = r["source_assignment"]
        lines.append("source assignment (training vs held-out confidences): " + ", ".join(
            f"m={m} {100 * a:.0f}%" for m, a in zip(sa["sizes"], sa["accuracy"])))
        return "\n".join(lines + self._files_line())

    def _draw(self, path: Path) -> None:
        """P-values against s (log scale) with the detection rates, and the
        source-assignment accuracy against the number of values."""
        report = self._report
        fig, (ax, ax2) = subplots(1, 2, figsize=(10, 4), dpi=110)
        rows = report["rows"]
        xs = np.arange(len(rows))
        for i, row in enumerate(rows):
            p = np.maximum(row["pvalues"], 1e-300)
            ax.scatter(np.full(len(p), i) + np.linspace(-0.15, 0.15, len(p)), p, s=8,
                       color="tab:blue", alpha=0.5)
        ax.plot(xs, [max(r["median_pvalue"], 1e-300) for r in rows], "o-", color="tab:red",
                label="median p-value")
        ax.axhline(report["alpha"], ls="--", color="grey", label=f"alpha = {report['alpha']:g}")
        ax.set_yscale("log")
        ax.set_xticks(xs, [f"{r['shots']}\n({100 * r['detection_rate']:.0f}%)" for r in rows])
        ax.set_xlabel("test examples per class moved into training\n(detection rate)")
        ax.set_ylabel("K-S p-value, validation vs test confidences")
        ax.legend(fontsize=8)
        sa = report["source_assignment"]
        ax2.plot(sa["sizes"], sa["accuracy"], "o-")
        ax2.set_xscale("log")
        ax2.set_xlabel("values in the set (m)")
        ax2.set_ylabel("accuracy of assigning the set to its source")
        ax2.set_title("training vs held-out confidences of one model", fontsize=9)
        ax2.axhline(0.5, ls=":", color="grey")
        ax2.grid(True, alpha=0.3)
        fig.suptitle(f"{report['dataset']}: test-set leakage detected by the K-S test "
                     f"({report['seeds']} models per point)", fontsize=10)
        fig.tight_layout()
        save_figure(fig, path)
