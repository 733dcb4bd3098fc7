"""LiRA from raw shadow logits: miakit against a vectorized numpy implementation.

Workload: M = 256 models, N = 50,000 examples, A = 2 augmentations, C = 10
classes, float32 logits (about 1 GB). Measured in one run:

- numpy: scaled confidence of all logits, then nanmedian/nanstd IN/OUT statistics over
  the M - 2 shadow models of balanced leave-one-out (keep is drawn in complementary
  pairs: the target and its partner are left out), then the online score of one target;
- miakit, fused (logits -> scores -> statistics inside the kernel), one target and all
  M targets leave-one-out; and the same from precomputed scores.

Prints a table of times and ratios, checks that numpy and miakit agree, records the
extra resident memory, and writes bench/results/lira_<device>_<tag>_<host>.json
(bench/README.md describes the format; lira_cpu_full_vm.json holds a full run on 2 CPU
cores).

    python bench/bench_lira.py                 # full size, CPU
    python bench/bench_lira.py --quick         # small smoke run
    python bench/bench_lira.py --device cuda   # torch CUDA tensors (GPU build)
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


def make_data(m: int, n: int, a: int, c: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    labels = rng.integers(0, c, size=n)
    logits = rng.standard_normal((m, n, a, c), dtype=np.float32)
    # A membership signal: members get a larger true-class logit, on top of a per-example
    # difficulty shared by all models.
    boost = (rng.normal(1.0, 1.0, size=n)[None, :, None] + 1.5 * keep[:, :, None]).astype(
        np.float32)
    idx = np.broadcast_to(labels[None, :, None, None], (m, n, a, 1))
    np.put_along_axis(logits, idx, np.take_along_axis(logits, idx, 3) + boost[..., None], 3)
    return logits, labels, keep


def numpy_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    c = logits.shape[-1]
    is_y = np.arange(c) == labels[None, :, None, None]
    others = np.where(is_y, -np.inf, logits)
    mx = others.max(-1, keepdims=True)
    lse = np.log(np.exp(others - mx).sum(-1)) + mx[..., 0]
    zy = np.take_along_axis(logits, labels[None, :, None, None], -1)[..., 0]
    return zy - lse


def numpy_lira_online(scores: np.ndarray, keep: np.ndarray, target: int,
                      min_std: float = 1e-6) -> np.ndarray:
    # keep is drawn in complementary pairs, so balanced leave-one-out (miakit's default)
    # leaves out the target and its pair partner on every example
    assert (keep[target] != keep[target ^ 1]).all()
    shadow = np.delete(scores, [target, target ^ 1], axis=0).astype(np.float64)
    k = np.delete(keep, [target, target ^ 1], axis=0)[:, :, None]
    inn = np.where(k, shadow, np.nan)
    out = np.where(~k, shadow, np.nan)
    mu_in, mu_out = np.nanmedian(inn, 0), np.nanmedian(out, 0)
    sd_in = np.maximum(np.nanstd(inn, 0), min_std)
    sd_out = np.maximum(np.nanstd(out, 0), min_std)
    s = scores[target].astype(np.float64)

    def logpdf(x, mu, sd):
        return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)

    return (logpdf(s, mu_in, sd_in) - logpdf(s, mu_out, sd_out)).mean(-1)


def measure_memory(fn) -> tuple[object, int]:
    """Run fn once; return its result and the resident memory it added at its peak."""
    reset_peak_rss()
    before = rss_bytes("VmRSS")
    out = fn()
    return out, max(0, rss_bytes("VmHWM") - before)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", type=int, default=256)
    p.add_argument("--examples", type=int, default=50_000)
    p.add_argument("--augs", type=int, default=2)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="M=32, N=5,000: a smoke run")
    p.add_argument("--skip-numpy", action="store_true", help="do not time the numpy baseline")
    args = p.parse_args()
    if args.quick:
        args.models, args.examples = 32, 5_000

    m, n, a, c = args.models, args.examples, args.augs, args.classes
    logits, labels, keep = make_data(m, n, a, c)
    print(f"LiRA benchmark: M={m} N={n} A={a} C={c} float32 logits "
          f"({logits.nbytes / 2**30:.2f} GiB), device {args.device}, "
          f"{mk.backend_info()['openmp_threads']} CPU threads")
    results: dict[str, dict] = {}

    sync = None
    x_logits, x_keep, x_labels = logits, keep, labels
    if args.device == "cuda":
        import torch

        if not mk.backend_info()["cuda_available"]:
            raise SystemExit("--device cuda: this miakit build has no usable CUDA device")
        x_logits = torch.from_numpy(logits).cuda()
        x_keep = torch.from_numpy(keep).cuda()
        x_labels = torch.from_numpy(labels).cuda()
        sync = torch.cuda.synchronize
        # Achievable read+write bandwidth of this device, as a yardstick for the kernel.
        buf = torch.empty_like(x_logits)
        t_copy, _ = best_time(lambda: buf.copy_(x_logits), args.repeat, sync)
        results["device_copy"] = {"seconds": t_copy,
                                  "bandwidth_GBps": 2 * logits.nbytes / t_copy / 1e9,
                                  "device": torch.cuda.get_device_name()}
        del buf

    def mk_one():
        return mk.lira.leave_one_out(x_logits, x_keep, targets=[0], labels=x_labels)

    def mk_all():
        return mk.lira.leave_one_out(x_logits, x_keep, labels=x_labels)

    def mk_scores():
        return mk.signals.scaled_confidence(x_logits, x_labels[:, None])

    t_one, one = best_time(mk_one, args.repeat, sync)
    t_all, allk = best_time(mk_all, args.repeat, sync)
    t_sig, scores = best_time(mk_scores, args.repeat, sync)
    t_one_s, _ = best_time(
        lambda: mk.lira.leave_one_out(scores, x_keep, targets=[0]), args.repeat, sync)
    t_all_s, _ = best_time(lambda: mk.lira.leave_one_out(scores, x_keep), args.repeat, sync)
    t_off, _ = best_time(lambda: mk.lira.leave_one_out(
        x_logits, x_keep, targets=[0], labels=x_labels, mode="offline"), args.repeat, sync)
    results["miakit"] = {
        "one_target_fused_s": t_one, "all_targets_fused_s": t_all,
        "all_over_one": t_all / t_one, "scaled_confidence_s": t_sig,
        "one_target_from_scores_s": t_one_s, "all_targets_from_scores_s": t_all_s,
        "offline_one_target_fused_s": t_off,
        "logits_read_GBps_one_target": logits.nbytes / t_one / 1e9,
    }
    if args.device == "cpu":
        _, mem_one = measure_memory(mk_one)
        _, mem_all = measure_memory(mk_all)
        results["miakit"]["extra_rss_one_target_bytes"] = mem_one
        results["miakit"]["extra_rss_all_targets_bytes"] = mem_all
        results["miakit"]["output_bytes_all_targets"] = m * n * 8
    one_np = np.asarray(one.cpu() if hasattr(one, "cpu") else one)[0]
    all_np = np.asarray(allk.cpu() if hasattr(allk, "cpu") else allk)

    rows = [
        ("miakit fused, one target", f"{t_one:.3f}", ""),
        ("miakit fused, all targets (LOO)", f"{t_all:.3f}", f"{t_all / t_one:.2f}x one target"),
        ("miakit scaled_confidence only", f"{t_sig:.3f}", ""),
        ("miakit from scores, one target", f"{t_one_s:.3f}", ""),
        ("miakit from scores, all targets", f"{t_all_s:.3f}", f"{t_all_s / t_one_s:.2f}x"),
        ("miakit fused offline, one target", f"{t_off:.3f}", ""),
    ]
    if not args.skip_numpy:
        def np_one():
            return numpy_lira_online(numpy_scaled_confidence(logits, labels), keep, 0)

        t_np, ref = best_time(np_one, max(1, min(args.repeat, 2)))
        t_np_sig, _ = best_time(lambda: numpy_scaled_confidence(logits, labels), 1)
        _, mem_np = measure_memory(np_one) if args.device == "cpu" else (None, 0)
        diff = float(np.max(np.abs(ref - one_np)))
        results["numpy"] = {"one_target_s": t_np, "scaled_confidence_s": t_np_sig,
                            "extra_rss_one_target_bytes": mem_np,
                            "all_targets_estimate_s": t_np * m,
                            "max_abs_diff_vs_miakit": diff}
        results["speedup_one_target_vs_numpy"] = t_np / t_one
        results["speedup_all_targets_vs_numpy_estimate"] = t_np * m / t_all
        rows.insert(0, ("numpy, one target", f"{t_np:.3f}", ""))
        rows.insert(1, ("numpy scaled confidence only", f"{t_np_sig:.3f}", ""))
        rows[2] = (rows[2][0], rows[2][1], f"{t_np / t_one:.1f}x faster than numpy")
        print(f"max |numpy - miakit| on target 0: {diff:.3g}")
    auc = mk.metrics.auc(all_np, keep)
    results["auc_all_targets"] = auc
    print_table(rows, ("computation", "seconds", "note"))
    print(f"AUC over all {m} leave-one-out targets: {auc:.4f}")
    if args.device == "cpu":
        print(f"extra resident memory: one target {mem_one / 2**20:.0f} MiB, all targets "
              f"{mem_all / 2**20:.0f} MiB (output alone {m * n * 8 / 2**20:.0f} MiB)")
    tag = "quick" if args.quick else "full"
    path = write_results(
        f"lira_{args.device}_{tag}_{machine()['host']}", benchmark="lira", device=args.device,
        config={"M": m, "N": n, "A": a, "C": c, "dtype": "float32",
                "logits_bytes": int(logits.nbytes), "repeat": args.repeat,
                "quick": args.quick, "numpy_baseline": not args.skip_numpy},
        results=lira_rows(results, m), details=results,
        notes="numpy's all-targets time is its one-target time x M (an estimate: it is "
              "not run M times).")
    print(f"wrote {path}")


def lira_rows(results: dict, models: int) -> list[dict]:
    """The record's rows: miakit's LiRA computations, against numpy where it ran."""
    ours, ref = results["miakit"], results.get("numpy")
    np_one = ref["one_target_s"] if ref else None
    np_sig = ref["scaled_confidence_s"] if ref else None
    np_all = ref["all_targets_estimate_s"] if ref else None
    return [
        row("one target, fused from logits", ours["one_target_fused_s"],
            "numpy, one target" if ref else None, np_one),
        row(f"all {models} targets leave-one-out, fused from logits",
            ours["all_targets_fused_s"], f"numpy, one target x {models}" if ref else None,
            np_all, auc=results.get("auc_all_targets")),
        row("scaled confidence of all logits", ours["scaled_confidence_s"],
            "numpy scaled confidence" if ref else None, np_sig),
        row("one target, from scores", ours["one_target_from_scores_s"]),
        row(f"all {models} targets, from scores", ours["all_targets_from_scores_s"]),
        row("offline, one target, fused", ours["offline_one_target_fused_s"]),
    ]


if __name__ == "__main__":
    main()
