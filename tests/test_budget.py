"""Attack power against the shadow budget (miakit.budget, miakit budget)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import miakit as mk
from miakit.budget import shadow_budget
from miakit.cli import main


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
    assert r["groups"] == {"all examples": 400, "top 10% by memorization": 40}
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
                      (dict(quantiles=[1.5]), "quantiles"), (dict(fprs=[0.0]), "fprs"),
                      (dict(draws=0), "draws")):
        with pytest.raises(ValueError, match=match):
            shadow_budget(z, keep, y, plot=False, **{"budgets": [2, 4], **kw})


def test_budget_command(rng, tmp_path, capsys):
    z, keep, y, _ = _run(rng, m=12, n=120)
    run = mk.shadow.import_logits(tmp_path / "run", z, keep, y)
    assert main(["budget", "--run", str(run.path), "--out", str(tmp_path / "o"), "--budgets",
                 "2", "4", "--draws", "2", "--targets", "2", "--no-plot"]) == 0
    assert "top 10% by memorization" in capsys.readouterr().out
