"""The miakit command line, end to end on small settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from miakit.audit import ATTACKS
from miakit.cli import build_parser, main

SMALL = ["--dataset", "synthetic", "--n-examples", "240", "--models", "8", "--hidden", "24",
         "--epochs", "60", "--quiet"]


def test_help_documents_every_option(capsys):
    parser = build_parser()
    for command in ("audit", "shadow", "sweep", "import", "leakage", "budget", "report"):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        sub = parser._subparsers._group_actions[0].choices[command]
        for action in sub._actions:
            for opt in action.option_strings:
                assert opt in text
            if action.option_strings and action.dest != "help":
                assert action.help, action.dest


def test_audit_trains_and_reports(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["audit", "--out", str(out), *SMALL]) == 0
    text = capsys.readouterr().out
    assert "LiRA online" in text and "verdict" in text
    report = json.loads((out / "report.json").read_text())
    assert set(report["attacks"]) == set(ATTACKS)
    assert "RMIA online" in text and "strongest attack" in text
    assert report["run"]["n_models"] == 8 and report["run"]["metadata"]["dataset"] == "synthetic"
    assert report["timing_s"]["training"] > 0 and report["timing_s"]["total"] > 0
    for a in report["attacks"].values():
        assert 0.0 <= a["auc"] <= 1.0
        assert a["n_members"] + a["n_nonmembers"] == 8 * 240
    assert (out / "roc.png").exists() and (out / "run" / "run.json").exists()
    vul = report["vulnerability"]  # MLP heads stored with their parameters: exact columns
    assert vul["meta"]["grad_norm_kind"] == "parameter gradient" and vul["meta"]["head"] == "mlp"
    assert "curvature" in vul["columns"] and (out / "vulnerability_vs_curvature.png").exists()
    assert "curvature" in text and "MLP head, exact" in text
    # Again: the run is reused, not retrained, and the audit is the same.
    assert main(["audit", "--out", str(out), *SMALL]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["attacks"]["lira_online"]["auc"] == report["attacks"]["lira_online"]["auc"]


def test_shadow_then_audit_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["shadow", "--out", str(run), "--seed", "3", *SMALL]) == 0
    assert "8/8 models" in capsys.readouterr().out
    assert main(["audit", "--run", str(run), "--out", str(tmp_path / "o"), "--no-plot",
                 "--fpr", "0.05", "--variance", "per_example", "--quiet"]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["attacks"]["lira_online"]["settings"]["variance"] == "per_example"
    assert [p["target_fpr"] for p in report["attacks"]["loss"]["tpr_at_fpr"]] == [0.05]
    assert report["run"]["config"]["seed"] == 3


def test_other_experiment_in_the_same_directory_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["shadow", "--out", str(run), *SMALL]) == 0
    before = (run / "manifest.json").read_bytes()
    args = ["shadow", "--out", str(run), *SMALL[:-3], "--epochs", "61", "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "different experiment" in err and "epochs=60 in the run, 61 now" in err
    assert (run / "manifest.json").read_bytes() == before


def test_errors_are_one_line_with_status_1(tmp_path, capsys):
    assert main(["shadow", "--out", str(tmp_path / "r"), "--models", "5", "--quiet"]) == 1
    assert "even number" in capsys.readouterr().err
    assert main(["audit", "--run", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["shadow", "--out", str(blocker / "run"), *SMALL]) == 1
    assert "could not write" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu(tmp_path, capsys):
    assert main(["shadow", "--out", str(tmp_path / "r"), "--device", "cuda", *SMALL]) == 1
    assert "no usable CUDA GPU" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "miakit", "audit", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--run" in res.stdout and "--device" in res.stdout
    res = subprocess.run([sys.executable, "-m", "miakit"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "audit" in res.stdout


def test_audit_options_attacks_references_alpha(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["shadow", "--out", str(run), "--seed", "1", *SMALL]) == 0
    out = tmp_path / "o"
    assert main(["audit", "--run", str(run), "--out", str(out), "--no-plot", "--attacks",
                 "rmia_online", "loss", "--references", "all", "--alpha", "0.01"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["attacks"]) == {"rmia_online", "loss"}
    assert report["evaluation"]["references"]["rule"] == "all"
    assert report["verdict"]["alpha"] == 0.01 and report["verdict"]["n_tests"] == 6
    capsys.readouterr()
    assert main(["audit", "--run", str(run), "--out", str(out), "--attacks", "nope"]) == 1
    assert "attacks" in capsys.readouterr().err


def test_bad_fpr_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["audit", "--out", str(out), "--fpr", "0.01", "1.5", *SMALL]) == 1
    assert "--fpr: expected values in (0, 1), got [0.01, 1.5]" in capsys.readouterr().err
    assert not (out / "run").exists()  # nothing was trained


def test_report_renders_a_moved_report_again(tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    assert main(["shadow", "--out", str(run), *SMALL]) == 0
    out = tmp_path / "o"
    assert main(["audit", "--run", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    moved = shutil.move(str(out), str(tmp_path / "moved"))
    (tmp_path / "moved" / "report.html").unlink()
    assert main(["report", str(tmp_path / "moved" / "report.json")]) == 0
    text = capsys.readouterr().out
    assert text.split("\nwrote ")[0] in printed  # the same summary as the audit printed
    # one "wrote" line, naming the page this command wrote (not the old audit's files)
    assert text.count("wrote ") == 1 and "report.json" not in text.split("wrote ")[1]
    page = (tmp_path / "moved" / "report.html").read_text()
    report = json.loads((tmp_path / "moved" / "report.json").read_text())
    figures = [v for v in report["files"].values() if v.endswith(".png")]
    assert figures and page.count("<img") == len(figures)  # found beside the report
    assert main(["report", str(tmp_path / "moved" / "report.json"), "--html",
                 str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text() == page
    assert moved


def test_report_refuses_what_is_not_an_audit_report(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"models": 3}))
    assert main(["report", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("miakit: error: REPORT.json: expected the report.json of 'miakit "
                          "audit'") and "run, evaluation, attacks" in err
    assert main(["report", str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()

