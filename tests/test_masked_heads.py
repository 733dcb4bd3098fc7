"""The masked evaluation of many linear heads (``_C.masked_heads_ce``, ``masked_heads_grad``)
against a float64 numpy reference, and the solver's objective with and without it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from miakit import _C
from miakit.shadow import _linear


def make(r, dx, c, m, k, seed=0, density=0.5, stride=None):
    """Random heads on random rows: x [R, Dx] (rows ``stride`` apart if given), panels
    of weights, row lists of every head of the run, labels."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((r, stride or dx)).astype(np.float32)
    x = base[:, :dx]
    dp = (dx + 15) // 16 * 16
    keep = rng.random((m, r)) < density
    counts = keep.sum(1)
    ptr = np.zeros(m + 1, np.int64)
    ptr[1:] = np.cumsum(counts)
    idx = np.nonzero(keep)[1].astype(np.int32)
    val = (rng.random(len(idx)) + 0.5).astype(np.float32) / max(1, r)
    heads = rng.permutation(m)[:k].astype(np.int64)
    wt = np.zeros((k, c - 1, dp), np.float32)
    wt[:, :, :dx] = 0.4 * rng.standard_normal((k, c - 1, dx))
    bias = rng.standard_normal((k, c - 1)).astype(np.float32)
    y = rng.integers(0, c, r).astype(np.int64)
    return dict(x=x, wt=wt, bias=bias, ptr=ptr, idx=idx, val=val, heads=heads, y=y)


def reference(a, c):
    """float64: losses [K], weight gradients [K, C - 1, Dp], bias gradients [K, C], and
    every head's logits on every row [K, R, C]."""
    x = a["x"].astype(np.float64)
    dx = x.shape[1]
    k = len(a["heads"])
    loss, gw = np.zeros(k), np.zeros(a["wt"].shape)
    gb, z_all = np.zeros((k, c)), np.zeros((k, x.shape[0], c))
    for q, h in enumerate(a["heads"]):
        z = np.zeros((x.shape[0], c))
        z[:, :-1] = x @ a["wt"][q, :, :dx].T.astype(np.float64) + a["bias"][q]
        z[:, -1] = -z[:, :-1].sum(1)
        z_all[q] = z
        rows = a["idx"][a["ptr"][h]:a["ptr"][h + 1]]
        w = a["val"][a["ptr"][h]:a["ptr"][h + 1]].astype(np.float64)
        zr, yr = z[rows], a["y"][rows]
        lse = np.log(np.exp(zr - zr.max(1, keepdims=True)).sum(1)) + zr.max(1)
        loss[q] = (w * (lse - zr[np.arange(len(rows)), yr])).sum()
        res = np.exp(zr - lse[:, None])
        res[np.arange(len(rows)), yr] -= 1.0
        res *= w[:, None]
        gb[q] = res.sum(0)
        gw[q, :, :dx] = res[:, :-1].T @ x[rows]
    return loss, gw, gb, z_all


def run(a, c, out=None, out_heads=None):
    k, dp = a["wt"].shape[0], a["wt"].shape[2]
    loss = np.zeros(k)
    gw = np.zeros((k, c - 1, dp), np.float32)
    gb = np.zeros((k, c), np.float32)
    bad = _C.masked_heads_ce(a["x"], a["wt"], a["bias"], a["ptr"], a["idx"], a["val"],
                             a["heads"], a["y"], loss, gw, gb, out, out_heads)
    return loss, gw, gb, bad


SHAPES = [  # rows, features, classes, heads of the run, heads evaluated
    (1, 1, 2, 1, 1),
    (37, 17, 3, 4, 3),
    (1000, 256, 10, 8, 5),
    (513, 33, 12, 6, 6),  # two class tiles (9 + 2)
    (300, 100, 21, 3, 2),
    (700, 48, 2, 9, 9),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_masked_heads_ce_matches_reference(shape):
    r, dx, c, m, k = shape
    a = make(r, dx, c, m, k)
    loss, gw, gb, bad = run(a, c)
    rl, rg, rb, _ = reference(a, c)
    assert bad == 0
    np.testing.assert_allclose(loss, rl, rtol=2e-6, atol=1e-9)
    np.testing.assert_allclose(gw, rg, rtol=1e-5, atol=1e-6 * max(1e-30, np.abs(rg).max()))
    np.testing.assert_allclose(gb, rb, rtol=1e-5, atol=1e-7)
    assert not gw[:, :, dx:].any()  # the padding stays zero


@pytest.mark.parametrize("shape", SHAPES[1:4])
def test_masked_heads_ce_writes_logits_of_every_row(shape):
    r, dx, c, m, k = shape
    a = make(r, dx, c, m, k, seed=1)
    out = np.full((m, r, c), np.nan, np.float32)
    dest = np.arange(k, dtype=np.int64)
    dest[0] = -1  # not written
    loss, gw, gb, _ = run(a, c, out, dest)
    rl, rg, rb, z = reference(a, c)
    np.testing.assert_allclose(out[1:k], z[1:], rtol=1e-5, atol=1e-5)
    assert np.isnan(out[0]).all() and np.isnan(out[k:]).all()
    # writing changes nothing else, to the bit
    l2, g2, b2, _ = run(a, c)
    assert np.array_equal(loss, l2) and np.array_equal(gw, g2) and np.array_equal(gb, b2)


def test_masked_heads_ce_strided_rows_and_bad_labels():
    a = make(200, 30, 5, 3, 3, stride=41)
    assert not a["x"].flags["C_CONTIGUOUS"]
    loss, gw, gb, bad = run(a, 5)
    rl, rg, rb, _ = reference(a, 5)
    np.testing.assert_allclose(gw, rg, rtol=1e-5, atol=1e-7)
    # a label out of range is counted (once per head that trains on it) and left out
    a["y"][a["idx"][0]] = 7
    _, _, _, bad = run(a, 5)
    row = a["idx"][0]
    assert bad == sum(row in a["idx"][a["ptr"][h]:a["ptr"][h + 1]] for h in a["heads"])


def test_masked_heads_ce_same_bits_for_any_thread_count():
    a = make(3000, 64, 10, 16, 16, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(a, 10)
        torch.set_num_threads(2)
        two = run(a, 10)
    finally:
        torch.set_num_threads(before)
    for p, q in zip(one[:3], two[:3]):
        assert np.array_equal(p, q)


def test_masked_heads_grad_matches_reference():
    rng = np.random.default_rng(4)
    for r, dx, c, m in [(1, 1, 2, 1), (333, 45, 11, 5), (2000, 256, 10, 8)]:
        a = make(r, dx, c, m, m, seed=r)
        res = rng.standard_normal((r, c - 1)).astype(np.float32)
        gw = np.zeros((m, c - 1, a["wt"].shape[2]), np.float32)
        _C.masked_heads_grad(a["x"], res, a["ptr"], a["idx"], a["val"], a["heads"], gw)
        for q, h in enumerate(a["heads"]):
            rows = a["idx"][a["ptr"][h]:a["ptr"][h + 1]]
            w = a["val"][a["ptr"][h]:a["ptr"][h + 1]].astype(np.float64)
            ref = (res[rows] * w[:, None]).T.astype(np.float64) @ a["x"][rows].astype(np.float64)
            np.testing.assert_allclose(gw[q, :, :dx], ref, rtol=1e-5,
                                       atol=1e-6 * max(1e-30, np.abs(ref).max()))


def test_generic_kernel_matches_reference():
    """The portable kernels (chosen where the CPU has no AVX-512) give the same values."""
    code = f"""
        import numpy as np, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_masked_heads import make, run, reference
        from miakit import _C
        assert _C.masked_heads_ce_kernel() == "generic"
        for shape in [(37, 17, 3, 4, 3), (513, 33, 12, 6, 6)]:
            a = make(*shape)
            loss, gw, gb, bad = run(a, shape[2])
            rl, rg, rb, _ = reference(a, shape[2])
            np.testing.assert_allclose(loss, rl, rtol=2e-6)
            np.testing.assert_allclose(gw, rg, rtol=1e-5, atol=1e-6 * np.abs(rg).max())
            np.testing.assert_allclose(gb, rb, rtol=1e-5, atol=1e-7)
        print("ok")
    """
    env = dict(os.environ, MIAKIT_CPU_KERNEL="generic",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_masked_heads_ce_rejects_bad_arguments():
    a = make(50, 20, 4, 3, 2)

    def call(**kw):
        b = dict(a, **kw)
        return run(b, 4)

    with pytest.raises(ValueError, match="x: expected float32"):
        call(x=a["x"].astype(np.float16))
    with pytest.raises(ValueError, match="wt must be"):
        call(wt=np.zeros((2, 3, 20), np.float32))
    with pytest.raises(ValueError, match="rows of head 0 must increase"):
        idx = a["idx"].copy()
        idx[0] = 50
        call(idx=idx)
    with pytest.raises(ValueError, match=r"heads\[1\] = 3 is not one of the 3 heads"):
        call(heads=np.array([0, 3], np.int64))
    with pytest.raises(ValueError, match="ptr must run from 0"):
        call(ptr=a["ptr"][:-1])
    with pytest.raises(ValueError, match="out and out_heads go together"):
        run(a, 4, out=np.zeros((3, 50, 4), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        run(a, 4, out=np.zeros((3, 50, 5), np.float32), out_heads=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="res"):
        _C.masked_heads_grad(a["x"], np.zeros((50, 2), np.float32), a["ptr"], a["idx"],
                             a["val"], a["heads"], np.zeros((2, 3, 32), np.float32))


@pytest.mark.parametrize("shape", [(1, 3, 2, 1), (211, 19, 7, 6), (1500, 64, 10, 9)])
def test_objective_masked_equals_dense(shape):
    """The solver's objective gives the same loss and gradient either way, at a shared
    point and at per-head points, with and without writing logits."""
    r, d, c, m = shape
    g = torch.Generator().manual_seed(r)
    x = torch.randn(r, d, generator=g)
    y = torch.randint(0, c, (r,), generator=g)
    keep = (torch.rand(r, m, generator=g) < 0.5).float()
    keep[0] = 1.0
    w = keep / keep.sum(0)
    lam = torch.full((d,), 1e-3)
    sub = torch.arange(min(r, 32))
    ids = torch.arange(m)
    objs = [_linear.SoftmaxObjective(x, y, w, lam, c, sub, masked=flag) for flag in (True, False)]
    shared = (0.2 * torch.randn(d + 1, c, 1, generator=g)).expand(-1, -1, m).contiguous()
    own = 0.2 * torch.randn(d + 1, c, m, generator=g)
    (l1, g1), (l2, g2) = (o.at_shared_point(shared, ids) for o in objs)
    torch.testing.assert_close(l1, l2, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)
    (l1, g1), (l2, g2) = (o(own, ids) for o in objs)
    torch.testing.assert_close(l1, l2, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)
    # one head's logits written (the masked kernel runs), the others' not
    outs = [torch.full((m, r, c), float("nan")) for _ in objs]
    dest = torch.full((m,), -1, dtype=torch.int64)
    dest[-1] = m - 1
    for o, out in zip(objs, outs):
        o(own, ids, out=out, out_heads=dest)
    torch.testing.assert_close(outs[0][-1], outs[1][-1], rtol=1e-5, atol=1e-5)
    assert torch.isnan(outs[0][:-1]).all()


def test_objective_picks_masked_for_sparse_row_weights_on_cpu():
    x, y = torch.randn(100, 8), torch.randint(0, 3, (100,))
    lam, sub = torch.full((8,), 1e-3), torch.arange(16)
    half = torch.zeros(100, 4)
    half[::2] = 1.0 / 50
    full = torch.full((100, 1), 0.01)
    sparse = _linear.SoftmaxObjective(x, y, half, lam, 3, sub)
    dense = _linear.SoftmaxObjective(x, y, full, lam, 3, sub)
    assert dense._rows is None
    assert (sparse._rows is not None) == (_C.masked_heads_ce_kernel() == "avx512")
    forced = _linear.SoftmaxObjective(x, y, full, lam, 3, sub, masked=True)
    ptr, idx, val = forced._rows
    assert ptr.tolist() == [0, 100] and idx.tolist() == list(range(100))
    np.testing.assert_array_equal(val, np.full(100, 0.01, np.float32))
