"""The studies' commands: ``miakit budget``, ``dp-curvature``, ``leakage``, ``sweep``,
``generative``, ``capacity`` and ``partial-layers`` (each runs its :mod:`miakit.studies`
module and prints its summary)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from miakit.cli._options import add_options, config_from

__all__ = ["add_parser", "count_or_share"]


def count_or_share(value: str) -> int | float:
    """``--candidates``: a count ("60") or a share ("0.1").

    Examples
    --------
    >>> from miakit.cli.studies import count_or_share
    >>> count_or_share("60"), count_or_share("0.1")
    (60, 0.1)
    """
    if not isinstance(value, str):
        raise TypeError(f"value: expected a string, got {type(value).__name__}")
    try:
        given = int(value) if value.isdigit() else float(value)
    except ValueError:
        given = None
    if given is None or (isinstance(given, int) and given < 1) or \
            (isinstance(given, float) and not 0.0 < given <= 1.0):  # NaN fails here too
        raise _NotACountOrShare(
            f"expected a count (60) or a share in (0, 1] (0.1), got {value!r}")
    return given


class _NotACountOrShare(argparse.ArgumentTypeError, ValueError):
    """argparse prints its message after the option's name (an ArgumentTypeError); a
    caller of :func:`count_or_share` catches it as a ValueError."""


def _out(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", type=Path, default=Path(default),
                   help=f"output directory. Default: ./{default}")


def _quiet(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--quiet", action="store_true", help=f"no line per {what} while running")


def _embedded(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--dataset", choices=["digits", "synthetic"], default="digits", help=help)


def add_parser(subparsers: Any) -> None:
    """Add the studies' commands to the ``miakit`` sub-commands.

    Examples
    --------
    >>> import argparse
    >>> from miakit.cli import studies
    >>> sub = argparse.ArgumentParser().add_subparsers(dest="command")
    >>> studies.add_parser(sub)
    >>> args = sub.choices["leakage"].parse_args(["leakage", "--seeds", "4"][1:])
    >>> args.seeds, args.shots
    (4, [0, 1, 2, 5, 10, 20])
    """
    from miakit.studies import budget, dp_curvature, generative, ks_leakage, sweep

    pb = subparsers.add_parser(
        "budget", help="how many shadow models an attack needs, by memorization",
        description="Attack held-out models of a run with LiRA fitted on b reference "
                    "models for growing budgets b (random draws of complementary pairs), "
                    "and report the TPR against b for all examples and for the most "
                    "memorized ones (memorization measured on the whole run). Writes "
                    "budget.json and budget.png.")
    pb.add_argument("--run", type=Path, required=True, help="the run directory")
    _out(pb, "miakit-budget")
    add_options(pb, budget.BudgetConfig, overrides={
        "budgets": {"metavar": "B"},
        "candidates": {"type": count_or_share, "metavar": "F"}})
    _quiet(pb, "step")
    pb.set_defaults(_command=run_budget)

    pd = subparsers.add_parser(
        "dp-curvature", help="memorization and input curvature of DP-SGD heads against epsilon",
        description="Train shadow heads on the embedded digits with DP-SGD at each "
                    "--epsilon and once without DP (the same SGD, batches and steps, "
                    "unclipped and without noise), and report per epsilon the mean and "
                    "upper quantiles of label memorization and of the exact input-loss "
                    "curvature (averaged over the heads that trained on each example) "
                    "against the bound 1 - e^-eps, and the Spearman correlation of "
                    "curvature with memorization. Writes dp_curvature.json and "
                    "dp_curvature.png.")
    _out(pd, "miakit-dp-curvature")
    add_options(pd, dp_curvature.DpCurvatureConfig, overrides={
        "epsilons": {"metavar": "EPS"}, "models": {"metavar": "M"},
        "n_examples": {"metavar": "N"}})
    pd.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: torch's choice)")
    _quiet(pd, "epsilon")
    pd.set_defaults(_command=run_dp_curvature)

    pl = subparsers.add_parser(
        "leakage", help="did the test set leak into training? the K-S experiment",
        description="Split the embedded digits into train, validation and test parts; for "
                    "each s, move s test examples per class into training, train --seeds "
                    "classifiers, and test with the two-sample Kolmogorov-Smirnov test "
                    "whether their confidences on the test part differ from those on the "
                    "validation part. Reports per s the median p-value and the detection "
                    "rate at --alpha (at s = 0, the false-positive rate), and a "
                    "source-assignment curve; writes leakage.json and leakage.png.")
    _out(pl, "miakit-leakage")
    _embedded(pl, "embedded features. Default: %(default)s")
    add_options(pl, ks_leakage.KsLeakageConfig, overrides={"shots": {"metavar": "S"}})
    pl.set_defaults(_command=run_leakage)

    pw = subparsers.add_parser(
        "sweep", help="the shots/classes study: vulnerability against shots and classes",
        description="For every cell of a grid of shots S (examples per class) and classes "
                    "C: train M heads on fixed features, each on exactly S examples of "
                    "every class, attack every head leave-one-out with LiRA, and take the "
                    "TPR at each FPR; then fit log10(TPR - FPR) = beta_S log10 S + beta_C "
                    "log10 C + beta_0 (OLS, statsmodels) at each FPR and check it on "
                    "held-out cells. Writes sweep.json, sweep.csv and powerlaw.png. Every "
                    "cell is saved when done: run the same command again to resume.")
    _out(pw, "miakit-sweep")
    _embedded(pw, "embedded features: 'digits' (10 classes, pixels) or 'synthetic' (a "
                  "Gaussian mixture with as many classes as the grid asks). Default: "
                  "%(default)s")
    pw.add_argument("--features", type=Path, default=None, metavar="X.npy",
                    help="your own features [N, D] or [N, A, D] (e.g. a pretrained "
                         "backbone's), with --labels")
    pw.add_argument("--labels", type=Path, default=None, metavar="y.npy",
                    help="integer labels [N] of --features")
    classes = " ".join(map(str, sweep.DEFAULT_CLASSES))
    synthetic = " ".join(map(str, sweep.SYNTHETIC_CLASSES))
    add_options(pw, sweep.SweepConfig, unset=("classes",), overrides={
        "shots": {"metavar": "S"}, "n_models": {"metavar": "M"},
        "classes": {"metavar": "C", "help": f"classes per cell. Default: {classes} "
                                            f"(synthetic: {synthetic})"}})
    _quiet(pw, "cell")
    pw.set_defaults(_command=run_sweep)

    pg = subparsers.add_parser(
        "generative", help="membership risk of generative models and synthetic data (MACE)",
        description="Fit generative models of growing capacity on half the embedded digits "
                    "(Gaussian mixtures from one component to as many components as "
                    "training records, and a small VAE), draw as many synthetic records as "
                    "training records, and report per model the optimal membership "
                    "advantage of the distance to the closest synthetic record (K-S "
                    "statistic with a DKW interval), the TPR at low FPR of the DCR, "
                    "individual-risk and DOMIAS attacks, and the training records most at "
                    "risk. With --synthetic, --train and --holdout, audit your own "
                    "synthetic data instead. Writes generative.json, generative.png and "
                    "generative_records.png.")
    _out(pg, "miakit-generative")
    pg.add_argument("--synthetic", type=Path, default=None, metavar="S.npy",
                    help="your synthetic records [S, D] (with --train and --holdout)")
    pg.add_argument("--train", type=Path, default=None, metavar="T.npy",
                    help="the records [N, D] the generator was trained on")
    pg.add_argument("--holdout", type=Path, default=None, metavar="H.npy",
                    help="records [M, D] of the same population the generator did not see")
    # unset: given with --synthetic they are an error, which needs to know they were given
    add_options(pg, generative.GenerativeConfig, unset=("gmms", "vae_epochs", "n_examples"),
                overrides={"gmms": {"metavar": "K[:COV]"}, "vae_epochs": {"metavar": "E"},
                           "n_examples": {"metavar": "N"}})
    _quiet(pg, "model")
    pg.set_defaults(_command=run_generative)
    _add_partial_layers(subparsers)
    _add_capacity(subparsers)


def _add_partial_layers(subparsers: Any) -> None:
    """``miakit partial-layers``: its flags from
    :class:`~miakit.studies.partial_layers.PartialLayersConfig`."""
    from miakit.studies import partial_layers

    pp = subparsers.add_parser(
        "partial-layers", help="membership inference on a network truncated after a block",
        description="Split the embedded digits into private, public, evaluation and "
                    "population parts; train a small CNN on the private part with each "
                    "augmentation, cut it after each block, retrain a head on the public "
                    "part on top of the frozen lower layers, and attack the private "
                    "examples against as many evaluation examples: the Bayes attack and "
                    "the maximum-accuracy loss threshold (with intervals), and offline "
                    "LiRA and RMIA with reference CNNs trained on the public part (--shadows "
                    "0: none). The untruncated softmax is the comparison row. Writes "
                    "partial_layers.json and partial_layers.png.")
    _out(pp, "miakit-partial-layers")
    add_options(pp, partial_layers.PartialLayersConfig, overrides={
        "augmentations": {"metavar": "AUG"}, "fprs": {"metavar": "FPR"}})
    _quiet(pp, "row")
    pp.set_defaults(_command=run_partial_layers)


def run_partial_layers(args: argparse.Namespace) -> int:
    """``miakit partial-layers``."""
    from miakit.studies import partial_layers

    t0 = time.perf_counter()
    result = partial_layers.run(config_from(args, partial_layers.PartialLayersConfig),
                                out_dir=args.out, progress=None if args.quiet else print)
    print(result.summary())
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0


def run_budget(args: argparse.Namespace) -> int:
    """``miakit budget``: the run's planted records, if any, are a group."""
    import miakit as mk
    from miakit.studies import budget

    config = config_from(args, budget.BudgetConfig)  # the options before the run is read
    run = mk.shadow.open_run(args.run)
    planted = run.meta.get("metadata", {}).get("dataset_info", {}).get("planted")
    # the run itself: its model files are read one block at a time, nothing is written
    result = budget.run(run, run.keep, run.labels, config,
                        planted=planted["indices"] if planted else None, out_dir=args.out,
                        progress=None if args.quiet else print)
    print(f"miakit budget: {run.path}")
    print(result.summary())
    return 0


def run_dp_curvature(args: argparse.Namespace) -> int:
    from miakit.studies import dp_curvature

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads: expected a positive int, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    result = dp_curvature.run(config_from(args, dp_curvature.DpCurvatureConfig),
                              out_dir=args.out, progress=None if args.quiet else print)
    print(result.summary())
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0


def leakage_data(dataset: str, seed: int) -> Any:
    """The embedded data of ``miakit leakage --dataset``."""
    from miakit import datasets

    if dataset == "digits":
        return datasets.digits(views=1)
    return datasets.synthetic(n=2000, dim=32, n_classes=10, seed=seed)


def run_leakage(args: argparse.Namespace) -> int:
    from miakit.studies import ks_leakage

    d = leakage_data(args.dataset, args.seed)
    result = ks_leakage.run(d.features, d.labels,
                            config_from(args, ks_leakage.KsLeakageConfig, dataset=d.name),
                            out_dir=args.out)
    print(result.summary())
    return 0


def sweep_data(args: argparse.Namespace) -> tuple[Any, Any, str, list[int]]:
    """Features, labels, their name and the classes of ``miakit sweep``: your arrays, or
    the embedded digits or synthetic mixture (with as many classes as the grid asks)."""

    from miakit import datasets
    from miakit.studies.sweep import DEFAULT_CLASSES, SYNTHETIC_CLASSES

    if (args.features is None) != (args.labels is None):
        raise ValueError("--features, --labels: give both (your features and their labels) "
                         "or neither")
    if args.features is not None:
        from miakit.cli.audit import _load_array  # names the option and the file

        return (_load_array(args.features, "--features"), _load_array(args.labels, "--labels"),
                str(args.features), args.classes or list(DEFAULT_CLASSES))
    if args.dataset == "digits":
        d = datasets.digits(views=2)
        return d.features, d.labels, "digits", args.classes or list(DEFAULT_CLASSES)
    classes = args.classes or list(SYNTHETIC_CLASSES)
    per_class = 2 * max(args.shots) + 16
    d = datasets.synthetic(n=per_class * max(classes) * 2, dim=32, n_classes=max(classes),
                           seed=args.seed)
    return d.features, d.labels, "synthetic", classes


def run_sweep(args: argparse.Namespace) -> int:
    from miakit.studies import sweep

    t0 = time.perf_counter()
    x, y, name, classes = sweep_data(args)
    config = config_from(args, sweep.SweepConfig, classes=classes, dataset=name)
    result = sweep.run(x, y, config, out_dir=args.out, progress=None if args.quiet else print)
    print(result.summary())
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0


def run_generative(args: argparse.Namespace) -> int:
    from miakit.studies import generative

    t0 = time.perf_counter()
    own = {"--synthetic": args.synthetic, "--train": args.train, "--holdout": args.holdout}
    if any(v is not None for v in own.values()):
        missing = [k for k, v in own.items() if v is None]
        if missing:
            raise ValueError(f"{', '.join(missing)}: needed with "
                             f"{', '.join(k for k in own if k not in missing)} (give your "
                             "synthetic, training and hold-out records together)")
        given = [k for k, v in (("--gmm", args.gmms), ("--vae-epochs", args.vae_epochs),
                                ("--n-examples", args.n_examples)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: the embedded study's options do not apply "
                             "to --synthetic data")
        from miakit.cli.audit import _load_array

        synthetic, train, holdout = (_load_array(Path(v), k) for k, v in own.items())
        config = config_from(args, generative.GenerativeConfig, name=str(args.synthetic))
        result = generative.run(synthetic, train, holdout, config, out_dir=args.out)
    else:
        result = generative.run(config=config_from(args, generative.GenerativeConfig),
                                out_dir=args.out, progress=None if args.quiet else print)
    print(result.summary())
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0


def _add_capacity(subparsers: Any) -> None:
    """``miakit capacity``: its flags from :class:`~miakit.studies.capacity.CapacityConfig`."""
    from miakit.studies import capacity

    pc = subparsers.add_parser(
        "capacity", help="explicit memorization capacity: in/out discriminators against n",
        description="Train MLP discriminators of a few widths to answer 1 on n positives "
                    "drawn from the embedded digits (or --features) and 0 on every other "
                    "example, with negatives drawn afresh each epoch, for n over a grid "
                    "and, on images, each augmentation (none, flip, flip and shifts of 1 "
                    "or 2 pixels). Reports the balanced accuracy on the positives and "
                    "held-out negatives against n, beside the n where the bits needed, "
                    "C(n) = log2 binom(N, n), equal the model's parameters. Writes "
                    "capacity.json (after every row: run the same command again to "
                    "resume) and capacity.png.")
    _out(pc, "miakit-capacity")
    pc.add_argument("--features", type=Path, default=None, metavar="X.npy",
                    help="your examples: vectors [N, D] (augmentation 'none' only) or "
                         "images [N, H, W] or [N, C, H, W]")
    add_options(pc, capacity.CapacityConfig, overrides={
        "n": {"metavar": "N"}, "widths": {"metavar": "W"},
        "augmentations": {"metavar": "AUG"}})
    _quiet(pc, "trained model")
    pc.set_defaults(_command=run_capacity)


def run_capacity(args: argparse.Namespace) -> int:

    from miakit.studies import capacity

    t0 = time.perf_counter()
    if args.features is None:
        features, config = None, config_from(args, capacity.CapacityConfig)
    else:
        from miakit.cli.audit import _load_array  # names the option and the file

        config = config_from(args, capacity.CapacityConfig, dataset=str(args.features))
        features = _load_array(args.features, "--features")
    result = capacity.run(features, config, out_dir=args.out,
                          progress=None if args.quiet else print)
    print(result.summary())
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0
