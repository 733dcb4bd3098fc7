"""The audit's driver: attack every model of a finished run and write its report.

:func:`audit` streams the run's model files once (one model's logits in memory at a
time), runs the attacks (:mod:`miakit.audit.attacks`) and evaluates each as soon as its
scores exist (:mod:`miakit.audit.evaluation`), adds the per-example table
(:mod:`miakit.audit.per_example`), and writes ``report.json``, ``report.html``
(:mod:`miakit.audit.page`), ``vulnerability.csv`` and the figures. Also here: what the
report says of the references (:func:`references_info`), the shadow models' quality, the
run's stored heads, and :func:`load_report`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit import _progress
from miakit.audit.attacks import (
    ATTACKS,
    _attack_names,
    _baselines,
    curvature_attack,
    iter_attacks,
    run_attacks,
)
from miakit.audit.evaluation import (
    DEFAULT_FPRS,
    DP_DELTA,
    _evaluate_attack,
    privacy_summary,
    strongest,
    verdict,
)
from miakit.audit.options import AuditConfig
from miakit.audit.page import write_html
from miakit.audit.per_example import _head_kind, head_matrices, vulnerability
from miakit.audit.report import AttackResult, AuditReport, RunInfo, _check_output_path
from miakit.audit.text import _title

__all__ = ["audit", "references_info", "load_report"]


def _model_quality(correct: np.ndarray | None, loss: np.ndarray | None, keep: np.ndarray
                   ) -> dict[str, float | None]:
    """Accuracy and loss of the models on members and non-members (None where the run
    holds no logits to give them)."""
    def means(x: np.ndarray | None) -> tuple[float | None, float | None]:
        return (None, None) if x is None else (float(x[keep].mean()), float(x[~keep].mean()))

    (tr_acc, te_acc), (tr_loss, te_loss) = means(correct), means(loss)
    return {"train_accuracy": tr_acc, "test_accuracy": te_acc, "train_loss": tr_loss,
            "test_loss": te_loss}


def audit(run: Any, out_dir: str | Path | None = None, *, fprs: tuple[float, ...] = DEFAULT_FPRS,
          variance: str = "auto", references: str = "balanced", level: float = 0.95,
          alpha: float = 0.05, attacks: Sequence[str] | None = None,
          dp_epsilon: float | None = None, dp_delta: float = DP_DELTA, plot: bool = True,
          extra: dict | None = None) -> AuditReport:
    """Attack every model of a finished run; optionally write the report and figures.

    Parameters
    ----------
    run : miakit.shadow.Run
        A complete run (see :func:`miakit.shadow.open_run`).
    out_dir : path, optional
        Where to write (created if needed) ``report.json``, the same as one self-contained
        page ``report.html`` (:func:`miakit.audit.to_html`), ``vulnerability.csv`` and,
        with ``plot``, the figures ``roc.png`` and ``vulnerability_vs_*.png``.
    fprs : tuple of float
        False-positive budgets of the TPR table.
    variance : {"auto", "per_example", "global"}
        LiRA's spread; "auto" is "global" below 64 models, else "per_example".
    references : {"balanced", "all"}
        Leave-one-out references (see :func:`run_attacks`); the report's
        ``evaluation.references`` says which rule was used and whether the keep matrix
        is paired.
    level : float
        Confidence level of the intervals (Clopper-Pearson, cluster-robust over examples).
    alpha : float
        Family-wise error rate of the leakage verdict (:func:`verdict`).
    attacks : sequence of str, optional
        Names from :data:`ATTACKS` (default: all).
    dp_epsilon : float, optional
        The (epsilon, ``dp_delta``)-DP guarantee the models claim (e.g. DP-SGD's
        accountant): the ROC plot shows the TPR it allows, and the report says whether
        every attack's empirical epsilon lower bound is consistent with it.
    dp_delta : float
        The delta of the claim and of the empirical epsilon bounds.
    plot : bool
        Write ``roc.png`` (needs matplotlib).
    extra : dict, optional
        Merged into the report (e.g. training time).

    Returns
    -------
    AuditReport
        The report; ``report.json`` holds its :meth:`AuditReport.to_dict`.

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
    >>> list(report["attacks"]) == list(mk.audit.ATTACKS)
    True
    """
    t0 = time.perf_counter()
    # every option checked against its one declaration (miakit.audit.options)
    cfg = AuditConfig(fprs=fprs, variance=variance, references=references, level=level,
                      alpha=alpha, attacks=None if attacks is None else tuple(attacks),
                      dp_epsilon=dp_epsilon, dp_delta=dp_delta, plot=plot)
    if out_dir is not None:  # a bad folder fails before the work, not after it
        _check_output_path(out_dir, "out_dir", folder=True)
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"extra: expected a mapping of further report fields, got "
                        f"{type(extra).__name__}")
    fprs, variance, references, level, alpha, dp_epsilon, dp_delta = (
        cfg.fprs, cfg.variance, cfg.references, cfg.level, cfg.alpha, cfg.dp_epsilon,
        cfg.dp_delta)
    if run.n_models < 4:
        raise ValueError(f"run {run.path}: leave-one-out LiRA needs at least 4 shadow models, "
                         f"the run has {run.n_models}")
    run.require_finished()  # every model, or an error listing the missing ones
    keep, labels = run.keep, run.labels
    if not keep.any():
        raise ValueError(f"run {run.path}: its models never trained on these examples "
                         "(offline-only references), so no model has members to attack; "
                         "audit your target model against them: mk.audit.audit_target, or "
                         "miakit audit --run RUN --target-logits T.npy --target-keep K.npy")
    var = ("global" if run.n_models < 64 else "per_example") if variance == "auto" else variance
    want = list(ATTACKS) if attacks is None else list(attacks)
    curvature_wanted = "lira_curvature" in want
    others = [a for a in want if a != "lira_curvature"]
    if others:
        _attack_names(others)  # unknown names fail before any work
    from miakit import _audit_signals as sig

    if run.signal is not None:  # a run that kept one signal per example, not logits
        available = sig.StoredSignals.ATTACKS[run.signal]
        missing = [a for a in others if a not in available]
        if missing and attacks is not None:
            raise ValueError(f"attacks: {missing} need the logits; run {run.path} holds only "
                             f"{run.signal} values (available: {list(available)})")
        others = [a for a in others if a in available]
        want = [a for a in want if a in available or a == "lira_curvature"]
    features, params, reason = _stored_heads(run)
    _progress.phase(f"audit of {run.n_models} models x {run.n_examples} examples" + (
        ": computing the stored heads' gradient norms and curvature" if params is not None
        else ""))
    # every head's gradient norms and curvature, once: the curvature attack and the
    # per-example table both use them
    heads = head_matrices(features, labels, params, keep.shape) if params is not None \
        else None
    if curvature_wanted and heads is None and attacks is not None:
        # asked for by name: say why it cannot run
        raise ValueError(f"attacks: lira_curvature needs a run of heads with stored "
                         f"parameters and features ({reason})")
    run_curvature = curvature_wanted and heads is not None
    # Each attack is evaluated as soon as its scores exist and its scores are dropped
    # then (all but LiRA online's, which the per-example table needs): the audit holds
    # one attack's [M, N] scores at a time.
    n_tests = (len(others) + run_curvature) * len(fprs)
    fprs = tuple(fprs)
    results: dict[str, AttackResult] = {}
    lira_scores = None
    phase = {"signals": 0.0, "attacks": 0.0, "metrics": 0.0, "per_example_table": 0.0,
             "plots": 0.0, "writing": 0.0}
    _progress.phase("audit: computing signals (one pass over the model files)")
    # Every signal the attacks and the report read, from one pass over the model files:
    # one model's logits in memory at a time, and no stacked copy of them on disk.
    t = time.perf_counter()
    src: sig.StoredSignals | sig.RunSignals
    if run.signal is not None:
        src = sig.StoredSignals(lambda m: run.model_logits(m, verify=False), run.n_models,
                                run.signal)
    else:
        src = sig.RunSignals(lambda m: run.model_logits(m, verify=False), run.n_models,
                             labels, confidence=any(a in others for a in (
                                 "rmia_online", "rmia_offline", "confidence")),
                             scores=("loss",) + tuple(a for a in ("max_confidence", "hinge")
                                                      if a in others))
    mat = None  # the loss threshold baseline: from the loss attack's ranking if it runs
    if "loss" not in others and run.signal != "score":
        from miakit import thresholds

        mat = thresholds.max_accuracy_threshold(-src.score("loss"), keep)
    phase["signals"] = time.perf_counter() - t
    scored = iter_attacks(src, keep, labels, variance=var, references=references,
                          attacks=others) if others else iter(())
    while True:
        t = time.perf_counter()
        name, entry = next(scored, (None, None))
        if run_curvature and name is None and heads is not None:
            name, entry = "lira_curvature", curvature_attack(heads[1], keep, variance=var,
                                                             references=references)
            run_curvature = False
        phase["attacks"] += time.perf_counter() - t
        if name is None or entry is None:
            break
        t = time.perf_counter()
        # (no shared RankWorkspace: it would hold 28 bytes per score between attacks,
        # more memory than the page faults it saves are worth time here)
        results[name] = _evaluate_attack(name, entry, keep, fprs, level, alpha, n_tests,
                                         dp_delta)
        phase["metrics"] += time.perf_counter() - t
        _progress.phase(f"audit: {name} done ({len(results)} of {n_tests // len(fprs)} "
                        "attacks)")
        if name == "lira_online":
            lira_scores = entry["scores"]
        del entry
    results = {name: results[name] for name in want if name in results}
    from miakit import __version__

    correct, loss = src.first_view()
    report = AuditReport(
        miakit_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        run=run_info(run),
        models=_model_quality(correct, loss, keep),
        evaluation={"protocol": "each model is the target once, attacked with the "
                                "statistics of the other models (leave-one-out)",
                    "references": references_info(keep, references),
                    "fprs": list(fprs), "confidence_level": level},
        attacks=results,
        baselines=_baselines(correct, keep, results["loss"].max_accuracy
                             if "loss" in results else mat),
        verdict=verdict(results, alpha),
        strongest_attack=strongest(results, verdict(results, alpha)),
        privacy=privacy_summary(results, dp_epsilon, dp_delta),
    )
    lira_point = None
    if lira_scores is None:
        lira_scores = run_attacks(src, keep, labels, variance=var, references=references,
                                  attacks=["lira_online"])["lira_online"]["scores"]
    else:  # the table's attack threshold is the one the TPR table already found
        lira_point = next(p for p in results["lira_online"].tpr_at_fpr
                          if p["target_fpr"] == min(fprs))
    _progress.phase("audit: per-example table")
    t = time.perf_counter()
    table = vulnerability(src, keep, labels, lira_scores,
                          variance=var, fpr=min(fprs), features=features, params=params,
                          fallback_reason=reason, head_values=heads, lira_point=lira_point)
    report.vulnerability = table.to_dict(per_example=False)
    phase["per_example_table"] = time.perf_counter() - t
    extra = dict(extra or {})
    report.timing_s = dict(extra.pop("timing_s", {}))
    report.extra = extra
    if out_dir is not None:
        out = start_report(out_dir)
        files = {"report": str(out / "report.json"), "html": str(out / "report.html"),
                 "vulnerability": str(table.to_csv(out / "vulnerability.csv"))}
        if plot:
            from miakit.audit.figures import plot_roc as roc_figure
            from miakit.vulnerability import save_plots

            _progress.phase("audit: drawing the figures")
            t = time.perf_counter()
            roc_figure(results, out / "roc.png", title=_title(report),
                       dp=None if dp_epsilon is None else (dp_epsilon, dp_delta))
            files["roc"] = str(out / "roc.png")
            for path in save_plots(table, out,
                                   against=("memorization", "grad_norm", "curvature")):
                files[path.stem] = str(path)
            phase["plots"] = time.perf_counter() - t
        report.files = files
    # the time of each phase, the audit's own, and with the training before it (when the
    # caller timed one) the whole job's
    timing = report.timing_s
    timing.update({k: round(v, 3) for k, v in phase.items()})
    timing["audit"] = round(time.perf_counter() - t0, 3)
    timing["total"] = round(timing.get("training", 0.0) + timing["audit"], 3)
    if out_dir is not None:
        _progress.phase("audit: writing report.html and report.json")
        t = time.perf_counter()
        write_html(report, out / "report.html")  # the same, as a page with the figures
        # report.json last: its presence says that every other file is complete
        report.to_json(out / "report.json")
        timing["writing"] = round(time.perf_counter() - t, 3)  # in the returned report
    return report


def start_report(out_dir: str | Path) -> Path:
    """Create the report folder ``out_dir`` and remove an earlier audit's ``report.json``
    and ``report.html`` from it, durably, before any new file is written.

    The audit writes ``report.json`` last: a folder that holds one holds a complete
    report of one audit, and an audit that is killed or fails midway leaves no
    ``report.json`` beside its partial files (nor an older one describing other files).
    """
    from miakit.io import RunWriteError, fsync_dir

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # report.json first: once it is gone, the folder no longer claims a complete report
    for name in ("report.json", "report.html"):
        path = out / name
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise RunWriteError(exc.errno or 0, f"could not remove the earlier report {path} "
                                f"before writing a new one into {out}: "
                                f"{exc.strerror or exc}", str(path)) from exc
    fsync_dir(out)
    return out


def run_info(run: Any) -> RunInfo:
    """What a report says of the audited (or reference) run."""
    return {"path": str(run.path), "n_models": run.n_models, "n_examples": run.n_examples,
            "n_augmentations": run.n_augmentations, "n_classes": run.n_classes,
            "logits_dtype": str(run.logits_dtype), "config": run.config,
            "metadata": run.meta.get("metadata", {}),
            "fingerprint": run.meta.get("fingerprint", {})}


def references_info(keep: np.ndarray, references: str) -> dict[str, Any]:
    """What the report says of the leave-one-out references: the rule, whether the keep
    matrix is paired, and in words.

    Examples
    --------
    >>> import miakit as mk
    >>> from miakit.audit import references_info
    >>> references_info(mk.shadow.balanced_keep(4, 10), "balanced")["partner"]
    'pair partner (complementary pairs 2i, 2i + 1)'
    """
    from miakit.audit.attacks import _check_references
    from miakit.audit.evaluation import _check_keep_matrix
    from miakit.shadow import is_paired

    keep = _check_keep_matrix(keep)
    references = _check_references(references)
    paired = is_paired(keep)
    if references == "all":
        return {"rule": "all", "paired_keep": paired, "partner": None,
                "description": "the target model only is left out; a member then has one "
                               "IN reference fewer and a non-member one OUT reference "
                               "fewer (biased against members with few models)"}
    partner = ("pair partner (complementary pairs 2i, 2i + 1)" if paired else
               "fixed rule: the pair partner k ^ 1 where it is on the other side, else the "
               "first model after the target, cyclically, that is on the other side")
    return {"rule": "balanced", "paired_keep": paired, "partner": partner,
            "description": "the target and one model from the other side of each example "
                           "are left out, so every example has n_in - 1 IN and n_out - 1 "
                           "OUT references whether or not the target trained on it; the "
                           "model from the other side: " + partner}


def _stored_heads(run: Any) -> tuple[Any, Any, str]:
    """(features, run.model_params, "") when the audit can use the run's stored heads, else
    (None, None, why not)."""
    from miakit.shadow import CorruptModelError

    if not run.has_params:
        k, m = len(run.params_models), len(run.completed)
        if 0 < k < m:
            return None, None, f"only {k} of its {m} models have stored parameters"
        if k and not run.has_features:
            why = run.features_problem or "missing"
            return None, None, f"run has no usable features: {why}"
        return None, None, "run has no parameters"
    if _head_kind(run.model_params(int(run.completed[0]), verify=False)) is None:
        return None, None, "run has parameters of a layout other than a linear or MLP head"
    try:
        features = run.features()
    except CorruptModelError as exc:
        return None, None, f"run has no usable features: {exc}"
    return features, run.model_params, ""



def load_report(path: str | Path, name: str = "path") -> AuditReport:
    """Read a ``report.json`` written by :func:`audit` (:meth:`AuditReport.from_json`);
    ``ValueError`` (naming the argument ``name`` and the file) when the file cannot be
    read or is not an audit report.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from miakit.audit import load_report
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "report.json"
    >>> _ = p.write_text('{"attacks": {}}')
    >>> load_report(p)
    Traceback (most recent call last):
    ...
    ValueError: path: expected the report.json of 'miakit audit', ...report.json has no run, ...
    """
    import os

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected the path of a report.json, got {type(path).__name__}")
    return AuditReport.from_json(Path(path), name)
