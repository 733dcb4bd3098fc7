"""Train any torch model as shadow models, one per row of ``keep``, into a run directory.

Each model is trained with all of its randomness (initialisation, dropout, batch order)
seeded from ``(seed, model index)`` inside ``torch.random.fork_rng``, so the caller's
global random state is untouched and a model comes out the same whether it is trained
first, last, or after a restart. Finished models are written atomically into the run
(see ``store``), so a killed call loses at most the model in progress and the same call
resumes. On the CPU a resumed run is bit-for-bit identical to an uninterrupted one; CUDA
kernels are not all deterministic, so on a GPU it is identical up to their rounding.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from miakit import io as mkio
from miakit._validation import (
    check_choice,
    check_int,
    check_keep_matrix,
    check_real,
    check_run_labels,
)
from miakit.shadow._runtime import (
    check_seed,
    model_seed,
    progress_bar,
    require_torch,
    resolve_device,
)
from miakit.shadow.store import Run, create_run

_OPTIMIZERS = ("adam", "sgd")

__all__ = ["train_models", "default_train", "array_train_fn", "AUGMENTATIONS",
           "TRAIN_AUGMENTATIONS"]

TRAIN_AUGMENTATIONS = ("flip", "crop")
"""Training-time augmentations of :func:`default_train`, drawn afresh for every batch:
"flip" mirrors each image left-right with probability 1/2, "crop" shifts it by up to 1/8
of its height and width (4 pixels at 32x32, at least 1) with reflected borders."""


def _identity(x: Any) -> Any:
    return x


def _hflip(x: Any) -> Any:
    import torch

    return torch.flip(x, dims=[-1])


AUGMENTATIONS: dict[str, Callable[[Any], Any]] = {"identity": _identity, "hflip": _hflip}


def default_train(model: Any, train_set: Any, *, device: Any, generator: Any, epochs: int = 20,
                  lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 128,
                  optimizer: str = "adam", augment: Sequence[str] = ()) -> None:
    """The default training loop: shuffled minibatches, cross-entropy, Adam or SGD.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place, already on ``device``.
    train_set : torch.utils.data.Dataset
        The model's training examples, items ``(x, y)``.
    device : torch.device
    generator : torch.Generator
        Orders the batches (seeded per model by :func:`train_models`).
    epochs, lr, weight_decay, batch_size : int, float, float, int
        As usual; ``weight_decay`` is the optimizer's L2 term.
    optimizer : {"adam", "sgd"}
        Adam, or SGD with momentum 0.9 and Nesterov.
    augment : sequence of {"flip", "crop"}
        Training-time augmentations of image inputs ``[..., H, W]``
        (:data:`TRAIN_AUGMENTATIONS`), their randomness drawn from ``generator``.

    Examples
    --------
    >>> import torch
    >>> from miakit.shadow.train import default_train
    >>> data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.arange(8) % 2)
    >>> model = torch.nn.Linear(3, 2)
    >>> default_train(model, data, device=torch.device("cpu"),
    ...               generator=torch.Generator().manual_seed(0), epochs=2)
    """
    import torch

    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True,
                                         generator=generator)
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay,
                              momentum=0.9, nesterov=True)
    else:
        check_choice(optimizer, "optimizer", _OPTIMIZERS)
    augment = _check_train_augment(augment)
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            if augment:
                xb = _augment_batch(xb, augment, generator, torch)
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()


def _check_train_augment(augment: Sequence[str]) -> tuple[str, ...]:
    names = (augment,) if isinstance(augment, str) else tuple(augment)
    for name in names:
        check_choice(name, "train_augment", TRAIN_AUGMENTATIONS)
    return names


def _augment_batch(xb: Any, augment: tuple[str, ...], generator: Any, torch: Any) -> Any:
    """A randomly flipped and/or shifted copy of the image batch ``xb`` ``[B, ..., H, W]``
    (random draws from the CPU ``generator``, so the same on every device)."""
    if xb.dim() < 3:
        raise ValueError(f"train_augment {list(augment)}: expected image inputs "
                         f"[..., H, W], got a batch of shape {tuple(xb.shape)}")
    b, h, w = xb.shape[0], xb.shape[-2], xb.shape[-1]
    if "flip" in augment:
        flip = (torch.rand(b, generator=generator) < 0.5).to(xb.device)
        xb = torch.where(flip.view(b, *[1] * (xb.dim() - 1)), xb.flip(-1), xb)
    if "crop" in augment:
        ph, pw = max(1, round(h / 8)), max(1, round(w / 8))
        flat = xb.reshape(b, -1, h, w)  # reflect padding wants [B, C, H, W]
        padded = torch.nn.functional.pad(flat, (pw, pw, ph, ph), mode="reflect")
        dy = torch.randint(0, 2 * ph + 1, (b,), generator=generator).to(xb.device)
        dx = torch.randint(0, 2 * pw + 1, (b,), generator=generator).to(xb.device)
        rows = (dy[:, None] + torch.arange(h, device=xb.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=xb.device))[:, None, None, :]
        batch = torch.arange(b, device=xb.device)[:, None, None, None]
        chans = torch.arange(flat.shape[1], device=xb.device)[None, :, None, None]
        xb = padded[batch, chans, rows, cols].reshape(xb.shape)
    return xb


class _ArrayFit:
    """A ``train_fn`` of :func:`train_models` that calls ``fit(model, x, y, seed)``
    (picklable when ``fit`` is, so it runs on Ray workers too)."""

    def __init__(self, fit: Callable[..., Any]):
        if not callable(fit):
            raise TypeError(f"fit: expected a function fit(model, x, y, seed), got "
                            f"{type(fit).__name__}")
        self.fit = fit
        # the run's fingerprint records train_fn by name: the user's function's
        self.__module__ = "miakit.shadow.train"
        self.__qualname__ = f"array_train_fn({_name(fit)})"

    def __call__(self, model: Any, train_set: Any, *, device: Any, generator: Any) -> Any:
        import torch

        loader = torch.utils.data.DataLoader(train_set, batch_size=max(1, len(train_set)))
        x, y = next(iter(loader))
        return self.fit(model, x.to(device), y.to(device), int(generator.initial_seed()))


def array_train_fn(fit: Callable[..., Any]) -> Callable[..., Any]:
    """A ``train_fn`` for :func:`train_models` from a training loop on tensors.

    Parameters
    ----------
    fit : callable
        ``fit(model, x, y, seed) -> model``: trains ``model`` (already on the device) on
        its training examples ``x`` ``[n, ...]`` and integer labels ``y`` ``[n]``
        (tensors on the model's device) and returns it (or None, having trained it in
        place). ``seed`` is an int derived from the run seed and the model's index:
        seed any shuffling or augmentation with it, and a resumed run equals an
        uninterrupted one.

    Returns
    -------
    callable
        ``train_fn(model, train_set, device=..., generator=...)``, as
        :func:`train_models` calls it; what ``miakit shadow --train-fn`` passes.

    Examples
    --------
    >>> import tempfile, torch, miakit as mk
    >>> def fit(model, x, y, seed):
    ...     opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ...     for _ in range(5):
    ...         opt.zero_grad()
    ...         torch.nn.functional.cross_entropy(model(x), y).backward()
    ...         opt.step()
    ...     return model
    >>> x, y = torch.randn(20, 3), torch.arange(20) % 2
    >>> run = mk.shadow.train_models(lambda: torch.nn.Linear(3, 2), (x, y),
    ...                              mk.shadow.balanced_keep(2, 20),
    ...                              tempfile.mkdtemp() + "/run", augmentations=["identity"],
    ...                              train_fn=mk.shadow.array_train_fn(fit), progress=False)
    >>> run.logits().shape
    (2, 20, 1, 2)
    """
    return _ArrayFit(fit)


def train_models(
    model_factory: Callable[[], Any],
    dataset: Any,
    keep: Any,
    run_dir: str | os.PathLike,
    *,
    train_fn: Callable[..., Any] | None = None,
    augmentations: Sequence[str | Callable[[Any], Any]] = ("identity", "hflip"),
    epochs: int = 20,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    optimizer: str = "adam",
    train_augment: Sequence[str] = (),
    n_classes: int | None = None,
    seed: int = 0,
    device: Any = "cpu",
    eval_batch_size: int = 1024,
    logits_dtype: str = "float32",
    config: dict | None = None,
    metadata: dict | None = None,
    progress: bool | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    ray_resources: Mapping[str, Any] | None = None,
) -> Run:
    """Train one torch model per row of ``keep`` and store its logits in a run.

    Parameters
    ----------
    model_factory : callable
        ``model_factory()`` returns a new, randomly initialised ``torch.nn.Module`` that
        maps a batch of inputs to logits ``[B, C]``. It is called under a seed derived
        from ``(seed, m)``.
    dataset : (inputs, labels) or torch.utils.data.Dataset
        Inputs ``[N, ...]`` and integer labels ``[N]`` as arrays or tensors (inputs are
        cast to torch's default float dtype), or a dataset whose items are ``(x, y)``.
    keep : array [M, N] bool
        ``keep[m, n]``: model m trains on example n; M even.
    run_dir : path
        The run directory: created, or resumed if it holds this same experiment (an
        error if it holds another).
    train_fn : callable, optional
        ``train_fn(model, train_set, device=..., generator=...)`` trains ``model`` in
        place on ``train_set`` (a Dataset of the model's examples); it may return the
        trained model. Default: :func:`default_train` with the settings below. A loop
        written as ``fit(model, x, y, seed) -> model`` on tensors becomes one with
        :func:`array_train_fn`.
    augmentations : sequence of str or callable
        Query augmentations, giving the A axis of the logits: "identity", "hflip"
        (flip the last axis, for images ``[..., H, W]``) or functions of an input batch.
    epochs, lr, weight_decay, batch_size, optimizer
        Settings of the default training loop.
    train_augment : sequence of {"flip", "crop"}
        Training-time augmentations of the default training loop (see
        :data:`TRAIN_AUGMENTATIONS`); a ``train_fn`` augments as it likes.
    n_classes : int, optional
        C; default: the width of the model's output.
    seed : int
        Run seed; model m's randomness comes from ``(seed, m)`` only.
    device : str or torch.device
        "cpu", "cuda" or "cuda:N" (an error if CUDA is unavailable). With
        ``executor="ray"``: "cpu" or "cuda", where each task uses the GPU Ray gives it
        (the driver needs no GPU).
    eval_batch_size : int
        Batch size when computing the logits.
    logits_dtype : {"float32", "float16"}
        Storage precision of the logits.
    config : dict, optional
        Extra JSON-serialisable settings that define the experiment (e.g. an architecture
        version); part of the run's fingerprint. Code changes inside ``model_factory`` or
        ``train_fn`` are not detected: record them here.
    metadata : dict, optional
        Descriptive information stored with the run.
    progress : bool, optional
        Progress of the models: None (default) a bar when stderr is a terminal, else
        plain lines (started or resumed, each tenth done, the end); True a bar; False
        nothing (:mod:`miakit._progress`).
    executor : {"local", "ray"}
        "local" trains the models one after another in this process. "ray" trains them
        on a Ray cluster (``pip install 'miakit[ray]'``), one task per model: each task
        returns the model's logits with their digest, and this process (the driver)
        verifies the digest and alone writes the files and the manifest. A task whose
        worker dies is retried; a killed driver resumes with the same call; the run is
        the same as a local one (bit for bit on CPUs, with as many torch threads per
        task as locally). ``model_factory``, ``dataset``, ``train_fn`` and the
        augmentations are sent to the workers, so they must be picklable (functions
        and lambdas are, by cloudpickle). See the user guide's page on clusters.
    ray_address : str, optional
        Where the Ray cluster is (``executor="ray"``): "HOST:PORT" of its head node,
        "ray://HOST:PORT" (Ray client), "auto" (a cluster started on this machine), or
        None (``RAY_ADDRESS``, else the latest cluster on this machine, else a new local
        Ray). An address where nothing answers raises RuntimeError naming it before the
        run directory is touched. When Ray is already initialised in this process, that
        connection is used.
    ray_resources : dict, optional
        Ray options of each task: ``num_cpus`` (default 1; torch uses ``ceil(num_cpus)``
        threads in the task), ``num_gpus`` (default 1 with ``device="cuda"``, else 0;
        fractions share a GPU), ``memory``, ``resources``, ``accelerator_type``, and
        ``max_retries`` (restarts of a task whose worker process dies; default 3).

    Returns
    -------
    Run
        The complete run; ``run.logits()`` is ``[M, N, A, C]``. It stores logits only
        (not the models): :func:`miakit.audit.audit` then reports the logit-gradient
        proxy as ``grad_norm`` and no curvature; compute exact ones on a model at hand
        with :func:`miakit.gradients.per_example_norms` and
        :func:`miakit.curvature.hutchinson_trace`.

    Examples
    --------
    >>> import tempfile, torch, miakit as mk
    >>> x, y = torch.randn(40, 1, 4, 4), torch.arange(40) % 2
    >>> keep = mk.shadow.balanced_keep(2, 40, seed=0)
    >>> factory = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> run = mk.shadow.train_models(factory, (x, y), keep, tempfile.mkdtemp() + "/run",
    ...                              epochs=1, progress=False)
    >>> run.logits().shape
    (2, 40, 2, 2)

    The same on Ray (a local one here; ``ray_address`` names a cluster's head node):

    >>> run = mk.shadow.train_models(factory, (x, y), keep, tempfile.mkdtemp() + "/run",
    ...                              epochs=1, progress=False,
    ...                              executor="ray")  # doctest: +SKIP
    """
    from miakit.shadow import _ray

    torch = require_torch()
    seed = check_seed(seed)
    use_ray = _ray.check_executor(executor) == "ray"
    if use_ray:
        _ray.require_ray()
        options = _ray.task_options(ray_resources, device)
        _ray.check_address(ray_address)
        dev = torch.device("cpu")  # on the driver: probing the output width only
    else:
        dev = resolve_device(device)
    keep_b = check_keep_matrix(keep)
    data, labels, digest = _as_dataset(dataset, torch)
    if len(labels) != keep_b.shape[1]:
        raise ValueError(f"keep: expected {len(labels)} columns (one per example of dataset), "
                         f"got shape {keep_b.shape}")
    augs, aug_names = _resolve_augmentations(augmentations)
    user_train = train_fn is not None
    settings: dict[str, Any] = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay,
                                "batch_size": batch_size, "optimizer": optimizer}
    train_augment = _check_train_augment(train_augment)
    if train_augment:
        if user_train:
            raise ValueError("train_augment: applies to the default training loop; a "
                             "train_fn does its own augmentation")
        # only when given, so that runs trained without it keep their fingerprint
        settings["augment"] = list(train_augment)
    if not user_train:
        _check_settings(settings)
    n_classes = n_classes if n_classes is not None else _probe_classes(
        model_factory, data, seed, dev, torch)
    labels = check_run_labels(labels, len(labels), int(n_classes))
    cfg = {"trainer": "train_models", "model_factory": _name(model_factory),
           "train_fn": _name(train_fn) if user_train else "default_train",
           "augmentations": aug_names, "seed": seed, "n_classes": int(n_classes),
           **({} if user_train else settings), "user": config or {}}
    create = functools.partial(create_run, run_dir, keep_b, labels,
                               n_augmentations=len(augs), n_classes=n_classes,
                               logits_dtype=logits_dtype, data_digest=digest, config=cfg,
                               metadata=metadata)
    if use_ray:
        shared = {"factory": model_factory, "train_fn": train_fn if user_train else None,
                  "settings": settings, "data": data, "keep": keep_b, "augs": augs,
                  "seed": seed, "device": _ray.worker_device(device),
                  "eval_batch_size": eval_batch_size, "n_classes": int(n_classes),
                  "logits_dtype": logits_dtype, "threads": options["num_cpus"]}
        with _ray.connect(ray_address) as ray:  # before the run directory is touched
            run = create()
            _train_on_ray(ray, run, shared, options, progress)
        return run
    run = create()
    fit = functools.partial(_fit, train_fn=train_fn if user_train else None, device=dev,
                            settings=settings)
    bar = progress_bar(progress, total=run.n_models, initial=len(run.completed),
                       unit="model", desc="training shadow models")
    try:
        with run.writer():
            for m in run.missing.tolist():
                logits = _train_one(m, model_factory, fit, data, keep_b[m], augs, seed, dev,
                                    eval_batch_size, int(n_classes), torch)
                run.write_model(m, logits)
                bar.update(1)
    finally:
        bar.close()
    return run


def _fit(model: Any, train_set: Any, generator: Any, *, train_fn: Callable[..., Any] | None,
         device: Any, settings: dict) -> Any:
    """Train ``model`` with the user's ``train_fn``, or :func:`default_train`."""
    if train_fn is not None:
        return train_fn(model, train_set, device=device, generator=generator)
    return default_train(model, train_set, device=device, generator=generator, **settings)


def _train_on_ray(ray: Any, run: Run, shared: dict, options: dict,
                  progress: bool | None) -> None:
    """Train the run's missing models as Ray tasks; commit each one here, verified."""
    from miakit.shadow import _ray

    def commit(m: int, result: tuple[np.ndarray, str]) -> None:
        logits, digest = result
        if _ray.payload_digest([logits]) != digest:
            raise RuntimeError(f"model {m}: the logits received from its Ray worker do not "
                               "match the digest it computed; nothing was written for it "
                               "(run the same call again to retrain it)")
        run.write_model(m, logits)
        bar.update(1)

    bar = progress_bar(progress, total=run.n_models, initial=len(run.completed),
                       unit="model", desc="training shadow models on Ray")
    try:
        with run.writer():
            _ray.run_tasks(ray, _ray_train_model, shared, run.missing.tolist(), options,
                           commit, lambda m: f"model {m}")
    finally:
        bar.close()


def _ray_train_model(shared: dict, m: int) -> tuple[np.ndarray, str]:
    """One Ray task: train model ``m``; its logits in the run's dtype, and their digest."""
    from miakit.shadow import _ray

    torch = require_torch()
    _ray.apply_threads(shared["threads"])
    dev = resolve_device(shared["device"])
    fit = functools.partial(_fit, train_fn=shared["train_fn"], device=dev,
                            settings=shared["settings"])
    logits = _train_one(m, shared["factory"], fit, shared["data"], shared["keep"][m],
                        shared["augs"], shared["seed"], dev, shared["eval_batch_size"],
                        shared["n_classes"], torch)
    logits = np.ascontiguousarray(logits.astype(shared["logits_dtype"], copy=False))
    return logits, _ray.payload_digest([logits])


def _train_one(m: int, factory: Callable[[], Any], fit: Callable[..., Any], data: Any,
               keep_row: np.ndarray, augs: list[Callable[[Any], Any]], seed: int, dev: Any,
               eval_batch_size: int, n_classes: int, torch: Any) -> np.ndarray:
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(model_seed(seed, m, 0))
        model = factory().to(dev)
        generator = torch.Generator().manual_seed(model_seed(seed, m, 1))
        train_set = torch.utils.data.Subset(data, np.flatnonzero(keep_row).tolist())
        trained = fit(model, train_set, generator)
        if isinstance(trained, torch.nn.Module):
            model = trained
        return _logits(model, data, augs, dev, eval_batch_size, n_classes, torch)


def _logits(model: Any, data: Any, augs: list[Callable[[Any], Any]], dev: Any, batch: int,
            n_classes: int, torch: Any) -> np.ndarray:
    model.eval()
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False)
    out = []
    with torch.no_grad():
        for xb, _ in loader:
            xb = xb.to(dev)
            z = torch.stack([model(aug(xb)) for aug in augs], dim=1)  # [B, A, C]
            if z.shape[-1] != n_classes:
                raise ValueError(f"model output: expected {n_classes} logits per example, "
                                 f"got shape {tuple(z.shape)}")
            out.append(z.float().cpu())
    return torch.cat(out).numpy()


def _probe_classes(factory: Callable[[], Any], data: Any, seed: int, dev: Any,
                   torch: Any) -> int:
    """The model's output width, from one forward pass of model 0 on one example."""
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(model_seed(seed, 0, 0))
        model = factory().to(dev).eval()
        x0 = data[0][0]
        with torch.no_grad():
            z = model(torch.as_tensor(x0)[None].to(dev))
    if z.dim() != 2 or z.shape[1] < 2:
        raise ValueError(f"model_factory: expected a model returning logits [B, C] with C >= 2, "
                         f"got shape {tuple(z.shape)}")
    return int(z.shape[1])


def _as_dataset(dataset: Any, torch: Any) -> tuple[Any, np.ndarray, str]:
    """(torch Dataset, labels [N], digest of inputs and labels)."""
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        x, y = dataset
        x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
        if not x.is_floating_point():
            raise TypeError(f"dataset inputs: expected floating-point values, got {x.dtype}")
        x = x.to(torch.get_default_dtype())  # numpy's float64 meets float32 weights
        if not bool(torch.isfinite(x).all()):
            raise ValueError("dataset inputs: expected finite values, got NaN or inf")
        y_np = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
        if len(y_np) != len(x):
            raise ValueError(f"dataset: {len(x)} inputs but {len(y_np)} labels")
        check_run_labels(y_np, len(y_np), np.iinfo(np.int64).max)
        data = torch.utils.data.TensorDataset(x.detach().cpu(), torch.from_numpy(
            y_np.astype(np.int64)))
        return data, y_np, mkio.digest_arrays(x, y_np)
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError("dataset: expected (inputs, labels) or a torch Dataset of (x, y) items, "
                        f"got {type(dataset).__name__}")
    h = hashlib.sha256()
    labels = []
    for i in range(len(dataset)):
        x, y = dataset[i]
        h.update(mkio.digest_arrays(x).encode())
        labels.append(int(y))
    return dataset, np.asarray(labels, dtype=np.int64), h.hexdigest()


def _resolve_augmentations(augs: Sequence[str | Callable[[Any], Any]]):
    if isinstance(augs, str) or callable(augs):
        augs = [augs]
    fns, names = [], []
    for a in augs:
        if isinstance(a, str):
            if a not in AUGMENTATIONS:
                raise ValueError(f"augmentations: unknown name {a!r}; expected one of "
                                 f"{list(AUGMENTATIONS)} or a function of an input batch")
            fns.append(AUGMENTATIONS[a])
            names.append(a)
        elif callable(a):
            fns.append(a)
            names.append(_name(a))
        else:
            raise TypeError(f"augmentations: expected names or functions, got {a!r}")
    if not fns:
        raise ValueError("augmentations: expected at least one (use ['identity'])")
    return fns, names


def _check_settings(s: dict) -> None:
    for name in ("epochs", "batch_size"):
        check_int(s[name], name, 1, what="a positive int")
    check_real(s["lr"], "lr", 0.0, open_lo=True, what="a positive learning rate")
    check_real(s["weight_decay"], "weight_decay", 0.0)
    check_choice(s["optimizer"], "optimizer", _OPTIMIZERS)


def _name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
