"""miakit.signals against the float64 reference (docs/methods/signals.md), and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import references as ref
import torch

import miakit as mk

SIGNALS = ref.SIGNALS


def call(kind, logits, labels):
    return getattr(mk.signals, kind)(logits, labels)


def check(kind, got, logits64, labels, *, rtol, atol, out_dtype):
    """Compare a numpy result with the reference evaluated on ``logits64``."""
    want = ref.signal(logits64, labels, kind)
    assert isinstance(got, np.ndarray)
    assert got.shape == want.shape
    if kind == "correct":
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, want)
    else:
        assert got.dtype == out_dtype
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol)


TOL = {
    np.float64: dict(rtol=1e-12, atol=1e-12, out_dtype=np.float64),
    np.float32: dict(rtol=1e-6, atol=1e-12, out_dtype=np.float32),
    np.float16: dict(rtol=1e-6, atol=1e-12, out_dtype=np.float32),
}


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize(
    "shape",
    [(3,), (1, 2), (7, 2), (5, 10), (2, 3, 1, 10), (3, 5, 18, 7), (2, 1, 18, 2), (1, 129, 3)],
)
def test_values_match_reference(kind, dtype, shape, rng):
    z = (rng.normal(scale=3.0, size=shape)).astype(dtype)
    lead = shape[:-1]
    if len(shape) == 4:  # [M, N, A, C]: one label per example, broadcast with labels[:, None]
        labels_n = rng.integers(0, shape[-1], size=shape[1])
        labels = labels_n[:, None]
    else:
        labels = rng.integers(0, shape[-1], size=lead) if lead else int(rng.integers(shape[-1]))
    got = call(kind, z, labels)
    # float16/float32 are compared with the reference on the same values cast up.
    check(kind, got, z.astype(np.float64), labels, **TOL[dtype])


@pytest.mark.parametrize("kind", SIGNALS)
def test_labels_broadcast_by_numpy_rules(kind, rng):
    m, n, a, c = 3, 5, 4, 6
    z = rng.normal(size=(m, n, a, c))
    labels = rng.integers(0, c, size=n)
    full = np.broadcast_to(labels[:, None], (m, n, a))
    got_b = call(kind, z, labels[:, None])
    got_full = call(kind, z, np.ascontiguousarray(full))
    np.testing.assert_array_equal(got_b, got_full)
    check(kind, got_b, z, full, **TOL[np.float64])
    # a scalar label broadcasts to every row; a [A] label vector along the last axis
    check(kind, call(kind, z, 2), z, 2, **TOL[np.float64])
    lab_a = rng.integers(0, c, size=a)
    check(kind, call(kind, z, lab_a), z, lab_a, **TOL[np.float64])


@pytest.mark.parametrize("kind", SIGNALS)
def test_one_row_gives_a_scalar_array(kind):
    z = np.array([2.0, -1.0, 0.5])
    got = call(kind, z, 1)
    assert got.shape == ()
    check(kind, got, z, 1, **TOL[np.float64])


@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize(
    "label_dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64]
)
def test_integer_label_dtypes(kind, label_dtype, rng):
    z = rng.normal(size=(9, 4))
    labels = rng.integers(0, 4, size=9).astype(label_dtype)
    check(kind, call(kind, z, labels), z, labels.astype(np.int64), **TOL[np.float64])


# ------------------------------------------------------------------ non-contiguous views
def _views(rng, dtype):
    """(name, logits view, labels) triples; every view is non-contiguous."""
    base = rng.normal(scale=2.0, size=(6, 11, 5)).astype(dtype)
    yield "transposed", base.T, rng.integers(0, 6, size=(5, 11))  # [5, 11, 6]
    big = rng.normal(size=(4, 15, 3, 9)).astype(dtype)
    yield "step-sliced", big[::2, ::3, :, ::2], rng.integers(0, 5, size=(5, 1))
    yield "reversed", big[::-1, :, ::-1, ::-1], rng.integers(0, 9, size=15)[:, None]
    yield "fortran", np.asfortranarray(rng.normal(size=(13, 7)).astype(dtype)), rng.integers(
        0, 7, size=13)
    bcast = np.broadcast_to(rng.normal(size=(1, 5, 4)).astype(dtype), (3, 5, 4))  # 0 stride
    yield "zero-stride", bcast, rng.integers(0, 4, size=5)


@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_non_contiguous_numpy_views(kind, dtype, rng):
    for name, view, labels in _views(rng, dtype):
        assert not view.flags.c_contiguous, name
        got = call(kind, view, labels)
        check(kind, got, view.astype(np.float64), labels, **TOL[dtype])


def test_labels_non_contiguous_view(rng):
    z = rng.normal(size=(8, 5))
    lab_base = rng.integers(0, 5, size=(8, 3))
    labels = lab_base[:, 1]  # strided
    assert not labels.flags.c_contiguous
    check("scaled_confidence", mk.signals.scaled_confidence(z, labels), z, labels,
          **TOL[np.float64])


# ------------------------------------------------------------------------------ torch
TORCH_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_torch_cpu_tensors(kind, dtype, rng):
    z = torch.from_numpy(rng.normal(scale=3.0, size=(3, 7, 2, 5))).to(dtype)
    labels = torch.from_numpy(rng.integers(0, 5, size=7))
    got = call(kind, z, labels[:, None])
    assert isinstance(got, torch.Tensor)
    assert got.device.type == "cpu"
    assert got.shape == (3, 7, 2)
    want = ref.signal(z.double().numpy(), labels[:, None].numpy(), kind)
    if kind == "correct":
        assert got.dtype == torch.bool
        np.testing.assert_array_equal(got.numpy(), want)
    else:
        assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        tol = 1e-12 if dtype == torch.float64 else 1e-6
        np.testing.assert_allclose(got.double().numpy(), want, rtol=tol, atol=1e-12)


@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_torch_transposed_views(kind, dtype, rng):
    base = torch.from_numpy(rng.normal(size=(5, 9, 4))).to(dtype)
    z = base.transpose(0, 2)  # [4, 9, 5], class axis strided
    assert not z.is_contiguous()
    labels = torch.from_numpy(rng.integers(0, 5, size=(4, 9)))
    got = call(kind, z, labels)
    want = ref.signal(z.double().numpy(), labels.numpy(), kind)
    if kind == "correct":
        np.testing.assert_array_equal(got.numpy(), want)
    else:
        np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-6, atol=1e-12)
    sliced = base[::2, 1::3, :]  # step-sliced
    lab = torch.from_numpy(rng.integers(0, 4, size=(3, 3)))
    got = call(kind, sliced, lab)
    want = ref.signal(sliced.double().numpy(), lab.numpy(), kind)
    if kind == "correct":
        np.testing.assert_array_equal(got.numpy(), want)
    else:
        np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-6, atol=1e-12)


def test_torch_logits_with_numpy_labels_and_back(rng):
    z = rng.normal(size=(6, 3))
    labels = rng.integers(0, 3, size=6)
    want = ref.signal(z, labels, "loss")
    got = mk.signals.loss(torch.from_numpy(z), labels)  # numpy labels, torch logits
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    got = mk.signals.loss(z, torch.from_numpy(labels))  # torch labels, numpy logits
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_tensors_that_require_grad(rng):
    z = torch.from_numpy(rng.normal(size=(4, 3))).requires_grad_(True)
    got = mk.signals.scaled_confidence(z, torch.tensor([0, 1, 2, 0]))
    assert not got.requires_grad
    np.testing.assert_allclose(got.numpy(), ref.signal(z.detach().numpy(), [0, 1, 2, 0],
                                                       "scaled_confidence"), rtol=1e-12)


@pytest.mark.parametrize("kind", SIGNALS)
def test_empty_leading_shape(kind):
    got = call(kind, np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    assert got.shape == (0,)
    got = call(kind, np.zeros((2, 0, 3), dtype=np.float32), 1)
    assert got.shape == (2, 0)


def test_lists_are_accepted():
    got = mk.signals.hinge([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]], [0, 2])
    np.testing.assert_allclose(got, [1.0, -2.0])


# ---------------------------------------------------------------------- extreme logits
def test_scaled_confidence_stays_exact_when_p_y_rounds_to_one():
    z = np.array([[40.0, 0.0, 0.0]])
    got = mk.signals.scaled_confidence(z, [0])
    assert got[0] == pytest.approx(40.0 - np.log(2.0), rel=1e-14)
    # the naive log p - log(1 - p) loses everything here (p rounds to 1)
    p = np.exp(z[0, 0] - np.log(np.exp(z[0]).sum()))
    with np.errstate(divide="ignore"):
        naive = np.log(p) - np.log1p(-p)
    assert not abs(naive - got[0]) < 1e-3
    for dtype in (np.float32, np.float16):
        g = mk.signals.scaled_confidence(z.astype(dtype), [0])
        assert g.dtype == np.float32
        assert g[0] == pytest.approx(40.0 - np.log(2.0), rel=1e-7)


@pytest.mark.parametrize(
    "row, label, expected",
    [
        ([40.0, 0.0, 0.0], 0, {"scaled_confidence": 40 - np.log(2), "hinge": 40.0,
                               "correct": True}),
        ([0.0, -800.0, -800.0], 0, {"scaled_confidence": 800 - np.log(2), "hinge": 800.0,
                                    "confidence": 1.0, "max_confidence": 1.0}),
        ([-1000.0, 0.0, 0.0], 0, {"scaled_confidence": -1000 - np.log(2),
                                  "loss": 1000 + np.log(2), "confidence": 0.0,
                                  "max_confidence": 0.5, "correct": False}),
        ([1e4, -1e4], 1, {"scaled_confidence": -2e4, "hinge": -2e4, "loss": 2e4,
                          "confidence": 0.0, "max_confidence": 1.0}),
        ([5.0, 5.0, 5.0, 5.0], 3, {"scaled_confidence": -np.log(3), "hinge": 0.0,
                                   "loss": np.log(4), "confidence": 0.25,
                                   "max_confidence": 0.25, "correct": False}),
        ([3.0, 7.0, 7.0], 2, {"correct": False, "hinge": 0.0}),  # first maximum wins
        ([3.0, 7.0, 7.0], 1, {"correct": True, "scaled_confidence": 7 - np.logaddexp(3, 7)}),
    ],
)
def test_extreme_and_tied_logits(row, label, expected):
    for kind, want in expected.items():
        for dtype in (np.float64, np.float32):
            z = np.array([row], dtype=dtype)
            got = call(kind, z, [label])[0]
            if kind == "correct":
                assert bool(got) is want, (kind, row)
            else:
                assert float(got) == pytest.approx(want, rel=1e-7, abs=1e-300), (kind, row, dtype)
        # and the float64 reference agrees
        assert ref.signal(np.array([row]), [label], kind)[0] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kind", SIGNALS)
def test_wide_dynamic_range_matches_reference(kind, rng):
    z = rng.normal(scale=300.0, size=(50, 7))
    labels = rng.integers(0, 7, size=50)
    check(kind, call(kind, z, labels), z, labels, rtol=1e-12, atol=1e-12, out_dtype=np.float64)


def test_loss_is_tiny_not_negative_when_confident():
    z = np.array([[50.0, 0.0, 0.0]])
    got = mk.signals.loss(z, [0])[0]
    assert 0.0 <= got <= 1e-20


def test_many_classes(rng):
    z = rng.normal(size=(3, 1000)).astype(np.float32)
    labels = rng.integers(0, 1000, size=3)
    for kind in SIGNALS:
        check(kind, call(kind, z, labels), z.astype(np.float64), labels, **TOL[np.float32])


# -------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_nonfinite_logits_raise(kind, bad, dtype, rng):
    z = rng.normal(size=(4, 5, 3)).astype(dtype)
    z[2, 3, 1] = bad
    with pytest.raises(ValueError, match="logits") as ei:
        call(kind, z, rng.integers(0, 3, size=5))
    assert "finite" in str(ei.value)
    assert "1 rows" in str(ei.value)


def test_nonfinite_torch_logits_raise(rng):
    z = torch.randn(3, 4, dtype=torch.bfloat16)
    z[1, 2] = float("nan")
    with pytest.raises(ValueError, match="logits"):
        mk.signals.scaled_confidence(z, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("kind", SIGNALS)
@pytest.mark.parametrize("bad_label", [-1, 3, 100])
def test_labels_out_of_range_raise(kind, bad_label, rng):
    z = rng.normal(size=(4, 3))
    labels = np.array([0, 1, bad_label, 2])
    with pytest.raises(ValueError, match=r"labels.*\[0, 3\)") as ei:
        call(kind, z, labels)
    assert str(bad_label) in str(ei.value)
    with pytest.raises(ValueError, match="labels"):
        call(kind, torch.from_numpy(z), torch.from_numpy(labels))


@pytest.mark.parametrize(
    "labels", [np.array([0.0, 1.0, 2.0, 0.0]), np.array([True, False, True, True]),
               np.array(["a", "b", "c", "d"])],
)
def test_non_integer_labels_raise_type_error(labels, rng):
    with pytest.raises(TypeError, match="labels"):
        mk.signals.scaled_confidence(rng.normal(size=(4, 3)), labels)


@pytest.mark.parametrize(
    "zshape, lshape",
    [((4, 3), (5,)), ((2, 5, 3, 4), (5,)), ((2, 5, 3, 4), (2, 5)), ((4, 3), (4, 2)),
     ((3,), (2,))],
)
def test_labels_not_broadcastable_raise(zshape, lshape, rng):
    z = rng.normal(size=zshape)
    labels = np.zeros(lshape, dtype=np.int64)
    with pytest.raises(ValueError, match="labels.*broadcast"):
        mk.signals.scaled_confidence(z, labels)
    with pytest.raises(ValueError, match="labels"):
        mk.signals.scaled_confidence(torch.from_numpy(z), torch.from_numpy(labels))


@pytest.mark.parametrize(
    "logits, err",
    [
        (np.zeros((3, 1)), ValueError),  # one class
        (np.float64(1.0), ValueError),  # 0-d
        (np.zeros((3, 4), dtype=np.int64), TypeError),
        (np.zeros((3, 4), dtype=np.complex128), TypeError),
        (np.zeros((3, 4), dtype=bool), TypeError),
        (torch.zeros(3, 4, dtype=torch.int32), TypeError),
    ],
)
def test_bad_logits_raise(logits, err):
    with pytest.raises(err, match="logits"):
        mk.signals.scaled_confidence(logits, 0)


def test_max_confidence_checks_labels_when_given(rng):
    z = rng.normal(size=(4, 3))
    np.testing.assert_allclose(mk.signals.max_confidence(z), ref.signal(z, 0, "max_confidence"))
    with pytest.raises(ValueError, match="labels"):
        mk.signals.max_confidence(z, [0, 1, 5, 0])


@pytest.mark.parametrize("kind", SIGNALS)
def test_non_native_byte_order(kind, rng):
    z = rng.normal(size=(5, 4))
    labels = rng.integers(0, 4, size=5)
    for dtype in (">f8", ">f4", ">f2"):
        zb = z.astype(dtype)
        want_dtype = np.float64 if dtype == ">f8" else np.float32
        check(kind, call(kind, zb, labels.astype(">i8")), zb.astype(np.float64), labels,
              rtol=1e-6, atol=1e-12, out_dtype=want_dtype)


def test_strides_not_a_multiple_of_the_item_size_raise():
    rec = np.zeros((4, 3), dtype=[("a", "f4"), ("b", "f8")])
    z = rec["b"]  # a float64 view with a 12-byte stride
    with pytest.raises(ValueError, match="logits"):
        mk.signals.scaled_confidence(z, [0, 1, 2, 0])


def test_every_finite_float16_value_is_read_exactly():
    """hinge([v, 0], 0) = v: the half-precision decode (normals, subnormals, signed zeros)
    must reproduce numpy's float16 -> float32 conversion bit for bit."""
    v = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    v = v[np.isfinite(v)]
    z = np.stack([v, np.zeros_like(v)], axis=1)
    got = mk.signals.hinge(z, 0)
    np.testing.assert_array_equal(got.view(np.uint32), v.astype(np.float32).view(np.uint32))


def test_every_finite_bfloat16_value_is_read_exactly():
    bits = torch.arange(1 << 16, dtype=torch.int32).to(torch.int16)
    v = bits.view(torch.bfloat16)
    v = v[torch.isfinite(v)]
    z = torch.stack([v, torch.zeros_like(v)], dim=1)
    got = mk.signals.hinge(z, 0)
    assert got.dtype == torch.float32
    assert torch.equal(got.view(torch.int32), v.float().view(torch.int32))


# ---------------------------------------------------------- several signals, one pass
def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("shape", [(1, 2), (7, 3), (2, 65, 2, 10), (3, 129, 5)])
def test_compute_equals_the_single_signals_bit_for_bit(dtype, shape, rng):
    z = rng.normal(scale=4.0, size=shape).astype(dtype)
    if len(shape) == 4:  # [M, N, A, C] with one label per example
        lab = rng.integers(0, shape[-1], size=shape[1])[:, None]
    else:
        lab = rng.integers(0, shape[-1], size=shape[:-1])
    got = mk.signals.compute(z, lab, SIGNALS)
    assert list(got) == list(SIGNALS)
    for kind in SIGNALS:
        _same_bits(got[kind], call(kind, z, lab))


def test_compute_any_subset_and_order_and_strided_outputs(rng):
    z = rng.normal(size=(4, 50, 2, 10))[:, ::2, :, ::-1]  # non-contiguous logits
    labels = rng.integers(0, 10, 25)
    for names in (["grad_norm"], ["correct", "loss"], ["hinge", "scaled_confidence",
                                                      "max_confidence", "confidence"]):
        got = mk.signals.compute(z, labels[:, None], names)
        for kind in names:
            _same_bits(got[kind], call(kind, z, labels[:, None]))


def test_compute_dtype_and_torch(rng):
    z = rng.normal(size=(6, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 6)
    got = mk.signals.compute(z, labels, ["loss", "confidence"], dtype="float64")
    assert got["loss"].dtype == np.float64
    np.testing.assert_allclose(got["loss"], ref.signal(z.astype(np.float64), labels, "loss"),
                               rtol=1e-12)
    t = mk.signals.compute(torch.from_numpy(z), torch.from_numpy(labels), ["hinge", "correct"])
    assert t["hinge"].dtype == torch.float32 and t["correct"].dtype == torch.bool
    _same_bits(t["hinge"].numpy(), call("hinge", z, labels))


def test_compute_counts_each_bad_row_once(rng):
    z = rng.normal(size=(9, 4))
    z[[1, 5], 2] = np.nan
    with pytest.raises(ValueError, match="in 2 rows"):
        mk.signals.compute(z, np.zeros(9, int), ["loss", "hinge", "grad_norm"])
    # the kernel's own count of labels out of range (Python checks them first)
    kinds = [mk.signals.SIGNAL_CODES[k] for k in ("loss", "correct", "grad_norm")]
    lab = np.array([0, 1, 4, 0, 7, 0, 0, -1, 0], np.int64)
    outs = [np.empty(9) for _ in kinds]
    st = mk._C.signals(rng.normal(size=(9, 4)), lab, kinds, outs, 0)
    assert st == {"nonfinite": 0, "bad_label": 3}
    assert all(np.isnan(o[[2, 4, 7]]).all() for o in outs)


@pytest.mark.parametrize("names, match", [
    ([], "at least one"), (["loss", "loss"], "each signal once"), (["lose"], "names"),
    ("loss", "sequence"), (list(SIGNALS) + ["loss", "hinge"], "each signal once"),
])
def test_compute_rejects_bad_names(names, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mk.signals.compute(np.zeros((2, 3)), [0, 1], names)


def test_compute_rejects_a_bad_dtype():
    with pytest.raises(ValueError, match="dtype"):
        mk.signals.compute(np.zeros((2, 3)), [0, 1], ["loss"], dtype="float16")


def test_binding_checks_every_output():
    z, lab = np.zeros((3, 4)), np.zeros(3, np.int64)
    kinds = [mk.signals.SIGNAL_CODES["loss"], mk.signals.SIGNAL_CODES["hinge"]]
    with pytest.raises(ValueError, match=r"outs\[1\]: expected the leading shape"):
        mk._C.signals(z, lab, kinds, [np.empty(3), np.empty(4)], 0)
    with pytest.raises(ValueError, match=r"outs\[0\]: expected float32 or float64"):
        mk._C.signals(z, lab, kinds, [np.empty(3, np.int64), np.empty(3)], 0)
    with pytest.raises(ValueError, match="one output per kind"):
        mk._C.signals(z, lab, kinds, [np.empty(3)], 0)
    with pytest.raises(ValueError, match="1 to 8"):
        mk._C.signals(z, lab, kinds * 5, [np.empty(3)] * 10, 0)


@pytest.mark.parametrize("variant", ["generic", "avx2", "avx512"])
def test_every_instruction_set_gives_the_same_bits(variant, monkeypatch, rng):
    """MIAKIT_CPU_KERNEL governs the compiler-vectorized loops too (isa.h): each forced
    path meets the reference and gives the bits of the widest one (nothing is fused)."""
    z = rng.normal(scale=5.0, size=(3, 101, 2, 10))
    labels = rng.integers(0, 10, 101)[:, None]
    want = mk.signals.compute(z, labels, SIGNALS)
    monkeypatch.setenv("MIAKIT_CPU_KERNEL", variant)
    got = mk.signals.compute(z, labels, SIGNALS)
    for kind in SIGNALS:
        check(kind, got[kind], z, labels, **TOL[np.float64])
        _same_bits(got[kind], want[kind])


def test_grad_norm_keeps_precision_when_confident():
    """1 - p_y is formed without cancellation: for z = (t, 0), ||p - e_0|| = sqrt(2) p_1."""
    t = np.array([5.0, 20.0, 40.0, 300.0, 700.0])
    z = np.stack([t, np.zeros_like(t)], axis=1)
    want = np.sqrt(2.0) * np.exp(-t) / (1.0 + np.exp(-t))
    np.testing.assert_allclose(mk.signals.grad_norm(z, 0), want, rtol=1e-14)
    # and at the other end, a confident wrong prediction: sqrt(2)
    np.testing.assert_allclose(mk.signals.grad_norm(z, 1)[2:], np.sqrt(2.0), rtol=1e-15)
