"""The audit's per-example table: which examples are at risk, and why.

The report's per-example vulnerability table (:func:`vulnerability`) joins LiRA's
per-example TPR with memorization, gradient norm, input curvature and the Hellinger
distance. What the gradient norm and curvature are depends on what the run stores:

- runs of :func:`miakit.shadow.train_heads` store every head's parameters and the
  features: ``grad_norm`` is the exact per-example norm of the loss gradient with
  respect to all the head's parameters, ``curvature`` the exact trace of the input-loss
  Hessian (closed forms for linear and one-hidden-layer ReLU heads: :func:`head_quantities`
  of one head, :func:`head_matrices` of every model), per model, averaged
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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from miakit import lira
from miakit.audit.attacks import (
    _check_both_sides,
    _check_logits_inputs,
    _check_variance,
    _signal_source,
    _signal_types,
)

__all__ = ["GRAD_NORM_DEFINITION", "CURVATURE_DEFINITION", "head_quantities",
           "head_matrices", "vulnerability"]

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

    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping of a head's parameters, got "
                        f"{type(params).__name__}")
    kind = _head_kind(params)
    if kind is None:
        raise ValueError(f"params: expected a linear head {list(_LAYOUTS['linear'])} or an "
                         f"MLP head {list(_LAYOUTS['mlp'])}, got {list(params)}")
    x = _host_features(features, ndim=2)
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
    x = _host_features(features, ndim=(2, 3))
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
    if kind is None:
        raise ValueError(f"shape: expected at least one model, got {shape}")
    return grad, curv, kind


def _host_features(features: Any, ndim: int | tuple[int, ...]) -> np.ndarray:
    """Floating-point features as a numpy array on the host (a torch tensor's bfloat16
    read exactly as float32); other dtypes and complex values are refused, naming
    ``features``."""
    from miakit import _arrays as ar
    from miakit._validation import check_float_array

    return np.asarray(ar.to_numpy(check_float_array(features, "features", ndim=ndim)))


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
    miakit.vulnerability.VulnerabilityTable

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
    from miakit import _arrays as ar
    from miakit import memorization
    from miakit import vulnerability as report
    from miakit._validation import check_float_array, check_probability

    if isinstance(logits, _signal_types()):  # the audit's own sources: checked there
        keep = np.asarray(keep, dtype=bool)
    else:
        logits, keep = _check_logits_inputs(logits, keep, labels)
        _check_both_sides(keep)
    labels = np.asarray(ar.to_numpy(ar.as_array(labels, "labels")))
    # LiRA's scores are likelihood ratios: booleans or integers are not scores of it
    lira_scores = np.asarray(ar.to_numpy(check_float_array(lira_scores, "lira_scores")),
                             dtype=np.float64)
    if lira_scores.shape != keep.shape:
        raise ValueError(f"lira_scores: expected shape {keep.shape} (models, examples), got "
                         f"{lira_scores.shape}")
    _check_variance(variance)
    fpr = check_probability(fpr, "fpr")
    src = _signal_source(logits, labels)
    mem_input = src.memorization_input()  # None: a run of scores, nothing to measure on
    mem = (None if mem_input is None else
           memorization.feldman_zhang(mem_input[0], keep, signal=mem_input[1],
                                      on_empty="nan"))  # NaN where no model is IN (or OUT)
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

