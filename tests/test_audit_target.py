"""The audit of one target model (mk.audit.audit_target, miakit audit --target-logits):
its scores against mk.lira / mk.rmia / mk.thresholds called directly, plain binomial
intervals, the exposed records' p-values and q-values against written-out formulas and
statsmodels, their false discovery rate by simulation, offline-only references, the
command line and its errors."""

import csv
import json

import numpy as np
import pytest
from scipy import stats

import miakit as mk
from miakit.audit.target import target_scores
from miakit.cli import main
from miakit.exposure import benjamini_hochberg, membership_pvalues

N, M, C = 240, 16, 4


def _logits(rng, y, member, leak=2.0, views=1):
    z = rng.normal(size=(len(y), views, C)).astype(np.float32)
    z[np.arange(len(y)), :, y] += 1.0 + leak * member[:, None]
    return z


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """A reference run of M models trained on random halves, and a leaking target."""
    d = tmp_path_factory.mktemp("target")
    rng = np.random.default_rng(5)
    y = rng.integers(0, C, N)
    keep = mk.shadow.balanced_keep(M, N, seed=1)
    w = mk.shadow.create_run(d / "run", keep, y, n_augmentations=1, n_classes=C)
    for k in range(M):
        w.write_model(k, _logits(rng, y, keep[k]))
    member = rng.random(N) < 0.5
    target = _logits(rng, y, member)
    return mk.shadow.open_run(d / "run"), target, member, d


def test_scores_are_the_primitives_called_directly(refs):
    run, target, member, _ = refs
    ref = run.logits()
    keep, y = run.keep, run.labels
    got = target_scores(target, member, ref, keep, y, variance="global")
    fit = mk.lira.fit(ref, keep, variance="global", labels=y)
    t = mk.signals.scaled_confidence(target, y[:, None])
    np.testing.assert_allclose(got["lira_online"][0], mk.lira.score(t, fit, mode="online"))
    np.testing.assert_allclose(got["lira_offline"][0],
                               mk.lira.score(t, fit, mode="offline", offline="one_sided"))
    pop = np.flatnonzero(~member)
    np.testing.assert_allclose(got["rmia_online"][0],
                               mk.rmia.score(target, ref, keep, pop, labels=y))
    np.testing.assert_allclose(got["rmia_offline"][0],
                               mk.rmia.score(target, ref, keep, pop, labels=y, offline=True,
                                             a=mk.audit.RMIA_A))
    loss_t = -mk.signals.loss(target, y[:, None]).mean(-1)
    loss_r = -mk.signals.loss(ref, y[None, :, None]).mean(-1)
    np.testing.assert_allclose(got["loss"][0], loss_t, rtol=1e-6)
    out_mean = np.array([loss_r[~keep[:, n], n].mean() for n in range(N)])
    np.testing.assert_allclose(got["calibrated_loss"][0], loss_t - out_mean, rtol=1e-5,
                               atol=1e-6)


def test_the_report_judges_each_example_once_with_plain_intervals(refs):
    run, target, member, d = refs
    r = mk.audit.audit_target(run, target, member, d / "out", plot=True)
    assert r.verdict["leakage"] and r.target["online"] and not r.target["attacks_skipped"]
    scores = target_scores(target, member, run.logits(), run.keep, run.labels)
    for name, res in r.attacks.items():
        s = scores[name][0]
        assert res.n_members + res.n_nonmembers == N
        assert res.auc == pytest.approx(mk.metrics.auc(s, member))
        for p in res.tpr_at_fpr:
            # Clopper-Pearson on the members, no cluster correction: one model
            lo = stats.beta.ppf(0.025, p["tp"], p["n_members"] - p["tp"] + 1) if p["tp"] \
                else 0.0
            hi = stats.beta.ppf(0.975, p["tp"] + 1, p["n_members"] - p["tp"]) \
                if p["tp"] < p["n_members"] else 1.0
            assert p["tpr_ci"] == pytest.approx([lo, hi], abs=1e-9), name
        for p in res.leakage_test:
            assert p["test"].startswith("Fisher"), p["test"]
    # the files: report.json reads back, exposed.csv sorted by p-value, the page lists them
    again = mk.audit.load_report(d / "out" / "report.json")
    assert again.exposed == json.loads(json.dumps(r.exposed))
    rows = list(csv.DictReader((d / "out" / "exposed.csv").read_text().splitlines()))
    assert [k for k in rows[0]] == ["example", "p_value", "q_value", "exposed", "method",
                                    "n_out", "target_loss", "logit_grad_norm",
                                    "memorization"]
    # the columns are the record's own: its loss under the target, memorization over refs
    one = rows[0]
    n0 = int(one["example"])
    loss = -mk.thresholds.loss(target[None], run.labels)[0][n0]
    assert float(one["target_loss"]) == pytest.approx(loss, rel=1e-5)
    correct = run.logits()[:, :, 0, :].argmax(-1) == run.labels
    mem = mk.memorization.feldman_zhang(correct, run.keep)[n0]
    assert float(one["memorization"]) == pytest.approx(mem, abs=1e-6)
    assert len(rows) == member.sum()
    p = [float(x["p_value"]) for x in rows]
    assert p == sorted(p)
    assert sum(int(x["exposed"]) for x in rows) == r.exposed["n_exposed"] > 0
    page = (d / "out" / "report.html").read_text()
    assert "Exposed training records" in page and "one target model" in page
    text = r.summary()
    assert "exposed records:" in text and "Clopper-Pearson" in text


def test_pvalues_and_qvalues_against_written_out_formulas():
    rng = np.random.default_rng(0)
    m, n = 9, 60
    ref = rng.normal(size=(m, n))
    keep = rng.random((m, n)) < 0.4
    t = rng.normal(size=n) + 0.5
    for method in ("rank", "gaussian"):
        r = membership_pvalues(t, ref, keep, fdr=0.1, method=method)
        for j, i in enumerate(r.records):
            out = ref[~keep[:, i], i]
            if method == "rank":
                want = (1 + np.sum(out >= t[i])) / (len(out) + 1)
            elif len(out) < 2:
                want = 1.0
            else:
                sd = out.std(ddof=1)
                want = stats.t.sf((t[i] - out.mean()) / (sd * np.sqrt(1 + 1 / len(out))),
                                  len(out) - 1)
            assert r.p_value[j] == pytest.approx(want, rel=1e-12), (method, i)
        from statsmodels.stats.multitest import multipletests

        q = multipletests(r.p_value, method="fdr_bh")[1]
        np.testing.assert_allclose(r.q_value, q, rtol=1e-12)
        assert np.array_equal(r.exposed, q <= 0.1)
    # the auto rule: rank where 1/(n_out+1) <= fdr/n_tested
    big = np.zeros((400, 3), bool)
    r = membership_pvalues(np.zeros(3), rng.normal(size=(400, 3)), big, fdr=0.05)
    assert set(r.method) == {"rank"}  # 1/401 <= 0.05/3
    assert mk.exposure.min_rank_references(3, 0.05) == 59


def test_benjamini_hochberg_edge_cases():
    assert benjamini_hochberg([]).size == 0
    assert benjamini_hochberg([1.0]).tolist() == [1.0]
    np.testing.assert_allclose(benjamini_hochberg([0.2, 0.2, 0.2]), [0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="p_values"):
        benjamini_hochberg([0.1, np.nan])


@pytest.mark.parametrize("n_refs, n_records", [(8, 50), (32, 200), (128, 400)])
def test_false_discoveries_stay_below_the_fdr_when_nothing_leaks(n_refs, n_records):
    """Null target: every tested record's signal is one more OUT draw. BH at 5% must
    declare anything in at most ~5% of audits (all discoveries are false here)."""
    rng = np.random.default_rng(n_refs)
    fdr, sims, any_false = 0.05, 400, 0
    for _ in range(sims):
        # per-record difficulty and spread, Gaussian OUT distribution
        mu = rng.normal(size=n_records)
        sd = rng.uniform(0.5, 2.0, size=n_records)
        ref = mu + sd * rng.normal(size=(n_refs, n_records))
        keep = rng.random((n_refs, n_records)) < 0.5
        t = mu + sd * rng.normal(size=n_records)
        r = membership_pvalues(t, ref, keep, fdr=fdr)
        any_false += r.n_exposed > 0
    rate = any_false / sims
    # binomial slack: P(rate > 0.05 + 3 sd) is negligible under a 5% level
    assert rate <= fdr + 3 * np.sqrt(fdr * (1 - fdr) / sims), rate


def test_a_planted_leak_is_found_with_few_false_discoveries():
    rng = np.random.default_rng(1)
    n_refs, n, planted = 32, 400, 20
    fdp = []
    found = []
    for _ in range(100):
        mu = rng.normal(size=n)
        ref = mu + rng.normal(size=(n_refs, n))
        keep = rng.random((n_refs, n)) < 0.5
        t = mu + rng.normal(size=n)
        t[:planted] += 5.0  # 20 records memorized
        r = membership_pvalues(t, ref, keep, fdr=0.05)
        hit = r.records[r.exposed]
        false = np.sum(hit >= planted)
        fdp.append(false / max(len(hit), 1))
        found.append(np.sum(hit < planted) / planted)
    assert np.mean(fdp) <= 0.05 + 0.02
    assert np.mean(found) > 0.8


def test_offline_only_references_run_the_offline_attacks(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, C, N)
    keep = np.zeros((8, N), bool)  # references that never trained on these examples
    w = mk.shadow.create_run(tmp_path / "run", keep, y, n_augmentations=1, n_classes=C)
    for k in range(8):
        w.write_model(k, _logits(rng, y, keep[k]))
    member = rng.random(N) < 0.5
    r = mk.audit.audit_target(mk.shadow.open_run(tmp_path / "run"),
                              _logits(rng, y, member), member, plot=False)
    assert set(r.attacks) == set(mk.audit.OFFLINE_ATTACKS)
    assert set(r.target["attacks_skipped"]) == {"lira_online", "rmia_online"}
    assert "not run" in r.summary() and r.verdict["leakage"]
    with pytest.raises(ValueError, match="attacks: .*need reference models that trained"):
        mk.audit.audit_target(mk.shadow.open_run(tmp_path / "run"),
                              _logits(rng, y, member), member, attacks=["lira_online"])


def test_bad_targets_are_refused_naming_the_argument(refs):
    run, target, member, _ = refs
    with pytest.raises(ValueError, match=r"target_logits: expected shape \[240, 4\]"):
        mk.audit.audit_target(run, target[:10], member)
    with pytest.raises(ValueError, match="target_keep: expected a bool array"):
        mk.audit.audit_target(run, target, member.astype(int))
    with pytest.raises(ValueError, match="target_keep: expected members and non-members"):
        mk.audit.audit_target(run, target, np.ones(N, bool))
    bad = target.copy()
    bad[3, 0, 1] = np.nan
    with pytest.raises(ValueError, match="target_logits: expected finite values, got 1"):
        mk.audit.audit_target(run, bad, member)
    with pytest.raises(ValueError, match="fdr: "):
        mk.audit.audit_target(run, target, member, fdr=0.0)
    with pytest.raises(ValueError, match="attacks: .*lira_curvature.*cannot attack"):
        mk.audit.audit_target(run, target, member, attacks=["lira_curvature"])


def test_command_line_target_audit(refs, tmp_path, capsys):
    run, target, member, _ = refs
    np.save(tmp_path / "t.npy", target[:, 0, :])  # [N, C] works too
    np.save(tmp_path / "k.npy", member)
    out = tmp_path / "o"
    assert main(["audit", "--run", str(run.path), "--target-logits", str(tmp_path / "t.npy"),
                 "--target-keep", str(tmp_path / "k.npy"), "--out", str(out), "--no-plot",
                 "--fdr", "0.1"]) == 0
    text = capsys.readouterr().out
    assert "one target model" in text and "exposed records:" in text
    rep = json.loads((out / "report.json").read_text())
    assert rep["exposed"]["fdr"] == 0.1 and (out / "exposed.csv").is_file()
    # errors: exit status 1, the flag named
    assert main(["audit", "--target-logits", str(tmp_path / "t.npy"), "--out",
                 str(out)]) == 1
    assert "--run, --target-keep: a target model's audit needs" in capsys.readouterr().err
    (tmp_path / "empty.npy").write_bytes(b"")
    assert main(["audit", "--run", str(run.path), "--target-logits",
                 str(tmp_path / "empty.npy"), "--target-keep", str(tmp_path / "k.npy"),
                 "--out", str(out)]) == 1
    assert "--target-logits: cannot read" in capsys.readouterr().err


def test_the_shadow_audit_of_offline_only_or_partly_never_in_runs(tmp_path):
    rng = np.random.default_rng(4)
    y = rng.integers(0, C, 120)
    # offline-only references: the leave-one-out audit says what to do instead
    w = mk.shadow.create_run(tmp_path / "off", np.zeros((8, 120), bool), y,
                             n_augmentations=1, n_classes=C)
    for k in range(8):
        w.write_model(k, _logits(rng, y, np.zeros(120, bool)))
    with pytest.raises(ValueError, match="offline-only references.*audit_target"):
        mk.audit.audit(mk.shadow.open_run(tmp_path / "off"), plot=False)
    # some examples never IN: the audit runs, their memorization is NaN, not an error
    keep = mk.shadow.balanced_keep(8, 120, seed=0)
    keep[:, :10] = False
    w = mk.shadow.create_run(tmp_path / "part", keep, y, n_augmentations=1, n_classes=C)
    for k in range(8):
        w.write_model(k, _logits(rng, y, keep[k]))
    r = mk.audit.audit(mk.shadow.open_run(tmp_path / "part"), plot=False)
    assert r.attacks["lira_offline"].n_members == keep.sum()
