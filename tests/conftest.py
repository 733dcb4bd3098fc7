"""Shared fixtures and data generators for the miakit tests.

The tests import the *installed* miakit (the package source lives in python/miakit,
which is not on sys.path), and compare it with the float64 references in
tests/references.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


def random_keep(rng, n_models: int, n_examples: int, n_in: int | None = None) -> np.ndarray:
    """keep [M, N] bool with exactly ``n_in`` (default M // 2) IN models per column, at
    random positions (independent of miakit.shadow)."""
    n_in = n_models // 2 if n_in is None else n_in
    keep = np.zeros((n_models, n_examples), dtype=bool)
    for n in range(n_examples):
        keep[rng.permutation(n_models)[:n_in], n] = True
    return keep


def member_scores(rng, keep: np.ndarray, n_aug: int, shift: float = 1.5) -> np.ndarray:
    """Scores [M, N, A] float64 with a real membership signal: members shifted up, and a
    per-example difficulty offset so that every column has its own centre."""
    n_models, n_examples = keep.shape
    difficulty = rng.normal(scale=3.0, size=(1, n_examples, 1))
    spread = rng.uniform(0.5, 2.0, size=(1, n_examples, 1))
    noise = rng.normal(size=(n_models, n_examples, n_aug)) * spread
    return difficulty + noise + shift * keep[:, :, None]


def member_logits(rng, keep: np.ndarray, labels: np.ndarray, n_aug: int, n_classes: int,
                  shift: float = 2.0) -> np.ndarray:
    """Logits [M, N, A, C] float64 with a real membership signal: the true-class logit is
    raised for members."""
    n_models, n_examples = keep.shape
    z = rng.normal(scale=2.0, size=(n_models, n_examples, n_aug, n_classes))
    bump = shift * keep[:, :, None] + rng.normal(scale=1.0, size=(1, n_examples, 1))
    z[:, np.arange(n_examples), :, labels] += np.moveaxis(bump, 1, 0)
    return z
