"""mk.generative (MACE membership risk, DOMIAS) and ``miakit generative``, against
independent references: scipy's K-S test, a brute-force threshold scan, a coverage
simulation of the DKW interval, the exact Bayes posterior of known Gaussians, the exact
total-variation distance of separated Gaussians, and a planted DOMIAS case."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

import miakit as mk
from miakit import generative as gen
from miakit.cli import build_parser, main


def _scan(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str]:
    """Best threshold rule by brute force over every observed value: (advantage,
    threshold, direction), with F(t) = share of values <= t."""
    best = (-1.0, math.nan, "")
    for t in np.unique(np.r_[a, b]):
        fa, fb = np.mean(a <= t), np.mean(b <= t)
        for adv, direction in ((fa - fb, "<="), (fb - fa, ">")):
            if adv > best[0] + 1e-12:
                best = (adv, float(t), direction)
    return best


# -- queries ------------------------------------------------------------------------------

def test_dcr_query_matches_brute_force(rng):
    x, s = rng.normal(size=(37, 5)), rng.normal(size=(23, 5))
    full = np.sqrt(((x[:, None, :] - s[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(gen.dcr_query(x, s), full.min(1), rtol=1e-12)
    np.testing.assert_allclose(gen.dcr_query(x, s, k=3), np.sort(full, 1)[:, :3], rtol=1e-12)
    assert gen.closest_distances is mk.neighbors.closest_distances


def test_apply_query_shapes_batches_and_torch():
    torch = pytest.importorskip("torch")
    x = np.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(gen.apply_query(lambda b: b[:, 0], x, batch_size=4),
                                  x[:, 0])
    v = gen.apply_query(lambda b: torch.as_tensor(b) * 2, x, batch_size=5)
    assert v.shape == (6, 2) and v.dtype == np.float64
    with pytest.raises(ValueError, match=r"fn: expected one scalar or one vector per record"):
        gen.apply_query(lambda b: b.sum(), x)
    with pytest.raises(ValueError, match=r"fn: expected one scalar .*got shape \(5,\)"):
        gen.apply_query(lambda b: b[:-1, 0], x)
    with pytest.raises(ValueError, match=r"fn: expected finite query values, got 1 NaN"):
        gen.apply_query(lambda b: np.where(b[:, 0] == 4, np.nan, b[:, 0]), x)
    with pytest.raises(TypeError, match="fn: expected a callable"):
        gen.apply_query(3, x)


# -- the membership advantage -------------------------------------------------------------

@pytest.mark.parametrize("n, m, ties", [(60, 45, False), (37, 101, True), (200, 200, True)])
def test_ks_advantage_is_scipys_statistic_and_the_best_threshold(rng, n, m, ties):
    a, b = rng.normal(0.0, 1.0, n), rng.normal(0.4, 1.2, m)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    r = gen.membership_advantage(a, b)
    assert r.method == "ks"
    assert r.advantage == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert r.pvalue == pytest.approx(stats.ks_2samp(a, b).pvalue, rel=1e-9)
    adv, t, direction = _scan(a, b)
    assert r.advantage == pytest.approx(adv, abs=1e-12)
    # the returned rule achieves the advantage on the samples
    member_a = a <= r.threshold if r.direction == "<=" else a > r.threshold
    member_b = b <= r.threshold if r.direction == "<=" else b > r.threshold
    assert member_a.mean() - member_b.mean() == pytest.approx(r.advantage, abs=1e-12)
    assert (r.tpr, r.fpr) == (pytest.approx(member_a.mean()), pytest.approx(member_b.mean()))
    # the DKW half-widths
    alpha = 1 - r.level
    assert r.dkw_eps == pytest.approx((math.sqrt(math.log(4 / alpha) / (2 * n)),
                                       math.sqrt(math.log(4 / alpha) / (2 * m))))
    assert r.ci == pytest.approx((max(0.0, r.advantage - sum(r.dkw_eps)),
                                  min(1.0, r.advantage + sum(r.dkw_eps))))


def test_direction_follows_which_side_has_small_values(rng):
    small, large = rng.normal(0, 1, 300), rng.normal(2, 1, 300)
    assert gen.membership_advantage(small, large).direction == "<="
    assert gen.membership_advantage(large, small).direction == ">"


def test_dkw_interval_covers_the_true_advantage(rng):
    # N(0, 1) against N(0.5, 1): the best threshold advantage is 2 Phi(0.25) - 1
    true = 2 * stats.norm.cdf(0.25) - 1
    for level in (0.8, 0.95):
        hits = 0
        for _ in range(300):
            r = gen.membership_advantage(rng.normal(0, 1, 150), rng.normal(0.5, 1, 90), level)
            hits += r.ci[0] <= true <= r.ci[1]
        assert hits / 300 >= level


def test_classifier_two_sample_estimate(rng):
    # identical distributions: near 0, and the interval covers 0
    same = gen.membership_advantage(rng.normal(size=(1500, 3)), rng.normal(size=(1200, 3)))
    assert same.method == "classifier" and same.n_test == 2400
    assert abs(same.advantage) < 0.06 and same.ci[0] <= 0 <= same.ci[1]
    lo, hi = mk.metrics.clopper_pearson(round(same.accuracy * 2400), 2400, 0.95)
    assert same.ci == pytest.approx((2 * lo - 1, 2 * hi - 1))
    # separated: means 2 apart along one axis, TV = 2 Phi(1) - 1
    shift = np.zeros(3)
    shift[0] = 2.0
    tv = 2 * stats.norm.cdf(1.0) - 1
    sep = gen.membership_advantage(rng.normal(size=(1500, 3)) + shift,
                                   rng.normal(size=(1500, 3)))
    assert sep.advantage == pytest.approx(tv, abs=0.05)
    assert sep.ci[0] <= tv <= sep.ci[1] and sep.pvalue < 1e-50
    from sklearn.ensemble import HistGradientBoostingClassifier

    own = gen.membership_advantage(rng.normal(size=(500, 2)) + shift[:2],
                                   rng.normal(size=(500, 2)), folds=3,
                                   classifier=HistGradientBoostingClassifier(max_iter=20))
    assert own.classifier == "HistGradientBoostingClassifier"
    assert own.advantage == pytest.approx(tv, abs=0.1)


def test_min_records_rule():
    assert gen.min_records(0.95) == math.ceil(8 * math.log(80))
    for level in (0.5, 0.9, 0.999):
        n = gen.min_records(level)
        assert math.sqrt(math.log(4 / (1 - level)) / (2 * n)) <= 0.25
        assert math.sqrt(math.log(4 / (1 - level)) / (2 * (n - 1))) > 0.25


# -- individual risk ----------------------------------------------------------------------

@pytest.mark.parametrize("method", ["kde", "classifier"])
@pytest.mark.parametrize("prior", [0.5, 0.2])
def test_individual_risk_matches_the_bayes_posterior(rng, method, prior):
    q_in, q_out = rng.normal(0.0, 1.0, 4000), rng.normal(1.5, 1.0, 3000)
    grid = np.linspace(-1.5, 3.0, 19)  # to 1.5 sd beyond each mean
    f_in, f_out = stats.norm.pdf(grid, 0.0, 1.0), stats.norm.pdf(grid, 1.5, 1.0)
    bayes = prior * f_in / (prior * f_in + (1 - prior) * f_out)
    err = np.abs(gen.individual_risk(grid, q_in, q_out, prior, method=method) - bayes)
    assert err.mean() < 0.025 and err.max() < 0.075  # the largest errors in the tails


def test_risk_attack_is_cross_fitted_and_its_ranking_ignores_the_prior(rng):
    q_in, q_out = rng.normal(0.0, 1.0, 600), rng.normal(1.0, 1.0, 500)
    a = gen.risk_attack(q_in, q_out, 0.5, seed=3)
    b = gen.risk_attack(q_in, q_out, 0.05, seed=3)
    assert a.power.auc == b.power.auc
    assert a.power.auc == pytest.approx(mk.metrics.auc(np.r_[-q_in, -q_out],
                                                       np.r_[np.ones(600), np.zeros(500)]),
                                        abs=0.02)  # the ratio is monotone: the DCR order
    assert (b.risk_train < a.risk_train).all()
    # cross-fitting: a record fitted into its own density would look like a member
    x = rng.normal(size=300)
    honest = gen.risk_attack(x[:150], x[150:])
    assert abs(honest.power.auc - 0.5) < 0.1


def test_attack_power_is_mk_metrics(rng):
    s_in, s_out = rng.normal(1, 1, 700), rng.normal(0, 1, 1300)
    p = gen.attack_power(s_in, s_out, fprs=[0.01, 0.001])
    ref = mk.metrics.tpr_at_fpr(np.r_[s_in, s_out], np.r_[np.ones(700), np.zeros(1300)],
                                0.001)
    assert p.at(0.001) == ref and p.n_members == 700 and p.n_nonmembers == 1300
    d = p.to_dict()
    assert set(d["tpr_at_fpr"]) == {"0.01", "0.001"} and d["tpr_at_fpr"]["0.001"]["resolvable"]


# -- DOMIAS -------------------------------------------------------------------------------

def test_domias_ranks_planted_members_first(rng):
    pop = lambda n: rng.normal(size=(n, 3))  # noqa: E731
    members, nonmembers = pop(300), pop(300)
    # a generator that memorised: half its samples are members plus a little noise
    synthetic = np.r_[members[:300] + 0.05 * rng.normal(size=(300, 3)), pop(300)]
    # kernels narrow enough to see the copies (Scott's rule smooths over 0.4 sd in 3-D)
    s = gen.domias_scores(np.r_[members, nonmembers], synthetic, pop(2000), bandwidth=0.1)
    assert mk.metrics.auc(s, np.r_[np.ones(300), np.zeros(300)]) > 0.85
    scott = gen.domias_scores(np.r_[members, nonmembers], synthetic, pop(2000))
    assert mk.metrics.auc(scott, np.r_[np.ones(300), np.zeros(300)]) > 0.58
    # with the synthetic data from the population, nothing to find
    null = np.random.default_rng(5)
    s0 = gen.domias_scores(np.r_[members, nonmembers], null.normal(size=(600, 3)),
                           null.normal(size=(2000, 3)))
    assert abs(mk.metrics.auc(s0, np.r_[np.ones(300), np.zeros(300)]) - 0.5) < 0.08
    # the log ratio itself, against scipy's KDEs
    syn, ref, x = pop(200), pop(250), pop(5)
    want = stats.gaussian_kde(syn.T).logpdf(x.T) - stats.gaussian_kde(ref.T).logpdf(x.T)
    np.testing.assert_allclose(gen.domias_scores(x, syn, ref), want, rtol=1e-12)


def test_domias_pca_handles_wide_records_with_constant_columns(rng):
    wide = np.zeros((400, 20))
    wide[:, :6] = rng.normal(size=(400, 6))
    s = gen.domias_scores(wide[:50], wide[50:250], wide[250:], n_components=3)
    assert s.shape == (50,) and np.isfinite(s).all()
    with pytest.raises(ValueError, match="singular covariance"):
        gen.domias_scores(wide[:50], wide[50:250], wide[250:])


# -- bad input ----------------------------------------------------------------------------

def test_bad_input_names_the_argument(rng):
    q = rng.normal(size=100)
    x = rng.normal(size=(10, 4))
    with pytest.raises(ValueError, match=r"synthetic: expected 4 features .*got shape \(8, 3\)"):
        gen.dcr_query(x, rng.normal(size=(8, 3)))
    with pytest.raises(ValueError, match=r"q_holdout: expected query values of width 1"):
        gen.membership_advantage(q, rng.normal(size=(100, 2)))
    with pytest.raises(ValueError, match=r"reference: expected 4 features"):
        gen.domias_scores(x, x, rng.normal(size=(30, 5)))
    bad = q.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="q_train: expected finite values, got NaN"):
        gen.membership_advantage(bad, q)
    with pytest.raises(ValueError, match="records: expected finite values"):
        gen.dcr_query(np.where(x > 1, np.nan, x), x)
    with pytest.raises(ValueError, match=r"k: expected 1 <= k <= 8 .*got 9"):
        gen.dcr_query(x, x[:8], k=9)
    for prior in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=rf"prior: expected a value in \(0, 1\), got "
                                             rf"{prior}"):
            gen.individual_risk(q[:5], q, q, prior)
    with pytest.raises(ValueError, match=r"prior: expected a value in \(0, 1\)"):
        gen.risk_attack(q, q, prior=2.0)
    for level in (0.0, 1.0, 95):
        with pytest.raises(ValueError, match=rf"level: expected a value in \(0, 1\), got "
                                             rf"{level}"):
            gen.membership_advantage(q, q, level)
    with pytest.raises(ValueError, match=r"q_holdout: expected at least 36 records for an "
                                         r"interval at level 0.95 .*got 35"):
        gen.membership_advantage(q, q[:35])
    with pytest.raises(ValueError, match=r"q_holdout: expected at least 48 .*got 40"):
        gen.membership_advantage(q, q[:40], level=0.99)
    with pytest.raises(ValueError, match=r"q_train: expected at least 36"):
        gen.membership_advantage(q[:20], q)
    with pytest.raises(ValueError, match=r"q_holdout: expected at least 36"):
        gen.membership_advantage(rng.normal(size=(100, 2)), rng.normal(size=(30, 2)))
    with pytest.raises(ValueError, match=r"method: expected one of \['kde', 'classifier'\], "
                                         r"got 'knn'"):
        gen.individual_risk(q, q, q, method="knn")
    with pytest.raises(ValueError, match=r"method: 'ks' needs scalar queries"):
        gen.membership_advantage(rng.normal(size=(50, 2)), rng.normal(size=(50, 2)),
                                 method="ks")
    with pytest.raises(ValueError, match=r"n_components: expected an int in \[1, 4\], got 7"):
        gen.domias_scores(x, x, x, n_components=7)
    with pytest.raises(ValueError, match=r"fprs: expected values in \(0, 1\)"):
        gen.attack_power(q, q, fprs=[0.01, 2])


# -- the command line ---------------------------------------------------------------------

def test_generative_help_documents_every_option(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["generative", "--help"])
    text = capsys.readouterr().out
    sub = parser._subparsers._group_actions[0].choices["generative"]
    for action in sub._actions:
        for opt in action.option_strings:
            assert opt in text
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest


def test_cli_generative_study_end_to_end(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["generative", "--out", str(out), "--n-examples", "400", "--gmm", "2:full",
                 "4:diag", "n:diag", "--vae-epochs", "3", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "capacity trend" in text and "more capacity leaks more" in text
    r = json.loads((out / "generative.json").read_text())
    assert r["split"] == {"train": 200, "holdout": 200, "seed": 0, "synthetic_per_model": 200}
    names = [m["name"] for m in r["models"]]
    assert names == ["GMM 2 (full)", "GMM 4 (diag)", "GMM 200 (diag)", "VAE"]
    gmm = [m for m in r["models"] if m["kind"] == "gmm"]
    advs = [m["advantage"]["advantage"] for m in gmm]
    assert advs[-1] > 0.5 and advs[-1] > advs[0] + 0.3  # the memoriser leaks
    assert r["capacity_trend"]["more_capacity_leaks_more"]
    for m in r["models"]:
        a = m["advantage"]
        assert a["method"] == "ks" and a["ci"][0] <= a["advantage"] <= a["ci"][1]
        assert m["n_synthetic"] == 200 and m["n_parameters"] > 0
        for key in ("dcr", "risk", "domias"):
            t = m["attacks"][key]["tpr_at_fpr"]
            assert set(t) == {"0.01", "0.001"} and not t["0.001"]["resolvable"]
        assert len(m["at_risk"]) == 8
        risks = [x["risk"] for x in m["at_risk"]]
        assert risks == sorted(risks, reverse=True)
    # the memoriser's most exposed records have near-copies among the samples
    assert gmm[-1]["at_risk"][0]["dcr"] < 0.05
    assert gmm[-1]["attacks"]["dcr"]["tpr_at_fpr"]["0.01"]["tpr"] > 0.5
    assert (out / "generative.png").stat().st_size > 0
    assert (out / "generative_records.png").stat().st_size > 0
    assert r["files"]["report"].endswith("generative.json")


def test_cli_audits_your_own_synthetic_data(tmp_path, capsys, rng):
    d = mk.datasets.digits(views=1)
    x = d.features[:, 0, :].astype(np.float64)
    train, holdout = x[:300], x[300:600]
    copies = train[rng.permutation(300)[:150]] + 0.01 * rng.normal(size=(150, 64))
    synthetic = np.r_[copies, x[600:750]]  # half copies of training records
    paths = {}
    for name, arr in (("s", synthetic), ("t", train), ("h", holdout)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    out = tmp_path / "own"
    assert main(["generative", "--synthetic", str(paths["s"]), "--train", str(paths["t"]),
                 "--holdout", str(paths["h"]), "--out", str(out)]) == 0
    r = json.loads((out / "generative.json").read_text())
    (m,) = r["models"]
    assert m["kind"] == "user" and m["n_synthetic"] == 300
    assert m["advantage"]["advantage"] == pytest.approx(0.5, abs=0.12)
    assert m["advantage"]["direction"] == "<=" and m["at_risk"][0]["dcr"] < 0.2
    assert (out / "generative_records.png").exists()
    capsys.readouterr()
    # one of the three missing, or a study option with your data: exit status 1
    assert main(["generative", "--synthetic", str(paths["s"]), "--out", str(out)]) == 1
    assert "--train, --holdout: needed" in capsys.readouterr().err
    assert main(["generative", "--synthetic", str(paths["s"]), "--train", str(paths["t"]),
                 "--holdout", str(paths["h"]), "--gmm", "5", "--out", str(out)]) == 1
    np.save(paths["h"], holdout[:, :10])
    assert main(["generative", "--synthetic", str(paths["s"]), "--train", str(paths["t"]),
                 "--holdout", str(paths["h"]), "--out", str(out)]) == 1
    assert "holdout: expected 64 features" in capsys.readouterr().err


def test_tpr_panel_has_clopper_pearson_intervals(tmp_path, monkeypatch):
    from miakit.studies import _generative_plots as gp

    drawn = []
    monkeypatch.setattr(gp, "save_figure", lambda fig, path: drawn.append(fig))

    def attack(tp, n, stored):
        t = {"tpr": tp / n, "tp": tp, "resolvable": True}
        if stored:
            t["ci"] = list(mk.metrics.clopper_pearson(tp, n))
        return {"n_members": n, "tpr_at_fpr": {"0.01": t}}

    models = [{"name": f"GMM {k}", "kind": "gmm", "n_parameters": 10 * k,
               "advantage": {"advantage": 0.1 * k, "ci": [0.05 * k, 0.15 * k]},
               "attacks": {"dcr": attack(3 * k, 200, True), "risk": attack(2 * k, 200, False),
                           "domias": attack(k, 200, True)}} for k in (1, 2, 4)]
    gp.plot_generative({"models": models, "fprs": [0.01], "level": 0.95, "dataset": "d"},
                       tmp_path / "g.png")
    ax2 = drawn[0].axes[1]
    assert ax2.get_yscale() == "log" and "Clopper-Pearson" in ax2.get_ylabel()
    bars = [c for c in ax2.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 3  # one per attack
    # the risk attack had no stored interval: the same Clopper-Pearson from its count
    segments = bars[1].lines[2][0].get_segments()
    lo, hi = mk.metrics.clopper_pearson(2, 200)
    assert segments[0][:, 1] == pytest.approx([lo, hi])
