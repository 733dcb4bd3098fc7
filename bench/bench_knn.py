"""Exact k nearest distances: miakit against scikit-learn and faiss.

Workload: 50,000 queries against 50,000 reference rows of 64 dimensions
(standard normal, float32 and float64), k = 1 and 5. Measured in one run:

- miakit ``closest_distances`` (screened float32 product, exact float64 distances);
- scikit-learn ``NearestNeighbors`` with ``algorithm="brute"``, ``"kd_tree"`` and
  ``"ball_tree"`` (trees timed on a subset of the queries and scaled: in 64 dimensions they
  visit most of the data);
- faiss ``IndexFlatL2`` (exact, float32), when faiss is installed.

Results are checked: miakit's distances against scikit-learn brute force (1e-9 relative;
scikit-learn computes d^2 from norms and a product, which loses digits) and the
neighbour sets equal wherever distances are not tied. Peak memory beyond inputs and
outputs is reported from the process's RSS. Writes
bench/results/knn_<device>_<tag>_<host>.json (bench/README.md describes the format;
knn_cpu_full_vm.json holds a full run on 2 CPU cores).

    python bench/bench_knn.py            # full size
    python bench/bench_knn.py --quick    # 10,000 x 10,000
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
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


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--queries", type=int, default=50_000)
    p.add_argument("--reference", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--tree-subset", type=int, default=2_000, help="queries the trees are timed on")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.queries = args.reference = 10_000
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    ref64 = rng.normal(size=(args.reference, args.dim))
    q64 = rng.normal(size=(args.queries, args.dim))
    faiss = _faiss()
    sync = None
    if args.device == "cuda":
        import torch

        sync = torch.cuda.synchronize
    print(f"k-NN benchmark: {args.queries:,} queries x {args.reference:,} reference rows x "
          f"{args.dim} dims, device {args.device}, faiss {'yes' if faiss else 'not installed'}")
    results: dict = {}
    rows = []
    for k in (1, 5):
        res: dict = {}
        for dtype in ("float32", "float64"):
            q, r = q64.astype(dtype), ref64.astype(dtype)
            xq, xr = q, r
            if args.device == "cuda":
                import torch

                xq, xr = torch.from_numpy(q).cuda(), torch.from_numpy(r).cuda()
            base = rss_bytes("VmRSS")
            reset_peak_rss()
            t_mk, (d_mk, i_mk) = best_time(
                lambda xq=xq, xr=xr, k=k: mk.neighbors.closest_distances(xq, xr, k), args.repeat,
                sync)
            extra = max(0, rss_bytes("VmHWM") - base)
            d_mk, i_mk = np.asarray(d_mk.cpu() if hasattr(d_mk, "cpu") else d_mk), np.asarray(
                i_mk.cpu() if hasattr(i_mk, "cpu") else i_mk)
            res[f"miakit_{dtype}_s"] = t_mk
            res[f"miakit_{dtype}_peak_extra_mib"] = extra / 2**20
            out_mib = 2 * 8 * args.queries * k / 2**20
            rows.append((f"k={k} miakit ({dtype})", f"{t_mk:.3f}",
                         f"peak +{extra / 2**20:.0f} MiB (outputs {out_mib:.1f})"))
        # scikit-learn on float64 (its float32 brute path upcasts the distances anyway)
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(ref64)
        t_brute, (d_sk, i_sk) = best_time(lambda nn=nn: nn.kneighbors(q64), 1)
        res["sklearn_brute_s"] = t_brute
        rows.append((f"k={k} scikit-learn brute", f"{t_brute:.2f}", ""))
        sub = q64[: args.tree_subset]
        scale = args.queries / len(sub)
        for algo in ("kd_tree", "ball_tree"):
            tree = NearestNeighbors(n_neighbors=k, algorithm=algo).fit(ref64)
            t_tree, _ = best_time(lambda tree=tree, sub=sub: tree.kneighbors(sub), 1)
            res[f"sklearn_{algo}_s_scaled"] = t_tree * scale
            rows.append((f"k={k} scikit-learn {algo} (scaled from {len(sub):,})",
                         f"{t_tree * scale:.2f}", ""))
        best_sk = min(t_brute, res["sklearn_kd_tree_s_scaled"], res["sklearn_ball_tree_s_scaled"])
        ours = min(res["miakit_float32_s"], res["miakit_float64_s"])
        res["speedup_vs_sklearn_best"] = best_sk / ours
        if faiss is not None:
            index = faiss.IndexFlatL2(args.dim)
            index.add(ref64.astype(np.float32))
            t_faiss, _ = best_time(lambda index=index, k=k: index.search(q64.astype(np.float32), k),
                                   args.repeat)
            res["faiss_flat_s"] = t_faiss
            res["ratio_to_faiss"] = res["miakit_float32_s"] / t_faiss
            rows.append((f"k={k} faiss IndexFlatL2 (float32)", f"{t_faiss:.3f}",
                         f"miakit f32 / faiss = {res['ratio_to_faiss']:.2f}"))
        # correctness against scikit-learn brute force
        rel = np.abs(d_mk - d_sk) / np.maximum(d_sk, 1e-300)
        res["max_rel_diff_vs_sklearn"] = float(rel.max())
        clear = np.ones(len(q64), dtype=bool)
        if k > 1:
            clear &= (np.diff(d_sk, axis=1) > 1e-9 * d_sk[:, 1:]).all(axis=1)
        res["indices_equal_where_untied"] = bool(np.array_equal(i_mk[clear], i_sk[clear]))
        print(f"k={k}: {ours:.3f} s, {best_sk / ours:.1f}x scikit-learn's best; max relative "
              f"difference {rel.max():.2g}; indices equal: {res['indices_equal_where_untied']}")
        results[f"k{k}"] = res
    print_table(rows, ("computation", "seconds", "note"))
    tag = "quick" if args.quick else "full"
    path = write_results(
        f"knn_{args.device}_{tag}_{machine()['host']}", benchmark="knn", device=args.device,
        config={"queries": args.queries, "reference": args.reference, "dim": args.dim,
                "k": [1, 5], "tree_subset": args.tree_subset, "repeat": args.repeat,
                "quick": args.quick, "faiss": bool(faiss)},
        results=knn_rows(results), details=results,
        notes="Tree times are scaled from tree_subset queries. Each k's row compares "
              "miakit's faster dtype with scikit-learn's fastest algorithm.")
    print("wrote", path)


def knn_rows(results: dict) -> list[dict]:
    """The record's rows: per k, miakit against scikit-learn's best and faiss."""
    out = []
    for key, res in results.items():
        ours = min(res["miakit_float32_s"], res["miakit_float64_s"])
        best_sk = min(res["sklearn_brute_s"], res["sklearn_kd_tree_s_scaled"],
                      res["sklearn_ball_tree_s_scaled"])
        out.append(row(f"{key} miakit (faster dtype) vs scikit-learn", ours,
                       "scikit-learn NearestNeighbors, fastest of brute/kd_tree/ball_tree",
                       best_sk, max_rel_diff=res["max_rel_diff_vs_sklearn"],
                       indices_equal_where_untied=res["indices_equal_where_untied"]))
        if "faiss_flat_s" in res:
            out.append(row(f"{key} miakit float32 vs faiss", res["miakit_float32_s"],
                           "faiss IndexFlatL2 (float32)", res["faiss_flat_s"]))
    return out


if __name__ == "__main__":
    main()
