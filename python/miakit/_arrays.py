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


def is_torch(x: Any) -> bool:
    torch = loaded_torch()
    return torch is not None and isinstance(x, torch.Tensor)


def resolved(x: Array) -> Array:
    """``x`` with torch's lazy conjugate and negative bits applied to its values.

    ``tensor.conj()`` and views such as ``tensor.conj().imag`` only set a bit that torch
    applies when it reads the tensor; ``.numpy()`` refuses such a tensor and a DLPack
    capsule exports its memory without the bit (the values of the wrong sign). Without a
    bit set this is ``x`` itself, at no cost; numpy arrays pass through."""
    if is_torch(x) and (x.is_conj() or x.is_neg()):
        return x.resolve_conj().resolve_neg()
    return x


def as_array(x: Any, name: str) -> Array:
    """Return ``x`` as a numpy array or torch tensor (lists become numpy arrays); a torch
    tensor's lazy conjugate or negative bit is applied (see :func:`resolved`)."""
    if is_torch(x):
        return resolved(x)
    if isinstance(x, np.ndarray):
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
        return to_numpy(x)
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
    x = resolved(x.detach())  # a capsule would carry the memory without the bits
    if x.device.type == "cuda":
        return x.__dlpack__(stream=_dlpack_stream(x))
    try:
        return x.numpy()  # a numpy view costs a quarter of a DLPack capsule to make
    except TypeError:  # dtypes numpy lacks (bfloat16): the kernels read them from DLPack
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
    """``x`` as a numpy array on the host (a tensor's memory is shared when it can be).

    A tensor's lazy conjugate or negative bit is applied first; bfloat16, which numpy
    lacks, becomes float32, which holds every bfloat16 value exactly."""
    if is_torch(x):
        x = resolved(x.detach())
        if x.dtype == loaded_torch().bfloat16:
            x = x.float()
        return x.cpu().numpy()
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


class Namespace:
    """The array operations miakit needs, for numpy arrays or for torch tensors on one
    device (the role array-api-compat's ``array_namespace`` plays): one object in place of
    ``if is_torch(x): ... else: ...`` at every call.

    The functions numpy and torch spell alike (``sqrt``, ``log``, ``where``, ``isnan``, ...,
    see ``SHARED``) are the module's own; the others are methods here. New arrays are made
    on the namespace's device. Get one with :func:`namespace`.
    """

    # elementwise and shape functions with the same name and meaning in numpy and torch
    SHARED = frozenset({
        "sqrt", "log", "log1p", "exp", "expm1", "ceil", "floor", "abs", "isnan", "isfinite",
        "maximum", "minimum", "where", "zeros_like", "ones_like", "broadcast_to",
    })

    def __init__(self, module: Any, device: Any = None) -> None:
        self.module = module
        self.device = device
        self.is_torch = module is not np
        self.float64 = module.float64
        self.int64 = module.int64
        self.bool = module.bool if self.is_torch else np.bool_

    def __getattr__(self, name: str) -> Any:
        if name in Namespace.SHARED:
            return getattr(self.module, name)
        raise AttributeError(f"miakit's array namespace has no {name!r}")

    def __repr__(self) -> str:
        return f"Namespace({self.module.__name__}, device={self.device!r})"

    def asarray(self, x: Any, dtype: Any = None) -> Array:
        """``x`` as an array of this namespace on its device (host data is not copied
        when it can be shared)."""
        if self.is_torch:
            return self.module.as_tensor(x, dtype=dtype, device=self.device)
        return np.asarray(x, dtype=dtype)

    def astype(self, x: Array, dtype: Any) -> Array:
        """``x`` in ``dtype`` (no copy when it already is)."""
        return x.to(dtype=dtype) if self.is_torch else x.astype(dtype, copy=False)

    def result_type(self, *dtypes: Any) -> Any:
        """The dtype both numpy and torch promote ``dtypes`` to."""
        if self.is_torch:
            out = dtypes[0]
            for d in dtypes[1:]:
                out = self.module.promote_types(out, d)
            return out
        return np.result_type(*dtypes)

    def zeros(self, shape: tuple[int, ...], dtype: Any = None) -> Array:
        dtype = self.float64 if dtype is None else dtype
        if self.is_torch:
            return self.module.zeros(shape, dtype=dtype, device=self.device)
        return np.zeros(shape, dtype=dtype)

    def ones(self, shape: tuple[int, ...], dtype: Any = None) -> Array:
        dtype = self.float64 if dtype is None else dtype
        if self.is_torch:
            return self.module.ones(shape, dtype=dtype, device=self.device)
        return np.ones(shape, dtype=dtype)

    def full_like(self, x: Array, value: float) -> Array:
        return self.module.full_like(x, value)

    def arange(self, n: int) -> Array:
        if self.is_torch:
            return self.module.arange(n, device=self.device)
        return np.arange(n)

    def clip(self, x: Array, lo: float | None = None, hi: float | None = None) -> Array:
        """``x`` limited to ``[lo, hi]`` (either bound may be None)."""
        return x.clamp(lo, hi) if self.is_torch else np.clip(x, lo, hi)

    def copy(self, x: Array) -> Array:
        return x.clone() if self.is_torch else x.copy()

    def contiguous(self, x: Array) -> Array:
        return x.contiguous() if self.is_torch else np.ascontiguousarray(x)

    def permute_dims(self, x: Array, axes: tuple[int, ...]) -> Array:
        return x.permute(*axes) if self.is_torch else x.transpose(axes)

    def nonzero(self, x: Array) -> tuple[Array, ...]:
        """The indices of the non-zero entries, one array per axis."""
        return x.nonzero(as_tuple=True) if self.is_torch else np.nonzero(x)

    def vector_norm(self, x: Array, axis: int, keepdims: bool = False) -> Array:
        """Euclidean norms along ``axis`` (the Array API's ``linalg.vector_norm``)."""
        if self.is_torch:
            return self.module.linalg.vector_norm(x, dim=axis, keepdim=keepdims)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.linalg.norm(x, axis=axis, keepdims=keepdims)

    def all_finite(self, x: Array) -> bool:
        return bool(self.module.isfinite(x).all())


def namespace(*arrays: Any) -> Namespace:
    """The :class:`Namespace` of the arrays: torch (on the first tensor's device) when any
    of them is a torch tensor, else numpy. ``None`` entries are skipped.

    Examples
    --------
    >>> import numpy as np
    >>> from miakit._arrays import namespace
    >>> xp = namespace(np.array([4.0, -1.0]))
    >>> xp.clip(xp.sqrt(np.array([4.0, 9.0])), None, 2.5)
    array([2. , 2.5])
    """
    for x in arrays:
        if is_torch(x):
            return Namespace(loaded_torch(), x.device)
    return Namespace(np)
