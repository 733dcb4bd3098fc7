"""The named options that cross the binding (csrc/bindings_options.cpp,
python/miakit/_options.py) and the binding's one pass of array checks (csrc/checks.h).

Every option switch of a compiled function is a Python ``enum.Enum`` of ``miakit._C``:
a compiled function accepts only a member of its argument's class, so an integer code
(in range or not), a name, or another enum's member is a ``TypeError`` naming the
argument, and no enum holds a value outside the C++ enum it mirrors. The public
functions map the names users give onto the members through one table per option.
"""

from __future__ import annotations

import enum

import numpy as np
import pytest

import miakit as mk
from miakit import _C, _options

# Each bound enum: its members and their values, which are the C++ enums' values
# (include/miakit/signals.h, lira_math.h; kernels_attack.h; pyconvert.h).
ENUMS = {
    "Signal": {"scaled_confidence": 0, "hinge": 1, "loss": 2, "confidence": 3,
               "max_confidence": 4, "correct": 5, "grad_norm": 6},
    "Center": {"median": 0, "mean": 1},
    "Variance": {"per_example": 0, "global_": 1},
    "Mode": {"online": 0, "offline": 1},
    "Offline": {"one_sided": 0, "two_sided": 1},
    "References": {"balanced": 0, "all": 1},
    "KsSides": {"both": 0, "max": 1, "min": 2, "larger": 3},
    "HeadQuantity": {"grad_norm": 0, "input_trace": 1},
    "ProbeReduction": {"quadratic": 0, "difference": 1},
    "KsPiece": {"smirnov": 0, "durbin": 1},
}

TABLES = {
    "SIGNALS": ("Signal", _options.SIGNALS),
    "CENTERS": ("Center", _options.CENTERS),
    "VARIANCES": ("Variance", _options.VARIANCES),
    "MODES": ("Mode", _options.MODES),
    "OFFLINE": ("Offline", _options.OFFLINE),
    "REFERENCES": ("References", _options.REFERENCES),
    "KS_SIDES": ("KsSides", _options.KS_SIDES),
}


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_enum_is_bound_with_the_cpp_values(name):
    cls = getattr(_C, name)
    assert isinstance(cls, type) and issubclass(cls, enum.Enum)
    assert {m.name: m.value for m in cls} == ENUMS[name]


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_enum_holds_no_value_outside_its_members(name):
    cls = getattr(_C, name)
    for bad in (-1, len(ENUMS[name]), 2**31):
        with pytest.raises(ValueError, match=f"not a valid {name}"):
            cls(bad)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_each_table_maps_names_onto_every_member_of_one_enum(table):
    enum_name, mapping = TABLES[table]
    cls = getattr(_C, enum_name)
    assert all(isinstance(v, cls) for v in mapping.values())
    assert set(mapping.values()) == set(cls)  # every member reachable, once
    assert len(set(mapping.values())) == len(mapping)


def test_signal_codes_is_the_one_table():
    assert mk.signals.SIGNAL_CODES is _options.SIGNALS


def test_kernel_option_checks_the_name():
    assert _options.kernel_option("mean", "center", _options.CENTERS) is _C.Center.mean
    with pytest.raises(ValueError,
                       match=r"center: expected one of \['median', 'mean'\], got 'avg'"):
        _options.kernel_option("avg", "center", _options.CENTERS)
    with pytest.raises(ValueError, match="sides"):
        mk.ks._unsorted(np.zeros(2), np.zeros(1, np.int64), 2, np.ones(2),
                        np.zeros(1, np.int64), 2, sides="sideways")


def test_public_functions_reject_unknown_option_names(rng):
    keep = mk.shadow.balanced_keep(8, 6, seed=0)
    s = rng.normal(size=(8, 6, 1))
    with pytest.raises(ValueError, match="center: expected one of"):
        mk.lira.fit(s, keep, center="avg")
    with pytest.raises(ValueError, match="variance: expected one of"):
        mk.lira.fit(s, keep, variance=1)
    with pytest.raises(ValueError, match="mode: expected one of"):
        mk.lira.leave_one_out(s, keep, mode=0)
    with pytest.raises(ValueError, match="references: expected one of"):
        mk.lira.leave_one_out(s, keep, references="none")


def _signal_args():
    return np.zeros((3, 4)), np.zeros(3, np.int64), np.empty(3)


@pytest.mark.parametrize("code", [0, 1, 5, 6, -1, "loss", _C.Center.median])
def test_compiled_functions_take_only_members(code):
    logits, labels, out = _signal_args()
    with pytest.raises(TypeError, match=r"kind: miakit._C.Signal"):
        _C.signal(logits, labels, out, code, 0)


def test_every_option_argument_is_typed_and_named():
    z = np.zeros((4, 6, 1))
    keep = np.zeros((4, 6), np.uint8)
    stats = [np.zeros((6, 1)) for _ in range(4)]
    counts = [np.zeros(6, np.int64) for _ in range(2)]
    with pytest.raises(TypeError, match=r"center: miakit._C.Center"):
        _C.lira_fit(z, None, keep, *stats, *counts, 0, _C.Signal.loss, 0)
    with pytest.raises(TypeError, match=r"offline: miakit._C.Offline"):
        _C.lira_score(stats[0], *stats, np.empty(6), _C.Mode.online, 1, 0)
    with pytest.raises(TypeError, match=r"references: miakit._C.References"):
        _C.lira_loo(z, None, keep, np.zeros(1, np.int64), np.empty((1, 6)), _C.Center.median,
                    _C.Variance.per_example, _C.Mode.online, _C.Offline.one_sided, 7, 1e-6,
                    _C.Signal.scaled_confidence, 0)
    with pytest.raises(TypeError, match=r"which: miakit._C.HeadQuantity"):
        _C.head(np.zeros((2, 3)), None, np.zeros((4, 3)), None, np.empty(2), 1, 0)
    with pytest.raises(TypeError, match=r"which: miakit._C.ProbeReduction"):
        _C.probe_reduce(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), np.empty(2), np.empty(2),
                        0, False, 0)
    one = np.zeros(1, np.int64)
    with pytest.raises(TypeError, match=r"sides: miakit._C.KsSides"):
        _C.ks_unsorted(np.zeros(2), one, one + 2, np.ones(2), one, one + 2,
                       *(np.empty(1) for _ in range(4)), 3)


def test_members_give_the_public_results(rng):
    logits = rng.normal(size=(5, 4))
    labels = rng.integers(0, 4, 5)
    for name, member in _options.SIGNALS.items():
        out = np.empty(5)
        _C.signal(logits, labels.astype(np.int64), out, member, 0)
        np.testing.assert_array_equal(out, getattr(mk.signals, name)(logits, labels))


# ---------------------------------------------------------------- the binding's checks


def test_signal_binding_names_the_argument():
    logits, labels, out = _signal_args()
    k = _C.Signal.loss
    with pytest.raises(ValueError, match="labels: expected int64, got int32"):
        _C.signal(logits, labels.astype(np.int32), out, k, 0)
    with pytest.raises(ValueError, match=r"out: expected float32 or float64, got int64"):
        _C.signal(logits, labels, np.empty(3, np.int64), k, 0)
    with pytest.raises(ValueError, match=r"labels: expected the leading shape of logits "
                                         r"\[3, 4\], got \[2\]"):
        _C.signal(logits, labels[:2], out, k, 0)
    with pytest.raises(ValueError, match=r"out: expected the leading shape of logits"):
        _C.signal(logits, labels, np.empty((3, 1)), k, 0)
    with pytest.raises(ValueError, match="logits: expected a floating-point array, got int64"):
        _C.signal(np.zeros((3, 4), np.int64), labels, out, k, 0)


def test_lira_bindings_name_the_argument():
    z = np.zeros((4, 6, 1))
    keep = np.zeros((4, 6), np.uint8)
    stats = [np.zeros((6, 1)) for _ in range(4)]
    counts = [np.zeros(6, np.int64) for _ in range(2)]
    c, s = _C.Center.median, _C.Signal.scaled_confidence
    with pytest.raises(ValueError, match=r"keep: expected shape \[4, 6\] .*got \[4, 5\]"):
        _C.lira_fit(z, None, keep[:, :5], *stats, *counts, c, s, 0)
    with pytest.raises(ValueError, match="keep: expected uint8 or bool, got float64"):
        _C.lira_fit(z, None, keep.astype(float), *stats, *counts, c, s, 0)
    with pytest.raises(ValueError, match=r"scores: expected \[M, N, A\], got \[4, 6\]"):
        _C.lira_fit(z[..., 0], None, keep, *stats, *counts, c, s, 0)
    with pytest.raises(ValueError, match=r"sd_out: expected float64, got float32"):
        _C.lira_fit(z, None, keep, *stats[:3], stats[3].astype(np.float32), *counts, c, s, 0)
    with pytest.raises(ValueError, match=r"n_out: expected shape \[6\]"):
        _C.lira_fit(z, None, keep, *stats, counts[0], counts[1][:5], c, s, 0)
    with pytest.raises(ValueError, match="labels: expected int64, got int32"):
        _C.lira_fit(np.zeros((4, 6, 1, 3)), np.zeros(6, np.int32), keep, *stats, *counts, c, s, 0)
    with pytest.raises(ValueError, match=r"mu_out: expected shape \[6, 1\]"):
        _C.lira_score(stats[0], stats[0], np.zeros((6, 2)), *stats[2:], np.empty(6),
                      _C.Mode.online, _C.Offline.one_sided, 0)
    with pytest.raises(ValueError, match=r"out: expected shape \[2, 6\]"):
        _C.lira_loo(z, None, keep, np.zeros(2, np.int64), np.empty((1, 6)), c,
                    _C.Variance.per_example, _C.Mode.online, _C.Offline.one_sided,
                    _C.References.balanced, 1e-6, s, 0)
    with pytest.raises(ValueError, match="targets: expected int64, got int32"):
        _C.lira_loo(z, None, keep, np.zeros(1, np.int32), np.empty((1, 6)), c,
                    _C.Variance.per_example, _C.Mode.online, _C.Offline.one_sided,
                    _C.References.balanced, 1e-6, s, 0)


def test_shared_checks_report_what_was_received():
    with pytest.raises(ValueError, match=r"out: expected a float64 array of shape \(2,\), "
                                         r"got float32 \[2\]"):
        _C.ghost_norms(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)), np.empty(2, np.float32),
                       True, False, 0)
    with pytest.raises(ValueError, match=r"x_ratio: expected a 2-D float64 array .*got int64"):
        _C.rmia_count(np.zeros((2, 3), np.int64), np.zeros((2, 4)), None, np.empty((2, 4)),
                      np.empty((2, 3)), 1.0, 0)
