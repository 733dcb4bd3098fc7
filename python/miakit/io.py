"""Every file miakit writes goes through here: atomic replace, JSON, arrays, figures, digests.

A file is never modified in place. It is written to a temporary file in the same folder,
flushed and fsynced, then renamed over its final name (``os.replace`` is atomic on POSIX
and Windows), and the folder is fsynced so that the rename itself survives a power cut.
A process killed at any moment therefore leaves either the old file or the new one,
plus at worst a stray temporary file that the next writer removes
(:func:`remove_stale_tmp`). A full disk or a read-only folder is a
:class:`RunWriteError` naming the file and what it was.

The run store (``miakit.shadow``), the audit's report and every study's result write
with :func:`atomic_write`, :func:`write_json`, :func:`write_npy`, :func:`save_figure` and
:func:`write_report`; the digests (:func:`sha256_array`, :func:`digest_arrays`,
:func:`digest_json`) fingerprint a run's inputs.

Examples
--------
>>> import json, tempfile, pathlib
>>> from miakit.io import write_json
>>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
>>> write_json(p, {"auc": 0.5}, "a report")
>>> json.loads(p.read_text())
{'auc': 0.5}
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

TMP_MARK = ".tmp-"
_HASH_BLOCK = 1 << 24  # bytes hashed per update: bounded memory for memory-mapped inputs
# Test hook: a process whose environment sets MIAKIT_TEST_KILL_AT to the name of a kill
# point kills itself with SIGKILL there (tests/test_shadow_resume.py); unset, it does nothing.
KILL_ENV = "MIAKIT_TEST_KILL_AT"


class RunWriteError(OSError):
    """Writing to a run directory failed (disk full, no permission, read-only, ...).

    It is an ``OSError`` with the original ``errno``; the message says which file could
    not be written and that the run on disk is unchanged.
    """

    def __str__(self) -> str:  # OSError's default adds "[Errno n]" before a long message
        return str(self.strerror)


def write_error(exc: OSError, path: Path, what: str) -> RunWriteError:
    reason = exc.strerror or str(exc)
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "; free some space (or choose another directory) and run the same command again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "; the directory is not writable: choose another one or fix its permissions"
    msg = (f"could not write {what} to {path}: {reason}{hint}. Nothing already in the run "
           "was changed (every write goes to a temporary file first).")
    return RunWriteError(exc.errno or errno.EIO, msg, str(path))


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # Windows cannot open directories; its renames are journaled anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object], what: str) -> None:
    """Write ``path`` through ``write(fileobj)`` so that it is either complete or absent.

    Raises :class:`RunWriteError` when the disk is full or the folder not writable; the
    temporary file is removed and any earlier version of ``path`` stays as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        try:
            with open(tmp, "xb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        fsync_dir(path.parent)
    except OSError as exc:
        if isinstance(exc, RunWriteError):
            raise
        raise write_error(exc, path, what) from exc


def kill_point(point: str) -> None:
    """Die here, by SIGKILL, when the environment variable ``MIAKIT_TEST_KILL_AT`` equals
    ``point``: lets the tests crash a writer at an exact moment. A no-op otherwise."""
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def write_json(path: Path, obj: Any, what: str, midway: str = "") -> None:
    """Write ``obj`` as JSON atomically; ``midway`` names a :func:`kill_point` reached when
    half of the bytes are in the temporary file (flushed)."""
    data = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()

    def write(f: BinaryIO) -> None:
        f.write(data[:len(data) // 2])
        if midway and os.environ.get(KILL_ENV) == midway:
            f.flush()
            os.fsync(f.fileno())
            kill_point(midway)
        f.write(data[len(data) // 2:])

    atomic_write(path, write, what)


def write_report(out_dir: str | os.PathLike, name: str, report: dict,
                 plot: Callable[[dict, Path], None] | None = None) -> None:
    """Write ``report`` as ``<name>.json`` in ``out_dir`` (created when missing), after
    drawing ``plot(report, <name>.png)`` when a plot is given; the files written are
    recorded in ``report["files"]`` first, so the saved report names them too."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"report": str(out / f"{name}.json")}
    if plot is not None:
        plot(report, out / f"{name}.png")
        files["plot"] = str(out / f"{name}.png")
    report["files"] = files
    write_json(out / f"{name}.json", report, f"the {name} report")


def save_figure(fig: Any, path: str | os.PathLike, what: str = "a figure") -> Path:
    """Save a matplotlib figure atomically (its format from the file's suffix); returns
    the path. A half-drawn PNG is never left behind by a killed process.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from miakit._plotting import subplots
    >>> from miakit.io import save_figure
    >>> fig, ax = subplots()
    >>> _ = ax.plot([0, 1], [0, 1])
    >>> save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "f.png").stat().st_size > 0
    True
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt), what)
    return path


def write_npy(path: Path, array: np.ndarray, what: str) -> None:
    arr = np.ascontiguousarray(array)
    atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False), what)


def remove_stale_tmp(folder: Path) -> None:
    """Delete temporary files left behind by a killed writer (call with the run locked)."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(".") and TMP_MARK in p.name and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()


def iter_bytes(array: np.ndarray) -> Iterator[memoryview]:
    """The raw bytes of a C-contiguous array (or memmap) in bounded blocks."""
    flat = np.ascontiguousarray(array).data.cast("B")
    for start in range(0, len(flat), _HASH_BLOCK):
        yield flat[start:start + _HASH_BLOCK]


def sha256_array(array: np.ndarray) -> str:
    """SHA-256 of the array's data bytes in C order (the header is not included)."""
    h = hashlib.sha256()
    for block in iter_bytes(array):
        h.update(block)
    return h.hexdigest()


def digest_arrays(*arrays: Any) -> str:
    """One SHA-256 over dtype, shape and contents of each array (numpy or torch)."""
    h = hashlib.sha256()
    for a in arrays:
        if hasattr(a, "detach"):  # a torch tensor, on any device
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        for block in iter_bytes(a):
            h.update(block)
    return h.hexdigest()


def digest_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
