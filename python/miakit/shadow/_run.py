"""The :class:`Run` object: one opened run directory, read and resumed through it.

A :class:`Run` holds the run's metadata, keep matrix, labels and manifest, and reads
what the run stores: a model's logits or parameters (each checked against the
manifest), the features, and all the logits stacked as one array (in memory, or on
request as the memory-mapped stacked cache). Its write methods leave the writing itself
to :mod:`miakit.shadow._run_writes`.
Get one from :func:`miakit.shadow.open_run` or :func:`miakit.shadow.create_run`
(:mod:`miakit.shadow.store`, which also describes the layout on disk).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit import io as mkio
from miakit._validation import check_int
from miakit.shadow import _run_writes as writes
from miakit.shadow._run_files import (
    FEATURES_FILE,
    CorruptModelError,
    IncompleteRunError,
    _map_features,
    _map_model_file,
    _model_name,
    _short_list,
    _unflatten,
)


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

    @property
    def offline_only(self) -> bool:
        """True when no model trained on any of the examples (``keep`` all False): the
        models can serve only as the OUT references of offline attacks on a target model
        (``miakit import`` accepts such runs); online attacks, and attacking the run's own
        models leave-one-out, need models that trained on the examples."""
        return not bool(self.keep.any())

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
        return self.path / "params" / _model_name(self._model_index(m))

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
        return self.path / "models" / _model_name(self._model_index(m))

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

    def logits(self, models: Sequence[int] | None = None, verify: bool = False, *,
               cache: bool = False) -> np.ndarray:
        """Logits of the finished models stacked as one array ``[K, N, A, C]``.

        By default the array is built in memory, read from the model files one at a time
        (each checked against its manifest checksum as it is read), and nothing is
        written into the run. The audit (:func:`miakit.audit.audit`) and ``miakit budget``
        (:func:`miakit.studies.budget.run` given the run) do not call this: they read the
        model files one block of models at a time; ``miakit shadow`` reads no logits back
        (:func:`miakit.shadow.train_heads` with ``return_run=True``). For a run larger
        than memory, read one model at a time (:meth:`model_logits`), or ask for the
        stacked copy on disk with ``cache=True``.

        Parameters
        ----------
        models : sequence of int, optional
            Which models, in this order (default: all M, which must all be finished).
            ``run.logits(run.completed)`` works on a partial run; judge it with
            ``run.keep[models]``.
        verify : bool
            With ``cache=True``: re-hash an existing stacked copy against the manifest
            before returning it. (Models read from their own files -- always without
            ``cache``, and when a stacked copy is built -- are always checked.)
        cache : bool
            Write (or reuse) the stacked copy ``cache/logits-<digest>.npy`` in the run and
            return it memory-mapped, read-only: the array is read from disk as it is used,
            so runs larger than memory can be passed whole to functions that take an
            array. It costs a second copy of the logits on disk; it is named by the digest
            of the models it holds (a stale or half-written copy is never mistaken for a
            current one), replaces any older one, and can be deleted at will.

        Returns
        -------
        numpy.ndarray [K, N, A, C] in the run's ``logits_dtype``
            The caller's own array in memory; with ``cache=True`` a read-only
            :class:`numpy.memmap`.

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
        >>> z.shape, float(z[1].max()), (run.path / "cache").exists()
        ((2, 3, 1, 2), 1.0, False)
        >>> isinstance(run.logits(cache=True), np.memmap), (run.path / "cache").exists()
        (True, True)
        """
        sel = self._select(models)
        entries = [self._entry(m) for m in sel]
        shape = (len(sel),) + self.model_shape
        if not cache:
            stacked = np.empty(shape, dtype=self.logits_dtype)
            for k, (m, e) in enumerate(zip(sel, entries)):
                stacked[k] = self._load_model(m, e)
                if mkio.sha256_array(stacked[k]) != e["sha256"]:  # what is returned
                    raise self._corrupt_error([m], "its contents no longer match the "
                                                   "manifest checksum")
            return stacked
        digest = mkio.digest_json([[int(m), e["sha256"]] for m, e in zip(sel, entries)])
        target = self.path / "cache" / f"logits-{digest[:24]}.npy"
        if target.exists():
            arr = np.load(target, mmap_mode="r")
            if arr.shape == shape and arr.dtype == self.logits_dtype:
                if verify:
                    for k, (m, e) in enumerate(zip(sel, entries)):
                        if mkio.sha256_array(arr[k]) != e["sha256"]:
                            raise CorruptModelError(
                                f"{target}: the cached copy of model {m} does not match the "
                                "manifest; delete the cache folder and call "
                                "logits(cache=True) again", [m], [str(target)])
                return arr
        return writes.write_logits_cache(self, target, sel, entries, shape)

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

    def _model_index(self, m: Any) -> int:
        """``m`` checked as a model index of this run (a bool or a string is refused)."""
        return check_int(m, "m", 0, self.n_models - 1,
                         what=f"a model index in [0, {self.n_models})")

    def _entry(self, m: int) -> dict:
        m = self._model_index(m)
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
        writes.write_model(self, m, logits, params)

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
        writes.write_features(self, features)

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
        with writes.hold_lock(self):
            yield self
