"""The audit report's declared shape: AuditReport / AttackResult round trips, no private
keys, refusal of what is not a report, and the figures' in-memory parts."""

import json

import numpy as np
import pytest

import miakit as mk
from miakit.audit import AttackResult, AuditReport, audit, evaluate, load_report


def _keys(obj, path=""):
    """Every key of a nested JSON document, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"{path}/{k}", k
            yield from _keys(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _keys(v, f"{path}[{i}]")


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    x = rng.normal(size=(60, 4)) + y[:, None]
    keep = mk.shadow.balanced_keep(8, 60, seed=1)
    mk.shadow.train_heads(x, y, keep, run_dir=d / "run", progress=False)
    report = audit(mk.shadow.open_run(d / "run"), d / "out", plot=True,
                   extra={"timing_s": {"training": 1.5}, "note": "kept"})
    return report, d / "out"


def test_audit_returns_a_typed_report_whose_json_is_the_file(audited):
    report, out = audited
    assert isinstance(report, AuditReport)
    assert all(isinstance(a, AttackResult) for a in report.attacks.values())
    on_disk = json.loads((out / "report.json").read_text())
    mine = report.to_dict()
    # the file is written before its own writing time is known: all else is equal
    assert {k: v for k, v in on_disk.items() if k != "timing_s"} == \
        {k: v for k, v in mine.items() if k != "timing_s"}
    assert json.loads(report.to_json()) == mine
    # extra keys sit at the top level; the caller's training time joins the timing
    assert on_disk["note"] == "kept" and report.extra == {"note": "kept"}
    assert report.timing_s["training"] == 1.5
    assert report.timing_s["total"] == pytest.approx(1.5 + report.timing_s["audit"])


def test_no_private_keys_reach_the_json(audited):
    report, out = audited
    on_disk = json.loads((out / "report.json").read_text())
    private = [p for p, k in _keys(on_disk) if k.startswith("_")]
    assert private == []
    # the figure's curve and the loss attack's threshold stay in memory, as attributes
    loss = report.attacks["loss"]
    assert loss.curve is not None and loss.max_accuracy is not None
    assert "curve" not in loss and "max_accuracy" not in loss
    assert report["baselines"]["max_accuracy_threshold"]["accuracy"] == \
        pytest.approx(loss.max_accuracy.accuracy)


def test_round_trip_through_json_keeps_every_value(audited, tmp_path):
    report, out = audited
    again = load_report(out / "report.json")
    assert isinstance(again, AuditReport)
    on_disk = json.loads((out / "report.json").read_text())
    assert again.to_dict() == on_disk
    assert AuditReport.from_json((out / "report.json").read_text()).to_dict() == on_disk
    # written back and read again: the same document
    again.to_json(tmp_path / "copy.json")
    assert json.loads((tmp_path / "copy.json").read_text()) == on_disk
    # the mapping view reads like the JSON, attribute access like the dataclass
    assert again["attacks"]["lira_online"]["auc"] == again.attacks["lira_online"].auc
    assert again.get("verdict") == on_disk["verdict"] and "run" in again
    assert again.attacks["loss"].curve is None  # not in the JSON: no curve to draw
    with pytest.raises(ValueError, match="has no ROC curve"):
        mk.audit.plot_roc(again.attacks, tmp_path / "roc.png")
    # the summary and the page render the read-back report as they did the original
    assert again.summary() == mk.audit.summarize(on_disk)
    assert "<html" in again.to_html(figures_dir=out)


@pytest.mark.parametrize("doc, missing", [
    ({"attacks": {}}, "run, models, evaluation"),
    ({"run": {}, "models": {}}, "evaluation, attacks"),
])
def test_what_is_not_a_report_is_refused_naming_what_it_lacks(tmp_path, doc, missing):
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"path: expected the report.json of 'miakit "
                                         f"audit', .*r.json has no {missing}"):
        load_report(p)


def test_a_report_with_unknown_attack_keys_or_bad_json_is_refused(tmp_path, audited):
    report, out = audited
    doc = json.loads((out / "report.json").read_text())
    doc["attacks"]["loss"]["_curve"] = [0, 1]
    with pytest.raises(ValueError, match=r"unknown keys \['_curve'\]"):
        AuditReport.from_dict(doc)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="path: expected JSON, .*bad.json is not"):
        load_report(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json holds a JSON list"):
        load_report(tmp_path / "list.json")
    with pytest.raises(ValueError, match="REPORT: cannot read .*missing.json"):
        load_report(tmp_path / "missing.json", name="REPORT")


def test_evaluate_returns_attack_results_the_verdict_reads():
    keep = mk.shadow.balanced_keep(8, 400, seed=0)
    rng = np.random.default_rng(0)
    res = evaluate({"leaky": {"scores": rng.normal(size=keep.shape) + 2.0 * keep,
                              "label": "Leaky", "clamped": 3}}, keep)
    r = res["leaky"]
    assert isinstance(r, AttackResult) and r.label == "Leaky" and r.clamped_std == 3
    assert r.to_dict()["clamped_std"] == 3 and set(r) == set(r.to_dict())
    assert mk.audit.verdict(res)["leakage"]


def test_clamped_spreads_are_counted_from_the_warning_not_its_text():
    keep = mk.shadow.balanced_keep(8, 20, seed=0)
    z = np.zeros((8, 20, 1, 3), np.float32)  # identical observations: every spread is 0
    y = np.zeros(20, dtype=np.int64)
    with pytest.warns(mk.lira.ClampedSpreadWarning) as rec:
        mk.lira.leave_one_out(z, keep, labels=y, mode="online", center="median",
                              variance="per_example", on_empty="nan")
    n = rec[0].message.n_clamped
    got = mk.audit.run_attacks(z, keep, y, attacks=["lira_online"], variance="per_example")
    assert got["lira_online"]["clamped"] == n > 0


def test_the_strongest_attack_is_the_one_the_verdict_rests_on():
    keep = mk.shadow.balanced_keep(8, 600, seed=0)
    rng = np.random.default_rng(7)
    leaky = {"noise": {"scores": rng.normal(size=keep.shape)},
             "leaky": {"scores": rng.normal(size=keep.shape) + 1.5 * keep}}
    res = evaluate(leaky, keep)
    v = mk.audit.verdict(res)
    best = mk.audit.strongest(res, v)
    assert v["leakage"] and best["attack"] == v["strongest"]["attack"] == "leaky"
    assert best["target_fpr"] == v["strongest"]["target_fpr"]
    assert best["p_value"] == v["strongest"]["p_value"]
    # null data: no attack is named, and the summary says none was significant
    null = evaluate({"a": {"scores": rng.normal(size=keep.shape)},
                     "b": {"scores": rng.normal(size=keep.shape)}}, keep)
    vn = mk.audit.verdict(null)
    assert not vn["leakage"] and mk.audit.strongest(null, vn) is None
    # without a verdict: an unresolvable point is never the one compared
    r = {"a": {"label": "A", "auc": 0.9, "tpr_at_fpr": [
              {"target_fpr": 0.001, "tpr": 0.5, "resolvable": False},
              {"target_fpr": 0.01, "tpr": 0.1, "resolvable": True}]},
         "b": {"label": "B", "auc": 0.6, "tpr_at_fpr": [
              {"target_fpr": 0.001, "tpr": 0.0, "resolvable": False},
              {"target_fpr": 0.01, "tpr": 0.2, "resolvable": True}]}}
    s = mk.audit.strongest(r)
    assert (s["attack"], s["target_fpr"], s["tpr"]) == ("b", 0.01, 0.2)


def test_summary_names_no_strongest_attack_on_null_data(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    x = rng.normal(size=(80, 3))  # labels carry no signal: nothing to memorize much
    keep = mk.shadow.balanced_keep(8, 80, seed=0)
    mk.shadow.train_heads(x, y, keep, run_dir=tmp_path / "run", progress=False,
                          weight_decay=10.0)
    report = audit(mk.shadow.open_run(tmp_path / "run"), plot=False)
    assert not report.verdict["leakage"]  # (this seed: nothing detected)
    assert report.strongest_attack is None
    assert "strongest attack: none; no attack was significant" in report.summary()
