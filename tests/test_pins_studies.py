"""Pins for the studies built on shadow models: which models and examples each step of
the memorization-aware budget, the shots/classes sweep and the K-S leakage experiment
uses (SCIENCE.md, sections 5, 7 and 11).

The inner calls are spied on (monkeypatch) and the data they receive is checked against
what the method says each step may see; values are recomputed here where they can be.
Each test names the one-line bug it guards against.
"""

from __future__ import annotations

import numpy as np
import pytest

import miakit as mk
import miakit.studies._budget_draws as budget_mod
import miakit.studies.ks_leakage as leakage_mod
import miakit.studies.sweep as sweep_mod
from miakit.cli import main


# ------------------------------------------------------ memorization-aware budget
def _aware_data(m=12, n=120, seed=0):
    """Continuous random logits (every model's scaled confidence on every example is a
    distinct float, so a value names its model) with a few strongly memorized examples."""
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    y = rng.integers(0, 4, n)
    z = rng.normal(size=(m, n, 1, 4)).astype(np.float32)
    exposed = np.zeros(n, bool)
    exposed[rng.permutation(n)[:12]] = True
    boost = np.where(exposed, 5.0 * keep - 2.5, 0.3 * keep)
    z[np.arange(m)[:, None], np.arange(n), 0, y] += boost.astype(np.float32)
    return z, keep, y


class _ModelSpy:
    """Records, in call order, which models each step of the aware attack reads: the
    pilot's ranking (``_budget_draws._ranking``), every LiRA fit (its reference models) and every
    LiRA score (its target model). Models are recognised by their signal values."""

    def __init__(self, monkeypatch, z, y):
        s = np.asarray(mk.signals.scaled_confidence(z, y[:, None]), dtype=np.float64)
        self.owner = {float(v): k for k, row in enumerate(s[:, :, 0]) for v in row}
        assert len(self.owner) == s.shape[0] * s.shape[1]  # every value names one model
        self.events: list[tuple[str, list[int]]] = []
        ranking, fit, score = budget_mod._ranking, mk.lira.fit, mk.lira.score

        def spy_ranking(key, correct, s_, keep):
            self.events.append(("rank", self._models(s_)))
            return ranking(key, correct, s_, keep)

        def spy_fit(s_, keep, *args, **kwargs):
            self.events.append(("fit", self._models(s_)))
            return fit(s_, keep, *args, **kwargs)

        def spy_score(s_, *args, **kwargs):
            self.events.append(("score", self._models(np.asarray(s_)[None])))
            return score(s_, *args, **kwargs)

        monkeypatch.setattr(budget_mod, "_ranking", spy_ranking)
        monkeypatch.setattr(mk.lira, "fit", spy_fit)
        monkeypatch.setattr(mk.lira, "score", spy_score)

    def _models(self, s_):
        a = np.asarray(s_)
        return [self.owner[float(a[i].ravel()[0])] for i in range(a.shape[0])]

    def draws(self, m, pilot):
        """The events grouped by draw: each pilot ranking (not the whole run's) opens one."""
        out = []
        for kind, models in self.events:
            if kind == "rank" and len(models) == pilot < m:
                out.append({"pilot": models, "fits": []})
            elif out and kind == "fit":
                out[-1]["fits"].append({"refs": models, "targets": []})
            elif out and kind == "score":
                out[-1]["fits"][-1]["targets"].extend(models)
        return out


def _check_disjoint(draws, *, pilot, budgets, n_draws, groups=3):
    assert len(draws) == n_draws
    for d in draws:
        p = set(d["pilot"])
        # the pilot is complementary pairs (2i, 2i + 1)
        assert len(p) == pilot and {k ^ 1 for k in p} == p
        assert len(d["fits"]) == groups * len(budgets)  # aware, random, all: per budget
        for f in d["fits"]:
            refs = set(f["refs"])
            assert len(refs) in budgets and {k ^ 1 for k in refs} == refs
            # the point of the pin: no pilot model is a reference (or a target)
            assert not refs & p, (sorted(p), sorted(refs))
            assert f["targets"] and not set(f["targets"]) & (p | refs)


def test_aware_pilot_models_are_never_references(monkeypatch):
    """Bug: the pilot's models reused as reference models (or targets) of the attack that
    follows (e.g. ``exclude=pairs`` dropped): the pilot's ranking then leaks into the
    attack, and the models spent (pilot + b) are no longer what was used."""
    z, keep, y = _aware_data()
    spy = _ModelSpy(monkeypatch, z, y)
    r = mk.studies.budget.memorization_aware(z, keep, y, pilot=4, budgets=[2, 4, 6],
                                             candidates=12, draws=4, targets=2, fprs=[0.1],
                                             seed=1)
    draws = spy.draws(12, 4)
    _check_disjoint(draws, pilot=4, budgets=[2, 4, 6], n_draws=4)
    # with 6 pairs, a pilot of 2 pairs and 3 pairs of references, only 1 pair is left for
    # the targets: disjointness leaves no choice
    for d in draws:
        last = d["fits"][-1]
        assert len(set(last["refs"])) == 6
        assert set(last["targets"]) <= set(range(12)) - set(d["pilot"]) - set(last["refs"])
    # the report's models spent: pilot + b for the aware attack
    for row in r["rows"]:
        assert row["models_spent"] == row["budget"] + (4 if row["group"] ==
                                                       "memorization-aware" else 0)


def test_budget_command_aware_keeps_pilot_and_references_apart(monkeypatch, tmp_path,
                                                               capsys):
    """Bug: ``miakit budget --aware`` with the pilot's models reused as references."""
    z, keep, y = _aware_data(seed=2)
    run = mk.shadow.import_logits(tmp_path / "run", z, keep, y)
    spy = _ModelSpy(monkeypatch, z, y)
    assert main(["budget", "--run", str(run.path), "--out", str(tmp_path / "o"),
                 "--budgets", "2", "4", "--draws", "3", "--targets", "2", "--fpr", "0.1",
                 "--quantiles", "0.9", "--rank-by", "memorization", "--aware", "--pilot",
                 "4", "--candidates", "12", "--no-plot"]) == 0
    capsys.readouterr()
    _check_disjoint(spy.draws(12, 4), pilot=4, budgets=[2, 4], n_draws=3)


# ------------------------------------------------------------- the shots/classes sweep
def _sweep_data(n_per_class=30, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = (rng.normal(size=(len(y), 6)) + 1.5 * np.eye(6)[y % 6]).astype(np.float32)
    return x, y


def _fast_heads(monkeypatch, record=None):
    """Replace the cells' head training (about a second per cell) by logits drawn here:
    members' true-class logit raised by 2.5 / sqrt(S), so the TPR falls with the shots
    like the power law says. What the sweep does with the logits is unchanged."""
    def fake(x, y, keep, *, n_classes, seed=0, **kwargs):
        keep = np.asarray(keep, bool)
        m, n = keep.shape
        rng = np.random.default_rng([seed, m, n, n_classes])
        shots = keep[0].sum() / n_classes  # every head trains on S examples per class
        z = rng.normal(size=(m, n, 1, n_classes)).astype(np.float32)
        z[np.arange(m)[:, None], np.arange(n), 0, np.asarray(y)] += (
            2.5 / np.sqrt(shots) * keep).astype(np.float32)
        if record is not None:
            record.append((keep.copy(), np.asarray(y).copy(), z.copy()))
        return z

    monkeypatch.setattr(mk.shadow, "train_heads", fake)


def _ols_predict(s, c, t, f, s_new, c_new):
    """log10(TPR - FPR) = b_S log10 S + b_C log10 C + b_0 by least squares (numpy), the
    prediction's TPR at (s_new, c_new)."""
    X = np.column_stack([np.log10(s), np.log10(c), np.ones(len(s))])
    beta = np.linalg.lstsq(X, np.log10(t - f), rcond=None)[0]
    return f + 10.0 ** (np.column_stack([np.log10(s_new), np.log10(c_new),
                                         np.ones(len(s_new))]) @ beta)


def test_heldout_check_fits_only_the_training_cells():
    """Bug: the held-out cells (the largest shot count) entering the fit that is meant to
    predict them. Here they lie far off the law of the other cells: a fit on the
    training cells only predicts them badly, and its predictions match a least-squares
    fit computed here on those cells alone."""
    pytest.importorskip("statsmodels")  # the power-law fits
    f = 0.01
    s = np.array([1, 2, 4, 8, 16] * 2, float)
    c = np.array([2] * 5 + [5] * 5, float)
    wiggle = np.array([0.02, -0.03, 0.01, 0.03, 0.0, -0.02, 0.03, -0.01, 0.02, 0.0])
    t = f + 0.4 * s ** -0.5 * c ** 0.2 * 10 ** wiggle
    t[s == 16] = 0.9  # far above the law
    out = sweep_mod._heldout_check(s, c, t, np.ones(10, bool), f)
    assert out["n_cells"] == 2
    train = s < 16
    want = _ols_predict(s[train], c[train], t[train], f, s[~train], c[~train])
    got = np.array([cell["predicted"] for cell in out["cells"]])
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert [cell["shots"] for cell in out["cells"]] == [16.0, 16.0]
    assert out["covered"] == 0  # the off-law cells are not predicted by the others


def test_sweep_heldout_fit_sees_only_training_cells(monkeypatch, tmp_path):
    """Bug: the sweep's validation cells (the largest shot count) trained on by the
    held-out fit. The spy records the cells every power-law fit receives."""
    pytest.importorskip("statsmodels")  # the power-law fits
    x, y = _sweep_data()
    calls = []
    real = mk.powerlaw.fit

    def spy(shots, classes, tpr, fpr, *args, **kwargs):
        calls.append((np.array(shots, float), np.array(classes, float),
                      np.array(tpr, float), fpr))
        return real(shots, classes, tpr, fpr, *args, **kwargs)

    monkeypatch.setattr(mk.powerlaw, "fit", spy)
    _fast_heads(monkeypatch)
    r = sweep_mod.sweep(x, y, tmp_path, shots=[1, 2, 4, 8], classes=[2, 4], n_models=8,
                        fprs=[0.1], seed=1, plot=False)
    assert len(calls) == 2  # the fit on every cell, then the held-out check's
    s_all, c_all = calls[0][0], calls[0][1]
    assert sorted(zip(s_all, c_all)) == [(a, b) for a in (1, 2, 4, 8) for b in (2, 4)]
    s_fit, c_fit, t_fit, f = calls[1]
    assert s_fit.max() < 8 and sorted(zip(s_fit, c_fit)) == \
        [(a, b) for a in (1, 2, 4) for b in (2, 4)]
    # the report's predictions: a least-squares fit, here, on the training cells' TPRs
    cells = {(cl["shots"], cl["classes"]): cl["tpr_at_fpr"][0] for cl in r["cells"]}
    tr = [(a, b) for a in (1, 2, 4) for b in (2, 4)
          if cells[(a, b)]["resolvable"] and cells[(a, b)]["tpr"] > f]
    assert len(tr) >= 4
    h = r["heldout"]["0.1"]
    s_new = np.array([cell["shots"] for cell in h["cells"]])
    c_new = np.array([cell["classes"] for cell in h["cells"]])
    assert len(s_new) >= 1 and (s_new == 8).all()
    want = _ols_predict(np.array([a for a, _ in tr], float), np.array([b for _, b in tr],
                                                                        float),
                        np.array([cells[k]["tpr"] for k in tr]), f, s_new, c_new)
    np.testing.assert_allclose([cell["predicted"] for cell in h["cells"]], want, rtol=1e-9)


def test_sweep_tpr_intervals_are_clustered_by_example(monkeypatch, tmp_path):
    """Bug: the sweep's TPR intervals clustered by model (K clusters) instead of by example
    (SCIENCE.md 17: leave-one-out scores of one example are correlated across targets).
    The clusters handed to the ranking are checked, and every cell's interval is
    recomputed here from the cell's logits, clustered by example."""
    pytest.importorskip("statsmodels")  # the power-law fits
    x, y = _sweep_data()
    seen = []
    real = mk.metrics.RankedScores

    class Spy(real):
        def __init__(self, scores, members, clusters=None):
            seen.append((np.shape(scores), None if clusters is None else np.array(clusters)))
            super().__init__(scores, members, clusters)

    monkeypatch.setattr(mk.metrics, "RankedScores", Spy)
    heads = []
    _fast_heads(monkeypatch, heads)
    r = sweep_mod.sweep(x, y, tmp_path, shots=[1, 2, 4], classes=[2, 3], n_models=8,
                        fprs=[0.1, 0.05], seed=3, plot=False)
    monkeypatch.setattr(mk.metrics, "RankedScores", real)
    assert len(seen) == len(heads) == len(r["cells"]) == 6
    differs = 0
    for cell, (shape, cl), (keep, labels, z) in zip(r["cells"], seen, heads):
        m, n = keep.shape
        assert n == 2 * cell["shots"] * cell["classes"]
        scores = mk.lira.leave_one_out(z.astype(np.float64), keep, labels=labels,
                                       variance="global", on_empty="nan")
        ok = np.isfinite(scores)
        by_example = np.broadcast_to(np.arange(n), (m, n))[ok]
        by_model = np.broadcast_to(np.arange(m)[:, None], (m, n))[ok]
        assert cl is not None and shape == (int(ok.sum()),)
        np.testing.assert_array_equal(cl, by_example,
                                      err_msg="the clusters must be the examples")
        for p in cell["tpr_at_fpr"]:
            want = mk.metrics.tpr_at_fpr(scores[ok], keep[ok], p["target_fpr"],
                                         clusters=by_example)
            assert p["tpr"] == pytest.approx(want.tpr, abs=1e-12)
            np.testing.assert_allclose(p["tpr_ci"], want.ci, atol=1e-9)
            other = mk.metrics.tpr_at_fpr(scores[ok], keep[ok], p["target_fpr"],
                                          clusters=by_model)
            differs += not np.allclose(other.ci, want.ci, atol=1e-6)
    assert differs >= 1  # the two clusterings give different intervals on these cells


# ---------------------------------------------------------- K-S leakage experiment
def _softmax_true(z, y):
    z = z.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return np.take_along_axis(p, y[None, :, None], axis=-1)[..., 0]


def test_leaked_examples_come_from_the_test_part_that_is_tested(monkeypatch):
    """Bug: the s examples per class moved into training drawn from the wrong split (the
    validation or train part), or the K-S test run on another part than the one they
    came from. Each model's split, keep row and the two samples handed to the K-S test
    are recorded; the moved examples must be s per class of that model's test part, and
    the test must compare the validation part against that same test part."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = rng.normal(size=(120, 6)) + y[:, None]
    splits, trained, tested = [], [], []
    real_split, real_test = leakage_mod._split, mk.ks.leakage_test

    def spy_split(labels, seed):
        out = real_split(labels, seed)
        splits.append(out)
        return out

    def fake_train(features, labels, keep, **kwargs):
        # logits drawn here instead of trained heads (seconds on a busy machine): the
        # experiment's bookkeeping is what is checked, not the classifier
        keep = np.asarray(keep, bool)
        g = np.random.default_rng(len(trained))
        logits = g.normal(size=keep.shape + (1, 3)).astype(np.float32)
        logits[np.arange(keep.shape[0])[:, None], np.arange(keep.shape[1]), 0,
               np.asarray(labels)] += 2.0 * keep
        trained.append((keep.copy(), logits))
        return logits

    def spy_test(a, b, *args, **kwargs):
        tested.append((np.array(a), np.array(b)))
        return real_test(a, b, *args, **kwargs)

    monkeypatch.setattr(leakage_mod, "_split", spy_split)
    monkeypatch.setattr(mk.shadow, "train_heads", fake_train)
    monkeypatch.setattr(mk.ks, "leakage_test", spy_test)
    shots, seeds, train_size = [0, 5], 3, 30
    r = leakage_mod.leakage_experiment(x, y, shots=shots, seeds=seeds,
                                       train_size=train_size, plot=False)
    assert len(trained) == 1
    keep, logits = trained[0]
    models = [(s, k) for s in shots for k in range(seeds)]
    assert keep.shape == (len(models), 120)
    # the first split is the report's; then one per model, in model order
    assert len(splits) == 1 + len(models)
    conf = _softmax_true(logits[:, :, 0, :], y)  # true-class probability, computed here
    assert len(tested) == len(models)
    for k, (s, _) in enumerate(models):
        tr, va, te = splits[1 + k]
        # the split itself: 50 / 25 / 25 per class, disjoint, covering every example
        assert sorted(np.r_[tr, va, te].tolist()) == list(range(120))
        for c in range(3):
            assert [(y[p] == c).sum() for p in (tr, va, te)] == [20, 10, 10]
        row = keep[k]
        assert row[tr].sum() == train_size  # the train part's subsample
        assert not row[va].any()  # the validation part is never trained on
        for c in range(3):  # s examples of every class moved, all from the test part
            assert (row[te] & (y[te] == c)).sum() == s, (k, s, c)
        assert row.sum() == train_size + 3 * s
        a, b = tested[k]
        np.testing.assert_allclose(a, conf[k, va], rtol=1e-5, atol=1e-7,
                                   err_msg="K-S sample 1 must be the validation part")
        np.testing.assert_allclose(b, conf[k, te], rtol=1e-5, atol=1e-7,
                                   err_msg="K-S sample 2 must be the test part")
    for row in r["rows"]:
        assert row["moved_examples"] == 3 * row["shots"] and len(row["pvalues"]) == seeds
