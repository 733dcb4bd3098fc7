"""Run directories: a shadow-model experiment on disk, written one model at a time.

Layout of a run directory::

    run.json          metadata: shapes, dtype, data fingerprint, training config, versions
    keep.npy          [M, N] bool   model m trained on example n
    labels.npy        [N] int64     true labels
    manifest.json     finished models: file, SHA-256 of the data, shape, dtype (and the
                      same for the model's parameters, with their names and shapes)
    models/model-00007.npy   [N, A, C] logits of model 7 (float16 or float32)
    params/model-00007.npy   [P] float32: model 7's parameters, flattened (optional)
    features.npy      [N, A, D] float32: the inputs the models were trained on (optional)
    cache/logits-<digest>.npy  [K, N, A, C] stacked copy for memory-mapped reading
    .lock             held by the process that trains the run

Storage format: plain ``.npy`` files. numpy reads and writes them without any extra
dependency, memory-maps them (``np.load(mmap_mode="r")``), and the format is stable
and documented. safetensors would add a dependency and cannot present M files as one
memory-mapped ``[M, N, A, C]`` array either; zarr or HDF5 would give chunked stacking but
bring a dependency and their own failure modes for partial writes.

Parameters and features (written by :func:`miakit.shadow.train_heads`, read by the
audit for exact per-example gradient norms and input curvature): a model's parameters
are one flat float32 ``.npy`` vector, and the manifest entry of the model lists the
names and shapes of the arrays in it (``layout``), in order, so that
:meth:`Run.model_params` hands back named, memory-mapped, read-only views without a
copy. One ``.npy`` per model rather than an ``.npz`` (a zip archive, which numpy cannot
memory-map and which brings a second container with its own truncation modes) or
safetensors (a new dependency): the parameter files then go through exactly the code
path, checks and checksums of the logits files. The features are stored once per run
and verified against the data digest recorded in ``run.json`` when the run was
created (``fingerprint.data``, a SHA-256 over dtype, shape and bytes): that digest is
their checksum, so they can only ever be the features the models were trained on.

Why it is crash-safe: every file is written to a temporary file, fsynced and renamed
into place (see ``mkio.atomic_write``); a model counts as finished only once the
manifest, itself replaced atomically, lists it with its checksum. Its parameter file
(when it has one) is written before its logits, and both are listed by the same
manifest update, so a model is finished with both files or not at all. A process killed
at any moment (SIGKILL included) loses at most the model it was writing. Opening a run
re-hashes every listed model file, logits and parameters; a truncated or altered file
is reported by name, the model is left out of ``completed`` and retrained when
training resumes, never used. A missing or altered ``features.npy`` is reported by
name and rewritten by the next ``train_heads`` call on the run; until then the run has
no usable features (:attr:`Run.has_params` is False).

Runs written before parameters were stored (logits only), and runs of
:func:`miakit.shadow.train_models`, have no ``params/`` or ``features.npy``: they open,
resume and audit as before (the audit then reports its logit-gradient proxy).

Why the stacked cache: attacks want one ``[M, N, A, C]`` array, and separate files cannot
be memory-mapped as one. ``Run.logits()`` copies the verified per-model files into one
``.npy`` under ``cache/`` (named by the digest of the models it holds, so a stale or
half-written cache is never mistaken for a current one) and returns it memory-mapped:
``mk.lira.leave_one_out(run.logits(), run.keep, labels=run.labels)`` then streams from
disk. The cache costs one extra copy of the logits on disk and can be deleted at will.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit import io as mkio
from miakit._validation import (
    check_choice,
    check_features,
    check_int,
    check_keep_matrix,
    check_run_labels,
)
from miakit.io import RunWriteError

__all__ = [
    "Run",
    "features_digest",
    "open_run",
    "create_run",
    "RunMismatchError",
    "IncompleteRunError",
    "CorruptModelError",
    "CorruptModelWarning",
    "RunLockedError",
    "RunWriteError",
]

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


def _model_name(m: int) -> str:
    return f"model-{m:05d}.npy"


class Run:
    """A shadow-model run directory, opened for reading (and resumable writing).

    Get one from :func:`open_run` or :func:`create_run`.

    Attributes
    ----------
    path : pathlib.Path
        The run directory.
    keep : numpy.ndarray [M, N] bool
        Training membership of every model.
    labels : numpy.ndarray [N] int64
        True labels.
    meta : dict
        The contents of ``run.json``: shapes, ``logits_dtype``, ``fingerprint``,
        ``config`` (training settings), ``metadata`` (dataset, model, ...), versions.
    corrupt : dict of int to str
        Models whose file (logits or parameters) failed verification when the run was
        opened, with the reason; they are not in :attr:`completed` and are retrained on
        resume.
    corrupt_files : dict of int to pathlib.Path
        For each model of :attr:`corrupt`, the file that failed.
    features_problem : str
        Why the stored features cannot be used ("" when they are fine or the run has
        none; see :attr:`has_features`).
    """

    def __init__(self, path: Path, meta: dict, keep: np.ndarray, labels: np.ndarray,
                 manifest: dict, corrupt: dict[int, str]):
        self.path = Path(path)
        self.meta = meta
        self.keep = keep
        self.labels = labels
        self._manifest = manifest
        self.corrupt = corrupt
        self.corrupt_files: dict[int, Path] = {}
        self.features_problem = ""
        self._features_verified = False
        self._lock_fd: int | None = None

    # -- shape ---------------------------------------------------------------------------
    @property
    def n_models(self) -> int:
        return int(self.meta["n_models"])

    @property
    def n_examples(self) -> int:
        return int(self.meta["n_examples"])

    @property
    def n_augmentations(self) -> int:
        return int(self.meta["n_augmentations"])

    @property
    def n_classes(self) -> int:
        return int(self.meta["n_classes"])

    @property
    def logits_dtype(self) -> np.dtype:
        return np.dtype(self.meta["logits_dtype"])

    @property
    def model_shape(self) -> tuple[int, int, int]:
        return (self.n_examples, self.n_augmentations, self.n_classes)

    @property
    def config(self) -> dict:
        """The training settings the run was created with."""
        return self.meta.get("config", {})

    @property
    def signal(self) -> str | None:
        """What a signal-only run holds per example ("loss", "confidence" or "score", as
        :func:`miakit.shadow.import_signals` wrote it; its model files are ``[N, A, 1]``),
        or None for a run of logits."""
        return self.config.get("signal")

    # -- progress ------------------------------------------------------------------------
    @property
    def completed(self) -> np.ndarray:
        """Sorted indices of the finished (verified) models, as int64."""
        done = (int(m) for m in self._manifest["models"] if int(m) not in self.corrupt)
        return np.array(sorted(done), dtype=np.int64)

    @property
    def missing(self) -> np.ndarray:
        """Sorted indices of the models still to train."""
        return np.setdiff1d(np.arange(self.n_models), self.completed).astype(np.int64)

    @property
    def is_complete(self) -> bool:
        return len(self.completed) == self.n_models

    def __repr__(self) -> str:
        m, n, a, c = self.n_models, self.n_examples, self.n_augmentations, self.n_classes
        return (f"Run({str(self.path)!r}, models {len(self.completed)}/{m} done, "
                f"logits [{m}, {n}, {a}, {c}] {self.logits_dtype})")

    # -- parameters and features ---------------------------------------------------------
    @property
    def params_models(self) -> np.ndarray:
        """Sorted indices of the finished models that have stored parameters, as int64."""
        done = self.completed.tolist()
        return np.array([m for m in done if "params" in self._manifest["models"][str(m)]],
                        dtype=np.int64)

    @property
    def has_features(self) -> bool:
        """The run holds its training features (``features.npy``), found intact.

        Checked when the run was opened (fully with ``verify=True``, the header only with
        ``verify=False``; :meth:`features` always verifies before use).
        """
        return self.features_path.is_file() and not self.features_problem

    @property
    def has_params(self) -> bool:
        """Every finished model (at least one) has stored parameters, and the run has its
        features: what the audit needs for exact per-example gradient norms and input
        curvature. False for runs written before parameters were stored (logits only)
        and for runs of :func:`miakit.shadow.train_models`.

        Examples
        --------
        >>> import numpy as np, tempfile, miakit as mk
        >>> y = np.arange(20) % 2
        >>> x = np.random.default_rng(0).normal(size=(20, 3)) + y[:, None]
        >>> keep = mk.shadow.balanced_keep(4, 20, seed=0)
        >>> d = tempfile.mkdtemp() + "/run"
        >>> _ = mk.shadow.train_heads(x, y, keep, run_dir=d, progress=False)
        >>> run = mk.shadow.open_run(d)
        >>> run.has_params, sorted(run.model_params(0)), run.features().shape
        (True, ['bias', 'weight'], (20, 1, 3))
        """
        done = self.completed
        return (self.has_features and len(done) > 0
                and len(self.params_models) == len(done))

    @property
    def features_path(self) -> Path:
        return self.path / FEATURES_FILE

    def params_path(self, m: int) -> Path:
        """Where model ``m``'s parameters are (or would be) stored."""
        return self.path / "params" / _model_name(m)

    def model_params(self, m: int, verify: bool = True) -> dict[str, np.ndarray]:
        """The stored parameters of one finished model, by name, memory-mapped read-only.

        Parameters
        ----------
        m : int
            Model index.
        verify : bool
            Re-hash the parameter file against the manifest checksum first (default).

        Returns
        -------
        dict of str to numpy.ndarray
            float32 views in the order and shapes they were written with (for
            :func:`miakit.shadow.train_heads`: ``weight`` [C, D], ``bias`` [C] for linear
            heads; ``weight1`` [H, D], ``bias1`` [H], ``weight2`` [C, H], ``bias2`` [C]
            for MLP heads, ``nn.Linear`` layout).

        Raises
        ------
        IncompleteRunError
            When the model is not finished.
        KeyError
            When the model was stored without parameters.
        CorruptModelError
            When the parameter file no longer matches its checksum (the file is named).

        Examples
        --------
        >>> import numpy as np, tempfile, miakit as mk
        >>> keep = mk.shadow.balanced_keep(2, 3, seed=0)
        >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/r", keep, np.zeros(3, int),
        ...                            n_augmentations=1, n_classes=2)
        >>> run.write_model(0, np.zeros((3, 1, 2), np.float32),
        ...                 params={"weight": np.ones((2, 4)), "bias": np.zeros(2)})
        >>> {k: v.shape for k, v in run.model_params(0).items()}
        {'weight': (2, 4), 'bias': (2,)}
        """
        entry = self._entry(m).get("params")
        if entry is None:
            raise KeyError(f"run {self.path}: model {m} was stored without parameters")
        path = self.path / entry["file"]
        flat, why = _map_model_file(path, entry)
        if flat is None:
            raise self._corrupt_error([m], why, [path])
        if verify and mkio.sha256_array(flat) != entry["sha256"]:
            raise self._corrupt_error([m], "its contents no longer match the manifest "
                                           "checksum", [path])
        return _unflatten(flat, entry["layout"])

    def features(self, verify: bool = True) -> np.ndarray:
        """The features ``[N, A, D]`` float32 the models were trained on, memory-mapped.

        Parameters
        ----------
        verify : bool
            Check them against the data digest of ``run.json`` (once per opened run).

        Returns
        -------
        numpy.memmap [N, A, D] float32, read-only

        Raises
        ------
        FileNotFoundError
            When the run has no stored features.
        CorruptModelError
            When ``features.npy`` is truncated or altered (the file is named; training the
            run again with :func:`miakit.shadow.train_heads` rewrites it).

        Examples
        --------
        >>> import numpy as np, tempfile, miakit as mk
        >>> x = np.ones((3, 2), np.float32)
        >>> keep = mk.shadow.balanced_keep(2, 3, seed=0)
        >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/r", keep, np.zeros(3, int),
        ...                            n_augmentations=1, n_classes=2,
        ...                            data_digest=mk.shadow.features_digest(x))
        >>> run.write_features(x)
        >>> run.features().shape
        (3, 1, 2)
        """
        path = self.features_path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the run has no stored features (runs of "
                                    "train_heads store them; older runs and runs of "
                                    "train_models do not)")
        arr, why = _map_features(path, self.meta)
        if arr is not None and verify and not self._features_verified:
            if mkio.digest_arrays(arr) != self.meta["fingerprint"]["data"]:
                why = "its contents do not match the data digest in run.json"
        if arr is None or why:
            self.features_problem = why
            raise CorruptModelError(f"{path}: {why}. Run the same train_heads call again to "
                                    "rewrite it.", [], [str(path)])
        self._features_verified = self._features_verified or verify
        self.features_problem = ""
        return arr

    # -- reading -------------------------------------------------------------------------
    def model_path(self, m: int) -> Path:
        return self.path / "models" / _model_name(m)

    def model_logits(self, m: int, verify: bool = True) -> np.ndarray:
        """The logits ``[N, A, C]`` of one finished model, memory-mapped read-only.

        Examples
        --------
        >>> import numpy as np, tempfile, miakit as mk
        >>> keep = mk.shadow.balanced_keep(2, 3, seed=0)
        >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/r", keep, np.zeros(3, int),
        ...                            n_augmentations=1, n_classes=2)
        >>> run.write_model(0, np.ones((3, 1, 2), np.float32))
        >>> run.model_logits(0).shape
        (3, 1, 2)
        """
        entry = self._entry(m)
        arr = self._load_model(m, entry)
        if verify and mkio.sha256_array(arr) != entry["sha256"]:
            raise self._corrupt_error([m], "its contents no longer match the manifest checksum")
        return arr

    def logits(self, models: Sequence[int] | None = None, verify: bool = False) -> np.ndarray:
        """Logits of the finished models as one memory-mapped array ``[K, N, A, C]``.

        Parameters
        ----------
        models : sequence of int, optional
            Which models, in this order (default: all M, which must all be finished).
            ``run.logits(run.completed)`` works on a partial run; judge it with
            ``run.keep[models]``.
        verify : bool
            Re-hash an existing stacked cache against the manifest before returning it.
            (A cache being built always checks every model file it copies.)

        Returns
        -------
        numpy.memmap [K, N, A, C], read-only
            Backed by ``cache/logits-<digest>.npy``: the array is read from disk as it is
            used, so runs larger than memory can be scored.

        Raises
        ------
        IncompleteRunError
            When a requested model is not finished; the message lists them.
        CorruptModelError
            When a model file no longer matches its checksum.

        Examples
        --------
        >>> import numpy as np, tempfile, miakit as mk
        >>> keep = mk.shadow.balanced_keep(2, 3, seed=0)
        >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/r", keep, np.zeros(3, int),
        ...                            n_augmentations=1, n_classes=2)
        >>> for m in range(2):
        ...     run.write_model(m, np.full((3, 1, 2), m, np.float32))
        >>> z = run.logits()
        >>> z.shape, float(z[1].max())
        ((2, 3, 1, 2), 1.0)
        """
        sel = self._select(models)
        entries = [self._entry(m) for m in sel]
        digest = mkio.digest_json([[int(m), e["sha256"]] for m, e in zip(sel, entries)])
        cache_dir = self.path / "cache"
        target = cache_dir / f"logits-{digest[:24]}.npy"
        shape = (len(sel),) + self.model_shape
        if target.exists():
            arr = np.load(target, mmap_mode="r")
            if arr.shape == shape and arr.dtype == self.logits_dtype:
                if verify:
                    for k, (m, e) in enumerate(zip(sel, entries)):
                        if mkio.sha256_array(arr[k]) != e["sha256"]:
                            raise CorruptModelError(
                                f"{target}: the cached copy of model {m} does not match the "
                                "manifest; delete the cache folder and call logits() again",
                                [m], [str(target)])
                return arr
        return self._build_cache(target, sel, entries, shape)

    def require_finished(self, models: Sequence[int] | None = None) -> list[int]:
        """The requested models (default: all), each checked to be finished.

        Raises
        ------
        IncompleteRunError
            Listing the requested models that are not finished (or corrupt on disk).

        Examples
        --------
        >>> import numpy as np, tempfile, miakit as mk
        >>> keep = mk.shadow.balanced_keep(2, 3, seed=0)
        >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/r", keep, np.zeros(3, int),
        ...                            n_augmentations=1, n_classes=2)
        >>> run.write_model(0, np.ones((3, 1, 2), np.float32))
        >>> run.require_finished([0])
        [0]
        """
        return self._select(models)

    def _select(self, models: Sequence[int] | None) -> list[int]:
        if models is None:
            sel = list(range(self.n_models))
        else:
            arr = np.asarray(models)
            if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
                raise TypeError(f"models: expected a 1-D sequence of model indices, got {models!r}")
            sel = [int(m) for m in arr]
            bad = [m for m in sel if not 0 <= m < self.n_models]
            if bad:
                raise ValueError(f"models: expected indices in [0, {self.n_models}), got {bad}")
            if len(set(sel)) != len(sel):
                raise ValueError("models: expected distinct model indices")
            if not sel:
                raise ValueError("models: expected at least one model")
        done = set(self.completed.tolist())
        missing = [m for m in sel if m not in done]
        if missing:
            corrupt = [m for m in missing if m in self.corrupt]
            extra = f" ({len(corrupt)} of them corrupt on disk: {corrupt})" if corrupt else ""
            raise IncompleteRunError(
                f"run {self.path}: {len(missing)} requested models are not finished: "
                f"{_short_list(missing)}{extra}. {len(done)} of {self.n_models} are done; "
                "run the same training command again to finish them, or pass "
                "models=run.completed to use the finished ones", missing)
        return sel

    def _entry(self, m: int) -> dict:
        entry = self._manifest["models"].get(str(int(m)))
        if entry is None or int(m) in self.corrupt:
            raise IncompleteRunError(f"run {self.path}: model {m} is not finished", [int(m)])
        return entry

    def _load_model(self, m: int, entry: dict) -> np.ndarray:
        arr, why = _map_model_file(self.path / entry["file"], entry)
        if arr is None:
            raise self._corrupt_error([m], why)
        return arr

    def _corrupt_error(self, models: list[int], why: str,
                       files: Sequence[Path] | None = None) -> CorruptModelError:
        paths = [str(p) for p in (files or [self.model_path(m) for m in models])]
        return CorruptModelError(
            f"{', '.join(paths)}: {why}. Run the training command again to retrain "
            f"model{'s' if len(models) > 1 else ''} {models}.", models, paths)

    def _build_cache(self, target: Path, sel: list[int], entries: list[dict],
                     shape: tuple[int, ...]) -> np.ndarray:
        try:
            target.parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise mkio.write_error(exc, target.parent, "the stacked logits cache") from exc
        header = {"descr": np.lib.format.dtype_to_descr(self.logits_dtype),
                  "fortran_order": False, "shape": shape}

        def write(f):
            np.lib.format.write_array_header_2_0(f, header)
            # Plain writes, not a writable memmap: a full disk then raises ENOSPC instead
            # of killing the process with SIGBUS.
            for m, e in zip(sel, entries):
                arr = self._load_model(m, e)
                h = hashlib.sha256()
                for block in mkio.iter_bytes(arr):
                    h.update(block)
                    f.write(block)
                if h.hexdigest() != e["sha256"]:
                    raise self._corrupt_error([m], "its contents no longer match the "
                                                   "manifest checksum")

        mkio.atomic_write(target, write, "the stacked logits cache")
        arr = np.load(target, mmap_mode="r")  # mapped before any cleanup can race with it
        for old in target.parent.glob("logits-*.npy"):
            if old != target:  # one cache at a time bounds the disk space it takes
                with contextlib.suppress(OSError):
                    old.unlink()
        return arr

    # -- writing -------------------------------------------------------------------------
    def write_model(self, m: int, logits: Any,
                    params: Mapping[str, Any] | None = None) -> None:
        """Store model ``m`` atomically -- logits ``[N, A, C]``, optionally its parameters --
        and list it as finished.

        The parameter file (``params/model-<m>.npy``) is written first, then the logits
        file, each to a temporary name, fsynced and renamed; then one atomic manifest
        update lists the model with the checksums of both. If the process dies in between,
        the model is simply not finished and is trained again.

        Parameters
        ----------
        m : int
            Model index.
        logits : array [N, A, C] float
            Stored in the run's ``logits_dtype``; must be finite.
        params : mapping of str to array, optional
            Named parameter arrays (numpy or torch), stored as float32 in this order and
            read back by :meth:`model_params`; must be finite. The audit understands the
            names of :func:`miakit.shadow.train_heads` (linear head ``weight`` [C, D],
            ``bias`` [C]; MLP head ``weight1``, ``bias1``, ``weight2``, ``bias2``, in
            ``nn.Linear`` layout, on the coordinates of :meth:`features`).

        Examples
        --------
        >>> import numpy as np, tempfile, miakit as mk
        >>> keep = mk.shadow.balanced_keep(2, 3, seed=0)
        >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/r", keep, np.zeros(3, int),
        ...                            n_augmentations=1, n_classes=2)
        >>> run.write_model(1, np.zeros((3, 1, 2), np.float32))
        >>> run.completed.tolist()
        [1]
        """
        check_int(m, "m", 0, self.n_models - 1, what=f"a model index in [0, {self.n_models})")
        if hasattr(logits, "detach"):
            logits = logits.detach().cpu().numpy()
        arr = np.asarray(logits)
        if arr.shape != self.model_shape:
            raise ValueError(f"logits: expected shape {self.model_shape} (examples, "
                             f"augmentations, classes), got {arr.shape}")
        if arr.dtype.kind != "f":
            raise TypeError(f"logits: expected a floating-point array, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr.astype(self.logits_dtype, copy=False))
        if not np.isfinite(arr).all():
            raise ValueError(f"logits of model {m}: expected finite values, got NaN or inf "
                             "(training diverged: lower the learning rate)")
        m = int(m)
        flat, layout = (None, None) if params is None else _flatten_params(params, m)
        rel = f"models/{_model_name(m)}"
        prel = f"params/{_model_name(m)}"
        old = self._manifest["models"].get(str(m))
        written: list[str] = []
        try:
            entry = {"file": rel, "sha256": mkio.sha256_array(arr),
                     "shape": list(arr.shape), "dtype": str(arr.dtype)}
            if flat is not None:
                try:
                    (self.path / "params").mkdir(exist_ok=True)
                except OSError as exc:
                    raise mkio.write_error(exc, self.path / "params",
                                             "the parameters folder") from exc
                mkio.write_npy(self.path / prel, flat, f"the parameters of model {m}")
                written.append(prel)
                entry["params"] = {"file": prel, "sha256": mkio.sha256_array(flat),
                                   "shape": list(flat.shape), "dtype": str(flat.dtype),
                                   "layout": layout}
            mkio.write_npy(self.path / rel, arr, f"the logits of model {m}")
            written.append(rel)
            mkio.kill_point(f"model-{m}:files")  # test hook: files in place, not listed
            models = dict(self._manifest["models"])
            models[str(m)] = entry
            manifest = {**self._manifest, "models": dict(sorted(models.items(),
                                                                key=lambda kv: int(kv[0])))}
            mkio.write_json(self.path / "manifest.json", manifest, "the manifest",
                              midway=f"model-{m}:manifest")
        except OSError:
            # Files landed but the model is not listed: remove them, so the directory is
            # exactly as before (a listed model is only rewritten when it was corrupt).
            if old is None:
                for r in written:
                    with contextlib.suppress(OSError):
                        (self.path / r).unlink()
            raise
        self._manifest = manifest
        self.corrupt.pop(m, None)
        self.corrupt_files.pop(m, None)
        if old is not None and "params" in old and flat is None:  # no longer listed
            with contextlib.suppress(OSError):
                (self.path / old["params"]["file"]).unlink()

    def write_features(self, features: Any) -> None:
        """Store the features the run's models are trained on, once per run.

        They must be the data the run was created with: their digest
        (:func:`features_digest`) must equal the run's ``fingerprint.data``, else nothing
        is written. :func:`miakit.shadow.train_heads` calls this; call it yourself only
        for a run you create with ``data_digest=features_digest(features)``, holding
        :meth:`writer` when another process may train the run.

        Parameters
        ----------
        features : array [N, D] or [N, A, D] float
            Stored as float32 ``[N, A, D]`` in ``features.npy`` (atomically).

        Examples
        --------
        >>> import numpy as np, tempfile, miakit as mk
        >>> x = np.arange(6, dtype=np.float32).reshape(3, 2)
        >>> keep = mk.shadow.balanced_keep(2, 3, seed=0)
        >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/r", keep, np.zeros(3, int),
        ...                            n_augmentations=1, n_classes=2,
        ...                            data_digest=mk.shadow.features_digest(x))
        >>> run.write_features(x)
        >>> run.has_features
        True
        """
        x = check_features(features)
        want = (self.n_examples, self.n_augmentations)
        if x.shape[:2] != want:
            raise ValueError(f"features: expected shape [{want[0]}, {want[1]}, D] (examples, "
                             f"augmentations, features), got {list(x.shape)}")
        if mkio.digest_arrays(x) != self.meta["fingerprint"]["data"]:
            raise ValueError(f"features: their digest does not match the data digest of run "
                             f"{self.path}; they are not the features its models are "
                             "trained on (nothing was written)")
        mkio.write_npy(self.features_path, x, "the features")
        self.features_problem = ""
        self._features_verified = True

    @contextlib.contextmanager
    def writer(self) -> Iterator[Run]:
        """Hold the run's lock while training, so two processes never train one run.

        The lock is an advisory ``flock`` on ``.lock``; the kernel releases it when the
        process dies, so a killed run never stays locked.

        Examples
        --------
        >>> import numpy as np, tempfile, miakit as mk
        >>> keep = mk.shadow.balanced_keep(2, 3, seed=0)
        >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/r", keep, np.zeros(3, int),
        ...                            n_augmentations=1, n_classes=2)
        >>> with run.writer():
        ...     run.write_model(0, np.zeros((3, 1, 2), np.float32))
        """
        lock_path = self.path / ".lock"
        try:
            fd = os.open(str(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise mkio.write_error(exc, lock_path, "the run lock") from exc
        try:
            _lock(fd, lock_path)
            self._lock_fd = fd
            for folder in (self.path, self.path / "models", self.path / "params",
                           self.path / "cache"):
                mkio.remove_stale_tmp(folder)
            yield self
        finally:
            self._lock_fd = None
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


def _short_list(items: Sequence[int], limit: int = 20) -> str:
    items = list(items)
    if len(items) <= limit:
        return str(items)
    return f"{items[:limit]} and {len(items) - limit} more"


# -- opening and creating ----------------------------------------------------------------
def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read {what} ({exc})") from exc


def _read_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read {what} ({exc})") from exc


def open_run(path: str | os.PathLike, verify: bool = True) -> Run:
    """Open an existing run directory and check every finished model file.

    Parameters
    ----------
    path : str or path-like
        The run directory.
    verify : bool
        Re-hash every model file listed in the manifest (default). A file that is
        missing, truncated or altered is reported with a :class:`CorruptModelWarning`
        naming it, and left out of ``run.completed``, so it is retrained on resume and
        never used. With ``verify=False`` only sizes and headers are checked.

    Returns
    -------
    Run

    Examples
    --------
    >>> import numpy as np, tempfile, miakit as mk
    >>> d = tempfile.mkdtemp() + "/run"
    >>> keep = mk.shadow.balanced_keep(2, 3, seed=0)
    >>> _ = mk.shadow.create_run(d, keep, np.zeros(3, int), n_augmentations=1, n_classes=2)
    >>> run = mk.shadow.open_run(d)
    >>> run.keep.shape, run.completed.tolist()
    ((2, 3), [])
    """
    path = Path(path)
    meta_path = path / "run.json"
    if not meta_path.is_file():
        what = "does not exist" if not path.exists() else "is not a miakit run (no run.json)"
        raise FileNotFoundError(f"{path}: {what}")
    meta = _read_json(meta_path, "the run metadata")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: not a miakit run (format {meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: written by a newer miakit (run format "
                         f"{meta['format_version']}); upgrade miakit to read it")
    keep = _read_npy(path / "keep.npy", "the keep matrix")
    labels = _read_npy(path / "labels.npy", "the labels")
    m, n = int(meta["n_models"]), int(meta["n_examples"])
    if keep.shape != (m, n) or keep.dtype != np.bool_:
        raise ValueError(f"{path / 'keep.npy'}: expected bool [{m}, {n}], "
                         f"got {keep.dtype}{list(keep.shape)}")
    if labels.shape != (n,):
        raise ValueError(f"{path / 'labels.npy'}: expected [{n}], got {list(labels.shape)}")
    if mkio.digest_arrays(keep) != meta["fingerprint"]["keep"] or \
            mkio.digest_arrays(labels) != meta["fingerprint"]["labels"]:
        raise ValueError(f"{path}: keep.npy or labels.npy does not match the fingerprint in "
                         "run.json; the run was altered and cannot be trusted")
    try:
        manifest = _read_json(path / "manifest.json", "the manifest")
    except FileNotFoundError:
        manifest = {"models": {}}
    run = Run(path, meta, keep, labels, manifest, {})
    run.corrupt, run.corrupt_files = _verify_models(run, verify)
    if run.corrupt:
        lines = "; ".join(f"model {k} ({run.corrupt_files[k]}): {v}"
                          for k, v in sorted(run.corrupt.items()))
        warnings.warn(f"{path}: {len(run.corrupt)} model files failed verification and will "
                      f"be retrained when training resumes: {lines}", CorruptModelWarning,
                      stacklevel=2)
    if run.features_path.is_file():
        arr, why = _map_features(run.features_path, meta)
        if arr is not None and verify:
            if mkio.digest_arrays(arr) != meta["fingerprint"]["data"]:
                why = "its contents do not match the data digest in run.json"
            run._features_verified = not why
        del arr
        if why:
            run.features_problem = why
            warnings.warn(f"{path}: the stored features ({run.features_path}) failed "
                          f"verification: {why}. They are not used (the audit falls back to "
                          "its logit-gradient proxy); the same train_heads call rewrites "
                          "them.", CorruptModelWarning, stacklevel=2)
    return run


def _map_model_file(path: Path, entry: dict) -> tuple[np.ndarray | None, str]:
    """Memory-map one model file and check it against its manifest entry (not the hash).

    Returns the array, or None and the reason it cannot be used.
    """
    if not path.is_file():
        return None, "the file is missing"
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:  # e.g. truncated: "mmap length is greater ..."
        return None, f"it cannot be read as .npy ({exc})"
    if arr.shape != tuple(entry["shape"]) or arr.dtype != np.dtype(entry["dtype"]):
        return None, (f"it holds {arr.dtype}{list(arr.shape)}, the manifest says "
                      f"{entry['dtype']}{entry['shape']}")
    if isinstance(arr, np.memmap) and path.stat().st_size != int(arr.offset) + arr.nbytes:
        return None, "the file has trailing bytes"
    return arr, ""


def _verify_models(run: Run, full: bool) -> tuple[dict[int, str], dict[int, Path]]:
    """Check every listed model's logits file and, when it has one, its parameter file."""
    corrupt: dict[int, str] = {}
    files: dict[int, Path] = {}
    for key, entry in run._manifest["models"].items():
        for part in (entry, entry.get("params")):
            if part is None:
                continue
            path = run.path / part["file"]
            arr, why = _map_model_file(path, part)
            if arr is not None and full and mkio.sha256_array(arr) != part["sha256"]:
                why = "its contents do not match the manifest checksum"
            if why:
                corrupt[int(key)] = why if part is entry else f"its parameters: {why}"
                files[int(key)] = path
                break
    return corrupt, files


def _map_features(path: Path, meta: dict) -> tuple[np.ndarray | None, str]:
    """Memory-map ``features.npy`` and check its header (not the digest)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return None, f"it cannot be read as .npy ({exc})"
    n, a = int(meta["n_examples"]), int(meta["n_augmentations"])
    if arr.ndim != 3 or arr.shape[:2] != (n, a) or arr.dtype != np.float32:
        return None, f"it holds {arr.dtype}{list(arr.shape)}, expected float32[{n}, {a}, D]"
    if isinstance(arr, np.memmap) and path.stat().st_size != int(arr.offset) + arr.nbytes:
        return None, "the file has trailing bytes"
    return arr, ""


def features_digest(features: Any) -> str:
    """The data digest :func:`miakit.shadow.train_heads` records for its features.

    SHA-256 over dtype, shape and bytes of the features as stored: float32, C order,
    ``[N, A, D]`` (``[N, D]`` is read as A = 1). Pass it as ``create_run(...,
    data_digest=...)`` to be able to store the features with :meth:`Run.write_features`.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> x = np.ones((4, 3))
    >>> mk.shadow.features_digest(x) == mk.shadow.features_digest(x[:, None, :])
    True
    """
    return mkio.digest_arrays(check_features(features))


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


def create_run(
    path: str | os.PathLike,
    keep: Any,
    labels: Any,
    *,
    n_augmentations: int,
    n_classes: int,
    logits_dtype: str = "float32",
    data_digest: str = "",
    config: dict | None = None,
    metadata: dict | None = None,
    even_models: bool = True,
) -> Run:
    """Create a run directory, or reopen it if it already holds this same experiment.

    Parameters
    ----------
    path : str or path-like
        The run directory; created with its parents if needed.
    keep : array [M, N] bool
        Training membership (see :func:`miakit.shadow.balanced_keep`).
    labels : array [N] int
        True labels, in ``[0, n_classes)``.
    n_augmentations, n_classes : int
        A and C of the logits each model will store.
    logits_dtype : {"float32", "float16"}
        Storage precision of the logits (float16 halves the disk space).
    data_digest : str
        A digest of the training inputs (e.g. from the features), part of the fingerprint.
    config : dict, optional
        JSON-serialisable settings that determine the trained models (model, optimizer,
        epochs, seed, ...); part of the fingerprint.
    metadata : dict, optional
        Descriptive JSON-serialisable information stored in ``run.json`` (dataset name,
        model description); not part of the fingerprint.
    even_models : bool
        Require an even number of models, as balanced keep matrices have (runs trained
        by miakit). Imported runs (:func:`miakit.shadow.import_logits`) may have any
        number of models >= 2.

    Returns
    -------
    Run
        Opened and verified; models already finished stay finished.

    Raises
    ------
    RunMismatchError
        When ``path`` holds a run with different data, keep, labels or config; the
        message says what differs. An existing run is never overwritten.

    Examples
    --------
    >>> import numpy as np, tempfile, miakit as mk
    >>> keep = mk.shadow.balanced_keep(4, 10, seed=0)
    >>> run = mk.shadow.create_run(tempfile.mkdtemp() + "/run", keep, np.arange(10) % 2,
    ...                            n_augmentations=2, n_classes=2, config={"seed": 0})
    >>> run.n_models, run.missing.tolist()
    (4, [0, 1, 2, 3])
    """
    path = Path(path)
    keep = check_keep_matrix(keep, even=even_models)
    m, n = keep.shape
    labels = check_run_labels(labels, n, n_classes)
    for name, v in (("n_augmentations", n_augmentations), ("n_classes", n_classes)):
        check_int(v, name, 1, what="a positive int")
    if n_classes < 2 and not (config or {}).get("signal"):  # (a run of signals stores one)
        raise ValueError(f"n_classes: expected at least 2 classes, got {n_classes}")
    check_choice(logits_dtype, "logits_dtype", LOGITS_DTYPES)
    config = json.loads(json.dumps(config or {}))  # JSON round trip: what will be stored
    from miakit import __version__

    fingerprint = {"keep": mkio.digest_arrays(keep), "labels": mkio.digest_arrays(labels),
                   "data": str(data_digest), "config": mkio.digest_json(config)}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "miakit_version": __version__,
            "n_models": m, "n_examples": n, "n_augmentations": int(n_augmentations),
            "n_classes": int(n_classes), "logits_dtype": logits_dtype,
            "fingerprint": fingerprint, "config": config, "metadata": metadata or {}}
    if (path / "run.json").is_file():
        run = open_run(path)
        _check_same(run, meta)
        return run
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: exists and is not a directory")
    if path.is_dir():
        foreign = [p.name for p in path.iterdir()
                   if p.name not in _OWN_NAMES and mkio.TMP_MARK not in p.name]
        if foreign:
            raise RunMismatchError(
                f"{path}: exists and is not a miakit run (it holds {sorted(foreign)[:5]}); "
                "choose an empty or new directory")
    try:
        (path / "models").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise mkio.write_error(exc, path, "the run directory") from exc
    mkio.write_npy(path / "keep.npy", keep, "the keep matrix")
    mkio.write_npy(path / "labels.npy", labels, "the labels")
    mkio.write_json(path / "manifest.json", {"format": FORMAT, "models": {}}, "the manifest")
    # run.json last: its presence marks a completely created run.
    mkio.write_json(path / "run.json", meta, "the run metadata")
    return open_run(path)


def _check_same(run: Run, meta: dict) -> None:
    old = run.meta
    diffs = []
    for key in ("n_models", "n_examples", "n_augmentations", "n_classes", "logits_dtype"):
        if old.get(key) != meta[key]:
            diffs.append(f"{key} {old.get(key)!r} != {meta[key]!r}")
    fp_old, fp_new = old.get("fingerprint", {}), meta["fingerprint"]
    names = {"data": "the training data (features/inputs)", "labels": "the labels",
             "keep": "the keep matrix"}
    for key, what in names.items():
        if fp_old.get(key) != fp_new[key]:
            diffs.append(f"{what} differ")
    if fp_old.get("config") != fp_new["config"]:
        o, c = old.get("config", {}), meta["config"]
        keys = sorted(k for k in set(o) | set(c) if o.get(k) != c.get(k))
        diffs.append("settings differ: " + ", ".join(
            f"{k}={o.get(k)!r} in the run, {c.get(k)!r} now" for k in keys))
    if diffs:
        raise RunMismatchError(
            f"{run.path}: this directory holds a different experiment ({'; '.join(diffs)}). "
            "It was left untouched; use another directory for the new run, or the settings "
            "it was created with to resume it.")
