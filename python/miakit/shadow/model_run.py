"""A shadow run of the user's own torch architecture: what ``miakit shadow --model MODULE:FN
--data DATA`` trains.

:class:`ModelRunConfig` declares every option of such a run once (the command line's
``--model`` options are its fields; the training defaults are :func:`train_models`'s own);
:func:`train_model_run` imports the model factory (and the training loop), loads the
data, draws a balanced keep matrix and calls :func:`miakit.shadow.train_models`, so the
run is the same resumable, crash-safe run, equal to one trained through the API with the
same seed.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from miakit import _progress
from miakit._params import option, validate
from miakit.shadow.train import AUGMENTATIONS, TRAIN_AUGMENTATIONS, train_models

__all__ = ["ModelRunConfig", "train_model_run", "load_spec", "load_data"]

_DEFAULTS = {name: p.default for name, p in inspect.signature(train_models).parameters.items()}


def _names(text: str | None, flag: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of names, checked against ``allowed``."""
    if text is None:
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ValueError(f"{flag}: expected comma-separated names among {list(allowed)}, "
                         f"got {text!r}")
    return names


@dataclasses.dataclass(frozen=True)
class ModelRunConfig:
    """The options of a shadow run of the user's own torch model (``miakit shadow
    --model ... --data ...``); training defaults are those of
    :func:`miakit.shadow.train_models`.

    Examples
    --------
    >>> from miakit.shadow.model_run import ModelRunConfig
    >>> cfg = ModelRunConfig(model="my_package.models:make_model", data="data.npz")
    >>> cfg.models, cfg.epochs, cfg.batch_size
    (64, 20, 128)
    >>> ModelRunConfig(model="make_model", data="data.npz")
    Traceback (most recent call last):
    ...
    ValueError: --model: expected MODULE:FUNCTION, got 'make_model'
    """

    model: str | None = option(None, "the model factory, MODULE:FUNCTION (importable, e.g. "
                               "my_package.models:make_model): called with no arguments, it "
                               "returns a new torch.nn.Module mapping a batch of inputs to "
                               "logits [B, C]", kind=str)
    data: str | None = option(None, "the examples: a .npz file holding x (float inputs "
                              "[N, ...]) and y (integer labels [N]), or a folder of images "
                              "in class subfolders (torchvision's ImageFolder; needs "
                              "torchvision)", kind=str)
    train_fn: str | None = option(None, "your own training loop, MODULE:FUNCTION: fit(model, "
                                  "x, y, seed) -> model, with x, y the model's training "
                                  "examples as tensors on its device and seed an int from "
                                  "(run seed, model index); default: miakit's loop "
                                  "(shuffled minibatches, cross-entropy)", kind=str)
    models: int = option(64, "number of shadow models, even; each trains on a random half "
                         "of the examples and every example is IN for exactly M/2", low=4)
    seed: int = option(_DEFAULTS["seed"], "run seed: the keep matrix and every model's "
                       "initialisation and batch order derive from it", seed=True)
    epochs: int = option(_DEFAULTS["epochs"], "training epochs of the default loop", low=1)
    batch_size: int = option(_DEFAULTS["batch_size"], "minibatch size of the default loop",
                             low=1)
    lr: float = option(_DEFAULTS["lr"], "learning rate of the default loop", low=0.0,
                       open_low=True)
    weight_decay: float = option(_DEFAULTS["weight_decay"], "the optimizer's L2 term in "
                                 "the default loop", low=0.0)
    optimizer: str = option(_DEFAULTS["optimizer"], "optimizer of the default loop: Adam, "
                            "or SGD with Nesterov momentum 0.9", choices=("adam", "sgd"))
    augment: str | None = option(None, "training-time augmentation of the default loop, "
                                 "comma-separated: flip (random left-right mirror), crop "
                                 "(random shift by up to 1/8 of the image, reflected "
                                 "borders); default: none", kind=str)
    views: str | None = option(None, "query views, comma-separated among identity, hflip: "
                               "each example's logits are stored for each view, as LiRA "
                               "queries them; default: identity,hflip for image inputs "
                               "[N, ..., H, W], identity for vectors [N, D]", kind=str)
    device: str = option(_DEFAULTS["device"], "'cpu', 'cuda' or 'cuda:N' (an error if no "
                         "GPU is usable)")
    eval_batch_size: int = option(_DEFAULTS["eval_batch_size"], "batch size when computing "
                                  "the logits", low=1)
    logits_dtype: str = option(_DEFAULTS["logits_dtype"], "storage precision of the logits",
                               choices=("float32", "float16"))
    threads: int | None = option(None, "CPU threads for torch (default: torch's choice, "
                                 "usually all cores)", kind=int, low=1)

    def __post_init__(self) -> None:
        validate(self)
        for flag, spec in (("--model", self.model), ("--train-fn", self.train_fn)):
            if spec is not None and not _is_spec(spec):
                raise ValueError(f"{flag}: expected MODULE:FUNCTION, got {spec!r}")
        if self.models % 2:
            raise ValueError(f"models: expected an even number >= 4, got {self.models}")
        _names(self.augment, "--augment", TRAIN_AUGMENTATIONS)
        _names(self.views, "--views", tuple(AUGMENTATIONS))
        if self.augment is not None and self.train_fn is not None:
            raise ValueError("--augment: applies to miakit's training loop; a --train-fn "
                             "does its own augmentation")


def _is_spec(spec: str) -> bool:
    module, _, attr = spec.partition(":")
    return bool(module.strip() and attr.strip())


def load_spec(spec: str, flag: str) -> Callable[..., Any]:
    """The callable that ``MODULE:ATTR`` names (``ATTR`` may be dotted: ``pkg.mod:Cls.make``).

    Raises a ValueError naming ``flag`` when the module cannot be imported, the attribute
    does not exist, or it is not callable.

    Examples
    --------
    >>> from miakit.shadow.model_run import load_spec
    >>> load_spec("math:sqrt", "--model")(4.0)
    2.0
    >>> load_spec("math:nope", "--model")
    Traceback (most recent call last):
    ...
    ValueError: --model: module 'math' has no attribute 'nope'
    """
    if not isinstance(spec, str):
        raise TypeError(f"{flag}: expected MODULE:FUNCTION, got {type(spec).__name__}")
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise ValueError(f"{flag}: expected MODULE:FUNCTION, got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name.strip())
    except ImportError as exc:
        raise ValueError(f"{flag}: cannot import module {module_name!r} ({exc}); is its "
                         "folder on PYTHONPATH?") from exc
    for part in attr.strip().split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{flag}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{flag}: {spec} is a {type(obj).__name__}, not a function")
    return obj


def load_data(data: str | Path, flag: str = "--data") -> tuple[np.ndarray, np.ndarray]:
    """The inputs ``x`` and labels ``y`` of a ``.npz`` file, or of a folder of images in
    class subfolders (torchvision's ImageFolder: images as float ``[C, H, W]`` in [0, 1],
    all of one size; labels the subfolders' indices in sorted order).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from miakit.shadow.model_run import load_data
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.npz"
    >>> np.savez(path, x=np.zeros((6, 3), np.float32), y=np.arange(6) % 2)
    >>> [a.shape for a in load_data(path)]
    [(6, 3), (6,)]
    """
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"{flag}: expected a path, got {type(data).__name__}")
    path = Path(data)
    if path.is_dir():
        x, y = _image_folder(path, flag)
    elif path.is_file():
        try:
            loaded = np.load(path, allow_pickle=False)
            if not hasattr(loaded, "files"):  # one .npy array, not an archive of x and y
                raise ValueError(f"{flag}: {path} holds one array, expected a .npz file of "
                                 "x (inputs [N, ...]) and y (integer labels [N])")
            with loaded as f:
                missing = [k for k in ("x", "y") if k not in f.files]
                if missing:
                    raise ValueError(f"{flag}: {path} has no array {missing[0]!r} (it holds "
                                     f"{f.files}); expected x (inputs [N, ...]) and y "
                                     "(integer labels [N])")
                x, y = f["x"], f["y"]
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            if str(exc).startswith(flag):
                raise
            raise ValueError(f"{flag}: {path} is not a .npz file of x and y "
                             f"({exc or 'the file is empty'})") from exc
    else:
        raise FileNotFoundError(f"{flag}: no such file or folder {path}")
    if x.dtype.kind != "f":
        raise ValueError(f"{flag}: x must hold floating-point inputs, got dtype {x.dtype} "
                         "(for 8-bit images store x.astype('float32') / 255)")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{flag}: expected y of shape ({len(x)},), one label per input, got "
                         f"{y.shape}")
    return x, y


def _image_folder(path: Path, flag: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from torchvision import datasets, transforms
    except ImportError as exc:
        raise ImportError(f"{flag}: {path} is a folder, read as images by torchvision, which "
                          "is not installed (pip install torchvision); or give a .npz file "
                          "holding x and y") from exc
    folder = datasets.ImageFolder(str(path), transform=transforms.ToTensor())
    if len(folder) == 0:
        raise ValueError(f"{flag}: {path} holds no images in class subfolders")
    images = [folder[i][0].numpy() for i in range(len(folder))]
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise ValueError(f"{flag}: the images of {path} differ in size ({shapes[:3]}); "
                         "resize them to one size first")
    return np.stack(images).astype(np.float32), np.asarray(folder.targets, dtype=np.int64)


def train_model_run(config: ModelRunConfig, run_dir: str | Path = "run", *,
                    progress: bool | None = None, ray: str | None = None) -> Any:
    """Train (or resume) the shadow run of the user's model that ``config`` describes.

    The model factory and training loop are imported and the data read before the run
    directory is touched; the run is then exactly :func:`miakit.shadow.train_models` of
    them with ``keep = balanced_keep(config.models, N, seed=config.seed)``.

    Parameters
    ----------
    config : ModelRunConfig
    run_dir : path
        The run directory (created, or resumed if it holds this same experiment).
    progress : bool, optional
        Progress of the models: None (default) a bar when stderr is a terminal, else
        plain lines (started or resumed, each tenth done, the end); True a bar; False
        nothing.
    ray : str, optional
        Train on a Ray cluster: the head node's address (``""``: ``RAY_ADDRESS``, else a
        cluster on this machine, else a local Ray), one task per model asking for
        ``config.threads`` CPUs (default 1); the model factory's module must be importable
        on the workers. None: train here.

    Returns
    -------
    miakit.shadow.Run
        The finished run.

    Examples
    --------
    >>> import numpy as np, sys, tempfile, pathlib
    >>> from miakit.shadow.model_run import ModelRunConfig, train_model_run
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "tiny_models.py").write_text(
    ...     "import torch\\ndef make_model():\\n    return torch.nn.Linear(3, 2)\\n")
    >>> sys.path.insert(0, str(d))  # where the factory's module is importable
    >>> rng = np.random.default_rng(0)
    >>> np.savez(d / "data.npz", x=rng.normal(size=(40, 3)).astype(np.float32),
    ...          y=np.arange(40) % 2)
    >>> cfg = ModelRunConfig(model="tiny_models:make_model", data=str(d / "data.npz"),
    ...                      models=4, epochs=1)
    >>> run = train_model_run(cfg, d / "run", progress=False)
    >>> run.n_models, run.model_shape
    (4, (40, 1, 2))
    """
    from miakit import shadow

    c = config
    if c.model is None or c.data is None:
        raise ValueError("--model and --data: a run of your own model needs both")
    factory = load_spec(c.model, "--model")
    train_fn = None if c.train_fn is None else shadow.array_train_fn(
        load_spec(c.train_fn, "--train-fn"))
    x, y = load_data(c.data)
    if c.threads is not None:
        import torch

        torch.set_num_threads(c.threads)
    views = _names(c.views, "--views", tuple(AUGMENTATIONS)) or (
        ("identity", "hflip") if x.ndim >= 3 else ("identity",))
    keep = shadow.balanced_keep(c.models, len(y), seed=c.seed)
    _progress.phase(f"shadow run {run_dir}: {c.models} models of {c.model} on "
                    f"{Path(c.data).name} ({len(y)} examples)", progress)
    kw: dict[str, Any] = {}
    if ray is not None:
        kw.update(executor="ray", ray_address=ray or None,
                  ray_resources={"num_cpus": c.threads or 1})
    meta = {"dataset": Path(c.data).name, "model": c.model,
            **({"train_fn": c.train_fn} if c.train_fn else {})}
    return shadow.train_models(
        factory, (x, y), keep, run_dir, train_fn=train_fn, augmentations=views,
        epochs=c.epochs, lr=c.lr, weight_decay=c.weight_decay, batch_size=c.batch_size,
        optimizer=c.optimizer, train_augment=_names(c.augment, "--augment",
                                                    TRAIN_AUGMENTATIONS),
        seed=c.seed, device=c.device, eval_batch_size=c.eval_batch_size,
        logits_dtype=c.logits_dtype, metadata=meta, progress=progress, **kw)
