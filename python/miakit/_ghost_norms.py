"""Per-layer rules of :func:`miakit.gradients.per_example_norms`, and the ghost-norm kernel
(:func:`miakit.gradients.ghost_norms`) the linear and convolution rules run on.

Each rule turns the recorded inputs and output gradients of one layer's calls into the
per-example squared gradient norms of its parameters, without materializing per-example
gradients where a cheaper form exists (docs/methods/gradients.md). Imported from
miakit.gradients, where every public name lives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from miakit import _C
from miakit import _arrays as ar
from miakit._status import message, nonfinite_culprit, raise_for_status
from miakit._validation import check_float_array

__all__ = ["ghost_norms", "RULES"]


class _Rule:
    """A per-layer rule: turns the recorded inputs and output gradients of a layer's calls
    into per-example squared gradient norms of its chosen parameters."""

    name = ""

    def supports(self, module) -> bool:
        return True

    def sq_norms(self, module, calls, chosen: set[str]) -> Any:
        raise NotImplementedError


def _outer_sq_norms(a, g, want_w: bool, want_b: bool):
    """Per-example ``||G^T A||_F^2`` (weight) and ``||sum_t G_t||^2`` (bias) for
    ``A [B, T, d]``, ``G [B, T, p]`` in g's dtype: the compiled kernel (ghost form
    ``sum_{t,s} (A A^T)_{ts} (G G^T)_{ts}`` when it is cheaper than materializing
    ``G^T A`` -- cost ``T^2 (d + p)`` against ``T d p`` -- else the direct form, per
    example in float64). Non-finite examples give NaN, as the torch ops would."""
    if a.device.type == "cuda" and not _cuda_built():
        return _outer_sq_norms_torch(a, g, want_w, want_b)
    out = _ghost_call(a, g, want_w, want_b)[0]
    return out.to(g.dtype)


def _cuda_built() -> bool:
    return bool(_C.backend_info()["cuda_built"])


def _ghost_call(a, g, want_w: bool, want_b: bool):
    out = ar.empty_like_device(g, (int(g.shape[0]),), "float64")
    st = _C.ghost_norms(ar.kernel_arg(a), ar.kernel_arg(g), ar.kernel_arg(out), bool(want_w),
                        bool(want_b), ar.stream_of(g))
    return out, st


def ghost_norms(activations: Any, grads: Any, weight: bool = True, bias: bool = False) -> Any:
    """Per-example squared gradient norms of a linear layer applied at T positions.

    ``out[n] = [weight] ||G_n^T A_n||_F^2 + [bias] ||sum_t G_n[t]||^2``, the squared norm
    of the example's gradient with respect to the weight (and bias) of ``y = W a + b``,
    computed without materializing ``G_n^T A_n`` or the Grams of every example at once.

    Parameters
    ----------
    activations : array [N, T, d] float16/bfloat16/float32/float64
        Layer inputs A (any strides; numpy, or torch on the CPU or a CUDA device).
    grads : array [N, T, p] float
        Gradients G of the per-example losses with respect to the layer outputs.
    weight, bias : bool
        Which parameters' gradients to include.

    Returns
    -------
    array [N] float64
        The caller's array type, on the caller's device.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> a = np.ones((1, 2, 3)); g = np.ones((1, 2, 1))
    >>> mk.gradients.ghost_norms(a, g, bias=True).tolist()   # G^T A = 2s (3 of them); sum G = 2
    [16.0]
    """
    # floating point, 3-D [N, T, features], numpy in native byte order (the kernels
    # read raw memory)
    a = check_float_array(activations, "activations", ndim=3)
    g = check_float_array(grads, "grads", ndim=3)
    ar.same_device(activations=a, grads=g)
    g = ar.match_device(g, a, "grads", "activations")
    if ar.shape_of(a)[:2] != ar.shape_of(g)[:2]:
        raise ValueError(f"grads: shape {ar.shape_of(g)} does not match activations "
                         f"{ar.shape_of(a)} on [N, T]")
    out, st = _ghost_call(a, g, weight, bias)
    # activations enter the norms only through the weight's; the bias's read grads alone
    inputs = {"activations": a, "grads": g} if weight else {"grads": g}
    raise_for_status(st, {"nonfinite": lambda count: nonfinite_culprit(
        inputs, message("nonfinite", "activations").format(count=count))})
    return out


def _outer_sq_norms_torch(a, g, want_w: bool, want_b: bool):
    """torch fallback of _outer_sq_norms for CUDA tensors when the build has no CUDA
    kernels."""
    torch = ar.import_torch()
    bsz, t, d = a.shape
    p = g.shape[2]
    out = torch.zeros(bsz, dtype=g.dtype, device=g.device)
    if t == 1:  # ||g a^T||^2 = ||a||^2 ||g||^2, ||g||^2 for the bias: no products at all
        gg = torch.linalg.vector_norm(g[:, 0], dim=1).square()
        if want_w:
            out += gg * torch.linalg.vector_norm(a[:, 0], dim=1).square()
        if want_b:
            out += gg
        return out
    if want_w:
        if t * (d + p) <= d * p:
            step = max(1, (1 << 24) // max(1, t * t))
            for s in range(0, bsz, step):
                aa = torch.bmm(a[s:s + step], a[s:s + step].transpose(1, 2))
                gg = torch.bmm(g[s:s + step], g[s:s + step].transpose(1, 2))
                out[s:s + step] += (aa * gg).sum((1, 2))
        else:
            step = max(1, (1 << 24) // max(1, d * p))
            for s in range(0, bsz, step):
                gw = torch.bmm(g[s:s + step].transpose(1, 2), a[s:s + step])
                out[s:s + step] += gw.pow(2).sum((1, 2))
    if want_b:
        out += g.sum(1).pow(2).sum(1)
    return out


def _cat_calls(calls, fn):
    """Concatenate each call's (A, G) along the sequence axis."""
    torch = ar.import_torch()
    pairs = [fn(inp, g) for inp, g in calls]
    if len(pairs) == 1:
        return pairs[0]
    return torch.cat([p[0] for p in pairs], 1), torch.cat([p[1] for p in pairs], 1)


class _Linear(_Rule):
    name = "linear"

    def sq_norms(self, module, calls, chosen):
        def ag(inp, g):
            b = inp.shape[0]
            return inp.reshape(b, -1, inp.shape[-1]), g.reshape(b, -1, g.shape[-1])

        a, g = _cat_calls(calls, ag)
        return _outer_sq_norms(a.to(g.dtype), g, "weight" in chosen, "bias" in chosen)


class _Conv2d(_Rule):
    name = "conv2d"

    def supports(self, module) -> bool:
        return module.weight.dim() == 4

    def sq_norms(self, module, calls, chosen):
        torch = ar.import_torch()
        f = torch.nn.functional
        groups = module.groups

        def ag(inp, g):
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
                inp = f.pad(inp, module._reversed_padding_repeated_twice, mode=mode)
                padding = 0
            else:
                padding = module.padding
            cols = f.unfold(inp, module.kernel_size, dilation=module.dilation, padding=padding,
                            stride=module.stride)  # [B, Cin * kh * kw, L], channel-major
            b, _, length = cols.shape
            a = cols.view(b, groups, -1, length).permute(0, 1, 3, 2)  # [B, g, L, Cin/g*k]
            gg = g.reshape(b, groups, -1, length).permute(0, 1, 3, 2)  # [B, g, L, Cout/g]
            return a.reshape(b * groups, length, -1), gg.reshape(b * groups, length, -1)

        a, g = _cat_calls(calls, ag)
        sq = _outer_sq_norms(a.to(g.dtype), g, "weight" in chosen, False)
        sq = sq.view(-1, groups).sum(1)
        if "bias" in chosen:
            gs = torch.cat([g_.reshape(g_.shape[0], g_.shape[1], -1) for _, g_ in calls], 2)
            sq = sq + gs.sum(2).pow(2).sum(1)
        return sq


class _Embedding(_Rule):
    name = "embedding"

    def supports(self, module) -> bool:
        return module.max_norm is None and not module.scale_grad_by_freq

    def sq_norms(self, module, calls, chosen):
        torch = ar.import_torch()
        idx = torch.cat([inp.reshape(inp.shape[0], -1) for inp, _ in calls], 1)
        g = torch.cat([g_.reshape(g_.shape[0], -1, g_.shape[-1]) for _, g_ in calls], 1)
        bsz, t = idx.shape
        if module.padding_idx is not None:  # the padding row gets no gradient
            g = g * (idx != module.padding_idx).unsqueeze(-1).to(g.dtype)
        # one row per (example, token id): sum the output gradients of equal tokens
        key = torch.arange(bsz, device=idx.device).unsqueeze(1) * module.num_embeddings + idx
        uniq, inv = torch.unique(key.reshape(-1), return_inverse=True)
        rows = torch.zeros(uniq.shape[0], g.shape[-1], dtype=g.dtype, device=g.device)
        rows.index_add_(0, inv, g.reshape(bsz * t, -1))
        owner = torch.div(uniq, module.num_embeddings, rounding_mode="floor")
        out = torch.zeros(bsz, dtype=g.dtype, device=g.device)
        out.index_add_(0, owner, rows.pow(2).sum(1))
        return out


class _Elementwise(_Rule):
    """Affine maps applied elementwise after a normalization: ``y = xhat * w + b``; the
    per-example gradients ``sum_t G_t * xhat_t`` and ``sum_t G_t`` are small, so they are
    materialized."""

    def xhat(self, module, inp):
        raise NotImplementedError

    def channel_view(self, module, t):
        """[B, P, K]: positions P summed over, K the parameter's elements."""
        raise NotImplementedError

    def sq_norms(self, module, calls, chosen):
        torch = ar.import_torch()
        gw = gb = None
        for inp, g in calls:
            if "weight" in chosen:
                xh = self.xhat(module, inp.to(g.dtype))
                w_part = self.channel_view(module, g * xh).sum(1)
                gw = w_part if gw is None else gw + w_part
            if "bias" in chosen:
                b_part = self.channel_view(module, g).sum(1)
                gb = b_part if gb is None else gb + b_part
        out = torch.zeros(calls[0][1].shape[0], dtype=calls[0][1].dtype,
                          device=calls[0][1].device)
        if gw is not None:
            out += gw.pow(2).sum(1)
        if gb is not None:
            out += gb.pow(2).sum(1)
        return out


class _LayerNorm(_Elementwise):
    name = "layernorm"

    def supports(self, module) -> bool:
        return bool(module.elementwise_affine)

    def xhat(self, module, inp):
        return ar.import_torch().nn.functional.layer_norm(inp, module.normalized_shape,
                                                          eps=module.eps)

    def channel_view(self, module, t):
        k = int(np.prod(module.normalized_shape))
        return t.reshape(t.shape[0], -1, k)


class _GroupNorm(_Elementwise):
    name = "groupnorm"

    def supports(self, module) -> bool:
        return bool(module.affine)

    def xhat(self, module, inp):
        return ar.import_torch().nn.functional.group_norm(inp, module.num_groups, eps=module.eps)

    def channel_view(self, module, t):
        return t.reshape(t.shape[0], t.shape[1], -1).transpose(1, 2)


class _BatchNormEval(_Elementwise):
    name = "batchnorm_eval"

    def supports(self, module) -> bool:
        return bool(module.affine) and module.running_mean is not None and not module.training

    def xhat(self, module, inp):
        shape = (1, -1) + (1,) * (inp.dim() - 2)
        mean = module.running_mean.to(inp.dtype).view(shape)
        var = module.running_var.to(inp.dtype).view(shape)
        return (inp - mean) / ar.import_torch().sqrt(var + module.eps)

    def channel_view(self, module, t):
        return t.reshape(t.shape[0], t.shape[1], -1).transpose(1, 2)


def _rule_table() -> list[tuple[type, _Rule]]:
    nn = ar.import_torch().nn
    return [
        (nn.Linear, _Linear()),
        (nn.Conv2d, _Conv2d()),
        (nn.Embedding, _Embedding()),
        (nn.LayerNorm, _LayerNorm()),
        (nn.GroupNorm, _GroupNorm()),
        (nn.modules.batchnorm._BatchNorm, _BatchNormEval()),
    ]


#: Layer types with a dedicated rule (others use the ``vmap(grad)`` fallback).
RULES = ("Linear", "Conv2d", "Embedding", "LayerNorm", "GroupNorm",
         "BatchNorm1d/2d/3d (eval mode)")


def _find_rule(module):
    for typ, rule in _rule_table():
        if type(module) is typ or (typ.__name__ == "_BatchNorm" and isinstance(module, typ)):
            return rule if rule.supports(module) else None
    return None
