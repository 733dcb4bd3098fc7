"""Train many classifier heads on fixed features at once (``mk.shadow.train_heads``).

The setting studied in the membership-inference literature as "fine-tune only the head
on a frozen pre-trained feature extractor": every shadow model is a linear (or
one-hidden-layer MLP) classifier on the same feature vectors, trained on its own half of
the examples. All M heads are trained together, in one vectorized loop, never one
after another:

* ``head="linear"`` with full batches (the default) solves each head's L2-regularised
  multinomial logistic regression to a gradient tolerance, with a batched L-BFGS whose
  curvature model is shared across heads (see ``_linear``). Every head starts from the
  solution on all examples, which is close to each head's own; because the problem is
  strictly convex (``weight_decay > 0``) the optimum does not depend on the start, so
  the warm start saves iterations without leaking the other half into the head.
* ``optimizer="adam"`` or ``"sgd"`` (the default for ``head="mlp"`` and for minibatches)
  runs a fixed number of epochs of first-order steps on stacked parameters (see
  ``_firstorder``); the MLP starts from independent random weights per head, since a
  shared start would carry the other examples into a non-convex model.

Features may carry query augmentations as ``[N, A, D]``: each head trains on every
view of its examples (each view weighted 1/A) and returns logits for every view.

This module drives the training (chunks, the run directory, Ray); the checks of the
inputs and settings are in ``_head_config``, the training of one chunk in
``_head_trainer``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from miakit import io as mkio
from miakit.shadow._firstorder import batch_rows, initial_params, minibatch_plan
from miakit.shadow._head_config import _check_inputs, _resolve_config
from miakit.shadow._head_trainer import _Trainer
from miakit.shadow._runtime import check_seed, progress_bar, require_torch, resolve_device

__all__ = ["train_heads", "initial_params", "batch_rows", "minibatch_plan"]


def train_heads(
    features: Any,
    labels: Any,
    keep: Any,
    *,
    head: str = "linear",
    hidden: int = 128,
    optimizer: str = "auto",
    epochs: int | None = None,
    lr: float | None = None,
    weight_decay: float = 1e-4,
    batch_size: int | None = None,
    tol: float = 1e-4,
    warm_start: bool = True,
    n_classes: int | None = None,
    seed: int = 0,
    device: Any = "cpu",
    logits_dtype: str = "float32",
    heads_per_chunk: int | None = None,
    run_dir: str | os.PathLike | None = None,
    metadata: dict | None = None,
    progress: bool | None = None,
    return_info: bool = False,
    return_run: bool = False,
    dp: dict | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    ray_resources: Mapping[str, Any] | None = None,
) -> Any:
    """Train M heads on fixed features, one per row of ``keep``, all at once.

    Parameters
    ----------
    features : array [N, D] or [N, A, D] float
        Feature vectors (e.g. from a frozen network); with an A axis, the views of each
        example under A query augmentations. Must be finite.
    labels : array [N] int
        Classes in ``[0, n_classes)``.
    keep : array [M, N] bool
        ``keep[m, n]``: head m trains on example n. M must be even (use
        :func:`miakit.shadow.balanced_keep`).
    head : {"linear", "mlp"}
        A linear softmax classifier, or one hidden ReLU layer of ``hidden`` units.
    hidden : int
        Width of the MLP's hidden layer.
    optimizer : {"auto", "lbfgs", "adam", "sgd"}
        "auto" is "lbfgs" for a linear head with full batches, else "adam". "lbfgs" (linear
        heads, full batch only) minimises to ``tol``; "adam"/"sgd" (SGD with momentum
        0.9) run ``epochs`` epochs.
    epochs : int, optional
        First-order: number of passes over each head's data (default 100). L-BFGS: the
        most iterations, each one pass over the data (default 500).
    lr : float, optional
        Learning rate of adam (default 1e-3) or sgd (default 0.1).
    weight_decay : float
        L2 penalty: each head minimises its mean cross-entropy plus
        ``weight_decay / 2 * ||weights||^2`` (biases are not penalised).
    batch_size : int, optional
        First-order only: each step, every head trains on ``batch_size`` of its own rows,
        drawn from its own shuffled stream (see :func:`batch_rows`), for
        ``round(epochs * mean rows per head / batch_size)`` steps. None: full batches.
    tol : float
        L-BFGS stops a head when every gradient entry is at most ``tol`` in absolute
        value (the rule of scikit-learn's lbfgs and ``torch.optim.LBFGS``).
    warm_start : bool
        L-BFGS: start every head from the solution on all examples.
    n_classes : int, optional
        C; default ``labels.max() + 1``.
    seed : int
        Run seed. Head m's initial weights and batch order come from ``(seed, m)`` only.
    device : str or torch.device
        "cpu", "cuda" or "cuda:N"; an error if CUDA is requested but unavailable.
    logits_dtype : {"float32", "float16"}
        Precision of the returned (and stored) logits.
    heads_per_chunk : int, optional
        Heads trained together in one batch. Default: all M at once, or 16 when
        ``run_dir`` is given (each finished chunk is saved, so a kill loses at most
        one chunk). The chunking is part of the run's settings: a head's result depends
        on it only through floating-point rounding.
    run_dir : path, optional
        Train into this run directory (see :func:`miakit.shadow.open_run`): finished
        chunks are stored atomically, and calling again with the same arguments resumes
        where a killed call stopped, with results identical to an uninterrupted run.
        Besides the logits, the run stores the features once (``features.npy``, float32
        ``[N, A, D]``, checked against the run's data digest) and every head's
        parameters (``run.model_params(m)``), so that :func:`miakit.audit.audit`
        computes exact per-example gradient norms and input curvature. Resuming a run
        written before parameters were stored keeps its finished heads as they are
        (without parameters).
    metadata : dict, optional
        Descriptive information stored with the run (dataset name, ...).
    progress : bool, optional
        Progress of the heads: None (default) a bar when stderr is a terminal, else
        plain lines; True a bar; False nothing.
    dp : dict, optional
        Train with DP-SGD: ``noise_multiplier`` (> 0), ``clip`` (> 0), ``sample_rate``
        (in (0, 1]) and ``steps`` (int), optionally ``delta`` (default 1e-5) and
        ``accountant`` ("pld", default, or "rdp"). Each step, every head Poisson-samples
        its own examples, clips each example's gradient (its loss averaged over the
        views; closed-form per-example norms for linear and MLP heads) to ``clip``, adds
        Gaussian noise of standard deviation ``noise_multiplier * clip`` and divides by
        the expected batch size, then takes an SGD step (``optimizer="adam"``: Adam);
        every random draw comes from ``(seed, model)``. ``epochs`` and ``batch_size`` do
        not apply. The accountant's epsilon at ``delta`` (dp-accounting,
        ``pip install 'miakit[dp]'``) is recorded in the run's config under ``dp``
        (and in ``info["dp"]``).
    executor : {"local", "ray"}
        "local" trains here. "ray" (with ``run_dir``; ``pip install 'miakit[ray]'``)
        trains on a Ray cluster, one task per chunk of ``heads_per_chunk`` heads: each
        task returns the chunk's logits and parameters with their digest, and this
        process (the driver) verifies the digest and alone writes the files and the
        manifest. A task whose worker dies is retried; a killed driver resumes with the
        same call; the run is the same as a local one (bit for bit on CPUs, with as many
        torch threads per task as locally). See the user guide's page on clusters.
    ray_address : str, optional
        The Ray cluster: "HOST:PORT" of its head node, "ray://HOST:PORT", "auto", or
        None (``RAY_ADDRESS``, else the latest cluster on this machine, else a new local
        Ray); see :func:`miakit.shadow.train_models`.
    ray_resources : dict, optional
        Ray options of each task: ``num_cpus`` (default 1; also torch's thread count in
        the task), ``num_gpus`` (default 1 with ``device="cuda"``), ``memory``,
        ``resources``, ``accelerator_type``, ``max_retries`` (default 3).
    return_info : bool
        Also return a dict of per-head diagnostics of the heads trained by this call
        (``iterations``, ``converged``, ``grad_max``, ``loss``; L-BFGS only for the last
        three; heads already finished in ``run_dir`` keep NaN). Without ``run_dir`` it
        also holds ``params``: every head's parameters, float32 stacked over the M heads
        in ``nn.Linear`` layout on the caller's feature coordinates (linear heads
        ``weight`` [M, C, D], ``bias`` [M, C]; MLP heads ``weight1`` [M, H, D],
        ``bias1`` [M, H], ``weight2`` [M, C, H], ``bias2`` [M, C]). With ``run_dir`` they
        are in the run instead (``run.model_params(m)``), so memory stays one chunk.
        L-BFGS linear heads come out centred over the classes, weights and biases: the
        penalised optimum's weights are, and a shift common to every class's bias
        changes no probability, so it is fixed at zero.
    return_run : bool
        With ``run_dir``: return the run (:class:`miakit.shadow.Run`) instead of its
        logits, reading nothing back into memory -- for a run larger than memory, which
        :func:`miakit.audit.audit` and ``miakit budget`` read one block of models at a
        time (``miakit shadow`` trains this way).

    Returns
    -------
    numpy.ndarray [M, N, A, C]
        Logits of every head on every example and view (A = 1 for 2-D features); with
        ``run_dir``, read back from the run's model files into memory
        (:meth:`Run.logits <miakit.shadow.Run.logits>`: no second copy is written into
        the run), or with ``return_run`` the :class:`~miakit.shadow.Run`. With
        ``return_info``, the tuple ``(logits or run, info)``.

    Examples
    --------
    >>> import numpy as np, miakit as mk
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 60)
    >>> x = rng.normal(size=(60, 5)) + y[:, None]
    >>> keep = mk.shadow.balanced_keep(4, 60, seed=0)
    >>> logits = mk.shadow.train_heads(x, y, keep, seed=0)
    >>> logits.shape
    (4, 60, 1, 3)
    >>> _, info = mk.shadow.train_heads(x, y, keep, seed=0, return_info=True)
    >>> info["params"]["weight"].shape, info["params"]["bias"].shape
    ((4, 3, 5), (4, 3))
    >>> import tempfile
    >>> run = mk.shadow.train_heads(x, y, keep, run_dir=tempfile.mkdtemp() + "/run",
    ...                             return_run=True, progress=False)
    >>> run.completed.tolist(), (run.path / "cache").exists()
    ([0, 1, 2, 3], False)
    """
    from miakit.shadow import _ray

    if return_run and run_dir is None:
        raise ValueError("return_run=True: pass run_dir, the run to return")
    torch = require_torch()
    use_ray = _ray.check_executor(executor) == "ray"
    if use_ray:
        if run_dir is None:
            raise ValueError("executor='ray': pass run_dir, the run directory the driver "
                             "writes the heads into")
        _ray.require_ray()
        options = _ray.task_options(ray_resources, device)
        _ray.check_address(ray_address)
    x, y, keep_b, n_classes = _check_inputs(features, labels, keep, n_classes)
    m, n = keep_b.shape
    a = x.shape[1]
    seed = check_seed(seed)
    cfg = _resolve_config(head, hidden, optimizer, epochs, lr, weight_decay, batch_size, tol,
                          warm_start, n_classes, seed, logits_dtype, heads_per_chunk,
                          run_dir is not None, m, dp)
    dev = torch.device("cpu") if use_ray else resolve_device(device)
    chunks = [list(range(s, min(m, s + cfg["heads_per_chunk"])))
              for s in range(0, m, cfg["heads_per_chunk"])]
    with contextlib.ExitStack() as connection:
        # Ray first: an address that does not answer leaves the run directory untouched.
        ray = connection.enter_context(_ray.connect(ray_address)) if use_ray else None
        run = None
        if run_dir is not None:
            from miakit.shadow.store import create_run

            run = create_run(run_dir, keep_b, y, n_augmentations=a, n_classes=n_classes,
                             logits_dtype=logits_dtype, data_digest=mkio.digest_arrays(x),
                             config=cfg, metadata=metadata)
            done = set(run.completed.tolist())
            todo = [c for c in chunks if not set(c) <= done]
        else:
            done, todo = set(), chunks
        out = None if run is not None else np.empty((m, n, a, n_classes), dtype=logits_dtype)
        if out is not None and len(chunks) == 1:
            out = None  # one chunk: its logits are the result, no copy
        info: dict[str, Any] = {"iterations": np.zeros(m, np.int64),
                                "converged": np.ones(m, bool),
                                "grad_max": np.full(m, np.nan), "loss": np.full(m, np.nan)}
        all_params: dict[str, np.ndarray] | None = None
        # a chunk with a head left to train is trained whole: the heads of the other
        # chunks are the ones already done
        bar = progress_bar(progress, total=m, initial=m - sum(map(len, todo)), unit="head",
                           desc=f"training {head} heads" + (" on Ray" if use_ray else ""))
        lock = run.writer() if run is not None else contextlib.nullcontext()
        try:
            with lock:
                if run is not None and not run.has_features:
                    run.write_features(x)  # before any head: a finished head's inputs are there
                if ray is not None:
                    assert run is not None  # executor="ray" requires run_dir (checked above)
                    shared = {"x": x, "y": y, "keep": keep_b, "cfg": cfg,
                              "logits_dtype": logits_dtype,
                              "device": _ray.worker_device(device),
                              "threads": options["num_cpus"],
                              "token": mkio.digest_json([run.meta["fingerprint"]])}
                    _train_chunks_on_ray(ray, run, todo, done, shared, options, info, bar)
                    todo = []
                else:
                    trainer = _Trainer(x, y, keep_b, cfg, dev, torch)
                for chunk in todo:
                    logits, chunk_info, params = trainer.train(chunk, bar)
                    logits = logits.astype(logits_dtype, copy=False)
                    for key, val in chunk_info.items():
                        info[key][chunk] = val
                    if run is None:
                        if out is not None:
                            out[chunk[0]:chunk[-1] + 1] = logits
                        if return_info:
                            if len(chunks) == 1:
                                all_params = params
                                continue
                            if all_params is None:
                                all_params = {k: np.empty((m,) + v.shape[1:], v.dtype)
                                              for k, v in params.items()}
                            for k, v in params.items():
                                all_params[k][chunk[0]:chunk[-1] + 1] = v
                        continue
                    for i, mi in enumerate(chunk):
                        if mi not in done:
                            run.write_model(mi, logits[i],
                                            params={k: v[i] for k, v in params.items()})
        finally:
            bar.close()
    if all_params is not None:
        info["params"] = all_params
    if cfg.get("dp"):
        info["dp"] = dict(cfg["dp"])
    result: Any
    if run is None:
        result = out if out is not None else logits
    else:  # the logits read back into memory, or the run itself: never a copy on disk
        result = run if return_run else run.logits()
    return (result, info) if return_info else result


def _train_chunks_on_ray(ray: Any, run: Any, todo: list[list[int]], done: set[int],
                         shared: dict, options: dict, info: dict, bar: Any) -> None:
    """Train the chunks ``todo`` as Ray tasks; commit each one here, verified."""
    from miakit.shadow import _ray

    def commit(chunk: list[int], result: tuple) -> None:
        logits, chunk_info, params, digest = result
        if _ray.payload_digest([logits, *params.values()]) != digest:
            raise RuntimeError(f"heads {chunk[0]}-{chunk[-1]}: the arrays received from their "
                               "Ray worker do not match the digest it computed; nothing was "
                               "written for them (run the same call again to retrain them)")
        for key, val in chunk_info.items():
            info[key][chunk] = val
        for i, mi in enumerate(chunk):
            if mi not in done:
                run.write_model(mi, logits[i], params={k: v[i] for k, v in params.items()})
        bar.update(len(chunk))

    _ray.run_tasks(ray, _ray_train_chunk, shared, todo, options, commit,
                   lambda c: f"heads {c[0]}-{c[-1]}")


_WORKER_TRAINER: dict[str, _Trainer] = {}  # per Ray worker process: the current run's


def _ray_train_chunk(shared: dict, chunk: list[int]) -> tuple:
    """One Ray task: train the heads ``chunk``; (logits, diagnostics, parameters, digest).

    A worker process keeps the trainer of the run it last served, so that its later
    chunks reuse the data on the device and the L-BFGS warm start, as local training does.
    """
    from miakit.shadow import _ray

    torch = require_torch()
    _ray.apply_threads(shared["threads"])
    trainer = _WORKER_TRAINER.get(shared["token"])
    if trainer is None:
        _WORKER_TRAINER.clear()
        # Copies: arrays from Ray's object store are read-only views of shared memory.
        trainer = _Trainer(np.array(shared["x"]), np.array(shared["y"]),
                           np.array(shared["keep"]), shared["cfg"],
                           resolve_device(shared["device"]), torch)
        _WORKER_TRAINER[shared["token"]] = trainer
    logits, chunk_info, params = trainer.train(chunk, progress_bar(False))
    logits = np.ascontiguousarray(logits.astype(shared["logits_dtype"], copy=False))
    return logits, chunk_info, params, _ray.payload_digest([logits, *params.values()])
