"""The audit: attack every shadow model of a run and report how much membership leaks.

Every model of the run is the target once, attacked with the statistics of the other
M - 1 models (leave-one-out), by

- LiRA online (IN and OUT Gaussians of the scaled confidence, ``mk.lira``),
- LiRA offline (OUT Gaussian only, one-sided test),
- the loss threshold baseline (score = -cross-entropy, averaged over query views).

Members are the ``keep`` entries of the target, so each attack is judged on M x N
(target, example) pairs. For each attack the report gives the AUC and the TPR at FPR
1e-1, 1e-2 and 1e-3 with the achieved FPR, the counts behind both rates and
Clopper-Pearson intervals (``mk.metrics.tpr_at_fpr``).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from miakit import lira, metrics, signals

__all__ = ["audit", "run_attacks", "summarize", "plot_roc", "ATTACKS", "DEFAULT_FPRS"]

DEFAULT_FPRS = (1e-1, 1e-2, 1e-3)
ATTACKS = {
    "lira_online": "LiRA online",
    "lira_offline": "LiRA offline",
    "loss": "Loss threshold",
}
_ROC_POINTS = 60


def run_attacks(logits: Any, keep: np.ndarray, labels: np.ndarray, *,
                variance: str = "per_example") -> dict[str, dict[str, Any]]:
    """Leave-one-out scores ``[M, N]`` of every attack, with their settings.

    Parameters
    ----------
    logits : array [M, N, A, C]
        Shadow logits (a memory-mapped ``run.logits()`` streams from disk).
    keep : array [M, N] bool
    labels : array [N] int
    variance : {"per_example", "global"}
        LiRA's spread estimate (``"global"`` is recommended below 64 models).

    Returns
    -------
    dict
        ``{name: {"scores": [M, N] float64, "settings": dict, "clamped": int}}``;
        scores are NaN where LiRA had no IN or no OUT model for an example.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import run_attacks
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 30, seed=0)
    >>> y = rng.integers(0, 3, 30)
    >>> z = rng.normal(size=(8, 30, 1, 3)).astype(np.float32)
    >>> sorted(run_attacks(z, keep, y))
    ['lira_offline', 'lira_online', 'loss']
    """
    out: dict[str, dict[str, Any]] = {}
    for name, mode in (("lira_online", "online"), ("lira_offline", "offline")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", lira.ClampedSpreadWarning)
            scores = lira.leave_one_out(logits, keep, mode=mode, offline="one_sided",
                                        center="median", variance=variance, labels=labels,
                                        on_empty="nan")
        clamped = sum(_clamped_count(w.message) for w in caught
                      if issubclass(w.category, lira.ClampedSpreadWarning))
        out[name] = {"scores": np.asarray(scores, dtype=np.float64), "clamped": clamped,
                     "settings": {"mode": mode, "offline": "one_sided" if mode == "offline"
                                  else None, "center": "median", "variance": variance,
                                  "signal": "scaled_confidence", "targets": "leave-one-out"}}
    loss = np.asarray(signals.loss(logits, np.asarray(labels)[:, None]), dtype=np.float64)
    out["loss"] = {"scores": -loss.mean(axis=-1), "clamped": 0,
                   "settings": {"score": "-cross_entropy, mean over query views",
                                "targets": "every model"}}
    return out


GRAD_NORM_DEFINITION = (
    "norm of the per-example loss gradient with respect to the logits, "
    "||softmax(z) - e_y||_2, first query view, mean over the models that trained on the "
    "example; it is the output-layer factor of every parameter gradient (for a linear head "
    "the full gradient norm is this times sqrt(||x||^2 + 1)). The run stores logits, not "
    "weights, so parameter gradient norms and input curvature need the model: "
    "miakit.gradients.per_example_norms and miakit.curvature.hutchinson_trace."
)


def vulnerability(logits: Any, keep: np.ndarray, labels: np.ndarray,
                  lira_scores: np.ndarray, *, variance: str = "per_example",
                  fpr: float = 1e-3) -> Any:
    """Per-example risk table of a run: LiRA vulnerability, memorization, gradient norm,
    Hellinger distance and shadow models needed, with their Spearman correlations.

    Parameters
    ----------
    logits : array [M, N, A, C]
    keep : array [M, N] bool
    labels : array [N] int
    lira_scores : array [M, N]
        Leave-one-out LiRA scores of every model (from :func:`run_attacks`).
    variance : {"per_example", "global"}
        Spread of the LiRA fit behind the Hellinger distances.
    fpr : float
        FPR budget of the per-example TPR proxy.

    Returns
    -------
    miakit.report.VulnerabilityTable

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import run_attacks, vulnerability
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 30, seed=0)
    >>> y = rng.integers(0, 3, 30)
    >>> z = rng.normal(size=(8, 30, 1, 3)).astype(np.float32)
    >>> s = run_attacks(z, keep, y)["lira_online"]["scores"]
    >>> t = vulnerability(z, keep, y, s)
    >>> "memorization" in t.columns and "grad_norm" in t.columns
    True
    """
    from miakit import memorization, report

    labels = np.asarray(labels)
    first_view = logits[:, :, 0, :]
    mem = memorization.feldman_zhang(signals.correct(first_view, labels), keep)
    fit = lira.fit(logits, keep, labels=labels, variance=variance)
    n_classes = first_view.shape[-1]
    grad = np.zeros(keep.shape, dtype=np.float64)
    onehot = np.eye(n_classes)[labels]
    for m in range(keep.shape[0]):  # one model at a time: memory O(N C)
        z = np.asarray(first_view[m], dtype=np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad[m] = np.linalg.norm(p - onehot, axis=1)
    n_in = keep.sum(axis=0)
    grad_in = np.where(n_in > 0, (grad * keep).sum(axis=0) / np.maximum(n_in, 1), np.nan)
    table = report.vulnerability_table(lira_scores=lira_scores, membership=keep,
                                       memorization=mem, grad_norms=grad_in, fit=fit,
                                       fpr=fpr)
    table.meta["grad_norm_definition"] = GRAD_NORM_DEFINITION
    return table


def _clamped_count(message: Warning) -> int:
    try:
        return int(str(message).split()[0])
    except (ValueError, IndexError):
        return 0


def _evaluate(scores: np.ndarray, members: np.ndarray, fprs: tuple[float, ...],
              level: float) -> dict[str, Any]:
    ok = np.isfinite(scores)
    s, y = scores[ok], members[ok]
    fpr, tpr, _ = metrics.roc(s, y)
    n_neg = int((~y).sum())
    points = []
    for f in fprs:
        r = metrics.tpr_at_fpr(s, y, fpr=f, level=level)
        points.append({"target_fpr": f, "tpr": r.tpr, "fpr": r.fpr, "tp": r.tp, "fp": r.fp,
                       "n_members": r.n_pos, "n_nonmembers": r.n_neg, "tpr_ci": list(r.ci),
                       "fpr_ci": list(r.fpr_ci),
                       "threshold": r.threshold if math.isfinite(r.threshold) else None,
                       "resolvable": r.resolvable})
    # TPR at FPR <= g on a log grid: the last ROC point whose false-positive count fits,
    # compared in exact integer counts as tpr_at_fpr does.
    grid = np.geomspace(1.0 / n_neg, 1.0, _ROC_POINTS)
    fp_counts = np.round(fpr * n_neg)
    idx = np.searchsorted(fp_counts, np.floor(grid * n_neg + 1e-6), side="right") - 1
    roc_t = tpr[idx]
    return {"auc": metrics.auc(s, y), "n_members": int(y.sum()), "n_nonmembers": n_neg,
            "excluded": int((~ok).sum()), "tpr_at_fpr": points,
            "roc": {"fpr": grid.tolist(), "tpr": roc_t.tolist()}, "_curve": (fpr, tpr)}


def _model_quality(logits: Any, keep: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    z = logits[:, :, 0, :]  # the first (identity) view
    correct = np.asarray(signals.correct(z, labels[None, :]))
    loss = np.asarray(signals.loss(z, labels[None, :]), dtype=np.float64)
    return {"train_accuracy": float(correct[keep].mean()),
            "test_accuracy": float(correct[~keep].mean()),
            "train_loss": float(loss[keep].mean()), "test_loss": float(loss[~keep].mean())}


def audit(run: Any, out_dir: str | Path | None = None, *, fprs: tuple[float, ...] = DEFAULT_FPRS,
          variance: str = "auto", level: float = 0.95, plot: bool = True,
          extra: dict | None = None) -> dict[str, Any]:
    """Attack every model of a finished run; optionally write report.json and roc.png.

    Parameters
    ----------
    run : miakit.shadow.Run
        A complete run (see :func:`miakit.shadow.open_run`).
    out_dir : path, optional
        Where to write ``report.json`` and ``roc.png`` (created if needed).
    fprs : tuple of float
        False-positive budgets of the TPR table.
    variance : {"auto", "per_example", "global"}
        LiRA's spread; "auto" is "global" below 64 models, else "per_example".
    level : float
        Confidence level of the Clopper-Pearson intervals.
    plot : bool
        Write ``roc.png`` (needs matplotlib).
    extra : dict, optional
        Merged into the report (e.g. training time).

    Returns
    -------
    dict
        The report (what ``report.json`` holds).

    Examples
    --------
    >>> import numpy as np, tempfile, miakit as mk
    >>> from miakit.audit import audit
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 40)
    >>> x = rng.normal(size=(40, 3)) + y[:, None]
    >>> keep = mk.shadow.balanced_keep(8, 40, seed=0)
    >>> d = tempfile.mkdtemp()
    >>> _ = mk.shadow.train_heads(x, y, keep, run_dir=d + "/run", progress=False)
    >>> report = audit(mk.shadow.open_run(d + "/run"), plot=False)
    >>> sorted(report["attacks"])
    ['lira_offline', 'lira_online', 'loss']
    """
    t0 = time.perf_counter()
    if variance not in ("auto", "per_example", "global"):
        raise ValueError(f"variance: expected 'auto', 'per_example' or 'global', "
                         f"got {variance!r}")
    if run.n_models < 4:
        raise ValueError(f"run {run.path}: leave-one-out LiRA needs at least 4 shadow models, "
                         f"the run has {run.n_models}")
    logits = run.logits()
    keep, labels = run.keep, run.labels
    var = ("global" if run.n_models < 64 else "per_example") if variance == "auto" else variance
    attacks = run_attacks(logits, keep, labels, variance=var)
    results = {}
    for name, a in attacks.items():
        res = _evaluate(a["scores"], keep, tuple(fprs), level)
        res.update(label=ATTACKS[name], settings=a["settings"], clamped_std=a["clamped"])
        results[name] = res
    from miakit import __version__

    report = {
        "miakit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": {"path": str(run.path), "n_models": run.n_models,
                "n_examples": run.n_examples, "n_augmentations": run.n_augmentations,
                "n_classes": run.n_classes, "logits_dtype": str(run.logits_dtype),
                "config": run.config, "metadata": run.meta.get("metadata", {}),
                "fingerprint": run.meta.get("fingerprint", {})},
        "models": _model_quality(logits, keep, labels),
        "evaluation": {"protocol": "each model is the target once, attacked with the "
                                   "statistics of the other models (leave-one-out)",
                       "fprs": list(fprs), "confidence_level": level},
        "attacks": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
                    for k, v in results.items()},
    }
    table = vulnerability(logits, keep, labels, attacks["lira_online"]["scores"],
                          variance=var, fpr=min(fprs))
    report["vulnerability"] = table.to_dict(per_example=False)
    report.update(extra or {})
    report.setdefault("timing_s", {})["attacks"] = round(time.perf_counter() - t0, 3)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"report": str(out / "report.json"),
                 "vulnerability": str(table.to_csv(out / "vulnerability.csv"))}
        if plot:
            from miakit.report import save_plots

            plot_roc(results, out / "roc.png", title=_title(report))
            files["roc"] = str(out / "roc.png")
            for path in save_plots(table, out):
                files[path.stem] = str(path)
        report["files"] = files
        from miakit.shadow._files import write_json

        write_json(out / "report.json", report, "the audit report")
    return report


def _model_name(config: dict) -> str:
    if config.get("head") == "mlp":
        return f"MLP head, {config.get('hidden')} hidden units"
    if config.get("head") == "linear":
        return "linear head"
    return str(config.get("model_factory", "model")).rsplit(".", 1)[-1]


def _title(report: dict) -> str:
    r = report["run"]
    name = r["metadata"].get("dataset", "run")
    return (f"{name}: {r['n_models']} shadow models ({_model_name(r['config'])}), "
            f"{r['n_examples']} examples")


def plot_roc(results: dict[str, dict], path: str | Path, title: str = "") -> None:
    """A log-log ROC plot of every attack, down to FPR = 1 / (number of non-members).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from miakit.audit import plot_roc
    >>> fpr = np.array([0.0, 0.01, 0.1, 1.0]); tpr = np.array([0.0, 0.05, 0.3, 1.0])
    >>> res = {"a": {"label": "A", "auc": 0.7, "n_nonmembers": 100, "_curve": (fpr, tpr)}}
    >>> plot_roc(res, tempfile.mkdtemp() + "/roc.png")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=120)
    n_neg = max(r["n_nonmembers"] for r in results.values())
    lo = 1.0 / n_neg
    for r in results.values():
        fpr, tpr = r["_curve"]
        low = next((p for p in r.get("tpr_at_fpr", []) if p["target_fpr"] == 1e-3), None)
        extra = f", TPR {100 * low['tpr']:.1f}% @ 0.1%" if low else ""
        ax.step(np.maximum(fpr, lo), np.maximum(tpr, lo), where="post",
                label=f"{r['label']} (AUC {r['auc']:.3f}{extra})")
    ax.plot([lo, 1], [lo, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.001 else f"{100 * x:.2f}%"


def summarize(report: dict) -> str:
    """A human-readable summary of an audit report (what ``miakit audit`` prints).

    Examples
    --------
    >>> from miakit.audit import summarize
    >>> rep = {"run": {"n_models": 4, "n_examples": 10, "n_augmentations": 1,
    ...                "n_classes": 2, "config": {"head": "linear"}, "metadata": {}},
    ...        "models": {"train_accuracy": 1.0, "test_accuracy": 0.9},
    ...        "evaluation": {"confidence_level": 0.95}, "attacks": {}}
    >>> "shadow models" in summarize(rep)
    True
    """
    r, q = report["run"], report["models"]
    name = r["metadata"].get("dataset", "run")
    model = _model_name(r["config"])
    lines = [f"miakit audit: {name}, {r['n_models']} shadow models ({model}), "
             f"{r['n_examples']} examples x {r['n_augmentations']} query "
             f"view{'s' if r['n_augmentations'] != 1 else ''}, "
             f"{r['n_classes']} classes",
             f"shadow models: train accuracy {_pct(q['train_accuracy'])}, test accuracy "
             f"{_pct(q['test_accuracy'])} (mean over models; members vs non-members)"]
    attacks = report["attacks"]
    if attacks:
        first = next(iter(attacks.values()))
        lines.append(f"each model attacked with the other {r['n_models'] - 1}: "
                     f"{first['n_members']:,} member and {first['n_nonmembers']:,} non-member "
                     "pairs per attack")
        fprs = [p["target_fpr"] for p in first["tpr_at_fpr"]]
        head = ["attack", "AUC"] + [f"TPR @ FPR {100 * f:g}%" for f in fprs]
        rows = []
        for a in attacks.values():
            cells = [a["label"], f"{a['auc']:.3f}"]
            for p in a["tpr_at_fpr"]:
                lo, hi = p["tpr_ci"]
                mark = "" if p["resolvable"] else "*"
                cells.append(f"{_pct(p['tpr'])} [{_pct(lo)}, {_pct(hi)}]{mark}")
            rows.append(cells)
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
        lines.append("")
        for row in [head, *rows]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        level = report["evaluation"]["confidence_level"]
        lines.append("")
        lines.append(f"TPR: share of members caught at the largest threshold whose FPR is at "
                     f"most the target; [{100 * level:.0f}% Clopper-Pearson interval].")
        if any(not p["resolvable"] for a in attacks.values() for p in a["tpr_at_fpr"]):
            lines.append("*: fewer non-members than 1/FPR; the point only means zero false "
                         "positives.")
        best = max(attacks.values(), key=lambda a: a["auc"])
        verdict = ("no measurable leakage" if best["auc"] < 0.52 else
                   "measurable membership leakage")
        lines.append(f"verdict: {verdict} (best AUC {best['auc']:.3f}, {best['label']}); "
                     "chance is AUC 0.5 and TPR = FPR.")
    vul = report.get("vulnerability")
    if vul and vul.get("spearman"):
        col = "tpr_at_fpr" if "tpr_at_fpr" in vul["spearman"] else vul["columns"][0]
        rho = vul["spearman"][col]
        parts = [f"{c} {rho[c]:+.2f}" for c in ("memorization", "grad_norm", "hellinger")
                 if rho.get(c) is not None]
        if parts:
            lines.append(f"per-example risk: Spearman correlation of LiRA's per-example "
                         f"{col} with " + ", ".join(parts))
    files = report.get("files")
    if files:
        lines.append("wrote " + ", ".join(str(v) for v in files.values()))
    return "\n".join(lines)


def load_report(path: str | Path) -> dict:
    """Read a report.json written by :func:`audit`.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> from miakit.audit import load_report
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "report.json"
    >>> _ = p.write_text(json.dumps({"attacks": {}}))
    >>> load_report(p)
    {'attacks': {}}
    """
    return json.loads(Path(path).read_text())
