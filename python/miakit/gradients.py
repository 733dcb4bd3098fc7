"""Per-example gradient norms (docs/methods/gradients.md).

``g_n = grad_theta loss(f_theta(x_n), y_n)`` for the per-example (not batch-mean) loss,
over a chosen parameter set; both functions return ``||g_n||_2``.

- :func:`head_norms`: the closed form for a linear-softmax head on features,
  ``||g||^2 = ||p - e_y||^2 (||x||^2 + 1)`` (the 1 only with a bias), in a compiled kernel.
- :func:`mlp_head_norms`: the closed form for a one-hidden-layer ReLU head,
  ``||g||^2 = ||p - e_y||^2 (||h||^2 + 1) + ||delta||^2 (||x||^2 + 1)``, in float64.
- :func:`per_example_norms`: any PyTorch model. One forward pass with hooks records each
  supported layer's input and one backward pass its output gradient; per-layer rules then
  give the per-example squared norms without materializing per-example gradients where
  a cheaper form exists (Opacus-style registry, :data:`RULES`):

  ============================  ===================================================
  layer                         rule
  ============================  ===================================================
  ``nn.Linear``                 ghost norm ``sum_{t,s} (A A^T)_{ts} (B B^T)_{ts}``
                                or the materialized ``||B^T A||_F^2``, whichever is
                                cheaper per call (sequence inputs); ``||a||^2 ||b||^2``
                                for plain [N, d] inputs
  ``nn.Conv2d``                 the Linear rule on ``unfold``-ed patches (any stride,
                                padding, dilation, groups, padding mode)
  ``nn.Embedding``              per-example sums of the output gradients of equal tokens
  ``nn.LayerNorm``              ``sum_t B_t * xhat_t`` (and ``sum_t B_t``), exact
  ``nn.GroupNorm``              the same, per channel
  ``nn.BatchNorm{1,2,3}d``      eval mode only: a fixed affine map, per channel
  anything else                 ``torch.func.vmap(grad)`` (the result names the layers)
  ============================  ===================================================

  A layer called several times in one forward pass (weight sharing within a layer) is
  handled exactly: its calls are concatenated along the sequence axis. A parameter shared
  between layers goes to the fallback.

Models in training mode that contain BatchNorm or dropout layers are switched to eval
mode for the computation, with a ``UserWarning``, and restored afterwards: per-example
gradients are undefined when examples interact through batch statistics, and dropout
would make them random. BatchNorm layers without running statistics
(``track_running_stats=False``) use batch statistics even in eval mode and are rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar
from miakit._ghost_norms import (  # noqa: F401 - the kernel wrappers, imported from here too
    RULES,
    _find_rule,
    _outer_sq_norms,
    _outer_sq_norms_torch,
    _Rule,
    ghost_norms,
)
from miakit._models import (
    check_head,
    check_mlp_head,
    check_model_args,
    check_per_example_loss,
    check_result_finite,
    eval_mode,
    like_features,
    mlp_blocks,
    mlp_forward,
    raise_head_status,
)
from miakit._validation import check_labels

__all__ = ["head_norms", "mlp_head_norms", "ghost_norms", "per_example_norms", "GradNorms",
           "RULES"]


# ----------------------------------------------------------------------------- head


def head_norms(features: Any, labels: Any, weight: Any, bias: Any = None) -> Any:
    """Per-example gradient norms of a linear-softmax head, in closed form.

    For logits ``z = W x + b`` and the cross-entropy loss of label y, the gradient with
    respect to ``(W, b)`` is ``(p - e_y) (x, 1)^T``, so
    ``||g||^2 = ||p - e_y||^2 (||x||^2 + 1)`` (the ``+ 1`` only with a bias). Computed in
    float64 by a compiled kernel (CPU or CUDA), one pass per example; ``||p - e_y||`` is
    the :func:`miakit.signals.grad_norm` of the head's logits, so confident examples keep
    full relative accuracy.

    Parameters
    ----------
    features : array [N, d] float
        Inputs of the head (penultimate activations), float16 to float64, any strides.
    labels : array [N] int
        True classes in ``[0, C)``.
    weight : array [C, d] float
        The head's weight (e.g. ``nn.Linear.weight``).
    bias : array [C] float, optional
        The head's bias; ``None`` for a head without one.

    Returns
    -------
    array [N] float64
        Same array type and device as ``features``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> x = np.array([[1.0, 2.0]]); w = np.zeros((3, 2))      # uniform p = (1/3, 1/3, 1/3)
    >>> g = mk.gradients.head_norms(x, np.array([0]), w, np.zeros(3))
    >>> bool(np.isclose(g[0] ** 2, (4 / 9 + 2 / 9) * (5 + 1)))
    True
    """
    x, w, bias = check_head(features, weight, bias)
    n = ar.shape_of(x)[0]
    c = ar.shape_of(w)[0]
    lab = ar.as_array(labels, "labels")
    if ar.shape_of(lab) != (n,):
        raise ValueError(f"labels: expected shape ({n},) (one per feature row), got "
                         f"{ar.shape_of(lab)}")
    lab = ar.as_int64(ar.match_device(check_labels(lab, c), x, "labels", "features"))
    out = ar.empty_like_device(x, (n,), "float64")
    st = _C.head(ar.kernel_arg(x), ar.kernel_arg(lab), ar.kernel_arg(w),
                 None if bias is None else ar.kernel_arg(bias), ar.kernel_arg(out),
                 _C.HeadQuantity.grad_norm, ar.stream_of(x))
    raise_head_status(st, c)
    return check_result_finite(out, {"features": x, "weight": w, "bias": bias},
                               "gradient norms")


# ------------------------------------------------------------------------- MLP head


def mlp_head_norms(features: Any, labels: Any, weight1: Any, bias1: Any, weight2: Any,
                   bias2: Any) -> Any:
    """Per-example gradient norms of a one-hidden-layer ReLU head, in closed form.

    For ``a = W1 x + b1``, ``h = relu(a)``, logits ``z = W2 h + b2`` and the cross-entropy
    of label y, with ``g = p - e_y`` and ``delta = (W2^T g) * 1[a > 0]``, the gradient is
    ``(g h^T, g)`` for the second layer and ``(delta x^T, delta)`` for the first, so over
    all four parameters
    ``||grad||^2 = ||g||^2 (||h||^2 + 1) + ||delta||^2 (||x||^2 + 1)``
    (each ``+ 1`` only with that layer's bias). ReLU's derivative at 0 is taken as 0, as
    autograd does. Computed in float64 (numpy) in blocks of examples; ``1 - p_y`` is
    summed from the other classes, so confident examples keep full relative accuracy.

    Parameters
    ----------
    features : array [N, D] float
        Inputs of the head (numpy, or torch on any device).
    labels : array [N] int
        True classes in ``[0, C)``.
    weight1 : array [H, D] float
        First layer (``nn.Linear`` layout).
    bias1 : array [H] float or None
    weight2 : array [C, H] float
        Second layer.
    bias2 : array [C] float or None

    Returns
    -------
    array [N] float64
        numpy, or a torch tensor on the device of a torch ``features``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> x = np.array([[1.0, 2.0]]); w1 = np.eye(2); w2 = np.zeros((3, 2))   # p uniform
    >>> g = mk.gradients.mlp_head_norms(x, np.array([0]), w1, np.zeros(2), w2, np.zeros(3))
    >>> h2 = 1 + 4                        # h = x; W2 = 0, so the first layer has no gradient
    >>> bool(np.isclose(g[0] ** 2, (4 / 9 + 2 / 9) * (h2 + 1)))
    True
    """
    x, w1, b1, w2, b2 = check_mlp_head(features, weight1, bias1, weight2, bias2)
    n = ar.shape_of(x)[0]
    c, h = w2.shape
    lab = ar.to_numpy(check_labels(ar.as_array(labels, "labels"), c))
    if lab.shape != (n,):
        raise ValueError(f"labels: expected shape ({n},) (one per feature row), got "
                         f"{lab.shape}")
    lab = lab.astype(np.int64)
    out = np.empty(n, dtype=np.float64)
    for sl, xb in mlp_blocks(x, 2 * h + c + ar.shape_of(x)[1]):
        active, hid, p = mlp_forward(xb, w1, b1, w2, b2)
        rows = np.arange(len(xb))
        y = lab[sl]
        g = p
        g[rows, y] = 0.0
        g[rows, y] = -g.sum(axis=1)  # -(1 - p_y), from the other classes
        delta = np.where(active, g @ w2, 0.0)
        sq = (g * g).sum(1) * ((hid * hid).sum(1) + (b2 is not None))
        sq += (delta * delta).sum(1) * ((xb * xb).sum(1) + (b1 is not None))
        out[sl] = np.sqrt(sq)
    check_result_finite(out, {"features": x, "weight1": w1, "bias1": b1, "weight2": w2,
                              "bias2": b2}, "gradient norms")
    return like_features(out, x)


# ---------------------------------------------------------------- any torch model


@dataclass
class GradNorms:
    """Per-example gradient norms of a model, with how each layer was handled.

    Attributes
    ----------
    norms : torch.Tensor [N]
        ``||g_n||_2`` over the chosen parameters, on the model's device, in the model's
        floating-point dtype.
    rules : dict of str to str
        For every layer (qualified module name) that owns chosen parameters, the rule used:
        ``"linear"``, ``"conv2d"``, ``"embedding"``, ``"layernorm"``, ``"groupnorm"``,
        ``"batchnorm_eval"``, or ``"vmap"`` for the ``torch.func`` fallback.
    fallback_layers : list of str
        The layers that used the ``vmap(grad)`` fallback (empty when every layer had a rule).
    switched_to_eval : bool
        The model was in training mode with BatchNorm/dropout and was evaluated in eval
        mode (a warning was issued).
    """

    norms: Any
    rules: dict[str, str] = field(default_factory=dict)
    fallback_layers: list[str] = field(default_factory=list)
    switched_to_eval: bool = False

    def __array__(self, dtype=None, copy=None):
        out = self.norms.detach().cpu().numpy()
        return out if dtype is None else out.astype(dtype)

    def __len__(self) -> int:
        return int(self.norms.shape[0])

    def __getitem__(self, item):
        return self.norms[item]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.norms.shape)


def _choose_params(model, params) -> dict[int, Any]:
    """id -> parameter of the chosen parameters (all trainable ones by default)."""
    torch = ar.import_torch()
    if params is None:
        chosen = [p for p in model.parameters() if p.requires_grad]
    else:
        named = dict(model.named_parameters())
        chosen = []
        for p in (params.values() if isinstance(params, dict) else params):
            if isinstance(p, str):
                if p not in named:
                    raise ValueError(f"params: {p!r} is not a parameter name of the model")
                p = named[p]
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"params: expected parameters or parameter names, got "
                                f"{type(p).__name__}")
            chosen.append(p)
        owned = {id(p) for p in model.parameters()}
        for p in chosen:
            if id(p) not in owned:
                raise ValueError("params: every parameter must belong to the model")
    if not chosen:
        raise ValueError("params: no parameters to differentiate (none requires grad)")
    return {id(p): p for p in chosen}


def _slice(x, s: slice):
    return tuple(t[s] for t in x) if isinstance(x, (tuple, list)) else x[s]


def _call(model, x):
    return model(*x) if isinstance(x, (tuple, list)) else model(x)


_CAPTURE_FN = None


def _capture_fn():
    """An autograd Function that passes a layer's output through as a copy and records the
    gradient that reaches it. Its second input, a scalar leaf (the anchor), gives the
    backward pass a target: differentiating with respect to the anchor runs backward
    through every recorded layer and no further, and forms no parameter gradient. The copy
    keeps the record exact when a later layer modifies the output in place."""
    global _CAPTURE_FN
    if _CAPTURE_FN is None:
        torch = ar.import_torch()

        class CaptureFn(torch.autograd.Function):
            @staticmethod
            def forward(ctx, out, anchor, slot):
                ctx.slot = slot
                ctx.anchor_meta = (anchor.dtype, anchor.device)
                return out.clone()

            @staticmethod
            def backward(ctx, g):
                ctx.slot["g"] = g.detach()
                dtype, device = ctx.anchor_meta
                return g, torch.zeros((), dtype=dtype, device=device), None

        _CAPTURE_FN = CaptureFn
    return _CAPTURE_FN


class _Capture:
    """Records the inputs of hooked layers and the gradients of their outputs, through
    forward hooks that route each output through :func:`_capture_fn`."""

    def __init__(self, modules: dict[str, Any], anchor: Any):
        self.modules = modules
        self.anchor = anchor
        self.inputs: dict[str, list] = {n: [] for n in modules}
        self.slots: dict[str, list] = {n: [] for n in modules}
        self.handles: list[Any] = []  # torch hook handles, removed on exit

    def __enter__(self):
        for name, mod in self.modules.items():
            self.handles.append(mod.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _hook(self, name: str) -> Callable[[Any, Any, Any], Any]:
        fn = _capture_fn()

        def hook(module: Any, args: Any, output: Any) -> Any:
            slot: dict[str, Any] = {}
            self.inputs[name].append(args[0].detach())
            self.slots[name].append(slot)
            return fn.apply(output, self.anchor, slot)

        return hook

    def calls(self, name: str) -> list[tuple[Any, Any]]:
        """(input, output gradient) of each call whose output reached the loss."""
        return [(inp, slot["g"]) for inp, slot in zip(self.inputs[name], self.slots[name])
                if "g" in slot]


def per_example_norms(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    x: Any,
    y: Any,
    params: Iterable[Any] | dict[str, Any] | None = None,
    batch_size: int | None = None,
) -> GradNorms:
    """Per-example gradient norms ``||grad_theta loss(model(x_n), y_n)||_2`` of any model.

    One forward pass records the inputs of the layers that have a rule (see
    :data:`RULES` and the module docstring) and one backward pass of the summed
    per-example losses the gradients of their outputs; no parameter gradient is formed.
    The rules give each example's squared norm per layer (the ghost norm for sequence
    inputs of ``nn.Linear``, ``unfold`` for ``nn.Conv2d``, ...). Layers without a rule
    go through ``torch.func.vmap(grad)`` for their parameters only, and are listed in
    ``fallback_layers``. Results do not depend on ``batch_size``.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it must treat examples independently (eval-mode BatchNorm is fine).
        In training mode with BatchNorm/dropout it is evaluated in eval mode, with a
        warning, and restored afterwards.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning one loss per example, shape ``[B]`` (e.g.
        ``nn.CrossEntropyLoss(reduction="none")``). A scalar (batch-mean) loss is rejected.
    x : torch.Tensor [N, ...] or tuple of tensors
        Inputs (a tuple is unpacked into ``model(*x)``); batch axis 0.
    y : torch.Tensor [N, ...]
        Targets.
    params : iterable of parameters or parameter names, optional
        The parameter set (default: every parameter with ``requires_grad``).
    batch_size : int, optional
        Examples per pass (default: all at once).

    Returns
    -------
    GradNorms
        ``.norms`` [N] (``np.asarray(result)`` works too), ``.rules`` per layer and
        ``.fallback_layers``.

    Examples
    --------
    >>> import torch, miakit as mk
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
    ...                             torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    >>> res = mk.gradients.per_example_norms(model, torch.nn.CrossEntropyLoss(reduction="none"),
    ...                                      x, y)
    >>> res.norms.shape, res.fallback_layers
    (torch.Size([5]), [])
    """
    torch = ar.import_torch()
    n = check_model_args(model, loss_fn, x, y, batch_size)
    chosen = _choose_params(model, params)
    with eval_mode(model, "per_example_norms", "gradients") as switched:
        plan = _plan(model, chosen)
        parts = []
        step = n if batch_size is None else int(batch_size)
        for s in range(0, n, step):
            sl = slice(s, min(n, s + step))
            parts.append(_norms_sq(model, loss_fn, _slice(x, sl), y[sl], plan))
        sq = torch.cat(parts)
    return GradNorms(sq.clamp(min=0).sqrt(), plan["rules"], plan["fallback_layers"],
                     switched[0])


def _plan(model, chosen: dict[int, Any]) -> dict[str, Any]:
    """Which layers get a rule and which parameters go to the fallback."""
    owners: dict[int, list[str]] = {}
    for name, mod in model.named_modules():
        for _, p in mod.named_parameters(recurse=False):
            if id(p) in chosen:
                owners.setdefault(id(p), []).append(name)
    shared = {pid for pid, names in owners.items() if len(names) > 1}
    hooked: dict[str, tuple[Any, _Rule, set[str]]] = {}
    rules: dict[str, str] = {}
    fallback: list[str] = []
    fallback_params: dict[str, Any] = {}
    for name, mod in model.named_modules():
        own = [(pn, p) for pn, p in mod.named_parameters(recurse=False) if id(p) in chosen]
        if not own:
            continue
        rule = _find_rule(mod)
        names = {pn for pn, _ in own}
        if rule is not None and names <= {"weight", "bias"} and not any(
                id(p) in shared for _, p in own):
            hooked[name] = (mod, rule, names)
            rules[name] = rule.name
        else:
            label = name or type(mod).__name__
            rules[label] = "vmap"
            fallback.append(label)
            for pn, p in own:
                fallback_params[f"{name}.{pn}" if name else pn] = p
    # a shared parameter is listed once, under its first owner's name
    uniq: dict[int, str] = {}
    for qn, p in fallback_params.items():
        uniq.setdefault(id(p), qn)
    fallback_params = {qn: chosen[pid] for pid, qn in uniq.items()}
    return {"hooked": hooked, "rules": rules, "fallback_layers": fallback,
            "fallback_params": fallback_params}


def _norms_sq(model, loss_fn, x, y, plan) -> Any:
    torch = ar.import_torch()
    bsz = int(y.shape[0])
    total = None
    hooked = plan["hooked"]
    if hooked:
        first = x[0] if isinstance(x, (tuple, list)) else x
        anchor = torch.zeros((), device=first.device, requires_grad=True)
        with torch.enable_grad(), _Capture({n: v[0] for n, v in hooked.items()}, anchor) as cap:
            out = _call(model, x)
            losses = loss_fn(out, y)
            check_per_example_loss(losses, bsz)
            if losses.requires_grad:
                torch.autograd.grad(losses.sum(), anchor, allow_unused=True)
        for name, (mod, rule, names) in hooked.items():
            calls = cap.calls(name)
            if not calls:  # no output of this layer reached the loss: zero gradient
                continue
            sq = rule.sq_norms(mod, calls, names)
            total = sq if total is None else total + sq.to(total.dtype)
    if plan["fallback_params"]:
        sq = _vmap_sq(model, loss_fn, x, y, plan["fallback_params"], check_loss=not hooked)
        total = sq if total is None else total + sq.to(total.dtype)
    if total is None:  # nothing reached the loss
        with torch.no_grad():
            out = _call(model, x)
            losses = loss_fn(out, y)
        check_per_example_loss(losses, bsz)
        dtype = out.dtype if out.is_floating_point() else torch.get_default_dtype()
        total = torch.zeros(bsz, dtype=dtype, device=losses.device)
    return total.detach()


def _vmap_sq(model, loss_fn, x, y, fb_params: dict[str, Any], check_loss: bool) -> Any:
    """Squared per-example gradient norms of the fallback parameters by vmap(grad)."""
    torch = ar.import_torch()
    from torch.func import functional_call, grad, vmap

    bsz = int(y.shape[0])
    fixed = {k: v.detach() for k, v in model.named_parameters() if k not in fb_params}
    fixed.update({k: v.detach() for k, v in model.named_buffers()})
    leaves = {k: v.detach() for k, v in fb_params.items()}

    def one(p, xi, yi):
        xb = tuple(t.unsqueeze(0) for t in xi) if isinstance(xi, tuple) else xi.unsqueeze(0)
        args = xb if isinstance(xb, tuple) else (xb,)
        out = functional_call(model, {**fixed, **p}, args)
        losses = loss_fn(out, yi.unsqueeze(0))
        return losses.sum()

    if check_loss:  # on the batch first: a clear message beats a vmap traceback
        with torch.no_grad():
            check_per_example_loss(loss_fn(_call(model, x), y), bsz)
    xs = tuple(x) if isinstance(x, (tuple, list)) else x
    grads = vmap(grad(one), in_dims=(None, 0, 0))(leaves, xs, y)
    return sum(g.reshape(bsz, -1).pow(2).sum(1) for g in grads.values())
