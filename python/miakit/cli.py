"""Command line: ``miakit audit`` (the main job) and ``miakit shadow``.

``miakit audit`` with no arguments trains (or resumes) a shadow run on the embedded
digits dataset and attacks it; ``miakit shadow`` only trains; ``miakit audit --run RUN``
only attacks an existing run. Errors are reported in one line on stderr with exit
status 1 (2 for a bad command line).

Default experiment, chosen so that a new user's first audit shows real leakage: 64 MLP
heads (one hidden layer of 256 ReLU units) on the pixels of 600 of scikit-learn's
bundled 8x8 digits, each head trained on its own half (300 images: a small training
set) over both query views (the image, and the image shifted one pixel right), with
full-batch Adam (lr 3e-3) for 300 epochs and no weight decay. Every head fits its
training half perfectly yet reaches about 93% test accuracy: a realistic model, in the
regime where membership leaks (LiRA online: AUC about 0.74, TPR about 10% at 0.1% FPR).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "DEFAULTS"]

DEFAULTS = {
    "dataset": "digits",
    "models": 64,
    "seed": 0,
    "head": "mlp",
    "hidden": 256,
    "epochs": 300,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "batch_size": None,
    "views": 2,
    "digits_examples": 600,
    "synthetic_examples": 2000,
}


def _add_training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("shadow training (ignored with --run)")
    g.add_argument("--dataset", choices=["digits", "synthetic"], default=DEFAULTS["dataset"],
                   help="embedded dataset, no download: 'digits' (scikit-learn's 1,797 8x8 "
                        "handwritten digits, pixel features) or 'synthetic' (a Gaussian "
                        "mixture). Default: %(default)s")
    g.add_argument("--models", type=int, default=DEFAULTS["models"], metavar="M",
                   help="number of shadow models, even; each trains on a random half of the "
                        "examples and every example is IN for exactly M/2. Default: "
                        "%(default)s")
    g.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help="run seed: the keep matrix and every model's initialisation and "
                        "batch order derive from it. Default: %(default)s")
    g.add_argument("--head", choices=["mlp", "linear"], default=DEFAULTS["head"],
                   help="shadow model: an MLP head (one hidden ReLU layer) or a linear "
                        "softmax head on the features. Default: %(default)s")
    g.add_argument("--hidden", type=int, default=DEFAULTS["hidden"],
                   help="hidden units of the MLP head. Default: %(default)s")
    g.add_argument("--epochs", type=int, default=DEFAULTS["epochs"],
                   help="MLP head: training epochs (full-batch Adam steps). The linear "
                        "head is solved to a gradient tolerance by L-BFGS and ignores it "
                        "unless --batch-size is given. Default: %(default)s")
    g.add_argument("--lr", type=float, default=DEFAULTS["lr"],
                   help="Adam learning rate of the MLP head. Default: %(default)s")
    g.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"],
                   help="L2 penalty (weight_decay/2 * ||W||^2 on weights, not biases). "
                        "Default: %(default)s for the MLP; the linear head needs > 0, and "
                        "uses 1e-4 when this is 0")
    g.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                   help="minibatch size per model (default: full batches)")
    g.add_argument("--n-examples", type=int, default=None, metavar="N",
                   help="number of examples: a fixed random subset of the digits (default "
                        f"{DEFAULTS['digits_examples']} of 1797; each model trains on half), "
                        f"or the size of the synthetic set (default "
                        f"{DEFAULTS['synthetic_examples']})")
    g.add_argument("--planted", type=float, default=0.0, metavar="FRACTION",
                   help="plant this fraction of records that a model can only fit by "
                        "memorizing them (--planted-kind); the run records which, and "
                        "'miakit budget' reports them as a group. Default: %(default)s")
    g.add_argument("--planted-kind", choices=["relabel", "ood"], default="relabel",
                   help="planted records: 'relabel' (another class) or 'ood' (uniform noise "
                        "with a random class). Default: %(default)s")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice, usually all cores)")
    g.add_argument("--heads-per-chunk", type=int, default=None,
                   help="models trained together in one batch and saved together; a kill "
                        "loses at most one chunk (default: 16)")
    g.add_argument("--logits-dtype", choices=["float32", "float16"], default="float32",
                   help="storage precision of the logits. Default: %(default)s")
    g.add_argument("--device", default="cpu",
                   help="'cpu', 'cuda' or 'cuda:N' (an error if no GPU is usable). "
                        "Default: %(default)s")
    g.add_argument("--dp-sgd", type=float, default=None, metavar="EPS",
                   help="train the heads with DP-SGD to (EPS, --dp-delta)-DP: the noise "
                        "multiplier is calibrated by dp-accounting's PLD accountant for "
                        "--dp-sample-rate and --dp-steps; --epochs and --batch-size then "
                        "do not apply")
    g.add_argument("--dp-delta", type=float, default=1e-5, metavar="D",
                   help="delta of DP-SGD's guarantee, of the DP claim and of the empirical "
                        "epsilon bounds. Default: %(default)s")
    g.add_argument("--dp-clip", type=float, default=1.0,
                   help="DP-SGD per-example gradient norm bound. Default: %(default)s")
    g.add_argument("--dp-sample-rate", type=float, default=0.1,
                   help="DP-SGD Poisson sampling rate per step. Default: %(default)s")
    g.add_argument("--dp-steps", type=int, default=600,
                   help="DP-SGD steps. Default: %(default)s")
    g.add_argument("--dp-lr", type=float, default=0.02,
                   help="DP-SGD learning rate (SGD with momentum 0.9). Default: %(default)s")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--progress", action="store_true",
                   help="progress bars even when stderr is not a terminal")


def build_parser() -> argparse.ArgumentParser:
    """The ``miakit`` argument parser (sub-commands ``audit`` and ``shadow``).

    Examples
    --------
    >>> from miakit.cli import build_parser
    >>> args = build_parser().parse_args(["shadow", "--out", "run", "--models", "8"])
    >>> args.command, args.models, args.head
    ('shadow', 8, 'mlp')
    """
    from miakit import __version__

    parser = argparse.ArgumentParser(
        prog="miakit",
        description="Membership-privacy audits of machine-learning models. Run 'miakit "
                    "audit' for a complete audit of a model trained on an embedded dataset.",
    )
    parser.add_argument("--version", action="version", version=f"miakit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    pa = sub.add_parser(
        "audit", help="train (or resume) a shadow run and attack it; the main job",
        description="Attack every shadow model leave-one-out with LiRA and RMIA (online "
                    "and offline), the calibrated loss attack and the threshold attacks "
                    "(loss, confidence, max confidence, hinge), state a verdict that is a "
                    "statistical test, and write report.json (AUC, TPR at "
                    "FPR 10%, 1%, 0.1% with confidence intervals), the same as one "
                    "self-contained page report.html, a log-log ROC "
                    "plot roc.png and the per-example vulnerability table "
                    "vulnerability.csv (memorization, gradient norm, input curvature, "
                    "Hellinger distance; exact gradient norms and curvature for runs of "
                    "heads, which store their parameters). Without --run, first trains "
                    "(or resumes) the default shadow run in OUT/run.")
    pa.add_argument("--run", type=Path, default=None,
                    help="audit this existing run directory instead of training one")
    pa.add_argument("--out", type=Path, default=Path("miakit-report"),
                    help="output directory for report.json, report.html, roc.png (and the "
                         "run, without --run). Default: ./miakit-report")
    pa.add_argument("--fpr", type=float, nargs="+", default=[1e-1, 1e-2, 1e-3],
                    help="false-positive budgets of the TPR table. Default: 0.1 0.01 0.001")
    pa.add_argument("--variance", choices=["auto", "per_example", "global"], default="auto",
                    help="LiRA spread: per example, or pooled ('auto': pooled below 64 "
                         "models). Default: %(default)s")
    pa.add_argument("--references", choices=["balanced", "all"], default="balanced",
                    help="leave-one-out references: 'balanced' leaves out the target and one "
                         "model from the other side of every example, so the reference "
                         "counts do not depend on the target's membership (unbiased); "
                         "'all' leaves out the target only (biased against members with "
                         "few models; for comparison). Default: %(default)s")
    from miakit.audit import ATTACKS

    pa.add_argument("--attacks", nargs="+", default=None, metavar="NAME",
                    help="attacks to run (default: all): " + ", ".join(
                        f"{a} (runs of heads)" if a == "lira_curvature" else a
                        for a in ATTACKS))
    pa.add_argument("--alpha", type=float, default=0.05,
                    help="family-wise error rate of the leakage verdict (a test over every "
                         "attack and FPR). Default: %(default)s")
    pa.add_argument("--dp-epsilon", type=float, default=None, metavar="EPS",
                    help="the (EPS, --dp-delta)-DP guarantee the models claim: roc.png shows "
                         "the TPR it allows, and the report says whether every attack's "
                         "empirical epsilon lower bound is consistent with it")
    pa.add_argument("--no-plot", action="store_true", help="do not write roc.png")
    _add_training_options(pa)
    _add_output_options(pa)

    ps = sub.add_parser(
        "shadow", help="train (or resume) a shadow run",
        description="Train M shadow models into a run directory. Each finished chunk of "
                    "models is saved atomically; running the same command again resumes "
                    "and gives the same run as an uninterrupted one.")
    ps.add_argument("--out", type=Path, required=True, metavar="RUN",
                    help="the run directory (created, or resumed if it holds this same "
                         "experiment)")
    _add_training_options(ps)
    ps.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                    help="train on a Ray cluster (pip install 'miakit[ray]'): one task per "
                         "chunk of heads, each asking for --threads CPUs (default 1) and, "
                         "with --device cuda, one GPU; this process alone writes the run. "
                         "ADDRESS: the head node's HOST:PORT, ray://HOST:PORT or 'auto'; "
                         "without it, RAY_ADDRESS, else a cluster started on this machine, "
                         "else a local Ray. The run equals a local one trained with as many "
                         "--threads")
    _add_output_options(ps)

    pi = sub.add_parser(
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

    pb = sub.add_parser(
        "budget", help="how many shadow models an attack needs, by memorization",
        description="Attack held-out models of a run with LiRA fitted on b reference "
                    "models for growing budgets b (random draws of complementary pairs), "
                    "and report the TPR against b for all examples and for the most "
                    "memorized ones (memorization measured on the whole run). Writes "
                    "budget.json and budget.png.")
    pb.add_argument("--run", type=Path, required=True, help="the run directory")
    pb.add_argument("--out", type=Path, default=Path("miakit-budget"),
                    help="output directory. Default: ./miakit-budget")
    pb.add_argument("--budgets", type=int, nargs="+", default=[2, 4, 8, 16, 32],
                    metavar="B", help="reference models per attack (even). Default: "
                    "2 4 8 16 32")
    pb.add_argument("--draws", type=int, default=5,
                    help="random draws per budget. Default: %(default)s")
    pb.add_argument("--targets", type=int, default=8,
                    help="target models per draw. Default: %(default)s")
    pb.add_argument("--fpr", type=float, nargs="+", default=[0.01, 0.001],
                    help="FPRs of the TPR. Default: 0.01 0.001")
    pb.add_argument("--quantiles", type=float, nargs="+", default=[0.5, 0.9],
                    help="ranked groups (examples at or above each quantile of each "
                         "--rank-by). Default: 0.5 0.9")
    pb.add_argument("--rank-by", nargs="+", choices=["memorization", "hellinger"],
                    default=["memorization", "hellinger"],
                    help="rankings of the groups, measured on the whole run: label "
                         "memorization, Hellinger distance of the IN/OUT Gaussians. "
                         "Runs trained with --planted add the groups 'planted' and 'the "
                         "rest'. Default: memorization hellinger")
    pb.add_argument("--target-tpr", type=float, default=None,
                    help="the TPR at the lowest --fpr whose budget each group needs "
                         "(default: what 'the rest', else all examples, reach with the "
                         "largest budget)")
    pb.add_argument("--seed", type=int, default=0,
                    help="seed of the draws. Default: %(default)s")
    pb.add_argument("--no-plot", action="store_true", help="do not write budget.png")
    pb.add_argument("--aware", action="store_true",
                    help="also run the memorization-aware attack: a pilot of a few models "
                         "ranks the examples, LiRA on b further reference models attacks "
                         "the top candidates; reported per model spent (pilot + b) against "
                         "a random selection and all examples")
    pb.add_argument("--pilot", type=int, default=4,
                    help="--aware: models of the pilot (even). Default: %(default)s")
    pb.add_argument("--candidates", type=_count_or_share,
                    default=0.1, metavar="F",
                    help="--aware: the candidates, a share in (0, 1] (0.1) or a count (60). "
                         "Default: %(default)s")
    pb.add_argument("--aware-score", choices=["memorization", "hellinger"],
                    default="memorization",
                    help="--aware: the pilot's ranking. Default: %(default)s")

    pd = sub.add_parser(
        "dp-curvature", help="memorization and input curvature of DP-SGD heads against epsilon",
        description="Train shadow heads on the embedded digits with DP-SGD at each "
                    "--epsilon and once without DP (the same SGD, batches and steps, "
                    "unclipped and without noise), and report per epsilon the mean and "
                    "upper quantiles of label memorization and of the exact input-loss "
                    "curvature (averaged over the heads that trained on each example) "
                    "against the bound 1 - e^-eps, and the Spearman correlation of "
                    "curvature with memorization. Writes dp_curvature.json and "
                    "dp_curvature.png.")
    pd.add_argument("--out", type=Path, default=Path("miakit-dp-curvature"),
                    help="output directory. Default: ./miakit-dp-curvature")
    pd.add_argument("--epsilon", type=float, nargs="+", default=[1.0, 4.0, 16.0],
                    metavar="EPS", help="privacy budgets. Default: 1 4 16")
    pd.add_argument("--models", type=int, default=32, metavar="M",
                    help="heads per epsilon (even). Default: %(default)s")
    pd.add_argument("--n-examples", type=int, default=400, metavar="N",
                    help="digits used (a fixed random subset). Default: %(default)s")
    pd.add_argument("--head", choices=["linear", "mlp"], default="linear",
                    help="the heads. Default: %(default)s")
    pd.add_argument("--steps", type=int, default=100,
                    help="DP-SGD steps. Default: %(default)s")
    pd.add_argument("--sample-rate", type=float, default=0.5,
                    help="DP-SGD Poisson sampling rate. Default: %(default)s")
    pd.add_argument("--clip", type=float, default=1.0,
                    help="DP-SGD clipping norm. Default: %(default)s")
    pd.add_argument("--lr", type=float, default=0.2,
                    help="SGD learning rate (momentum 0.9). Default: %(default)s")
    pd.add_argument("--delta", type=float, default=1e-5,
                    help="delta of the guarantee. Default: %(default)s")
    pd.add_argument("--quantiles", type=float, nargs="+", default=[0.9, 0.99],
                    help="upper quantiles reported. Default: 0.9 0.99")
    pd.add_argument("--seed", type=int, default=0, help="seed. Default: %(default)s")
    pd.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: torch's choice)")
    pd.add_argument("--no-plot", action="store_true", help="do not write dp_curvature.png")
    pd.add_argument("--quiet", action="store_true", help="no line per epsilon while running")

    pl = sub.add_parser(
        "leakage", help="did the test set leak into training? the K-S experiment",
        description="Split the embedded digits into train, validation and test parts; for "
                    "each s, move s test examples per class into training, train --seeds "
                    "classifiers, and test with the two-sample Kolmogorov-Smirnov test "
                    "whether their confidences on the test part differ from those on the "
                    "validation part. Reports per s the median p-value and the detection "
                    "rate at --alpha (at s = 0, the false-positive rate), and a "
                    "source-assignment curve; writes leakage.json and leakage.png.")
    pl.add_argument("--out", type=Path, default=Path("miakit-leakage"),
                    help="output directory. Default: ./miakit-leakage")
    pl.add_argument("--dataset", choices=["digits", "synthetic"], default="digits",
                    help="embedded features. Default: %(default)s")
    pl.add_argument("--shots", type=int, nargs="+", default=[0, 1, 2, 5, 10, 20],
                    metavar="S", help="test examples per class moved into training. "
                    "Default: 0 1 2 5 10 20")
    pl.add_argument("--seeds", type=int, default=20,
                    help="models per value of s. Default: %(default)s")
    pl.add_argument("--alpha", type=float, default=0.05,
                    help="level of the test. Default: %(default)s")
    pl.add_argument("--head", choices=["linear", "mlp"], default="linear",
                    help="the classifier. Default: %(default)s")
    pl.add_argument("--train-size", type=int, default=200,
                    help="examples each model trains on from its train part. Default: "
                         "%(default)s")
    pl.add_argument("--signal", choices=["confidence", "max_confidence"],
                    default="confidence", help="true-class probability, or max softmax. "
                    "Default: %(default)s")
    pl.add_argument("--seed", type=int, default=0, help="seed. Default: %(default)s")
    pl.add_argument("--no-plot", action="store_true", help="do not write leakage.png")

    pw = sub.add_parser(
        "sweep", help="the shots/classes study: vulnerability against shots and classes",
        description="For every cell of a grid of shots S (examples per class) and classes "
                    "C: train M heads on fixed features, each on exactly S examples of "
                    "every class, attack every head leave-one-out with LiRA, and take the "
                    "TPR at each FPR; then fit log10(TPR - FPR) = beta_S log10 S + beta_C "
                    "log10 C + beta_0 (OLS, statsmodels) at each FPR and check it on "
                    "held-out cells. Writes sweep.json, sweep.csv and powerlaw.png. Every "
                    "cell is saved when done: run the same command again to resume.")
    pw.add_argument("--out", type=Path, default=Path("miakit-sweep"),
                    help="output directory. Default: ./miakit-sweep")
    pw.add_argument("--dataset", choices=["digits", "synthetic"], default="digits",
                    help="embedded features: 'digits' (10 classes, pixels) or 'synthetic' "
                         "(a Gaussian mixture with as many classes as the grid asks). "
                         "Default: %(default)s")
    pw.add_argument("--features", type=Path, default=None, metavar="X.npy",
                    help="your own features [N, D] or [N, A, D] (e.g. a pretrained "
                         "backbone's), with --labels")
    pw.add_argument("--labels", type=Path, default=None, metavar="y.npy",
                    help="integer labels [N] of --features")
    pw.add_argument("--shots", type=int, nargs="+", default=None, metavar="S",
                    help="shots per class. Default: 1 2 4 8 16 32 64")
    pw.add_argument("--classes", type=int, nargs="+", default=None, metavar="C",
                    help="classes per cell. Default: 2 5 10 (synthetic: 2 5 10 20 50)")
    pw.add_argument("--models", type=int, default=64, metavar="M",
                    help="heads per cell (even). Default: %(default)s")
    pw.add_argument("--fpr", type=float, nargs="+", default=[0.1, 0.01, 0.001],
                    help="FPRs of the TPR and of the fits. Default: 0.1 0.01 0.001")
    pw.add_argument("--head", choices=["linear", "mlp"], default="linear",
                    help="linear heads (L-BFGS) or one-hidden-layer MLP heads. "
                         "Default: %(default)s")
    pw.add_argument("--seed", type=int, default=0, help="seed of the cells' data, keep "
                    "matrices and heads. Default: %(default)s")
    pw.add_argument("--device", default="cpu",
                    help="where the heads train: 'cpu', 'cuda' or 'cuda:N'. Default: "
                         "%(default)s")
    pw.add_argument("--no-plot", action="store_true", help="do not write powerlaw.png")
    pw.add_argument("--quiet", action="store_true", help="no line per cell")

    pr = sub.add_parser(
        "report", help="print an audit's report.json again and write it as report.html",
        description="Read a report.json written by 'miakit audit', print its summary and "
                    "write it as one self-contained page (the verdict, the attack table, "
                    "the empirical epsilon, the figures embedded, the most exposed "
                    "examples). Figures no longer at their recorded path are looked for "
                    "beside the report.")
    pr.add_argument("report", type=Path, metavar="REPORT.json",
                    help="the report.json of an audit")
    pr.add_argument("--html", type=Path, default=None, metavar="OUT.html",
                    help="where to write the page. Default: report.html beside the report")

    pg = sub.add_parser(
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
    pg.add_argument("--out", type=Path, default=Path("miakit-generative"),
                    help="output directory. Default: ./miakit-generative")
    pg.add_argument("--synthetic", type=Path, default=None, metavar="S.npy",
                    help="your synthetic records [S, D] (with --train and --holdout)")
    pg.add_argument("--train", type=Path, default=None, metavar="T.npy",
                    help="the records [N, D] the generator was trained on")
    pg.add_argument("--holdout", type=Path, default=None, metavar="H.npy",
                    help="records [M, D] of the same population the generator did not see")
    pg.add_argument("--gmm", nargs="*", default=None, metavar="K[:COV]",
                    help="Gaussian mixtures to fit: components K (an int, or 'n' for as "
                         "many as training records) and covariance full, diag, spherical "
                         "or tied (default full). Default: 1:diag 5:diag 20:diag 80:diag "
                         "300:diag n:diag")
    pg.add_argument("--vae-epochs", type=int, default=None, metavar="E",
                    help="training epochs of the VAE, 0 for none. Default: 60")
    pg.add_argument("--n-examples", type=int, default=None, metavar="N",
                    help="a random subset of N of the 1,797 digits (default: all); half "
                         "train the generators")
    pg.add_argument("--fpr", type=float, nargs="+", default=[0.01, 0.001],
                    help="FPRs of the attacks' TPR. Default: 0.01 0.001")
    pg.add_argument("--level", type=float, default=0.95,
                    help="confidence level of the intervals. Default: %(default)s")
    pg.add_argument("--prior", type=float, default=0.5,
                    help="member prior of the individual risks P(member | DCR). Default: "
                         "%(default)s")
    pg.add_argument("--pca", type=int, default=10,
                    help="principal components before DOMIAS's kernel density estimates "
                         "(0: none). Default: %(default)s")
    pg.add_argument("--top", type=int, default=8,
                    help="training records listed (and drawn) as most at risk per model. "
                         "Default: %(default)s")
    pg.add_argument("--seed", type=int, default=0,
                    help="seed of the split, the models, their samples and the attacks. "
                         "Default: %(default)s")
    pg.add_argument("--no-plot", action="store_true", help="do not write the figures")
    pg.add_argument("--quiet", action="store_true", help="no line per model while running")
    return parser


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.quiet else (True if args.progress else None)


def train_default_run(args: argparse.Namespace, run_dir: Path) -> Any:
    """Train (or resume) the shadow run the command line describes; return the Run."""
    import miakit as mk
    from miakit import datasets

    if args.models < 4 or args.models % 2:
        raise ValueError(f"--models: expected an even number >= 4, got {args.models}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads: expected a positive int, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.dataset == "digits":
        data = datasets.digits(n_examples=args.n_examples or DEFAULTS["digits_examples"],
                               views=DEFAULTS["views"], planted=args.planted,
                               planted_kind=args.planted_kind)
    else:
        data = datasets.synthetic(n=args.n_examples or DEFAULTS["synthetic_examples"],
                                  planted=args.planted, planted_kind=args.planted_kind)
    keep = mk.shadow.balanced_keep(args.models, len(data.labels), seed=args.seed)
    kw: dict[str, Any] = {"head": args.head, "seed": args.seed, "device": args.device,
                          "logits_dtype": args.logits_dtype,
                          "heads_per_chunk": args.heads_per_chunk}
    if getattr(args, "ray", None) is not None:  # miakit shadow --ray [ADDRESS]
        kw.update(executor="ray", ray_address=args.ray or None,
                  ray_resources={"num_cpus": args.threads or 1})
    if args.head == "mlp":
        kw.update(hidden=args.hidden, epochs=args.epochs, lr=args.lr,
                  weight_decay=args.weight_decay, batch_size=args.batch_size)
    else:
        kw.update(weight_decay=args.weight_decay or 1e-4)
        if args.batch_size is not None:
            kw.update(batch_size=args.batch_size, epochs=args.epochs, lr=args.lr)
    if args.dp_sgd is not None:
        if not args.dp_sgd > 0:
            raise ValueError(f"--dp-sgd: expected a positive epsilon, got {args.dp_sgd}")
        noise = mk.bounds.dpsgd_noise(args.dp_sgd, args.dp_delta, args.dp_sample_rate,
                                      args.dp_steps)
        kw = {k: v for k, v in kw.items() if k not in ("epochs", "batch_size")}
        kw.update(dp={"noise_multiplier": noise, "clip": args.dp_clip,
                      "sample_rate": args.dp_sample_rate, "steps": args.dp_steps,
                      "delta": args.dp_delta}, lr=args.dp_lr, weight_decay=0.0)
        if args.head == "mlp":
            kw["hidden"] = args.hidden
    meta = {"dataset": data.name, "dataset_description": data.description,
            "views": list(data.views), "dataset_info": data.info}
    mk.shadow.train_heads(data.features, data.labels, keep, run_dir=run_dir, metadata=meta,
                          progress=_progress(args), **kw)
    return mk.shadow.open_run(run_dir, verify=False)


def _count_or_share(value: str) -> int | float:
    """``--candidates``: a count ("60") or a share ("0.1")."""
    try:
        return int(value) if value.isdigit() else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count (60) or a share in (0, 1] (0.1), got {value!r}") from None


def cmd_shadow(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    run = train_default_run(args, args.out)
    print(f"shadow run {run.path}: {len(run.completed)}/{run.n_models} models, logits "
          f"[{run.n_models}, {run.n_examples}, {run.n_augmentations}, {run.n_classes}] "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    import miakit as mk
    from miakit._validation import check_probabilities
    from miakit.audit import audit, summarize

    check_probabilities(args.fpr, "--fpr")  # before any training
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    if args.run is None:
        run = train_default_run(args, args.out / "run")
        timing["training"] = round(time.perf_counter() - t0, 3)
    else:
        run = mk.shadow.open_run(args.run)
    dp_epsilon = args.dp_epsilon
    if dp_epsilon is None and run.config.get("dp"):  # a DP-SGD run: audit its guarantee
        dp_epsilon = run.config["dp"]["epsilon"]
        args.dp_delta = run.config["dp"]["delta"]
    report = audit(run, args.out, fprs=tuple(args.fpr), variance=args.variance,
                   references=args.references, alpha=args.alpha, attacks=args.attacks,
                   dp_epsilon=dp_epsilon, dp_delta=args.dp_delta,
                   plot=not args.no_plot,
                   extra={"timing_s": timing})
    print(summarize(report))
    print(f"total time {report['timing_s']['total']:.1f} s")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from miakit.audit import load_report, summarize, write_html

    report = load_report(args.report, name="REPORT.json")
    out = args.html or args.report.with_name("report.html")
    print(summarize(report))
    print(f"wrote {write_html(report, out, figures_dir=args.report.parent)}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
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
              f"{run.n_augmentations} views of {run.signal} values into {run.path}; audit "
              f"it with: miakit audit --run {run.path}")
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
          f"{run.n_augmentations} views x {run.n_classes} classes into {run.path}; audit "
          f"it with: miakit audit --run {run.path}")
    return 0


def cmd_budget(args: argparse.Namespace) -> int:
    import miakit as mk
    from miakit.budget import shadow_budget, summarize

    run = mk.shadow.open_run(args.run)
    planted = run.meta.get("metadata", {}).get("dataset_info", {}).get("planted")
    r = shadow_budget(run.logits(), run.keep, run.labels, args.out, budgets=args.budgets,
                      draws=args.draws, targets=args.targets, fprs=args.fpr,
                      quantiles=args.quantiles, rank_by=args.rank_by,
                      planted=planted["indices"] if planted else None,
                      target_tpr=args.target_tpr, seed=args.seed, plot=not args.no_plot,
                      aware=dict(pilot=args.pilot, candidates=args.candidates,
                                 score=args.aware_score) if args.aware else None)
    print(f"miakit budget: {run.path}")
    print(summarize(r))
    return 0


def cmd_dp_curvature(args: argparse.Namespace) -> int:
    from miakit.dp_curvature import dp_curvature, summarize

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads: expected a positive int, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    r = dp_curvature(args.out, epsilons=args.epsilon, models=args.models,
                     n_examples=args.n_examples, head=args.head, steps=args.steps,
                     sample_rate=args.sample_rate, clip=args.clip, lr=args.lr,
                     delta=args.delta, quantiles=args.quantiles, seed=args.seed,
                     plot=not args.no_plot, progress=None if args.quiet else print)
    print(summarize(r))
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_leakage(args: argparse.Namespace) -> int:
    from miakit import datasets
    from miakit.leakage import leakage_experiment

    d = datasets.digits(views=1) if args.dataset == "digits" else datasets.synthetic(
        n=2000, dim=32, n_classes=10, seed=args.seed)
    r = leakage_experiment(d.features, d.labels, args.out, shots=args.shots,
                           seeds=args.seeds, alpha=args.alpha, head=args.head,
                           train_size=args.train_size, signal=args.signal,
                           seed=args.seed, dataset=d.name, plot=not args.no_plot)
    print(f"miakit leakage: {d.name}, {args.seeds} {args.head} models per s (each its own "
          f"split, {args.train_size} training examples), K-S on the {r['signal']}, alpha "
          f"{args.alpha:g}")
    print(f"{'s':>3}  {'moved':>5}  {'median p':>10}  {'detected':>8}  rate [95% CI]")
    for row in r["rows"]:
        lo, hi = row["detection_ci"]
        print(f"{row['shots']:>3}  {row['moved_examples']:>5}  {row['median_pvalue']:>10.3g}  "
              f"{row['detected']:>4}/{len(row['pvalues']):<3}  "
              f"{100 * row['detection_rate']:.0f}% [{100 * lo:.0f}%, {100 * hi:.0f}%]")
    fp = r["false_positive_check"]
    if fp is not None:
        print(f"s = 0 (nothing leaked): detection rate {100 * fp['detection_rate']:.0f}%, "
              f"{'consistent with' if fp['within_alpha'] else 'ABOVE'} alpha")
    sa = r["source_assignment"]
    print("source assignment (training vs held-out confidences): " + ", ".join(
        f"m={m} {100 * a:.0f}%" for m, a in zip(sa["sizes"], sa["accuracy"])))
    if r.get("files"):
        print("wrote " + ", ".join(r["files"].values()))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import numpy as np

    from miakit import datasets
    from miakit.sweep import DEFAULT_CLASSES, DEFAULT_SHOTS, sweep

    t0 = time.perf_counter()
    shots = args.shots or list(DEFAULT_SHOTS)
    if (args.features is None) != (args.labels is None):
        raise ValueError("--features, --labels: give both (your features and their labels) "
                         "or neither")
    if args.features is not None:
        x, y = np.load(args.features), np.load(args.labels)
        classes = args.classes or list(DEFAULT_CLASSES)
        name = str(args.features)
    elif args.dataset == "digits":
        d = datasets.digits(views=2)
        x, y, name = d.features, d.labels, "digits"
        classes = args.classes or list(DEFAULT_CLASSES)
    else:
        classes = args.classes or [2, 5, 10, 20, 50]
        per_class = 2 * max(shots) + 16
        d = datasets.synthetic(n=per_class * max(classes) * 2, dim=32,
                               n_classes=max(classes), seed=args.seed)
        x, y, name = d.features, d.labels, "synthetic"
    report = sweep(x, y, args.out, shots=shots, classes=classes, n_models=args.models,
                   fprs=args.fpr, seed=args.seed, head=args.head, dataset=name,
                   device=args.device,
                   plot=not args.no_plot, progress=None if args.quiet else print)
    print(summarize_sweep(report))
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0


def summarize_sweep(report: dict) -> str:
    """What ``miakit sweep`` prints: the fit at each FPR and the held-out check.

    Examples
    --------
    >>> from miakit.cli import summarize_sweep
    >>> r = {"dataset": "d", "grid": {"shots": [1, 2], "classes": [2]}, "cells": [{}, {}],
    ...      "config": {"n_models": 4}, "fits": {"0.1": {"fpr": 0.1, "error": "too few"}},
    ...      "heldout": {}, "timing_s": {"training": 1, "attack": 0.1, "fit": 0.01}}
    >>> "too few" in summarize_sweep(r)
    True
    """
    g = report["grid"]
    lines = [f"miakit sweep: {report['dataset']}, shots {g['shots']} x classes "
             f"{g['classes']} ({len(report['cells'])} cells, {report['config']['n_models']} "
             "heads each)"]
    for fit in report["fits"].values():
        f = fit["fpr"]
        if "error" in fit:
            lines.append(f"FPR {f:g}: no fit ({fit['error']})")
            continue
        lo, hi = fit["ci"]["beta_s"]
        c = (f", beta_C {fit['beta_c']:+.3f} [{fit['ci']['beta_c'][0]:+.3f}, "
             f"{fit['ci']['beta_c'][1]:+.3f}]" if fit.get("beta_c") is not None else "")
        left = sum(not cell["used"] for cell in fit["cells"])
        lines.append(f"FPR {f:g}: beta_S {fit['beta_s']:+.3f} [{lo:+.3f}, {hi:+.3f}]{c}, "
                     f"beta_0 {fit['beta_0']:+.3f}, R^2 {fit['r2']:.3f} on {fit['n_cells']} "
                     f"cells" + (f" ({left} left out: TPR <= FPR or unresolvable)"
                                 if left else ""))
        h = report["heldout"].get(str(f))
        if h and "error" not in h:
            lines.append(f"  held out ({h['held_out']}): {h['covered']} of {h['n_cells']} "
                         f"inside the {100 * h['level']:.0f}% prediction interval")
    t = report["timing_s"]
    lines.append(f"time: training {t['training']:.1f} s, attacks {t['attack']:.1f} s, fits "
                 f"{t['fit']:.2f} s; theory (Tobaben et al.): beta_S = -1/2")
    if report.get("files"):
        lines.append("wrote " + ", ".join(report["files"].values()))
    return "\n".join(lines)


def cmd_generative(args: argparse.Namespace) -> int:
    import numpy as np

    from miakit.generative_study import (
        DEFAULT_GMMS,
        DEFAULT_VAE_EPOCHS,
        audit_synthetic_data,
        generative_study,
        summarize,
    )

    t0 = time.perf_counter()
    own = {"--synthetic": args.synthetic, "--train": args.train, "--holdout": args.holdout}
    if any(v is not None for v in own.values()):
        missing = [k for k, v in own.items() if v is None]
        if missing:
            raise ValueError(f"{', '.join(missing)}: needed with "
                             f"{', '.join(k for k in own if k not in missing)} (give your "
                             "synthetic, training and hold-out records together)")
        given = [k for k, v in (("--gmm", args.gmm), ("--vae-epochs", args.vae_epochs),
                                ("--n-examples", args.n_examples)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: the embedded study's options do not apply "
                             "to --synthetic data")
        data = {k: np.load(v, allow_pickle=False) for k, v in own.items()}
        report = audit_synthetic_data(data["--synthetic"], data["--train"],
                                      data["--holdout"], args.out, fprs=args.fpr,
                                      level=args.level, prior=args.prior,
                                      pca=args.pca or None, top=args.top, seed=args.seed,
                                      name=str(args.synthetic), plot=not args.no_plot)
    else:
        report = generative_study(
            args.out, gmms=DEFAULT_GMMS if args.gmm is None else args.gmm,
            vae_epochs=DEFAULT_VAE_EPOCHS if args.vae_epochs is None else args.vae_epochs,
            n_examples=args.n_examples, fprs=args.fpr, level=args.level, prior=args.prior,
            pca=args.pca or None, top=args.top, seed=args.seed, plot=not args.no_plot,
            progress=None if args.quiet else print)
    print(summarize(report))
    print(f"total time {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``miakit`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 on an error (printed in one line on stderr), 2 when
        no command is given.

    Examples
    --------
    >>> from miakit.cli import main
    >>> main(["shadow", "--out", "/nonexistent/dir/run", "--models", "3", "--quiet"])
    1
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        commands = {"audit": cmd_audit, "shadow": cmd_shadow, "sweep": cmd_sweep,
                    "import": cmd_import, "leakage": cmd_leakage, "budget": cmd_budget,
                    "dp-curvature": cmd_dp_curvature,
                    "generative": cmd_generative, "report": cmd_report}
        return commands[args.command](args)
    except KeyboardInterrupt:
        print("miakit: interrupted; finished models are saved, run the same command to "
              "resume", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:
        print(f"miakit: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
