"""Lazy torch import, device choice, per-model seeds and progress bars.

torch and tqdm are optional dependencies of miakit: they are imported here, inside the
functions that train, so ``import miakit`` works without them.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from miakit._validation import check_int


def require_torch() -> Any:
    """torch, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError("training shadow models needs PyTorch: pip install 'miakit[audit]' "
                          "(or pip install torch)") from exc
    return torch


def resolve_device(device: Any) -> Any:
    """A ``torch.device``; a clear error when CUDA is asked for but not usable."""
    torch = require_torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = (f"built with CUDA {torch.version.cuda}" if torch.version.cuda
                     else "built without CUDA support")
            raise RuntimeError(f"device={device!r}: no usable CUDA GPU (torch {torch.__version__} "
                               f"is {built}, torch.cuda.is_available() is False); "
                               "use device='cpu'")
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"device={device!r}: only {torch.cuda.device_count()} CUDA "
                               "device(s) are visible")
        dev = torch.device("cuda", index)
    elif dev.type != "cpu":
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    return dev


def model_seed(seed: int, model: int, stream: int = 0) -> int:
    """A 63-bit seed for model ``model``'s random stream ``stream``, from the run seed.

    Every random choice of a shadow model (initialisation, batch order, dropout) comes
    from ``(seed, model)``, never from global state, so a model trains the same whether
    it is trained alone, in a batch, or after a restart.

    Examples
    --------
    >>> from miakit.shadow._runtime import model_seed
    >>> model_seed(0, 3) == model_seed(0, 3) != model_seed(0, 4)
    True
    """
    state = np.random.SeedSequence([int(seed), int(model), int(stream)]).generate_state(2)
    return (int(state[0]) << 31 ^ int(state[1])) & ((1 << 63) - 1)


def check_seed(seed: Any) -> int:
    """A training seed: an int >= 0."""
    return check_int(seed, "seed", 0, what="a non-negative int")


class _Quiet:
    """Stands in for a tqdm bar when progress is off."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.n = kwargs.get("initial", 0)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(progress: bool | None, **kwargs: Any) -> Any:
    """A tqdm bar on stderr, or a silent stand-in.

    ``progress=None`` shows the bar only when stderr is a terminal, so logs and CI output
    stay clean; True forces it, False hides it.
    """
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if show:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return _Quiet(**kwargs)
        return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)
    return _Quiet(**kwargs)
