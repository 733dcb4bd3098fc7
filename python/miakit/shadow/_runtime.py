"""Lazy torch import, device choice and per-model seeds of shadow training.

torch is an optional dependency of miakit: it is imported here, inside the functions
that train, so ``import miakit`` works without it. Progress (a tqdm bar on a terminal,
plain lines in a log) comes from :mod:`miakit._progress`; ``progress_bar`` and its silent
stand-in are re-exported here for the training modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from miakit._progress import _Quiet, progress_bar  # noqa: F401 (the training modules')
from miakit._validation import check_seed as _check_seed


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
    return _check_seed(seed)
