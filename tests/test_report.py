"""LiRA-derived risk (docs/methods/vulnerability.md) and the per-example vulnerability report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

import miakit as mk
from miakit import _lira_risk as lr
from miakit.lira import LiraFit


def make_fit(mu_in, sd_in, mu_out, sd_out):
    arrs = [np.atleast_2d(np.asarray(v, dtype=np.float64)) for v in (mu_in, sd_in, mu_out, sd_out)]
    n = arrs[0].shape[0]
    return LiraFit(arrs[0], arrs[2], arrs[1], arrs[3], np.full(n, 8), np.full(n, 8), "mean",
                   "per_example", 1e-6, 0)


# ---------------------------------------------------------------------- hellinger

CASES = [(0.0, 1.0, 0.0, 1.0), (0.0, 1.0, 1.0, 1.0), (2.0, 0.5, -1.0, 2.0), (0.3, 0.1, 0.2, 3.0),
         (10.0, 1.0, -10.0, 1.0)]


def hellinger_sq_quad(m1, s1, m2, s2):
    lo = min(m1 - 12 * s1, m2 - 12 * s2)
    hi = max(m1 + 12 * s1, m2 + 12 * s2)
    bc, _ = integrate.quad(
        lambda x: math.sqrt(stats.norm.pdf(x, m1, s1) * stats.norm.pdf(x, m2, s2)), lo, hi,
        points=[m1, m2], limit=200, epsabs=1e-13)
    return 1.0 - bc


@pytest.mark.parametrize("m1,s1,m2,s2", CASES)
def test_hellinger_matches_numerical_integral(m1, s1, m2, s2):
    fit = make_fit([[m1]], [[s1]], [[m2]], [[s2]])
    h2 = lr.hellinger(fit, squared=True)
    assert h2.shape == (1, 1)
    np.testing.assert_allclose(h2[0, 0], hellinger_sq_quad(m1, s1, m2, s2), atol=1e-9)
    np.testing.assert_allclose(lr.hellinger(fit), np.sqrt(h2))


def test_hellinger_close_distributions_keep_relative_accuracy():
    d, s = 1e-6, 1.0  # equal spreads: H^2 = 1 - exp(-d^2 / (8 s^2)) ~ d^2 / 8
    fit = make_fit([[d]], [[s]], [[0.0]], [[s]])
    np.testing.assert_allclose(lr.hellinger(fit, squared=True)[0, 0], -math.expm1(-d * d / 8),
                               rtol=1e-12)
    assert lr.hellinger(make_fit([[1.0]], [[2.0]], [[1.0]], [[2.0]]))[0, 0] == 0.0


def test_hellinger_and_privacy_score_on_a_lira_fit():
    rng = np.random.default_rng(0)
    keep = mk.shadow.balanced_keep(64, 5, seed=0)
    shift = np.array([0.0, 0.5, 1.0, 2.0, 6.0])
    s = rng.normal(size=(64, 5, 2)) + shift[None, :, None] * keep[..., None]
    fit = mk.lira.fit(s, keep, center="mean")
    h = lr.hellinger(fit)
    assert h.shape == (5, 2) and np.all((h >= 0) & (h <= 1))
    assert np.all(np.diff(h.mean(1)[1:]) > 0)
    ps = lr.privacy_score(fit)
    np.testing.assert_allclose(
        ps, np.abs(fit.mu_in - fit.mu_out) / (fit.sigma_in + fit.sigma_out))


def test_empty_side_gives_nan():
    keep = np.zeros((6, 3), bool)
    keep[:3, :2] = True
    fit = mk.lira.fit(np.random.default_rng(1).normal(size=(6, 3)), keep)
    assert np.isnan(lr.hellinger(fit)[2]).all() and np.isfinite(lr.hellinger(fit)[:2]).all()
    assert np.isnan(lr.privacy_score(fit)[2]).all()
    assert np.isnan(lr.shadow_models_needed(fit).n[2]).all()


def test_torch_fit_gives_torch_outputs():
    torch = pytest.importorskip("torch")
    keep = mk.shadow.balanced_keep(16, 4, seed=0)
    s = np.random.default_rng(2).normal(size=(16, 4, 1)) + keep[..., None]
    fit_np = mk.lira.fit(s, keep)
    fit_t = mk.lira.fit(torch.from_numpy(s), torch.from_numpy(keep))
    for fn in (lr.hellinger, lr.privacy_score):
        out = fn(fit_t)
        assert isinstance(out, torch.Tensor)
        np.testing.assert_allclose(out.numpy(), fn(fit_np), rtol=1e-12)
    need = lr.shadow_models_needed(fit_t)
    assert isinstance(need.n, torch.Tensor)
    np.testing.assert_array_equal(need.n.numpy(), lr.shadow_models_needed(fit_np).n)


# ---------------------------------------------------------- shadow models needed


@pytest.mark.parametrize("m1,s1,m2,s2", CASES[1:])
@pytest.mark.parametrize("error", [0.01, 0.05, 0.2])
def test_shadow_models_needed_bhattacharyya_is_the_smallest_sufficient_n(m1, s1, m2, s2, error):
    fit = make_fit([[m1]], [[s1]], [[m2]], [[s2]])
    need = lr.shadow_models_needed(fit, error=error)
    assert need.formula == lr.SHADOW_MODELS_FORMULAS["bhattacharyya"]
    bc = 1.0 - hellinger_sq_quad(m1, s1, m2, s2)
    n = need.n[0, 0]
    assert n >= 1 and n == int(n)
    assert 0.5 * bc**n <= error * (1 + 1e-9)
    if n > 1:
        assert 0.5 * bc ** (n - 1) > error * (1 - 1e-9)
    np.testing.assert_array_equal(np.asarray(need), need.n)


def test_shadow_models_needed_order_formula_and_identical_distributions():
    fit = make_fit([[0.0], [0.0]], [[1.0], [1.0]], [[1.0], [0.0]], [[1.0], [1.0]])
    need = lr.shadow_models_needed(fit, error=0.05, formula="order")
    h2 = -math.expm1(-1.0 / 8.0)
    assert need.n[0, 0] == math.ceil(math.log(20.0) / h2)
    assert need.formula == "n = ceil(ln(1 / error) / H^2)"
    assert need.n[1, 0] == np.inf
    assert lr.shadow_models_needed(fit).n[1, 0] == np.inf


def test_shadow_models_needed_is_enough_for_the_likelihood_ratio_test():
    """Monte Carlo: with n = shadow_models_needed observations, the likelihood-ratio test
    between the two Gaussians errs (equal priors) at most `error` of the time."""
    m1, s1, m2, s2, error = 1.0, 1.0, 0.0, 1.5, 0.05
    n = int(lr.shadow_models_needed(make_fit([[m1]], [[s1]], [[m2]], [[s2]]), error).n[0, 0])
    rng = np.random.default_rng(3)
    trials = 20000
    x_in = rng.normal(m1, s1, size=(trials, n))
    x_out = rng.normal(m2, s2, size=(trials, n))

    def llr(x):
        return (stats.norm.logpdf(x, m1, s1) - stats.norm.logpdf(x, m2, s2)).sum(1)

    err = 0.5 * (llr(x_in) < 0).mean() + 0.5 * (llr(x_out) >= 0).mean()
    assert err <= error


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [({"error": 0.0}, ValueError, r"error: expected a float in \(0, 0.5\), got 0.0"),
     ({"error": 0.5}, ValueError, r"got 0.5"), ({"error": "x"}, TypeError, r"error:"),
     ({"formula": "exact"}, ValueError, r"formula: expected one of")],
)
def test_shadow_models_needed_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        lr.shadow_models_needed(make_fit([[0.0]], [[1.0]], [[1.0]], [[1.0]]), **kwargs)


@pytest.mark.parametrize("fn", [lr.hellinger, lr.privacy_score, lr.shadow_models_needed])
def test_fit_must_be_a_lira_fit(fn):
    with pytest.raises(TypeError, match=r"fit: expected a LiraFit"):
        fn({"mu_in": 0})


# ------------------------------------------------------------ vulnerability table


def loo_setup(seed=0, m=16, n=60):
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    strength = np.linspace(0.0, 4.0, n)  # later examples leak more
    s = rng.normal(size=(m, n, 2)) + strength[None, :, None] * keep[..., None]
    return keep, s, strength


def test_table_joins_every_source_and_matches_loops():
    torch = pytest.importorskip("torch")
    keep, s, strength = loo_setup()
    loo = mk.lira.leave_one_out(s, keep)
    mem = mk.memorization.feldman_zhang(s[..., 0] > 0.5, keep)
    grad_norms = mk.gradients.GradNorms(torch.from_numpy(strength + 1.0))
    trace = (torch.from_numpy(strength * 2), torch.ones(len(strength)))
    fit = mk.lira.fit(s, keep)
    table = mk.report.vulnerability_table(
        lira_scores=loo, membership=keep, memorization=mem, grad_norms=grad_norms,
        curvature=trace, fit=fit, error=0.1, fpr=0.05, extra={"loss": -strength})
    assert list(table.columns) == ["lira_score", "tpr_at_fpr", "memorization", "grad_norm",
                                   "curvature", "hellinger", "privacy_score",
                                   "shadow_models_needed", "loss"]
    # per-example TPR proxy and score, by a loop over examples
    r = mk.metrics.tpr_at_fpr(loo, keep, fpr=0.05)
    for n in range(keep.shape[1]):
        members = keep[:, n]
        assert table.columns["tpr_at_fpr"][n] == (loo[members, n] >= r.threshold).mean()
        np.testing.assert_allclose(table.columns["lira_score"][n], loo[members, n].mean())
    assert table.meta["threshold"] == r.threshold and table.meta["achieved_fpr"] == r.fpr
    np.testing.assert_allclose(table.columns["hellinger"], lr.hellinger(fit).mean(1))
    np.testing.assert_allclose(table.columns["privacy_score"], lr.privacy_score(fit).mean(1))
    np.testing.assert_array_equal(table.columns["shadow_models_needed"],
                                  lr.shadow_models_needed(fit, 0.1).n.min(1))
    assert table.meta["shadow_models_formula"] == lr.SHADOW_MODELS_FORMULAS["bhattacharyya"]
    np.testing.assert_array_equal(table.columns["curvature"], strength * 2)
    # correlations: scipy on the same columns; leakage tracks the planted strength
    for a in table.columns:
        for b in table.columns:
            want = stats.spearmanr(table.columns[a], table.columns[b]).statistic
            np.testing.assert_allclose(table.spearman[a][b], want, atol=1e-12)
            assert table.counts[a][b] == 60
    assert table.spearman["grad_norm"]["tpr_at_fpr"] > 0.7
    assert table.spearman["hellinger"]["grad_norm"] > 0.8
    assert table.spearman["shadow_models_needed"]["grad_norm"] < -0.8


def test_table_single_target_nan_and_constant_columns():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=30)
    scores[3] = np.nan
    member = np.arange(30) % 2 == 0
    mem = rng.random(30)
    mem[5] = np.nan
    table = mk.report.vulnerability_table(lira_scores=scores, membership=member,
                                          memorization=mem, extra={"const": np.ones(30)})
    assert np.isnan(table.columns["tpr_at_fpr"][1::2]).all()  # non-members: no TPR
    ok = np.isfinite(scores) & np.isfinite(mem)
    np.testing.assert_allclose(table.spearman["lira_score"]["memorization"],
                               stats.spearmanr(scores[ok], mem[ok]).statistic)
    assert table.counts["lira_score"]["memorization"] == 28
    assert np.isnan(table.spearman["const"]["memorization"])
    d = table.to_dict()
    json.dumps(d)  # NaN became None: valid JSON
    assert d["spearman"]["const"]["memorization"] is None
    assert d["per_example"]["lira_score"][3] is None
    only = mk.report.vulnerability_table(lira_scores=scores)
    assert list(only.columns) == ["lira_score"] and only.vulnerability_column() == "lira_score"


def test_top_csv_json_and_plots(tmp_path):
    rng = np.random.default_rng(2)
    mem = rng.random(25)
    g = rng.random(25)
    lira_scores = mem + 0.1 * rng.random(25)
    table = mk.report.vulnerability_table(lira_scores=lira_scores, memorization=mem,
                                          grad_norms=g)
    top = table.top(3)
    assert [r["index"] for r in top] == list(np.argsort(-lira_scores)[:3])
    assert top[0]["memorization"] == mem[top[0]["index"]]
    back = np.loadtxt(table.to_csv(tmp_path / "t.csv"), delimiter=",", skiprows=1)
    np.testing.assert_allclose(back[:, 1], lira_scores, rtol=1e-9)
    saved = table.to_json(tmp_path / "t.json", per_example=False)
    assert json.loads(saved.read_text())["n_examples"] == 25
    paths = mk.report.save_plots(table, tmp_path / "plots")
    assert [p.name for p in paths] == ["vulnerability_vs_memorization.png",
                                       "vulnerability_vs_grad_norm.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    fig = mk.report.plot_vulnerability(table, against="grad_norm", path=tmp_path / "g.pdf")
    assert fig.axes[0].get_xscale() == "log" and (tmp_path / "g.pdf").exists()


@pytest.mark.parametrize("kwargs,exc,match", [
    ({}, ValueError, r"expected at least one of"),
    ({"membership": np.ones(3, bool)}, ValueError, r"membership: given without lira_scores"),
    ({"lira_scores": np.zeros((2, 3))}, ValueError, r"membership: needed with leave-one-out"),
    ({"lira_scores": np.zeros((2, 3)), "membership": np.ones((3, 2), bool)}, ValueError,
     r"membership: expected the shape of lira_scores \(2, 3\)"),
    ({"lira_scores": np.zeros(3), "membership": np.full(3, 2)}, ValueError,
     r"membership: expected booleans"),
    ({"memorization": np.zeros(3), "grad_norms": np.zeros(4)}, ValueError,
     r"grad_norm: expected 3 values"),
    ({"memorization": np.zeros((3, 2))}, ValueError, r"memorization: expected a 1-D array"),
    ({"memorization": np.array(["a"])}, TypeError, r"memorization: expected a real-valued"),
    ({"memorization": np.zeros(3), "extra": {"memorization": np.zeros(3)}}, ValueError,
     r"extra: column 'memorization' already exists"),
])
def test_table_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mk.report.vulnerability_table(**kwargs)


def test_table_fit_length_and_plot_column_checked():
    keep, s, _ = loo_setup(m=8, n=10)
    with pytest.raises(ValueError, match=r"fit: expected a fit of 4 examples"):
        mk.report.vulnerability_table(memorization=np.zeros(4), fit=mk.lira.fit(s, keep))
    table = mk.report.vulnerability_table(memorization=np.arange(5.0))
    with pytest.raises(ValueError, match=r"against: expected one of \['memorization'\]"):
        mk.report.plot_vulnerability(table, against="grad_norm")
    with pytest.raises(TypeError, match=r"table: expected a VulnerabilityTable"):
        mk.report.plot_vulnerability({"a": 1})
    with pytest.raises(ValueError, match=r"by: expected one of"):
        table.top(2, by="nope")


# ------------------------------------------------------------------ report.html
def _small_report(**extra):
    rep = {"run": {"n_models": 4, "n_examples": 10, "n_augmentations": 1, "n_classes": 2,
                   "config": {"head": "linear"}, "metadata": {"dataset": "<b>x</b> & y"}},
           "models": {"train_accuracy": 1.0, "test_accuracy": 0.9},
           "evaluation": {"confidence_level": 0.95}, "attacks": {}}
    rep.update(extra)
    return rep


def test_html_escapes_text_and_embeds_listed_figures(tmp_path):
    import base64

    png = tmp_path / "roc.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    rep = _small_report(files={"roc": str(png), "missing": str(tmp_path / "gone.png"),
                               "report": str(tmp_path / "report.json")})
    page = mk.audit.to_html(rep)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; &amp; y" in page
    assert "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode() in page
    assert page.count("<img") == 1  # a listed file that does not exist is left out
    assert "<img" not in mk.audit.to_html(rep, embed_figures=False)
