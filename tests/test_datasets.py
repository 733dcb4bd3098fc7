"""The embedded datasets: their values, not only their shapes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import miakit as mk
from miakit.datasets import digits, load, synthetic

# ------------------------------------------------------------------------- synthetic
# synthetic(n=100, dim=8, n_classes=3, seed=0): SHA-256 of features and labels, first row
PINNED_SYNTHETIC = "a82530899d76650f"
PINNED_FIRST_ROW = [1.8990050554275513, -1.4013283252716064, -0.2693508565425873]


def _means_and_noise(**kw):
    """Split synthetic features into the class means and the noise: the same seed draws
    the same means, labels and noise whatever ``separation`` is, so separation 0 gives the
    noise alone and separation s the noise plus s times the unit-separation means."""
    zero = synthetic(separation=0.0, **kw)
    one = synthetic(separation=1.0, **kw)
    np.testing.assert_array_equal(zero.labels, one.labels)
    noise = zero.features[:, 0].astype(np.float64)
    means = one.features[:, 0].astype(np.float64) - noise
    return means, noise, one.labels


def test_synthetic_means_are_constant_per_class_and_have_the_documented_spread():
    n_classes, dim = 40, 64
    means, _, y = _means_and_noise(n=4000, dim=dim, n_classes=n_classes, seed=3)
    assert set(np.unique(y)) == set(range(n_classes))
    mu = np.stack([means[y == c][0] for c in range(n_classes)])
    for c in range(n_classes):  # one mean per class (up to float32 rounding of x)
        np.testing.assert_allclose(means[y == c], np.broadcast_to(mu[c], means[y == c].shape),
                                   atol=1e-5)
    # mu_c ~ N(0, separation^2 * n_classes / dim * I): 2560 draws, relative SE ~3%
    assert mu.mean() == pytest.approx(0.0, abs=4 * np.sqrt(n_classes / dim / mu.size))
    assert mu.var() == pytest.approx(n_classes / dim, rel=0.12)
    # ... which puts two class means sqrt(2 * n_classes) noise SDs apart on average
    d2 = ((mu[:, None] - mu[None]) ** 2).sum(-1)[np.triu_indices(n_classes, 1)]
    assert d2.mean() == pytest.approx(2 * n_classes, rel=0.12)


def test_synthetic_noise_is_standard_normal_and_isotropic():
    _, noise, _ = _means_and_noise(n=6000, dim=8, n_classes=3, seed=1)
    np.testing.assert_allclose(noise.mean(0), 0.0, atol=4 / np.sqrt(6000))
    cov = np.cov(noise, rowvar=False)
    np.testing.assert_allclose(np.diag(cov), 1.0, atol=0.08)
    np.testing.assert_allclose(cov[~np.eye(8, dtype=bool)], 0.0, atol=0.08)


def test_synthetic_separation_scales_the_means_only():
    kw = dict(n=300, dim=5, n_classes=4, seed=7)
    means, noise, _ = _means_and_noise(**kw)
    x = synthetic(separation=2.5, **kw).features[:, 0]
    np.testing.assert_allclose(x, noise + 2.5 * means, atol=1e-5)


def test_synthetic_labels_are_uniform_over_the_classes():
    y = synthetic(n=20_000, dim=2, n_classes=5, seed=0).labels
    assert y.dtype == np.int64 and y.min() == 0 and y.max() == 4
    np.testing.assert_allclose(np.bincount(y) / y.size, 0.2, atol=0.015)


def test_synthetic_is_reproducible_and_seeded():
    a, b = synthetic(n=50, dim=4, n_classes=3, seed=5), synthetic(n=50, dim=4, n_classes=3,
                                                                  seed=5)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = synthetic(n=50, dim=4, n_classes=3, seed=6)
    assert not np.array_equal(a.features, c.features)
    # the dataset behind every default run and test stays the same from release to release
    d = synthetic(n=100, dim=8, n_classes=3, seed=0)
    digest = hashlib.sha256(d.features.tobytes() + d.labels.tobytes()).hexdigest()
    assert digest[:16] == PINNED_SYNTHETIC
    np.testing.assert_allclose(d.features[0, 0, :3], PINNED_FIRST_ROW, rtol=1e-6)


def test_synthetic_metadata_and_layout():
    d = synthetic(n=30, dim=6, n_classes=4, separation=0.5, seed=2)
    assert d.features.shape == (30, 1, 6) and d.features.dtype == np.float32
    assert d.n_classes == 4 and d.views == ("identity",) and d.images is None
    assert d.info == {"n": 30, "dim": 6, "n_classes": 4, "separation": 0.5, "seed": 2}
    assert "30 examples, 6 features, 4 classes" in d.description


def test_synthetic_is_learnable_as_documented():
    """The default spread makes the classes well but not perfectly separable: the Bayes
    classifier (nearest true mean) is right on most but not all examples."""
    means, noise, y = _means_and_noise(n=3000, dim=32, n_classes=10, seed=0)
    x = means + noise
    mu = np.stack([means[y == c][0] for c in range(10)])
    pred = np.argmin(((x[:, None] - mu[None]) ** 2).sum(-1), axis=1)
    assert 0.8 < (pred == y).mean() < 0.995


@pytest.mark.parametrize("kw,match", [
    (dict(n=1), "n: expected an int >= 2"),
    (dict(dim=0), "dim: expected an int >= 1"),
    (dict(n_classes=1), "n_classes: expected an int >= 2"),
    (dict(n=2.0), "n: expected an int"),
    (dict(n_classes=True), "n_classes: expected an int"),
])
def test_synthetic_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        synthetic(**kw)


# ---------------------------------------------------------------------------- digits
sklearn_datasets = pytest.importorskip("sklearn.datasets")


def test_digits_values_match_scikit_learn():
    raw = sklearn_datasets.load_digits()
    d = digits()
    assert d.features.shape == (1797, 2, 64) and d.features.dtype == np.float32
    np.testing.assert_array_equal(d.labels, raw.target)
    np.testing.assert_allclose(d.features[:, 0], raw.data / 16.0, rtol=1e-7)
    assert d.features.min() == 0.0 and d.features.max() == 1.0
    np.testing.assert_array_equal(d.images[:, 0].reshape(1797, 64), d.features[:, 0])
    assert d.n_classes == 10 and np.bincount(d.labels).min() > 170


def test_digits_second_view_is_the_image_shifted_right_by_one_pixel():
    d = digits(n_examples=50, subset_seed=3)
    img = d.features[:, 0].reshape(50, 8, 8)
    shifted = d.features[:, 1].reshape(50, 8, 8)
    np.testing.assert_array_equal(shifted[:, :, 0], 0.0)
    np.testing.assert_array_equal(shifted[:, :, 1:], img[:, :, :-1])
    assert d.views == ("identity", "shift_right")
    one = digits(n_examples=50, subset_seed=3, views=1)
    assert one.views == ("identity",)
    np.testing.assert_array_equal(one.features[:, 0], d.features[:, 0])


def test_digits_subset_is_a_seeded_sorted_sample():
    raw = sklearn_datasets.load_digits()
    d = digits(n_examples=100, subset_seed=4)
    # recover the rows: each subset image is the raw image at a distinct, increasing index
    flat = raw.data / 16.0
    idx = [int(np.nonzero((flat == row).all(1))[0][0]) for row in d.features[:, 0]]
    assert idx == sorted(idx) and len(set(idx)) == 100
    np.testing.assert_array_equal(d.labels, raw.target[idx])
    want = np.sort(np.random.default_rng(4).permutation(1797)[:100])
    np.testing.assert_array_equal(raw.target[want], d.labels)
    np.testing.assert_array_equal(flat[want], d.features[:, 0])
    np.testing.assert_array_equal(digits(n_examples=100, subset_seed=4).features, d.features)
    assert not np.array_equal(digits(n_examples=100, subset_seed=5).labels, d.labels)
    assert d.info["subset_seed"] == 4 and digits().info["subset_seed"] is None


@pytest.mark.parametrize("kw,match", [(dict(views=3), "views: expected 1 or 2"),
                                      (dict(n_examples=1), r"n_examples: expected an int"),
                                      (dict(n_examples=1798), r"in \[2, 1797\]")])
def test_digits_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        digits(**kw)


def test_load_by_name():
    np.testing.assert_array_equal(load("synthetic", n=20, dim=3, seed=1).features,
                                  synthetic(n=20, dim=3, seed=1).features)
    assert load("digits", n_examples=10).labels.shape == (10,)
    assert mk.datasets.NAMES == ("digits", "synthetic")
    with pytest.raises(ValueError, match="name: expected one of"):
        load("cifar10")


# ------------------------------------------------------------------- planted records
def test_planted_relabel_changes_only_the_planted_labels():
    clean = digits(n_examples=600)
    d = digits(n_examples=600, planted=0.02, planted_seed=3)
    assert d.planted.dtype == bool and int(d.planted.sum()) == 12
    assert (d.labels[d.planted] != clean.labels[d.planted]).all()
    np.testing.assert_array_equal(d.labels[~d.planted], clean.labels[~d.planted])
    np.testing.assert_array_equal(d.features, clean.features)  # relabelled, same images
    assert d.info["planted"] == {"fraction": 0.02, "kind": "relabel", "seed": 3,
                                 "indices": np.flatnonzero(d.planted).tolist()}
    assert clean.planted is None and "planted" not in clean.info
    again = digits(n_examples=600, planted=0.02, planted_seed=3)
    np.testing.assert_array_equal(again.labels, d.labels)
    other = digits(n_examples=600, planted=0.02, planted_seed=4)
    assert not np.array_equal(other.planted, d.planted)
    assert int(digits(n_examples=100, planted=0.001).planted.sum()) == 1  # at least one


def test_planted_ood_records_are_noise_images_with_both_views():
    clean = digits(n_examples=300)
    d = digits(n_examples=300, planted=0.1, planted_kind="ood")
    p = d.planted
    assert int(p.sum()) == 30 and "30 planted records (ood)" in d.description
    np.testing.assert_array_equal(d.features[~p], clean.features[~p])
    noise = d.images[p, 0]
    assert noise.min() >= 0 and noise.max() <= 1
    assert noise.std() > 0.25  # uniform noise (std 0.289), not a digit's sparse strokes
    np.testing.assert_array_equal(d.features[p, 0], noise.reshape(30, -1))
    shifted = np.zeros_like(noise)
    shifted[..., 1:] = noise[..., :-1]
    np.testing.assert_array_equal(d.features[p, 1], shifted.reshape(30, -1))
    assert (d.labels >= 0).all() and (d.labels < 10).all()


def test_planted_synthetic_keeps_the_unplanted_records():
    clean = synthetic(n=200, dim=4)
    for kind in ("relabel", "ood"):
        d = synthetic(n=200, dim=4, planted=0.05, planted_kind=kind)
        assert int(d.planted.sum()) == 10
        np.testing.assert_array_equal(d.features[~d.planted], clean.features[~d.planted])
        np.testing.assert_array_equal(d.labels[~d.planted], clean.labels[~d.planted])
    d = load("synthetic", n=200, dim=4, planted=0.05, planted_kind="ood")
    assert np.abs(d.features[d.planted]).max() <= np.abs(clean.features).max()


@pytest.mark.parametrize("kw, match", [
    (dict(planted=1.0), "planted"), (dict(planted=-0.1), "planted"),
    (dict(planted=0.1, planted_kind="noise"), "planted_kind"),
    (dict(planted=0.1, planted_seed=1.5), "planted_seed"),
])
def test_planted_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        digits(n_examples=50, **kw)
    with pytest.raises(ValueError, match=match):
        synthetic(n=50, **kw)
