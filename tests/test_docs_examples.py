"""The scripts under docs/examples run and print what the docs quote."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="docs/examples is not beside the tests")
def test_null_leakage_script_prints_the_bias_table():
    out = subprocess.run([sys.executable, str(EXAMPLES / "null_leakage.py"), "4000"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    table = {(int(r[0]), r[1]): [float(x) for x in r[2:]] for r in rows}
    assert set(table) == {(m, ref) for m in (4, 8, 16, 64) for ref in ("all", "balanced")}
    assert table[(4, "all")][0] < 0.05  # the target-only estimate, inverted
    for m in (4, 8, 16, 64):
        assert all(abs(a - 0.5) < 0.02 for a in table[(m, "balanced")])
