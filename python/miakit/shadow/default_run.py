"""The default shadow run: what ``miakit shadow`` and ``miakit audit`` train.

Chosen so that a new user's first audit shows real leakage: 64 MLP heads (one hidden
layer of 256 ReLU units) on the pixels of 600 of scikit-learn's bundled 8x8 digits, each
head trained on its own half (300 images: a small training set) over both query views
(the image, and the image shifted one pixel right), with full-batch Adam (lr 3e-3) for
300 epochs and no weight decay. Every head fits its training half perfectly yet reaches
about 93% test accuracy: a realistic model, in the regime where membership leaks (LiRA
online: AUC about 0.74, TPR about 10% at 0.1% FPR).

:class:`TrainingConfig` declares every option of that run once (the command line's
training options are its fields); :func:`train_default` trains (or resumes) it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from miakit._params import option, validate

__all__ = ["TrainingConfig", "train_default", "DIGITS_EXAMPLES", "SYNTHETIC_EXAMPLES",
           "VIEWS"]

DIGITS_EXAMPLES = 600
"""Digits in the default run (a fixed random subset of the 1,797)."""
SYNTHETIC_EXAMPLES = 2000
"""Examples of the synthetic dataset by default."""
VIEWS = 2
"""Query views of the digits: the image, and the image shifted one pixel right."""


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The options of the default shadow run (``miakit shadow``, and ``miakit audit``
    without ``--run``).

    Examples
    --------
    >>> from miakit.shadow.default_run import TrainingConfig
    >>> TrainingConfig(models=8).head
    'mlp'
    >>> TrainingConfig(models=5)
    Traceback (most recent call last):
    ...
    ValueError: models: expected an even number >= 4, got 5
    """

    dataset: str = option("digits", "embedded dataset, no download: 'digits' "
                          "(scikit-learn's 1,797 8x8 handwritten digits, pixel features) or "
                          "'synthetic' (a Gaussian mixture)", choices=("digits", "synthetic"))
    models: int = option(64, "number of shadow models, even; each trains on a random half "
                         "of the examples and every example is IN for exactly M/2", low=4)
    seed: int = option(0, "run seed: the keep matrix and every model's initialisation and "
                       "batch order derive from it", seed=True)
    head: str = option("mlp", "shadow model: an MLP head (one hidden ReLU layer) or a "
                       "linear softmax head on the features", choices=("mlp", "linear"))
    hidden: int = option(256, "hidden units of the MLP head", low=1)
    epochs: int = option(300, "MLP head: training epochs (full-batch Adam steps). The "
                         "linear head is solved to a gradient tolerance by L-BFGS and "
                         "ignores it unless batch_size is given", low=1)
    lr: float = option(3e-3, "Adam learning rate of the MLP head", low=0.0, open_low=True)
    weight_decay: float = option(0.0, "L2 penalty (weight_decay/2 times the squared norm of "
                                 "the weights, not the biases); the linear head needs > 0, "
                                 "and uses 1e-4 when this is 0", low=0.0)
    batch_size: int | None = option(None, "minibatch size per model (default: full "
                                    "batches)", kind=int, low=1)
    n_examples: int | None = option(None, "number of examples: a fixed random subset of the "
                                    f"digits (default {DIGITS_EXAMPLES} of 1797; each model "
                                    "trains on half), or the size of the synthetic set "
                                    f"(default {SYNTHETIC_EXAMPLES})", kind=int, low=4)
    planted: float = option(0.0, "plant this fraction of records that a model can only fit "
                            "by memorizing them (planted_kind); the run records which, and "
                            "'miakit budget' reports them as a group", low=0.0, high=1.0,
                            open_high=True)
    planted_kind: str = option("relabel", "planted records: 'relabel' (another class) or "
                               "'ood' (uniform noise with a random class)",
                               choices=("relabel", "ood"))
    threads: int | None = option(None, "CPU threads for torch (default: torch's choice, "
                                 "usually all cores)", kind=int, low=1)
    heads_per_chunk: int | None = option(None, "models trained together in one batch and "
                                         "saved together; a kill loses at most one chunk "
                                         "(default: 16)", kind=int, low=1)
    logits_dtype: str = option("float32", "storage precision of the logits",
                               choices=("float32", "float16"))
    device: str = option("cpu", "'cpu', 'cuda' or 'cuda:N' (an error if no GPU is usable)")
    dp_sgd: float | None = option(None, "train the heads with DP-SGD to (EPS, dp_delta)-DP: "
                                  "the noise multiplier is calibrated by dp-accounting's PLD "
                                  "accountant for dp_sample_rate and dp_steps; epochs and "
                                  "batch_size then do not apply", kind=float, low=0.0,
                                  open_low=True)
    dp_delta: float = option(1e-5, "delta of DP-SGD's guarantee, of the DP claim and of the "
                             "empirical epsilon bounds", low=0.0, high=1.0, open_low=True,
                             open_high=True)
    dp_clip: float = option(1.0, "DP-SGD per-example gradient norm bound", low=0.0,
                            open_low=True)
    dp_sample_rate: float = option(0.1, "DP-SGD Poisson sampling rate per step", low=0.0,
                                   high=1.0, open_low=True)
    dp_steps: int = option(600, "DP-SGD steps", low=1)
    dp_lr: float = option(0.02, "DP-SGD learning rate (SGD with momentum 0.9)", low=0.0,
                          open_low=True)

    def __post_init__(self) -> None:
        validate(self)
        if self.models % 2:
            raise ValueError(f"models: expected an even number >= 4, got {self.models}")


def _head_options(config: TrainingConfig) -> dict[str, Any]:
    """The keywords of :func:`miakit.shadow.train_heads` for the config's head."""
    c = config
    kw: dict[str, Any] = {"head": c.head, "seed": c.seed, "device": c.device,
                          "logits_dtype": c.logits_dtype, "heads_per_chunk": c.heads_per_chunk}
    if c.dp_sgd is not None:
        from miakit import bounds

        noise = bounds.dpsgd_noise(c.dp_sgd, c.dp_delta, c.dp_sample_rate, c.dp_steps)
        kw.update(dp={"noise_multiplier": noise, "clip": c.dp_clip,
                      "sample_rate": c.dp_sample_rate, "steps": c.dp_steps,
                      "delta": c.dp_delta}, lr=c.dp_lr, weight_decay=0.0)
        if c.head == "mlp":
            kw["hidden"] = c.hidden
    elif c.head == "mlp":
        kw.update(hidden=c.hidden, epochs=c.epochs, lr=c.lr, weight_decay=c.weight_decay,
                  batch_size=c.batch_size)
    else:
        kw.update(weight_decay=c.weight_decay or 1e-4)
        if c.batch_size is not None:
            kw.update(batch_size=c.batch_size, epochs=c.epochs, lr=c.lr)
    return kw


def train_default(config: TrainingConfig | None = None, run_dir: str | Path = "run", *,
                  progress: bool | None = None, ray: str | None = None) -> Any:
    """Train (or resume) the default shadow run that ``config`` describes in ``run_dir``.

    Parameters
    ----------
    config : TrainingConfig, optional
        The run (default: ``TrainingConfig()``, the 64 MLP heads on the digits).
    run_dir : path
        The run directory (created, or resumed if it holds this same experiment).
    progress : bool, optional
        Progress of the heads: None (default) a bar when stderr is a terminal, else plain
        lines (started or resumed, each tenth done, the end); True a bar; False nothing.
    ray : str, optional
        Train on a Ray cluster: the head node's address (``""``: ``RAY_ADDRESS``, else a
        cluster on this machine, else a local Ray), one task per chunk of heads asking for
        ``config.threads`` CPUs (default 1). None: train here.

    Returns
    -------
    miakit.shadow.Run
        The finished run.

    Examples
    --------
    >>> import tempfile
    >>> from miakit.shadow.default_run import TrainingConfig, train_default
    >>> cfg = TrainingConfig(dataset="synthetic", n_examples=60, models=4, head="linear")
    >>> run = train_default(cfg, tempfile.mkdtemp() + "/run", progress=False)
    >>> run.n_models, run.n_examples
    (4, 60)
    """
    from miakit import _progress, datasets, shadow

    c = config if config is not None else TrainingConfig()
    if c.threads is not None:
        import torch

        torch.set_num_threads(c.threads)
    if c.dataset == "digits":
        data = datasets.digits(n_examples=c.n_examples or DIGITS_EXAMPLES, views=VIEWS,
                               planted=c.planted, planted_kind=c.planted_kind)
    else:
        data = datasets.synthetic(n=c.n_examples or SYNTHETIC_EXAMPLES, planted=c.planted,
                                  planted_kind=c.planted_kind)
    keep = shadow.balanced_keep(c.models, len(data.labels), seed=c.seed)
    _progress.phase(f"shadow run {run_dir}: {c.models} {c.head} heads on {data.name} "
                    f"({len(data.labels)} examples)", progress)
    kw = _head_options(c)
    if ray is not None:
        kw.update(executor="ray", ray_address=ray or None,
                  ray_resources={"num_cpus": c.threads or 1})
    meta = {"dataset": data.name, "dataset_description": data.description,
            "views": list(data.views), "dataset_info": data.info}
    shadow.train_heads(data.features, data.labels, keep, run_dir=run_dir, metadata=meta,
                       progress=progress, return_run=True, **kw)  # no logits read back
    return shadow.open_run(run_dir, verify=False)
