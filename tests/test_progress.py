"""Progress of long jobs when stderr is not a terminal: plain, throttled lines that say
what is happening (training or resuming, k of M models, the audit's phases), a bar on a
terminal, nothing with --quiet."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest

from miakit import _progress
from miakit._progress import phase, progress_bar, progress_mode
from miakit.cli import main
from miakit.io import KILL_ENV

# 8 linear heads on 80 synthetic examples, 2 heads per chunk: a kill after model 4 leaves
# two whole chunks done and two to train
TINY = ["--dataset", "synthetic", "--n-examples", "80", "--models", "8", "--head", "linear",
        "--heads-per-chunk", "2"]
ENV = {k: v for k, v in os.environ.items() if k != KILL_ENV} | {"OMP_NUM_THREADS": "1"}


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("miakit: ")]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_shadow_says_what_it_does_on_a_pipe_and_when_it_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "miakit", "shadow", "--out", str(run), *TINY]
    # killed by the run store's test hook once model 4's files are in place
    first = subprocess.run(cmd, env={**ENV, KILL_ENV: "model-4:files"}, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stderr
    lines = _lines(first.stderr)
    assert lines[0] == f"miakit: shadow run {run}: 8 linear heads on synthetic (80 examples)"
    assert lines[1] == "miakit: training linear heads: 8 heads to go", first.stderr
    # the same command again, stderr a pipe: it says that it resumes, and from where
    second = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    lines = _lines(second.stderr)[1:]
    assert lines[0] == ("miakit: training linear heads: resuming: 4 of 8 heads already "
                        "trained, 4 to go"), second.stderr
    assert lines[-1].startswith("miakit: training linear heads: 8 of 8 heads trained in ")
    assert len(lines) <= 1 + 4  # throttled: the start, at most one per head (the last: the end)
    assert "8/8 models" in second.stdout
    # finished: one line says so; then the audit says which phase it is in
    assert main(["shadow", "--out", str(run), *TINY]) == 0
    err = capsys.readouterr().err
    assert _lines(err)[1:] == ["miakit: training linear heads: all 8 heads already trained"]
    assert main(["audit", "--run", str(run), "--out", str(tmp_path / "report"),
                 "--no-plot"]) == 0
    err = "\n".join(_lines(capsys.readouterr().err))
    for said in ("audit of 8 models x 80 examples", "audit: computing signals",
                 "audit: lira_online done (1 of ", "audit: per-example table",
                 "audit: writing report.html and report.json"):
        assert said in err, err
    assert "drawing the figures" not in err  # --no-plot: no figures, no such phase
    # --quiet: nothing at all on stderr
    assert main(["audit", "--run", str(run), "--out", str(tmp_path / "report"), "--no-plot",
                 "--quiet"]) == 0
    assert main(["shadow", "--out", str(run), *TINY, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


class _Clock:
    """A stand-in for time.monotonic that the test moves forward."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_are_throttled_to_tenths_and_a_heartbeat(monkeypatch, capsys):
    clock = _Clock()
    monkeypatch.setattr(_progress.time, "monotonic", clock)
    bar = progress_bar(None, total=200, unit="model", desc="training shadow models")
    for _ in range(200):  # 200 models, one second each
        clock.t += 1.0
        bar.update(1)
    bar.close()
    lines = _lines(capsys.readouterr().err)
    # the start, one per tenth (the last is the end line), no line per model
    assert len(lines) == 1 + 10, lines
    assert lines[0] == "miakit: training shadow models: 200 models to go"
    assert lines[1] == ("miakit: training shadow models: 20 of 200 models trained (10%), "
                        "20 s, about 3.0 min left")
    assert lines[-1] == "miakit: training shadow models: 200 of 200 models trained in 3.3 min"
    # a slow step: nothing until a minute has passed, then a heartbeat with the detail
    bar = progress_bar(None, total=4, unit="head", desc="training mlp heads")
    capsys.readouterr()
    clock.t += 30
    bar.set_postfix_str("heads 0-3: step 100/1000")
    assert capsys.readouterr().err == ""
    clock.t += _progress.LINE_INTERVAL_S
    bar.set_postfix_str("heads 0-3: step 300/1000")
    assert _lines(capsys.readouterr().err) == [
        "miakit: training mlp heads: 0 of 4 heads trained (0%), 90 s "
        "(heads 0-3: step 300/1000)"]
    bar.close()  # stopped before the end (an error, an interrupt): the log says where
    assert _lines(capsys.readouterr().err) == [
        "miakit: training mlp heads: stopped at 0 of 4 heads after 90 s"]


def test_a_terminal_gets_a_bar_and_the_switches_hold(monkeypatch, capsys):
    tqdm = pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress_bar(None, total=3, desc="x")
    assert isinstance(bar, tqdm.tqdm)
    bar.close()
    monkeypatch.undo()
    assert isinstance(progress_bar(False, total=3), _progress._Quiet)
    with progress_mode(False):  # the command's --quiet reaches every unset call
        progress_bar(None, total=3, desc="x").update(3)
        phase("audit: computing signals")
        with progress_mode(None):  # the innermost block decides
            phase("inner")
    with progress_mode(None):
        progress_bar(False, total=3, desc="explicitly off").update(3)  # a call's own False
    assert _lines(capsys.readouterr().err) == ["miakit: inner"]
