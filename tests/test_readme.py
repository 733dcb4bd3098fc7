"""The README's example runs as written and gives a real membership signal."""

from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs(capsys):
    text = README.read_text()
    code = text.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    mk = namespace["mk"]
    loo, keep = namespace["loo"], namespace["keep"]
    assert loo.shape == keep.shape
    assert mk.metrics.auc(loo, keep) > 0.9
    assert "AUC" in capsys.readouterr().out


def test_readme_has_exactly_two_setup_commands():
    text = README.read_text()
    for marker in ("main-command", "test-command"):
        block = text.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
        lines = [ln for ln in block.strip().splitlines() if not ln.startswith("```")]
        assert len(lines) == 1, (marker, lines)
    assert "miakit audit" in text.split("<!-- main-command -->", 1)[1]


if __name__ == "__main__":
    pytest.main([__file__])
