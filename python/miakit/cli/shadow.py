"""``miakit shadow`` (train or resume the default run) and ``miakit import`` (bring in
shadow models trained elsewhere)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from miakit._params import cli_flag, params
from miakit.cli._options import add_options, add_output_options, config_from, progress_flag

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Add ``shadow`` and ``import`` to the ``miakit`` sub-commands.

    Examples
    --------
    >>> import argparse
    >>> from miakit.cli import shadow
    >>> sub = argparse.ArgumentParser().add_subparsers(dest="command")
    >>> shadow.add_parser(sub)
    >>> args = sub.choices["shadow"].parse_args(["shadow", "--out", "r", "--models", "8"][1:])
    >>> args.models, args.ray
    (8, None)
    """
    from miakit.shadow import ModelRunConfig, TrainingConfig

    ps = subparsers.add_parser(
        "shadow", help="train (or resume) a shadow run",
        description="Train M shadow models into a run directory: the default heads on an "
                    "embedded dataset, or, with --model and --data, your own torch "
                    "architecture on your data. Each finished model (chunk of heads) is "
                    "saved atomically; running the same command again resumes and gives "
                    "the same run as an uninterrupted one.")
    ps.add_argument("--out", type=Path, required=True, metavar="RUN",
                    help="the run directory (created, or resumed if it holds this same "
                         "experiment)")
    shared = _shared_options()
    g = ps.add_argument_group("shadow training")
    # options the two runs share but default differently parse to None when not given,
    # so that each run takes its own config's default
    add_options(g, TrainingConfig, unset=[n for n, differ in shared.items() if differ],
                overrides={"models": {"metavar": "M"}, "n_examples": {"metavar": "N"},
                           "planted": {"metavar": "FRACTION"}, "dp_sgd": {"metavar": "EPS"},
                           "dp_delta": {"metavar": "D"}})
    model_defaults = params(ModelRunConfig)
    gm = ps.add_argument_group(
        "your own model (--model and --data)",
        description="Trains the model that --model returns on the examples of --data with "
                    "mk.shadow.train_models; of the options above, "
                    + ", ".join(cli_flag(n, model_defaults[n][0]) + (
                        f" (default {model_defaults[n][1]})" if shared[n] else "")
                        for n in shared)
                    + " apply to it too, the others only to the default run.")
    add_options(gm, ModelRunConfig, exclude=shared, unset=params(ModelRunConfig),
                overrides={"model": {"metavar": "MODULE:FUNCTION"},
                           "train_fn": {"metavar": "MODULE:FUNCTION"},
                           "data": {"metavar": "DATA"}, "augment": {"metavar": "NAMES"},
                           "views": {"metavar": "NAMES"}})
    ps.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                    help="train on a Ray cluster (pip install 'miakit[ray]'): one task per "
                         "chunk of heads (per model with --model), each asking for "
                         "--threads CPUs (default 1) and, "
                         "with --device cuda, one GPU; this process alone writes the run. "
                         "ADDRESS: the head node's HOST:PORT, ray://HOST:PORT or 'auto'; "
                         "without it, RAY_ADDRESS, else a cluster started on this machine, "
                         "else a local Ray. The run equals a local one trained with as many "
                         "--threads")
    add_output_options(ps)
    ps.set_defaults(_command=run_shadow)

    pi = subparsers.add_parser(
        "import", help="bring shadow models trained elsewhere into a run",
        description="Import shadow models' logits into a run directory that 'miakit audit "
                    "--run RUN' audits: arrays (--logits, --keep, --labels), a folder of "
                    "per-model NAME.npy logits with NAME.keep.npy rows (--folder, "
                    "--labels), the LiRA authors' reference experiments "
                    "(--lira-reference LOGDIR), or one signal per example without logits "
                    "(--signals S.npy --kind loss|confidence|score --keep K.npy: audited "
                    "with every attack that needs nothing more). Everything is checked "
                    "before anything is "
                    "written; importing the same data again resumes, different data into "
                    "an existing run is refused and the run left as it was.")
    pi.add_argument("--out", type=Path, required=True, metavar="RUN",
                    help="the run directory to create")
    pi.add_argument("--logits", type=Path, default=None, metavar="L.npy",
                    help="logits [M, N, A, C] (or [M, N, C]) of every model")
    pi.add_argument("--keep", type=Path, default=None, metavar="K.npy",
                    help="keep [M, N]: which model trained on which example")
    pi.add_argument("--labels", type=Path, default=None, metavar="y.npy",
                    help="labels [N] (with --logits or --folder)")
    pi.add_argument("--folder", type=Path, default=None, metavar="DIR",
                    help="a folder of per-model NAME.npy logits [N, A, C] with "
                         "NAME.keep.npy rows [N]")
    pi.add_argument("--lira-reference", type=Path, default=None, metavar="LOGDIR",
                    help="the log directory of the LiRA reference code (y_train.npy, "
                         "experiment-*/keep.npy, experiment-*/logits/*.npy)")
    pi.add_argument("--signals", type=Path, default=None, metavar="S.npy",
                    help="one signal per model and example [M, N, A] (or [M, N]) instead of "
                         "logits; needs --kind and --keep")
    pi.add_argument("--kind", choices=["loss", "confidence", "score"], default=None,
                    help="with --signals: the true class's cross-entropy loss, its "
                         "probability, or a score (larger = more member-like)")
    pi.add_argument("--logits-dtype", choices=["float32", "float16"], default="float32",
                    help="storage precision in the run. Default: %(default)s")
    pi.add_argument("--name", default=None,
                    help="a dataset name for the reports (metadata)")
    pi.set_defaults(_command=run_import)


def _shared_options() -> dict[str, bool]:
    """The options of both the default run and a ``--model`` run: whether their defaults
    differ."""
    from miakit.shadow import ModelRunConfig, TrainingConfig

    default_run, model_run = params(TrainingConfig), params(ModelRunConfig)
    return {name: default_run[name][1] != default for name, (_, default) in model_run.items()
            if name in default_run}


def run_shadow(args: argparse.Namespace) -> int:
    """``miakit shadow``: :func:`miakit.shadow.train_default` of the options, or with
    ``--model``, :func:`miakit.shadow.train_model_run`."""
    import miakit as mk

    t0 = time.perf_counter()
    shared = _shared_options()
    own = {n: p for n, (p, _) in params(mk.shadow.ModelRunConfig).items() if n not in shared}
    if args.model is None or args.data is None:
        given = [cli_flag(n, p) for n, p in own.items() if getattr(args, n) is not None]
        if given:
            need = "--data" if args.model is not None else "--model"
            raise ValueError(f"{given[0]}: needs {need} (a run of your own model needs "
                             "--model and --data)")
        run = mk.shadow.train_default(config_from(args, mk.shadow.TrainingConfig), args.out,
                                      progress=progress_flag(args), ray=args.ray)
    else:
        defaults = mk.shadow.TrainingConfig()
        foreign = [cli_flag(n, p) for n, (p, _) in params(mk.shadow.TrainingConfig).items()
                   if n not in shared and getattr(args, n) != getattr(defaults, n)]
        if foreign:
            raise ValueError(f"{foreign[0]}: applies to the default run only, not with "
                             "--model")
        run = mk.shadow.train_model_run(config_from(args, mk.shadow.ModelRunConfig),
                                        args.out, progress=progress_flag(args), ray=args.ray)
    print(f"shadow run {run.path}: {len(run.completed)}/{run.n_models} models, logits "
          f"[{run.n_models}, {run.n_examples}, {run.n_augmentations}, {run.n_classes}] "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """``miakit import``: exactly one source of models."""
    import miakit as mk

    given = [n for n, v in (("--logits", args.logits), ("--folder", args.folder),
                            ("--lira-reference", args.lira_reference),
                            ("--signals", args.signals)) if v is not None]
    if len(given) != 1:
        raise ValueError("import: expected exactly one of --logits, --folder, "
                         f"--lira-reference, --signals, got {given or 'none'}")
    meta = {"dataset": args.name} if args.name else None
    kw = {"logits_dtype": args.logits_dtype, "metadata": meta}
    if args.signals is not None:
        if args.kind is None or args.keep is None:
            raise ValueError("--signals: needs --kind and --keep")
        run = mk.shadow.import_signals(args.out, args.signals, args.keep, kind=args.kind,
                                       dtype=args.logits_dtype, metadata=meta)
        print(f"imported {run.n_models} models x {run.n_examples} examples x "
              f"{run.n_augmentations} views of {run.signal} values into {run.path}"
              f"{_audit_hint(run)}")
        return 0
    if args.logits is not None:
        if args.keep is None or args.labels is None:
            raise ValueError("--logits: needs --keep and --labels")
        run = mk.shadow.import_logits(args.out, args.logits, args.keep, args.labels, **kw)
    elif args.folder is not None:
        if args.labels is None:
            raise ValueError("--folder: needs --labels")
        run = mk.shadow.import_folder(args.out, args.folder, args.labels, **kw)
    else:
        run = mk.shadow.import_lira_reference(args.out, args.lira_reference, **kw)
    print(f"imported {run.n_models} models x {run.n_examples} examples x "
          f"{run.n_augmentations} views x {run.n_classes} classes into {run.path}"
          f"{_audit_hint(run)}")
    return 0


def _audit_hint(run: Any) -> str:
    """What the imported run can be used for: every attack, or (for examples that no
    model trained on) the offline attacks only."""
    if run.offline_only:
        return ("; an offline-only run: no model trained on any of these examples, so only "
                "offline attacks apply (LiRA and RMIA offline, the calibrated and threshold "
                "attacks), with these models as the references of a target model: miakit "
                f"audit --run {run.path} --target-logits T.npy --target-keep K.npy")
    never_in = int((~run.keep.any(axis=0)).sum())
    note = (f"; {never_in} example{'s' * (never_in != 1)} IN for no model: online attacks "
            "do not apply to them" if never_in else "")
    return f"{note}; audit it with: miakit audit --run {run.path}"
