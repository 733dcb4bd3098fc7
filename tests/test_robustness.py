"""What a user can do wrong, or what can go wrong around a run, never breaks a report, a run
or the interpreter: crash-safe report folders, one-line errors naming the file, refused
imports that leave nothing behind, strict arguments."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest
from scipy import stats

import miakit as mk
from miakit import io as mkio
from miakit.cli import main
from miakit.metrics import RankedScores

M, N, C = 8, 40, 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small imported run of 8 models (random logits, balanced keep)."""
    d = tmp_path_factory.mktemp("robust")
    rng = np.random.default_rng(0)
    keep = mk.shadow.balanced_keep(M, N, seed=0)
    labels = rng.integers(0, C, N)
    logits = rng.normal(size=(M, N, C)).astype(np.float32)
    logits[np.arange(M)[:, None], np.arange(N)[None], labels[None]] += 2.0 * keep
    mk.shadow.import_logits(d / "run", logits, keep, labels)
    np.save(d / "L.npy", logits)
    np.save(d / "K.npy", keep)
    np.save(d / "y.npy", labels)
    return d


def _fail_writes_to(monkeypatch, name, midway=True):
    """Make the atomic write of the file called ``name`` fail with a full disk, after half
    of its bytes (``midway``) or at once; every write's path is recorded, in order."""
    real = mkio.atomic_write
    written = []

    def atomic_write(path, write, what):
        written.append(path.name)
        if path.name != name:
            return real(path, write, what)

        def half_then_full(f):
            if midway:
                f.write(b"partial,")
            raise OSError(errno.ENOSPC, "No space left on device")

        return real(path, half_then_full, what)

    monkeypatch.setattr(mkio, "atomic_write", atomic_write)
    return written


def _no_tmp(folder):
    return not [p.name for p in folder.iterdir() if mkio.TMP_MARK in p.name]


# -- 1. the report folder is crash-safe -------------------------------------------------
def test_report_json_is_written_last(run_dir, tmp_path, monkeypatch):
    written = _fail_writes_to(monkeypatch, "nothing fails")
    mk.audit.audit(mk.shadow.open_run(run_dir / "run"), tmp_path / "out", plot=True)
    assert written[-1] == "report.json"
    assert {"vulnerability.csv", "report.html", "roc.png"} <= set(written[:-1])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all((tmp_path / "out" / p).name in written for p in report["files"].values())


def test_failed_html_leaves_no_report_json_beside_new_files(run_dir, tmp_path, monkeypatch):
    run = mk.shadow.open_run(run_dir / "run")
    out = tmp_path / "out"
    mk.audit.audit(run, out, plot=False)  # an earlier, complete report
    assert (out / "report.json").is_file()
    _fail_writes_to(monkeypatch, "report.html")
    with pytest.raises(mkio.RunWriteError, match="report.html"):
        mk.audit.audit(run, out, plot=False)
    assert not (out / "report.json").exists()
    assert not (out / "report.html").exists()  # the old page went with the old report
    assert _no_tmp(out)


def test_full_disk_midway_through_the_csv_names_it(run_dir, tmp_path, monkeypatch):
    run = mk.shadow.open_run(run_dir / "run")
    out = tmp_path / "out"
    mk.audit.audit(run, out, plot=False)
    old_csv = (out / "vulnerability.csv").read_text()
    _fail_writes_to(monkeypatch, "vulnerability.csv")
    with pytest.raises(mkio.RunWriteError, match="vulnerability.csv.*No space left"):
        mk.audit.audit(run, out, plot=False)
    # no truncated CSV under its name, and no report.json claiming a complete report
    assert (out / "vulnerability.csv").read_text() == old_csv
    assert not (out / "report.json").exists()
    assert _no_tmp(out)


def test_cli_audit_fails_and_leaves_no_report_when_the_page_cannot_be_written(
        run_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(["audit", "--run", str(run_dir / "run"), "--out", str(out), "--no-plot"]) == 0
    _fail_writes_to(monkeypatch, "report.html", midway=False)
    assert main(["audit", "--run", str(run_dir / "run"), "--out", str(out),
                 "--no-plot"]) == 1
    assert "report.html" in capsys.readouterr().err
    assert not (out / "report.json").exists()


def test_vulnerability_table_files_are_atomic(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    t = mk.vulnerability.vulnerability_table(lira_scores=rng.random(20),
                                             memorization=rng.random(20))
    _fail_writes_to(monkeypatch, "v.csv")
    with pytest.raises(mkio.RunWriteError, match="v.csv"):
        t.to_csv(tmp_path / "v.csv")
    assert not (tmp_path / "v.csv").exists() and _no_tmp(tmp_path)
    assert t.to_json(tmp_path / "v.json").is_file()


# -- 2. one-line errors naming the file -------------------------------------------------
def _error(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 1, err
    assert err.startswith("miakit: error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("flag", ["--logits", "--keep", "--labels"])
def test_import_of_an_empty_npy(run_dir, tmp_path, capsys, flag):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    given = {"--logits": run_dir / "L.npy", "--keep": run_dir / "K.npy",
             "--labels": run_dir / "y.npy", flag: empty}
    err = _error(capsys, ["import", "--out", str(tmp_path / "r"),
                          *[str(v) for kv in given.items() for v in kv]])
    assert str(empty) in err and flag.lstrip("-") in err
    assert not (tmp_path / "r").exists()


def test_import_of_an_npz_as_logits(run_dir, tmp_path, capsys):
    np.savez(tmp_path / "L.npz", np.load(run_dir / "L.npy"))
    err = _error(capsys, ["import", "--out", str(tmp_path / "r"), "--logits",
                          str(tmp_path / "L.npz"), "--keep", str(run_dir / "K.npy"),
                          "--labels", str(run_dir / "y.npy")])
    assert "L.npz" in err and ".npz archive" in err


@pytest.mark.parametrize("name", ["keep.npy", "labels.npy", "models/model-00000.npy"])
def test_audit_of_a_run_with_an_empty_file(run_dir, tmp_path, capsys, name):
    run = tmp_path / "run"
    shutil.copytree(run_dir / "run", run)
    (run / name).write_bytes(b"")
    with pytest.warns() if name.startswith("models") else _nothing():
        err = _error(capsys, ["audit", "--run", str(run), "--out", str(tmp_path / "o"),
                              "--no-plot"])
    assert ("model" in err and "[0]" in err) if name.startswith("models") else \
        str(run / name) in err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("damage", ["list", "no fingerprint", "manifest list"])
def test_audit_of_a_run_with_damaged_json(run_dir, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(run_dir / "run", run)
    meta = json.loads((run / "run.json").read_text())
    if damage == "list":
        (run / "run.json").write_text("[1, 2]")
    elif damage == "no fingerprint":
        del meta["fingerprint"]
        (run / "run.json").write_text(json.dumps(meta))
    else:
        (run / "manifest.json").write_text("[]")
    err = _error(capsys, ["audit", "--run", str(run), "--out", str(tmp_path / "o"),
                          "--no-plot"])
    name = "manifest.json" if damage == "manifest list" else "run.json"
    assert str(run / name) in err
    assert ("fingerprint" if damage == "no fingerprint" else "JSON list") in err


@pytest.mark.parametrize("text", ['{"attacks": {"a": ', "", "not json", "[1, 2]"])
def test_report_of_malformed_json(tmp_path, capsys, text):
    path = tmp_path / "report.json"
    path.write_text(text)
    assert str(path) in _error(capsys, ["report", str(path)])


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not an array"])
def test_generative_with_an_unreadable_synthetic_file(tmp_path, capsys, content):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "train.npy", rng.normal(size=(20, 3)))
    np.save(tmp_path / "holdout.npy", rng.normal(size=(20, 3)))
    (tmp_path / "garbage.npy").write_bytes(content)
    err = _error(capsys, ["generative", "--out", str(tmp_path / "g"),
                          "--synthetic", str(tmp_path / "garbage.npy"),
                          "--train", str(tmp_path / "train.npy"),
                          "--holdout", str(tmp_path / "holdout.npy")])
    assert "--synthetic" in err and str(tmp_path / "garbage.npy") in err


# -- 3. a refused import leaves nothing behind ------------------------------------------
def test_float16_overflow_is_refused_before_the_run_exists(run_dir, tmp_path, capsys):
    logits = np.load(run_dir / "L.npy").astype(np.float64)
    logits[3, 7, 1] = 1e6  # finite, beyond float16's 65504
    np.save(tmp_path / "big.npy", logits)
    out = tmp_path / "r"
    err = _error(capsys, ["import", "--out", str(out), "--logits", str(tmp_path / "big.npy"),
                          "--keep", str(run_dir / "K.npy"), "--labels",
                          str(run_dir / "y.npy"), "--logits-dtype", "float16"])
    assert "model 3" in err and "float16" in err and "example 7" in err
    assert "diverg" not in err
    assert not out.exists()
    # the same --out then takes a correct import
    assert main(["import", "--out", str(out), "--logits", str(run_dir / "L.npy"), "--keep",
                 str(run_dir / "K.npy"), "--labels", str(run_dir / "y.npy"),
                 "--logits-dtype", "float16"]) == 0
    assert mk.shadow.open_run(out).is_complete


def test_signals_beyond_float32_are_refused_before_the_run_exists(tmp_path):
    rng = np.random.default_rng(0)
    keep = mk.shadow.balanced_keep(4, 10)
    scores = rng.random((4, 10))
    scores[2, 5] = 1e300
    out = tmp_path / "r"
    with pytest.raises(ValueError, match=r"signals of model 2.*1e\+300.*float32"):
        mk.shadow.import_signals(out, scores, keep, kind="score")
    assert not out.exists()
    scores[2, 5] = 0.5
    assert mk.shadow.import_signals(out, scores, keep, kind="score").is_complete


# -- 4. strict arguments ----------------------------------------------------------------
@pytest.fixture(scope="module")
def ranked():
    rng = np.random.default_rng(0)
    return RankedScores(rng.random(50), np.arange(50) % 2 == 0)


@pytest.mark.parametrize("fpr", [0, -1, 2, float("inf"), float("nan"), "0.1", 1j])
def test_ranked_scores_refuse_bad_fprs(ranked, fpr):
    for call in (ranked.tpr_at_fpr, ranked.point, lambda f: ranked.leakage_test([f])):
        with pytest.raises((ValueError, TypeError), match="fpr"):
            call(fpr)


@pytest.mark.parametrize("level", [95, 0, 1, -0.5, float("nan"), "0.95"])
def test_ranked_scores_refuse_bad_levels(ranked, level):
    with pytest.raises((ValueError, TypeError), match="level"):
        ranked.tpr_at_fpr(0.1, level=level)
    with pytest.raises((ValueError, TypeError), match="level"):
        ranked.auc_ci(level=level)
    with pytest.raises((ValueError, TypeError), match="level"):
        mk.metrics.auc_ci(np.arange(4.0), [0, 1, 0, 1], level=level)


@pytest.mark.parametrize("n_tests", ["3", 3.5, 0, True])
def test_leakage_test_needs_an_integer_n_tests(ranked, n_tests):
    with pytest.raises((ValueError, TypeError), match="n_tests"):
        ranked.leakage_test([0.1], n_tests=n_tests)
    with pytest.raises((ValueError, TypeError), match="n_tests"):
        mk.metrics.leakage_test(np.arange(4.0), [0, 1, 0, 1], [0.1], n_tests=n_tests)


@pytest.mark.parametrize("scores", [np.arange(4) + 0j, np.arange(4).astype(str),
                                    ["0", "1", "2", "3"]])
def test_complex_and_string_scores_are_refused(scores):
    with pytest.raises(TypeError, match="scores"):
        RankedScores(scores, [0, 1, 0, 1])
    with pytest.raises(TypeError, match="scores"):
        mk.metrics.auc(scores, [0, 1, 0, 1])


def test_shadow_with_no_examples(tmp_path, capsys):
    err = _error(capsys, ["shadow", "--out", str(tmp_path / "r"), "--n-examples", "0",
                          "--models", "4", "--quiet"])
    assert "--n-examples" in err
    assert not (tmp_path / "r").exists()


def test_balanced_keep_checks_its_size_and_seed():
    with pytest.raises(ValueError, match="n_models, n_examples.*GiB"):
        mk.shadow.balanced_keep(2**40, 2)
    with pytest.raises(ValueError, match="n_models, n_examples.*GiB"):
        mk.shadow.balanced_keep(2, 2**40, paired=False)
    with pytest.raises(ValueError, match="seed"):
        mk.shadow.balanced_keep(4, 4, seed=-1)


def test_unknown_lira_signal_is_a_value_error_naming_it():
    rng = np.random.default_rng(0)
    keep = mk.shadow.balanced_keep(4, 10)
    with pytest.raises(ValueError, match="signal"):
        mk.lira.leave_one_out(rng.normal(size=(4, 10)), keep, signal="x")
    with pytest.raises(ValueError, match="signal"):
        mk.lira.fit(rng.normal(size=(4, 10)), keep, signal="x")


def test_ks_accepts_infinities_like_scipy_and_refuses_nan():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 30))
    b = rng.normal(0.3, size=25)
    a[0, :3] = np.inf
    a[1, 0] = -np.inf
    a[2, :] = -np.inf  # a sample of -inf only
    b[:2] = np.inf
    b[5] = -np.inf
    r = mk.ks.ks_2samp(a, b)
    for i in range(3):
        s = stats.ks_2samp(a[i], b)
        assert r.statistic[i] == s.statistic and r.pvalue[i] == s.pvalue
        assert r.statistic_location[i] == s.statistic_location
        assert r.statistic_sign[i] == s.statistic_sign
    groups, rg = mk.ks.ks_2samp_groups(a.ravel(), np.repeat([0, 1, 2], 30), np.tile(b, 3),
                                       np.repeat([0, 1, 2], 25))
    assert rg.statistic.tolist() == r.statistic.tolist()
    assert rg.statistic_location.tolist() == r.statistic_location.tolist()
    for bad in ((np.array([1.0, np.nan]), np.arange(3.0)),
                (np.arange(3.0), np.array([np.inf, np.nan]))):
        with pytest.raises(ValueError, match="NaN"):
            mk.ks.ks_2samp(*bad)
        with pytest.raises(ValueError, match="NaN"):
            mk.ks.ks_2samp_groups(bad[0], np.zeros(bad[0].size, int), bad[1],
                                  np.zeros(bad[1].size, int))


def test_seed_errors_name_the_argument():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="seed"):
        mk.ks.source_accuracy(rng.random(50), rng.random(50), seed=-1)


def test_failed_target_audit_leaves_no_report_json(run_dir, tmp_path, monkeypatch):
    run = mk.shadow.open_run(run_dir / "run")
    logits = np.load(run_dir / "L.npy")[0]
    member = np.load(run_dir / "K.npy")[0]
    out = tmp_path / "out"
    mk.audit.audit_target(run, logits, member, out, plot=False)
    assert (out / "report.json").is_file() and (out / "exposed.csv").is_file()
    written = _fail_writes_to(monkeypatch, "report.html")
    with pytest.raises(mkio.RunWriteError, match="report.html"):
        mk.audit.audit_target(run, logits, member, out, plot=False)
    assert "report.json" not in written and not (out / "report.json").exists()
