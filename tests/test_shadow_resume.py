"""Kill training with SIGKILL at arbitrary moments, resume, and compare bytes with an
uninterrupted run: a kill loses at most the work in progress and changes nothing else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import miakit as mk

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _files(run: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(run.rglob("*")):
        rel = p.relative_to(run).as_posix()
        if p.is_file() and not rel.startswith("cache/") and rel != ".lock":
            out[rel] = p.read_bytes()
    return out


def _n_done(run: Path) -> int:
    try:
        return len(json.loads((run / "manifest.json").read_text())["models"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill_when(cmd: list[str], run: Path, at_least: int, extra_delay: float) -> int:
    """Start ``cmd``, SIGKILL it once ``at_least`` models are stored (plus a delay)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _n_done(run) < at_least and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return _n_done(run)


def _check_resumed_equals_reference(cmd_for, tmp_path: Path, total: int,
                                    params: bool = False) -> None:
    ref = tmp_path / "ref"
    done = subprocess.run(cmd_for(ref), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "killed"
    # First kill right after the first stored model, then one at a later moment.
    seen = [_kill_when(cmd_for(run), run, 1, 0.0),
            _kill_when(cmd_for(run), run, 1, 0.15)]
    assert 0 < seen[0] < total, seen  # the kills did interrupt the run
    finish = subprocess.run(cmd_for(run), env=ENV, capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr
    # every model (logits and parameters), the manifest, keep, labels, features, run.json
    assert _files(run) == _files(ref)
    r, r_ref = mk.shadow.open_run(run), mk.shadow.open_run(ref)
    assert r.is_complete and r.n_models == total
    np.testing.assert_array_equal(r.logits(), r_ref.logits())
    assert r.has_params == params and (run / "features.npy").exists() == params
    if params:
        np.testing.assert_array_equal(r.features(), r_ref.features())
        for m in range(total):
            got, want = r.model_params(m), r_ref.model_params(m)
            assert list(got) == ["weight1", "bias1", "weight2", "bias2"] == list(want)
            for k in want:
                np.testing.assert_array_equal(got[k], want[k])


def test_sigkill_during_batched_head_training(tmp_path):
    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "miakit", "shadow", "--dataset", "synthetic",
                "--n-examples", "300", "--models", "8", "--heads-per-chunk", "2",
                "--hidden", "48", "--epochs", "300", "--quiet", "--out", str(out)]

    _check_resumed_equals_reference(cmd, tmp_path, 8, params=True)


SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch, miakit as mk
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 160)
    x = rng.normal(size=(160, 1, 6, 6)).astype(np.float32) + y[:, None, None, None] * 0.3
    keep = mk.shadow.balanced_keep(6, 160, seed=0)

    def factory():
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Dropout(0.2),
            torch.nn.Flatten(), torch.nn.Linear(64, 3))

    mk.shadow.train_models(factory, (x, y), keep, sys.argv[1], epochs=25, batch_size=16,
                           seed=11, progress=False)
""")


def test_sigkill_during_torch_model_training(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)

    def cmd(out: Path) -> list[str]:
        return [sys.executable, str(script), str(out)]

    _check_resumed_equals_reference(cmd, tmp_path, 6)
