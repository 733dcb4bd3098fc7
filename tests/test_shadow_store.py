"""Run directories: round trips, checksums, corruption, mismatches, write failures, locks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import miakit as mk
from miakit.shadow import (
    CorruptModelError,
    CorruptModelWarning,
    IncompleteRunError,
    RunLockedError,
    RunMismatchError,
    RunWriteError,
)

M, N, A, C = 4, 7, 2, 3


def _logits(m: int, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(100 + m)
    return rng.normal(size=(N, A, C)).astype(dtype)


def _new_run(path, **kw):
    keep = mk.shadow.balanced_keep(M, N, seed=1)
    labels = np.arange(N) % C
    kw.setdefault("config", {"seed": 0, "lr": 0.1})
    return mk.shadow.create_run(path, keep, labels, n_augmentations=A, n_classes=C,
                                data_digest="data-v1", **kw)


def _snapshot(path):
    """Bytes of every file of a run, by relative path (the cache excluded)."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, path)
            if not rel.startswith("cache") and f != ".lock":
                with open(p, "rb") as fh:
                    out[rel] = fh.read()
    return out


def test_round_trip(tmp_path):
    run = _new_run(tmp_path / "run", metadata={"dataset": "toy"})
    assert run.completed.tolist() == [] and run.missing.tolist() == [0, 1, 2, 3]
    for m in (2, 0, 3, 1):
        run.write_model(m, _logits(m))
    again = mk.shadow.open_run(tmp_path / "run")
    assert again.is_complete and again.completed.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(again.keep, mk.shadow.balanced_keep(M, N, seed=1))
    np.testing.assert_array_equal(again.labels, np.arange(N) % C)
    assert again.labels.dtype == np.int64 and again.keep.dtype == np.bool_
    assert again.meta["metadata"] == {"dataset": "toy"}
    assert again.config == {"seed": 0, "lr": 0.1}
    z = again.logits()  # in memory: nothing is written into the run
    assert not isinstance(z, np.memmap) and z.shape == (M, N, A, C)
    assert not (tmp_path / "run" / "cache").exists()
    cached = again.logits(cache=True)  # the stacked copy on disk, asked for
    assert isinstance(cached, np.memmap) and not cached.flags.writeable
    np.testing.assert_array_equal(cached, z)
    for m in range(M):
        np.testing.assert_array_equal(z[m], _logits(m))
        np.testing.assert_array_equal(again.model_logits(m), _logits(m))
    # A subset, in the order asked for (with cache=True from its own memory-mapped file).
    for cache in (False, True):
        sub = again.logits(models=[3, 1], cache=cache)
        np.testing.assert_array_equal(sub, np.stack([_logits(3), _logits(1)]))


def test_logits_feed_lira_from_disk(tmp_path):
    rng = np.random.default_rng(0)
    m, n = 8, 40
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    labels = rng.integers(0, 3, n)
    run = mk.shadow.create_run(tmp_path / "r", keep, labels, n_augmentations=1, n_classes=3)
    logits = rng.normal(size=(m, n, 1, 3)).astype(np.float32)
    logits[np.arange(m)[:, None], np.arange(n), 0, labels] += 3.0 * keep
    for k in range(m):
        run.write_model(k, logits[k])
    from_disk = mk.lira.leave_one_out(run.logits(), run.keep, labels=run.labels)
    in_memory = mk.lira.leave_one_out(logits, keep, labels=labels)
    np.testing.assert_array_equal(from_disk, in_memory)


def test_float16_storage(tmp_path):
    run = _new_run(tmp_path / "run", logits_dtype="float16")
    run.write_model(0, _logits(0))
    z = run.model_logits(0)
    assert z.dtype == np.float16
    np.testing.assert_array_equal(z, _logits(0).astype(np.float16))


def test_incomplete_run_names_missing_models(tmp_path):
    run = _new_run(tmp_path / "run")
    run.write_model(1, _logits(1))
    run.write_model(3, _logits(3))
    with pytest.raises(IncompleteRunError, match=r"\[0, 2\]") as info:
        run.logits()
    assert info.value.missing == [0, 2]
    part = run.logits(models=run.completed)
    np.testing.assert_array_equal(part[1], _logits(3))


def test_cache_is_reused_then_rebuilt(tmp_path):
    run = _new_run(tmp_path / "run")
    for m in range(3):
        run.write_model(m, _logits(m))
    first = run.logits(models=[0, 1, 2], cache=True)
    name = first.filename
    assert run.logits(models=[0, 1, 2], cache=True).filename == name
    run.write_model(3, _logits(3))
    full = run.logits(cache=True)
    assert full.filename != name and not os.path.exists(name)  # stale cache removed
    assert len(list((tmp_path / "run" / "cache").iterdir())) == 1


def test_tampered_cache_is_caught_by_verify(tmp_path):
    run = _new_run(tmp_path / "run")
    for m in range(M):
        run.write_model(m, _logits(m))
    path = run.logits(cache=True).filename
    with open(path, "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x00\x00\x80\x7f")
    with pytest.raises(CorruptModelError, match="cached copy of model 3"):
        run.logits(verify=True, cache=True)
    np.testing.assert_array_equal(run.logits()[3], _logits(3))  # read from the model file


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "append"])
def test_corrupt_model_file_is_reported_and_excluded(tmp_path, damage):
    run = _new_run(tmp_path / "run")
    for m in range(M):
        run.write_model(m, _logits(m))
    path = run.model_path(2)
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) - 10])
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(data + b"junk")
    with pytest.warns(CorruptModelWarning, match=str(path)):
        again = mk.shadow.open_run(tmp_path / "run")
    assert 2 in again.corrupt and again.completed.tolist() == [0, 1, 3]
    with pytest.raises(IncompleteRunError, match="corrupt"):
        again.logits()
    # Rewriting the model (what resuming does) heals the run.
    again.write_model(2, _logits(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        healed = mk.shadow.open_run(tmp_path / "run")
    np.testing.assert_array_equal(healed.logits()[2], _logits(2))


def test_corruption_after_open_is_caught_when_reading(tmp_path):
    run = _new_run(tmp_path / "run")
    for m in range(M):
        run.write_model(m, _logits(m))
    path = run.model_path(1)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="model-00001.npy") as info:
        run.logits()
    assert info.value.models == [1]
    with pytest.raises(CorruptModelError):
        run.model_logits(1)


def test_reopening_same_experiment_resumes(tmp_path):
    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0))
    again = _new_run(tmp_path / "run")
    assert again.completed.tolist() == [0]


@pytest.mark.parametrize("change", ["keep", "labels", "data", "config", "shape"])
def test_different_experiment_is_refused_and_untouched(tmp_path, change):
    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0))
    before = _snapshot(tmp_path / "run")
    keep = mk.shadow.balanced_keep(M, N, seed=1)
    labels = np.arange(N) % C
    kw = {"n_augmentations": A, "n_classes": C, "data_digest": "data-v1",
          "config": {"seed": 0, "lr": 0.1}}
    if change == "keep":
        keep = mk.shadow.balanced_keep(M, N, seed=2)
    elif change == "labels":
        labels = (labels + 1) % C
    elif change == "data":
        kw["data_digest"] = "data-v2"
    elif change == "config":
        kw["config"] = {"seed": 0, "lr": 0.2}
    else:
        kw["n_augmentations"] = 1
    with pytest.raises(RunMismatchError, match="different experiment") as info:
        mk.shadow.create_run(tmp_path / "run", keep, labels, **kw)
    if change == "config":
        assert "lr=0.1 in the run, 0.2 now" in str(info.value)
    assert _snapshot(tmp_path / "run") == before


def test_foreign_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunMismatchError, match="not a miakit run"):
        _new_run(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_keep_and_labels(tmp_path):
    labels = np.arange(N) % C
    with pytest.raises(ValueError, match="even number of models"):
        mk.shadow.create_run(tmp_path / "a", np.ones((3, N), bool), labels,
                             n_augmentations=1, n_classes=C)
    with pytest.raises(ValueError, match="2-D"):
        mk.shadow.create_run(tmp_path / "a", np.ones(N, bool), labels, n_augmentations=1,
                             n_classes=C)
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    with pytest.raises(ValueError, match=r"shape \(7,\) to match keep"):
        mk.shadow.create_run(tmp_path / "a", keep, labels[:-1], n_augmentations=1,
                             n_classes=C)
    with pytest.raises(TypeError, match="integer class indices.*whole numbers"):
        mk.shadow.create_run(tmp_path / "a", keep, labels.astype(float), n_augmentations=1,
                             n_classes=C)
    with pytest.raises(ValueError, match=r"\[0, 3\), got 5"):
        mk.shadow.create_run(tmp_path / "a", keep, np.r_[labels[:-1], 5], n_augmentations=1,
                             n_classes=C)
    assert not (tmp_path / "a").exists()


def test_write_model_rejects_bad_logits(tmp_path):
    run = _new_run(tmp_path / "run")
    with pytest.raises(ValueError, match=r"expected shape \(7, 2, 3\)"):
        run.write_model(0, np.zeros((N, 1, C), np.float32))
    bad = _logits(0)
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run.write_model(0, bad)
    with pytest.raises(ValueError, match=r"model index in \[0, 4\)"):
        run.write_model(4, _logits(0))
    assert run.completed.tolist() == []


def test_unwritable_location_gives_clear_oserror(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="could not write the run directory"):
        _new_run(blocker / "run")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_read_only_run_is_not_damaged(tmp_path):
    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0))
    before = _snapshot(tmp_path / "run")
    os.chmod(tmp_path / "run" / "models", 0o500)
    try:
        with pytest.raises(RunWriteError, match="not writable"):
            run.write_model(1, _logits(1))
    finally:
        os.chmod(tmp_path / "run" / "models", 0o700)
    assert _snapshot(tmp_path / "run") == before


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
@pytest.mark.parametrize("where", ["models", "params", "manifest.json"])
def test_unwritable_run_is_not_damaged_without_privileges(tmp_path, monkeypatch, code, where):
    """The read-only test above, for any user (root ignores directory permissions): the
    operating system refuses to create the temporary file of the logits, the parameters
    or the manifest (permission denied, read-only file system). The error names the
    problem, and the run is byte for byte as before: files of the model that did land
    (its parameters, its logits) are removed again."""
    from miakit import io as mkio

    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0), params=_params(0))
    before = _snapshot(tmp_path / "run")
    real_open = open
    refused = []

    def guarded_open(file, mode="r", *args, **kwargs):
        path = Path(file)
        if "x" in mode and (path.parent.name == where or path.name.startswith(f".{where}")):
            refused.append(path)
            raise OSError(code, os.strerror(code), str(path))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(mkio, "open", guarded_open, raising=False)
    with pytest.raises(RunWriteError, match="not writable: choose another one") as info:
        run.write_model(1, _logits(1), params=_params(1))
    monkeypatch.undo()
    assert len(refused) == 1 and info.value.errno == code
    target = where if where == "manifest.json" else f"{where}/model-00001.npy"
    assert str(tmp_path / "run" / target) in str(info.value)  # names the file
    assert _snapshot(tmp_path / "run") == before
    again = mk.shadow.open_run(tmp_path / "run")
    assert again.completed.tolist() == [0] and not again.corrupt
    run.write_model(1, _logits(1), params=_params(1))  # writable again: it goes through
    np.testing.assert_array_equal(mk.shadow.open_run(tmp_path / "run").model_logits(1),
                                  _logits(1))


def test_disk_full_is_reported_and_run_survives(tmp_path, monkeypatch):
    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0))
    before = _snapshot(tmp_path / "run")
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(RunWriteError, match="No space left.*free some space") as info:
        run.write_model(1, _logits(1))
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert _snapshot(tmp_path / "run") == before  # no temporary file left behind either
    assert mk.shadow.open_run(tmp_path / "run").completed.tolist() == [0]


def test_file_size_limit_is_a_real_write_error(tmp_path):
    """A write that the OS refuses (RLIMIT_FSIZE: EFBIG) leaves the run as it was."""
    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0))
    before = _snapshot(tmp_path / "run")
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np, miakit as mk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        run = mk.shadow.open_run({str(tmp_path / "run")!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
        try:
            run.write_model(1, np.ones(({N}, {A}, {C}), np.float32))
        except OSError as exc:
            print(type(exc).__name__, exc.errno, exc)
            sys.exit(0)
        sys.exit(1)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"RunWriteError {errno.EFBIG}")
    assert "Nothing already in the run was changed" in res.stdout
    assert _snapshot(tmp_path / "run") == before


def test_second_writer_is_locked_out(tmp_path):
    run = _new_run(tmp_path / "run")
    other = mk.shadow.open_run(tmp_path / "run")
    with run.writer():
        with pytest.raises(RunLockedError, match="another process"):
            with other.writer():
                pass
    with other.writer():  # released
        pass


def test_writer_removes_stale_temporary_files(tmp_path):
    run = _new_run(tmp_path / "run")
    stale = tmp_path / "run" / "models" / ".model-00001.npy.tmp-123-abcd"
    stale.write_bytes(b"half a model")
    with run.writer():
        pass
    assert not stale.exists()


def test_altered_keep_is_detected(tmp_path):
    _new_run(tmp_path / "run")
    keep = np.load(tmp_path / "run" / "keep.npy")
    np.save(tmp_path / "run" / "keep.npy", ~keep)
    with pytest.raises(ValueError, match="does not match the fingerprint"):
        mk.shadow.open_run(tmp_path / "run")


def test_manifest_lists_checksums(tmp_path):
    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    entry = manifest["models"]["0"]
    import hashlib

    assert entry["sha256"] == hashlib.sha256(_logits(0).tobytes()).hexdigest()
    assert entry["shape"] == [N, A, C] and entry["dtype"] == "float32"


def test_open_missing_directory():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mk.shadow.open_run("/nonexistent/miakit-run")


# -- head parameters and features ---------------------------------------------------------
def _params(m: int) -> dict:
    rng = np.random.default_rng(200 + m)
    return {"weight1": rng.normal(size=(5, 4)), "bias1": rng.normal(size=5),
            "weight2": rng.normal(size=(C, 5)).astype(np.float32), "bias2": np.zeros(C)}


def test_params_round_trip_and_manifest(tmp_path):
    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0), params=_params(0))
    run.write_model(1, _logits(1))  # a model may be stored without parameters
    again = mk.shadow.open_run(tmp_path / "run")
    got = again.model_params(0)
    assert list(got) == ["weight1", "bias1", "weight2", "bias2"]
    for k, v in _params(0).items():
        assert got[k].dtype == np.float32 and not got[k].flags.writeable
        np.testing.assert_array_equal(got[k], v.astype(np.float32))
    with pytest.raises(KeyError, match="without parameters"):
        again.model_params(1)
    assert again.params_models.tolist() == [0]
    assert not again.has_params  # model 1 has none, and the run has no features
    entry = json.loads((tmp_path / "run" / "manifest.json").read_text())["models"]["0"]
    flat = np.concatenate([v.astype(np.float32).ravel() for v in _params(0).values()])
    import hashlib

    assert entry["params"]["file"] == "params/model-00000.npy"
    assert entry["params"]["sha256"] == hashlib.sha256(flat.tobytes()).hexdigest()
    assert entry["params"]["layout"] == [["weight1", [5, 4]], ["bias1", [5]],
                                         ["weight2", [3, 5]], ["bias2", [3]]]
    np.testing.assert_array_equal(np.load(tmp_path / "run" / "params" / "model-00000.npy"),
                                  flat)
    # Rewriting a model without parameters drops its stale parameter file.
    again.write_model(0, _logits(0))
    assert not (tmp_path / "run" / "params" / "model-00000.npy").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "append"])
def test_corrupt_params_file_is_reported_by_name(tmp_path, damage):
    run = _new_run(tmp_path / "run")
    for m in range(M):
        run.write_model(m, _logits(m), params=_params(m))
    path = run.params_path(2)
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0x10]) + data[-4:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) - 8])
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(data + b"\0\0\0\0")
    with pytest.warns(CorruptModelWarning, match=str(path)):
        again = mk.shadow.open_run(tmp_path / "run")
    assert again.corrupt_files == {2: path} and "parameters" in again.corrupt[2]
    assert again.completed.tolist() == [0, 1, 3] and again.missing.tolist() == [2]
    with pytest.raises(IncompleteRunError):
        again.model_params(2)
    again.write_model(2, _logits(2), params=_params(2))  # what resuming does
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        healed = mk.shadow.open_run(tmp_path / "run")
    np.testing.assert_array_equal(healed.model_params(2)["bias1"], _params(2)["bias1"]
                                  .astype(np.float32))


def test_params_corrupted_after_open_are_caught_when_read(tmp_path):
    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0), params=_params(0))
    path = run.params_path(0)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="params/model-00000.npy") as info:
        run.model_params(0)
    assert info.value.models == [0] and info.value.paths == [str(path)]


def test_bad_params_are_refused_and_nothing_is_written(tmp_path):
    run = _new_run(tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    bad = _params(0)
    bad["bias1"][2] = np.inf
    with pytest.raises(ValueError, match=r"params\['bias1'\] of model 0: expected finite"):
        run.write_model(0, _logits(0), params=bad)
    with pytest.raises(ValueError, match="finite float32"):  # finite, but not in float32
        run.write_model(0, _logits(0), params={"w": np.array([1e300])})
    with pytest.raises(TypeError, match="non-empty mapping"):
        run.write_model(0, _logits(0), params={})
    with pytest.raises(TypeError, match="real-valued"):
        run.write_model(0, _logits(0), params={"w": np.array(["a"])})
    assert _snapshot(tmp_path / "run") == before and run.completed.tolist() == []


def test_failed_logits_write_removes_the_params_file(tmp_path, monkeypatch):
    """The parameters land first; if the logits then cannot be written, the run is left
    exactly as it was (no parameter file of an unlisted model)."""
    run = _new_run(tmp_path / "run")
    run.write_model(0, _logits(0), params=_params(0))
    before = _snapshot(tmp_path / "run")
    from miakit import io as mkio

    real = mkio.write_npy

    def fail_on_logits(path, array, what):
        if "logits" in what:
            raise RunWriteError(errno.ENOSPC, "disk full", str(path))
        real(path, array, what)

    monkeypatch.setattr(mkio, "write_npy", fail_on_logits)
    with pytest.raises(RunWriteError):
        run.write_model(1, _logits(1), params=_params(1))
    monkeypatch.setattr(mkio, "write_npy", real)
    assert _snapshot(tmp_path / "run") == before
    assert mk.shadow.open_run(tmp_path / "run").completed.tolist() == [0]


def test_features_are_checked_against_the_data_digest(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, A, 5))
    run = mk.shadow.create_run(tmp_path / "run", mk.shadow.balanced_keep(M, N, seed=1),
                               np.arange(N) % C, n_augmentations=A, n_classes=C,
                               data_digest=mk.shadow.features_digest(x))
    assert not run.has_features
    with pytest.raises(FileNotFoundError, match="no stored features"):
        run.features()
    before = _snapshot(tmp_path / "run")
    with pytest.raises(ValueError, match="not the features its models are trained on"):
        run.write_features(x + 1)
    with pytest.raises(ValueError, match=r"expected shape \[7, 2, D\]"):
        run.write_features(x[:, 0])
    assert _snapshot(tmp_path / "run") == before
    run.write_features(x)  # float64 in, stored as train_heads digests it: float32
    feats = mk.shadow.open_run(tmp_path / "run").features()
    assert feats.dtype == np.float32 and feats.shape == (N, A, 5) and not feats.flags.writeable
    np.testing.assert_array_equal(feats, x.astype(np.float32))
    # Altered on disk: reported by name, not used, and has_params is False.
    path = tmp_path / "run" / "features.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.warns(CorruptModelWarning, match="features.npy"):
        again = mk.shadow.open_run(tmp_path / "run")
    assert not again.has_features and "digest" in again.features_problem
    with pytest.raises(CorruptModelError, match="features.npy"):
        again.features()
    quick = mk.shadow.open_run(tmp_path / "run", verify=False)  # header only at open ...
    assert quick.has_features
    with pytest.raises(CorruptModelError, match="features.npy"):  # ... checked before use
        quick.features()
    assert not quick.has_features
    again.write_features(x)  # what train_heads does on resume
    assert again.has_features and mk.shadow.open_run(tmp_path / "run").has_features


def test_write_report_records_its_files_in_the_saved_report(tmp_path):
    from miakit.io import write_report

    drawn = []
    report = {"x": 1}
    write_report(tmp_path / "new", "demo", report, lambda r, p: drawn.append((r["x"], p)))
    saved = json.loads((tmp_path / "new" / "demo.json").read_text())
    assert drawn == [(1, tmp_path / "new" / "demo.png")]
    assert saved == report and saved["files"] == {
        "report": str(tmp_path / "new" / "demo.json"), "plot": str(tmp_path / "new" / "demo.png")}
    write_report(tmp_path, "bare", {"x": 2})
    assert json.loads((tmp_path / "bare.json").read_text())["files"] == {
        "report": str(tmp_path / "bare.json")}
