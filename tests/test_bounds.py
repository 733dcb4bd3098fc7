"""miakit.bounds against the formulas, dp-accounting and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import references as ref
from scipy import stats

import miakit as mk

dpa = pytest.importorskip("dp_accounting")


def test_dp_tpr_bound_is_the_formula_and_the_tightest_pair():
    f = np.array([0.0, 1e-4, 0.01, 0.3, 0.9, 1.0])
    for eps, delta in ((1.0, 0.0), (0.2, 1e-3), (8.0, 1e-5)):
        want = np.clip(np.minimum(np.exp(eps) * f + delta,
                                  1 - np.exp(-eps) * (1 - delta - f)), 0, 1)
        np.testing.assert_allclose(mk.bounds.dp_tpr_bound(f, eps, delta), want, rtol=1e-15)
    both = mk.bounds.dp_tpr_bound(f, [1.0, 0.5], [0.0, 1e-2])
    np.testing.assert_allclose(both, np.minimum(mk.bounds.dp_tpr_bound(f, 1.0, 0.0),
                                                mk.bounds.dp_tpr_bound(f, 0.5, 1e-2)))
    assert (mk.bounds.dp_tpr_bound(f, 1.0) >= f).all()
    assert mk.bounds.dp_tpr_bound(0.3, np.inf).item() == 1.0


def test_gdp_and_memorization_bounds():
    f = np.array([1e-5, 0.01, 0.5])
    np.testing.assert_allclose(mk.bounds.gdp_tpr_bound(f, 1.5),
                               stats.norm.cdf(stats.norm.ppf(f) + 1.5), rtol=1e-12)
    np.testing.assert_allclose(mk.bounds.gdp_tpr_bound(f, 0.0), f, rtol=1e-12)
    assert mk.bounds.memorization_bound(2.0) == pytest.approx(1 - math.exp(-2.0), rel=1e-15)
    assert mk.bounds.memorization_bound(1e-12) == pytest.approx(1e-12, rel=1e-6)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_dpsgd_epsilon_is_dp_accountings(accountant):
    ev = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.02, dpa.GaussianDpEvent(1.1)),
                                 500)
    acc = (dpa.pld.PLDAccountant() if accountant == "pld"
           else dpa.rdp.RdpAccountant(mk.bounds.RDP_ORDERS))
    acc.compose(ev)
    assert mk.bounds.dpsgd_epsilon(1.1, 0.02, 500, 1e-5, accountant) == acc.get_epsilon(1e-5)


OPACUS_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def test_rdp_orders_are_opacus_default_grid():
    assert mk.bounds.RDP_ORDERS == tuple(OPACUS_ORDERS)


def _integer_order_reference(noise, rate, steps, delta):
    """epsilon from the closed binomial sum at the grid's integer orders."""
    orders = [int(a) for a in mk.bounds.RDP_ORDERS if float(a).is_integer()]
    rdp = [steps * ref.sampled_gaussian_rdp(rate, noise, a) for a in orders]
    return ref.rdp_epsilon(orders, rdp, delta)


@pytest.mark.parametrize("noise, rate, steps", [(5.0, 0.001, 1000), (3.0, 0.01, 2000),
                                                (10.0, 0.01, 100)])
def test_rdp_epsilon_is_the_closed_form_where_an_integer_order_is_best(noise, rate, steps):
    eps, _ = _integer_order_reference(noise, rate, steps, 1e-5)
    got = mk.bounds.dpsgd_epsilon(noise, rate, steps, 1e-5, "rdp")
    assert got == pytest.approx(eps, rel=1e-12)


def test_rdp_epsilon_left_out_orders_are_named_and_the_bound_stays_above():
    # at noise 0.5 and sample rate 0.1 dp-accounting's series for the orders 1.1-1.6
    # does not converge: the best order left is 1.7 (2231), below the integer orders'
    # bound (4301, order 2) and above Opacus' 807 (order 1.1) and the PLD's 783
    with pytest.warns(RuntimeWarning, match=r"order\(s\) 1.1, 1.2, 1.3, 1.4, 1.5, 1.6 "):
        got = mk.bounds.dpsgd_epsilon(0.5, 0.1, 10_000, 1e-5, "rdp")
    eps, order = _integer_order_reference(0.5, 0.1, 10_000, 1e-5)
    assert order == 2.0 and got < eps
    assert got == pytest.approx(2231.2989, rel=1e-6) and got > 807.14


@pytest.mark.parametrize("noise, rate, steps", [(5.0, 0.001, 1000), (2.0, 0.01, 500)])
def test_rdp_epsilon_is_never_below_the_true_epsilon(noise, rate, steps):
    """RDP is an upper bound: never below the optimistic PLD (a lower bound on the true
    epsilon), nor below the default pessimistic PLD by more than its discretisation."""
    from dp_accounting.pld import privacy_loss_distribution as pld

    rdp = mk.bounds.dpsgd_epsilon(noise, rate, steps, 1e-5, "rdp")
    lower = pld.from_gaussian_mechanism(
        noise, pessimistic_estimate=False, sampling_prob=rate, use_connect_dots=False
    ).self_compose(steps).get_epsilon_for_delta(1e-5)
    upper = mk.bounds.dpsgd_epsilon(noise, rate, steps, 1e-5)
    assert rdp >= upper >= lower


@pytest.mark.parametrize("noise, rate, steps", [(1.0, 0.01, 1000), (5.0, 0.001, 1000)])
def test_rdp_epsilon_is_opacus_where_every_order_converges(noise, rate, steps):
    opacus = pytest.importorskip("opacus.accountants")
    acc = opacus.RDPAccountant()
    acc.steps = [(noise, rate, steps)]
    want = acc.get_epsilon(1e-5)
    assert mk.bounds.dpsgd_epsilon(noise, rate, steps, 1e-5, "rdp") == pytest.approx(
        want, rel=1e-5)


def test_rdp_is_an_upper_bound_of_pld_and_noise_inverts_epsilon():
    pld = mk.bounds.dpsgd_epsilon(0.8, 0.01, 2000, 1e-5)
    rdp = mk.bounds.dpsgd_epsilon(0.8, 0.01, 2000, 1e-5, "rdp")
    assert rdp >= pld > 0
    for eps in (1.0, 4.0):
        z = mk.bounds.dpsgd_noise(eps, 1e-5, 0.01, 2000)
        assert mk.bounds.dpsgd_epsilon(z, 0.01, 2000, 1e-5) == pytest.approx(eps, abs=0.02)
    # more noise, less epsilon
    assert mk.bounds.dpsgd_epsilon(2.0, 0.01, 2000, 1e-5) < pld


def test_bad_input_names_the_argument():
    cases = [
        (lambda: mk.bounds.dp_tpr_bound(0.1, 0.0), "epsilon"),
        (lambda: mk.bounds.dp_tpr_bound(0.1, -1.0), "epsilon"),
        (lambda: mk.bounds.dp_tpr_bound(0.1, 1.0, 1.0), "delta"),
        (lambda: mk.bounds.dp_tpr_bound(0.1, 1.0, -0.1), "delta"),
        (lambda: mk.bounds.dp_tpr_bound(1.5, 1.0), "fpr"),
        (lambda: mk.bounds.dp_tpr_bound(np.nan, 1.0), "fpr"),
        (lambda: mk.bounds.dp_tpr_bound(0.1, [1.0, 2.0], [0.0, 0.1, 0.2]), "delta"),
        (lambda: mk.bounds.gdp_tpr_bound(0.1, -1.0), "mu"),
        (lambda: mk.bounds.memorization_bound(0.0), "epsilon"),
        (lambda: mk.bounds.dpsgd_epsilon(0.0, 0.01, 10, 1e-5), "noise_multiplier"),
        (lambda: mk.bounds.dpsgd_epsilon(1.0, 0.0, 10, 1e-5), "sample_rate"),
        (lambda: mk.bounds.dpsgd_epsilon(1.0, 1.5, 10, 1e-5), "sample_rate"),
        (lambda: mk.bounds.dpsgd_epsilon(1.0, 0.1, 0, 1e-5), "steps"),
        (lambda: mk.bounds.dpsgd_epsilon(1.0, 0.1, 10, 1.0), "delta"),
        (lambda: mk.bounds.dpsgd_epsilon(1.0, 0.1, 10, 1e-5, "moments"), "accountant"),
        (lambda: mk.bounds.dpsgd_noise(-1.0, 1e-5, 0.1, 10), "epsilon"),
        (lambda: mk.bounds.empirical_epsilon([1.0, 0.0], [1, 0], delta=2.0), "delta"),
        (lambda: mk.bounds.empirical_epsilon([1.0, 0.0], [1, 0], level=1.0), "level"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()


def _brute_empirical_epsilon(s, y, delta, level):
    """Every distinct threshold, Clopper-Pearson bounds from scipy's binomtest."""
    thr = np.unique(s)
    alpha = (1 - level) / (2 * thr.size)
    best = 0.0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    for t in thr:
        tp, fp = int((s[y] >= t).sum()), int((s[~y] >= t).sum())
        lo = (0.0 if tp == 0 else
              stats.binomtest(tp, n_pos).proportion_ci(1 - 2 * alpha, "exact").low)
        hi = (1.0 if fp == n_neg else
              stats.binomtest(fp, n_neg).proportion_ci(1 - 2 * alpha, "exact").high)
        cands = []
        if lo - delta > 0 and hi > 0:
            cands.append(math.log((lo - delta) / hi))
        if 1 - hi - delta > 0 and lo < 1:
            cands.append(math.log((1 - hi - delta) / (1 - lo)))
        best = max([best] + cands)
    return best


@pytest.mark.parametrize("delta", [0.0, 1e-3])
def test_empirical_epsilon_matches_a_brute_force_search(delta, rng):
    y = rng.random(300) < 0.5
    s = np.round(rng.normal(size=300) + 2.5 * y, 1)  # ties
    e = mk.bounds.empirical_epsilon(s, y, delta=delta, thresholds="all")
    assert e.epsilon == pytest.approx(_brute_empirical_epsilon(s, y, delta, 0.95), abs=1e-9)
    assert e.n_thresholds == np.unique(s).size and e.delta == delta
    grid = mk.bounds.empirical_epsilon(s, y, delta=delta)  # fewer thresholds, same rule
    assert grid.n_thresholds < e.n_thresholds and grid.epsilon > 0
    assert ((s[y] >= e.threshold).sum(), (s[~y] >= e.threshold).sum()) == (e.tp, e.fp)
    fixed = mk.bounds.empirical_epsilon(s, y, delta=delta, thresholds=[0.5, 1.0, 1.5])
    assert fixed.n_thresholds == 3 and fixed.threshold in (0.5, 1.0, 1.5)


def test_grid_points_are_the_counts_fixed_in_advance():
    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.5
    s = rng.normal(size=5000) + y
    fpr, tpr, thr = mk.metrics.roc(s, y)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    tp, fp = np.rint(tpr * n_pos).astype(int), np.rint(fpr * n_neg).astype(int)
    pick = mk.bounds._grid_points(tp, fp, n_pos, n_neg)
    assert pick.size <= 2 * (mk.bounds.GRID_POINTS + 1) and (pick >= 1).all()
    grid = np.unique(np.r_[0, np.round(np.geomspace(1, n_neg, mk.bounds.GRID_POINTS))])
    for k in grid:  # the point with the most TP among fp <= k is picked
        want = np.flatnonzero(fp <= k)[-1]
        assert want in pick or want == 0
    with pytest.raises(ValueError, match="thresholds"):
        mk.bounds.empirical_epsilon(s, y, thresholds="some")


def test_empirical_epsilon_never_exceeds_the_true_epsilon():
    """Randomized response is exactly eps-DP: the lower bound stays below eps in (far)
    more than 95% of repeated experiments."""
    eps = 1.0
    p = math.exp(eps) / (1 + math.exp(eps))
    above = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y = rng.random(4000) < 0.5
        s = np.where(y, rng.random(4000) < p, rng.random(4000) < 1 - p).astype(float)
        e = mk.bounds.empirical_epsilon(s, y, thresholds="all")
        above += e.epsilon > eps
        above += mk.bounds.empirical_epsilon(s, y).epsilon > eps  # the default grid too
        assert e.epsilon > 0.5  # and it is not vacuous at this size
    assert above <= 4


def test_clustered_empirical_epsilon_is_more_cautious(rng):
    m, n = 8, 400
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    s = rng.normal(size=n)[None] * 2 + rng.normal(size=(m, n)) + 1.5 * keep
    plain = mk.bounds.empirical_epsilon(s, keep, thresholds=np.linspace(-2, 4, 13))
    clustered = mk.bounds.empirical_epsilon(s, keep, thresholds=np.linspace(-2, 4, 13),
                                            clusters=np.arange(n))
    assert 0 < clustered.epsilon <= plain.epsilon


def test_gdp_mu_matches_the_roc(rng):
    y = rng.random(2000) < 0.5
    s = rng.normal(size=2000) + 1.2 * y
    g = mk.bounds.gdp_mu(s, y)
    fpr, tpr, _ = mk.metrics.roc(s, y)
    inner = (fpr > 0) & (fpr < 1) & (tpr > 0) & (tpr < 1)
    want = np.max(stats.norm.ppf(tpr[inner]) - stats.norm.ppf(fpr[inner]))
    assert g.mu == pytest.approx(want, rel=1e-12)
    assert 0 < g.mu_lower < g.mu
    # every ROC point lies under the implied GDP curve
    assert (tpr[inner] <= mk.bounds.gdp_tpr_bound(fpr[inner], g.mu) + 1e-12).all()
    assert ref.auc_pairs(s, y) > 0.7
