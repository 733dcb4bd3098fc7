"""Shared plumbing of the benchmarks: timing, machine description, and the results JSON.

Every benchmark writes one record to ``bench/results/<name>.json`` through
:func:`write_results`, which checks it with :func:`validate` first. The record's schema
(version :data:`SCHEMA_VERSION`; bench/README.md shows an example):

``schema_version`` (int)
    :data:`SCHEMA_VERSION`.
``benchmark`` (str)
    The benchmark's name: ``audit``, ``coverage``, ``knn``, ``ks``, ``lira``, ``risk``,
    ``rmia``, ``signals``, ``train_heads``, ``exposure_fdr``.
``created`` (str)
    When the record was written, ISO 8601 with a UTC offset.
``machine`` (object)
    ``host``, ``cpu`` (model name), ``cores`` (logical CPUs), ``memory_bytes`` (physical
    memory; null where unknown), ``platform``, ``python``, ``omp_num_threads`` (the
    environment variable, null when unset).
``device`` (str)
    ``cpu`` or ``cuda``: where miakit computed.
``commit`` (str)
    ``git rev-parse HEAD`` of the tree that ran, ``-dirty`` appended when it had
    uncommitted changes; ``unknown`` outside a git checkout.
``miakit_version`` (str)
    ``miakit.__version__``.
``backend`` (object or null)
    ``miakit.backend_info()``: OpenMP threads, CUDA build and devices.
``config`` (object)
    The workload and the options the benchmark ran with (sizes, repeats, ``quick``).
``results`` (array, at least one row)
    One row per measured case, each with the keys ``case`` (str, unique in the record),
    ``ours_s`` (miakit's seconds), ``reference`` (what miakit is compared with),
    ``reference_s`` (its seconds) and ``speedup`` (``reference_s / ours_s``: above 1,
    miakit is faster); every key but ``case`` may be null where it does not apply (a
    phase with no reference, a coverage row with no timing). A row may carry further keys
    of its own (an accuracy, a memory peak, a check that passed).
``details`` (object)
    Everything else the benchmark measured, free-form (per-run times, memory, load
    average, checks against the reference).
``notes`` (str)
    How to read the record: which times are scaled from a subset, what is estimated.
``baseline`` (str, optional)
    The file name, in bench/results/, of an earlier record this one is compared with.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SCHEMA_VERSION = 1

# key -> the JSON types it may hold ("null" allows None)
_TOP = {
    "schema_version": ("int",), "benchmark": ("str",), "created": ("str",),
    "machine": ("object",), "device": ("str",), "commit": ("str",),
    "miakit_version": ("str",), "backend": ("object", "null"), "config": ("object",),
    "results": ("array",), "details": ("object",), "notes": ("str",),
}
_OPTIONAL_TOP = {"baseline": ("str",)}
_MACHINE = {
    "host": ("str",), "cpu": ("str",), "cores": ("int", "null"),
    "memory_bytes": ("int", "null"), "platform": ("str",), "python": ("str",),
    "omp_num_threads": ("str", "null"),
}
_ROW = {
    "case": ("str",), "ours_s": ("number", "null"), "reference": ("str", "null"),
    "reference_s": ("number", "null"), "speedup": ("number", "null"),
}


def best_time(fn: Callable[[], Any], repeat: int = 3, sync: Callable[[], None] | None = None):
    """Minimum wall time of ``repeat`` calls (and the last result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        if sync:
            sync()
        t0 = time.perf_counter()
        out = fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def reset_peak_rss() -> None:
    """Reset the kernel's high-water mark of this process's resident memory (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def rss_bytes(field: str) -> int:
    """VmRSS or VmHWM of this process in bytes (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def machine() -> dict[str, Any]:
    """The record's ``machine`` object for this machine."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def git_commit() -> str:
    """HEAD of the checkout the benchmarks sit in, ``-dirty`` when it has changes."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def row(case: str, ours_s: float | None = None, reference: str | None = None,
        reference_s: float | None = None, **extra: Any) -> dict[str, Any]:
    """One ``results`` row; ``speedup`` is derived, so it always equals
    ``reference_s / ours_s`` (null when either is missing)."""
    speedup = None
    if ours_s is not None and reference_s is not None and ours_s > 0:
        speedup = reference_s / ours_s
    return {"case": case, "ours_s": ours_s, "reference": reference,
            "reference_s": reference_s, "speedup": speedup, **extra}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "array"
    return type(value).__name__


def _check_keys(where: str, obj: Mapping[str, Any], required: Mapping[str, tuple[str, ...]],
                optional: Mapping[str, tuple[str, ...]] | None = None,
                closed: bool = True) -> list[str]:
    errors = []
    optional = optional or {}
    for key, kinds in {**required, **optional}.items():
        if key not in obj:
            if key in required:
                errors.append(f"{where}: missing key {key!r}")
            continue
        kind = _json_type(obj[key])
        allowed = set(kinds) | ({"int", "float"} if "number" in kinds else set())
        if kind not in allowed:
            errors.append(f"{where}.{key}: {kind}, expected {' or '.join(kinds)}")
        elif kind == "float" and not math.isfinite(obj[key]):
            errors.append(f"{where}.{key}: {obj[key]} is not a finite number")
    if closed:
        errors += [f"{where}: unknown key {k!r}" for k in obj
                   if k not in required and k not in optional]
    return errors


def validate(record: Any) -> list[str]:
    """Every way ``record`` departs from the schema (an empty list: it conforms)."""
    if _json_type(record) != "object":
        return [f"record: {_json_type(record)}, expected object"]
    errors = _check_keys("record", record, _TOP, _OPTIONAL_TOP)
    if errors:
        return errors
    if record["schema_version"] != SCHEMA_VERSION:
        errors.append(f"record.schema_version: {record['schema_version']}, expected "
                      f"{SCHEMA_VERSION}")
    try:
        _dt.datetime.fromisoformat(record["created"])
    except ValueError:
        errors.append(f"record.created: {record['created']!r} is not ISO 8601")
    errors += _check_keys("machine", record["machine"], _MACHINE)
    if record["device"] not in ("cpu", "cuda"):
        errors.append(f"record.device: {record['device']!r}, expected 'cpu' or 'cuda'")
    if not record["results"]:
        errors.append("record.results: empty")
    cases = set()
    for i, entry in enumerate(record["results"]):
        where = f"results[{i}]"
        if _json_type(entry) != "object":
            errors.append(f"{where}: {_json_type(entry)}, expected object")
            continue
        found = _check_keys(where, entry, _ROW, closed=False)
        errors += found
        if found:
            continue
        if entry["case"] in cases:
            errors.append(f"{where}.case: {entry['case']!r} repeated")
        cases.add(entry["case"])
        ours, ref, speedup = entry["ours_s"], entry["reference_s"], entry["speedup"]
        if ours is not None and ref is not None and ours > 0:
            if speedup is None or not math.isclose(speedup, ref / ours, rel_tol=1e-9):
                errors.append(f"{where}.speedup: {speedup}, expected reference_s / ours_s "
                              f"= {ref / ours}")
        elif speedup is not None:
            errors.append(f"{where}.speedup: set without both ours_s and reference_s")
    return errors


def write_results(name: str, *, benchmark: str, device: str, config: Mapping[str, Any],
                  results: Sequence[Mapping[str, Any]],
                  details: Mapping[str, Any] | None = None, notes: str = "",
                  baseline: str | None = None, path: Path | None = None) -> Path:
    """Write one benchmark's record (the schema in this module's docstring) to
    ``bench/results/<name>.json`` or ``path``, after checking it with :func:`validate`.

    ``machine``, ``commit``, ``created``, ``miakit_version`` and ``backend`` are filled in
    here, so every benchmark describes its run the same way.
    """
    import miakit

    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": benchmark,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "device": device,
        "commit": git_commit(),
        "miakit_version": miakit.__version__,
        "backend": miakit.backend_info(),
        "config": dict(config),
        "results": [dict(r) for r in results],
        "details": dict(details or {}),
        "notes": notes,
    }
    if baseline is not None:
        record["baseline"] = baseline
    errors = validate(record)
    if errors:
        raise ValueError("the results record does not match the schema:\n" + "\n".join(errors))
    path = RESULTS / f"{name}.json" if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # through a temporary file: an interrupted run leaves the earlier record intact
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """Print ``rows`` as left-aligned columns under ``header``."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
