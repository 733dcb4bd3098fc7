"""Batched head training against plain per-head reference loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import optimize

import miakit as mk
from miakit.shadow.heads import batch_rows, initial_params, minibatch_plan


def _data(n=90, d=6, c=3, a=1, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    centers = rng.normal(size=(c, d)) * 1.5
    x = centers[y][:, None, :] + rng.normal(size=(n, a, d))
    return x.astype(np.float32), y


def _centred(z):
    # Softmax ignores a common shift of a row's logits (the unpenalised bias can move
    # along it), so compare logits up to that shift.
    return z - z.mean(-1, keepdims=True)


def _reference_logreg(x, y, rows, wd, c):
    """Head objective in float64 with scipy: mean CE over ``rows`` + wd/2 ||W||^2."""
    xr, yr = x[rows].astype(np.float64), y[rows]
    n, d = xr.shape
    onehot = np.eye(c)[yr]

    def f(theta):
        w, b = theta[: d * c].reshape(d, c), theta[d * c:]
        z = xr @ w + b
        z = z - z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        p = np.exp(z - lse[:, None])
        loss = (lse - (z * onehot).sum(1)).mean() + 0.5 * wd * (w * w).sum()
        g = (p - onehot) / n
        return loss, np.r_[(xr.T @ g + wd * w).ravel(), g.sum(0)]

    res = optimize.minimize(f, np.zeros(d * c + c), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10000})
    return res.x[: d * c].reshape(d, c), res.x[d * c:]


@pytest.mark.parametrize("standardised", [False, True])
def test_linear_lbfgs_matches_float64_reference(standardised):
    x, y = _data()
    if standardised:  # the solver then works on the caller's rows, without a copy
        x = ((x - x.mean((0, 1))) / x.std()).astype(np.float32)
    # the problem this tolerance was set on (independent halves, not complementary pairs)
    keep = mk.shadow.balanced_keep(4, len(y), seed=3, paired=False)
    wd = 1e-2
    z, info = mk.shadow.train_heads(x, y, keep, weight_decay=wd, tol=1e-6, seed=0,
                                    return_info=True)
    assert z.shape == (4, 90, 1, 3) and z.dtype == np.float32
    assert info["converged"].all() and (info["grad_max"] <= 1e-6).all()
    for m in range(4):
        w, b = _reference_logreg(x[:, 0], y, keep[m], wd, 3)
        np.testing.assert_allclose(_centred(z[m, :, 0]), _centred(x[:, 0] @ w + b), atol=5e-4)
    # the parameters returned give the logits returned, in the caller's coordinates,
    # and are centred over the classes (the optimum's weights are; the biases' common
    # shift is fixed at zero)
    p = info["params"]
    np.testing.assert_allclose(np.einsum("nd,kcd->knc", x[:, 0], p["weight"]) +
                               p["bias"][:, None], z[:, :, 0], atol=1e-4)
    assert np.abs(p["weight"].sum(1)).max() < 1e-5 and np.abs(p["bias"].sum(1)).max() < 1e-5


def test_linear_warm_start_does_not_change_the_solution():
    x, y = _data(n=120, seed=1)
    keep = mk.shadow.balanced_keep(6, 120, seed=0)
    warm = mk.shadow.train_heads(x, y, keep, weight_decay=1e-2, tol=1e-6, warm_start=True)
    cold = mk.shadow.train_heads(x, y, keep, weight_decay=1e-2, tol=1e-6, warm_start=False)
    np.testing.assert_allclose(_centred(warm), _centred(cold), atol=1e-3)


def test_linear_handles_offset_and_badly_scaled_features():
    x, y = _data(n=150, d=5, seed=2)
    scaled = x * np.array([1e-2, 1e-1, 1, 10, 100], np.float32) + 50.0
    keep = mk.shadow.balanced_keep(4, 150, seed=0)
    z, info = mk.shadow.train_heads(scaled, y, keep, weight_decay=1e-3, tol=1e-5,
                                    return_info=True)
    assert info["converged"].all()
    w, b = _reference_logreg(scaled[:, 0], y, keep[1], 1e-3, 3)
    ref = scaled[:, 0].astype(np.float64) @ w + b
    np.testing.assert_allclose(_centred(z[1, :, 0]), _centred(ref), atol=2e-2 * np.abs(ref).max())


def _reference_mlp(x_rows, y_rows, rows, params, epochs, lr, wd, batches=None):
    """A plain torch loop for one head: nn.Linear layers, torch.optim.Adam."""
    d, h = params["w1"].shape
    c = params["w2"].shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, c))
    with torch.no_grad():
        net[0].weight.copy_(params["w1"].T)
        net[0].bias.copy_(params["b1"])
        net[2].weight.copy_(params["w2"].T)
        net[2].bias.copy_(params["b2"])
    opt = torch.optim.Adam([{"params": [net[0].weight, net[2].weight], "weight_decay": wd},
                            {"params": [net[0].bias, net[2].bias], "weight_decay": 0.0}],
                           lr=lr)
    xt, yt = torch.from_numpy(x_rows), torch.from_numpy(y_rows)
    steps = batches if batches is not None else [rows] * epochs
    for idx in steps:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
        opt.step()
    with torch.no_grad():
        return net(xt).numpy()


@pytest.mark.parametrize("a", [1, 2])
def test_mlp_full_batch_matches_plain_torch_loop(a):
    x, y = _data(n=60, d=5, c=3, a=a)
    keep = mk.shadow.balanced_keep(4, 60, seed=1)
    z = mk.shadow.train_heads(x, y, keep, head="mlp", hidden=7, epochs=25, lr=1e-2,
                              weight_decay=1e-3, seed=5)
    assert z.shape == (4, 60, a, 3)
    x_rows, y_rows = x.reshape(60 * a, 5), np.repeat(y, a)
    for m in (0, 3):
        rows = np.flatnonzero(np.repeat(keep[m], a))  # every view of the head's examples
        ref = _reference_mlp(x_rows, y_rows, rows, initial_params("mlp", 5, 3, 7, 5, m),
                             epochs=25, lr=1e-2, wd=1e-3)
        np.testing.assert_allclose(z[m].reshape(60 * a, 3), ref, atol=2e-4, rtol=1e-4)


def test_mlp_minibatches_match_plain_torch_loop():
    x, y = _data(n=50, d=4, c=3)
    keep = mk.shadow.balanced_keep(4, 50, seed=2)
    z = mk.shadow.train_heads(x, y, keep, head="mlp", hidden=6, epochs=3, lr=5e-3,
                              batch_size=8, weight_decay=0.0, seed=9)
    b, steps = minibatch_plan(keep.sum(1), 8, 3)
    for m in (1, 2):
        plan = batch_rows(np.flatnonzero(keep[m]), b, steps, 9, m)
        ref = _reference_mlp(x[:, 0], y, None, initial_params("mlp", 4, 3, 6, 9, m),
                             epochs=3, lr=5e-3, wd=0.0, batches=list(plan))
        np.testing.assert_allclose(z[m, :, 0], ref, atol=2e-4, rtol=1e-4)


def test_batch_rows_covers_each_epoch():
    rows = np.arange(10, 20)
    plan = batch_rows(rows, 5, 6, seed=0, model=3)
    assert plan.shape == (6, 5)
    for e in range(3):  # 2 steps per epoch: every row exactly once
        assert sorted(plan[2 * e: 2 * e + 2].ravel().tolist()) == rows.tolist()
    np.testing.assert_array_equal(plan, batch_rows(rows, 5, 6, seed=0, model=3))
    assert not np.array_equal(plan, batch_rows(rows, 5, 6, seed=0, model=4))


def test_linear_adam_path_and_sgd_run():
    x, y = _data()
    keep = mk.shadow.balanced_keep(2, len(y), seed=0)
    for opt in ("adam", "sgd"):
        z = mk.shadow.train_heads(x, y, keep, optimizer=opt, epochs=30, lr=0.05)
        acc = (z[:, :, 0].argmax(-1) == y).mean()
        assert acc > 0.8, (opt, acc)


def test_same_seed_same_bytes_and_chunking_only_rounds():
    x, y = _data(n=70, a=2)
    keep = mk.shadow.balanced_keep(6, 70, seed=0)
    kw = dict(head="mlp", hidden=5, epochs=20, lr=1e-2, seed=3)
    a = mk.shadow.train_heads(x, y, keep, heads_per_chunk=4, **kw)
    b = mk.shadow.train_heads(x, y, keep, heads_per_chunk=4, **kw)
    assert a.tobytes() == b.tobytes()
    c = mk.shadow.train_heads(x, y, keep, heads_per_chunk=2, **kw)
    np.testing.assert_allclose(a, c, atol=1e-5)
    d = mk.shadow.train_heads(x, y, keep, heads_per_chunk=4, **{**kw, "seed": 4})
    assert not np.allclose(a, d)


def test_run_dir_gives_the_same_logits(tmp_path):
    x, y = _data(n=40)
    keep = mk.shadow.balanced_keep(4, 40, seed=0)
    kw = dict(head="mlp", hidden=4, epochs=10, lr=1e-2, heads_per_chunk=2)
    mem = mk.shadow.train_heads(x, y, keep, **kw)
    disk = mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", metadata={"d": 1},
                                 **kw)
    assert not isinstance(disk, np.memmap)  # read back into memory, no copy in the run
    assert np.asarray(disk).tobytes() == mem.tobytes()
    run = mk.shadow.open_run(tmp_path / "run")
    assert run.config["head"] == "mlp" and run.meta["metadata"] == {"d": 1}
    again = mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", **kw)  # no-op
    assert np.asarray(again).tobytes() == mem.tobytes()
    with pytest.raises(mk.shadow.RunMismatchError, match="epochs=10 in the run, 11 now"):
        mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", **{**kw, "epochs": 11})
    with pytest.raises(mk.shadow.RunMismatchError, match="training data"):
        mk.shadow.train_heads(x + 1, y, keep, run_dir=tmp_path / "run", **kw)


def test_float16_logits():
    x, y = _data(n=30)
    keep = mk.shadow.balanced_keep(2, 30, seed=0)
    z = mk.shadow.train_heads(x, y, keep, logits_dtype="float16")
    assert z.dtype == np.float16


def test_bad_inputs_are_named():
    x, y = _data(n=20)
    keep = mk.shadow.balanced_keep(2, 20, seed=0)
    bad = x.copy()
    bad[7, 0, 2] = np.nan
    with pytest.raises(ValueError, match="features: expected finite.*example 7"):
        mk.shadow.train_heads(bad, y, keep)
    with pytest.raises(TypeError, match="labels: expected integer"):
        mk.shadow.train_heads(x, y.astype(float), keep)
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 3\)"):
        mk.shadow.train_heads(x, np.r_[y[:-1], 3], keep, n_classes=3)
    with pytest.raises(ValueError, match="labels: expected class indices"):
        mk.shadow.train_heads(x, np.r_[y[:-1], -1], keep)
    with pytest.raises(ValueError, match="even number of models"):
        mk.shadow.train_heads(x, y, np.ones((3, 20), bool))
    with pytest.raises(ValueError, match="expected 20 columns"):
        mk.shadow.train_heads(x, y, np.ones((2, 21), bool))
    with pytest.raises(ValueError, match="no training example"):
        mk.shadow.train_heads(x, y, np.r_[np.ones((1, 20), bool), np.zeros((1, 20), bool)])
    with pytest.raises(ValueError, match="linear heads on full batches"):
        mk.shadow.train_heads(x, y, keep, head="mlp", optimizer="lbfgs")
    with pytest.raises(ValueError, match="head: expected one of"):
        mk.shadow.train_heads(x, y, keep, head="cnn")
    with pytest.raises(ValueError, match="features: expected a non-empty"):
        mk.shadow.train_heads(x[:, :, :, None], y, keep)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_request_without_gpu_is_a_clear_error():
    x, y = _data(n=10)
    keep = mk.shadow.balanced_keep(2, 10, seed=0)
    with pytest.raises(RuntimeError, match="no usable CUDA GPU"):
        mk.shadow.train_heads(x, y, keep, device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    x, y = _data(n=200, d=8, a=2)
    keep = mk.shadow.balanced_keep(8, 200, seed=0)
    for kw in (dict(head="linear", weight_decay=1e-2, tol=1e-6),
               dict(head="mlp", hidden=16, epochs=30, lr=1e-2)):
        cpu = mk.shadow.train_heads(x, y, keep, device="cpu", **kw)
        gpu = mk.shadow.train_heads(x, y, keep, device="cuda", **kw)
        np.testing.assert_allclose(gpu, cpu, atol=2e-3, rtol=1e-3)
