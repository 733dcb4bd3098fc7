"""train_models: any torch model, per-model seeding, query augmentations, resuming."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import miakit as mk

N, M = 48, 4


def _images(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, N)
    x = rng.normal(size=(N, 1, 4, 5)).astype(np.float32)
    x[:, 0, :, 0] += y[:, None]  # class signal in the left column: a flip moves it
    return x, y


def factory():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(20, 8), torch.nn.ReLU(),
                               torch.nn.Dropout(0.1), torch.nn.Linear(8, 3))


def test_logits_shape_augmentations_and_learning(tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    run = mk.shadow.train_models(factory, (x, y), keep, tmp_path / "run", epochs=40,
                                 batch_size=8, lr=1e-2, seed=1, progress=False,
                                 metadata={"dataset": "toy"})
    z = run.logits()
    assert z.shape == (M, N, 2, 3) and run.is_complete
    assert run.config["augmentations"] == ["identity", "hflip"]
    assert run.meta["metadata"] == {"dataset": "toy"}
    acc_train = (z[:, :, 0].argmax(-1) == y)[keep].mean()
    assert acc_train > 0.9
    assert not np.allclose(z[:, :, 0], z[:, :, 1])  # the flipped view is a different query


def test_models_do_not_depend_on_global_rng(tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 - global state is the point
    kw = dict(epochs=5, batch_size=8, seed=3, progress=False, augmentations=["identity"])
    a = mk.shadow.train_models(factory, (x, y), keep, tmp_path / "a", **kw)
    assert torch.equal(torch.get_rng_state(), state)  # caller's RNG untouched
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    torch.manual_seed(12345)  # a different global state must not matter
    np.random.seed(7)  # noqa: NPY002
    again = mk.shadow.train_models(factory, (x, y), keep, tmp_path / "c", **kw)
    assert np.asarray(again.logits()).tobytes() == np.asarray(a.logits()).tobytes()
    other_seed = mk.shadow.train_models(factory, (x, y), keep, tmp_path / "d",
                                        **{**kw, "seed": 4})
    assert not np.allclose(other_seed.logits(), a.logits())


def test_user_train_fn_and_dataset_object(tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    seen = []

    def train_fn(model, train_set, *, device, generator):
        seen.append(len(train_set))
        assert isinstance(generator, torch.Generator) and device.type == "cpu"
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = torch.utils.data.DataLoader(train_set, batch_size=8, shuffle=True,
                                             generator=generator)
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        return model

    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    run = mk.shadow.train_models(factory, data, keep, tmp_path / "run", train_fn=train_fn,
                                 augmentations=["identity", lambda b: b * 0.5],
                                 progress=False, config={"version": 2})
    assert seen == keep.sum(1).tolist()
    assert run.logits().shape == (M, N, 2, 3)
    assert run.config["train_fn"].endswith("train_fn") and run.config["user"] == {"version": 2}


def test_resume_after_a_failure(tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    calls = {"n": 0, "fail_at": 3}

    def flaky():
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise RuntimeError("out of memory (simulated)")
        return factory()

    kw = dict(epochs=3, batch_size=8, seed=0, progress=False)
    with pytest.raises(RuntimeError, match="simulated"):
        mk.shadow.train_models(flaky, (x, y), keep, tmp_path / "run", n_classes=3, **kw)
    assert mk.shadow.open_run(tmp_path / "run").completed.tolist() == [0, 1]
    calls["fail_at"] = -1
    run = mk.shadow.train_models(flaky, (x, y), keep, tmp_path / "run", n_classes=3, **kw)
    ref = mk.shadow.train_models(flaky, (x, y), keep, tmp_path / "ref", n_classes=3, **kw)
    assert np.asarray(run.logits()).tobytes() == np.asarray(ref.logits()).tobytes()


def test_bad_inputs(tmp_path):
    x, y = _images()
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    with pytest.raises(ValueError, match="unknown name 'vflip'"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "a", augmentations=["vflip"])
    bad = x.copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        mk.shadow.train_models(factory, (bad, y), keep, tmp_path / "a")
    with pytest.raises(ValueError, match="even number of models"):
        mk.shadow.train_models(factory, (x, y), keep[:3], tmp_path / "a")
    with pytest.raises(ValueError, match="expected 48 columns"):
        mk.shadow.train_models(factory, (x, y), keep[:, :-1], tmp_path / "a")
    with pytest.raises(TypeError, match="integer"):
        mk.shadow.train_models(factory, (x, y + 0.5), keep, tmp_path / "a")
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        mk.shadow.train_models(factory, (x, np.r_[y[:-1], 7]), keep, tmp_path / "a")
    with pytest.raises(ValueError, match="epochs"):
        mk.shadow.train_models(factory, (x, y), keep, tmp_path / "a", epochs=0)
    assert not (tmp_path / "a").exists()


def test_import_and_run_store_without_torch(tmp_path):
    """miakit imports, and runs can be read and written, without torch installed."""
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "tqdm", "matplotlib"):
                    raise ImportError("blocked " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np, miakit as mk
        run = mk.shadow.create_run({str(tmp_path / "r")!r}, mk.shadow.balanced_keep(2, 3),
                                   np.array([0, 1, 0]), n_augmentations=1, n_classes=2)
        run.write_model(0, np.zeros((3, 1, 2), np.float32))
        try:
            mk.shadow.train_heads(np.zeros((3, 2)), np.array([0, 1, 0]),
                                  mk.shadow.balanced_keep(2, 3))
        except ImportError as exc:
            print("torch" in sys.modules, exc)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("False training shadow models needs PyTorch")
