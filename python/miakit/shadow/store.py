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
    cache/logits-<digest>.npy  [K, N, A, C] stacked copy, only if asked for (see below)
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

Reading all the logits: the audit (``miakit audit --run``) and ``miakit budget`` read
the per-model files one block of models at a time, and ``miakit shadow`` reads none
back after training: none of them writes a second copy of the logits into the run, and
a command refused for its options writes nothing into the run. ``Run.logits()`` stacks
the verified per-model files into one ``[K, N, A, C]`` array in memory, for functions
that take an array: ``mk.lira.leave_one_out(run.logits(), run.keep, labels=run.labels)``.
For a run larger than memory, ``Run.logits(cache=True)`` is the stacked cache: the
per-model files copied into one ``.npy`` under ``cache/`` (named by the digest of the
models it holds, so a stale or half-written cache is never mistaken for a current one),
returned memory-mapped, so that the function streams it from disk. Separate files
cannot be memory-mapped as one array, so the cache costs one extra copy of the logits
on disk; nothing writes it unless asked, and it can be deleted at will.

Where each part lives: this module opens and creates runs (:func:`open_run`,
:func:`create_run`, :func:`features_digest`) and re-exports the rest; the :class:`Run`
object is in ``_run``, the writes into a run (a model, the features, the stacked cache
when asked for, the lock) in ``_run_writes``, and the format constants, error types and
checks of one file in ``_run_files``. Imports point one way: this module uses ``_run``,
which uses ``_run_writes``, which uses ``_run_files``.
"""

from __future__ import annotations

import json
import os
import warnings
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
from miakit.shadow._run import Run
from miakit.shadow._run_files import (
    _OWN_NAMES,
    FORMAT,
    FORMAT_VERSION,
    LOGITS_DTYPES,
    CorruptModelError,
    CorruptModelWarning,
    IncompleteRunError,
    RunLockedError,
    RunMismatchError,
    _check_mapping,
    _check_path,
    _map_features,
    _map_model_file,
    _read_json,
    _read_npy,
)

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
    path = _check_path(path, "path")
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
    _check_meta(meta, meta_path)
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
    models = manifest.get("models")
    if not isinstance(models, dict) or not all(
            isinstance(e, dict) and {"file", "shape", "dtype"} <= set(e)
            for e in models.values()):
        raise ValueError(f"{path / 'manifest.json'}: cannot read the manifest (expected "
                         "{\"models\": {index: {\"file\", \"shape\", \"dtype\", ...}}}); "
                         "the run was altered and cannot be trusted")
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


def _check_meta(meta: dict, meta_path: Path) -> None:
    """ValueError naming ``run.json`` when a field the run is read by is missing or of
    the wrong type (a hand-edited or damaged file), before anything uses it."""
    fingerprint = meta.get("fingerprint")
    if not isinstance(fingerprint, dict) or not {"keep", "labels"} <= set(fingerprint):
        raise ValueError(f"{meta_path}: cannot read the run metadata (it has no fingerprint "
                         "of keep.npy and labels.npy); the run was altered and cannot be "
                         "trusted")
    for key in ("n_models", "n_examples", "n_augmentations", "n_classes"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{meta_path}: cannot read the run metadata ({key}: expected a "
                             f"non-negative integer, got {value!r})")


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
    path = _check_path(path, "path")
    for name, v in (("n_augmentations", n_augmentations), ("n_classes", n_classes)):
        check_int(v, name, 1, what="a positive int")
    if not isinstance(data_digest, str):
        raise TypeError(f"data_digest: expected a str, got {type(data_digest).__name__}")
    config = _check_mapping(config, "config")
    metadata = _check_mapping(metadata, "metadata")
    keep = check_keep_matrix(keep, even=even_models)
    m, n = keep.shape
    labels = check_run_labels(labels, n, n_classes)
    if n_classes < 2 and not (config or {}).get("signal"):  # (a run of signals stores one)
        raise ValueError(f"n_classes: expected at least 2 classes, got {n_classes}")
    check_choice(logits_dtype, "logits_dtype", LOGITS_DTYPES)
    for name, value in (("config", config), ("metadata", metadata)):
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: expected JSON-serialisable values ({exc})") from None
    config = json.loads(json.dumps(config))  # JSON round trip: what will be stored
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
