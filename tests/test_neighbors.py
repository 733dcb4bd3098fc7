"""Exact nearest neighbours (docs/methods/generative.md) against the float64 dense reference
and scikit-learn."""

from __future__ import annotations

import os

import numpy as np
import pytest
import references as ref

import miakit as mk
from miakit import _C

closest = mk.neighbors.closest_distances


def _data(q, r, d, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(q, d)).astype(dtype), rng.normal(size=(r, d)).astype(dtype))


def _check(queries, reference, k, exclude_self=False, rtol=1e-12):
    d2, idx = closest(queries, reference, k, metric="sqeuclidean", exclude_self=exclude_self)
    rd2, ridx = ref.knn_sq(queries, reference, k, exclude_self)
    assert d2.dtype == np.float64 and idx.dtype == np.int64
    np.testing.assert_allclose(d2, rd2, rtol=rtol, atol=0)
    # indices agree wherever the reference distances are not tied within rounding
    gap = np.abs(np.diff(np.sort(ref.knn_sq(queries, reference, min(k + 1, len(reference)),
                                            exclude_self)[0], axis=1), axis=1))
    clear = np.ones_like(idx, dtype=bool)
    if gap.shape[1]:
        tight = gap < 1e-9 * np.maximum(1.0, rd2.max())
        clear[:, : tight.shape[1]] &= ~tight[:, : k]
        clear[:, 1:] &= ~tight[:, : k - 1]
    np.testing.assert_array_equal(idx[clear], ridx[clear])
    return d2, idx


@pytest.mark.parametrize("q,r,d,k", [
    (1, 1, 1, 1), (1, 7, 3, 7), (5, 1, 2, 1), (33, 65, 17, 5), (130, 257, 64, 1),
    (257, 129, 9, 13), (64, 2000, 31, 50), (700, 900, 100, 3),
])
def test_matches_dense_reference(q, r, d, k):
    queries, reference = _data(q, r, d, seed=q + r + d)
    _check(queries, reference, k)


@pytest.mark.parametrize("variant", ["generic", "avx2", "avx512"])
def test_every_cpu_micro_kernel(variant, monkeypatch):
    monkeypatch.setenv("MIAKIT_CPU_KERNEL", variant)
    queries, reference = _data(203, 517, 23, seed=3)
    vals = np.empty((203, 4))
    idx = np.empty((203, 4), dtype=np.int64)
    st = _C.knn(queries, reference, vals, idx, False, 0)
    assert st["kernel"] in (variant, "avx2", "generic")  # a CPU without the ISA falls back
    if variant == "generic":
        assert st["kernel"] == "generic"
    rd2, ridx = ref.knn_sq(queries, reference, 4)
    np.testing.assert_allclose(vals, rd2, rtol=1e-12)
    np.testing.assert_array_equal(idx, ridx)


def test_ties_and_duplicate_rows_lower_index_first():
    # integer coordinates: every distance is exact, and many are equal
    rng = np.random.default_rng(5)
    reference = rng.integers(0, 3, size=(300, 4)).astype(np.float64)
    reference[50] = reference[10]  # duplicate rows
    queries = rng.integers(0, 3, size=(80, 4)).astype(np.float64)
    for kernel in ("generic", None):
        if kernel:
            os.environ["MIAKIT_CPU_KERNEL"] = kernel
        try:
            d2, idx = closest(queries, reference, 20, metric="sqeuclidean")
        finally:
            os.environ.pop("MIAKIT_CPU_KERNEL", None)
        rd2, ridx = ref.knn_sq(queries, reference, 20)
        np.testing.assert_array_equal(d2, rd2)
        np.testing.assert_array_equal(idx, ridx)


def test_exclude_self_and_metrics_against_sklearn():
    neighbors = pytest.importorskip("sklearn.neighbors")
    x, _ = _data(400, 1, 12, seed=7)
    d, i = closest(x, x, 3, exclude_self=True)
    nn = neighbors.NearestNeighbors(n_neighbors=4, algorithm="brute").fit(x)
    sd, si = nn.kneighbors(x)
    np.testing.assert_allclose(d, sd[:, 1:], rtol=1e-9)
    np.testing.assert_array_equal(i, si[:, 1:])
    assert not (i == np.arange(400)[:, None]).any()
    # without exclusion every record finds itself at distance exactly 0
    d0, i0 = closest(x, x, 1)
    np.testing.assert_array_equal(d0[:, 0], 0.0)
    np.testing.assert_array_equal(i0[:, 0], np.arange(400))
    q, r = _data(50, 300, 12, seed=8)
    dc, ic = closest(q, r, 4, metric="cosine")
    cn = neighbors.NearestNeighbors(n_neighbors=4, algorithm="brute", metric="cosine").fit(r)
    sd, si = cn.kneighbors(q)
    np.testing.assert_allclose(dc, sd, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(ic, si)
    de, _ = closest(q, r, 4)
    ds, _ = closest(q, r, 4, metric="sqeuclidean")
    np.testing.assert_allclose(de, np.sqrt(ds), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_low_precision_inputs_exact_in_their_values(dtype):
    queries, reference = _data(90, 310, 8, seed=11, dtype=dtype)
    # the distances are of the given (rounded) values, computed in float64
    _check(queries, reference, 6)


def test_mixed_dtypes_noncontiguous_and_integers():
    queries, reference = _data(60, 180, 20, seed=13)
    qs = np.asfortranarray(queries)[:, ::2]           # strided columns
    rs = reference[::-1][:, ::2].astype(np.float32)   # reversed rows, another dtype
    d2, idx = closest(qs, rs, 5, metric="sqeuclidean")
    rd2, ridx = ref.knn_sq(qs, rs.astype(np.float64), 5)
    np.testing.assert_allclose(d2, rd2, rtol=1e-12)
    np.testing.assert_array_equal(idx, ridx)
    ints = np.arange(12).reshape(6, 2)
    d, i = closest(ints, ints[::-1].copy(), 1)
    np.testing.assert_array_equal(d[:, 0], 0.0)
    np.testing.assert_array_equal(i[:, 0], np.arange(6)[::-1])


def test_torch_tensors_stay_torch():
    torch = pytest.importorskip("torch")
    queries, reference = _data(40, 90, 6, seed=17)
    d, i = closest(torch.from_numpy(queries), torch.from_numpy(reference).float(), 3)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float64
    rd2, ridx = ref.knn_sq(queries, reference.astype(np.float32), 3)
    np.testing.assert_allclose(d.numpy(), np.sqrt(rd2), rtol=1e-12)
    np.testing.assert_array_equal(i.numpy(), ridx)


def test_large_planted_neighbours():
    # every query is a slightly moved copy of one reference row
    rng = np.random.default_rng(19)
    reference = rng.normal(size=(5000, 64))
    pick = rng.permutation(5000)[:3000]
    queries = reference[pick] + 1e-3 * rng.normal(size=(3000, 64))
    d, i = closest(queries, reference, 1)
    np.testing.assert_array_equal(i[:, 0], pick)
    np.testing.assert_allclose(d[:, 0], np.linalg.norm(queries - reference[pick], axis=1),
                               rtol=1e-12)


def test_far_offset_data_keeps_exact_order():
    # a large common offset makes |q|^2 and |r|^2 huge next to d^2: the float32 screen is
    # coarse there, and the margin must still let the true neighbours through
    rng = np.random.default_rng(23)
    reference = 1e3 + rng.normal(size=(800, 16))
    queries = 1e3 + rng.normal(size=(100, 16))
    _check(queries, reference, 5, rtol=1e-9)


@pytest.mark.parametrize("args,kwargs,exc,match", [
    (([[1.0, 2.0]], [[1.0, 2.0, 3.0]]), {}, ValueError, "reference: expected 2 features"),
    (([1.0, 2.0], [[1.0, 2.0]]), {}, ValueError, "queries: expected a 2-D"),
    ((np.zeros((0, 2)), [[1.0, 2.0]]), {}, ValueError, "queries: expected at least one record"),
    (([[1.0, 2.0]], np.zeros((0, 2))), {}, ValueError, "reference: expected at least one"),
    (([[np.nan, 2.0]], [[1.0, 2.0]]), {}, ValueError, "NaN or inf"),
    (([[1.0, 2.0]], [[1.0, np.inf]]), {}, ValueError, "NaN or inf"),
    (([[1e39, 2.0]], [[1.0, 2.0]]), {}, ValueError, "float32"),
    (([[1.0, 2.0]], [[1.0, 2.0]]), {"k": 2}, ValueError, r"k: expected 1 <= k <= 1"),
    (([[1.0, 2.0]], [[1.0, 2.0]]), {"k": 0}, ValueError, "k: expected"),
    (([[1.0, 2.0]], [[1.0, 2.0]]), {"k": 1.5}, TypeError, "k: expected an int"),
    (([[1.0, 2.0]], [[1.0, 2.0]]), {"metric": "manhattan"}, ValueError, "metric"),
    (([[1.0, 2.0]], [[1.0, 2.0], [0, 1]]), {"exclude_self": True}, ValueError, "exclude_self"),
    (([[1.0, 2.0], [1, 1]], [[1.0, 2.0], [0, 1]]), {"exclude_self": True, "k": 2},
     ValueError, "k: expected 1 <= k <= 1"),
    (([[0.0, 0.0]], [[1.0, 2.0]]), {"metric": "cosine"}, ValueError, "zero row"),
    ((np.array([["a", "b"]]), [[1.0, 2.0]]), {}, TypeError, "queries: expected a floating"),
])
def test_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        closest(*args, **kwargs)


# ----------------------------------------------------------------------------- CUDA twin
def _cuda_device():
    try:
        import torch as _torch
    except ImportError:
        return None
    if os.environ.get("MIAKIT_TEST_CUDA_ON_CPU") == "1":
        return "cpu"
    if _torch.cuda.is_available() and mk.backend_info()["cuda_available"]:
        return "cuda"
    return None


@pytest.mark.cuda
@pytest.mark.skipif(_cuda_device() is None, reason="needs a CUDA GPU and a CUDA build")
@pytest.mark.parametrize("q,r,d,k,dtype", [
    (1, 1, 1, 1, "float64"), (65, 129, 17, 5, "float64"), (300, 1000, 64, 10, "float32"),
    (77, 500, 9, 3, "float16"), (128, 4000, 33, 1, "bfloat16"),
])
def test_cuda_matches_reference_and_cpu(q, r, d, k, dtype):
    import torch as _torch
    dev = _cuda_device()
    queries, reference = _data(q, r, d, seed=q * r)
    tq = _torch.from_numpy(queries).to(getattr(_torch, dtype))
    tr = _torch.from_numpy(reference).to(getattr(_torch, dtype))
    d2, idx = closest(tq.to(dev), tr.to(dev), k, metric="sqeuclidean")
    assert d2.device.type == dev
    qv, rv = tq.double().numpy(), tr.double().numpy()
    rd2, ridx = ref.knn_sq(qv, rv, k)
    np.testing.assert_allclose(d2.cpu().numpy(), rd2, rtol=1e-12)
    cd2, cidx = closest(tq, tr, k, metric="sqeuclidean")
    np.testing.assert_array_equal(d2.cpu().numpy(), cd2.numpy())  # same summation order
    np.testing.assert_array_equal(idx.cpu().numpy(), cidx.numpy())
    if q > 2:
        xs = _torch.from_numpy(queries).to(dev)
        _, ie = closest(xs, xs, 2, exclude_self=True)
        assert not (ie.cpu().numpy() == np.arange(q)[:, None]).any()
