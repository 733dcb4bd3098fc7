"""Explicit memorization capacity: C(n) against the binomial counted exactly, its
inverse, and the study (API = command, resume, options named in errors)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import miakit as mk
from miakit.capacity import capacity_bits, n_at_capacity
from miakit.cli import main
from miakit.studies import capacity as study

TINY = dict(n=[2, 6], widths=[1, 2], augmentations=["none", "flip-crop1"], epochs=8,
            negatives=16, plot=False)
TINY_ARGV = ["--n", "2", "6", "--width", "1", "2", "--augmentation", "none", "flip-crop1",
             "--epochs", "8", "--negatives", "16", "--no-plot", "--quiet"]


@pytest.mark.parametrize("total", [1, 2, 7, 30, 64])
def test_exact_bits_are_log2_of_the_binomial_for_every_n(total):
    n = np.arange(total + 1)
    want = np.array([math.log2(math.comb(total, k)) for k in n])
    np.testing.assert_allclose(capacity_bits(n, total), want, rtol=1e-12, atol=1e-9)


def test_scalar_in_scalar_out_and_symmetry():
    assert isinstance(capacity_bits(3, 10), float)
    assert capacity_bits(3, 10) == pytest.approx(math.log2(120), rel=1e-13)
    assert capacity_bits(30, 100) == pytest.approx(capacity_bits(70, 100), rel=1e-12)
    assert capacity_bits(np.array([[1, 2], [3, 4]]), 10).shape == (2, 2)


def test_approximation_error_is_the_stirling_and_finite_n_terms():
    total = 1e6
    n = np.array([10, 100, 1000, 10000])
    err = capacity_bits(n, total, exact=False) - capacity_bits(n, total)
    # n log2(N/n) + n/ln2 drops -log2(2 pi n)/2 (Stirling on n!) and, in nats, the
    # -n^2/(2N) - n^3/(6N^2) of (N - n) log(1 - n/N) + n and the n/(2N) of Stirling on
    # N!/(N-n)!: what is left is 1/(12 n) nats and smaller
    nats = n ** 2 / (2 * total) + n ** 3 / (6 * total ** 2) - n / (2 * total)
    predicted = np.log2(2 * np.pi * n) / 2 + nats / math.log(2)
    np.testing.assert_allclose(err, predicted, atol=0.02)
    assert np.all(err > 0)
    assert capacity_bits(0, total, exact=False) == 0.0


def test_no_overflow_at_a_billion():
    total = 1e9
    got = capacity_bits([1, 1000, 5e8], total)
    assert np.all(np.isfinite(got))
    assert got[0] == pytest.approx(math.log2(total), rel=1e-12)
    # a billion choose a thousand, from the product written out in logs
    k = np.arange(1000)
    want = (np.sum(np.log(total - k)) - math.lgamma(1001)) / math.log(2)
    assert got[1] == pytest.approx(want, rel=1e-12)
    assert got[2] == pytest.approx(total - 0.5 * math.log2(math.pi * total / 2), rel=1e-9)


def test_n_at_capacity_inverts_the_exact_bits():
    total = 1438
    params = np.array([1.0, 67, 199, 661, 1400])
    n = n_at_capacity(params, total)
    np.testing.assert_allclose(capacity_bits(n, total), params, rtol=1e-9)
    assert np.all(n <= total / 2)
    assert math.isnan(n_at_capacity(capacity_bits(719, total) + 1, total))
    assert n_at_capacity(0, total) == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda: capacity_bits(11, 10), "n: expected values in"),
    (lambda: capacity_bits(-1, 10), "n: expected values in"),
    (lambda: capacity_bits(1, 0.5), "total"),
    (lambda: n_at_capacity(-3, 10), "params: expected"),
])
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _rows(report):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in report["rows"]]


def test_study_api_equals_command_and_resumes_without_training(tmp_path, capsys,
                                                              monkeypatch):
    r = study.run(out_dir=tmp_path / "api", **TINY)
    assert [(row["model"], row["augmentation"], row["n"]) for row in r["rows"]] == [
        (m, a, n) for m in ("mlp-1", "mlp-2") for a in ("none", "flip-crop1") for n in (2, 6)]
    for row in r["rows"]:
        assert 0.0 <= row["heldout_accuracy"] <= 1.0
        assert row["capacity_bits"] == capacity_bits(row["n"], r["total"])
    assert [m["params"] for m in r["models"]] == [64 + 3, 2 * 64 + 5]
    assert main(["capacity", "--out", str(tmp_path / "cli"), *TINY_ARGV]) == 0
    assert "mlp-2: 133 params" in capsys.readouterr().out
    saved = json.loads((tmp_path / "cli" / "capacity.json").read_text())
    assert _rows(saved) == _rows(r) and saved["complete"]

    def refuse(*args, **kwargs):
        raise AssertionError("a finished row was trained again")

    monkeypatch.setattr(study, "_train", refuse)
    again = study.run(out_dir=tmp_path / "cli", **TINY)
    assert _rows(again) == _rows(r)
    assert main(["capacity", "--out", str(tmp_path / "cli"), *TINY_ARGV]) == 0
    # a wider grid in the same folder trains only what is new
    with pytest.raises(AssertionError, match="trained again"):
        study.run(out_dir=tmp_path / "cli", **dict(TINY, n=[2, 6, 10]))
    with pytest.raises(ValueError, match="out_dir: .* different setup"):
        study.run(out_dir=tmp_path / "cli", **dict(TINY, epochs=9))


def test_killed_study_keeps_its_finished_rows(tmp_path, monkeypatch):
    real = study._train
    calls = []

    def dies_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(study, "_train", dies_second)
    with pytest.raises(KeyboardInterrupt):
        study.run(out_dir=tmp_path, **TINY)
    partial = json.loads((tmp_path / "capacity.json").read_text())
    assert not partial["complete"] and len(partial["rows"]) == 2  # both widths of one n
    monkeypatch.setattr(study, "_train", real)
    full = study.run(out_dir=tmp_path, **TINY)
    assert _rows(full)[:1] == [r for r in _rows(partial) if r["model"] == "mlp-1"]
    assert _rows(full) == _rows(study.run(**TINY))


def test_feature_vectors_take_no_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5)).astype(np.float32)
    r = study.run(x, n=[3], widths=[4], epochs=5, dataset="mine")
    assert r["augmentations"] == ["none"] and r["dataset"] == "mine"
    assert r["models"][0]["params"] == 5 * 4 + 9
    with pytest.raises(ValueError, match="augmentations: feature vectors"):
        study.run(x, n=[3], augmentations=["flip"], epochs=1)
    np.save(tmp_path / "x.npy", x)
    assert main(["capacity", "--features", str(tmp_path / "x.npy"), "--out",
                 str(tmp_path / "o"), "--n", "3", "--width", "4", "--epochs", "5",
                 "--no-plot", "--quiet"]) == 0
    saved = json.loads((tmp_path / "o" / "capacity.json").read_text())
    assert _rows(saved) == _rows(r)


@pytest.mark.parametrize("options, match", [
    (dict(n=[0]), "n: expected an int >= 1"),
    (dict(n=[5000]), "n: expected sizes below the pool"),
    (dict(widths=[]), "widths: expected at least one value"),
    (dict(augmentations=["rotate"]), "augmentations: expected one of"),
    (dict(heldout=1.0), "heldout: expected"),
    (dict(epochs=0), "epochs: expected an int >= 1"),
    (dict(device="gpu"), "device: expected 'cpu', 'cuda'"),
])
def test_bad_options_name_the_option(options, match):
    with pytest.raises(ValueError, match=match):
        study.run(**options)


def test_bad_features_and_flags_are_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="features: expected numbers"):
        study.run(np.zeros(10))
    with pytest.raises(SystemExit):
        main(["capacity", "--augmentation", "rotate"])
    assert "--augmentation" in capsys.readouterr().err


def test_figure_is_drawn(tmp_path):
    r = study.run(**dict(TINY, plot=True, augmentations=["none"]), out_dir=tmp_path)
    assert (tmp_path / "capacity.png").stat().st_size > 0
    assert r["files"]["plot"].endswith("capacity.png")
    assert mk.studies.capacity.CapacityResult.from_json(tmp_path / "capacity.json") == r
