"""The files of a run directory, one at a time: format, errors, checks, parameter layout.

What :mod:`miakit.shadow.store` (opening and creating runs), the :class:`Run
<miakit.shadow._run.Run>` object and its writes (:mod:`miakit.shadow._run_writes`)
share: the format constants, the error types, reading ``run.json``/``.npy`` files with
messages that name them, memory-mapping one model or features file and checking it
against its manifest entry (shape, dtype, size; the checksum is the caller's), and the
flat layout of a model's parameters. Nothing here knows a whole run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "miakit-run"
FORMAT_VERSION = 1
LOGITS_DTYPES = ("float16", "float32")
_OWN_NAMES = {"run.json", "keep.npy", "labels.npy", "manifest.json", "models", "cache", ".lock",
              "params", "features.npy"}
FEATURES_FILE = "features.npy"


class RunMismatchError(ValueError):
    """An existing run directory belongs to different data, membership or settings."""


class IncompleteRunError(ValueError):
    """Logits were requested for models that are not finished (their indices are named)."""

    def __init__(self, message: str, missing: Sequence[int]):
        super().__init__(message)
        self.missing = list(missing)


class CorruptModelError(ValueError):
    """A model file no longer matches the checksum in the manifest."""

    def __init__(self, message: str, models: Sequence[int], paths: Sequence[str]):
        super().__init__(message)
        self.models = list(models)
        self.paths = list(paths)


class CorruptModelWarning(UserWarning):
    """Opening a run found truncated or altered model files; they will be retrained."""


class RunLockedError(RuntimeError):
    """Another process is training this run."""


def _check_path(value: Any, name: str) -> Path:
    """``value`` as a ``Path``: a str or path-like object, else ``TypeError`` naming ``name``
    (``Path(3)`` would fail with a message that names no argument)."""
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path (str or os.PathLike), got "
                        f"{type(value).__name__}")
    return Path(value)


def _check_mapping(value: Any, name: str) -> dict:
    """``value`` (a mapping or None) as a new dict, else ``TypeError`` naming ``name``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a dict or None, got {type(value).__name__}")
    return dict(value)


def _model_name(m: int) -> str:
    return f"model-{m:05d}.npy"


def _short_list(items: Sequence[int], limit: int = 20) -> str:
    items = list(items)
    if len(items) <= limit:
        return str(items)
    return f"{items[:limit]} and {len(items) - limit} more"


def _read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``; ValueError naming the file when it is unreadable,
    malformed, truncated or holds something other than an object."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: cannot read {what} (expected a JSON object, the file "
                         f"holds a JSON {type(data).__name__})")
    return data


def _read_npy(path: Path, what: str) -> np.ndarray:
    try:  # an empty or truncated file is an EOFError from numpy's header reader
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read {what} ({exc or 'the file is empty'})"
                         ) from exc
    if not isinstance(arr, np.ndarray):  # an .npz archive under a .npy name
        arr.close()
        raise ValueError(f"{path}: cannot read {what} (expected a .npy array, the file is "
                         "an .npz archive)")
    return arr


def _map_model_file(path: Path, entry: dict) -> tuple[np.ndarray | None, str]:
    """Memory-map one model file and check it against its manifest entry (not the hash).

    Returns the array, or None and the reason it cannot be used.
    """
    if not path.is_file():
        return None, "the file is missing"
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # truncated: "mmap length is greater"
        return None, f"it cannot be read as .npy ({exc or 'the file is empty'})"
    if not isinstance(arr, np.ndarray):  # an .npz archive under the model's name
        arr.close()
        return None, "it is an .npz archive, not a .npy array"
    if arr.shape != tuple(entry["shape"]) or arr.dtype != np.dtype(entry["dtype"]):
        return None, (f"it holds {arr.dtype}{list(arr.shape)}, the manifest says "
                      f"{entry['dtype']}{entry['shape']}")
    if isinstance(arr, np.memmap) and path.stat().st_size != int(arr.offset) + arr.nbytes:
        return None, "the file has trailing bytes"
    return arr, ""


def _map_features(path: Path, meta: dict) -> tuple[np.ndarray | None, str]:
    """Memory-map ``features.npy`` and check its header (not the digest)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        return None, f"it cannot be read as .npy ({exc or 'the file is empty'})"
    if not isinstance(arr, np.ndarray):
        arr.close()
        return None, "it is an .npz archive, not a .npy array"
    n, a = int(meta["n_examples"]), int(meta["n_augmentations"])
    if arr.ndim != 3 or arr.shape[:2] != (n, a) or arr.dtype != np.float32:
        return None, f"it holds {arr.dtype}{list(arr.shape)}, expected float32[{n}, {a}, D]"
    if isinstance(arr, np.memmap) and path.stat().st_size != int(arr.offset) + arr.nbytes:
        return None, "the file has trailing bytes"
    return arr, ""


def _flatten_params(params: Mapping[str, Any], m: int) -> tuple[np.ndarray, list]:
    """Named parameter arrays -> (one flat float32 vector, [[name, shape], ...])."""
    if not isinstance(params, Mapping) or not params:
        raise TypeError(f"params of model {m}: expected a non-empty mapping of names to "
                        f"arrays, got {type(params).__name__}")
    parts, layout = [], []
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"params of model {m}: expected non-empty str names, got {name!r}")
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        a = np.asarray(value)
        if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
            raise TypeError(f"params[{name!r}] of model {m}: expected a real-valued array, got "
                            f"dtype {a.dtype}")
        with np.errstate(over="ignore"):
            a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ValueError(f"params[{name!r}] of model {m}: expected finite float32 values, "
                             "got NaN or inf")
        parts.append(a.reshape(-1))
        layout.append([name, list(a.shape)])
    return np.ascontiguousarray(np.concatenate(parts)), layout


def _unflatten(flat: np.ndarray, layout: list) -> dict[str, np.ndarray]:
    out, offset = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    if offset != flat.shape[0]:
        raise ValueError(f"the parameter layout covers {offset} values, the file holds "
                         f"{flat.shape[0]}")
    return out
