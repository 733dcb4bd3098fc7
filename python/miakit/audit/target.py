"""The audit of one model you ship: a target model attacked with a run's models as
references, and the training records it exposes (docs/guide/release.md).

:func:`audit_target` takes the target's logits on the run's N examples and which of
them it trained on. The run's models are its references: every attack scores the
target's N examples once (LiRA and RMIA offline, the calibrated loss and the threshold
attacks always; LiRA and RMIA online where the references trained on some examples, an
example without IN references scoring NaN and left out). Each example is judged once, so
the intervals are plain binomial ones (Clopper-Pearson) and the verdict's test Fisher's
exact test. For each record the target trained on, :func:`miakit.exposure.membership_pvalues`
gives a p-value under "this record was not in training" and the Benjamini-Hochberg
q-value; ``exposed.csv`` lists them, the most significant first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit._validation import (
    check_bool_array,
    check_float_array,
    check_keep,
    check_labels,
    renamed_error,
)
from miakit.audit.attacks import RMIA_A, _baselines
from miakit.audit.evaluation import (
    DEFAULT_FPRS,
    DP_DELTA,
    _evaluate_attack,
    privacy_summary,
    strongest,
    verdict,
)
from miakit.audit.options import AuditConfig
from miakit.audit.report import AuditReport, _check_output_path

__all__ = ["audit_target", "target_scores", "TARGET_ATTACKS", "OFFLINE_ATTACKS"]

OFFLINE_ATTACKS = ("lira_offline", "rmia_offline", "calibrated_loss", "loss", "confidence",
                   "max_confidence", "hinge")
"""The attacks that need OUT references only: run against any reference run."""
TARGET_ATTACKS = ("lira_online", "rmia_online") + OFFLINE_ATTACKS
"""Every attack of a target audit (the curvature attack needs the target's parameters)."""


def _check_target(run: Any, target_logits: Any, target_keep: Any
                  ) -> tuple[np.ndarray, np.ndarray]:
    # torch tensors (bfloat16 and conjugate views too) come to the host as numpy
    z = np.asarray(ar.to_numpy(check_float_array(target_logits, "target_logits")))
    n, a, c = run.n_examples, run.n_augmentations, run.n_classes
    if z.ndim == 2:
        z = z[:, None, :]
    if z.ndim != 3 or z.shape[0] != n or z.shape[2] != c or z.shape[1] not in (1, a):
        raise ValueError(f"target_logits: expected shape [{n}, {c}] or [{n}, {a}, {c}] "
                         f"(the run's examples, views and classes), got "
                         f"{ar.shape_of(target_logits)}")
    if z.shape[1] != a:
        raise ValueError(f"target_logits: the run has {a} views per example; give the "
                         f"target's logits on all of them, shape [{n}, {a}, {c}]")
    if not np.issubdtype(z.dtype, np.floating):
        raise TypeError(f"target_logits: expected floating-point logits, got {z.dtype}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"target_logits: expected finite values, got "
                         f"{int(np.count_nonzero(~np.isfinite(z)))} NaN or inf")
    k = np.asarray(target_keep)
    if k.dtype != bool or k.shape != (n,):
        raise ValueError(f"target_keep: expected a bool array of shape ({n},) (which of the "
                         f"run's examples the target trained on), got {k.dtype} {k.shape}")
    if k.all() or not k.any():
        raise ValueError(f"target_keep: expected members and non-members among the "
                         f"{n} examples, got {int(k.sum())} members")
    return z, k


def audit_target(run: Any, target_logits: Any, target_keep: Any,
                 out_dir: str | Path | None = None, *, fdr: float = 0.05,
                 fprs: tuple[float, ...] = DEFAULT_FPRS, variance: str = "auto",
                 level: float = 0.95, alpha: float = 0.05, attacks: Any = None,
                 dp_epsilon: float | None = None,
                 dp_delta: float = DP_DELTA, plot: bool = True,
                 extra: dict | None = None) -> AuditReport:
    """Audit one target model against a run's models as references.

    Parameters
    ----------
    run : miakit.shadow.Run
        The reference models (a finished run; trained on random halves of the examples
        for online attacks, or never on them: offline attacks only).
    target_logits : array [N, C] or [N, A, C] float
        The target model's logits on the run's N examples (and A views).
    target_keep : array [N] bool
        Which of the N examples the target trained on.
    out_dir : path, optional
        Where to write ``report.json``, ``report.html``, ``exposed.csv`` and ``roc.png``.
    fdr : float
        The false discovery rate at which records are declared exposed.
    fprs, variance, level, alpha, attacks, dp_epsilon, dp_delta, plot, extra
        As in :func:`miakit.audit.audit` (``attacks`` from :data:`TARGET_ATTACKS`;
        ``variance="auto"``: LiRA's spread pooled below 64 reference models).

    Returns
    -------
    AuditReport
        With ``target`` (the model, its reference counts, the attacks run and skipped)
        and ``exposed`` (the records exposed at ``fdr``).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> n, m = 200, 16
    >>> y = rng.integers(0, 3, n)
    >>> keep = mk.shadow.balanced_keep(m, n, seed=0)
    >>> def logits(member):  # a model that is more confident on its members
    ...     z = rng.normal(size=(n, 3)).astype(np.float32)
    ...     z[np.arange(n), y] += 1.0 + 2.0 * member
    ...     return z
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> w = mk.shadow.create_run(d, keep, y, n_augmentations=1, n_classes=3)
    >>> for k in range(m):
    ...     w.write_model(k, logits(keep[k])[:, None, :])
    >>> member = rng.random(n) < 0.5
    >>> r = mk.audit.audit_target(mk.shadow.open_run(d), logits(member), member, plot=False)
    >>> r.verdict["leakage"], r.target["n_members"] == int(member.sum())
    (True, True)
    >>> r.exposed["n_exposed"] <= r.exposed["n_tested"]
    True
    """
    from miakit import __version__, exposure, signals, thresholds
    from miakit.audit.run import references_info, run_info

    t0 = time.perf_counter()
    cfg = AuditConfig(fprs=fprs, variance=variance, level=level, alpha=alpha,
                      attacks=None if attacks is None else tuple(attacks),
                      dp_epsilon=dp_epsilon, dp_delta=dp_delta, plot=plot)
    from miakit._params import Param

    fdr = Param("", kind=float, low=0.0, high=1.0, open_low=True, open_high=True).check(
        fdr, "fdr")
    if out_dir is not None:  # a bad folder fails before the work, not after it
        _check_output_path(out_dir, "out_dir", folder=True)
    run.require_finished()
    z, member = _check_target(run, target_logits, target_keep)
    keep, labels = run.keep, run.labels
    want = list(TARGET_ATTACKS) if cfg.attacks is None else list(cfg.attacks)
    unknown = [a for a in want if a not in TARGET_ATTACKS]
    if unknown:
        raise ValueError(f"attacks: {unknown} cannot attack a target model (its "
                         f"parameters are not given); choose from {list(TARGET_ATTACKS)}")
    has_in = keep.any(axis=0)
    online_ok = bool(has_in.any())
    skipped = {}
    if not online_ok:
        for a in ("lira_online", "rmia_online"):
            if a in want:
                skipped[a] = ("the reference models never trained on these examples: "
                              "online attacks need IN references")
        if cfg.attacks is not None and skipped:
            raise ValueError(f"attacks: {sorted(skipped)} need reference models that "
                             f"trained on the examples; run {run.path} has none")
        want = [a for a in want if a not in skipped]
    if run.n_models < 2:
        raise ValueError(f"run {run.path}: a target audit needs at least 2 reference "
                         f"models, the run has {run.n_models}")
    ref = np.stack([run.model_logits(m, verify=False) for m in range(run.n_models)])
    var = cfg.variance if cfg.variance != "auto" else (
        "global" if run.n_models < 64 else "per_example")
    lab = np.asarray(labels)
    scores = target_scores(z, member, ref, keep, lab, want, variance=var)
    n_tests = len(scores) * len(cfg.fprs)
    results = {name: _evaluate_attack(name, {"scores": s, "settings": settings}, member,
                                      cfg.fprs, cfg.level, cfg.alpha, n_tests, cfg.dp_delta,
                                      clustered=False)
               for name, (s, settings) in ((k, scores[k]) for k in want if k in scores)}
    # which records are exposed: LiRA's signal, averaged over views
    t_sig = np.asarray(signals.scaled_confidence(z, lab[:, None]), np.float64).mean(-1)
    r_sig = np.asarray(signals.scaled_confidence(ref, lab[None, :, None]),
                       np.float64).mean(-1)
    pv = exposure.membership_pvalues(t_sig, r_sig, keep, np.flatnonzero(member), fdr=fdr)
    correct = (z.argmax(-1)[:, 0] == lab)
    columns = _record_columns(z, lab, ref, keep)
    report = AuditReport(
        miakit_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        run=run_info(run),
        models={"train_accuracy": float(correct[member].mean()),
                "test_accuracy": float(correct[~member].mean()),
                "train_loss": float(-thresholds.loss(z[None], lab)[0][member].mean()),
                "test_loss": float(-thresholds.loss(z[None], lab)[0][~member].mean())},
        evaluation={"protocol": "one target model, attacked with the run's models as "
                                "references; each example judged once (plain binomial "
                                "intervals, Fisher's exact test)",
                    "references": references_info(keep, "all") | {
                        "rule": "all", "description": "every model of the run is a "
                        "reference; the target is not one of them"},
                    "fprs": list(cfg.fprs), "confidence_level": cfg.level},
        attacks=results,
        baselines=_baselines(correct[None], member[None],
                             results["loss"].max_accuracy if "loss" in results else None),
        verdict=verdict(results, cfg.alpha),
        strongest_attack=strongest(results, verdict(results, cfg.alpha)),
        privacy=privacy_summary(results, cfg.dp_epsilon, cfg.dp_delta),
        target={"n_examples": int(member.size), "n_members": int(member.sum()),
                "n_nonmembers": int((~member).sum()),
                "references_in": {"min": int(keep.sum(0).min()),
                                  "max": int(keep.sum(0).max())},
                "references_out": {"min": int((~keep).sum(0).min()),
                                   "max": int((~keep).sum(0).max())},
                "online": online_ok, "attacks_skipped": skipped},
        exposed=_exposed_section(pv, columns),
    )
    report.extra = dict(extra or {})
    report.timing_s = dict(report.extra.pop("timing_s", {}))
    if out_dir is not None:
        from miakit.audit.run import start_report

        out = start_report(out_dir)  # an earlier report.json removed first
        files = {"report": str(out / "report.json"), "html": str(out / "report.html"),
                 "exposed": str(write_exposed_csv(pv, out / "exposed.csv", columns))}
        if cfg.plot:
            from miakit.audit.figures import plot_roc

            name = report.run["metadata"].get("dataset", "run")
            title = (f"one target model, {member.size} examples; references: {name}, "
                     f"{run.n_models} models")
            plot_roc(results, out / "roc.png", title=title,
                     dp=None if cfg.dp_epsilon is None else (cfg.dp_epsilon, cfg.dp_delta))
            files["roc"] = str(out / "roc.png")
        report.files = files
    report.timing_s["audit"] = round(time.perf_counter() - t0, 3)
    report.timing_s["total"] = round(report.timing_s.get("training", 0.0)
                                     + report.timing_s["audit"], 3)
    if out_dir is not None:
        from miakit.audit.page import write_html

        write_html(report, Path(out_dir) / "report.html")
        # report.json last: its presence says that every other file is complete
        report.to_json(Path(out_dir) / "report.json")
    return report


def target_scores(target_logits: np.ndarray, target_keep: np.ndarray, ref_logits: np.ndarray,
                  ref_keep: np.ndarray, labels: np.ndarray, attacks: Any = TARGET_ATTACKS,
                  *, variance: str = "global"
                  ) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Every attack's scores ``[N]`` of one target model against reference models, with
    its settings: what :func:`audit_target` evaluates.

    ``target_logits`` is ``[N, A, C]``, ``ref_logits`` ``[M, N, A, C]``; ``target_keep``
    (its training set) only picks RMIA's population, the target's non-members. An
    example an attack cannot score (no IN references online) scores NaN.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit.target import target_scores
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(8, 50, 1, 3)); keep = mk.shadow.balanced_keep(8, 50, seed=0)
    >>> y = rng.integers(0, 3, 50); tgt = rng.normal(size=(50, 1, 3)); member = keep[0]
    >>> s = target_scores(tgt, member, ref, keep, y, ["lira_offline", "loss"])
    >>> sorted(s), s["loss"][0].shape
    (['lira_offline', 'loss'], (50,))
    """
    from miakit import lira, rmia, signals, thresholds
    from miakit.audit.attacks import _check_variance

    z, ref, keep, lab, member = _check_scores_inputs(target_logits, target_keep, ref_logits,
                                                     ref_keep, labels)
    if isinstance(attacks, str) or not isinstance(attacks, Sequence) or not attacks or any(
            a not in TARGET_ATTACKS for a in attacks):
        raise ValueError(f"attacks: expected a sequence of names from "
                         f"{list(TARGET_ATTACKS)}, got {attacks!r}")
    want = list(attacks)
    var = _check_variance(variance)
    scores: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    ref_role = {"targets": "one target model", "references": "the run's models"}
    fit = tgt = None
    for name, mode in (("lira_online", "online"), ("lira_offline", "offline")):
        if name in want:
            try:  # the scores derive from the logits: errors name the logits
                if fit is None:  # one fit of the references' Gaussians for both modes
                    fit = lira.fit(ref, keep, variance=var, labels=lab)
                    tgt = signals.scaled_confidence(z, lab[:, None])
                s = lira.score(tgt, fit, mode=mode, offline="one_sided", on_empty="nan")
            except ValueError as exc:
                raise renamed_error(exc, {"shadow_scores (logits)": "ref_logits",
                                          "target_scores": "target_logits"}) from None
            scores[name] = (np.asarray(s, dtype=np.float64), {
                "mode": mode, "offline": "one_sided" if mode == "offline" else None,
                "center": "median", "variance": var, "signal": "scaled_confidence",
                **ref_role})
    population = np.flatnonzero(~member)
    for name, offline in (("rmia_online", False), ("rmia_offline", True)):
        if name in want:
            s = rmia.score(z, ref, keep, population, offline=offline, a=RMIA_A,
                           labels=lab, on_empty="nan")
            scores[name] = (np.asarray(s, dtype=np.float64), {
                "offline": offline, "a": RMIA_A if offline else None, "gamma": 1.0,
                "population": "the target's non-members", **ref_role})
    if "calibrated_loss" in want:
        s = thresholds.calibrated(thresholds.loss(z[None], lab)[0],
                                  thresholds.loss(ref, lab), keep)
        scores["calibrated_loss"] = (np.asarray(s, dtype=np.float64), {
            "score": "-cross_entropy minus its mean over the OUT references", **ref_role})
    for name in ("loss", "confidence", "max_confidence", "hinge"):
        if name in want:
            s = thresholds.SIGNAL_SCORES[name](z[None], lab)[0]
            scores[name] = (np.asarray(s, dtype=np.float64),
                            {"score": name, "targets": "one target model"})
    return scores


def _check_scores_inputs(target_logits: Any, target_keep: Any, ref_logits: Any,
                         ref_keep: Any, labels: Any
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`target_scores`' arrays as numpy ones, their shapes checked against each other
    (the references' ``[M, N, A, C]``), every error naming its argument."""
    ref = np.asarray(ar.to_numpy(check_float_array(ref_logits, "ref_logits", ndim=4)))
    if min(ref.shape) == 0:
        raise ValueError(f"ref_logits: expected a non-empty [M, N, A, C] array, got shape "
                         f"{ref.shape}")
    z = np.asarray(ar.to_numpy(check_float_array(target_logits, "target_logits", ndim=3)))
    if z.shape != ref.shape[1:]:
        raise ValueError(f"target_logits: expected shape {ref.shape[1:]} (the references' "
                         f"examples, views and classes), got {z.shape}")
    member = check_bool_array(target_keep, "target_keep", ref.shape[1:2])
    keep = np.asarray(ar.to_numpy(check_keep(ref_keep, ref.shape[:2], "ref_keep")), bool)
    lab = np.asarray(ar.to_numpy(check_labels(labels, ref.shape[3])))
    if lab.shape != ref.shape[1:2]:
        raise ValueError(f"labels: expected shape {ref.shape[1:2]} (examples), got "
                         f"{lab.shape}")
    for name, arr in (("target_logits", z), ("ref_logits", ref)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
    if keep.all():
        raise ValueError("ref_keep: every reference trained on every example, so no "
                         "example has an OUT reference and no attack can score it")
    return z, ref, keep, lab, member


def _record_columns(z: np.ndarray, labels: np.ndarray, ref: np.ndarray, keep: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """What exposed.csv adds per record: the target's loss and the norm of its loss's
    gradient in the logits (``||softmax(z) - onehot(y)||``, first view), and, where the
    references trained on some examples, the record's label memorization over them
    (Feldman-Zhang: how much more often a model gets it right when it trained on it)."""
    from miakit import memorization, thresholds

    z0 = z[:, 0, :].astype(np.float64)
    p = np.exp(z0 - z0.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1.0
    cols = {"target_loss": -thresholds.loss(z[None], labels)[0],
            "logit_grad_norm": np.sqrt((p ** 2).sum(-1))}
    if keep.any(axis=0).all() and (~keep).any(axis=0).all():
        correct = ref[:, :, 0, :].argmax(-1) == labels[None, :]
        cols["memorization"] = np.asarray(memorization.feldman_zhang(correct, keep),
                                          np.float64)
    return cols


def _exposed_section(pv: Any, columns: dict[str, np.ndarray]) -> dict[str, Any]:
    order = np.lexsort((pv.records, pv.p_value))
    top = [{"example": int(pv.records[i]), "p_value": float(pv.p_value[i]),
            "q_value": float(pv.q_value[i]), "method": str(pv.method[i]),
            "n_out": int(pv.n_out[i]),
            **{k: float(v[pv.records[i]]) for k, v in columns.items()}}
           for i in order[:20] if pv.exposed[i]]
    methods, counts = np.unique(pv.method, return_counts=True)
    return {"fdr": pv.fdr, "n_tested": int(pv.records.size), "n_exposed": pv.n_exposed,
            "methods": {str(m): int(c) for m, c in zip(methods, counts)},
            "top": top, "columns": list(columns),
            "null": "the record was not in the target's training set: its signal is one "
                    "more draw from the record's OUT references",
            "method": "per record, the exact rank p-value among its OUT references where "
                      "1/(n_out + 1) <= fdr / n_tested, else LiRA's Gaussian as a Student "
                      "t predictive p-value; Benjamini-Hochberg q-values over the "
                      "target's training records; exposed where q <= fdr"}


def write_exposed_csv(pv: Any, path: str | Path,
                      columns: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``exposed.csv`` (``example, p_value, q_value, exposed, method, n_out`` and the
    per-record ``columns``, arrays over all N examples), sorted by p-value (ties by
    example), atomically; returns the path."""
    from miakit.io import atomic_write

    columns = columns or {}
    order = np.lexsort((pv.records, pv.p_value))
    lines = [",".join(["example", "p_value", "q_value", "exposed", "method", "n_out",
                       *columns])]
    for i in order:
        n = int(pv.records[i])
        lines.append(",".join([str(n), f"{pv.p_value[i]:.6g}", f"{pv.q_value[i]:.6g}",
                               str(int(bool(pv.exposed[i]))), str(pv.method[i]),
                               str(int(pv.n_out[i])),
                               *(f"{v[n]:.6g}" for v in columns.values())]))
    data = ("\n".join(lines) + "\n").encode()
    path = Path(path)
    atomic_write(path, lambda f: f.write(data), "the exposed records")
    return path
