"""Memorization and influence (docs/methods/memorization.md) against float64 loop references."""

from __future__ import annotations

import numpy as np
import pytest

import miakit as mk

torch = pytest.importorskip("torch")


def fz_loop(correct, keep):
    c = np.asarray(correct, dtype=np.float64)
    k = np.asarray(keep, dtype=bool)
    out = np.empty(c.shape[1])
    for n in range(c.shape[1]):
        out[n] = c[k[:, n], n].mean() - c[~k[:, n], n].mean()
    return out


def infl_loop(keep, c):
    k = np.asarray(keep, dtype=bool)
    c = np.asarray(c, dtype=np.float64)
    out = np.empty((k.shape[1], c.shape[1]))
    for i in range(k.shape[1]):
        out[i] = c[k[:, i]].mean(0) - c[~k[:, i]].mean(0)
    return out


def infl_matrix(keep, c):
    """Dense float64 reference: two masked matrix products."""
    k = np.asarray(keep, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    n_in = k.sum(0)[:, None]
    return (k.T @ c) / n_in - ((1 - k).T @ c) / (k.shape[0] - n_in)


def topk_ref(infl, k):
    """Per test column: (values, indices) sorted by value descending, index ascending."""
    n, t = infl.shape
    idx = np.empty((t, k), np.int64)
    for j in range(t):
        order = np.lexsort((np.arange(n), -infl[:, j]))
        idx[j] = order[:k]
    return np.take_along_axis(infl.T, idx, 1), idx


def make_keep(rng, m, n, frac=0.5):
    keep = rng.random((m, n)) < frac
    keep[0] = True  # every example gets an IN and an OUT model
    keep[1] = False
    return keep


# ---------------------------------------------------------------- memorization


@pytest.mark.parametrize("m,n", [(2, 1), (5, 7), (33, 301), (64, 5000)])
def test_feldman_zhang_matches_loop(m, n):
    rng = np.random.default_rng(m * 1000 + n)
    keep = make_keep(rng, m, n)
    correct = rng.random((m, n)) < 0.7
    got = mk.memorization.feldman_zhang(correct, keep)
    assert got.dtype == np.float64 and got.shape == (n,)
    np.testing.assert_allclose(got, fz_loop(correct, keep), rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.uint8])
def test_feldman_zhang_dtypes_and_noncontiguous(dtype):
    rng = np.random.default_rng(1)
    keep = make_keep(rng, 12, 41)
    correct = (rng.random((41, 12)) < 0.6).astype(dtype).T  # a transposed view
    assert not correct.flags.c_contiguous
    got = mk.memorization.feldman_zhang(correct, keep[:, ::-1][:, ::-1])
    np.testing.assert_allclose(got, fz_loop(correct, keep), atol=1e-15)


def test_feldman_zhang_prob_signal_float16():
    rng = np.random.default_rng(2)
    keep = make_keep(rng, 9, 23)
    prob = rng.random((9, 23)).astype(np.float16)
    got = mk.memorization.feldman_zhang(prob, keep, signal="prob")
    np.testing.assert_allclose(got, fz_loop(prob.astype(np.float64), keep), atol=1e-12)


def test_feldman_zhang_from_logits():
    rng = np.random.default_rng(3)
    keep = make_keep(rng, 8, 30)
    logits = rng.normal(size=(8, 30, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 30)
    got = mk.memorization.feldman_zhang(logits, keep, labels=labels)
    correct = logits.argmax(-1) == labels
    np.testing.assert_allclose(got, fz_loop(correct, keep), atol=1e-15)
    p = np.exp(logits.astype(np.float64))
    p = (p / p.sum(-1, keepdims=True))[:, np.arange(30), labels]
    got = mk.memorization.feldman_zhang(logits, keep, "prob", labels=labels)
    np.testing.assert_allclose(got, fz_loop(p, keep), atol=1e-6)


def test_feldman_zhang_torch_in_torch_out():
    rng = np.random.default_rng(4)
    keep = make_keep(rng, 6, 10)
    correct = rng.random((6, 10)) < 0.5
    got = mk.memorization.feldman_zhang(torch.from_numpy(correct), torch.from_numpy(keep))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), fz_loop(correct, keep), atol=1e-15)


def test_feldman_zhang_empty_sides():
    keep = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 0, 0]], dtype=bool)
    correct = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"1 examples have no IN model.*1 examples have no OUT"):
        mk.memorization.feldman_zhang(correct, keep)
    got = mk.memorization.feldman_zhang(correct, keep, on_empty="nan")
    assert np.isnan(got[0]) and np.isnan(got[2])
    np.testing.assert_array_equal(got[[1, 3]], [0.0, 0.0])


@pytest.mark.parametrize(
    "correct,keep,kwargs,exc,match",
    [
        (np.ones(4), np.ones(4, bool), {}, ValueError, r"correct: expected a 2-D array"),
        (np.ones((3, 4)), np.ones((3, 5), bool), {}, ValueError, r"keep: expected shape \(3, 4\)"),
        (np.ones((2, 3)) * 0.5, np.eye(2, 3, dtype=bool), {}, ValueError,
         r"signal='correct' expects 0/1"),
        (np.ones((2, 3)) * 1.5, np.eye(2, 3, dtype=bool), {"signal": "prob"}, ValueError,
         r"probabilities in \[0, 1\], got values in \[1.5, 1.5\]"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), np.eye(2, dtype=bool), {}, ValueError,
         r"correct: expected finite values"),
        (np.ones((2, 2)), np.full((2, 2), 2), {}, ValueError, r"keep: expected booleans"),
        (np.array([["a", "b"]]), np.ones((1, 2), bool), {}, TypeError, r"correct: expected"),
        (np.ones((2, 2)), np.eye(2, dtype=bool), {"signal": "loss"}, ValueError, r"signal:"),
        (np.ones((2, 2)), np.eye(2, dtype=bool), {"on_empty": "skip"}, ValueError, r"on_empty:"),
        (np.ones((0, 2)), np.ones((0, 2), bool), {}, ValueError, r"at least one model"),
    ],
)
def test_feldman_zhang_bad_input(correct, keep, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mk.memorization.feldman_zhang(correct, keep, **kwargs)


def test_feldman_zhang_labels_shape_checked():
    with pytest.raises(ValueError, match=r"labels: expected shape \(3,\)"):
        mk.memorization.feldman_zhang(np.zeros((2, 3, 4)), np.eye(2, 3, dtype=bool),
                                      labels=np.zeros(4, int))


# ------------------------------------------------------------------- influence


@pytest.mark.parametrize(
    "m,n,t,k", [(2, 1, 1, 1), (3, 7, 5, 7), (17, 61, 29, 4), (40, 257, 131, 10)]
)
def test_influence_matches_loop_exactly(m, n, t, k):
    rng = np.random.default_rng(m + n + t)
    keep = make_keep(rng, m, n)
    correct = rng.random((m, t)) < 0.6
    vals, idx = mk.memorization.influence(keep, correct, top_k=k)
    rv, ri = topk_ref(infl_loop(keep, correct), k)
    # 0/1 inputs: the sums are exact, so values (and ties) match the float64 loop exactly.
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(vals, rv)


@pytest.mark.parametrize("variant", ["generic", "avx2", "avx512"])
def test_influence_every_cpu_micro_kernel(variant, monkeypatch):
    """Each micro-kernel (forced through MIAKIT_CPU_KERNEL) against the reference,
    on sizes that leave partial row and column panels for all three tile shapes."""
    from miakit import _C

    monkeypatch.setenv("MIAKIT_CPU_KERNEL", variant)
    rng = np.random.default_rng(11)
    m, n, t, k = 29, 203, 37, 5
    keep = make_keep(rng, m, n)
    correct = rng.random((m, t)) < 0.5
    vals = np.empty((t, k))
    idx = np.empty((t, k), np.int64)
    st = _C.influence(keep.view(np.uint8), correct.view(np.uint8), vals, idx, 0)
    if st["kernel"] != variant:
        pytest.skip(f"this CPU cannot run the {variant} micro-kernel")
    rv, ri = topk_ref(infl_loop(keep, correct), k)
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(vals, rv)
    prob = rng.random((m, t)).astype(np.float32)
    pv, _ = mk.memorization.influence(keep, prob, top_k=k, signal="prob")
    np.testing.assert_allclose(pv, topk_ref(infl_matrix(keep, prob), k)[0], atol=2e-6)


def test_influence_large_against_dense_reference():
    rng = np.random.default_rng(5)
    m, n, t = 300, 3001, 203  # M above one 256-model block, awkward N and T
    keep = make_keep(rng, m, n, frac=0.7)
    base = rng.random(t)
    correct = rng.random((m, t)) < base
    # a planted influence: test example j is right when training example 3*j was IN
    correct[:, :100] |= keep[:, 3 * np.arange(100)]
    vals, idx = mk.memorization.influence(keep, correct, top_k=10)
    rv, ri = topk_ref(infl_matrix(keep, correct), 10)
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(vals, rv)
    assert (idx[:100, 0] == 3 * np.arange(100)).mean() > 0.8


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_influence_probabilities(dtype):
    rng = np.random.default_rng(6)
    m, n, t, k = 37, 419, 53, 6
    keep = make_keep(rng, m, n)
    prob = rng.random((t, m)).astype(dtype).T  # non-contiguous
    vals, idx = mk.memorization.influence(keep, prob, top_k=k, signal="prob")
    ref = infl_matrix(keep, prob.astype(np.float64))
    rv, _ = topk_ref(ref, k)
    np.testing.assert_allclose(vals, rv, rtol=0, atol=2e-6)
    # each listed index carries its listed value, and nothing unlisted beats the k-th
    np.testing.assert_allclose(np.take_along_axis(ref.T, idx, 1), vals, atol=2e-6)
    assert np.all(np.diff(vals, axis=1) <= 0)


def test_influence_ties_lower_index_first_and_constant_columns():
    rng = np.random.default_rng(7)
    col = rng.random(12) < 0.5
    col[0], col[1] = True, False
    keep = np.repeat(col[:, None], 9, axis=1)  # nine identical training examples
    correct = np.stack([col, np.ones(12, bool), np.zeros(12, bool), ~col], axis=1)
    vals, idx = mk.memorization.influence(keep, correct, top_k=4)
    np.testing.assert_array_equal(idx, np.tile(np.arange(4), (4, 1)))
    np.testing.assert_array_equal(vals, [[1.0] * 4, [0.0] * 4, [0.0] * 4, [-1.0] * 4])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the loop reference's empty means
def test_influence_torch_noncontiguous_and_skip():
    rng = np.random.default_rng(8)
    keep = make_keep(rng, 10, 20)
    keep[:, 3] = True  # no OUT model
    keep[:, 5] = False  # no IN model
    correct = rng.random((10, 6)) < 0.5
    with pytest.raises(ValueError, match=r"1 examples have no IN model .* 1 examples have no OUT"):
        mk.memorization.influence(keep, correct)
    kt = torch.from_numpy(keep.T.copy()).T  # torch, non-contiguous
    vals, idx = mk.memorization.influence(kt, torch.from_numpy(correct), top_k=20,
                                          on_empty="skip")
    assert isinstance(vals, torch.Tensor) and vals.dtype == torch.float64
    assert idx.dtype == torch.int64
    ref = infl_loop(keep, correct)
    ref[[3, 5]] = -np.inf
    rv, ri = topk_ref(ref, 18)
    np.testing.assert_array_equal(idx[:, :18].numpy(), ri)
    np.testing.assert_array_equal(vals[:, :18].numpy(), rv)
    assert torch.isnan(vals[:, 18:]).all() and (idx[:, 18:] == -1).all()


@pytest.mark.parametrize(
    "keep,correct,kwargs,exc,match",
    [
        (np.ones(3, bool), np.ones((3, 2)), {}, ValueError, r"keep: expected a 2-D array"),
        (np.eye(3, 4, dtype=bool), np.ones((2, 5)), {}, ValueError,
         r"correct_test: expected 3 rows .* got shape \(2, 5\)"),
        (np.eye(3, 4, dtype=bool), np.ones(3), {}, ValueError, r"correct_test: expected a 2-D"),
        (np.eye(3, 4, dtype=bool), np.full((3, 2), np.inf), {"signal": "prob"}, ValueError,
         r"correct_test: expected finite values"),
        (np.eye(3, 4, dtype=bool), np.full((3, 2), 0.5), {}, ValueError,
         r"signal='correct' expects 0/1"),
        (np.eye(3, 4, dtype=bool), np.full((3, 2), -0.5), {"signal": "prob"}, ValueError,
         r"got values in \[-0.5, -0.5\]"),
        (np.eye(3, 4, dtype=bool), np.ones((3, 2)), {"top_k": 0}, ValueError,
         r"top_k: expected 1 <= top_k <= 4 .* got 0"),
        (np.eye(3, 4, dtype=bool), np.ones((3, 2)), {"top_k": 5}, ValueError, r"got 5"),
        (np.eye(3, 4, dtype=bool), np.ones((3, 2)), {"top_k": 2.0}, TypeError, r"top_k: expected"),
        (np.eye(3, 4) * 3, np.ones((3, 2)), {}, ValueError, r"keep: expected booleans"),
        (np.eye(3, 4, dtype=bool), np.ones((3, 2)), {"on_empty": "nan"}, ValueError, r"on_empty"),
        (np.ones((3, 0), bool), np.ones((3, 2)), {}, ValueError, r"at least one"),
    ],
)
def test_influence_bad_input(keep, correct, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mk.memorization.influence(keep, correct, **kwargs)


def test_influence_empty_sides_named():
    keep = np.zeros((4, 5), bool)
    keep[:2, :3] = True
    with pytest.raises(ValueError, match=r"keep: influence needs .* 2 examples have no IN model"):
        mk.memorization.influence(keep, np.ones((4, 2)), top_k=2)


def test_influence_devices_must_match():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    with pytest.raises(ValueError, match="device"):
        mk.memorization.influence(torch.eye(2, dtype=torch.bool).cuda(), np.ones((2, 2)))


@pytest.mark.cuda
def test_influence_cuda_matches_cpu():
    if not (torch.cuda.is_available() and mk.backend_info()["cuda_available"]):
        pytest.skip("needs a CUDA device and a CUDA build")
    rng = np.random.default_rng(9)
    keep = make_keep(rng, 70, 2001)
    correct = rng.random((70, 333)) < 0.6
    v_cpu, i_cpu = mk.memorization.influence(keep, correct, top_k=10)
    v_gpu, i_gpu = mk.memorization.influence(torch.from_numpy(keep).cuda(),
                                             torch.from_numpy(correct).cuda(), top_k=10)
    assert v_gpu.is_cuda
    np.testing.assert_array_equal(i_gpu.cpu().numpy(), i_cpu)
    np.testing.assert_array_equal(v_gpu.cpu().numpy(), v_cpu)
    prob = rng.random((70, 2001)).astype(np.float32)
    f_cpu = mk.memorization.feldman_zhang(prob, keep, "prob")
    f_gpu = mk.memorization.feldman_zhang(torch.from_numpy(prob).cuda(),
                                          torch.from_numpy(keep).cuda(), "prob")
    np.testing.assert_allclose(f_gpu.cpu().numpy(), f_cpu, atol=1e-12)


def test_bindings_check_every_array_before_the_kernels():
    # direct calls of the compiled functions: a wrong shape or dtype is a ValueError naming
    # the argument, raised before any kernel reads memory
    from miakit import _C

    c = np.ones((3, 5), np.float32)
    keep = np.ones((3, 4), np.uint8)
    with pytest.raises(ValueError, match="vals: expected float64"):
        _C.influence(keep, c, np.empty((5, 9)), np.empty((5, 9), np.int64), 0)  # k > N
    with pytest.raises(ValueError, match="idx: expected a 2-D int64"):
        _C.influence(keep, c, np.empty((5, 2)), np.empty((5, 2), np.int32), 0)
    with pytest.raises(ValueError, match="keep: expected"):
        _C.influence(np.ones((2, 4), np.uint8), c, np.empty((5, 2)),
                     np.empty((5, 2), np.int64), 0)
    with pytest.raises(ValueError, match="keep: expected shape"):
        _C.memorization(c, np.ones((2, 5), np.uint8), np.empty(5), np.empty(5, np.int64), 0)
    with pytest.raises(ValueError, match="n_in: expected a 1-D int64"):
        _C.memorization(c, np.ones((3, 5), np.uint8), np.empty(5), np.empty(5, np.int32), 0)
    with pytest.raises(ValueError, match="correct: expected a floating-point, uint8 or bool"):
        _C.memorization(c.astype(np.int32), np.ones((3, 5), np.uint8), np.empty(5),
                        np.empty(5, np.int64), 0)
    x, w = np.ones((4, 3)), np.ones((2, 3))
    with pytest.raises(ValueError, match="weight: shape mismatch with features"):
        _C.head(x, np.zeros(4, np.int64), np.ones((2, 5)), None, np.empty(4),
                _C.HeadQuantity.grad_norm, 0)
    with pytest.raises(ValueError, match="labels: expected a 1-D int64"):
        _C.head(x, np.zeros(3, np.int64), w, None, np.empty(4), _C.HeadQuantity.grad_norm, 0)
    with pytest.raises(ValueError, match="out: expected a float64 array of shape"):
        _C.head(x, None, w, None, np.empty(3), _C.HeadQuantity.input_trace, 0)
    with pytest.raises(ValueError, match="out: expected a floating-point array"):
        _C.rademacher(np.arange(2, dtype=np.int64), np.empty((2, 3, 4), np.int32), 0, 0, 0)
    with pytest.raises(ValueError, match="examples: expected a 1-D int64"):
        _C.rademacher(np.arange(2, dtype=np.int32), np.empty((2, 3, 4)), 0, 0, 0)
