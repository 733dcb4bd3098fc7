"""The partial-layers attack: its accuracies against counting and brute force, the frozen
lower layers, and the study through the API and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from miakit import partial_layers as pl
from miakit.cli import main
from miakit.metrics import clopper_pearson
from miakit.studies import partial_layers as study


def _logits(rng, n=120, c=4):
    y = rng.integers(0, c, n)
    z = rng.normal(size=(n, c)).astype(np.float32)
    z[np.arange(n), y] += rng.normal(1.0, 1.0, n).astype(np.float32)
    return z, y


def test_bayes_accuracy_is_the_share_of_right_calls():
    rng = np.random.default_rng(0)
    z, y = _logits(rng)
    members = np.arange(len(y)) < len(y) // 2
    r = pl.attack_logits(z, y, members)
    correct = z.argmax(1) == y
    # "member" exactly when correct: right calls are correct members and wrong non-members
    right = int((correct & members).sum() + (~correct & ~members).sum())
    assert r.bayes_accuracy == pytest.approx(right / len(y))
    assert r.bayes_ci == pytest.approx(clopper_pearson(right, len(y)))
    assert r.train_accuracy == correct[members].mean()
    assert r.test_accuracy == correct[~members].mean()
    np.testing.assert_array_equal(r.correct, correct)


def test_mat_is_the_best_threshold_by_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(5):
        z, y = _logits(rng, n=60)
        members = rng.random(60) < 0.5
        members[:2] = [True, False]
        r = pl.attack_logits(z, y, members)
        loss = r.loss
        best = 0.5  # calling nobody a member
        for tau in loss:
            called = loss <= tau
            best = max(best, 0.5 * (called[members].mean() + (~called[~members]).mean()))
        assert r.mat_accuracy == pytest.approx(best)
        # the loss is the cross-entropy of the logits
        ref = torch.nn.functional.cross_entropy(torch.as_tensor(z, dtype=torch.float64),
                                                torch.as_tensor(y), reduction="none")
        np.testing.assert_allclose(loss, ref.numpy(), rtol=1e-12)


def _lower():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.ReLU(), torch.nn.Dropout(0.5))


def test_lower_layers_stay_bit_identical():
    lower = _lower()
    lower.train()
    before = {k: v.clone() for k, v in lower.state_dict().items()}
    rng = np.random.default_rng(0)
    x = rng.random((80, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 80)
    r = pl.partial_layers(lower, x[:40], y[:40], x[40:], y[40:], np.arange(40) < 20,
                          epochs=5)
    after = lower.state_dict()
    assert before.keys() == after.keys()
    for k in before:  # BatchNorm's running statistics included
        assert torch.equal(before[k], after[k]), k
    assert lower.training  # the training flags are given back
    assert r.logits.shape == (40, 3) and r.public_accuracy is not None


def test_a_lower_layer_that_changes_is_refused():
    class Drifting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def forward(self, x):
            self.w.add_(1.0)
            return x * self.w

    with pytest.raises(RuntimeError, match="lower: the kept layers changed"):
        pl.frozen_features(Drifting(), torch.ones(4, 3))


def test_a_feature_function_is_accepted():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    r = pl.partial_layers(lambda t: t[:, :2] * 2, x[:30], y[:30], x[30:], y[30:],
                          np.arange(30) < 15, epochs=30)
    assert r.logits.shape == (30, 2)


def test_bad_arguments_name_themselves():
    z, y = _logits(np.random.default_rng(0), n=10)
    with pytest.raises(ValueError, match="members: expected both"):
        pl.attack_logits(z, y, np.ones(10, bool))
    with pytest.raises(ValueError, match="labels: expected 10 integer labels"):
        pl.attack_logits(z, y[:5], np.arange(10) < 5)
    with pytest.raises(ValueError, match="head: expected one of"):
        pl.partial_layers(_lower(), np.zeros((4, 1, 8, 8)), [0, 1, 0, 1],
                          np.zeros((4, 1, 8, 8)), [0, 1, 0, 1], [1, 1, 0, 0], head="tree")
    with pytest.raises(TypeError, match="lower: expected a torch.nn.Module"):
        pl.frozen_features(3, np.zeros((2, 2)))


TINY = dict(augmentations=["none", "flip+crop"], n_private=40, n_public=60, n_evaluation=40,
            n_population=20, width=4, epochs=2, head_epochs=3, shadows=2)
TINY_ARGS = ["--augmentation", "none", "flip+crop", "--n-private", "40", "--n-public", "60",
             "--n-evaluation", "40", "--n-population", "20", "--width", "4", "--epochs", "2",
             "--head-epochs", "3", "--shadows", "2"]


def _stable(report):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in report["rows"]]


def test_study_api_equals_command(tmp_path, capsys):
    assert main(["partial-layers", "--out", str(tmp_path / "cli"), "--no-plot", "--quiet",
                 *TINY_ARGS]) == 0
    text = capsys.readouterr().out
    r = study.run(**TINY, out_dir=tmp_path / "api")
    cli = json.loads((tmp_path / "cli" / "partial_layers.json").read_text())
    assert _stable(cli) == _stable(r.to_dict())
    assert [(row["augmentation"], row["truncation"]) for row in r["rows"]] == [
        (a, t) for a in ("none", "flip+crop") for t in study.TRUNCATIONS]
    assert all("lira" in row and "rmia" in row for row in r["rows"])
    assert "| none | softmax |" in text
    assert (tmp_path / "api" / "partial_layers.png").is_file()


def test_study_bad_options_name_the_option(capsys):
    with pytest.raises(ValueError, match="augmentations"):
        study.PartialLayersConfig(augmentations=["rotate"])
    with pytest.raises(ValueError, match="n_private"):
        study.run(n_private=1500)
    with pytest.raises(TypeError, match="epoch: not an option"):
        study.run(epoch=3)
    with pytest.raises(ValueError, match="device: expected a torch device"):
        study.run(device="gpu0x")
    assert main(["partial-layers", "--shadows", "-1"]) != 0
    assert "shadows: expected an int >= 0, got -1" in capsys.readouterr().err
