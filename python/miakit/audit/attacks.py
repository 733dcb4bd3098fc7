"""The audit's attacks: every attack on a run's models, from one source of signals.

Every model of the run is the target once, attacked with the other models as references
(leave-one-out, balanced: see ``docs/methods/leave-one-out.md``), by

- LiRA online (IN and OUT Gaussians of the scaled confidence, ``mk.lira``) and offline
  (OUT Gaussian only, one-sided test),
- RMIA online and offline (``mk.rmia``: pairwise likelihood ratios against the target's
  non-members),
- the calibrated loss attack (the loss less its mean over OUT references),
- the threshold attacks that need no reference model (``mk.thresholds``): loss, true-class
  confidence, max confidence and hinge, averaged over query views;
- for runs of heads with stored parameters, LiRA on the exact input-loss curvature
  (:func:`curvature_attack`);

and the accuracy baselines (Bayes "correct means member", the best loss threshold:
:func:`baselines`). :func:`iter_attacks` yields the attacks one at a time from a logits
array or the signals the audit streamed from a run's model files
(``miakit._audit_signals``); :func:`run_attacks` collects them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from miakit import lira, signals

__all__ = ["ATTACKS", "RMIA_A", "run_attacks", "iter_attacks", "curvature_attack",
           "baselines"]

ATTACKS = {
    "lira_online": "LiRA online",
    "lira_offline": "LiRA offline",
    "rmia_online": "RMIA online",
    "rmia_offline": "RMIA offline",
    "calibrated_loss": "Calibrated loss",
    "loss": "Loss threshold",
    "confidence": "Confidence threshold",
    "max_confidence": "Max-confidence threshold",
    "hinge": "Hinge threshold",
    "lira_curvature": "LiRA on input curvature",
}
"""Every attack of the audit, by name, with its label in tables and plots."""

RMIA_A = 0.3
"""RMIA offline's ``a`` (``mk.rmia``): ``Pr(x) = 0.5 ((1 + a) mean_OUT q(x) + (1 - a))``."""


def run_attacks(logits: Any, keep: np.ndarray, labels: np.ndarray, *,
                variance: str = "per_example", references: str = "balanced",
                attacks: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Leave-one-out scores ``[M, N]`` of every attack, with their settings.

    Parameters
    ----------
    logits : array [M, N, A, C]
        Shadow logits (``run.logits()``; ``run.logits(cache=True)`` is memory-mapped
        and streams from disk).
    keep : array [M, N] bool
    labels : array [N] int
    variance : {"per_example", "global"}
        LiRA's spread estimate (``"global"`` is recommended below 64 models).
    references : {"balanced", "all"}
        Leave-one-out references of the attacks that use other models (LiRA, RMIA,
        calibrated; :func:`miakit.lira.leave_one_out`): ``"balanced"`` (default,
        unbiased) leaves out the target and one model from the other side of each
        example; ``"all"`` the target only.
    attacks : sequence of str, optional
        Names from :data:`ATTACKS` (default: all of them but ``lira_curvature``, which
        needs stored heads: :func:`curvature_attack`).

    Returns
    -------
    dict
        ``{name: {"scores": [M, N] float64, "settings": dict, "clamped": int}}``;
        scores are NaN where an attack had no reference model for an example.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import run_attacks
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 30, seed=0)
    >>> y = rng.integers(0, 3, 30)
    >>> z = rng.normal(size=(8, 30, 1, 3)).astype(np.float32)
    >>> sorted(run_attacks(z, keep, y, attacks=["lira_online", "rmia_online", "loss"]))
    ['lira_online', 'loss', 'rmia_online']
    """
    names = _attack_names(attacks)
    out = dict(iter_attacks(logits, keep, labels, variance=variance, references=references,
                            attacks=names))
    return {n: out[n] for n in names}


def _signal_types() -> tuple[type, ...]:
    from miakit import _audit_signals as sig

    return (sig.ArraySignals, sig.RunSignals, sig.StoredSignals)


def _signal_source(logits: Any, labels: Any) -> Any:
    """The audit's signals: an :class:`~miakit._audit_signals.ArraySignals` of a logits
    array, or the :class:`~miakit._audit_signals.RunSignals` the audit streamed."""
    from miakit import _audit_signals as sig

    if isinstance(logits, (sig.ArraySignals, sig.RunSignals, sig.StoredSignals)):
        return logits
    return sig.ArraySignals(logits, labels)


def _check_logits_inputs(logits: Any, keep: Any, labels: Any) -> tuple[Any, np.ndarray]:
    """Logits ``[M, N, A, C]`` (left as given: a memory-mapped array stays on disk), a
    boolean ``keep [M, N]`` and ``labels [N]`` in ``[0, C)``, each error naming its
    argument; returns the logits and ``keep`` as a numpy bool array."""
    from miakit import _arrays as ar
    from miakit._validation import check_float_array, check_keep, check_labels

    logits = check_float_array(logits, "logits", ndim=4)
    shape = tuple(ar.shape_of(logits))
    if min(shape) == 0:
        raise ValueError(f"logits: expected a non-empty [M, N, A, C] array, got shape {shape}")
    keep = np.asarray(ar.to_numpy(check_keep(keep, (shape[0], shape[1]))), dtype=bool)
    labels = check_labels(labels, shape[3])
    if tuple(ar.shape_of(labels)) != shape[1:2]:
        raise ValueError(f"labels: expected shape {shape[1:2]} (examples), "
                         f"got {tuple(ar.shape_of(labels))}")
    return logits, keep


def _check_both_sides(keep: np.ndarray) -> None:
    """Refuse a ``keep`` without members or without non-members: no attack has a
    reference on the missing side, so every score would be NaN."""
    if keep.all() or not keep.any():
        raise ValueError(f"keep: expected both members and non-members, got "
                         f"{'only members' if keep.all() else 'no members'}")


def _check_variance(variance: Any) -> str:
    from miakit._validation import check_choice

    return check_choice(variance, "variance", ("per_example", "global"))


def _check_references(references: Any) -> str:
    from miakit._validation import check_choice

    return check_choice(references, "references", ("balanced", "all"))


def _attack_names(attacks: Sequence[str] | None) -> list[str]:
    names = [a for a in ATTACKS if a != "lira_curvature"] if attacks is None else list(attacks)
    unknown = [a for a in names if a not in ATTACKS or a == "lira_curvature"]
    if unknown or not names:
        raise ValueError(f"attacks: expected names from {list(ATTACKS)}, got {unknown or names}")
    return names


def iter_attacks(logits: Any, keep: np.ndarray, labels: np.ndarray, *,
                 variance: str = "per_example", references: str = "balanced",
                 attacks: Sequence[str] | None = None
                 ) -> Iterator[tuple[str, dict[str, Any]]]:
    """:func:`run_attacks` one attack at a time, as ``(name, entry)`` pairs in the order
    they are computed: a caller that evaluates and drops each attack's ``[M, N]`` scores
    holds one attack's scores at a time instead of all of them.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import iter_attacks
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 30, seed=0)
    >>> y = rng.integers(0, 3, 30)
    >>> z = rng.normal(size=(8, 30, 1, 3)).astype(np.float32)
    >>> [name for name, _ in iter_attacks(z, keep, y, attacks=["loss", "lira_online"])]
    ['lira_online', 'loss']
    """
    from miakit import rmia, thresholds

    names = _attack_names(attacks)
    _check_variance(variance)
    _check_references(references)
    if not isinstance(logits, _signal_types()):  # (the audit's own sources: checked there)
        logits, keep = _check_logits_inputs(logits, keep, labels)
        _check_both_sides(keep)
    src = _signal_source(logits, labels)
    loo = {"targets": "leave-one-out", "references": references}
    for name, mode in (("lira_online", "online"), ("lira_offline", "offline")):
        if name not in names:
            continue
        x, lab = src.lira_source()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", lira.ClampedSpreadWarning)
            scores = lira.leave_one_out(x, keep, mode=mode, offline="one_sided",
                                        center="median", variance=variance, labels=lab,
                                        on_empty="nan", references=references)
        clamped = sum(_clamped_count(w.message) for w in caught
                      if issubclass(w.category, lira.ClampedSpreadWarning))
        yield name, {"scores": np.asarray(scores, dtype=np.float64), "clamped": clamped,
                     "settings": {"mode": mode, "offline": "one_sided" if mode == "offline"
                                  else None, "center": "median", "variance": variance,
                                  "signal": "scaled_confidence", **loo}}
        del scores
    rmia_names = [n for n in ("rmia_online", "rmia_offline") if n in names]
    q = None  # true-class probabilities [M, N, A], for RMIA and the confidence attack
    if rmia_names or "confidence" in names:
        q = src.confidence()
    if rmia_names:
        for name in rmia_names:
            offline = name == "rmia_offline"
            scores = rmia.leave_one_out(q, keep, offline=offline, a=RMIA_A, gamma=1.0,
                                        references=references, on_empty="nan")
            yield name, {"scores": np.asarray(scores, dtype=np.float64), "clamped": 0,
                         "settings": {"offline": offline, "a": RMIA_A if offline else None,
                                      "gamma": 1.0, "aggregate": "mean",
                                      "signal": "true-class probability",
                                      "population": "the target's non-members", **loo}}
            del scores
    per_model = {"targets": "every model, no reference model"}
    if "confidence" in names:  # the last use of q: it is dropped before the loss attacks
        yield "confidence", {"scores": np.asarray(q, dtype=np.float64).mean(-1), "clamped": 0,
                             "settings": {"score": "true-class probability p_y, mean over "
                                                   "query views", **per_model}}
    q = None
    src.drop("confidence")
    loss = None
    if "calibrated_loss" in names or "loss" in names:
        loss = src.score("loss")
    if "calibrated_loss" in names:
        yield "calibrated_loss", {
            "scores": thresholds.calibrated_leave_one_out(loss, keep, references=references),
            "clamped": 0, "settings": {"score": "-cross_entropy minus its mean over the "
                                                "OUT references", **loo}}
    if "loss" in names:
        yield "loss", {"scores": loss, "clamped": 0,
                       "settings": {"score": "-cross_entropy, mean over query views",
                                    **per_model}}
    loss = None
    src.drop("loss")
    for name, what in (("max_confidence", "max_j p_j"), ("hinge", "z_y - max_{j != y} z_j")):
        if name in names:
            yield name, {"scores": src.score(name), "clamped": 0,
                         "settings": {"score": what + ", mean over query views",
                                      **per_model}}
            src.drop(name)


def curvature_attack(curvature: np.ndarray, keep: np.ndarray, *,
                     variance: str = "per_example", references: str = "balanced"
                     ) -> dict[str, Any]:
    """LiRA online on the exact input-loss curvature of stored heads (Ravikumar et al.).

    Every head's per-example trace of the input Hessian (first query view, the
    ``curvature`` of :func:`head_matrices`) is the signal; leave-one-out LiRA fits its IN
    and OUT Gaussians per example, as for the scaled confidence. Online LiRA compares
    likelihoods, so the signal's direction (members flatter) needs no sign.

    Returns
    -------
    dict
        As an entry of :func:`run_attacks`.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import curvature_attack, head_matrices
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 40); x = rng.normal(size=(40, 4)) + y[:, None]
    >>> keep = mk.shadow.balanced_keep(8, 40, seed=0)
    >>> _, info = mk.shadow.train_heads(x, y, keep, return_info=True)
    >>> heads = [{k: v[m] for k, v in info["params"].items()} for m in range(8)]
    >>> curv = head_matrices(x, y, heads, keep.shape)[1]
    >>> curvature_attack(curv, keep)["scores"].shape
    (8, 40)
    """
    from miakit import _arrays as ar
    from miakit._validation import check_finite, check_keep, check_real_array

    curvature = check_real_array(curvature, "curvature")
    check_finite(curvature, "curvature")  # a trace of a finite head's Hessian is finite
    if curvature.ndim != 2 or curvature.size == 0:
        raise ValueError(f"curvature: expected a non-empty [M, N] array, got shape "
                         f"{curvature.shape}")
    keep = np.asarray(ar.to_numpy(check_keep(keep, curvature.shape)), dtype=bool)
    _check_both_sides(keep)
    _check_variance(variance)
    _check_references(references)
    from miakit._lira_scale import check_span

    check_span(curvature, name="curvature")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lira.ClampedSpreadWarning)
        scores = lira.leave_one_out(curvature[:, :, None], keep, mode="online",
                                    center="median", variance=variance, on_empty="nan",
                                    references=references)
    clamped = sum(_clamped_count(w.message) for w in caught
                  if issubclass(w.category, lira.ClampedSpreadWarning))
    return {"scores": np.asarray(scores, dtype=np.float64), "clamped": clamped,
            "settings": {"mode": "online", "center": "median", "variance": variance,
                         "signal": "trace of the input-loss Hessian (exact, stored heads)",
                         "targets": "leave-one-out", "references": references}}


def baselines(logits: Any, keep: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The accuracy baselines of a run, pooled over every (model, example) pair.

    ``bayes``: "correct means member" (first query view), ``1/2 + (p_train - p_test)/2``;
    ``max_accuracy_threshold``: the best accuracy of one threshold on the loss (mean
    over query views). Both are balanced accuracies (members and non-members weigh
    equally).

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import baselines
    >>> keep = mk.shadow.balanced_keep(4, 20, seed=0)
    >>> z = np.random.default_rng(0).normal(size=(4, 20, 1, 3))
    >>> sorted(baselines(z, keep, np.zeros(20, int)))
    ['bayes', 'max_accuracy_threshold']
    """
    from miakit import thresholds

    logits, keep = _check_logits_inputs(logits, keep, labels)
    _check_both_sides(keep)
    labels = np.asarray(labels)
    correct = np.asarray(signals.correct(logits[:, :, 0, :], labels[None, :]))
    return _baselines(correct, keep,
                      thresholds.max_accuracy_threshold(-thresholds.loss(logits, labels), keep))



def _baselines(correct: np.ndarray | None, keep: np.ndarray, t: Any) -> dict[str, Any]:
    """The report's baselines from the first view's correctness and the loss threshold
    (each left out when the run cannot give it)."""
    from miakit import thresholds

    out: dict[str, Any] = {}
    if correct is not None:  # (a run of signals has no correctness)
        b = thresholds.bayes_baseline(correct, keep)
        out["bayes"] = {"accuracy": b.accuracy, "train_accuracy": b.train_accuracy,
                        "test_accuracy": b.test_accuracy,
                        "rule": "member when the model classifies the example correctly"}
    if t is not None:  # (nor a run of scores a loss)
        out["max_accuracy_threshold"] = {
            "accuracy": t.accuracy,
            "loss_threshold": t.threshold if math.isfinite(t.threshold) else None,
            "rule": "member when the loss is at most the threshold that maximises accuracy"}
    return out



def _clamped_count(message: Warning | str) -> int:
    """The spreads a ``lira.ClampedSpreadWarning`` counted (its ``n_clamped``)."""
    return int(getattr(message, "n_clamped", 0))

