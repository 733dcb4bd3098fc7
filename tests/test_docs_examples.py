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


ROOT = EXAMPLES.parent.parent


@pytest.mark.skipif(not (ROOT / "docs" / "gen_cli.py").is_file(),
                    reason="docs/ is not beside the tests")
def test_command_line_page_is_the_commands_own_help():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_cli
    finally:
        sys.path.pop(0)
    assert (ROOT / "docs" / "cli.md").read_text() == gen_cli.render(), (
        "docs/cli.md is stale: run python docs/gen_cli.py > docs/cli.md")


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="docs/ is not beside the tests")
def test_every_docs_page_is_in_the_navigation_and_every_link_exists():
    import re

    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.relative_to(ROOT / "docs").as_posix()
                   for p in (ROOT / "docs").rglob("*.md"))
    assert [p for p in pages if p not in nav] == []
    for page in pages:  # links between pages, and docs/... paths cited in the text
        text = (ROOT / "docs" / page).read_text()
        for target in re.findall(r"\]\(([^)#]+\.md)", text):
            assert (ROOT / "docs" / page).parent.joinpath(target).resolve().is_file(), (
                page, target)
    cited = set()
    for path in (ROOT / "python").rglob("*.py"):
        cited |= set(re.findall(r"docs/[\w/.-]+\.md", path.read_text()))
    for path in (ROOT / "csrc").rglob("*"):
        if path.is_file():
            cited |= set(re.findall(r"docs/[\w/.-]+\.md", path.read_text()))
    missing = sorted(c for c in cited if not (ROOT / c).is_file())
    assert missing == []
