"""``miakit audit`` (train or resume a run, and attack it) and ``miakit report`` (an
audit's report.json again, as text and as report.html)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from miakit.cli._options import add_options, add_output_options, config_from, progress_flag

__all__ = ["add_parser"]


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The default run's options (:class:`miakit.shadow.TrainingConfig`), in a group."""
    from miakit.shadow import TrainingConfig

    g = p.add_argument_group("shadow training (ignored with --run)")
    add_options(g, TrainingConfig, overrides={
        "models": {"metavar": "M"}, "n_examples": {"metavar": "N"},
        "planted": {"metavar": "FRACTION"}, "dp_sgd": {"metavar": "EPS"},
        "dp_delta": {"metavar": "D"}})


def add_parser(subparsers: Any) -> None:
    """Add ``audit`` and ``report`` to the ``miakit`` sub-commands.

    Examples
    --------
    >>> import argparse
    >>> from miakit.cli import audit
    >>> sub = argparse.ArgumentParser().add_subparsers(dest="command")
    >>> audit.add_parser(sub)
    >>> args = sub.choices["audit"].parse_args(["audit", "--run", "r", "--fpr", "0.05"][1:])
    >>> args.fprs, args.plot
    ([0.05], True)
    """
    from miakit.audit import ATTACKS
    from miakit.audit.options import AuditConfig

    pa = subparsers.add_parser(
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
    # --dp-delta is the training group's: one delta for DP-SGD and for the DP claim
    add_options(pa, AuditConfig, exclude=("dp_delta",), overrides={
        "dp_epsilon": {"metavar": "EPS"},
        # the attack names are checked by AuditConfig (exit status 1, not argparse's 2)
        "attacks": {"choices": None, "metavar": "NAME", "help": "attacks to run (default: "
                    "all): " + ", ".join(f"{a} (runs of heads)" if a == "lira_curvature"
                                         else a for a in ATTACKS)}})
    g = pa.add_argument_group(
        "one target model (with --run: the run's models are its references)")
    g.add_argument("--target-logits", type=Path, default=None, metavar="T.npy",
                   help="the released model's logits on the run's N examples, [N, C] or "
                        "[N, A, C]: audit that one model instead of the run's")
    g.add_argument("--target-keep", type=Path, default=None, metavar="K.npy",
                   help="bool [N]: which of the N examples the target model trained on")
    g.add_argument("--fdr", type=float, default=0.05,
                   help="false discovery rate at which the target's training records are "
                        "declared exposed (exposed.csv). Default: %(default)s")
    add_training_options(pa)
    add_output_options(pa)
    pa.set_defaults(_command=run_audit)

    pr = subparsers.add_parser(
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
    pr.set_defaults(_command=run_report)


def run_audit(args: argparse.Namespace) -> int:
    """``miakit audit``: the options checked before anything trains."""
    import miakit as mk
    from miakit._validation import check_probabilities
    from miakit.audit import audit, summarize
    from miakit.audit.options import AuditConfig

    check_probabilities(args.fprs, "--fpr")
    config = config_from(args, AuditConfig)
    if args.target_logits is not None or args.target_keep is not None:
        return _run_target_audit(args, config)
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    if args.run is None:
        run = mk.shadow.train_default(config_from(args, mk.shadow.TrainingConfig),
                                      args.out / "run", progress=progress_flag(args))
        timing["training"] = round(time.perf_counter() - t0, 3)
    else:
        run = mk.shadow.open_run(args.run)
    if config.dp_epsilon is None and run.config.get("dp"):  # a DP-SGD run: its guarantee
        dp = run.config["dp"]
        config = dataclasses.replace(config, dp_epsilon=dp["epsilon"], dp_delta=dp["delta"])
    report = audit(run, args.out, **config.kwargs(), extra={"timing_s": timing})
    print(summarize(report))
    print(f"total time {report['timing_s']['total']:.1f} s")
    return 0


def _load_array(path: Path, flag: str) -> Any:
    """An ``.npy`` file's array, or a ValueError naming the flag and the file."""
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty or truncated file
        raise ValueError(f"{flag}: cannot read {path} as a .npy array "
                         f"({exc or 'the file is empty'})") from None
    if not isinstance(arr, np.ndarray):  # np.load opens an .npz as an archive
        arr.close()
        raise ValueError(f"{flag}: {path} is an .npz archive, expected one .npy array")
    return arr


def _run_target_audit(args: argparse.Namespace, config: Any) -> int:
    """``miakit audit --run REFS --target-logits T.npy --target-keep K.npy``."""
    import miakit as mk

    given = {"--run": args.run, "--target-logits": args.target_logits,
             "--target-keep": args.target_keep}
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ValueError(f"{', '.join(missing)}: a target model's audit needs --run (its "
                         "reference models), --target-logits and --target-keep")
    run = mk.shadow.open_run(args.run)
    kw = config.kwargs()
    kw.pop("references")  # every model of the run is a reference of the target
    report = mk.audit.audit_target(run, _load_array(args.target_logits, "--target-logits"),
                                   _load_array(args.target_keep, "--target-keep"), args.out,
                                   fdr=args.fdr, **kw)
    print(report.summary())
    print(f"total time {report.timing_s['total']:.1f} s")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """``miakit report``: refuses a file that is not an audit's report.json."""
    from miakit.audit import load_report, write_html

    report = load_report(args.report, name="REPORT.json")  # names what the file lacks
    out = args.html or args.report.with_name("report.html")
    # the summary without the old audit's "wrote ..." line: this command writes the page
    print(report.summary(files=False))
    print(f"wrote {write_html(report, out, figures_dir=args.report.parent)}")
    return 0
