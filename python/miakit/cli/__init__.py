"""The ``miakit`` command line: a thin layer over the library.

Commands (``miakit COMMAND --help`` for their options; docs/cli.md lists them all):

- ``miakit audit``: train (or resume) the default shadow run and attack it, the main
  job; ``miakit audit --run RUN`` attacks an existing run, and with ``--target-logits``
  one released model against the run's models (:mod:`miakit.cli.audit`);
- ``miakit report``: print an audit's report.json again and write it as report.html;
- ``miakit shadow``: train (or resume) a shadow run only, of the default heads or of
  your own torch model (``--model``) (:mod:`miakit.cli.shadow`);
- ``miakit import``: bring shadow models trained elsewhere into a run;
- ``miakit budget``, ``miakit dp-curvature``, ``miakit leakage``, ``miakit sweep``,
  ``miakit generative``, ``miakit capacity``, ``miakit partial-layers``: the studies of
  :mod:`miakit.studies` (:mod:`miakit.cli.studies`).

Each command's options are made from the library's declarations (the ``Config``
dataclasses: :class:`miakit.audit.options.AuditConfig`,
:class:`miakit.shadow.TrainingConfig`, each study's config), so their defaults are the
library's. Errors are reported in one line on stderr with exit status 1 (2 for a bad
command line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The ``miakit`` argument parser, with every sub-command.

    Examples
    --------
    >>> from miakit.cli import build_parser
    >>> args = build_parser().parse_args(["shadow", "--out", "run", "--models", "8"])
    >>> args.command, args.models, args.head
    ('shadow', 8, 'mlp')
    """
    from miakit import __version__
    from miakit.cli import audit, shadow, studies

    parser = argparse.ArgumentParser(
        prog="miakit",
        description="Membership-privacy audits of machine-learning models. Run 'miakit "
                    "audit' for a complete audit of a model trained on an embedded dataset.",
    )
    parser.add_argument("--version", action="version", version=f"miakit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (audit, shadow, studies):
        module.add_parser(sub)
    return parser


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
    from miakit._progress import progress_mode
    from miakit.cli._options import progress_flag

    try:
        # --quiet and --progress hold for everything the command runs (training, the
        # audit's phases), also code that takes no progress argument of its own
        with progress_mode(progress_flag(args)):
            return args._command(args)
    except KeyboardInterrupt:
        print("miakit: interrupted; finished models are saved, run the same command to "
              "resume", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:
        print(f"miakit: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
