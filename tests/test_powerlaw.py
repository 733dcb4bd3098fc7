"""miakit.powerlaw against numpy least squares and statsmodels; keep balanced within
classes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import miakit as mk

sm = pytest.importorskip("statsmodels.api")


def _grid(rng, noise=0.05, fpr=0.01):
    s = np.tile([1, 2, 4, 8, 16, 32], 3).astype(float)
    c = np.repeat([2, 5, 10], 6).astype(float)
    excess = 10 ** (-0.5 * np.log10(s) + 0.2 * np.log10(c) - 0.3 + rng.normal(0, noise, 18))
    return s, c, np.minimum(fpr + excess, 1.0)


def test_fit_matches_least_squares_and_statsmodels(rng):
    s, c, t = _grid(rng)
    f = mk.powerlaw.fit(s, c, t, fpr=0.01)
    x = np.column_stack([np.log10(s), np.log10(c), np.ones(18)])
    y = np.log10(t - 0.01)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose([f.beta_s, f.beta_c, f.beta_0], coef, rtol=1e-10)
    resid = y - x @ coef
    r2 = 1 - (resid ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert f.r2 == pytest.approx(r2, rel=1e-12)
    np.testing.assert_allclose(f.residuals, resid, atol=1e-12)
    # intervals: t quantile with n - 3 degrees of freedom times the standard error
    sigma2 = (resid ** 2).sum() / (18 - 3)
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(x.T @ x)))
    q = stats.t.ppf(0.975, 15)
    for name, b, e in zip(("beta_s", "beta_c", "beta_0"), coef, se):
        np.testing.assert_allclose(f.ci[name], (b - q * e, b + q * e), rtol=1e-9)
    assert f.ci["beta_s"][0] < -0.5 < f.ci["beta_s"][1]


def test_prediction_intervals_are_statsmodels(rng):
    s, c, t = _grid(rng)
    f = mk.powerlaw.fit(s, c, t, fpr=0.01)
    x = np.column_stack([np.log10(s), np.log10(c), np.ones(18)])
    res = sm.OLS(np.log10(t - 0.01), x).fit()
    new = np.array([[np.log10(64.0), np.log10(20.0), 1.0]])
    frame = res.get_prediction(new).summary_frame(alpha=0.1)
    p = f.predict([64], [20], level=0.9)
    assert p["log10_excess"][0] == pytest.approx(frame["mean"][0], rel=1e-12)
    assert p["tpr_lower"][0] == pytest.approx(0.01 + 10 ** frame["obs_ci_lower"][0], rel=1e-12)
    assert p["tpr_upper"][0] == pytest.approx(0.01 + 10 ** frame["obs_ci_upper"][0], rel=1e-12)


def test_cells_left_out_are_listed_with_their_reason(rng):
    s, c, t = _grid(rng)
    t[0] = 0.005  # below the FPR
    flags = np.ones(18, bool)
    flags[1] = False
    f = mk.powerlaw.fit(s, c, t, fpr=0.01, resolvable=flags)
    assert f.n_cells == 16
    assert "TPR" in f.cells[0]["reason"] and "unresolvable" in f.cells[1]["reason"]
    assert all(cell["used"] for cell in f.cells[2:])
    one_c = mk.powerlaw.fit(s[:6], c[:6], t[:6] + 0.01, fpr=0.01)  # a single class count
    assert np.isnan(one_c.beta_c) and one_c.to_dict()["beta_c"] is None


def test_bad_input_names_the_argument(rng):
    s, c, t = _grid(rng)
    cases = [
        (lambda: mk.powerlaw.fit(s, c, t, fpr=0.0), "fpr"),
        (lambda: mk.powerlaw.fit(s, c, t, fpr=1.5), "fpr"),
        (lambda: mk.powerlaw.fit(s[:1], c[:1], t[:1], fpr=0.01), "grid"),
        (lambda: mk.powerlaw.fit(s, c, np.full(18, 0.001), fpr=0.01), "at least"),
        (lambda: mk.powerlaw.fit(s, c[:3], t, fpr=0.01), "shots, classes"),
        (lambda: mk.powerlaw.fit(s, np.ones(18), t, fpr=0.01), "classes"),
        (lambda: mk.powerlaw.fit(s * 0, c, t, fpr=0.01), "shots"),
        (lambda: mk.powerlaw.fit(s, c, t[:4], fpr=0.01), "tpr"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()


def test_keep_balanced_within_every_class(rng):
    y = np.repeat([0, 1, 2], [6, 10, 7])
    keep = mk.shadow.balanced_keep(8, len(y), seed=1, strata=y)
    assert mk.shadow.is_paired(keep) and (keep.sum(0) == 4).all()
    for cls, size in ((0, 6), (1, 10)):
        assert (keep[:, y == cls].sum(1) == size // 2).all()
    odd = keep[:, y == 2].sum(1)  # 7 examples: 3 or 4, pairs complementary
    assert set(odd.tolist()) <= {3, 4} and (odd[0::2] + odd[1::2] == 7).all()
    with pytest.raises(ValueError, match="strata"):
        mk.shadow.balanced_keep(4, 5, strata=np.zeros(4, int))
    with pytest.raises(ValueError, match="strata"):
        mk.shadow.balanced_keep(4, 5, strata=np.zeros(5, int), paired=False)
