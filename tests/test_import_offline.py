"""Offline-only reference runs: ``miakit import`` accepts models that never trained on any
of the examples (keep all False), and examples IN for no model in general, says that only
offline attacks apply to them, and refuses examples IN for every model (no attack can use
them)."""

from __future__ import annotations

import numpy as np
import pytest

import miakit as mk
from miakit.cli import main

M, N, A, C = 4, 12, 2, 3


def _arrays(tmp_path, keep):
    rng = np.random.default_rng(0)
    paths = {"logits": tmp_path / "logits.npy", "keep": tmp_path / "keep.npy",
             "labels": tmp_path / "labels.npy"}
    np.save(paths["logits"], rng.normal(size=(M, N, A, C)).astype(np.float32))
    np.save(paths["keep"], keep)
    np.save(paths["labels"], rng.integers(0, C, N))
    return paths


def _import(paths, out):
    return main(["import", "--out", str(out), "--logits", str(paths["logits"]), "--keep",
                 str(paths["keep"]), "--labels", str(paths["labels"])])


def test_keep_all_false_is_an_offline_only_run(tmp_path, capsys):
    paths = _arrays(tmp_path, np.zeros((M, N), bool))
    assert _import(paths, tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "offline-only run" in out and "only offline attacks apply" in out
    assert "--target-logits" in out
    run = mk.shadow.open_run(tmp_path / "run")
    assert run.offline_only and run.is_complete
    assert not run.keep.any() and run.keep.shape == (M, N)
    np.testing.assert_array_equal(run.logits(), np.load(paths["logits"]))
    # importing the same again resumes
    assert _import(paths, tmp_path / "run") == 0


def test_examples_never_in_are_accepted_and_named(tmp_path, capsys):
    keep = np.zeros((M, N), bool)
    keep[:, :8] = mk.shadow.balanced_keep(M, 8)
    assert _import(_arrays(tmp_path, keep), tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "4 examples IN for no model: online attacks do not apply to them" in out
    assert "miakit audit --run" in out
    run = mk.shadow.open_run(tmp_path / "run")
    assert not run.offline_only
    np.testing.assert_array_equal(run.keep, keep)


def test_balanced_run_is_not_offline_only(tmp_path, capsys):
    assert _import(_arrays(tmp_path, mk.shadow.balanced_keep(M, N)), tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "offline" not in out and "IN for no model" not in out
    assert not mk.shadow.open_run(tmp_path / "run").offline_only


def test_examples_never_out_are_refused_naming_them(tmp_path, capsys):
    keep = mk.shadow.balanced_keep(M, N)
    keep[:, [2, 5, 7]] = True
    assert _import(_arrays(tmp_path, keep), tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert err.startswith("miakit: error: keep: 3 examples IN for every model "
                          "(first: [2, 5, 7])"), err
    assert not (tmp_path / "run").exists()  # checked before anything is written


@pytest.mark.parametrize("how", ["logits", "signals", "folder"])
def test_every_import_refuses_never_out_and_accepts_never_in(tmp_path, how):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(M, N, A, C)).astype(np.float32)
    y = rng.integers(0, C, N)

    def do(keep, out):
        if how == "logits":
            return mk.shadow.import_logits(out, z, keep, y)
        if how == "signals":
            return mk.shadow.import_signals(out, np.abs(z[..., 0]), keep, kind="loss")
        folder = out.with_name(out.name + "-files")
        folder.mkdir()
        for m in range(M):
            np.save(folder / f"model-{m}.npy", z[m])
            np.save(folder / f"model-{m}.keep.npy", keep[m])
        return mk.shadow.import_folder(out, folder, y)

    assert do(np.zeros((M, N), bool), tmp_path / "offline").offline_only
    never_out = np.zeros((M, N), bool)
    never_out[:, 0] = True
    with pytest.raises(ValueError, match=r"keep: 1 example IN for every model "
                                         r"\(first: \[0\]\)"):
        do(never_out, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
