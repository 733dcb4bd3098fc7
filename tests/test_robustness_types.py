"""Arguments of odd types: torch tensors with lazy conjugate or negative bits, bfloat16 and
float16 tensors, complex numbers, numeric strings, out-of-range seeds and numbers beyond
the float range. Each is read correctly or refused with an error naming the argument
(on the command line: the flag the user typed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import miakit as mk
from miakit.cli import main

torch = pytest.importorskip("torch")

N = 40


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    keep = mk.shadow.balanced_keep(8, N, seed=0)
    labels = rng.integers(0, 3, N)
    logits = rng.normal(size=(8, N, 3))
    logits[np.arange(8)[:, None], np.arange(N), labels] += 1.5 * keep
    scores = mk.signals.scaled_confidence(logits, labels)
    return {"keep": keep, "labels": labels, "logits": logits, "scores": scores,
            "s": scores.ravel(), "y": keep.ravel()}


def _real_array_calls(d):
    """(name of the array argument, a valid value for it, a call taking that argument)."""
    p = np.linspace(0.0, 1.0, 5)
    return [
        ("scores", d["s"], lambda v: mk.metrics.auc(v, d["y"])),
        ("scores", d["s"], lambda v: mk.metrics.RankedScores(v, d["y"])),
        ("scores", d["s"], lambda v: mk.bounds.empirical_epsilon(v, d["y"])),
        ("shadow_scores", d["scores"], lambda v: mk.lira.leave_one_out(v, d["keep"])),
        ("a", d["s"], lambda v: mk.ks.ks_2samp(v, d["s"])),
        ("losses", d["s"], lambda v: mk.thresholds.max_accuracy_threshold(v, d["y"])),
        ("p_values", p, mk.exposure.benjamini_hochberg),
        ("fpr", p, lambda v: mk.bounds.dp_tpr_bound(v, 1.0)),
    ]


def test_conjugate_complex_tensors_are_refused_naming_the_argument(data):
    for name, valid, call in _real_array_calls(data):
        lazy = torch.tensor(valid, dtype=torch.complex128).conj()
        assert lazy.is_conj()
        with pytest.raises(TypeError, match=f"^{name}: .*complex"):
            call(lazy)


def test_negative_bit_tensors_are_read_with_their_sign(data):
    # x.conj().imag is a real view with torch's lazy negative bit: -imag(x)
    x = torch.tensor(data["s"] * 1j, dtype=torch.complex128)
    lazy = x.conj().imag
    assert lazy.is_neg()
    plain = -data["s"]
    assert mk.metrics.auc(lazy, data["y"]) == mk.metrics.auc(plain, data["y"])
    assert mk.ks.ks_2samp(lazy, data["s"]).statistic == mk.ks.ks_2samp(plain,
                                                                       data["s"]).statistic
    # a tensor the compiled kernels read (a DLPack capsule would drop the bit)
    z = torch.tensor(data["logits"][0] * 1j, dtype=torch.complex64).conj().imag
    assert z.is_neg()
    lab = torch.as_tensor(data["labels"])
    want = mk.signals.loss(torch.tensor(-data["logits"][0], dtype=torch.float32), lab)
    assert torch.equal(mk.signals.loss(z, lab), want)


@pytest.mark.parametrize("kind", ["complex", "strings"])
def test_numpy_complex_and_numeric_strings_are_refused(data, kind):
    for name, valid, call in _real_array_calls(data):
        value = valid + 0j if kind == "complex" else valid.astype(str)
        with pytest.raises(TypeError, match=f"^{name}: "):
            call(value)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_tensors_give_the_float64_result_of_their_values(data, dtype):
    low = torch.tensor(data["scores"], dtype=getattr(torch, dtype))
    exact = low.double().numpy()  # the same values in float64
    y, keep = data["y"], data["keep"]
    assert mk.metrics.auc(low.ravel(), y) == mk.metrics.auc(exact.ravel(), y)
    assert mk.metrics.tpr_at_fpr(low.ravel(), y, 0.1) == mk.metrics.tpr_at_fpr(
        exact.ravel(), y, 0.1)
    assert repr(mk.metrics.leakage_test(low.ravel(), y)) == repr(  # NaN fields: by repr
        mk.metrics.leakage_test(exact.ravel(), y))
    assert mk.metrics.RankedScores.by_columns(low, keep).auc() == \
        mk.metrics.RankedScores.by_columns(exact, keep).auc()
    for lo, hi in zip(mk.metrics.roc(low.ravel(), y), mk.metrics.roc(exact.ravel(), y)):
        np.testing.assert_array_equal(lo, hi)
    np.testing.assert_array_equal(mk.thresholds.calibrated_leave_one_out(low, keep),
                                  mk.thresholds.calibrated_leave_one_out(exact, keep))
    assert mk.thresholds.max_accuracy_threshold(low[0], keep[0]) == \
        mk.thresholds.max_accuracy_threshold(exact[0], keep[0])
    assert repr(mk.ks.ks_2samp(low[0], low[1])) == repr(mk.ks.ks_2samp(exact[0], exact[1]))
    assert repr(mk.bounds.empirical_epsilon(low.ravel(), y)) == repr(
        mk.bounds.empirical_epsilon(exact.ravel(), y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 8 models: a few spreads are clamped, alike
        np.testing.assert_array_equal(mk.lira.leave_one_out(low, keep),
                                      mk.lira.leave_one_out(exact, keep))
    z = torch.tensor(data["logits"], dtype=getattr(torch, dtype))
    lab = torch.as_tensor(data["labels"])
    np.testing.assert_allclose(mk.signals.scaled_confidence(z, lab).numpy(),
                               mk.signals.scaled_confidence(z.float(), lab).numpy(),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("value", [np.complex128(0.1), 0.1 + 0j])
def test_complex_scalars_are_refused(data, value):
    with pytest.raises(TypeError, match="^fpr: "):
        mk.metrics.tpr_at_fpr(data["s"], data["y"], value)
    with pytest.raises(TypeError, match="^level: "):
        mk.metrics.auc_ci(data["s"], data["y"], level=torch.tensor(0.9 + 0j))


@pytest.mark.parametrize("value", [float("inf"), 2**1100])
def test_fpr_beyond_the_float_range_is_a_value_error(data, value):
    with pytest.raises(ValueError, match="^fpr: "):
        mk.metrics.tpr_at_fpr(data["s"], data["y"], value)
    with pytest.raises(ValueError, match="^fpr: "):
        mk.metrics.RankedScores(data["s"], data["y"]).point(value)
    with pytest.raises(ValueError, match="^mu: "):
        mk.bounds.gdp_tpr_bound(0.1, value)
    with pytest.raises(ValueError, match="^fdr: "):
        mk.exposure.min_rank_references(10, value)


def test_unknown_signals_are_value_errors_listing_the_choices(data):
    q = mk.signals.confidence(data["logits"], data["labels"])
    with pytest.raises(ValueError, match=r"^signal: expected one of \['correct', 'prob'\]"):
        mk.memorization.feldman_zhang(q, data["keep"], signal="x")
    with pytest.raises(ValueError, match=r"^signal: expected one of \["):
        mk.studies.ks_leakage.KsLeakageConfig(signal="x")
    with pytest.raises(ValueError, match=r"^kind: expected one of \["):
        mk.shadow.import_signals("never-written", data["scores"], data["keep"], kind="x")


BAD_SEEDS = [(-1, ValueError), (True, TypeError), (2.5, TypeError), ("3", TypeError),
             (2**64, ValueError)]


def _seeded_calls(data):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    studies = mk.studies
    return {
        "balanced_keep": lambda s: mk.shadow.balanced_keep(4, 10, seed=s),
        "synthetic": lambda s: mk.datasets.synthetic(seed=s),
        "digits subset_seed": lambda s: mk.datasets.digits(50, subset_seed=s),
        "digits planted_seed": lambda s: mk.datasets.digits(50, planted=0.1, planted_seed=s),
        "source_accuracy": lambda s: mk.ks.source_accuracy(data["s"], data["s"], seed=s),
        "domias_scores": lambda s: mk.generative.domias_scores(x, x, x, seed=s),
        "risk_attack": lambda s: mk.generative.risk_attack(x[:, 0], x[:, 1], seed=s),
        "membership_advantage": lambda s: mk.generative.membership_advantage(
            x[:, 0], x[:, 1], seed=s),
        "train_heads": lambda s: mk.shadow.train_heads(
            x.astype(np.float32), rng.integers(0, 2, 60), mk.shadow.balanced_keep(4, 60),
            seed=s, progress=False),
        "TrainingConfig": lambda s: mk.shadow.TrainingConfig(seed=s),
        "ModelRunConfig": lambda s: mk.shadow.ModelRunConfig(seed=s),
        "BudgetConfig": lambda s: studies.budget.BudgetConfig(seed=s),
        "SweepConfig": lambda s: studies.sweep.SweepConfig(seed=s),
        "KsLeakageConfig": lambda s: studies.ks_leakage.KsLeakageConfig(seed=s),
        "GenerativeConfig": lambda s: studies.generative.GenerativeConfig(seed=s),
        "CapacityConfig": lambda s: studies.capacity.CapacityConfig(seed=s),
        "PartialLayersConfig": lambda s: studies.partial_layers.PartialLayersConfig(seed=s),
        "DpCurvatureConfig": lambda s: studies.dp_curvature.DpCurvatureConfig(seed=s),
    }


@pytest.mark.parametrize("seed, error", BAD_SEEDS)
def test_bad_seeds_are_refused_naming_the_argument(data, seed, error):
    for what, call in _seeded_calls(data).items():
        with pytest.raises(error, match=r"^(\w+_)?seed: ") as info:
            call(seed)
        if error is ValueError:
            assert "non-negative int below 2**64" in str(info.value), what


def test_seeds_beyond_32_bits_reach_scikit_learn():
    x = np.random.default_rng(0).normal(size=(60, 3))
    for seed in (2**32, 2**64 - 1):
        assert mk.generative.domias_scores(x, x, x, n_components=2, seed=seed).shape == (60,)
        mk.generative.membership_advantage(x[:, 0], x[:, 1], method="classifier", seed=seed)


def _cli_error(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 1, err
    assert err.startswith("miakit: error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, flag", [
    (["shadow", "--n-examples", "0"], "--n-examples"),
    (["shadow", "--n-examples", "-1"], "--n-examples"),
    (["shadow", "--models", "0"], "--models"),
    (["shadow", "--seed", "-1"], "--seed"),
    (["audit", "--seed", "-1"], "--seed"),
    (["audit", "--n-examples", "0"], "--n-examples"),
    (["generative", "--pca", "-1"], "--pca"),
    (["generative", "--top", "-1"], "--top"),
    (["generative", "--level", "95"], "--level"),
    (["leakage", "--seeds", "0"], "--seeds"),
    (["dp-curvature", "--epsilon", "-1"], "--epsilon"),
    (["dp-curvature", "--models", "-1"], "--models"),
    (["sweep", "--seed", "-1"], "--seed"),
    (["capacity", "--width", "0"], "--width"),
    (["partial-layers", "--seed", "2.5"], None),  # argparse: not an int (exit 2)
])
def test_cli_errors_name_the_flag(capsys, tmp_path, argv, flag):
    out = tmp_path / "out"
    full = [argv[0], "--out", str(out), *argv[1:]]
    if flag is None:
        with pytest.raises(SystemExit) as info:
            main(full)
        assert info.value.code == 2 and "--seed" in capsys.readouterr().err
        return
    err = _cli_error(capsys, full + (["--quiet"] if argv[0] in ("shadow", "audit") else []))
    assert err.startswith(f"miakit: error: {flag}: expected "), err
    assert not out.exists()


def test_api_config_errors_keep_the_option_names():
    with pytest.raises(ValueError, match=r"^pca: expected an int >= 0, got -1"):
        mk.studies.generative.GenerativeConfig(pca=-1)
    with pytest.raises(ValueError, match=r"^n_examples: "):
        mk.shadow.TrainingConfig(n_examples=0)
