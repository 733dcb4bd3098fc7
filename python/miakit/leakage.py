"""The K-S leakage experiment behind ``miakit leakage`` (Sablayrolles et al. 2018, Table 1;
docs/methods/ks.md).

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

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit._plotting import subplots
from miakit._validation import check_choice, check_int, check_probability
from miakit.io import save_figure, write_report

__all__ = ["leakage_experiment", "DEFAULT_SHOTS"]

DEFAULT_SHOTS = (0, 1, 2, 5, 10, 20)


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


def leakage_experiment(features: Any, labels: Any, out_dir: str | Path | None = None, *,
                       shots: Sequence[int] = DEFAULT_SHOTS, seeds: int = 20,
                       alpha: float = 0.05, head: str = "linear", train_size: int = 200,
                       signal: str = "confidence", seed: int = 0,
                       dataset: str = "features", plot: bool = True) -> dict[str, Any]:
    """Run the leakage experiment; optionally write ``leakage.json`` and ``leakage.png``.

    Parameters
    ----------
    features : array [N, D] or [N, A, D] float
        Fixed features (the first query view is used).
    labels : array [N] int
    out_dir : path, optional
    shots : sequence of int
        Examples per class moved from the test part into training (0: none).
    seeds : int
        Models per value of s (each its own training subsample and moved examples).
    alpha : float
        Level of the K-S test.
    head : {"linear", "mlp"}
        The classifier.
    train_size : int
        Examples each model trains on from the train part (besides the moved ones): a
        model that has seen few examples generalises less, which is what the test sees.
    signal : {"confidence", "max_confidence"}
        The true class's softmax probability (the test set's owner has its labels), or the
        largest softmax probability (needs no label, and misses confidently wrong
        answers).
    seed : int
    dataset : str
        Name for the report.
    plot : bool

    Returns
    -------
    dict
        The report.

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.leakage import leakage_experiment
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), 80); x = rng.normal(size=(240, 6)) + y[:, None]
    >>> r = leakage_experiment(x, y, shots=[0, 10], seeds=4, train_size=60, plot=False)
    >>> [row["shots"] for row in r["rows"]], len(r["rows"][0]["pvalues"])
    ([0, 10], 4)
    """
    from miakit import ks, metrics, shadow, signals

    t0 = time.perf_counter()
    x = np.asarray(features, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, 0, :]
    y = np.asarray(labels)
    if x.ndim != 2 or y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
        raise ValueError(f"features, labels: expected [N, D] features and N integer labels, "
                         f"got shapes {np.shape(features)} and {np.shape(labels)}")
    check_probability(alpha, "alpha")
    check_int(seeds, "seeds", 1, what="a positive int")
    check_choice(signal, "signal", ["confidence", "max_confidence"])
    s_list = sorted({int(s) for s in shots})
    train, val, test = _split(y, seed)
    classes = np.unique(y)
    per_class_test = min(int((y[test] == c).sum()) for c in classes)
    check_int(train_size, "train_size", 1, len(train),
              what=f"1 to {len(train)} examples (the train part)")
    if not s_list or s_list[0] < 0 or s_list[-1] > per_class_test:
        raise ValueError(f"shots: expected values in [0, {per_class_test}] (test examples "
                         f"of the smallest class), got {list(shots)}")
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
    kw = {"hidden": 128, "epochs": 200, "lr": 3e-3, "weight_decay": 0.0} if head == "mlp" \
        else {}
    logits = shadow.train_heads(x, y, keep, head=head, seed=seed, progress=False, **kw)
    z0 = logits[:, :, 0, :]
    conf = np.asarray(signals.confidence(z0, y[None, :]) if signal == "confidence"
                      else signals.max_confidence(z0), dtype=np.float64)  # [K, N]
    t_train = time.perf_counter() - t0
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
    if out_dir is not None:
        write_report(out_dir, "leakage", report, plot_leakage if plot else None)
    return report


def plot_leakage(report: dict, path: str | Path) -> None:
    """P-values against s (log scale) with the detection rates, and the source-assignment
    accuracy against the number of values."""

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
