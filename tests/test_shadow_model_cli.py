"""``miakit shadow --model MODULE:FUNCTION --data DATA``: the user's own torch architecture
trained as shadow models from the command line, equal to the same run through
``mk.shadow.train_models``, with a user's training loop (``--train-fn``), clear errors
for bad specs, and a killed run that resumes to the uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import miakit as mk
from miakit.cli import main
from miakit.io import KILL_ENV

MODULE = "shadow_cli_user_models"
SOURCE = textwrap.dedent("""
    import torch

    def make_model():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8),
                                   torch.nn.ReLU(), torch.nn.Linear(8, 3))

    def fit(model, x, y, seed):
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        for _ in range(3):
            for idx in torch.randperm(len(y), generator=gen).split(8):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
        return model

    not_callable = 3
""")
N = 40


@pytest.fixture()
def user(tmp_path, monkeypatch):
    """The user's package (a module in tmp_path, importable) and data.npz; the module's
    functions and the arrays."""
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, N)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    import importlib

    mod = importlib.import_module(MODULE)
    yield mod, x, y, tmp_path
    sys.modules.pop(MODULE, None)


def _cli(tmp_path: Path, out: str, *extra: str) -> int:
    return main(["shadow", "--out", str(tmp_path / out), "--model", f"{MODULE}:make_model",
                 "--data", str(tmp_path / "data.npz"), "--models", "4", "--epochs", "2",
                 "--batch-size", "8", "--seed", "3", "--quiet", *extra])


def test_cli_run_equals_the_api_run(user):
    mod, x, y, tmp = user
    assert _cli(tmp, "cli", "--augment", "flip,crop") == 0
    keep = mk.shadow.balanced_keep(4, N, seed=3)
    api = mk.shadow.train_models(mod.make_model, (x, y), keep, tmp / "api", epochs=2,
                                 batch_size=8, seed=3, train_augment=("flip", "crop"),
                                 progress=False)
    cli = mk.shadow.open_run(tmp / "cli")
    assert cli.is_complete and cli.model_shape == (N, 2, 3)  # images: identity and hflip
    np.testing.assert_array_equal(cli.keep, keep)
    np.testing.assert_array_equal(cli.logits(), api.logits())
    assert cli.meta["metadata"]["model"] == f"{MODULE}:make_model"
    # the same experiment: the API call resumes the command's run (nothing to train)
    again = mk.shadow.train_models(mod.make_model, (x, y), keep, tmp / "cli", epochs=2,
                                   batch_size=8, seed=3, train_augment=("flip", "crop"),
                                   progress=False)
    assert again.is_complete
    # and augmentation changes the models
    assert _cli(tmp, "plain") == 0
    assert not np.array_equal(mk.shadow.open_run(tmp / "plain").logits(), cli.logits())


def test_train_fn_run_equals_the_api_run(user):
    mod, x, y, tmp = user
    assert _cli(tmp, "cli", "--train-fn", f"{MODULE}:fit", "--views", "identity") == 0
    api = mk.shadow.train_models(mod.make_model, (x, y), mk.shadow.balanced_keep(4, N, seed=3),
                                 tmp / "api", train_fn=mk.shadow.array_train_fn(mod.fit),
                                 augmentations=["identity"], seed=3, progress=False)
    cli = mk.shadow.open_run(tmp / "cli")
    np.testing.assert_array_equal(cli.logits(), api.logits())
    assert cli.config["train_fn"] == f"miakit.shadow.train.array_train_fn({MODULE}.fit)"
    # trained: the models fit their own halves better than the other halves
    z, keep = cli.logits()[:, :, 0], cli.keep
    right = z.argmax(-1) == y
    assert right[keep].mean() > right[~keep].mean()


@pytest.mark.parametrize("argv, message", [
    (["--model", "no_such_module_xyz:make_model"],
     "--model: cannot import module 'no_such_module_xyz'"),
    (["--model", f"{MODULE}:missing"], f"--model: module '{MODULE}' has no attribute"),
    (["--model", f"{MODULE}:not_callable"], "--model: "),
    (["--model", "make_model"], "--model: expected MODULE:FUNCTION"),
    (["--model", f"{MODULE}:make_model", "--train-fn", f"{MODULE}:nope"],
     "--train-fn: module"),
    (["--model", f"{MODULE}:make_model"], "--model: needs --data"),
    (["--data", "DATA"], "--data: needs --model"),
    (["--augment", "flip"], "--augment: needs --model"),
    (["--model", f"{MODULE}:make_model", "--data", "DATA", "--head", "linear"],
     "--head: applies to the default run only"),
    (["--model", f"{MODULE}:make_model", "--data", "DATA", "--augment", "rotate"],
     "--augment: expected comma-separated names"),
    (["--model", f"{MODULE}:make_model", "--data", "missing.npz"],
     "--data: no such file or folder"),
])
def test_bad_options_are_one_line_errors_naming_the_flag(user, capsys, argv, message):
    tmp = user[3]
    if "--data" not in argv and argv[0] == "--model" and message != "--model: needs --data":
        argv = [*argv, "--data", "DATA"]
    argv = [str(tmp / "data.npz") if a == "DATA" else str(tmp / a) if a.endswith(".npz")
            else a for a in argv]
    assert main(["shadow", "--out", str(tmp / "run"), "--models", "4", "--quiet",
                 *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"miakit: error: {message}"), err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp / "run").exists()  # refused before the run directory is touched


def test_data_errors_name_the_flag(user):
    tmp = user[3]
    np.savez(tmp / "ints.npz", x=np.zeros((4, 2), np.uint8), y=np.zeros(4, int))
    np.savez(tmp / "no_y.npz", x=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="--data: x must hold floating-point"):
        mk.shadow.model_run.load_data(tmp / "ints.npz")
    with pytest.raises(ValueError, match="--data: .* has no array 'y'"):
        mk.shadow.model_run.load_data(tmp / "no_y.npz")


def test_image_folder_data(user, monkeypatch):
    tmp = user[3]
    folder = tmp / "images"
    folder.mkdir()
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(builtins, "__import__", no_torchvision)
        with pytest.raises(ImportError, match="--data: .* torchvision"):
            mk.shadow.model_run.load_data(folder)
    pytest.importorskip("torchvision")
    from PIL import Image

    for c in ("cat", "dog"):
        (folder / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((4, 4, 3), 40 * i, np.uint8)).save(folder / c / f"{i}.png")
    x, y = mk.shadow.model_run.load_data(folder)
    assert x.shape == (6, 3, 4, 4) and x.dtype == np.float32 and y.tolist() == [0] * 3 + [1] * 3


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_run_resumes_to_the_uninterrupted_one(user):
    tmp = user[3]
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV} | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp), *(p for p in sys.path if p)])}

    def run(out: str, kill_at: str | None = None) -> int:
        cmd = [sys.executable, "-m", "miakit", "shadow", "--out", str(tmp / out), "--model",
               f"{MODULE}:make_model", "--data", str(tmp / "data.npz"), "--models", "4",
               "--epochs", "1", "--threads", "1", "--quiet"]
        res = subprocess.run(cmd, env=env if kill_at is None else {**env, KILL_ENV: kill_at},
                             capture_output=True, text=True, timeout=600)
        return res.returncode

    assert run("whole") == 0
    assert run("killed", kill_at="model-1:files") == -signal.SIGKILL
    killed = mk.shadow.open_run(tmp / "killed")
    assert killed.completed.tolist() == [0]  # model 1's files written, not yet listed
    assert run("killed") == 0
    whole, resumed = mk.shadow.open_run(tmp / "whole"), mk.shadow.open_run(tmp / "killed")
    assert resumed.is_complete
    for m in range(4):
        assert resumed.model_path(m).read_bytes() == whole.model_path(m).read_bytes()
    assert (tmp / "killed" / "manifest.json").read_bytes() == \
        (tmp / "whole" / "manifest.json").read_bytes()


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "docs").is_dir(), reason="docs/ is not beside the tests")
def test_docs_options_table_is_the_declaration():
    from miakit._params import table

    assert table(mk.shadow.ModelRunConfig) in (ROOT / "docs/guide/torch.md").read_text(), (
        "docs/guide/torch.md: the options table of ModelRunConfig is stale; paste "
        "miakit._params.table(ModelRunConfig)")


def test_shadow_defaults_without_model_are_the_default_run():
    from miakit.cli import build_parser
    from miakit.cli._options import config_from

    args = build_parser().parse_args(["shadow", "--out", "r"])
    assert config_from(args, mk.shadow.TrainingConfig) == mk.shadow.TrainingConfig()
    spec = {"model": "m:f", "data": "d.npz"}
    assert config_from(args, mk.shadow.ModelRunConfig, **spec) == \
        mk.shadow.ModelRunConfig(**spec)
    args = build_parser().parse_args(["shadow", "--out", "r", "--epochs", "7"])
    assert config_from(args, mk.shadow.ModelRunConfig, **spec).epochs == 7
