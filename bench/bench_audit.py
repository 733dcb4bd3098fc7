"""The whole audit at scale, timed by phase.

Workload: a run of M = 256 models x N = 50,000 examples x A = 2 views x C = 10 classes
(generated logits with a planted membership signal and per-example difficulty), written
to disk as a run, then ``miakit.audit.audit`` on it as ``miakit audit --run`` does (every
attack, report.json, vulnerability.csv and the figures). Phases (the audit's own
``timing_s``): the signals, the attack kernels (every attack's leave-one-out scores), the
metrics (one ranking per attack), the per-example table, the plots and the writing; peak
resident memory is reported against the logits' size. The attacks streamed from the run's
model files are compared with the same attacks on the logits in memory, and the run
directory's size before and after (the audit writes no stacked copy). ``--baseline FILE``
names an earlier results file this run is compared with (bench/results/
audit_cpu_full_vm_baseline.json: the same workload on an earlier version of the audit,
commit 436628b). Writes
bench/results/audit_cpu_<tag>_<host>.json (bench/README.md describes the format).

    python bench/bench_audit.py            # M = 256, N = 50,000
    python bench/bench_audit.py --quick    # M = 32, N = 5,000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import (  # noqa: E402
    machine,
    print_table,
    reset_peak_rss,
    row,
    rss_bytes,
    write_results,
)

import miakit as mk  # noqa: E402
from miakit import audit as au  # noqa: E402


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", type=int, default=256)
    p.add_argument("--examples", type=int, default=50_000)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--baseline", help="an earlier results file to keep beside this one")
    args = p.parse_args()
    if args.quick:
        args.models, args.examples = 32, 5_000
    m, n, a, c = args.models, args.examples, 2, 10
    rng = np.random.default_rng(0)
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    y = rng.integers(0, c, n)
    difficulty = rng.normal(1.0, 1.0, n).astype(np.float32)
    print(f"audit benchmark: M={m} N={n} A={a} C={c} ({m * n * a * c * 4 / 2**30:.2f} GiB of "
          f"float32 logits)")
    with tempfile.TemporaryDirectory() as tmp:
        run = mk.shadow.create_run(f"{tmp}/run", keep, y, n_augmentations=a, n_classes=c)
        with run.writer():
            for k in range(m):
                z = rng.standard_normal((n, a, c), dtype=np.float32)
                z[np.arange(n), :, y] += (difficulty + 1.5 * keep[k])[:, None]
                run.write_model(k, z)
        run = mk.shadow.open_run(f"{tmp}/run")
        disk_before = _du(Path(tmp) / "run")
        reset_peak_rss()
        base = rss_bytes("VmRSS")
        report = au.audit(run, f"{tmp}/out", plot=True)
        peak = rss_bytes("VmHWM")
        disk_after = _du(Path(tmp) / "run")
        # the same attacks from the logits in memory (the audit streams the model files)
        logits = np.stack([run.model_logits(k, verify=False) for k in range(m)])
        t0 = time.perf_counter()
        var = "per_example" if m >= 64 else "global"  # as the audit's "auto"
        for _name, _entry in au.iter_attacks(logits, keep, y, variance=var):
            pass
        in_memory = time.perf_counter() - t0
        del logits
    timing = report["timing_s"]
    phases = {f"{k}_s": timing[k] for k in ("signals", "attacks", "metrics",
                                             "per_example_table", "plots", "writing",
                                             "audit")}
    from_disk = timing["signals"] + timing["attacks"]
    logits_bytes = m * n * a * c * 4
    rows = [(k, f"{v:.2f}", "") for k, v in phases.items()]
    rows.append(("peak RSS (GiB)", f"{peak / 2**30:.2f}",
                 f"{peak / logits_bytes:.2f}x the logits (at start {base / 2**30:.2f})"))
    print_table(rows, ("phase", "seconds", "note"))
    ratio = timing["audit"] / (timing["signals"] + timing["attacks"])
    print(f"attacks: {len(report['attacks'])}; whole audit {ratio:.1f}x its attack kernels")
    print(f"signals + attacks streamed from the run's files {from_disk:.2f} s, from the "
          f"logits in memory {in_memory:.2f} s ({from_disk / in_memory:.2f}x); the run "
          f"directory {disk_before / 2**20:.0f} MiB before, {disk_after / 2**20:.0f} MiB "
          "after (no stacked copy)")
    results = [row(f"phase {name}", timing[name]) for name in (
        "signals", "attacks", "metrics", "per_example_table", "plots", "writing")]
    results += [row("whole audit", timing["audit"], over_attack_kernels=ratio),
                row("signals + attacks streamed from the run's files", from_disk,
                    "the same attacks on the logits in memory", in_memory)]
    details = {"attacks": list(report["attacks"]), "phases_s": phases,
               "audit_over_attacks": ratio, "disk_before_bytes": disk_before,
               "disk_after_bytes": disk_after, "peak_rss_bytes": peak,
               "rss_at_start_bytes": base, "logits_bytes": logits_bytes}
    tag = "quick" if args.quick else "full"
    path = write_results(
        f"audit_cpu_{tag}_{machine()['host']}", benchmark="audit", device="cpu",
        config={"M": m, "N": n, "A": a, "C": c, "quick": args.quick, "plot": True},
        results=results, details=details,
        notes="Phases are the audit's own timing_s; over_attack_kernels is the whole "
              "audit's time over its signals and attack kernels'.",
        baseline=Path(args.baseline).name if args.baseline else None)
    print("wrote", path)


if __name__ == "__main__":
    main()
