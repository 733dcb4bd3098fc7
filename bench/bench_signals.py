"""Membership signals: all seven in one pass (``mk.signals.compute``) against one call per
signal and against numpy in float64.

Workload: logits of M = 64 models x N = 50,000 examples x A = 2 views x C = 10 classes
(float32, 0.24 GiB), the shape ``miakit audit --run`` reads a block of models in. Three
ways to get every signal (scaled confidence, hinge, loss, confidence, maximum confidence,
correctness, gradient norm), each timed as the best of ``--repeat`` runs:

- miakit, one pass: ``mk.signals.compute(z, y, all seven)``;
- miakit, one call per signal (seven passes over the logits);
- numpy, float64 (softmax, log-sum-exp; timed on one model and scaled to M).

The one-pass values are checked to equal the per-signal ones bit for bit, and both to
meet the float64 numpy values. With ``--device cuda`` the logits are a torch CUDA tensor
(one kernel launch per signal there). Writes
bench/results/signals_<device>_<tag>_<host>.json (bench/README.md describes the format;
signals_cpu_full_vm.json holds a full run on 2 CPU cores).

    python bench/bench_signals.py
    python bench/bench_signals.py --quick          # M = 8
    python bench/bench_signals.py --device cuda    # GPU build
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy import special

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import best_time, machine, print_table, row, write_results  # noqa: E402

import miakit as mk  # noqa: E402

NAMES = ("scaled_confidence", "hinge", "loss", "confidence", "max_confidence", "correct",
         "grad_norm")


def numpy_signals(z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every signal in float64 numpy, as written in docs/methods/signals.md."""
    z = z.astype(np.float64)
    yy = np.broadcast_to(y, z.shape[:-1])
    true = np.arange(z.shape[-1]) == yy[..., None]
    zy = np.take_along_axis(z, yy[..., None], -1)[..., 0]
    others = np.where(true, -np.inf, z)
    lse = special.logsumexp(z, axis=-1)
    lse_o = special.logsumexp(others, axis=-1)
    p = np.exp(z - lse[..., None])
    p_o = np.where(true, 0.0, p)
    return {"scaled_confidence": zy - lse_o, "hinge": zy - others.max(-1), "loss": lse - zy,
            "confidence": np.exp(zy - lse), "max_confidence": p.max(-1),
            "correct": z.argmax(-1) == yy,
            "grad_norm": np.hypot(np.exp(lse_o - lse), np.sqrt((p_o**2).sum(-1)))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", type=int, default=64)
    p.add_argument("--examples", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args()
    if args.quick:
        args.models = 8
    m, n, a, c = args.models, args.examples, 2, 10
    rng = np.random.default_rng(0)
    y = rng.integers(0, c, n)
    z = rng.normal(size=(m, n, a, c)).astype(np.float32)
    z[:, np.arange(n), :, y] += 2.0
    lab = y[:, None]
    print(f"signals benchmark: M={m} N={n} A={a} C={c} float32 "
          f"({z.nbytes / 2**30:.2f} GiB), device {args.device}, "
          f"{mk.backend_info()['openmp_threads']} CPU threads")
    xz, xlab, sync = z, lab, None
    if args.device == "cuda":
        import torch

        if not mk.backend_info()["cuda_available"]:
            raise SystemExit("--device cuda: this miakit build has no usable CUDA device")
        xz, xlab = torch.from_numpy(z).cuda(), torch.from_numpy(lab).cuda()
        sync = torch.cuda.synchronize

    def host(d):
        return {k: np.asarray(v.cpu() if hasattr(v, "cpu") else v) for k, v in d.items()}

    t_one, fused = best_time(lambda: mk.signals.compute(xz, xlab, NAMES), args.repeat, sync)
    t_sep, separate = best_time(lambda: {k: getattr(mk.signals, k)(xz, xlab) for k in NAMES},
                                args.repeat, sync)
    fused, separate = host(fused), host(separate)
    t_np1, ref = best_time(lambda: numpy_signals(z[:1], lab), 1)
    t_np = t_np1 * m
    for k in NAMES:
        assert np.array_equal(fused[k], separate[k]), k
        if k == "correct":
            assert np.array_equal(fused[k][:1], ref[k]), k
        else:
            np.testing.assert_allclose(fused[k][:1].astype(np.float64), ref[k], rtol=2e-6,
                                       atol=1e-12, err_msg=k)
    rows = [("miakit, one pass (compute)", f"{t_one:.3f}", "1.0x"),
            ("miakit, one call per signal", f"{t_sep:.3f}", f"{t_sep / t_one:.1f}x"),
            ("numpy float64 (scaled from 1 model)", f"{t_np:.3f}", f"{t_np / t_one:.1f}x")]
    print_table(rows, ("all seven signals", "seconds", "vs one pass"))
    results = {"compute_one_pass_s": t_one, "one_call_per_signal_s": t_sep,
               "numpy_float64_scaled_s": t_np, "one_pass_speedup_vs_separate": t_sep / t_one,
               "one_pass_speedup_vs_numpy": t_np / t_one, "bit_identical_to_separate": True}
    tag = "quick" if args.quick else "full"
    path = write_results(
        f"signals_{args.device}_{tag}_{machine()['host']}", benchmark="signals",
        device=args.device,
        config={"M": m, "N": n, "A": a, "C": c, "dtype": "float32", "signals": list(NAMES),
                "repeat": args.repeat, "quick": args.quick},
        results=signals_rows(results), details=results,
        notes="numpy's time is measured on one model and scaled to M.")
    print("wrote", path)


def signals_rows(results: dict) -> list[dict]:
    """The record's rows: the one pass against one call per signal and against numpy."""
    ours = results["compute_one_pass_s"]
    return [row("all seven signals, one pass vs one call per signal", ours,
                "miakit, one call per signal", results["one_call_per_signal_s"],
                bit_identical=results["bit_identical_to_separate"]),
            row("all seven signals, one pass vs numpy", ours,
                "numpy float64 (scaled from one model)", results["numpy_float64_scaled_s"])]


if __name__ == "__main__":
    main()
