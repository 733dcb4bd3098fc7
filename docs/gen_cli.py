"""Render docs/cli.md from the command line's own help (``python docs/gen_cli.py``).

A test checks that the committed page equals this output, so the page never drifts from
the options the commands take.
"""

from __future__ import annotations

import os
import sys

os.environ["COLUMNS"] = "100"  # argparse wraps help at the terminal width


def render() -> str:
    from miakit.cli import build_parser

    parser = build_parser()
    group = parser._subparsers._group_actions[0]
    sub = group.choices
    parts = ["# Command line", "",
             "`miakit COMMAND --help` prints the same. Commands:", ""]
    for action in group._choices_actions:
        name = action.dest
        parts.append(f"- [`miakit {name}`](#miakit-{name}): {action.help}")
    for name, p in sub.items():
        parts += ["", f"## miakit {name}", "", "```text", p.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
