"""Attack power against the shadow budget (miakit.studies.budget, miakit budget)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import miakit as mk
from miakit.cli import main
from miakit.studies.budget import memorization_aware, shadow_budget


def _run(rng, m=20, n=400):
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    y = rng.integers(0, 4, n)
    z = rng.normal(size=(m, n, 1, 4)).astype(np.float32)
    exposed = np.zeros(n, bool)
    exposed[:40] = True  # 10% of the examples are memorized: members win, others lose
    boost = np.where(exposed, 4.0 * keep - 2.0, 0.3 * keep)
    z[np.arange(m)[:, None], np.arange(n), 0, y] += boost.astype(np.float32)
    return z, keep, y, exposed


def test_memorized_examples_need_fewer_shadow_models(rng, tmp_path):
    z, keep, y, exposed = _run(rng)
    r = shadow_budget(z, keep, y, tmp_path, budgets=[2, 4, 8, 16], draws=3, targets=4,
                      fprs=[0.01], quantiles=[0.9])
    assert r["groups"] == {"all examples": 400, "top 10% by memorization": 40,
                           "top 10% by Hellinger distance": 40}
    for g in ("top 10% by memorization", "top 10% by Hellinger distance"):
        assert r["needed_for_half_the_best_tpr"][g] is not None
    top = {row["budget"]: row["tpr@0.01"]["mean"] for row in r["rows"]
           if row["group"] == "top 10% by memorization"}
    every = {row["budget"]: row["tpr@0.01"]["mean"] for row in r["rows"]
             if row["group"] == "all examples"}
    assert top[2] > every[2] and top[16] >= top[2]
    assert (tmp_path / "budget.json").exists() and (tmp_path / "budget.png").exists()
    assert json.loads((tmp_path / "budget.json").read_text())["budgets"] == [2, 4, 8, 16]


def test_budget_bad_input(rng):
    z, keep, y, _ = _run(rng, m=8, n=50)
    for kw, match in ((dict(budgets=[8]), "budgets"), (dict(budgets=[3]), "budgets"),
                      (dict(quantiles=[1.5]), "quantiles"), (dict(quantiles=[0.0]), "quantiles"),
                      (dict(fprs=[0.0]), "fprs"), (dict(draws=0), "draws"),
                      (dict(targets=0), "targets"), (dict(rank_by=["loss"]), "rank_by"),
                      (dict(target_tpr=1.0), "target_tpr"), (dict(planted=[0, 50]), "planted"),
                      (dict(planted=np.zeros(50, bool)), "planted"),
                      (dict(planted=np.ones(3, bool)), "planted")):
        with pytest.raises(ValueError, match=match):
            shadow_budget(z, keep, y, plot=False, **{"budgets": [2, 4], **kw})


def test_budget_command(rng, tmp_path, capsys):
    z, keep, y, _ = _run(rng, m=12, n=120)
    run = mk.shadow.import_logits(tmp_path / "run", z, keep, y)
    assert main(["budget", "--run", str(run.path), "--out", str(tmp_path / "o"), "--budgets",
                 "2", "4", "--draws", "2", "--targets", "2", "--no-plot"]) == 0
    assert "top 10% by memorization" in capsys.readouterr().out


def test_budget_refuses_runs_without_two_models_per_side_or_pairs(rng):
    z, keep, y, _ = _run(rng, m=8, n=50)
    with pytest.raises(ValueError, match="keep: .*complementary pairs"):
        shadow_budget(z, keep[[0, 2, 1, 3, 4, 5, 6, 7]], y, budgets=[2], plot=False)
    with pytest.raises(ValueError, match="budgets: the run has 4 models"):
        shadow_budget(z[:4], keep[:4], y, budgets=[4], plot=False)
    # one pair: 1 model per side, no targets left
    with pytest.raises(ValueError, match="budgets: the run has 2 models"):
        shadow_budget(z[:2], keep[:2], y, budgets=[2], plot=False)


def _planted_run(rng, m=24, n=300, n_planted=15):
    """Planted records (relabelled): a model gets them right only when it trained on
    them, strongly; the rest leak a little."""
    keep = mk.shadow.balanced_keep(m, n, seed=1)
    y = rng.integers(0, 4, n)
    z = rng.normal(size=(m, n, 1, 4)).astype(np.float32)
    planted = np.zeros(n, bool)
    planted[rng.permutation(n)[:n_planted]] = True
    boost = np.where(planted, 5.0 * keep - 2.5, 0.25 * keep)
    z[np.arange(m)[:, None], np.arange(n), 0, y] += boost.astype(np.float32)
    return z, keep, y, planted


def test_planted_group_needs_fewer_shadow_models_than_the_rest(rng, tmp_path):
    z, keep, y, planted = _planted_run(rng)
    r = shadow_budget(z, keep, y, tmp_path, budgets=[2, 4, 8, 16], draws=3, targets=4,
                      fprs=[0.05], quantiles=[0.95], planted=np.flatnonzero(planted))
    assert r["groups"]["planted"] == 15 and r["groups"]["the rest"] == 285
    assert r["planted"] == np.flatnonzero(planted).tolist()
    tpr = {(row["group"], row["budget"]): row["tpr@0.05"] for row in r["rows"]}
    # the planted records separate almost perfectly with one pair of reference models
    assert tpr[("planted", 2)]["mean"] > 0.9
    assert tpr[("the rest", 16)]["mean"] < 0.5
    assert tpr[("planted", 2)]["min"] <= tpr[("planted", 2)]["mean"] <= tpr[("planted", 2)]["max"]
    need = r["needed"]
    # default target: what the rest reach with the largest budget
    assert need["target_tpr"] == pytest.approx(tpr[("the rest", 16)]["mean"])
    assert need["groups"]["planted"]["budget"] == 2
    assert need["groups"]["the rest"]["budget"] <= 16
    lo, hi = need["groups"]["the rest"]["interval"]
    assert lo is None or lo <= need["groups"]["the rest"]["budget"]
    # both rankings put the planted records first
    for g in ("top 5% by memorization", "top 5% by Hellinger distance"):
        assert tpr[(g, 2)]["mean"] > 0.9
    # counts per draw: 4 targets x 15 planted records, half members
    row = next(x for x in r["rows"] if x["group"] == "planted")
    assert row["n_pos"] + row["n_neg"] == 60
    # a target nobody reaches: None
    r2 = shadow_budget(z, keep, y, budgets=[2, 4], draws=2, targets=2, fprs=[0.05],
                       quantiles=[], rank_by=[], planted=planted, target_tpr=0.999,
                       plot=False)
    assert set(r2["groups"]) == {"all examples", "planted", "the rest"}
    assert r2["needed"]["groups"]["the rest"] == {"budget": None, "interval": [None, None]}
    assert (tmp_path / "budget.png").stat().st_size > 0
    saved = json.loads((tmp_path / "budget.json").read_text())
    assert saved["needed"]["groups"]["planted"]["budget"] == 2


def test_budget_command_reads_the_planted_records_of_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["shadow", "--out", str(out), "--dataset", "synthetic", "--n-examples", "200",
                 "--planted", "0.05", "--head", "linear", "--models", "8", "--quiet"]) == 0
    run = mk.shadow.open_run(out)
    info = run.meta["metadata"]["dataset_info"]["planted"]
    assert info["kind"] == "relabel" and len(info["indices"]) == 10
    clean = mk.datasets.synthetic(n=200)
    assert (run.labels[info["indices"]] != clean.labels[info["indices"]]).all()
    capsys.readouterr()
    assert main(["budget", "--run", str(out), "--out", str(tmp_path / "b"), "--budgets", "2",
                 "4", "--draws", "2", "--targets", "2", "--fpr", "0.1", "--no-plot"]) == 0
    text = capsys.readouterr().out
    assert "planted (10 examples" in text and "shadow models needed" in text
    rep = json.loads((tmp_path / "b" / "budget.json").read_text())
    assert rep["planted"] == info["indices"]
    assert main(["shadow", "--out", str(tmp_path / "x"), "--planted", "1.0", "--quiet"]) == 1
    assert "planted" in capsys.readouterr().err


def test_memorization_aware_attack_beats_all_examples_per_model_spent(rng):
    z, keep, y, planted = _planted_run(rng, m=16, n=200, n_planted=10)
    kw = dict(pilot=4, budgets=[2, 4], candidates=0.05, draws=2, targets=2, fprs=[0.05],
              planted=planted, seed=3)
    r = memorization_aware(z, keep, y, **kw)
    assert r["candidates"] == 10 and r["pilot"] == 4 and r["budgets"] == [2, 4]
    tpr = {(row["group"], row["budget"]): row["tpr@0.05"]["mean"] for row in r["rows"]}
    for b in (2, 4):
        assert tpr[("memorization-aware", b)] > 0.6
        assert tpr[("memorization-aware", b)] > tpr[("all examples", b)] + 0.5
        assert tpr[("memorization-aware", b)] > tpr[("random selection", b)] + 0.5
    for row in r["rows"]:
        extra = 4 if row["group"] == "memorization-aware" else 0
        assert row["models_spent"] == row["budget"] + extra
        # every draw scores 2 targets x the selection (half members)
        size = 200 if row["group"] == "all examples" else 10
        assert row["n_pos"] + row["n_neg"] == 2 * size
    # a pilot of 4 models finds most planted records, and agrees with the whole run
    assert r["planted_recovered"]["mean"] >= 0.7
    assert r["agreement"]["overlap_with_full_run_top"]["mean"] >= 0.6
    assert all(len(p) == 10 for p in r["picks"])
    # all examples do not reach the aware attack's TPR within the budgets
    assert [x["all_examples_need"] for x in r["models_for_the_same_tpr"]] == [None, None]
    # the Hellinger ranking, and determinism for a seed
    h = memorization_aware(z, keep, y, **{**kw, "score": "hellinger", "candidates": 10})
    assert h["score"] == "hellinger" and h["planted_recovered"]["mean"] >= 0.7
    assert memorization_aware(z, keep, y, **kw) == r


def test_memorization_aware_bad_input(rng):
    z, keep, y, _ = _run(rng, m=12, n=50)
    for kw, match in ((dict(pilot=3), "pilot"), (dict(pilot=0), "pilot"),
                      (dict(pilot=10), "pilot: the run has 12 models"),
                      (dict(candidates=0.0), "candidates"), (dict(candidates=1.5), "candidates"),
                      (dict(candidates=0), "candidates"), (dict(candidates=51), "candidates"),
                      (dict(candidates=True), "candidates"),
                      (dict(budgets=[8]), "budgets: the run has 12 models, 4 of them the pilot"),
                      (dict(budgets=[3]), "budgets"), (dict(score="loss"), "score"),
                      (dict(fprs=[1.0]), "fprs"), (dict(draws=0), "draws"),
                      (dict(targets=0), "targets"), (dict(planted=[50]), "planted")):
        with pytest.raises((ValueError, TypeError), match=match):
            memorization_aware(z, keep, y, **{"budgets": [2, 4], **kw})
    for aware, match in (({"pilots": 4}, "aware"), ({"pilot": 8}, "budgets"),
                         ({"candidates": 2.0}, "candidates")):
        with pytest.raises(ValueError, match=match):
            shadow_budget(z, keep, y, budgets=[2, 4], plot=False, aware=aware)


def test_budget_command_aware(rng, tmp_path, capsys):
    z, keep, y, planted = _planted_run(rng, m=12, n=120, n_planted=6)
    run = mk.shadow.import_logits(tmp_path / "run", z, keep, y)
    assert main(["budget", "--run", str(run.path), "--out", str(tmp_path / "o"), "--budgets",
                 "2", "4", "--draws", "2", "--targets", "2", "--fpr", "0.05", "--quantiles",
                 "0.9", "--rank-by", "memorization", "--aware", "--pilot", "4",
                 "--candidates", "6"]) == 0
    text = capsys.readouterr().out
    assert "memorization-aware attack: 6 candidates" in text
    assert "b=2: aware with 6 models" in text and "pilot's pick" in text
    rep = json.loads((tmp_path / "o" / "budget.json").read_text())
    assert rep["aware"]["pilot"] == 4 and rep["aware"]["candidates"] == 6
    assert (tmp_path / "o" / "budget.png").stat().st_size > 0
    # a share above 1 is refused by the parser, before the run is opened
    with pytest.raises(SystemExit) as exit_info:
        main(["budget", "--run", str(run.path), "--out", str(tmp_path / "p"), "--budgets",
              "2", "--aware", "--candidates", "1.5", "--no-plot"])
    assert exit_info.value.code == 2
    assert "argument --candidates: expected a count" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
