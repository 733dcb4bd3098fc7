"""miakit.rmia against dense float64 references (docs/methods/rmia.md)."""

from __future__ import annotations

import numpy as np
import pytest
import references as ref
import torch
from conftest import random_keep

import miakit as mk
from miakit.rmia import _count

GAMMAS = (1.0, 0.5, 2.0, 1.3)


def probs(rng, keep, a, shift=0.25, decimals=None):
    """True-class probabilities with a membership signal; rounded (ties) on request.

    Leave-one-out sums its references differently from the reference's direct means, so
    exact ties between examples can break either way there: those comparisons use
    continuous values, and ties are tested where both sides see the same ratios."""
    m, n = keep.shape
    base = rng.uniform(0.05, 0.7, size=(1, n, 1))
    q = np.clip(base + rng.uniform(0, 0.2, size=(m, n, a)) + shift * keep[..., None], 0, 1)
    return q if decimals is None else np.round(q, decimals)


# ===================================================================== the count kernel
@pytest.mark.parametrize("n,z", [(1, 1), (7, 2), (100, 33), (64, 257), (3000, 2049)])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_count_equals_the_dense_formula_bit_for_bit(n, z, gamma, rng):
    rows = 3
    x = np.round(rng.uniform(0, 2, size=(rows, n)), 1)  # ties, and exact zeros
    pop = np.round(rng.uniform(0, 2, size=(rows, z)), 1)
    pop[rng.random((rows, z)) < 0.2] = np.nan  # not in the population
    pop[0, 0] = 0.0
    x[0, 0] = 0.0
    got = _count(x, pop, None, gamma)
    for r in range(rows):
        valid = pop[r][~np.isnan(pop[r])]
        want = ref.rmia_dense_share(x[r], valid, [-1] * n, gamma)
        np.testing.assert_array_equal(got[r], want)


def test_count_excludes_each_example_from_its_own_population(rng):
    n = 50
    x = np.round(rng.uniform(0.5, 1.5, size=(2, n)), 1)
    member = rng.random((2, n)) < 0.5
    pop = np.where(member, np.nan, x)
    for gamma in (1.0, 0.5):  # x / x = 1 > 0.5 would count itself
        got = _count(x, pop, ~member, gamma)
        for r in range(2):
            idx = np.flatnonzero(~member[r])
            where = {j: i for i, j in enumerate(idx)}
            want = ref.rmia_dense_share(x[r], x[r, idx], [where.get(j, -1) for j in range(n)],
                                        gamma)
            np.testing.assert_array_equal(got[r], want)


def test_count_walk_with_nan_scores_and_continuous_values(rng):
    """The sorted walk (CPU) leaves NaN ratios at 0 and places continuous values, zeros
    and ties like the dense count, with and without self-exclusion."""
    n, z = 5000, 3001
    x = rng.lognormal(0.0, 1.0, size=(2, n))
    x[:, ::97] = np.nan
    x[:, 1::89] = 0.0
    x[:, 2::50] = 1.0
    pop = rng.lognormal(0.0, 1.0, size=(2, z))
    pop[:, ::7] = 1.0
    pop[:, 3::101] = 0.0
    for gamma in (1.0, 0.3, 2.5):
        got = _count(x, pop, None, gamma)
        for r in range(2):
            want = ref.rmia_dense_share(x[r], pop[r], [-1] * n, gamma)
            np.testing.assert_array_equal(got[r], want)


def test_count_of_an_empty_population_is_nan():
    got = _count(np.ones((1, 3)), np.full((1, 2), np.nan), None, 1.0)
    assert np.isnan(got).all()
    got = _count(np.ones((1, 1)), np.ones((1, 1)), np.ones((1, 1), bool), 1.0)
    assert np.isnan(got).all()  # the only member of the population is x itself


def test_count_non_contiguous_rows(rng):
    x = rng.uniform(size=(6, 40))[::2, ::3]
    pop = rng.uniform(size=(9, 30)).T[::3, ::2].copy()[:3]
    got = _count(x, pop, None, 1.0)
    for r in range(3):
        np.testing.assert_array_equal(got[r], ref.rmia_dense_share(x[r], pop[r], [-1] * 14,
                                                                   1.0))


# ===================================================================== one target
@pytest.mark.parametrize("offline", [False, True])
@pytest.mark.parametrize("aggregate", ["mean", "vote"])
@pytest.mark.parametrize("gamma", (1.0, 0.7))
def test_score_with_index_population_is_the_dense_count_of_its_ratios(offline, aggregate,
                                                                      gamma, rng):
    m, n = 6, 80
    keep = random_keep(rng, m + 1, n)
    q = probs(rng, keep, 2, decimals=2)
    pop = np.flatnonzero(~keep[0])[::2]
    got = mk.rmia.score(q[0], q[1:], keep[1:], pop, offline=offline, gamma=gamma,
                        aggregate=aggregate, a=0.4)
    r = mk.rmia.ratios(q[0], q[1:], keep[1:], offline=offline, aggregate=aggregate, a=0.4)
    r = r[:, None] if r.ndim == 1 else r
    where = {j: i for i, j in enumerate(pop)}
    want = np.mean([ref.rmia_dense_share(r[:, v], r[pop, v], [where.get(j, -1)
                                                               for j in range(n)], gamma)
                    for v in range(r.shape[1])], axis=0)
    np.testing.assert_array_equal(got, want)
    # the ratios themselves, against means taken directly
    qa = q.mean(2, keepdims=True) if aggregate == "mean" else q
    if offline:
        out = ~keep[1:]
        pr = 0.5 * (1.4 * np.stack([qa[1:][out[:, j], j].mean(0) for j in range(n)]) + 0.6)
    else:
        pr = qa[1:].mean(0)
    np.testing.assert_allclose(r, qa[0] / pr, rtol=1e-13)


def test_score_with_separate_population_arrays(rng):
    m, n, z = 5, 40, 30
    keep = random_keep(rng, m, n)
    q = probs(rng, keep, 2, decimals=2)
    pop_ref = np.round(rng.uniform(0.05, 0.8, size=(m, z, 2)), 2)
    pop_tgt = np.round(rng.uniform(0.05, 0.8, size=(z, 2)), 2)
    for offline in (False, True):
        got = mk.rmia.score(q[0], q[1:], keep[1:], (pop_tgt, pop_ref[1:]), offline=offline)
        x = mk.rmia.ratios(q[0], q[1:], keep[1:], offline=offline)
        zr = mk.rmia.ratios(pop_tgt, pop_ref[1:], np.zeros((m - 1, z), bool), offline=offline)
        np.testing.assert_array_equal(got, ref.rmia_dense_share(x, zr, [-1] * n, 1.0))


def test_score_from_logits_equals_score_from_probabilities(rng):
    m, n, c = 5, 30, 4
    keep = random_keep(rng, m, n)
    labels = rng.integers(0, c, n)
    z = rng.normal(size=(m, n, 2, c)) + 2 * keep[..., None, None] * np.eye(c)[labels][:, None]
    q = mk.signals.confidence(z, labels[:, None])
    pop = np.flatnonzero(~keep[0])
    np.testing.assert_array_equal(
        mk.rmia.score(z[0], z[1:], keep[1:], pop, labels=labels),
        mk.rmia.score(q[0], q[1:], keep[1:], pop))


# ===================================================================== leave-one-out
@pytest.mark.parametrize("size", [(2, 5, 1), (4, 1, 1), (6, 23, 2), (9, 40, 3)])
@pytest.mark.parametrize("offline", [False, True])
@pytest.mark.parametrize("aggregate", ["mean", "vote"])
@pytest.mark.parametrize("references", ["balanced", "all"])
def test_leave_one_out_matches_the_reference(size, offline, aggregate, references, rng):
    m, n, a = size
    keep = random_keep(rng, m, n)
    if m % 2 == 0 and n > 2:
        keep[1::2] = ~keep[0::2]  # complementary pairs
    q = probs(rng, keep, a)
    for gamma in (1.0, 0.8):
        got = mk.rmia.leave_one_out(q, keep, offline=offline, aggregate=aggregate, gamma=gamma,
                                    references=references, on_empty="nan", a=0.3)
        want = ref.rmia_leave_one_out(q, keep, None, offline, 0.3, gamma, aggregate,
                                      references=references)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("offline", [False, True])
def test_leave_one_out_with_a_separate_population(offline, rng):
    m, n, z = 6, 30, 45
    keep = random_keep(rng, m, n)
    q = probs(rng, keep, 2)
    pop = np.round(rng.uniform(0.05, 0.8, size=(m, z, 2)), 2)
    for aggregate in ("mean", "vote"):
        got = mk.rmia.leave_one_out(q, keep, offline=offline, population=pop,
                                    aggregate=aggregate, targets=[0, 3, 5])
        want = ref.rmia_leave_one_out(q, keep, [0, 3, 5], offline, aggregate=aggregate,
                                      population=pop)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_leave_one_out_target_subsets_and_chunks(rng, monkeypatch):
    m, n = 8, 60
    keep = mk.shadow.balanced_keep(m, n, seed=1)
    q = probs(rng, keep, 2)
    full = mk.rmia.leave_one_out(q, keep)
    monkeypatch.setattr(mk.rmia, "_CHUNK_ELEMENTS", 50)  # one target per kernel call
    np.testing.assert_array_equal(mk.rmia.leave_one_out(q, keep), full)
    np.testing.assert_array_equal(mk.rmia.leave_one_out(q, keep, targets=[5, 2]), full[[5, 2]])


def test_balanced_leave_one_out_of_pairs_is_score_without_the_pair(rng):
    m, n = 8, 50
    keep = mk.shadow.balanced_keep(m, n, seed=2)
    q = probs(rng, keep, 2)
    loo = mk.rmia.leave_one_out(q, keep, gamma=0.9)
    for k in (0, 5):
        refs = [i for i in range(m) if i not in (k, k ^ 1)]
        want = mk.rmia.score(q[k], q[refs], keep[refs], np.flatnonzero(~keep[k]), gamma=0.9)
        np.testing.assert_allclose(loo[k], want, atol=1e-12)


def test_leave_one_out_from_logits_torch_and_low_precision(rng):
    m, n, c = 6, 40, 5
    keep = mk.shadow.balanced_keep(m, n, seed=3)
    labels = rng.integers(0, c, n)
    z = (rng.normal(size=(m, n, 2, c)) + 1.5 * keep[..., None, None]
         * np.eye(c)[labels][:, None]).astype(np.float32)
    q = np.asarray(mk.signals.confidence(z, labels[:, None]), dtype=np.float64)
    want = mk.rmia.leave_one_out(q, keep)
    np.testing.assert_array_equal(mk.rmia.leave_one_out(z, keep, labels=labels), want)
    got = mk.rmia.leave_one_out(torch.from_numpy(q), torch.from_numpy(keep))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), want)
    got = mk.rmia.leave_one_out(torch.from_numpy(q), torch.from_numpy(keep), offline=True)
    np.testing.assert_array_equal(got.numpy(), mk.rmia.leave_one_out(q, keep, offline=True))
    half = q.astype(np.float16)
    np.testing.assert_allclose(mk.rmia.leave_one_out(half, keep),
                               ref.rmia_leave_one_out(half.astype(np.float64), keep),
                               atol=1e-12)
    strided = np.repeat(q, 2, axis=1)[:, ::2]  # a strided view equal to q
    np.testing.assert_array_equal(mk.rmia.leave_one_out(strided, keep), want)


def test_rmia_reads_chance_without_signal():
    keep = mk.shadow.balanced_keep(8, 3000, seed=0)
    q = np.random.default_rng(0).uniform(0.05, 0.95, size=(8, 3000, 2))
    for offline in (False, True):
        s = mk.rmia.leave_one_out(q, keep, offline=offline)
        a = mk.metrics.auc_ci(s, keep, clusters=np.arange(3000))
        assert abs(a.auc - 0.5) < 3 * a.se


def test_rmia_finds_a_planted_signal_and_tune_a(rng):
    keep = mk.shadow.balanced_keep(8, 500, seed=0)
    q = probs(rng, keep, 2, shift=0.1)
    for offline in (False, True):
        assert mk.metrics.auc(mk.rmia.leave_one_out(q, keep, offline=offline), keep) > 0.7
    t = mk.rmia.tune_a(q, keep, target=3, grid=[0.0, 0.5, 1.0])
    assert t.target == 3 and list(t.grid) == [0.0, 0.5, 1.0]
    for a, auc in zip(t.grid, t.auc):
        s = mk.rmia.leave_one_out(q, keep, [3], offline=True, a=a)[0]
        assert auc == pytest.approx(mk.metrics.auc(s, keep[3]), abs=1e-15)
    assert t.auc[list(t.grid).index(t.a)] == t.auc.max()


# ===================================================================== bad input
def test_bad_input_names_the_argument(rng):
    keep = mk.shadow.balanced_keep(4, 10, seed=0)
    q = rng.uniform(size=(4, 10, 1))
    pop = np.flatnonzero(~keep[0])
    cases = [
        (lambda: mk.rmia.leave_one_out(q * 2, keep), ValueError, "q: expected probabilities"),
        (lambda: mk.rmia.leave_one_out(np.where(q > 0.5, np.nan, q), keep), ValueError, "q:"),
        (lambda: mk.rmia.leave_one_out(q, keep, gamma=0), ValueError, "gamma"),
        (lambda: mk.rmia.leave_one_out(q, keep, gamma=-1.0), ValueError, "gamma"),
        (lambda: mk.rmia.leave_one_out(q, keep, offline=True, a=1.5), ValueError, "a:"),
        (lambda: mk.rmia.leave_one_out(q, keep[:, :5]), ValueError, "keep"),
        (lambda: mk.rmia.leave_one_out(q, keep, aggregate="max"), ValueError, "aggregate"),
        (lambda: mk.rmia.leave_one_out(q, keep, population=q[:3]), ValueError, "population"),
        (lambda: mk.rmia.leave_one_out(q, keep, population=q[:, :0]), ValueError,
         "population"),
        (lambda: mk.rmia.leave_one_out(q.astype(np.int64), keep), TypeError, "q"),
        (lambda: mk.rmia.score(q[0], q[1:], keep[1:], pop[:0]), ValueError, "population"),
        (lambda: mk.rmia.score(q[0], q[1:], keep[1:], np.r_[pop, pop]), ValueError,
         "population"),
        (lambda: mk.rmia.score(q[0], q[1:], keep[1:], np.array([99])), ValueError,
         "population"),
        (lambda: mk.rmia.score(q[0], q[1:], keep[1:], (q[0], q[:2])), ValueError,
         "population"),
        (lambda: mk.rmia.score(q[0, :5], q[1:], keep[1:], pop), ValueError, "target_q"),
        (lambda: mk.rmia.tune_a(q, keep, grid=[2.0]), ValueError, "grid"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()


def test_offline_without_out_references(rng):
    keep = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0]], dtype=bool)
    q = rng.uniform(0.1, 0.9, size=(4, 3, 1))
    with pytest.raises(ValueError, match="OUT reference"):
        mk.rmia.leave_one_out(q, keep, offline=True, references="all")
    got = mk.rmia.leave_one_out(q, keep, offline=True, references="all", on_empty="nan")
    want = ref.rmia_leave_one_out(q, keep, offline=True, references="all")
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert np.isnan(got).any() and np.isfinite(got).any()


def test_tiny_reference_probabilities_keep_full_relative_accuracy():
    """References give the true class 1e-12 while the target and its partner give 0.9:
    the subtraction from the column total would lose every digit; the sum is redone."""
    m, n = 6, 4
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    q = np.full((m, n, 1), 1e-12)
    q[0], q[1] = 0.9, 0.8
    got = mk.rmia.leave_one_out(q, keep, targets=[0])
    np.testing.assert_allclose(got, ref.rmia_leave_one_out(q, keep, [0]), atol=1e-12)
    r = mk.rmia.ratios(q[0], q[2:], keep[2:])
    np.testing.assert_allclose(r, 0.9 / 1e-12, rtol=1e-14)


def test_tiny_population_probabilities_keep_full_relative_accuracy():
    """The population's reference mean is also the total less the target: where the
    target gives a population example 0.7 and the other models 1e-13 it is summed again
    (the subtraction made it 9e-5 too large), so an example whose ratio equals that
    population ratio is not counted above it."""
    m, n, z = 6, 4, 3
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    q = np.full((m, n, 1), 1e-13)
    q[0] = 0.7
    pop = np.full((m, z, 1), 1e-13)
    pop[0] = 0.7
    got = mk.rmia.leave_one_out(q, keep, targets=[0], population=pop, references="all")
    want = ref.rmia_leave_one_out(q, keep, [0], population=pop, references="all")
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert (got == 0).all()  # x / z is exactly 1: never above gamma = 1


def test_two_models_have_no_balanced_references(rng):
    keep = mk.shadow.balanced_keep(2, 5, seed=0)
    q = rng.uniform(0.1, 0.9, size=(2, 5, 1))
    with pytest.raises(ValueError, match="reference"):
        mk.rmia.leave_one_out(q, keep)
    assert np.isnan(mk.rmia.leave_one_out(q, keep, on_empty="nan")).all()
