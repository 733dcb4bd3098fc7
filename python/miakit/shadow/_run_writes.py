"""How files land in an existing run: a model, the features, the stacked logits cache
(written only when asked for: ``Run.logits(cache=True)``).

Every file is written to a temporary name, fsynced and renamed into place
(``mkio.atomic_write``); a model is listed as finished by one atomic manifest update
after both of its files are in place, and a failed write removes what it left (see
:mod:`miakit.shadow.store` for why this makes a run crash-safe). The :class:`Run
<miakit.shadow._run.Run>` methods of the same names document the behaviour and call
these.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from miakit import io as mkio
from miakit._validation import check_features, check_int
from miakit.shadow._run_files import RunLockedError, _flatten_params, _model_name


def write_model(run: Any, m: int, logits: Any,
                params: Mapping[str, Any] | None = None) -> None:
    """As :meth:`Run.write_model <miakit.shadow._run.Run.write_model>`."""
    check_int(m, "m", 0, run.n_models - 1, what=f"a model index in [0, {run.n_models})")
    if hasattr(logits, "detach"):
        logits = logits.detach().cpu().numpy()
    arr = np.asarray(logits)
    if arr.shape != run.model_shape:
        raise ValueError(f"logits: expected shape {run.model_shape} (examples, "
                         f"augmentations, classes), got {arr.shape}")
    if arr.dtype.kind != "f":
        raise TypeError(f"logits: expected a floating-point array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr.astype(run.logits_dtype, copy=False))
    if not np.isfinite(arr).all():
        raise ValueError(f"logits of model {m}: expected finite values, got NaN or inf "
                         "(training diverged: lower the learning rate)")
    m = int(m)
    flat, layout = (None, None) if params is None else _flatten_params(params, m)
    rel = f"models/{_model_name(m)}"
    prel = f"params/{_model_name(m)}"
    old = run._manifest["models"].get(str(m))
    written: list[str] = []
    try:
        entry: dict[str, Any] = {"file": rel, "sha256": mkio.sha256_array(arr),
                                 "shape": list(arr.shape), "dtype": str(arr.dtype)}
        if flat is not None:
            try:
                (run.path / "params").mkdir(exist_ok=True)
            except OSError as exc:
                raise mkio.write_error(exc, run.path / "params",
                                       "the parameters folder") from exc
            mkio.write_npy(run.path / prel, flat, f"the parameters of model {m}")
            written.append(prel)
            entry["params"] = {"file": prel, "sha256": mkio.sha256_array(flat),
                               "shape": list(flat.shape), "dtype": str(flat.dtype),
                               "layout": layout}
        mkio.write_npy(run.path / rel, arr, f"the logits of model {m}")
        written.append(rel)
        mkio.kill_point(f"model-{m}:files")  # test hook: files in place, not listed
        models = dict(run._manifest["models"])
        models[str(m)] = entry
        manifest = {**run._manifest, "models": dict(sorted(models.items(),
                                                           key=lambda kv: int(kv[0])))}
        mkio.write_json(run.path / "manifest.json", manifest, "the manifest",
                        midway=f"model-{m}:manifest")
    except OSError:
        # Files landed but the model is not listed: remove them, so the directory is
        # exactly as before (a listed model is only rewritten when it was corrupt).
        if old is None:
            for r in written:
                with contextlib.suppress(OSError):
                    (run.path / r).unlink()
        raise
    run._manifest = manifest
    run.corrupt.pop(m, None)
    run.corrupt_files.pop(m, None)
    if old is not None and "params" in old and flat is None:  # no longer listed
        with contextlib.suppress(OSError):
            (run.path / old["params"]["file"]).unlink()


def write_features(run: Any, features: Any) -> None:
    """As :meth:`Run.write_features <miakit.shadow._run.Run.write_features>`."""
    x = check_features(features)
    want = (run.n_examples, run.n_augmentations)
    if x.shape[:2] != want:
        raise ValueError(f"features: expected shape [{want[0]}, {want[1]}, D] (examples, "
                         f"augmentations, features), got {list(x.shape)}")
    if mkio.digest_arrays(x) != run.meta["fingerprint"]["data"]:
        raise ValueError(f"features: their digest does not match the data digest of run "
                         f"{run.path}; they are not the features its models are "
                         "trained on (nothing was written)")
    mkio.write_npy(run.features_path, x, "the features")
    run.features_problem = ""
    run._features_verified = True


def write_logits_cache(run: Any, target: Path, sel: list[int], entries: list[dict],
                       shape: tuple[int, ...]) -> np.ndarray:
    """Copy the verified logits of models ``sel`` into one ``.npy`` at ``target``
    (the stacked cache of :meth:`Run.logits <miakit.shadow._run.Run.logits>` with
    ``cache=True``, its only caller), drop any older cache and return the new one
    memory-mapped."""
    try:
        target.parent.mkdir(exist_ok=True)
    except OSError as exc:
        raise mkio.write_error(exc, target.parent, "the stacked logits cache") from exc
    header = {"descr": np.lib.format.dtype_to_descr(run.logits_dtype),
              "fortran_order": False, "shape": shape}

    def write(f):
        np.lib.format.write_array_header_2_0(f, header)
        # Plain writes, not a writable memmap: a full disk then raises ENOSPC instead
        # of killing the process with SIGBUS.
        for m, e in zip(sel, entries):
            arr = run._load_model(m, e)
            h = hashlib.sha256()
            for block in mkio.iter_bytes(arr):
                h.update(block)
                f.write(block)
            if h.hexdigest() != e["sha256"]:
                raise run._corrupt_error([m], "its contents no longer match the "
                                              "manifest checksum")

    mkio.atomic_write(target, write, "the stacked logits cache")
    arr = np.load(target, mmap_mode="r")  # mapped before any cleanup can race with it
    for old in target.parent.glob("logits-*.npy"):
        if old != target:  # one cache at a time bounds the disk space it takes
            with contextlib.suppress(OSError):
                old.unlink()
    return arr


@contextlib.contextmanager
def hold_lock(run: Any) -> Iterator[Any]:
    """As :meth:`Run.writer <miakit.shadow._run.Run.writer>`."""
    lock_path = run.path / ".lock"
    try:
        fd = os.open(str(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise mkio.write_error(exc, lock_path, "the run lock") from exc
    try:
        _lock(fd, lock_path)
        run._lock_fd = fd
        for folder in (run.path, run.path / "models", run.path / "params",
                       run.path / "cache"):
            mkio.remove_stale_tmp(folder)
        yield run
    finally:
        run._lock_fd = None
        _unlock(fd)
        os.close(fd)


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform; single-writer is on the user
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise RunLockedError(
            f"{path.parent}: another process is training this run (it holds {path}); "
            "wait for it to finish") from exc


def _unlock(fd: int) -> None:
    with contextlib.suppress(ImportError, OSError):
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_UN)
