"""Shadow training on Ray: a local cluster of 2 CPUs started here, runs identical to local
training byte for byte, a worker killed mid-task and retried, a killed driver resumed,
and an address where nothing answers."""

from __future__ import annotations

import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import miakit as mk
from miakit.cli import main
from miakit.shadow.train import default_train

ray = pytest.importorskip("ray")

N, M = 48, 4
KW = dict(epochs=3, batch_size=8, seed=5, progress=False)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for this module's tests; yields its address."""
    import ray.cloudpickle

    # The workers receive this module's functions by value: they need not import it.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _images():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, N)
    x = rng.normal(size=(N, 1, 4, 5)).astype(np.float32)
    x[:, 0, :, 0] += y[:, None]
    return x, y


def factory():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(20, 8), torch.nn.ReLU(),
                               torch.nn.Dropout(0.1), torch.nn.Linear(8, 3))


def _files(run: Path) -> dict[str, bytes]:
    """Every file of a run but the disposable cache and the lock, by relative path."""
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and not p.relative_to(run).as_posix().startswith("cache/")
            and p.name != ".lock"}


def _same_run(got: dict[str, bytes], want: dict[str, bytes]) -> None:
    """Two runs' files are the same up to float32 rounding: the same files, arrays equal
    to a relative 1e-5 of their scale, JSON equal but for the content digests (which
    follow the bytes). Heads trained in a process that trained torch models before can
    sum in another order than a fresh Ray worker (differences of ~1e-6 relative)."""
    import io

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if "sha256" not in k
                    and "digest" not in k}
        return [strip(v) for v in obj] if isinstance(obj, list) else obj

    assert set(got) == set(want)
    for name in want:
        if name.endswith(".npy"):
            a, b = np.load(io.BytesIO(got[name])), np.load(io.BytesIO(want[name]))
            assert a.dtype == b.dtype and a.shape == b.shape, name
            scale = float(np.abs(b).max()) if b.size else 0.0
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale, err_msg=name)
        elif name.endswith(".json"):
            assert strip(json.loads(got[name])) == strip(json.loads(want[name])), name
        else:
            assert got[name] == want[name], name


def _n_done(run: Path) -> int:
    try:
        return len(json.loads((run / "manifest.json").read_text())["models"])
    except (OSError, ValueError, KeyError):
        return 0


def test_train_models_on_ray_equals_local(cluster, tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    local = mk.shadow.train_models(factory, (x, y), keep, tmp_path / "local", **KW)
    on_ray = mk.shadow.train_models(factory, (x, y), keep, tmp_path / "ray", executor="ray",
                                    ray_resources={"num_cpus": 1}, **KW)
    assert on_ray.is_complete
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")  # run.json, manifest too
    np.testing.assert_array_equal(on_ray.logits(), local.logits())


def test_train_heads_on_ray_equals_local(cluster, tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)
    x = rng.normal(size=(90, 2, 6)) + y[:, None, None]
    keep = mk.shadow.balanced_keep(6, 90, seed=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as many threads as a task of 1 CPU uses
    try:
        for head in ("linear", "mlp"):
            kw = dict(head=head, hidden=8, heads_per_chunk=2, progress=False)
            if head == "mlp":
                kw["epochs"] = 20
            mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / f"local-{head}", **kw)
            mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / f"ray-{head}",
                                  executor="ray", **kw)
            got, want = _files(tmp_path / f"ray-{head}"), _files(tmp_path / f"local-{head}")
            assert "features.npy" in got and "params/model-00005.npy" in got
            _same_run(got, want)
    finally:
        torch.set_num_threads(threads)


def test_cli_shadow_ray_equals_local(cluster, tmp_path, capsys):
    args = ["shadow", "--dataset", "synthetic", "--n-examples", "120", "--models", "4",
            "--heads-per-chunk", "2", "--hidden", "8", "--epochs", "10", "--threads", "1",
            "--quiet"]
    threads = torch.get_num_threads()
    try:
        assert main([*args, "--out", str(tmp_path / "local")]) == 0
        assert main([*args, "--ray", "--out", str(tmp_path / "ray")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "4/4 models" in capsys.readouterr().out
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def _dies_once(marker: Path):
    """A training function whose first call, in whatever worker, kills its process."""

    def train_once(model, train_set, *, device, generator):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return default_train(model, train_set, device=device, generator=generator,
                                 epochs=3, batch_size=8)
        os.close(fd)
        os._exit(1)  # the worker process dies mid-task, as on a lost node or OOM kill

    return train_once


def test_worker_killed_mid_task_is_retried(cluster, tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    marker = tmp_path / "died"
    run = mk.shadow.train_models(factory, (x, y), keep, tmp_path / "ray",
                                 train_fn=_dies_once(marker), executor="ray", **KW)
    assert marker.exists()  # a worker did die
    assert run.is_complete
    ref = mk.shadow.train_models(factory, (x, y), keep, tmp_path / "local", **KW)
    assert np.asarray(run.logits()).tobytes() == np.asarray(ref.logits()).tobytes()


def test_worker_death_without_retries_stops_cleanly(cluster, tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    marker = tmp_path / "died"
    with pytest.raises(RuntimeError, match="Ray worker.*run the same call again"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "ray",
                               train_fn=_dies_once(marker), executor="ray",
                               ray_resources={"max_retries": 0}, **KW)
    run = mk.shadow.open_run(tmp_path / "ray")  # a valid run, the dead model not in it
    assert len(run.completed) < M
    again = mk.shadow.train_models(factory, (x, y), keep, tmp_path / "ray",
                                   train_fn=_dies_once(marker), executor="ray", **KW)
    assert again.is_complete


def test_training_errors_are_raised_as_themselves(cluster, tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)

    def broken(model, train_set, *, device, generator):
        raise ValueError("lr too large (from the training code)")

    with pytest.raises(ValueError, match="from the training code"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "ray", train_fn=broken,
                               executor="ray", **KW)
    assert mk.shadow.open_run(tmp_path / "ray").completed.tolist() == []


DRIVER = textwrap.dedent("""
    import sys, time, numpy as np, torch, miakit as mk
    from miakit.shadow.train import default_train

    def slow_train(model, train_set, *, device, generator):
        time.sleep(0.15)
        default_train(model, train_set, device=device, generator=generator, epochs=3,
                      batch_size=8)

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    x = rng.normal(size=(60, 1, 3, 3)).astype(np.float32) + y[:, None, None, None]
    factory = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 3))
    keep = mk.shadow.balanced_keep(8, 60, seed=0)
    out, address = sys.argv[1], sys.argv[2]
    kw = dict(train_fn=slow_train, seed=2, progress=False, augmentations=["identity"])
    if address == "local":
        mk.shadow.train_models(factory, (x, y), keep, out, **kw)
    else:
        mk.shadow.train_models(factory, (x, y), keep, out, executor="ray",
                               ray_address=address, **kw)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_driver_resumes_with_the_same_call(cluster, tmp_path, monkeypatch):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "ray"
    cmd = [sys.executable, str(script), str(run), cluster]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _n_done(run) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert 0 < _n_done(run) < 8, proc.stderr.read().decode()[-2000:]  # killed midway
    proc.stderr.close()  # not read when the test passes: a grandchild may still hold it
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # The reference: the same script trained locally, here (its functions are __main__'s).
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "local"), "local"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    assert _files(run) == _files(tmp_path / "local")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_address_that_does_not_answer(tmp_path, monkeypatch, capsys):
    args = ["shadow", "--dataset", "synthetic", "--n-examples", "60", "--models", "4",
            "--hidden", "4", "--epochs", "2", "--quiet", "--out"]
    existing = tmp_path / "run"
    assert main([*args, str(existing)]) == 0
    before = _files(existing)
    # As in a fresh process: a Ray connection this one may hold would be reused.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    address = f"127.0.0.1:{_free_port()}"
    for out in (existing, tmp_path / "new"):
        capsys.readouterr()
        assert main([*args, str(out), "--ray", address]) == 1
        err = capsys.readouterr().err
        assert err.startswith("miakit: error: ") and address in err, err
        assert "nothing answers" in err
    assert _files(existing) == before  # the existing run is untouched
    assert not (tmp_path / "new").exists()  # and no new one was created
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    with pytest.raises(RuntimeError, match=f"Ray address '{address}': nothing answers"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "new", executor="ray",
                               ray_address=address)
    assert not (tmp_path / "new").exists()


def test_functions_the_workers_cannot_load(cluster, tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    module = type(sys)("miakit_test_nowhere")  # a module that exists in this process only
    exec("import torch\ndef factory():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
         "torch.nn.Linear(20, 3))", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        with pytest.raises(RuntimeError, match="could not run the task.*loadable there"):
            mk.shadow.train_models(module.factory, (x, y), keep, tmp_path / "ray",
                                   executor="ray", **KW)
    finally:
        del sys.modules[module.__name__]
    assert mk.shadow.open_run(tmp_path / "ray").completed.tolist() == []


def test_bad_arguments(tmp_path, monkeypatch):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    with pytest.raises(ValueError, match="executor: expected one of"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "a", executor="dask")
    with pytest.raises(ValueError, match="ray_address: expected 'HOST:PORT'"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "a", executor="ray",
                               ray_address="head-node")
    with pytest.raises(ValueError, match="unknown options"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "a", executor="ray",
                               ray_resources={"cpus": 2})
    with pytest.raises(ValueError, match="pass device='cuda'"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "a", executor="ray",
                               device="cuda:1")
    with pytest.raises(ValueError, match="pass run_dir"):
        mk.shadow.train_heads(np.ones((N, 2)), y, keep, executor="ray")
    assert not (tmp_path / "a").exists()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"miakit\[ray\]"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "a", executor="ray")
