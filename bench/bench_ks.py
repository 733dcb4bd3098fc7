"""Batched two-sample K-S tests: miakit against scipy.stats.ks_2samp.

Workload: 10,000 pairs of samples of 1,000 values each, two-sided, with the
asymptotic and the exact p-value. Measured in one run:

- miakit: one batched call (the compiled statistic of unsorted samples, then one p-value
  per distinct (sizes, statistic), compiled or vectorized as scipy computes it);
- scipy, a Python loop of ks_2samp over the pairs (timed on a subset, scaled);
- scipy's own batched call, ks_2samp(..., axis=1) (timed on a subset, scaled);

each the best of several runs (miakit's median too), as other jobs share the machine.

Results are checked equal to scipy's (statistic exactly, p-value to 1e-12 relative) on
the subset; the load average (other jobs share the machine) is recorded before and after.
Writes bench/results/ks_<device>_<tag>_<host>.json (bench/README.md describes the format;
ks_cpu_full_vm.json holds a full run on 2 CPU cores).

    python bench/bench_ks.py            # full size
    python bench/bench_ks.py --quick    # 1,000 pairs
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import best_time, machine, print_table, row, write_results  # noqa: E402

import miakit as mk  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", type=int, default=10_000)
    p.add_argument("--size", type=int, default=1_000)
    p.add_argument("--subset", type=int, default=500, help="pairs scipy is timed on")
    p.add_argument("--repeat", type=int, default=5, help="miakit calls timed (best, median)")
    p.add_argument("--scipy-repeat", type=int, default=3, help="scipy runs timed (best)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.pairs = 1_000
    from scipy import stats

    rng = np.random.default_rng(0)
    a = rng.normal(size=(args.pairs, args.size))
    b = rng.normal(0.05, 1.0, size=(args.pairs, args.size))
    xa, xb, sync = a, b, None
    if args.device == "cuda":
        import torch

        xa, xb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        sync = torch.cuda.synchronize
    print(f"K-S benchmark: {args.pairs:,} pairs of {args.size:,} values, two-sided, "
          f"device {args.device}")
    load_before = os.getloadavg()
    results: dict = {}
    rows = []
    k = args.subset
    for method in ("asymp", "exact"):
        mk_times = []
        for _ in range(args.repeat):
            t, got = best_time(lambda method=method: mk.ks.ks_2samp(xa, xb, method=method), 1,
                               sync)
            mk_times.append(t)
        t_mk, t_mk_median = min(mk_times), float(np.median(mk_times))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_loop, loop = best_time(lambda method=method: [stats.ks_2samp(
                a[i], b[i], method=method) for i in range(k)], args.scipy_repeat)
            t_axis, axis = best_time(lambda method=method: stats.ks_2samp(
                a[:k], b[:k], method=method, axis=1), args.scipy_repeat)
        scale = args.pairs / k
        t_loop_all, t_axis_all = t_loop * scale, t_axis * scale
        same_stat = bool(np.array_equal(got.statistic[:k], axis.statistic))
        rel = np.abs(got.pvalue[:k] - axis.pvalue) / np.maximum(np.abs(axis.pvalue), 1e-300)
        max_rel = float(np.nanmax(rel))
        faster = min(t_loop_all, t_axis_all)
        results[method] = {"miakit_s": t_mk, "miakit_s_median": t_mk_median,
                           "miakit_s_all": mk_times,
                           "speedup_vs_faster_median": faster / t_mk_median,
                           "scipy_loop_s_scaled": t_loop_all,
                           "scipy_axis_s_scaled": t_axis_all, "speedup_vs_faster": faster / t_mk,
                           "statistic_equal": same_stat, "pvalue_max_rel_diff": max_rel,
                           "distinct_statistics": int(np.unique(got.statistic).size),
                           "scipy_subset": k, "scipy_repeat": args.scipy_repeat}
        rows += [(f"miakit batched ({method}, best of {args.repeat})", f"{t_mk:.3f}",
                  f"{faster / t_mk:.0f}x the faster (median {t_mk_median:.3f} s: "
                  f"{faster / t_mk_median:.0f}x)"),
                 (f"scipy loop ({method}, scaled from {k})", f"{t_loop_all:.2f}", ""),
                 (f"scipy axis=1 ({method}, scaled from {k})", f"{t_axis_all:.2f}", "")]
        print(f"{method}: statistics equal to scipy: {same_stat}; max relative p-value "
              f"difference {max_rel:.2g}")
    load_after = os.getloadavg()
    print_table(rows, ("computation", "seconds", "note"))
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
    tag = "quick" if args.quick else "full"
    path = write_results(
        f"ks_{args.device}_{tag}_{machine()['host']}", benchmark="ks", device=args.device,
        config={"pairs": args.pairs, "size": args.size, "alternative": "two-sided",
                "subset": args.subset, "repeat": args.repeat,
                "scipy_repeat": args.scipy_repeat, "quick": args.quick},
        results=ks_rows(results),
        details={**results, "load_average": {"before": list(load_before),
                                             "after": list(load_after)}},
        notes="scipy's times are scaled from its subset of pairs to all of them; miakit's "
              "is the best of its repeats (details: the median).")
    print("wrote", path)


def ks_rows(results: dict) -> list[dict]:
    """The record's rows: per p-value method, miakit against both ways of calling scipy."""
    out = []
    for method in ("asymp", "exact"):
        res = results[method]
        checks = {"statistic_equal": res["statistic_equal"],
                  "pvalue_max_rel_diff": res["pvalue_max_rel_diff"]}
        out += [row(f"{method}: miakit batched vs scipy loop", res["miakit_s"],
                    "scipy.stats.ks_2samp in a Python loop (scaled)",
                    res["scipy_loop_s_scaled"], **checks),
                row(f"{method}: miakit batched vs scipy axis=1", res["miakit_s"],
                    "scipy.stats.ks_2samp(..., axis=1) (scaled)", res["scipy_axis_s_scaled"],
                    **checks)]
    return out


if __name__ == "__main__":
    main()
