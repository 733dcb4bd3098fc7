"""Every benchmark record in bench/results/ follows the one schema of bench/_common.py."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
RECORDS = sorted((BENCH / "results").glob("*.json"))


def _load_common():
    # bench/ is a folder of scripts, not a package: load its shared module by path
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()


def test_there_are_records():
    assert RECORDS, "bench/results/ holds no results file"


@pytest.mark.parametrize("path", RECORDS, ids=[p.name for p in RECORDS])
def test_record_follows_the_schema(path):
    record = json.loads(path.read_text())
    assert common.validate(record) == []
    assert path.stem.startswith(record["benchmark"])
    if "baseline" in record:
        assert (path.parent / record["baseline"]).is_file()


def _good_record():
    return json.loads(RECORDS[0].read_text())


@pytest.mark.parametrize("spoil, message", [
    (lambda r: r.pop("commit"), "missing key 'commit'"),
    (lambda r: r.update(extra=1), "unknown key 'extra'"),
    (lambda r: r.update(schema_version=0), "schema_version"),
    (lambda r: r.update(created="yesterday"), "ISO 8601"),
    (lambda r: r.update(device="tpu"), "record.device"),
    (lambda r: r.update(results=[]), "empty"),
    (lambda r: r["machine"].pop("cores"), "missing key 'cores'"),
    (lambda r: r["results"][0].update(ours_s="fast"), "ours_s"),
    (lambda r: r["results"].append(copy.deepcopy(r["results"][0])), "repeated"),
    (lambda r: r["results"][0].update(ours_s=1.0, reference_s=3.0, speedup=2.0),
     "reference_s / ours_s"),
])
def test_validate_names_what_is_wrong(spoil, message):
    record = _good_record()
    spoil(record)
    errors = common.validate(record)
    assert any(message in e for e in errors), errors


def test_row_derives_the_speedup():
    assert common.row("case", 2.0, "ref", 6.0)["speedup"] == 3.0
    assert common.row("case", 2.0)["speedup"] is None
