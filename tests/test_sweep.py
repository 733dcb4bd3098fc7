"""The shots/classes study end to end on small grids: cells, fits, resume, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import miakit as mk
from miakit.cli import main
from miakit.studies.sweep import cell_examples, sweep

pytest.importorskip("statsmodels")


def _data(n_per_class=30, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = (rng.normal(size=(len(y), 6)) + 1.5 * np.eye(6)[y % 6]).astype(np.float32)
    return x, y


def test_cells_have_exactly_their_shots_per_class():
    x, y = _data()
    for s, c in ((1, 2), (3, 4), (15, 3)):
        idx = cell_examples(y, s, c, seed=2)
        counts = np.unique(y[idx], return_counts=True)[1]
        assert len(counts) == c and (counts == 2 * s).all()
        np.testing.assert_array_equal(idx, cell_examples(y, s, c, seed=2))
    with pytest.raises(ValueError, match="shots"):
        cell_examples(y, 16, 2, seed=0)  # 32 per class needed, 30 available
    with pytest.raises(ValueError, match="classes"):
        cell_examples(y, 1, 5, seed=0)


def test_sweep_report_and_resume(tmp_path):
    x, y = _data()
    kw = dict(shots=[1, 2, 4, 8], classes=[2, 4], n_models=8, fprs=[0.1, 0.01], seed=1)
    r = sweep(x, y, tmp_path, **kw)
    assert len(r["cells"]) == 8 and set(r["fits"]) == {"0.1", "0.01"}
    for cell in r["cells"]:
        run = mk.shadow.open_run(tmp_path / "cells" / f"S{cell['shots']}_C{cell['classes']}"
                                 / "run")
        keep, labels = run.keep, run.labels
        for cls in range(cell["classes"]):  # every head: exactly S examples of each class
            assert (keep[:, labels == cls].sum(1) == cell["shots"]).all()
        assert cell["tpr_at_fpr"][0]["n_members"] == 8 * cell["shots"] * cell["classes"]
    fit = r["fits"]["0.1"]
    s = np.array([c["shots"] for c in r["cells"]], float)
    c = np.array([c["classes"] for c in r["cells"]], float)
    t = np.array([c_["tpr_at_fpr"][0]["tpr"] for c_ in r["cells"]])
    want = mk.powerlaw.fit(s, c, t, 0.1, resolvable=[c_["tpr_at_fpr"][0]["resolvable"]
                                                     for c_ in r["cells"]])
    assert fit["beta_s"] == pytest.approx(want.beta_s, rel=1e-12)
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 9
    assert (tmp_path / "powerlaw.png").exists()
    on_disk = json.loads((tmp_path / "sweep.json").read_text())
    assert on_disk["fits"]["0.1"]["beta_s"] == fit["beta_s"]
    # a killed sweep: the last cell's result and the report are gone; the rerun redoes
    # that cell only and gives the same report
    (tmp_path / "cells" / "S8_C4" / "cell.json").unlink()
    (tmp_path / "sweep.json").unlink()
    again = sweep(x, y, tmp_path, **kw)
    assert again["fits"]["0.1"]["beta_s"] == pytest.approx(fit["beta_s"], rel=1e-9)
    assert [cl["tpr_at_fpr"] for cl in again["cells"]] == [cl["tpr_at_fpr"] for cl in r["cells"]]
    with pytest.raises(ValueError, match="different sweep"):
        sweep(x, y, tmp_path, **{**kw, "seed": 2})


def test_sweep_bad_input(tmp_path):
    x, y = _data()
    cases = [(dict(shots=[1], classes=[2]), "grid"), (dict(shots=[0, 1]), "shots"),
             (dict(classes=[1, 2]), "classes"), (dict(fprs=[1.5]), "fprs"),
             (dict(n_models=3), "n_models"), (dict(shots=[1, 64]), "shots")]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            sweep(x, y, tmp_path / "bad", **{"classes": [2, 3], "shots": [1, 2], **kw})
    with pytest.raises(ValueError, match="labels"):
        sweep(x, y[:-1], tmp_path / "bad")
    with pytest.raises(ValueError, match="labels"):
        sweep(x, np.zeros(len(y), int), tmp_path / "bad")


def test_sweep_command_with_own_features(tmp_path, capsys):
    x, y = _data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["sweep", "--features", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
            "--shots", "1", "2", "4", "8", "--classes", "2", "4", "--models", "8", "--fpr",
            "0.1", "--out", str(tmp_path / "out"), "--quiet", "--no-plot"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "beta_S" in text and "held out" in text and "sweep.json" in text
    assert main(["sweep", "--features", str(tmp_path / "x.npy"), "--out",
                 str(tmp_path / "o")]) == 1
    assert "--labels" in capsys.readouterr().err


def test_powerlaw_figure_has_intervals_and_marks_the_held_out_cells(monkeypatch, tmp_path):
    from miakit.studies import sweep as sweep_mod

    drawn = []
    monkeypatch.setattr(sweep_mod, "save_figure", lambda fig, path: drawn.append(fig))
    shots = [1, 2, 4, 8, 16] * 2
    classes = [2] * 5 + [5] * 5
    tpr = [min(0.9, 0.02 + 0.4 * s ** -0.5 * c ** 0.2) for s, c in zip(shots, classes)]
    cells = [{"shots": s, "classes": c, "tpr_at_fpr": [{
        "target_fpr": 0.01, "tpr": t, "tpr_ci": [t * 0.7, min(1.0, t * 1.3)],
        "resolvable": True}]} for s, c, t in zip(shots, classes, tpr)]
    s_arr, c_arr, t_arr = (np.array(v, float) for v in (shots, classes, tpr))
    report = {"dataset": "d", "config": {"n_models": 8, "fprs": [0.01]},
              "grid": {"shots": [1, 2, 4, 8, 16], "classes": [2, 5]}, "cells": cells,
              "fits": {"0.01": mk.powerlaw.fit(s_arr, c_arr, t_arr, 0.01).to_dict()},
              "heldout": {"0.01": sweep_mod._heldout_check(s_arr, c_arr, t_arr,
                                                          np.ones(10, bool), 0.01)}}
    sweep_mod.SweepResult(report).plot(tmp_path / "p.png")
    fig = drawn[0]
    ax = fig.axes[0]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "held out: refit without the largest S predicts it" in legend
    assert "95% interval of the cell's TPR (cluster-robust)" in legend
    assert "refit's prediction, 95% interval" in legend
    diamonds = [ln for ln in ax.lines if ln.get_marker() == "D"]
    assert len(diamonds) == 2  # the two cells at S = 16
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8", "16"]
