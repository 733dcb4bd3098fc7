"""miakit.thresholds against plain float64 references (docs/methods/thresholds.md)."""

from __future__ import annotations

import numpy as np
import pytest
import references as ref
import torch
from conftest import random_keep

import miakit as mk

SIGNS = {"loss": -1.0, "confidence": 1.0, "max_confidence": 1.0, "hinge": 1.0,
         "scaled_confidence": 1.0}


@pytest.mark.parametrize("name", list(SIGNS))
@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (3, 7, 2, 5), (2, 9, 1, 3)])
def test_signal_attacks_match_the_reference(name, shape, rng):
    z = rng.normal(size=shape) * 3
    y = rng.integers(0, shape[-1], shape[1])
    got = mk.thresholds.SIGNAL_SCORES[name](z, y)
    want = SIGNS[name] * ref.signal(z, y[:, None], name).mean(-1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # [M, N, C] (one view), [N, C] (one model), float16, torch, strided
    np.testing.assert_allclose(mk.thresholds.SIGNAL_SCORES[name](z[:, :, 0], y),
                               SIGNS[name] * ref.signal(z[:, :, 0], y, name), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(mk.thresholds.SIGNAL_SCORES[name](z[0, :, 0], y),
                               SIGNS[name] * ref.signal(z[0, :, 0], y, name), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(mk.thresholds.SIGNAL_SCORES[name](torch.from_numpy(z), y), want,
                               rtol=1e-12, atol=1e-12)
    h = z.astype(np.float16)
    np.testing.assert_allclose(mk.thresholds.SIGNAL_SCORES[name](h, y),
                               SIGNS[name] * ref.signal(h.astype(np.float64), y[:, None],
                                                        name).mean(-1), rtol=1e-5, atol=1e-5)


def test_signal_attacks_reject_bad_labels(rng):
    z = rng.normal(size=(2, 4, 1, 3))
    with pytest.raises(ValueError, match="labels"):
        mk.thresholds.loss(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="labels"):
        mk.thresholds.loss(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="logits"):
        mk.thresholds.loss(np.where(z > 1, np.nan, z), np.zeros(4, int))


def test_calibrated_matches_the_reference(rng):
    m, n = 6, 20
    keep = random_keep(rng, m, n)
    s = rng.normal(size=(m, n))
    got = mk.thresholds.calibrated(s[0], s[1:], keep[1:])
    want = [s[0, j] - s[1:, j][~keep[1:, j]].mean() for j in range(n)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    for references in ("balanced", "all"):
        got = mk.thresholds.calibrated_leave_one_out(s, keep, references=references)
        want = ref.calibrated_leave_one_out(s, keep, range(m), references)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    paired = mk.shadow.balanced_keep(4, n, seed=0)
    got = mk.thresholds.calibrated_leave_one_out(s[:4], paired, targets=[2])
    want = mk.thresholds.calibrated(s[2], s[[0, 1]], paired[[0, 1]])
    np.testing.assert_allclose(got[0], want, rtol=1e-12)


@pytest.mark.parametrize("big", [1e8, 1e12, 1e16])
def test_calibrated_leave_one_out_exact_when_one_model_dominates(big, rng):
    # one diverged model's loss dwarfs the others': its own references' mean was the OUT
    # total less its score, which kept only the total's rounding (every digit gone at 1e16)
    m, n = 8, 30
    keep = mk.shadow.balanced_keep(m, n, seed=3)
    s = rng.uniform(0.5, 2.0, size=(m, n))
    s[0] = np.where(keep[0], s[0], big)
    for references in ("balanced", "all"):
        got = mk.thresholds.calibrated_leave_one_out(s, keep, references=references)
        want = ref.calibrated_leave_one_out(s, keep, (0, 1, 5), references)
        np.testing.assert_allclose(got[[0, 1, 5]], want, rtol=1e-12, atol=1e-12)


def test_calibrated_bad_input(rng):
    keep = random_keep(rng, 3, 5)
    with pytest.raises(ValueError, match="ref_scores"):
        mk.thresholds.calibrated(np.zeros(4), np.zeros((3, 5)), keep)
    with pytest.raises(ValueError, match="scores"):
        mk.thresholds.calibrated_leave_one_out(np.full((3, 5), np.nan), keep)
    with pytest.raises(ValueError, match="keep"):
        mk.thresholds.calibrated_leave_one_out(np.zeros((3, 5)), keep[:2])


def test_bayes_baseline(rng):
    c = rng.random((4, 30)) < 0.7
    y = rng.random((4, 30)) < 0.5
    b = mk.thresholds.bayes_baseline(c, y)
    assert b.train_accuracy == c[y].mean() and b.test_accuracy == c[~y].mean()
    assert b.accuracy == pytest.approx(0.5 + (c[y].mean() - c[~y].mean()) / 2, abs=1e-15)
    with pytest.raises(ValueError, match="members"):
        mk.thresholds.bayes_baseline(c, np.ones_like(y))
    with pytest.raises(ValueError, match="correct"):
        mk.thresholds.bayes_baseline(c * 2.0, y)


@pytest.mark.parametrize("n", [2, 9, 200])
def test_max_accuracy_threshold_is_the_best_threshold(n, rng):
    losses = np.round(rng.exponential(size=n), 1)  # ties
    y = np.arange(n) % 2 == 0
    r = mk.thresholds.max_accuracy_threshold(losses, y)
    best = max([0.5] + [0.5 + ((losses[y] <= t).mean() - (losses[~y] <= t).mean()) / 2
                        for t in np.unique(losses)])
    assert r.accuracy == pytest.approx(best, abs=1e-15)
    if np.isfinite(r.threshold):
        acc = 0.5 + ((losses[y] <= r.threshold).mean() - (losses[~y] <= r.threshold).mean()) / 2
        assert acc == pytest.approx(r.accuracy, abs=1e-15)
    with pytest.raises(ValueError, match="losses"):
        mk.thresholds.max_accuracy_threshold(np.full(n, np.nan), y)
