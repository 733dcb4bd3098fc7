"""The scripts under docs/examples run and print what the docs quote."""

from __future__ import annotations

import pathlib
import re
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


# Python blocks of the docs pages that cannot run here, each preceded in its page by the
# line <!-- not run: REASON --> (what it needs that a test machine has not).
NOT_RUN = re.compile(r"<!-- not run: [^>]+-->\s*$")


def _python_blocks() -> list[tuple[str, int, str]]:
    """(page, index, code) of every ```python block in docs/ not marked "not run"."""
    found = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = page.read_text()
        for i, m in enumerate(re.finditer(r"```python\n(.*?)```", text, re.S)):
            if not NOT_RUN.search(text[:m.start()].rstrip() + "\n"):
                found.append((page.relative_to(ROOT).as_posix(), i, m.group(1)))
    return found


def _audit_run(where: pathlib.Path) -> None:
    """A small run where docs/guide/audit.md expects the default audit's
    (miakit-report/run), in place of the 64 heads the command trains."""
    import miakit as mk

    d = mk.datasets.synthetic(n=120, dim=8, n_classes=3, seed=0)
    keep = mk.shadow.balanced_keep(8, 120, seed=0)
    mk.shadow.train_heads(d.features, d.labels, keep, run_dir=where / "miakit-report" / "run",
                          progress=False)


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="docs/ is not beside the tests")
@pytest.mark.parametrize("page,index,code", [
    pytest.param(*block, id=f"{block[0]}#{block[1]}")
    for block in (_python_blocks() if (ROOT / "docs").is_dir() else [])])
def test_docs_python_block_runs(page, index, code, tmp_path, monkeypatch):
    """Every Python block of the docs runs as written (in an empty working directory)."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    if "miakit-report/run" in code:
        _audit_run(tmp_path)
    if code.lstrip().startswith(">>>"):  # a session: run its statements; what it prints
        # depends on the build (backend_info), so it is not compared
        code = "\n".join(line[4:] for line in code.splitlines()
                         if line.startswith((">>> ", "... ")))
    exec(compile(code, f"{page} (block {index})", "exec"), {"__name__": "__docs__"})  # noqa: S102


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="docs/ is not beside the tests")
def test_docs_blocks_not_run_say_why():
    """A block is left out only with a reason, and the pages keep their runnable ones."""
    pages = {page for page, _, _ in _python_blocks()}
    assert {"docs/guide/audit.md", "docs/guide/torch.md"} <= pages
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for reason in re.findall(r"<!-- not run: ([^>]*)-->", page.read_text()):
            assert len(reason.strip()) > 10, (page, reason)
