"""Shadow models trained elsewhere, imported into a miakit run (docs/guide/import.md).

Three layouts are read:

- arrays: logits ``[M, N, A, C]`` (or ``[M, N, C]``), keep ``[M, N]`` and labels
  ``[N]``, in memory or as ``.npy`` files (memory-mapped, read one model at a time);
- a folder of per-model files: ``NAME.npy`` logits ``[N, A, C]`` (or ``[N, C]``) beside
  ``NAME.keep.npy``, that model's keep row ``[N]`` (models in the order of their names);
- the LiRA authors' reference experiments: ``LOGDIR/y_train.npy`` labels, and for each
  ``LOGDIR/experiment-*/`` a ``keep.npy`` row and ``logits/*.npy`` checkpoints
  ``[N, 1, A, C]``, of which the last (by name) is taken, as their plotting code does.

Everything is checked (shapes, keep booleans, labels in range, every logit finite, every
example OUT for at least one model) before anything is written. Models that never trained
on any of the examples (keep all False) are accepted: an offline-only run, the reference
models of offline attacks on a target model. The run then holds one file per model like a
run miakit trained, so ``miakit audit --run RUN`` audits it. Importing again into the same
directory with the same data resumes; different data is an error and the existing run is
left untouched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit import _arrays as ar
from miakit import io as mkio
from miakit._validation import check_choice, check_int, check_keep_matrix, check_run_labels
from miakit.shadow._run_files import _check_mapping, _check_path
from miakit.shadow.store import LOGITS_DTYPES, Run, create_run

__all__ = ["import_logits", "import_folder", "import_lira_reference", "import_signals",
           "SIGNAL_KINDS"]

SIGNAL_KINDS = ("loss", "confidence", "score")
"""What a signal-only run may hold per (model, example, view): the cross-entropy loss of the
true class, its probability ``p_y``, or any score (larger = more member-like)."""


def _load(x: Any, name: str) -> np.ndarray:
    """An array, or a ``.npy`` path opened memory-mapped."""
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if not p.is_file():
            raise FileNotFoundError(f"{name}: no such file {p}")
        try:  # an empty or truncated file is an EOFError from numpy's header reader
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{name}: {p} is not a .npy array "
                             f"({exc or 'the file is empty'})") from None
        if not isinstance(arr, np.ndarray):  # np.load opens an .npz as an archive
            arr.close()
            raise ValueError(f"{name}: {p} is an .npz archive, expected one .npy array "
                             "(save it with np.save)")
        return arr
    if hasattr(x, "detach"):
        x = ar.to_numpy(x)
    return np.asarray(x)


def _check_out(out: Any, metadata: Any) -> None:
    """The run directory and its metadata, checked before any file is read."""
    _check_path(out, "out")
    _check_mapping(metadata, "metadata")


def _check_n_classes(n_classes: Any, found: int) -> int:
    """C: ``n_classes`` when given (it must equal the logits' ``found``), else ``found``."""
    if n_classes is None:
        return found
    c = check_int(n_classes, "n_classes", 2, what="an int >= 2 or None")
    if found != c:
        raise ValueError(f"n_classes: the logits have {found} classes, not {c}")
    return c


def _model_logits(z: np.ndarray, m: int, shape: tuple[int, int, int], where: str
                  ) -> np.ndarray:
    """Model m's logits as [N, A, C], checked (float, finite)."""
    if z.dtype.kind != "f":
        raise TypeError(f"{where}: expected floating-point logits, got dtype {z.dtype}")
    a = np.asarray(z)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.shape != shape:
        raise ValueError(f"{where}: expected logits of shape {shape} (examples, views, "
                         f"classes) like the other models, got {np.shape(z)}")
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{where}: expected finite logits, got NaN or inf for "
                         f"{len(rows)} examples (first: example {int(rows[0])})")
    return a


def _write(out: Any, models: Sequence[Any], keep: np.ndarray, labels: np.ndarray,
           n_classes: int, n_views: int, logits_dtype: str, source: dict,
           metadata: dict | None, extra_config: dict | None = None) -> Run:
    """Check every model, then create (or resume) the run and write the models not yet
    in it. The run's fingerprint holds a digest of all the logits (not where they came
    from), so the same data imported again resumes and different data is refused."""
    import hashlib

    _check_some_out(keep)
    h = hashlib.sha256()
    for m, get in enumerate(models):  # every model read and checked before anything is
        values = np.ascontiguousarray(get())  # written: a refused import leaves no run
        _check_fits(values, logits_dtype, m, source.get("layout"))
        h.update(mkio.sha256_array(values).encode())
    run = create_run(out, keep, labels, n_augmentations=n_views, n_classes=n_classes,
                     logits_dtype=logits_dtype, data_digest=h.hexdigest(),
                     config={"trainer": "import", "layout": source["layout"],
                             **(extra_config or {})},
                     metadata={"imported_from": source, **(metadata or {})},
                     even_models=False)
    done = set(run.completed.tolist())
    with run.writer():
        for m, get in enumerate(models):
            if m not in done:
                run.write_model(m, get())
    return run


def _check_fits(values: np.ndarray, dtype: str, m: int, layout: Any) -> None:
    """Refuse finite values that the run's storage dtype cannot hold (they would be stored
    as inf), naming the model, the largest value and the dtype's range."""
    limit = float(np.finfo(np.dtype(dtype)).max)
    if values.size == 0:
        return
    largest = float(np.max(np.abs(values)))
    if largest > limit:
        what = "signals" if layout == "signals" else "logits"
        flag = "dtype" if layout == "signals" else "logits_dtype"
        first = int(np.nonzero((np.abs(values) > limit).reshape(len(values), -1)
                               .any(axis=1))[0][0])
        raise ValueError(
            f"{what} of model {m}: a value of magnitude {largest:.4g} (first at example "
            f"{first}) does not fit {flag}={dtype!r}, whose largest finite value is "
            f"{limit:.4g}; rescale the {what}"
            + (" or store them as float32" if np.dtype(dtype) != np.float32 else ""))


def _check_some_out(keep: np.ndarray) -> None:
    """Refuse examples that every model trained on: every attack compares an example's
    signal with models that did not train on it, so such an example is of no use.
    Examples that no model trained on are fine: the offline attacks, and a target
    model's audit, need OUT models only (an all-False keep is an offline-only run)."""
    never_out = np.flatnonzero(keep.all(axis=0))
    if never_out.size:
        raise ValueError(
            f"keep: {never_out.size} example{'s' * (never_out.size != 1)} IN for every "
            "model (first: "
            f"{never_out[:5].tolist()}); no attack can use an example without models that "
            "did not train on it: drop these examples or import models that left them out")


def import_logits(out: str | os.PathLike, logits: Any, keep: Any, labels: Any, *,
                  n_classes: int | None = None, logits_dtype: str = "float32",
                  metadata: dict | None = None) -> Run:
    """Import shadow models' logits given as arrays (or ``.npy`` files) into a run.

    Parameters
    ----------
    out : path
        The run directory to create (or resume, with the same data).
    logits : array or path, [M, N, A, C] or [M, N, C] float
        Every model's logits on every example (and query view).
    keep : array or path, [M, N] bool (or 0/1)
        ``keep[m, n]``: model m trained on example n. Every example must be OUT for at
        least one model. An example IN for no model is fine: all False makes an
        offline-only run (:attr:`Run.offline_only`), whose models serve as the
        references of offline attacks on a target model.
    labels : array or path, [N] int
    n_classes : int, optional
        Default: C, the logits' last axis.
    logits_dtype : {"float32", "float16"}
        Storage precision in the run.
    metadata : dict, optional
        Stored with the run (dataset name, model, ...).

    Returns
    -------
    Run

    Examples
    --------
    >>> import numpy as np, tempfile, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(4, 10, 2, 3)).astype(np.float32)
    >>> run = mk.shadow.import_logits(tempfile.mkdtemp() + "/run", z,
    ...                               mk.shadow.balanced_keep(4, 10), rng.integers(0, 3, 10))
    >>> run.n_models, run.is_complete, run.config["trainer"]
    (4, True, 'import')
    """
    check_choice(logits_dtype, "logits_dtype", LOGITS_DTYPES)  # before reading any file
    _check_out(out, metadata)
    z = _load(logits, "logits")
    if z.ndim == 3:
        z = z[:, :, None, :]
    if z.ndim != 4:
        raise ValueError(f"logits: expected [M, N, A, C] or [M, N, C], got shape {z.shape}")
    k = check_keep_matrix(_load(keep, "keep"), even=False)
    m, n, a, c = z.shape
    if k.shape != (m, n):
        raise ValueError(f"keep: expected shape ({m}, {n}) to match the logits' models and "
                         f"examples, got {k.shape}")
    c = _check_n_classes(n_classes, c)
    y = check_run_labels(_load(labels, "labels"), n, c)
    shape = (n, a, c)
    src = {"layout": "arrays", "logits": _describe(logits), "keep": _describe(keep),
           "labels": _describe(labels)}
    return _write(out, [lambda i=i: _model_logits(z[i], i, shape, f"logits of model {i}")
                        for i in range(m)], k, y, c, a, logits_dtype, src, metadata)


def import_signals(out: str | os.PathLike, signals: Any, keep: Any, *, kind: str,
                   dtype: str = "float32", metadata: dict | None = None) -> Run:
    """Import shadow models that left one signal per example, not logits, into a run.

    Pipelines often keep only the per-example loss (or the true class's probability, or
    some score) of every shadow model. Such a run is audited with every attack that needs
    nothing more (docs/guide/import.md): from a loss or a probability, LiRA (on
    ``log p - log(1 - p)``, exactly the scaled confidence), RMIA, the calibrated and the
    loss and confidence threshold attacks; from a score, LiRA on the score.

    Parameters
    ----------
    out : path
        The run directory to create (or resume, with the same data).
    signals : array or path, [M, N, A] or [M, N] float
        Every model's signal on every example (and query view).
    keep : array or path, [M, N] bool (or 0/1)
    kind : {"loss", "confidence", "score"}
        What ``signals`` holds: the cross-entropy loss (>= 0), the true class's
        probability (in [0, 1]), or a score (larger = more member-like).
    dtype : {"float32", "float16"}
        Storage precision in the run.
    metadata : dict, optional

    Returns
    -------
    Run
        One file per model ``[N, A, 1]``; ``run.signal`` says the kind.

    Examples
    --------
    >>> import numpy as np, tempfile, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> loss = rng.exponential(size=(4, 10, 2)).astype(np.float32)
    >>> run = mk.shadow.import_signals(tempfile.mkdtemp() + "/run", loss,
    ...                                mk.shadow.balanced_keep(4, 10), kind="loss")
    >>> run.signal, run.n_models, run.model_shape
    ('loss', 4, (10, 2, 1))
    """
    check_choice(kind, "kind", SIGNAL_KINDS)
    check_choice(dtype, "dtype", LOGITS_DTYPES)  # before reading any file
    _check_out(out, metadata)
    x = _load(signals, "signals")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"signals: expected [M, N, A] or [M, N], got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"signals: expected a floating-point array, got dtype {x.dtype}")
    k = check_keep_matrix(_load(keep, "keep"), even=False)
    m, n, a = x.shape
    if k.shape != (m, n):
        raise ValueError(f"keep: expected shape ({m}, {n}) to match the signals' models and "
                         f"examples, got {k.shape}")

    def model(i: int) -> np.ndarray:
        v = np.asarray(x[i])
        where = f"signals of model {i}"
        bad = ~np.isfinite(v)
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise ValueError(f"{where}: expected finite values, got NaN or inf for "
                             f"{len(rows)} examples (first: example {int(rows[0])})")
        if kind == "loss" and (v < 0).any():
            raise ValueError(f"{where}: kind='loss' expects losses >= 0, got a minimum of "
                             f"{float(v.min()):g}")
        if kind == "confidence" and ((v < 0) | (v > 1)).any():
            raise ValueError(f"{where}: kind='confidence' expects probabilities in [0, 1], "
                             f"got values in [{float(v.min()):g}, {float(v.max()):g}]")
        return v[:, :, None]

    src = {"layout": "signals", "signal": kind, "signals": _describe(signals),
           "keep": _describe(keep)}
    return _write(out, [lambda i=i: model(i) for i in range(m)], k,
                  np.zeros(n, dtype=np.int64), 1, a, dtype, src, metadata,
                  extra_config={"signal": kind})


def _describe(x: Any) -> str:
    return str(Path(x).resolve()) if isinstance(x, (str, os.PathLike)) else "array"


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def import_folder(out: str | os.PathLike, folder: str | os.PathLike, labels: Any, *,
                  n_classes: int | None = None, logits_dtype: str = "float32",
                  metadata: dict | None = None) -> Run:
    """Import a folder of per-model files: ``NAME.npy`` logits beside ``NAME.keep.npy``.

    Models are ordered by their names (numbers compared as numbers: ``model-2`` before
    ``model-10``). See :func:`import_logits` for the other parameters.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib, miakit as mk
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> keep = mk.shadow.balanced_keep(2, 5)
    >>> for m in range(2):
    ...     np.save(d / f"model-{m}.npy", np.zeros((5, 3), np.float32))
    ...     np.save(d / f"model-{m}.keep.npy", keep[m])
    >>> run = mk.shadow.import_folder(d / "run", d, np.zeros(5, int))
    >>> run.n_models, run.model_shape
    (2, (5, 1, 3))
    """
    check_choice(logits_dtype, "logits_dtype", LOGITS_DTYPES)  # before reading any file
    _check_out(out, metadata)
    if n_classes is not None:
        check_int(n_classes, "n_classes", 2, what="an int >= 2 or None")
    root = _check_path(folder, "folder")
    if not root.is_dir():
        raise FileNotFoundError(f"folder: no such directory {root}")
    files = sorted((p for p in root.glob("*.npy") if not p.name.endswith(".keep.npy")),
                   key=lambda p: _natural(p.name))
    if not files:
        raise ValueError(f"folder: {root} holds no NAME.npy logits files")
    missing = [p.name for p in files if not p.with_name(p.stem + ".keep.npy").is_file()]
    if missing:
        raise ValueError(f"folder: every NAME.npy needs its keep row NAME.keep.npy; missing "
                         f"for {missing[:5]}")
    rows = [np.asarray(_load(p.with_name(p.stem + ".keep.npy"), f"{p.stem}.keep.npy"))
            for p in files]
    if any(r.ndim != 1 or r.shape != rows[0].shape for r in rows):
        raise ValueError(f"folder: expected one keep row [N] per model, all of one length; "
                         f"got shapes {sorted({r.shape for r in rows})}")
    k = check_keep_matrix(np.stack(rows), even=False)
    first = _load(files[0], files[0].name)
    n = k.shape[1]
    shape = (n, 1 if first.ndim == 2 else first.shape[1], first.shape[-1])
    c = _check_n_classes(n_classes, shape[2])
    y = check_run_labels(_load(labels, "labels"), n, c)
    src = {"layout": "folder", "folder": str(root.resolve()),
           "files": [p.name for p in files]}
    return _write(out, [lambda p=p: _model_logits(_load(p, p.name), 0, shape, str(p))
                        for p in files], k, y, c, shape[1], logits_dtype, src, metadata)


def import_lira_reference(out: str | os.PathLike, logdir: str | os.PathLike, *,
                          logits_dtype: str = "float32", metadata: dict | None = None
                          ) -> Run:
    """Import the LiRA authors' reference experiments.

    ``LOGDIR/y_train.npy`` holds the labels; every ``LOGDIR/experiment-*`` folder a
    ``keep.npy`` row (longer rows are cut to the labels' length, as the authors' plotting
    code does) and ``logits/*.npy`` checkpoints of shape ``[N, 1, A, C]``, of which the
    last by name is imported. Experiments are ordered by their folder names.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib, miakit as mk
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "y_train.npy", np.array([0, 1, 1]))
    >>> for i, row in enumerate(mk.shadow.balanced_keep(2, 3)):
    ...     (d / f"experiment-{i}_2" / "logits").mkdir(parents=True)
    ...     np.save(d / f"experiment-{i}_2" / "keep.npy", row)
    ...     np.save(d / f"experiment-{i}_2" / "logits" / "0000000100.npy",
    ...             np.zeros((3, 1, 2, 2), np.float32))
    >>> run = mk.shadow.import_lira_reference(d / "run", d)
    >>> run.n_models, run.model_shape
    (2, (3, 2, 2))
    """
    check_choice(logits_dtype, "logits_dtype", LOGITS_DTYPES)  # before reading any file
    _check_out(out, metadata)
    root = _check_path(logdir, "logdir")
    if not (root / "y_train.npy").is_file():
        raise FileNotFoundError(f"logdir: {root} has no y_train.npy (the labels the LiRA "
                                "reference code writes at the top of its log directory)")
    y_all = np.asarray(_load(root / "y_train.npy", "y_train.npy"))
    exps = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("experiment")),
                  key=lambda p: _natural(p.name))
    if len(exps) < 2:
        raise ValueError(f"logdir: expected at least 2 experiment-* folders in {root}, got "
                         f"{len(exps)}")
    picked, rows, problems = [], [], []
    for e in exps:
        ckpts = sorted((e / "logits").glob("*.npy")) if (e / "logits").is_dir() else []
        if not (e / "keep.npy").is_file() or not ckpts:
            problems.append(f"{e.name} (needs keep.npy and logits/*.npy)")
            continue
        picked.append(ckpts[-1])
        rows.append(np.asarray(_load(e / "keep.npy", f"{e.name}/keep.npy")))
    if problems:
        raise ValueError(f"logdir: incomplete experiments: {problems[:5]}")
    first = _load(picked[0], str(picked[0]))
    if first.ndim != 4 or first.shape[1] != 1:
        raise ValueError(f"{picked[0]}: expected logits [N, 1, A, C] as the reference code "
                         f"writes them, got shape {first.shape}")
    n = first.shape[0]
    if any(r.ndim != 1 or r.shape[0] < n for r in rows):
        raise ValueError(f"logdir: expected keep rows of at least {n} entries (one per "
                         "scored example) in every experiment")
    k = check_keep_matrix(np.stack([r[:n] for r in rows]), even=False)
    c = first.shape[3]
    y = check_run_labels(y_all[:n], n, c)
    shape = (n, first.shape[2], c)

    def model(p: Path) -> np.ndarray:
        z = _load(p, str(p))
        if z.ndim != 4 or z.shape[1] != 1:
            raise ValueError(f"{p}: expected logits [N, 1, A, C], got shape {z.shape}")
        return _model_logits(z[:, 0], 0, shape, str(p))

    src = {"layout": "lira-reference", "logdir": str(root.resolve()),
           "experiments": [e.name for e in exps], "checkpoints": [p.name for p in picked]}
    return _write(out, [lambda p=p: model(p) for p in picked], k, y, c, shape[1],
                  logits_dtype, src, metadata)
