"""The audit: attack every shadow model of a run and report how much membership leaks.

Every model of the run is the target once, attacked with the other models as references
(leave-one-out, balanced: see ``docs/methods/leave-one-out.md``), by

- LiRA online (IN and OUT Gaussians of the scaled confidence, ``mk.lira``) and offline
  (OUT Gaussian only, one-sided test),
- RMIA online and offline (``mk.rmia``: pairwise likelihood ratios against the target's
  non-members),
- the calibrated loss attack (the loss less its mean over OUT references),
- the threshold attacks that need no reference model (``mk.attacks``): loss, true-class
  confidence, max confidence and hinge, averaged over query views;
- for runs of heads with stored parameters, LiRA on the exact input-loss curvature
  (:func:`curvature_attack`);

and the report adds the accuracy baselines (Bayes "correct means member", the best loss
threshold). Members are the ``keep`` entries of the target, so each attack is judged on
M x N (target, example) pairs. For each attack the report gives the AUC (with a standard
error clustered by example) and the TPR at FPR 1e-1, 1e-2 and 1e-3 with the achieved FPR,
the counts behind both rates and Clopper-Pearson intervals made cluster-robust
(``mk.metrics.tpr_at_fpr``), and the verdict tests them all (:func:`verdict`).

The report's per-example vulnerability table (:func:`vulnerability`) joins LiRA's
per-example TPR with memorization, gradient norm, input curvature and the Hellinger
distance. What the gradient norm and curvature are depends on what the run stores:

- runs of :func:`miakit.shadow.train_heads` store every head's parameters and the
  features: ``grad_norm`` is the exact per-example norm of the loss gradient with
  respect to all the head's parameters, ``curvature`` the exact trace of the input-loss
  Hessian (closed forms for linear and one-hidden-layer ReLU heads), per model, averaged
  over the models that trained on the example, with ``grad_norm_out`` /
  ``curvature_out`` over the others;
- runs with logits only (:func:`miakit.shadow.train_models`, whose arbitrary torch
  models are not stored, and runs written before parameters were stored): ``grad_norm``
  is the logit-gradient proxy ``||softmax(z) - e_y||`` and there is no curvature.

The table's meta (``report["vulnerability"]["meta"]``) names the case
(``grad_norm_kind``, ``curvature_kind``) and gives the full definitions
(:data:`GRAD_NORM_DEFINITION`, :data:`CURVATURE_DEFINITION`).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit import lira, metrics, signals
from miakit._validation import check_choice, check_probability

__all__ = ["audit", "run_attacks", "curvature_attack", "head_matrices", "baselines",
           "strongest", "privacy_summary",
           "vulnerability", "head_quantities",
           "summarize", "summary_sections", "plot_roc",
           "load_report", "references_info", "evaluate", "verdict", "ATTACKS",
           "DEFAULT_FPRS",
           "GRAD_NORM_DEFINITION",
           "CURVATURE_DEFINITION"]

DEFAULT_FPRS = (1e-1, 1e-2, 1e-3)
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
DP_DELTA = 1e-5
"""The delta of the empirical epsilon the audit reports when no DP guarantee is given."""
_ROC_POINTS = 60
_PLOT_POINTS = 4000  # vertices of each attack's curve in roc.png


def run_attacks(logits: Any, keep: np.ndarray, labels: np.ndarray, *,
                variance: str = "per_example", references: str = "balanced",
                attacks: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Leave-one-out scores ``[M, N]`` of every attack, with their settings.

    Parameters
    ----------
    logits : array [M, N, A, C]
        Shadow logits (a memory-mapped ``run.logits()`` streams from disk).
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


def _signal_source(logits: Any, labels: Any) -> Any:
    """The audit's signals: an :class:`~miakit._audit_signals.ArraySignals` of a logits
    array, or the :class:`~miakit._audit_signals.RunSignals` the audit streamed."""
    from miakit import _audit_signals as sig

    if isinstance(logits, (sig.ArraySignals, sig.RunSignals, sig.StoredSignals)):
        return logits
    return sig.ArraySignals(logits, labels)


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
    from miakit import attacks as thresholds
    from miakit import rmia

    names = _attack_names(attacks)
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
    keep = np.asarray(keep, dtype=bool)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lira.ClampedSpreadWarning)
        scores = lira.leave_one_out(np.asarray(curvature)[:, :, None], keep, mode="online",
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
    from miakit import attacks as thresholds

    keep = np.asarray(keep, dtype=bool)
    correct = np.asarray(signals.correct(logits[:, :, 0, :], np.asarray(labels)[None, :]))
    return _baselines(correct, keep,
                      thresholds.max_accuracy_threshold(-thresholds.loss(logits, labels), keep))


def _baselines(correct: np.ndarray | None, keep: np.ndarray, t: Any) -> dict[str, Any]:
    """The report's baselines from the first view's correctness and the loss threshold
    (each left out when the run cannot give it)."""
    from miakit import attacks as thresholds

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


_AVERAGING = ("first query view; grad_norm / curvature: mean over the models that trained "
              "on the example (IN), grad_norm_out / curvature_out: mean over the others (OUT)")

GRAD_NORM_DEFINITION = {
    "linear": "norm of the per-example gradient of the cross-entropy loss with respect to "
              "all parameters of the linear head (weight and bias), exact: "
              "||p - e_y||_2 sqrt(||x||^2 + 1) (miakit.gradients.head_norms), from the "
              "stored head parameters and features; " + _AVERAGING,
    "mlp": "norm of the per-example gradient of the cross-entropy loss with respect to all "
           "parameters of the MLP head (both layers, weights and biases), exact: "
           "||g||^2 = ||p - e_y||^2 (||h||^2 + 1) + ||delta||^2 (||x||^2 + 1), h the hidden "
           "activations, delta = (W2^T (p - e_y)) * 1[W1 x + b1 > 0] "
           "(miakit.gradients.mlp_head_norms), from the stored head parameters and "
           "features; " + _AVERAGING,
    "proxy": "logit-gradient proxy: norm of the per-example loss gradient with respect to "
             "the logits, ||softmax(z) - e_y||_2 (miakit.signals.grad_norm), from the stored "
             "logits; it is the output-layer factor of every parameter gradient (for a "
             "linear head the full norm is this times sqrt(||x||^2 + 1)). The run stores "
             "no model parameters (runs of miakit.shadow.train_models, runs written before "
             "parameters were stored), so it cannot give parameter gradient norms or "
             "curvature; for a model "
             "at hand use miakit.gradients.per_example_norms and "
             "miakit.curvature.hutchinson_trace. " + _AVERAGING,
}
"""What the ``grad_norm`` column of :func:`vulnerability` means, by case: ``"linear"`` and
``"mlp"`` (runs of :func:`miakit.shadow.train_heads`, which store head parameters and
features) or ``"proxy"`` (runs with logits only). The table's ``meta`` holds the one used."""

CURVATURE_DEFINITION = {
    "linear": "input-loss curvature: trace of the Hessian of the per-example cross-entropy "
              "loss with respect to the head's input features x, exact: "
              "sum_k p_k ||w_k - W^T p||^2 (miakit.curvature.head_trace), from the stored "
              "head parameters and features; " + _AVERAGING,
    "mlp": "input-loss curvature: trace of the Hessian of the per-example cross-entropy loss "
           "with respect to the head's input features x, exact: the linear-head formula "
           "with the example's input Jacobian J = W2 diag(1[W1 x + b1 > 0]) W1 in place of "
           "W (ReLU's second derivative is zero; miakit.curvature.mlp_head_trace), from the "
           "stored head parameters and features; " + _AVERAGING,
    "proxy": "not computed: the run stores no model parameters and features",
}
"""What the ``curvature`` column of :func:`vulnerability` means, by case (as
:data:`GRAD_NORM_DEFINITION`)."""

_KIND = {"linear": ("parameter gradient", "input Hessian trace"),
         "mlp": ("parameter gradient", "input Hessian trace")}
_LAYOUTS = {"linear": ("weight", "bias"), "mlp": ("weight1", "bias1", "weight2", "bias2")}


def head_quantities(features: Any, labels: Any, params: Mapping[str, Any]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-example gradient norm and input curvature of one stored head.

    Parameters
    ----------
    features : array [N, D] float
        The head's inputs (one query view).
    labels : array [N] int
    params : mapping of str to array
        A head of :func:`miakit.shadow.train_heads` (``run.model_params(m)``): linear
        (``weight`` [C, D], ``bias`` [C]) or MLP (``weight1`` [H, D], ``bias1`` [H],
        ``weight2`` [C, H], ``bias2`` [C]).

    Returns
    -------
    grad_norm : numpy.ndarray [N] float64
        ``||grad_theta loss||_2`` over all the head's parameters
        (:func:`miakit.gradients.head_norms` / :func:`miakit.gradients.mlp_head_norms`).
    curvature : numpy.ndarray [N] float64
        ``tr(grad_x^2 loss)`` (:func:`miakit.curvature.head_trace` /
        :func:`miakit.curvature.mlp_head_trace`).

    Examples
    --------
    >>> import numpy as np
    >>> from miakit.audit import head_quantities
    >>> x = np.zeros((1, 2)); w = np.array([[1.0, 0.0], [-1.0, 0.0]])   # p = (1/2, 1/2)
    >>> g, t = head_quantities(x, np.array([0]), {"weight": w, "bias": np.zeros(2)})
    >>> g.tolist(), t.tolist()     # ||p - e_0|| sqrt(0 + 1); 1/2 + 1/2 - 0
    ([0.7071067811865476], [1.0])
    """
    from miakit import curvature, gradients

    kind = _head_kind(params)
    if kind is None:
        raise ValueError(f"params: expected a linear head {list(_LAYOUTS['linear'])} or an "
                         f"MLP head {list(_LAYOUTS['mlp'])}, got {list(params)}")
    x = np.asarray(features)
    if kind == "linear":
        w, b = params["weight"], params["bias"]
        return (np.asarray(gradients.head_norms(x, labels, w, b)),
                np.asarray(curvature.head_trace(x, w, b)))
    args = [params[k] for k in _LAYOUTS["mlp"]]
    return (np.asarray(gradients.mlp_head_norms(x, labels, *args)),
            np.asarray(curvature.mlp_head_trace(x, *args)))


def head_matrices(features: Any, labels: Any,
                  params: Callable[[int], Mapping[str, Any]] | Sequence[Mapping[str, Any]],
                  shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, str]:
    """Every stored head's exact per-example gradient norm and input curvature.

    Parameters
    ----------
    features : array [N, A, D] or [N, D]
        The heads' inputs; the first query view is used.
    labels : array [N] int
    params : callable or sequence
        Model m's head parameters as ``params(m)`` or ``params[m]``.
    shape : (M, N)
        Models and examples.

    Returns
    -------
    grad_norm, curvature : numpy.ndarray [M, N] float64
        :func:`head_quantities` of every model, one model at a time (memory O(N C)).
    kind : {"linear", "mlp"}

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import head_matrices
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 30); x = rng.normal(size=(30, 4)) + y[:, None]
    >>> keep = mk.shadow.balanced_keep(4, 30, seed=0)
    >>> _, info = mk.shadow.train_heads(x, y, keep, return_info=True)
    >>> heads = [{k: v[m] for k, v in info["params"].items()} for m in range(4)]
    >>> g, c, kind = head_matrices(x, y, heads, keep.shape)
    >>> g.shape, kind
    ((4, 30), 'linear')
    """
    get = params if callable(params) else params.__getitem__
    n_models, n = shape
    x = np.asarray(features)
    if x.ndim == 3:
        x = x[:, 0, :]  # the first query view, as the logits' columns
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"features: expected [N, A, D] or [N, D] with N = {n}, got shape "
                         f"{np.shape(features)}")
    grad = np.empty(shape, dtype=np.float64)
    curv = np.empty(shape, dtype=np.float64)
    kind = None
    for m in range(n_models):  # one model at a time: memory O(N C) (+ one block)
        p = get(m)
        k = _head_kind(p)
        if k is None:
            raise ValueError(f"params: model {m} is neither a linear head "
                             f"{list(_LAYOUTS['linear'])} nor an MLP head "
                             f"{list(_LAYOUTS['mlp'])}: it has {list(p)}")
        if kind is not None and k != kind:
            raise ValueError(f"params: model {m} is a {k} head, model 0 a {kind} head")
        kind = k
        grad[m], curv[m] = head_quantities(x, labels, p)
    return grad, curv, kind


def _head_kind(params: Mapping[str, Any]) -> str | None:
    for kind, names in _LAYOUTS.items():
        if set(params) == set(names):
            return kind
    return None


def _in_out_means(values: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for mask in (keep, ~keep):
        k = mask.sum(axis=0)
        with np.errstate(invalid="ignore"):
            out.append(np.where(k > 0, (values * mask).sum(axis=0) / np.maximum(k, 1),
                                np.nan))
    return out[0], out[1]


def vulnerability(logits: Any, keep: np.ndarray, labels: np.ndarray,
                  lira_scores: np.ndarray, *, variance: str = "per_example",
                  fpr: float = 1e-3, features: Any = None,
                  params: Callable[[int], Mapping[str, Any]] | Sequence[Mapping[str, Any]]
                  | None = None, fallback_reason: str = "run has no parameters",
                  head_values: tuple[np.ndarray, np.ndarray, str] | None = None,
                  lira_point: Mapping[str, Any] | None = None) -> Any:
    """Per-example risk table of a run: LiRA vulnerability, memorization, gradient norm,
    input curvature, Hellinger distance and shadow models needed, with their Spearman
    correlations.

    With ``features`` and ``params`` (a run of :func:`miakit.shadow.train_heads`), the
    ``grad_norm`` column is the exact norm of each example's loss gradient with respect to
    all the head's parameters (docs/methods/gradients.md) and ``curvature`` the exact trace
    of its input-loss Hessian (docs/methods/curvature.md), both on the first query view,
    computed for every model one at a time (memory of one model's ``[N, C]`` work) and
    averaged over the models that trained on the example; ``grad_norm_out`` and
    ``curvature_out`` average over the models that did not (they cost nothing more: every
    model is evaluated on every example anyway). Without them (logits only) ``grad_norm`` is
    the logit-gradient proxy ``||softmax(z) - e_y||`` and there is no curvature column. The
    table's ``meta`` says which: ``grad_norm_kind`` ("parameter gradient" or "logit-gradient
    proxy (...)"), ``grad_norm_definition``, ``curvature_kind`` and ``curvature_definition``
    (texts of :data:`GRAD_NORM_DEFINITION` and :data:`CURVATURE_DEFINITION`).

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
    features : array [N, A, D] or [N, D] float, optional
        The heads' inputs (``run.features()``); view 0 is used.
    params : callable or sequence, optional
        Model m's head parameters as ``params(m)`` or ``params[m]`` (e.g.
        ``run.model_params``); see :func:`head_quantities` for the names.
    fallback_reason : str
        Why there are no parameters, for ``grad_norm_kind`` when ``params`` is None.
    head_values : tuple, optional
        :func:`head_matrices` of these ``features`` and ``params``, when the caller has
        already computed them (the audit does, for its curvature attack).
    lira_point : mapping, optional
        The operating point of ``lira_scores`` at ``fpr`` (an entry of the audit's
        ``tpr_at_fpr`` table: threshold, tpr, fpr, n_members, n_nonmembers, resolvable),
        when the caller has already ranked the scores; otherwise they are ranked here.

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
    >>> x = rng.normal(size=(30, 4)) + y[:, None]
    >>> z, info = mk.shadow.train_heads(x, y, keep, return_info=True)
    >>> s = run_attacks(z, keep, y)["lira_online"]["scores"]
    >>> t = vulnerability(z, keep, y, s)                 # logits only: the proxy
    >>> t.meta["grad_norm_kind"], "memorization" in t.columns, "curvature" in t.columns
    ('logit-gradient proxy (run has no parameters)', True, False)
    >>> heads = [{k: v[m] for k, v in info["params"].items()} for m in range(8)]
    >>> t = vulnerability(z, keep, y, s, features=x, params=heads)
    >>> t.meta["grad_norm_kind"], "curvature" in t.columns
    ('parameter gradient', True)
    """
    from miakit import memorization, report

    labels = np.asarray(labels)
    keep = np.asarray(keep, dtype=bool)
    src = _signal_source(logits, labels)
    mem_input = src.memorization_input()  # None: a run of scores, nothing to measure on
    mem = (None if mem_input is None else
           memorization.feldman_zhang(mem_input[0], keep, signal=mem_input[1]))
    x, lab = src.lira_source()
    fit = lira.fit(x, keep, labels=lab, variance=variance)
    if (features is None) != (params is None):
        raise ValueError("features, params: give both (the heads' inputs and parameters) or "
                         "neither")
    meta: dict[str, Any] = {}
    curv = None
    if params is not None:
        grad, curv, kind = (head_values if head_values is not None else
                            head_matrices(features, labels, params, keep.shape))
        meta.update(grad_norm_kind=_KIND[kind][0], curvature_kind=_KIND[kind][1],
                    grad_norm_definition=GRAD_NORM_DEFINITION[kind],
                    curvature_definition=CURVATURE_DEFINITION[kind], head=kind)
    elif (grad := src.grad_proxy()) is None:  # a run of signals: no logits to take it from
        meta.update(grad_norm_kind="not computed (the run holds one signal per example, "
                                   "no logits)",
                    curvature_kind=f"not computed ({fallback_reason})",
                    memorization_kind=("true-class probability, IN mean minus OUT mean"
                                       if mem is not None else "not computed (scores only)"))
    else:  # one model at a time: memory O(N C) beyond the result
        meta.update(grad_norm_kind=f"logit-gradient proxy ({fallback_reason})",
                    curvature_kind=f"not computed ({fallback_reason})",
                    grad_norm_definition=GRAD_NORM_DEFINITION["proxy"],
                    curvature_definition=CURVATURE_DEFINITION["proxy"])
    extra = {}
    grad_in = None
    if grad is not None:
        grad_in, extra["grad_norm_out"] = _in_out_means(grad, keep)
    curv_in = None
    if curv is not None:
        curv_in, extra["curvature_out"] = _in_out_means(curv, keep)
    table = report.vulnerability_table(lira_scores=lira_scores, membership=keep,
                                       memorization=mem, grad_norms=grad_in,
                                       curvature=curv_in, fit=fit, fpr=fpr, extra=extra,
                                       attack_point=lira_point)
    table.meta.update(meta)
    return table


def _clamped_count(message: Warning) -> int:
    try:
        return int(str(message).split()[0])
    except (ValueError, IndexError):
        return 0


def _evaluate(scores: np.ndarray, members: np.ndarray, fprs: tuple[float, ...],
              level: float, *, alpha: float = 0.05, n_tests: int | None = None,
              dp_delta: float = DP_DELTA, max_accuracy: bool = False,
              workspace: Any = None) -> dict[str, Any]:
    """Metrics of one attack's scores ``[M, N]``, every interval clustered by example,
    all from one ranking of the scores (``metrics.RankedScores``)."""
    # NaN scores left out; a workspace's buffers are reused from attack to attack
    ranked = metrics.RankedScores.by_columns(scores, members, workspace)
    n_neg = ranked.n_neg
    points = []
    for f in fprs:
        r = ranked.tpr_at_fpr(f, level)
        points.append({"target_fpr": f, "tpr": r.tpr, "fpr": r.fpr, "tp": r.tp, "fp": r.fp,
                       "n_members": r.n_pos, "n_nonmembers": r.n_neg, "tpr_ci": list(r.ci),
                       "fpr_ci": list(r.fpr_ci), "design_effect": list(r.design_effect),
                       "threshold": r.threshold if math.isfinite(r.threshold) else None,
                       "resolvable": r.resolvable,
                       "unresolvable_reason": r.unresolvable_reason})
    tests = ranked.leakage_test(fprs, alpha, n_tests or len(fprs))
    leakage = [{"target_fpr": t.target_fpr, "tpr": t.tpr, "fpr": t.fpr,
                "tpr_lower": t.tpr_lower, "fpr_upper": t.fpr_upper, "leak": t.leak,
                "min_detectable_tpr": None if math.isnan(t.min_detectable_tpr)
                else t.min_detectable_tpr, "alpha_each": t.alpha_each,
                "resolvable": t.resolvable, "p_value": t.p_value, "test": t.test,
                "threshold": t.threshold if math.isfinite(t.threshold) else None}
               for t in tests]
    a = ranked.auc_ci(level)
    # TPR at FPR <= g on a log grid: the last ROC point whose false-positive count fits,
    # compared in exact integer counts as tpr_at_fpr does.
    grid = np.geomspace(1.0 / n_neg, 1.0, _ROC_POINTS)
    # (integer queries: a float query would make numpy convert the whole count array)
    idx = np.searchsorted(ranked.fp, np.floor(grid * n_neg + 1e-6).astype(np.int64),
                          side="right") - 1
    roc_t = ranked.tp[idx] / ranked.n_pos
    # the curve the figure draws: its vertices at a dense log grid of false-positive
    # counts (a few thousand points instead of one per distinct score)
    counts = np.unique(np.floor(np.geomspace(1.0, n_neg, _PLOT_POINTS))).astype(np.int64)
    vert = np.unique(np.r_[0, np.searchsorted(ranked.fp, counts, side="right") - 1])
    curve = (ranked.fp[vert] / n_neg, ranked.tp[vert] / ranked.n_pos)
    return {"auc": a.auc, "auc_se": a.se, "auc_ci": list(a.ci), "n_members": ranked.n_pos,
            "n_nonmembers": n_neg, "excluded": ranked.excluded, "tpr_at_fpr": points,
            "leakage_test": leakage,
            "empirical_epsilon": _empirical_epsilon(ranked, dp_delta, level),
            "roc": {"fpr": grid.tolist(), "tpr": roc_t.tolist()}, "_curve": curve,
            **({"_max_accuracy": _max_accuracy(ranked)} if max_accuracy else {})}


def _max_accuracy(ranked: Any) -> Any:
    """:func:`miakit.attacks.max_accuracy_threshold` of the losses whose negatives (the
    loss attack's scores) ``ranked`` holds, from that ranking: the best balanced accuracy
    ``1/2 + (TPR - FPR) / 2`` over its points, first best point, threshold in loss units."""
    from miakit import attacks as thresholds

    i = ranked.youden_point  # the first point of the largest TPR - FPR, from the walk
    gain = ranked.tp[i] / ranked.n_pos - ranked.fp[i] / ranked.n_neg
    return thresholds.ThresholdAccuracy(float(0.5 + gain / 2),
                                        -math.inf if i == 0 else float(-ranked.thresholds[i]))


def evaluate(attacks: Mapping[str, Mapping[str, Any]], keep: np.ndarray, *,
             fprs: tuple[float, ...] = DEFAULT_FPRS, level: float = 0.95,
             alpha: float = 0.05, dp_delta: float = DP_DELTA) -> dict[str, dict[str, Any]]:
    """Metrics and leakage tests of every attack's leave-one-out scores.

    Parameters
    ----------
    attacks : mapping
        ``{name: {"scores": [M, N], ...}}`` as :func:`run_attacks` returns (``label``,
        ``settings`` and ``clamped`` are carried over when present).
    keep : array [M, N] bool
        Membership truth of the scored models.
    fprs : tuple of float
        FPR budgets of the TPR table and the leakage tests.
    level : float
        Confidence level of the intervals.
    alpha : float
        Family-wise error rate of the tests (Bonferroni over attacks x FPRs).
    dp_delta : float
        The delta of each attack's empirical epsilon lower bound
        (:func:`miakit.bounds.empirical_epsilon`, clustered by example).

    Returns
    -------
    dict
        Per attack: AUC with its clustered standard error and interval, the TPR table,
        the leakage test points, the downsampled ROC; pass it to :func:`verdict`.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> from miakit.audit import evaluate, verdict
    >>> rng = np.random.default_rng(0)
    >>> keep = mk.shadow.balanced_keep(8, 2000, seed=0)
    >>> res = evaluate({"noise": {"scores": rng.normal(size=keep.shape)}}, keep)
    >>> verdict(res)["leakage"]
    False
    """
    keep = np.asarray(keep, dtype=bool)
    n_tests = len(attacks) * len(fprs)
    ws = metrics.RankWorkspace()
    return {name: _evaluate_attack(name, a, keep, tuple(fprs), level, alpha, n_tests,
                                   dp_delta, ws) for name, a in attacks.items()}


def _evaluate_attack(name: str, a: Mapping[str, Any], keep: np.ndarray,
                     fprs: tuple[float, ...], level: float, alpha: float, n_tests: int,
                     dp_delta: float, workspace: Any = None) -> dict[str, Any]:
    res = _evaluate(np.asarray(a["scores"], dtype=np.float64), keep, fprs, level,
                    alpha=alpha, n_tests=n_tests, dp_delta=dp_delta,
                    max_accuracy=name == "loss", workspace=workspace)
    res.update(label=a.get("label", ATTACKS.get(name, name)),
               settings=a.get("settings", {}), clamped_std=a.get("clamped", 0))
    return res


def _empirical_epsilon(ranked: Any, delta: float, level: float) -> dict[str, Any]:
    from miakit import bounds

    e = bounds.empirical_epsilon_ranked(ranked, delta, level, clustered=True)
    return {"epsilon": e.epsilon, "delta": e.delta, "level": e.level,
            "threshold": e.threshold if math.isfinite(e.threshold) else None,
            "tp": e.tp, "fp": e.fp, "tpr_lower": e.tpr_lower, "fpr_upper": e.fpr_upper,
            "side": e.side, "n_thresholds": e.n_thresholds,
            "method": "Clopper-Pearson bounds made cluster-robust over examples "
                      "(Korn-Graubard) at a grid of operating points fixed by their "
                      "counts, Bonferroni over the grid"}


VERDICT_METHOD = (
    "for every attack and FPR budget f, the threshold that calls a share f of all scores "
    "members (chosen without looking at membership); were membership without effect, "
    "which of the called scores are members' would be chance alone: of a complementary "
    "model pair with one called score of an example, the member's with probability 1/2 "
    "(paired sign test, exact), otherwise hypergeometric within each example "
    "(Mantel-Haenszel); leakage is declared when the p-value of the members called is at "
    "most alpha / number of tests (Bonferroni over attacks x FPRs, so the family-wise "
    "error is at most alpha). Conditioning on each example's called scores removes its "
    "difficulty from the test, so a leak carried by a few examples is found")


def privacy_summary(results: Mapping[str, Mapping[str, Any]], dp_epsilon: float | None,
                    dp_delta: float) -> dict[str, Any]:
    """Every attack's empirical epsilon, the largest, and how it compares with a claim.

    Examples
    --------
    >>> from miakit.audit import privacy_summary
    >>> r = {"a": {"label": "A", "empirical_epsilon": {"epsilon": 0.7}},
    ...      "b": {"label": "B", "empirical_epsilon": {"epsilon": 1.9}}}
    >>> p = privacy_summary(r, 1.0, 1e-5)
    >>> p["max_empirical_epsilon"], p["attack"], p["consistent"]
    (1.9, 'b', False)
    """
    eps = {k: r["empirical_epsilon"]["epsilon"] for k, r in results.items()
           if r.get("empirical_epsilon")}
    best = max(eps, key=eps.get) if eps else None
    out: dict[str, Any] = {"empirical_epsilon": eps, "delta": dp_delta,
                           "max_empirical_epsilon": eps[best] if best else None,
                           "attack": best, "claimed_epsilon": dp_epsilon}
    if dp_epsilon is not None and best is not None:
        out["consistent"] = bool(eps[best] <= dp_epsilon)
        out["memorization_bound"] = float(-math.expm1(-dp_epsilon))
    return out


def strongest(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The attack with the highest TPR at the lowest FPR budget (AUC breaks ties).

    Examples
    --------
    >>> from miakit.audit import strongest
    >>> r = {"a": {"label": "A", "auc": 0.6, "tpr_at_fpr": [{"target_fpr": 0.01, "tpr": 0.1}]},
    ...      "b": {"label": "B", "auc": 0.7, "tpr_at_fpr": [{"target_fpr": 0.01, "tpr": 0.05}]}}
    >>> strongest(r)["attack"]
    'a'
    """
    if not results:
        return None

    def key(item: tuple[str, Mapping[str, Any]]) -> tuple[float, float]:
        points = item[1]["tpr_at_fpr"]
        low = min(points, key=lambda p: p["target_fpr"]) if points else {"tpr": 0.0}
        return (low["tpr"], item[1]["auc"])

    name, r = max(results.items(), key=key)
    points = r["tpr_at_fpr"]
    low = min(points, key=lambda p: p["target_fpr"]) if points else None
    return {"attack": name, "label": r["label"], "auc": r["auc"],
            "target_fpr": low["target_fpr"] if low else None,
            "tpr": low["tpr"] if low else None,
            "rule": "highest TPR at the lowest FPR budget, then highest AUC"}


def verdict(results: Mapping[str, Mapping[str, Any]], alpha: float = 0.05) -> dict[str, Any]:
    """Is there membership leakage? A test over every attack and FPR of an audit.

    Parameters
    ----------
    results : mapping of attack name to its metrics
        Each with ``"label"`` and ``"leakage_test"`` (the points of
        :func:`miakit.metrics.leakage_test`, as :func:`audit` stores them, computed with
        ``n_tests`` = attacks x FPRs).
    alpha : float
        The family-wise error rate the tests were run at.

    Returns
    -------
    dict
        ``leakage`` (bool); ``evidence``: every point that declares leakage, the lowest
        FPR first and, at one FPR, the smallest p-value first (then the largest TPR lower
        bound); ``strongest``: the
        first of them or None; ``detectable``: per FPR budget, the smallest TPR excess
        over the budget that some attack's counts could have declared;
        ``n_tests``, ``alpha`` and ``method``.

    Examples
    --------
    >>> from miakit.audit import verdict
    >>> pt = {"target_fpr": 0.01, "tpr": 0.05, "fpr": 0.01, "tpr_lower": 0.04,
    ...       "fpr_upper": 0.012, "leak": True, "min_detectable_tpr": 0.02,
    ...       "alpha_each": 0.05, "resolvable": True}
    >>> v = verdict({"loss": {"label": "Loss threshold", "leakage_test": [pt]}})
    >>> v["leakage"], v["strongest"]["attack"], v["detectable"][0]["min_excess"]
    (True, 'loss', 0.01)
    """
    evidence, n_tests = [], 0
    budgets: dict[float, list[float]] = {}
    for name, r in results.items():
        for p in r["leakage_test"]:
            n_tests += 1
            if p["leak"]:
                evidence.append({"attack": name, "label": r["label"], **p})
            if p["resolvable"] and p["min_detectable_tpr"] is not None:
                budgets.setdefault(p["target_fpr"], []).append(
                    p["min_detectable_tpr"] - p["target_fpr"])
            else:
                budgets.setdefault(p["target_fpr"], [])
    # the lowest budget first, there the most significant (smallest p-value; then the
    # largest TPR lower bound)
    evidence.sort(key=lambda e: (e["target_fpr"], e.get("p_value", 1.0), -e["tpr_lower"]))
    detectable = [{"target_fpr": f, "min_excess": round(min(v), 12) if v else None}
                  for f, v in sorted(budgets.items(), reverse=True)]
    return {"leakage": bool(evidence), "strongest": evidence[0] if evidence else None,
            "evidence": evidence, "detectable": detectable, "n_tests": n_tests,
            "alpha": alpha, "method": VERDICT_METHOD}


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
          extra: dict | None = None) -> dict[str, Any]:
    """Attack every model of a finished run; optionally write the report and figures.

    Parameters
    ----------
    run : miakit.shadow.Run
        A complete run (see :func:`miakit.shadow.open_run`).
    out_dir : path, optional
        Where to write (created if needed) ``report.json``, the same as one self-contained
        page ``report.html`` (:func:`miakit.report.to_html`), ``vulnerability.csv`` and,
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
    >>> list(report["attacks"]) == list(mk.audit.ATTACKS)
    True
    """
    t0 = time.perf_counter()
    if variance not in ("auto", "per_example", "global"):
        raise ValueError(f"variance: expected 'auto', 'per_example' or 'global', "
                         f"got {variance!r}")
    if run.n_models < 4:
        raise ValueError(f"run {run.path}: leave-one-out LiRA needs at least 4 shadow models, "
                         f"the run has {run.n_models}")
    run.require_finished()  # every model, or an error listing the missing ones
    keep, labels = run.keep, run.labels
    var = ("global" if run.n_models < 64 else "per_example") if variance == "auto" else variance
    check_choice(references, "references", ["balanced", "all"])
    check_probability(alpha, "alpha")
    if dp_epsilon is not None and not (float(dp_epsilon) > 0 and math.isfinite(dp_epsilon)):
        raise ValueError(f"dp_epsilon: expected a positive finite epsilon, got {dp_epsilon!r}")
    if not 0.0 <= dp_delta < 1.0:
        raise ValueError(f"dp_delta: expected a value in [0, 1), got {dp_delta!r}")
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
    results: dict[str, dict[str, Any]] = {}
    lira_scores = None
    phase = {"signals": 0.0, "attacks": 0.0, "metrics": 0.0, "per_example_table": 0.0,
             "plots": 0.0, "writing": 0.0}
    # Every signal the attacks and the report read, from one pass over the model files:
    # one model's logits in memory at a time, and no stacked copy of them on disk.
    t = time.perf_counter()
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
        from miakit import attacks as thresholds

        mat = thresholds.max_accuracy_threshold(-src.score("loss"), keep)
    phase["signals"] = time.perf_counter() - t
    scored = iter_attacks(src, keep, labels, variance=var, references=references,
                          attacks=others) if others else iter(())
    while True:
        t = time.perf_counter()
        name, entry = next(scored, (None, None))
        if run_curvature and name is None:
            name, entry = "lira_curvature", curvature_attack(heads[1], keep, variance=var,
                                                             references=references)
            run_curvature = False
        phase["attacks"] += time.perf_counter() - t
        if name is None:
            break
        t = time.perf_counter()
        # (no shared RankWorkspace: it would hold 28 bytes per score between attacks,
        # more memory than the page faults it saves are worth time here)
        results[name] = _evaluate_attack(name, entry, keep, fprs, level, alpha, n_tests,
                                         dp_delta)
        phase["metrics"] += time.perf_counter() - t
        if name == "lira_online":
            lira_scores = entry["scores"]
        del entry
    results = {name: results[name] for name in want if name in results}
    from miakit import __version__

    correct, loss = src.first_view()
    report = {
        "miakit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": {"path": str(run.path), "n_models": run.n_models,
                "n_examples": run.n_examples, "n_augmentations": run.n_augmentations,
                "n_classes": run.n_classes, "logits_dtype": str(run.logits_dtype),
                "config": run.config, "metadata": run.meta.get("metadata", {}),
                "fingerprint": run.meta.get("fingerprint", {})},
        "models": _model_quality(correct, loss, keep),
        "evaluation": {"protocol": "each model is the target once, attacked with the "
                                   "statistics of the other models (leave-one-out)",
                       "references": references_info(keep, references),
                       "fprs": list(fprs), "confidence_level": level},
        "attacks": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
                    for k, v in results.items()},
        "baselines": _baselines(correct, keep, results["loss"]["_max_accuracy"]
                                if "loss" in results else mat),
        "verdict": verdict(results, alpha),
    }
    report["strongest_attack"] = strongest(results)
    report["privacy"] = privacy_summary(results, dp_epsilon, dp_delta)
    lira_point = None
    if lira_scores is None:
        lira_scores = run_attacks(src, keep, labels, variance=var, references=references,
                                  attacks=["lira_online"])["lira_online"]["scores"]
    else:  # the table's attack threshold is the one the TPR table already found
        lira_point = next(p for p in results["lira_online"]["tpr_at_fpr"]
                          if p["target_fpr"] == min(fprs))
    t = time.perf_counter()
    table = vulnerability(src, keep, labels, lira_scores,
                          variance=var, fpr=min(fprs), features=features, params=params,
                          fallback_reason=reason, head_values=heads, lira_point=lira_point)
    report["vulnerability"] = table.to_dict(per_example=False)
    phase["per_example_table"] = time.perf_counter() - t
    report.update(extra or {})
    timing = report.setdefault("timing_s", {})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"report": str(out / "report.json"), "html": str(out / "report.html"),
                 "vulnerability": str(table.to_csv(out / "vulnerability.csv"))}
        if plot:
            from miakit.report import plot_roc as roc_figure
            from miakit.report import save_plots

            t = time.perf_counter()
            roc_figure(results, out / "roc.png", title=_title(report),
                     dp=None if dp_epsilon is None else (dp_epsilon, dp_delta))
            files["roc"] = str(out / "roc.png")
            for path in save_plots(table, out,
                                   against=("memorization", "grad_norm", "curvature")):
                files[path.stem] = str(path)
            phase["plots"] = time.perf_counter() - t
        report["files"] = files
    # the time of each phase, the audit's own, and with the training before it (when the
    # caller timed one) the whole job's
    timing.update({k: round(v, 3) for k, v in phase.items()})
    timing["audit"] = round(time.perf_counter() - t0, 3)
    timing["total"] = round(timing.get("training", 0.0) + timing["audit"], 3)
    if out_dir is not None:
        from miakit.report import write_html
        from miakit.shadow._files import write_json

        t = time.perf_counter()
        write_json(out / "report.json", report, "the audit report")
        write_html(report, out / "report.html")  # the same, as a page with the figures
        timing["writing"] = round(time.perf_counter() - t, 3)  # in the returned report
    return report


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
    from miakit.shadow import is_paired

    paired = is_paired(keep)
    if references == "all":
        return {"rule": "all", "paired_keep": paired, "partner": None,
                "description": "the target model only is left out; a member then has one "
                               "IN reference fewer and a non-member one OUT reference "
                               "fewer (biased against members with few models)"}
    partner = ("pair partner (complementary pairs 2i, 2i + 1)" if paired else
               "fixed rule: the pair partner k ^ 1 where it is on the other side, else the "
               "first model after the target, cyclically, that is")
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


def plot_roc(results: dict[str, dict], path: str | Path, title: str = "",
             dp: tuple[float, float] | None = None) -> None:
    """The audit's ROC figure: :func:`miakit.report.plot_roc` (kept here for callers of
    the audit module).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from miakit.audit import plot_roc
    >>> fpr = np.array([0.0, 0.01, 0.1, 1.0]); tpr = np.array([0.0, 0.05, 0.3, 1.0])
    >>> res = {"a": {"label": "A", "auc": 0.7, "n_nonmembers": 100, "_curve": (fpr, tpr)}}
    >>> plot_roc(res, tempfile.mkdtemp() + "/roc.png")
    """
    from miakit import report

    report.plot_roc(results, path, title=title, dp=dp)


def _pct3(x: float) -> str:
    """A percentage with three significant digits (bounds compared side by side)."""
    return f"{100 * x:.3g}%"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.001 else f"{100 * x:.2f}%"


def summary_sections(report: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an audit report's summary, for :func:`summarize` and other renderers
    (:func:`miakit.report.to_html`).

    Returns
    -------
    dict
        ``run`` (lines describing the run and its models), ``pairs`` (the line counting
        the attacked pairs, or None), ``table`` (``(header, rows)`` of the attack table,
        cells as text, or None), ``notes`` (how to read the table, the references, the
        strongest attack, the baselines), ``verdict``, ``privacy``, ``risk`` (the
        per-example correlations) and ``files``: lists of lines.

    Examples
    --------
    >>> from miakit.audit import summary_sections
    >>> rep = {"run": {"n_models": 4, "n_examples": 10, "n_augmentations": 1,
    ...                "n_classes": 2, "config": {"head": "linear"}, "metadata": {}},
    ...        "models": {"train_accuracy": 1.0, "test_accuracy": 0.9},
    ...        "evaluation": {"confidence_level": 0.95}, "attacks": {}}
    >>> summary_sections(rep)["run"][0]
    'miakit audit: run, 4 shadow models (linear head), 10 examples x 1 query view, 2 classes'
    """
    r, q = report["run"], report["models"]
    name = r["metadata"].get("dataset", "run")
    model = _model_name(r["config"])
    out: dict[str, Any] = {
        "run": [f"miakit audit: {name}, {r['n_models']} shadow models ({model}), "
                f"{r['n_examples']} examples x {r['n_augmentations']} query "
                f"view{'s' if r['n_augmentations'] != 1 else ''}, "
                + (f"{r['n_classes']} classes" if not r["config"].get("signal") else
                   f"one {r['config']['signal']} value each"),
                (f"shadow models: train accuracy {_pct(q['train_accuracy'])}, test accuracy "
                 f"{_pct(q['test_accuracy'])} (mean over models; members vs non-members)"
                 if q.get("train_accuracy") is not None else
                 f"shadow models: imported {r['config'].get('signal')} values, no logits "
                 "(no accuracy)")],
        "pairs": None, "table": None, "notes": [], "verdict": [], "privacy": [], "risk": [],
        "files": []}
    # the attacks in the audit's order (report.json stores its keys sorted)
    known = list(ATTACKS)
    attacks = {k: report["attacks"][k] for k in sorted(
        report["attacks"], key=lambda k: (known.index(k) if k in known else len(known), k))}
    if attacks:
        first = next(iter(attacks.values()))
        out["pairs"] = (f"each model attacked with the other {r['n_models'] - 1}: "
                        f"{first['n_members']:,} member and {first['n_nonmembers']:,} "
                        "non-member pairs per attack")
        fprs = [p["target_fpr"] for p in first["tpr_at_fpr"]]
        head = ["attack", "AUC"] + [f"TPR @ FPR {100 * f:g}%" for f in fprs]
        rows = []
        for a in attacks.values():
            cells = [a["label"], f"{a['auc']:.3f}"]
            for p in a["tpr_at_fpr"]:
                lo, hi = p["tpr_ci"]
                if p["resolvable"]:
                    cells.append(f"{_pct(p['tpr'])} [{_pct(lo)}, {_pct(hi)}]")
                else:  # not a measurement: no number (the reason is in the notes)
                    cells.append("not resolvable*")
            rows.append(cells)
        out["table"] = (head, rows)
        level = report["evaluation"]["confidence_level"]
        notes = out["notes"]
        notes.append(f"TPR: share of members caught at the largest threshold whose FPR is at "
                     f"most the target; [{100 * level:.0f}% interval, cluster-robust over "
                     "examples (Korn-Graubard), as wide as the examples that carry the rate "
                     "allow].")
        why = {}
        for a in attacks.values():
            for p in a["tpr_at_fpr"]:
                if not p["resolvable"]:
                    reason = p.get("unresolvable_reason") or (
                        "fewer non-members than 1/FPR: not one false positive fits the budget")
                    why.setdefault(reason, []).append(
                        f"{a['label']} at FPR {100 * p['target_fpr']:g}%")
        for reason, where in why.items():
            notes.append(f"*: not resolvable ({', '.join(where)}): {reason}.")
        refs = report["evaluation"].get("references")
        if refs:
            notes.append(f"leave-one-out references: {refs['rule']}"
                         + (f" (left out beside the target: {refs['partner']})"
                            if refs.get("partner") else " (target only; biased)"))
        best = report.get("strongest_attack")
        if best and best.get("tpr") is not None:
            notes.append(f"strongest attack: {best['label']} (TPR {_pct(best['tpr'])} at FPR "
                         f"{100 * best['target_fpr']:g}%, AUC {best['auc']:.3f})")
        base = report.get("baselines") or {}
        parts = [f"{what} {_pct(base[key]['accuracy'])}" for key, what in (
            ("bayes", "correct means member"), ("max_accuracy_threshold", "best loss threshold"))
            if key in base]
        if parts:
            notes.append("baselines (balanced accuracy): " + ", ".join(parts))
        out["verdict"] = _verdict_lines(report.get("verdict"), level)
        out["privacy"] = _privacy_lines(report.get("privacy"), attacks, level)
    vul = report.get("vulnerability")
    if vul and vul.get("spearman"):
        col = "tpr_at_fpr" if "tpr_at_fpr" in vul["spearman"] else vul["columns"][0]
        rho = vul["spearman"][col]
        parts = [f"{c} {rho[c]:+.2f}" for c in ("memorization", "grad_norm", "curvature",
                                                 "hellinger") if rho.get(c) is not None]
        if parts:
            out["risk"].append(f"per-example risk: Spearman correlation of LiRA's per-example "
                               f"{col} with " + ", ".join(parts))
            others = [f"{c} {rho[c]:+.2f}" for c in ("grad_norm_out", "curvature_out")
                      if rho.get(c) is not None]
            meta = vul.get("meta", {})
            if meta.get("grad_norm_kind"):
                how = (f"grad_norm: {meta['grad_norm_kind']}, curvature: "
                       f"{meta.get('curvature_kind')}")
                if meta.get("head"):
                    how += f" ({'MLP' if meta['head'] == 'mlp' else 'linear'} head, exact)"
                out["risk"].append(f"  {how}; first query view, mean over the models that "
                                   "trained on the example" + (
                                       f"; over the others: {', '.join(others)}"
                                       if others else ""))
    files = report.get("files")
    if files:
        out["files"].append("wrote " + ", ".join(str(v) for v in files.values()))
    return out


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
    sec = summary_sections(report)
    lines = list(sec["run"])
    if sec["table"] is not None:
        lines.append(sec["pairs"])
        head, rows = sec["table"]
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
        lines.append("")
        for row in [head, *rows]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        lines.append("")
        lines += sec["notes"] + sec["verdict"] + sec["privacy"]
    lines += sec["risk"] + sec["files"]
    return "\n".join(lines)


def _verdict_lines(v: dict | None, level: float) -> list[str]:
    if not v:
        return []
    family = (f"family-wise {100 * (1 - v['alpha']):.0f}% over {v['n_tests']} tests "
              "(attacks x FPRs), members against non-members within each example")
    if v["leakage"]:
        e = v["strongest"]
        p = e.get("p_value")
        why = (f"p = {p:.2g} by the {e.get('test', 'test')}" if p is not None else
               f"TPR lower bound {_pct3(e['tpr_lower'])} > FPR upper bound "
               f"{_pct3(e['fpr_upper'])}")
        return [f"verdict: membership leakage detected. {e['label']} calls "
                f"{_pct(e['tpr'])} of members and {_pct(e['fpr'])} of non-members at its "
                f"{100 * e['target_fpr']:g}% threshold ({why}; {family}; "
                f"{len(v['evidence'])} of {v['n_tests']} points declare it)."]
    limits = ", ".join(f"+{100 * d['min_excess']:.2f} points at FPR {100 * d['target_fpr']:g}%"
                       for d in v["detectable"] if d["min_excess"] is not None)
    return [f"verdict: no membership leakage detected ({family}).",
            "  smallest TPR excess over the FPR these counts could have detected: "
            + (limits or "none (too few members and non-members)") + "."]


def _privacy_lines(p: dict | None, attacks: dict, level: float) -> list[str]:
    if not p or p.get("max_empirical_epsilon") is None:
        return []
    parts = ", ".join(f"{attacks[k]['label']} {v:.2f}" for k, v in
                      sorted(p["empirical_epsilon"].items(), key=lambda kv: -kv[1])[:4])
    lines = [f"empirical epsilon (lower bounds at delta {p['delta']:g}, {100 * level:.0f}% "
             f"confidence): {parts}"]
    claim = p.get("claimed_epsilon")
    if claim is not None:
        if p["consistent"]:
            lines.append(f"  consistent with the claimed ({claim:g}, {p['delta']:g})-DP: no "
                         f"attack proves more than epsilon {p['max_empirical_epsilon']:.2f}; "
                         f"under the claim, memorization is at most "
                         f"{p['memorization_bound']:.3f}")
        else:
            lines.append(f"  INCONSISTENT with the claimed ({claim:g}, {p['delta']:g})-DP: "
                         f"{attacks[p['attack']]['label']} proves epsilon > "
                         f"{p['max_empirical_epsilon']:.2f} with {100 * level:.0f}% "
                         "confidence")
    return lines


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
