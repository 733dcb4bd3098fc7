"""The whole audit at scale, timed by phase (issue 20).

Workload: a run of M = 256 models x N = 50,000 examples x A = 2 views x C = 10 classes
(generated logits with a planted membership signal and per-example difficulty), written
to disk as a run, then ``miakit.audit.audit`` on it without plots. Phases: the attack
kernels (every attack's leave-one-out scores), the metrics (one ranking per attack), the
per-example table, and the report; peak resident memory is reported against the logits'
size. Writes bench/results/audit_cpu_<tag>_<host>.json.

    python bench/bench_audit.py            # M = 256, N = 50,000
    python bench/bench_audit.py --quick    # M = 32, N = 5,000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import git_commit, machine, print_table, rss_bytes, write_results  # noqa: E402

import miakit as mk  # noqa: E402
from miakit import audit as au  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", type=int, default=256)
    p.add_argument("--examples", type=int, default=50_000)
    p.add_argument("--quick", action="store_true")
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
        logits = run.logits()
        t0 = time.perf_counter()
        var = "per_example" if m >= 64 else "global"
        scored = au.run_attacks(logits, keep, y, variance=var)
        t1 = time.perf_counter()
        results = au.evaluate(scored, keep)
        t2 = time.perf_counter()
        au.vulnerability(logits, keep, y, scored["lira_online"]["scores"], variance=var)
        t3 = time.perf_counter()
        au.verdict(results)
        t4 = time.perf_counter()
        peak = rss_bytes("VmHWM")
    phases = {"attacks_s": t1 - t0, "metrics_s": t2 - t1, "per_example_table_s": t3 - t2,
              "verdict_s": t4 - t3, "total_s": t4 - t0}
    rows = [(k, f"{v:.2f}", "") for k, v in phases.items()]
    rows.append(("peak RSS (GiB)", f"{peak / 2**30:.2f}",
                 f"{peak / (m * n * a * c * 4):.2f}x the logits"))
    print_table(rows, ("phase", "seconds", "note"))
    print(f"attacks: {len(scored)}; whole audit {phases['total_s'] / phases['attacks_s']:.1f}x "
          "its attack kernels")
    payload = {"benchmark": "audit", "workload": {"M": m, "N": n, "A": a, "C": c,
                                                 "attacks": list(scored)},
               "machine": machine(), "device": "cpu", "commit": git_commit(),
               "backend": mk.backend_info(),
               "results": {**phases, "peak_rss_bytes": peak,
                           "logits_bytes": m * n * a * c * 4}}
    tag = "quick" if args.quick else "full"
    print("wrote", write_results(f"audit_cpu_{tag}_{machine()['hostname']}", payload))


if __name__ == "__main__":
    main()
