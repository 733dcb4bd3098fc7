"""RMIA leave-one-out: miakit's sorted counting against the dense formula in numpy.

Workload: M = 64 models, N = 50,000 scored examples, a separate population of
Z = 50,000 examples scored by the same models, A = 2 query views. Measured in one run:

- numpy, dense: for one target, the ratios of its examples and of the population from
  the other models, then the N x Z comparison matrix ``ratio(x) / ratio(z) > gamma``
  in chunks of rows (so it fits in memory), the share per example; scaled to 64 targets;
- miakit: all 64 targets leave-one-out (balanced references), online and offline, and one
  target; the scores of the dense target are checked to be identical.

Prints times and ratios, the extra resident memory, and writes
bench/results/rmia_<device>_<tag>_<host>.json (bench/README.md describes the format;
rmia_cpu_full_vm.json holds a full run on 2 CPU cores).

    python bench/bench_rmia.py               # full size
    python bench/bench_rmia.py --quick       # M = 16, N = Z = 5,000
    python bench/bench_rmia.py --device cuda # torch CUDA tensors (GPU build)
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import (  # noqa: E402
    best_time,
    machine,
    print_table,
    reset_peak_rss,
    row,
    rss_bytes,
    write_results,
)

import miakit as mk  # noqa: E402


def make_data(m: int, n: int, z: int, a: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    difficulty = rng.uniform(0.1, 0.8, size=(1, n, 1))
    q = np.clip(difficulty + rng.normal(0, 0.08, size=(m, n, a)) + 0.1 * keep[..., None],
                1e-4, 1.0).astype(np.float32)
    pop = np.clip(rng.uniform(0.1, 0.8, size=(1, z, 1)) + rng.normal(0, 0.08, size=(m, z, a)),
                  1e-4, 1.0).astype(np.float32)
    return q, pop, keep


def dense_one_target(q, pop, keep, t, offline, a=0.3, gamma=1.0, rows=256):
    """The formula as written: ratios from the other models, then the N x Z matrix."""
    m = q.shape[0]
    partner = t ^ 1  # keep is drawn in complementary pairs: balanced references
    refs = [i for i in range(m) if i not in (t, partner)]
    qa = q.astype(np.float64).mean(2)  # [M, N]
    pa = pop.astype(np.float64).mean(2)  # [M, Z]
    if offline:
        out = ~keep[refs]
        pr = 0.5 * ((1 + a) * (qa[refs] * out).sum(0) / out.sum(0) + (1 - a))
        ppr = 0.5 * ((1 + a) * np.delete(pa, t, 0).mean(0) + (1 - a))
    else:
        pr = qa[refs].mean(0)
        ppr = np.delete(pa, t, 0).mean(0)
    rx, rz = qa[t] / pr, pa[t] / ppr
    out = np.empty(rx.size)
    for i in range(0, rx.size, rows):
        out[i:i + rows] = (rx[i:i + rows, None] / rz[None, :] > gamma).mean(1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", type=int, default=64)
    p.add_argument("--examples", type=int, default=50_000)
    p.add_argument("--population", type=int, default=50_000)
    p.add_argument("--augs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="M=16, N=Z=5,000: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.models, args.examples, args.population = 16, 5_000, 5_000
    m, n, z, a = args.models, args.examples, args.population, args.augs
    q, pop, keep = make_data(m, n, z, a)
    print(f"RMIA benchmark: M={m} N={n} Z={z} A={a}, device {args.device}, "
          f"{mk.backend_info()['openmp_threads']} CPU threads")
    xq, xpop, xkeep, sync = q, pop, keep, None
    if args.device == "cuda":
        import torch

        if not mk.backend_info()["cuda_available"]:
            raise SystemExit("--device cuda: this miakit build has no usable CUDA device")
        xq, xpop, xkeep = (torch.from_numpy(v).cuda() for v in (q, pop, keep))
        sync = torch.cuda.synchronize

    def host(x):
        return np.asarray(x.cpu() if hasattr(x, "cpu") else x)

    results: dict[str, dict] = {"miakit": {}, "numpy_dense": {}}
    rows = []
    for offline in (False, True):
        mode = "offline" if offline else "online"

        def all_targets(offline=offline):
            return mk.rmia.leave_one_out(xq, xkeep, offline=offline, population=xpop)

        def one_target(offline=offline):
            return mk.rmia.leave_one_out(xq, xkeep, [0], offline=offline, population=xpop)

        t_all, scores = best_time(all_targets, args.repeat, sync)
        t_one, _ = best_time(one_target, args.repeat, sync)
        t_np, dense = best_time(lambda offline=offline: dense_one_target(q, pop, keep, 0,
                                                                         offline), 1)
        got = host(scores)[0]
        diff = float(np.max(np.abs(got - dense)))
        results["miakit"][f"{mode}_all_targets_s"] = t_all
        results["miakit"][f"{mode}_one_target_s"] = t_one
        results["numpy_dense"][f"{mode}_one_target_s"] = t_np
        results["numpy_dense"][f"{mode}_all_targets_estimate_s"] = t_np * m
        results["numpy_dense"][f"{mode}_max_abs_diff_vs_miakit"] = diff
        results[f"{mode}_speedup_per_target"] = t_np / (t_all / m)
        results[f"{mode}_auc_all_targets"] = mk.metrics.auc(host(scores), keep)
        rows += [(f"numpy dense, one target ({mode})", f"{t_np:.3f}", ""),
                 (f"miakit, one target ({mode})", f"{t_one:.4f}", f"{t_np / t_one:.0f}x"),
                 (f"miakit, all {m} targets ({mode})", f"{t_all:.3f}",
                  f"{t_np * m / t_all:.0f}x the dense estimate")]
        print(f"{mode}: max |dense - miakit| on target 0 = {diff:.3g}")
    if args.device == "cpu":
        # numpy reports its allocations to tracemalloc: the peak of every array the call
        # makes (output, chunk buffers, the kernel's sort scratch), not the allocator's
        # reuse of pages it already holds (which hides growth from RSS)
        import tracemalloc

        tracemalloc.start()
        mk.rmia.leave_one_out(q, keep, population=pop)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        reset_peak_rss()
        before = rss_bytes("VmRSS")
        mk.rmia.leave_one_out(q, keep, population=pop)
        extra = max(0, rss_bytes("VmHWM") - before)
        results["miakit"]["peak_allocated_all_targets_bytes"] = peak
        results["miakit"]["extra_rss_all_targets_bytes"] = extra
        results["miakit"]["output_bytes_all_targets"] = m * n * 8
        print(f"memory, all targets: peak allocated {peak / 2**20:.0f} MiB (output alone "
              f"{m * n * 8 / 2**20:.0f} MiB; inputs {(q.nbytes + pop.nbytes) / 2**20:.0f} "
              f"MiB), resident growth {extra / 2**20:.0f} MiB")
    print_table(rows, ("computation", "seconds", "note"))
    tag = "quick" if args.quick else "full"
    path = write_results(
        f"rmia_{args.device}_{tag}_{machine()['host']}", benchmark="rmia", device=args.device,
        config={"M": m, "N": n, "Z": z, "A": a, "dtype": "float32", "repeat": args.repeat,
                "quick": args.quick},
        results=rmia_rows(results, m), details=results,
        notes="The dense formula's all-targets time is its one-target time x M (an "
              "estimate: it is not run M times).")
    print(f"wrote {path}")


def rmia_rows(results: dict, models: int) -> list[dict]:
    """The record's rows: online and offline, one target and all, against the dense
    formula."""
    ours, ref = results["miakit"], results["numpy_dense"]
    out = []
    for mode in ("online", "offline"):
        diff = ref[f"{mode}_max_abs_diff_vs_miakit"]
        out += [row(f"{mode}, one target", ours[f"{mode}_one_target_s"],
                    "numpy dense formula, one target", ref[f"{mode}_one_target_s"],
                    max_abs_diff=diff),
                row(f"{mode}, all {models} targets", ours[f"{mode}_all_targets_s"],
                    f"numpy dense formula, one target x {models}",
                    ref[f"{mode}_all_targets_estimate_s"],
                    auc=results[f"{mode}_auc_all_targets"])]
    return out


if __name__ == "__main__":
    main()
