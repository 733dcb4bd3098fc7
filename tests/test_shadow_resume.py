"""Kill training with SIGKILL at chosen moments, resume, and compare bytes with an
uninterrupted run: a kill loses at most the work in progress and changes nothing else.

The kills are deterministic: the run store's test hook (``MIAKIT_TEST_KILL_AT``, see
``miakit.io.kill_point``) makes the training process SIGKILL itself at a named
point of ``Run.write_model``:

- ``model-<m>:files``: model m's files are renamed into place, the manifest does not list
  it yet;
- ``model-<m>:manifest``: half of the manifest that lists model m is in its temporary
  file (flushed to disk), the rest is not written and nothing is renamed.

Each test checks on disk that the kill happened exactly there, resumes, kills the resumed
process at a later point (after it has written something), resumes again to the end, and
compares every file with the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import miakit as mk
from miakit.io import KILL_ENV, TMP_MARK

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

ENV = {k: v for k, v in os.environ.items() if k != KILL_ENV} | {"OMP_NUM_THREADS": "1"}


def _files(run: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(run.rglob("*")):
        rel = p.relative_to(run).as_posix()
        if p.is_file() and not rel.startswith("cache/") and rel != ".lock":
            out[rel] = p.read_bytes()
    return out


def _listed(run: Path) -> set[int]:
    return {int(k) for k in json.loads((run / "manifest.json").read_text())["models"]}


def _run(cmd: list[str], kill_at: str | None = None) -> None:
    env = ENV if kill_at is None else {**ENV, KILL_ENV: kill_at}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if kill_at is None:
        assert res.returncode == 0, res.stderr
    else:  # it died by its own SIGKILL at the hook (nothing else sends one)
        assert res.returncode == -signal.SIGKILL, (kill_at, res.returncode, res.stderr)


def _model_file(run: Path, m: int, folder: str = "models") -> Path:
    return run / folder / f"model-{m:05d}.npy"


def _check_killed_after_files(run: Path, ref: Path, m: int, params: bool) -> None:
    """Model m's files are complete on disk (the reference's bytes), but not listed."""
    assert m not in _listed(run)
    folders = ("models", "params") if params else ("models",)
    for folder in folders:
        assert _model_file(run, m, folder).read_bytes() == \
            _model_file(ref, m, folder).read_bytes()
    # nothing half-written anywhere: the kill came between two complete writes
    assert not [p for p in run.rglob(f"*{TMP_MARK}*")]
    r = mk.shadow.open_run(run)
    assert m in r.missing.tolist() and not r.corrupt


def _check_killed_mid_manifest(run: Path, m: int, listed_before: set[int]) -> None:
    """A half-written manifest that would list model m sits in a temporary file; the
    manifest in place is the previous one."""
    assert m not in _listed(run) and listed_before <= _listed(run)
    tmp = list(run.glob(f".manifest.json{TMP_MARK}*"))
    assert len(tmp) == 1, tmp
    part = tmp[0].read_bytes()
    assert 0 < len(part) and part.startswith(b"{")
    with pytest.raises(ValueError):
        json.loads(part)  # cut in the middle
    assert _model_file(run, m).is_file()  # its files were already in place
    assert m in mk.shadow.open_run(run).missing.tolist()


def _check_resumed_equals_reference(cmd_for, tmp_path: Path, total: int, first: int,
                                    second: int, params: bool = False) -> None:
    ref = tmp_path / "ref"
    _run(cmd_for(ref))
    run = tmp_path / "killed"
    # 1. killed after model `first`'s files, before the manifest lists it
    _run(cmd_for(run), kill_at=f"model-{first}:files")
    _check_killed_after_files(run, ref, first, params)
    before = _listed(run)
    assert 0 < len(before) < first + 1 and first not in before
    # 2. the resumed process retrains `first`, then dies halfway through the manifest
    #    update that would list `second`
    _run(cmd_for(run), kill_at=f"model-{second}:manifest")
    _check_killed_mid_manifest(run, second, before)
    assert first in _listed(run)  # the resumed process did write before it was killed
    # 3. resumed to the end
    _run(cmd_for(run))
    # every model (logits and parameters), the manifest, keep, labels, features, run.json;
    # the stray temporary manifest is gone
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

    # model 3 is the second of the chunk (2, 3); model 5 the second of (4, 5)
    _check_resumed_equals_reference(cmd, tmp_path, 8, first=3, second=5, params=True)


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

    _check_resumed_equals_reference(cmd, tmp_path, 6, first=1, second=3)


def test_kill_hook_is_inert_without_the_variable(tmp_path, monkeypatch):
    """The hook only fires on an exact match: another point's name, or none, writes."""
    monkeypatch.setenv(KILL_ENV, "model-1:files")
    keep = mk.shadow.balanced_keep(2, 3, seed=0)
    run = mk.shadow.create_run(tmp_path / "r", keep, np.zeros(3, int), n_augmentations=1,
                               n_classes=2)
    run.write_model(0, np.ones((3, 1, 2), np.float32))  # model 0: not the named point
    monkeypatch.delenv(KILL_ENV)
    run.write_model(1, np.ones((3, 1, 2), np.float32))
    assert mk.shadow.open_run(tmp_path / "r").completed.tolist() == [0, 1]
