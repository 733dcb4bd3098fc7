"""Array plumbing shared by every public function.

Inputs may be numpy arrays (or anything ``numpy.asarray`` accepts) or torch tensors on
the CPU or a CUDA device. They reach the kernels without copies: numpy arrays through
the buffer protocol, torch tensors as DLPack capsules. Outputs are allocated here, as
the caller's array type on the caller's device. torch is imported only if the caller
already uses it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor


def loaded_torch() -> Any:
    """The torch module if the process has imported it, else None: a caller holding a
    tensor has imported torch, so miakit never imports it for numpy-only users."""
    return sys.modules.get("torch")


def import_torch() -> Any:
    """Import torch, for the functions that need it whatever their inputs (autograd)."""
    import torch

    return torch


# The old private name, still read by miakit/ks.py; remove it once ks.py calls
# loaded_torch().
_torch = loaded_torch


def is_torch(x: Any) -> bool:
    torch = loaded_torch()
    return torch is not None and isinstance(x, torch.Tensor)


def as_array(x: Any, name: str) -> Array:
    """Return ``x`` as a numpy array or torch tensor (lists become numpy arrays)."""
    if is_torch(x) or isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - re-raised with the argument's name
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}") from exc


def device_of(x: Array) -> str:
    if is_torch(x):
        return str(x.device) if x.device.type != "cuda" else f"cuda:{x.device.index or 0}"
    return "cpu"


def same_device(**arrays: Array) -> str:
    """The common device of the arrays, or a ValueError naming the two that differ."""
    items = [(k, device_of(v)) for k, v in arrays.items() if v is not None]
    first_name, first_dev = items[0]
    for name, dev in items[1:]:
        if dev != first_dev:
            raise ValueError(
                f"{name} is on {dev} but {first_name} is on {first_dev}; "
                "move them to one device (miakit never copies between devices)"
            )
    return first_dev


def match_device(x: Array, like: Array, name: str, like_name: str) -> Array:
    """``x`` as the same array type as ``like``; an error if they live on different devices.

    Host data moves between numpy and torch without a copy; nothing is ever copied
    between the host and a GPU.
    """
    same_device(**{like_name: like, name: x})
    if is_torch(like) and not is_torch(x):
        return loaded_torch().from_numpy(np.ascontiguousarray(x))
    if is_torch(x) and not is_torch(like):
        return x.detach().numpy()
    return x


def kind(x: Array) -> str:
    """numpy-style dtype kind: 'f' float, 'i' signed, 'u' unsigned, 'b' bool, 'c' complex."""
    if is_torch(x):
        torch = loaded_torch()
        if x.dtype == torch.bool:
            return "b"
        if x.dtype.is_complex:
            return "c"
        if x.dtype.is_floating_point:
            return "f"
        return "u" if x.dtype == torch.uint8 else "i"
    return x.dtype.kind


def dtype_name(x: Array) -> str:
    return str(x.dtype).replace("torch.", "")


def shape_of(x: Array) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def kernel_arg(x: Array) -> Any:
    """What the extension receives for ``x``: the numpy array itself, or a DLPack capsule."""
    if not is_torch(x):
        return x
    x = x.detach()
    if x.device.type == "cuda":
        return x.__dlpack__(stream=_dlpack_stream(x))
    try:
        return x.numpy()  # a numpy view costs a quarter of a DLPack capsule to make
    except (TypeError, RuntimeError):  # dtypes numpy lacks (bfloat16), lazy conj/neg bits
        return x.__dlpack__()


def _dlpack_stream(x: Array) -> int:
    # DLPack's stream code for the current stream: 1 is the legacy default stream.
    s = loaded_torch().cuda.current_stream(x.device).cuda_stream
    return s if s != 0 else 1


def stream_of(x: Array) -> int:
    """The caller's current CUDA stream (0 on the CPU)."""
    if is_torch(x) and x.device.type == "cuda":
        return int(loaded_torch().cuda.current_stream(x.device).cuda_stream)
    return 0


def empty_like_device(like: Array, shape: tuple[int, ...], dtype: str) -> Array:
    """An uninitialized output of the caller's array type on the caller's device."""
    if is_torch(like):
        torch = loaded_torch()
        return torch.empty(shape, dtype=getattr(torch, dtype), device=like.device)
    return np.empty(shape, dtype=dtype)


def to_numpy(x: Array) -> np.ndarray:
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_int64(x: Array) -> Array:
    if is_torch(x):
        return x.to(dtype=loaded_torch().int64)
    return x.astype(np.int64, copy=False)


def as_uint8(x: Array) -> Array:
    """A 0/1 uint8 view (bool inputs are reinterpreted without a copy)."""
    if is_torch(x):
        torch = loaded_torch()
        return x.view(torch.uint8) if x.dtype == torch.bool else (x != 0).to(torch.uint8)
    if x.dtype == np.bool_:
        return x.view(np.uint8)
    return (x != 0).astype(np.uint8)


def broadcast_to(x: Array, shape: tuple[int, ...]) -> Array:
    if is_torch(x):
        return x.expand(shape)
    return np.broadcast_to(x, shape)


def reshape(x: Array, shape: tuple[int, ...]) -> Array:
    return x.reshape(shape)


def minmax(x: Array) -> tuple[float, float]:
    return float(x.min()), float(x.max())


def is_all_finite(x: Array) -> bool:
    if is_torch(x):
        return bool(loaded_torch().isfinite(x).all())
    return bool(np.isfinite(x).all())


def views_mean(values: Any) -> np.ndarray:
    """Signal ``[..., N, A]`` -> ``[..., N]`` float64 numpy (mean over query views).

    Summed view by view over whole ``[..., N]`` planes, in the order numpy's ``mean(-1)``
    adds a short axis, then divided by A: the same values, without a reduction whose inner
    loop is A elements long."""
    v = np.asarray(to_numpy(values))
    a = v.shape[-1]
    if a == 0 or a > 8:  # (numpy sums longer axes pairwise)
        return np.asarray(v, dtype=np.float64).mean(-1)
    out = np.zeros(v.shape[:-1])
    for q in range(a):
        out += v[..., q]
    out /= a
    return out
