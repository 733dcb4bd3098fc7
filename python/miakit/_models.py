"""The models that :mod:`miakit.gradients` and :mod:`miakit.curvature` both differentiate.

- linear and one-hidden-layer MLP heads: the checks of their parameters against the
  features, the compiled kernels' status turned into errors, and the MLP's forward pass
  in blocks of examples of bounded memory (docs/methods/gradients.md,
  docs/methods/curvature.md);
- any torch model: the checks of ``(model, loss_fn, x, y, batch_size)``, of the
  per-example losses ``loss_fn`` returns, and the switch to eval mode of a model whose
  BatchNorm or dropout layers would make per-example quantities batch-dependent.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit._status import message, raise_for_status
from miakit._validation import check_finite, check_float_array, check_int

MLP_CHUNK_BYTES = 1 << 25  # float64 temporaries of one block of examples (32 MiB)


def check_head(features: Any, weight: Any, bias: Any) -> tuple[Any, Any, Any]:
    """Validate a linear head ``features [N, d]``, ``weight [C, d]``, ``bias [C]``."""
    x = check_float_array(features, "features", ndim=2)
    w = check_float_array(weight, "weight", ndim=2)
    n, d = ar.shape_of(x)
    c, dw = ar.shape_of(w)
    if dw != d:
        raise ValueError(f"weight: expected shape (C, {d}) to match features {(n, d)}, got "
                         f"{(c, dw)}")
    if c < 1:
        raise ValueError(f"weight: expected at least one class (row), got shape {(c, dw)}")
    w = ar.match_device(w, x, "weight", "features")
    check_finite(x, "features")
    check_finite(w, "weight")
    if bias is not None:
        bias = check_float_array(bias, "bias", ndim=1)
        if ar.shape_of(bias) != (c,):
            raise ValueError(f"bias: expected shape ({c},) to match weight {(c, dw)}, got "
                             f"{ar.shape_of(bias)}")
        bias = ar.match_device(bias, x, "bias", "features")
        check_finite(bias, "bias")
    return x, w, bias


def raise_head_status(st: dict, c: int) -> None:
    """The head kernels' status (miakit._status): NaN or inf inputs, labels outside."""
    raise_for_status(st, {"nonfinite": message("nonfinite", "features/weight/bias"),
                          "bad_label": message("bad_label", "labels", n_classes=c)})


def check_result_finite(out: Any, arrays: dict[str, Any], what: str) -> Any:
    """``out`` when every value is finite; else a ValueError naming the input of the
    largest magnitude: finite inputs whose arithmetic overflowed float64 (a weight of
    1e300 squares to infinity), which would otherwise come back as NaN."""
    if ar.is_all_finite(out):
        return out
    sizes = {name: float(np.max(np.abs(ar.to_numpy(a)))) for name, a in arrays.items()
             if a is not None and int(np.prod(ar.shape_of(a)))}
    culprit = max(sizes, key=lambda name: sizes[name])
    raise ValueError(f"{culprit}: values up to {sizes[culprit]:.3g} overflow the {what} in "
                     "float64")


def check_mlp_head(features: Any, weight1: Any, bias1: Any, weight2: Any,
                    bias2: Any) -> tuple[np.ndarray, ...]:
    """Validate ``features [N, D]``, ``weight1 [H, D]``, ``bias1 [H]``, ``weight2 [C, H]``,
    ``bias2 [C]`` (biases optional); returns numpy float64 weights and the features as
    given (converted block by block)."""
    x = check_float_array(features, "features", ndim=2)
    n, d = ar.shape_of(x)
    w1 = check_float_array(weight1, "weight1", ndim=2)
    w2 = check_float_array(weight2, "weight2", ndim=2)
    h, d1 = ar.shape_of(w1)
    c, h2 = ar.shape_of(w2)
    if d1 != d:
        raise ValueError(f"weight1: expected shape (H, {d}) to match features {(n, d)}, got "
                         f"{(h, d1)}")
    if h2 != h:
        raise ValueError(f"weight2: expected shape (C, {h}) to match weight1 {(h, d1)}, got "
                         f"{(c, h2)}")
    if h < 1 or c < 1:
        raise ValueError(f"weight1, weight2: expected at least one hidden unit and one "
                         f"class, got shapes {(h, d1)} and {(c, h2)}")
    out = [x]
    for name, v, size in (("weight1", w1, None), ("bias1", bias1, h), ("weight2", w2, None),
                          ("bias2", bias2, c)):
        if v is None:
            out.append(None)
            continue
        if size is not None:
            v = check_float_array(v, name, ndim=1)
            if ar.shape_of(v) != (size,):
                raise ValueError(f"{name}: expected shape ({size},), got {ar.shape_of(v)}")
        a = ar.to_numpy(v).astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
        out.append(a)
    return tuple(out)


def mlp_blocks(x: Any, width: int):
    """Slices of examples whose float64 temporaries of ``width`` values each fit a block,
    with the features of each as float64 numpy."""
    n = ar.shape_of(x)[0]
    step = max(1, MLP_CHUNK_BYTES // (8 * max(1, width)))
    for s in range(0, n, step):
        sl = slice(s, min(n, s + step))
        xb = ar.to_numpy(x[sl]).astype(np.float64)
        if not np.isfinite(xb).all():
            raise ValueError("features: expected finite values, got NaN or inf")
        yield sl, xb


def mlp_forward(xb: np.ndarray, w1: np.ndarray, b1: np.ndarray | None, w2: np.ndarray,
                 b2: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(active ``a > 0`` [n, H] bool, hidden ``h = relu(a)`` [n, H], softmax p [n, C])."""
    a = xb @ w1.T
    if b1 is not None:
        a += b1
    active = a > 0
    hid = np.where(active, a, 0.0)
    z = hid @ w2.T
    if b2 is not None:
        z += b2
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return active, hid, p


def like_features(out: np.ndarray, x: Any) -> Any:
    """The host result ``out`` as ``x``'s array type, on ``x``'s device."""
    return ar.namespace(x).asarray(out)


def batch_len(x) -> int:
    torch = ar.import_torch()
    xs = x if isinstance(x, (tuple, list)) else (x,)
    for t in xs:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor (or a tuple of them), got "
                            f"{type(t).__name__}")
    n = int(xs[0].shape[0]) if xs[0].dim() > 0 else -1
    if n < 1 or any(t.dim() == 0 or int(t.shape[0]) != n for t in xs):
        raise ValueError(f"x: expected tensors with a common, non-empty batch axis 0, got "
                         f"shapes {[tuple(t.shape) for t in xs]}")
    return n


def check_model_args(model: Any, loss_fn: Any, x: Any, y: Any, batch_size: Any) -> int:
    """Validate (model, loss_fn, x, y, batch_size); return the number of examples."""
    torch = ar.import_torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable, got {type(loss_fn).__name__}")
    n = batch_len(x)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y: expected a torch.Tensor, got {type(y).__name__}")
    if y.dim() == 0 or int(y.shape[0]) != n:
        raise ValueError(f"y: expected a batch axis of length {n} (as x), got shape "
                         f"{tuple(y.shape)}")
    if batch_size is not None:
        check_int(batch_size, "batch_size", 1, what="a positive int")
    # inputs of another floating dtype than the weights fail inside the model's first
    # layer with torch's message ("mat1 and mat2 must have the same dtype")
    weights = next((p for p in model.parameters() if p.is_floating_point()), None)
    for t in (x if isinstance(x, (tuple, list)) else (x,)):
        if weights is not None and isinstance(t, torch.Tensor) and \
                (t.is_floating_point() or t.is_complex()) and t.dtype != weights.dtype:
            raise TypeError(f"x: dtype {t.dtype} differs from the model's parameters' "
                            f"{weights.dtype}; cast one to the other")
    return n


def check_per_example_loss(losses, bsz: int):
    torch = ar.import_torch()
    if not isinstance(losses, torch.Tensor):
        raise TypeError(f"loss_fn: expected a tensor of per-example losses, got "
                        f"{type(losses).__name__}")
    if losses.dim() == 0:
        raise ValueError(
            "loss_fn: returned a scalar, but per-example gradient norms need one loss per "
            "example: a batch-mean (or sum) loss mixes the examples' gradients. Use "
            "reduction='none', e.g. torch.nn.CrossEntropyLoss(reduction='none')")
    if tuple(losses.shape) != (bsz,):
        raise ValueError(f"loss_fn: expected per-example losses of shape ({bsz},), got "
                         f"{tuple(losses.shape)}; reduce any per-token axes inside loss_fn")


def batch_dependent_layers(model) -> tuple[list[str], list[str]]:
    """(layers that make training mode batch-dependent or random, BatchNorm layers that
    use batch statistics even in eval mode)."""
    nn = ar.import_torch().nn
    noisy, no_stats = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            if mod.training:
                noisy.append(name or type(mod).__name__)
            if mod.running_mean is None:
                no_stats.append(name or type(mod).__name__)
        elif isinstance(mod, (nn.modules.dropout._DropoutNd, nn.AlphaDropout,
                              nn.FeatureAlphaDropout)) and mod.training and mod.p > 0:
            noisy.append(name or type(mod).__name__)
    return noisy, no_stats


@contextlib.contextmanager
def eval_mode(model: Any, who: str, what: str):
    """Evaluate ``model`` per example: a model in training mode with BatchNorm or dropout is
    switched to eval mode (with a warning) and restored on exit; BatchNorm without running
    statistics is rejected. Yields a one-element list holding whether it switched."""
    noisy, no_stats = batch_dependent_layers(model)
    if no_stats:
        raise ValueError(
            f"model: BatchNorm layers {no_stats} have no running statistics "
            "(track_running_stats=False), so they normalize with batch statistics even in "
            f"eval mode and the examples interact; per-example {what} are undefined for such "
            "a model")
    modes = {m: m.training for m in model.modules()}
    switched = [False]
    if noisy:
        warnings.warn(
            f"{who}: the model is in training mode with batch-dependent or random layers "
            f"{noisy}; computing in eval mode (running BatchNorm statistics, no dropout) and "
            "restoring training mode afterwards", UserWarning, stacklevel=4)
        model.eval()
        switched[0] = True
    try:
        yield switched
    finally:
        if switched[0]:
            for m, mode in modes.items():
                m.train(mode)
