"""Per-example risk kernels against their baselines, measured in one run.

1. Influence top-10 (N = 50,000 training, T = 10,000 test examples, M = 256 models, 0/1
   correctness): miakit's fused kernel against a dense numpy baseline (float32 matmul in
   column blocks, then the two means and an argpartition top-k); achieved GFLOP/s
   (2 M N T flops) against this machine's measured np.matmul float32 rate.
2. Per-example gradient norms, 4-layer MLP of width 1024 (1024 -> 1024 -> 1024 -> 1024
   -> 10, ReLU), N = 4096, float32: miakit against torch.func vmap(grad) norms, and
   against one ordinary forward + backward pass of the mean loss.
3. Hutchinson trace with 10 probes against 10 plain double-backward passes (forward,
   input gradient with create_graph, Hessian-vector product), small CNN on 3x32x32
   inputs, N = 256.

Prints a table and writes bench/results/risk_<device>_<full|quick>_<host>.json
(bench/README.md describes the format; risk_cpu_full_vm.json holds a full run on 2 CPU
cores).

    python bench/bench_risk.py              # full sizes
    python bench/bench_risk.py --quick      # small smoke run
    python bench/bench_risk.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import torch  # noqa: E402
from _common import best_time, machine, print_table, row, write_results  # noqa: E402

import miakit as mk  # noqa: E402


def matmul_rate(n: int, device: str) -> float:
    """float32 GEMM rate (GFLOP/s) of np.matmul (CPU) or torch.matmul (CUDA), n x n."""
    if device == "cuda":
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")
        t, _ = best_time(lambda: a @ b, repeat=5, sync=torch.cuda.synchronize)
    else:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        a @ b
        t, _ = best_time(lambda: a @ b, repeat=5)
    return 2.0 * n**3 / t / 1e9


def influence_data(m: int, n: int, t: int, seed: int = 0):
    """keep [M, N] (balanced) and correctness [M, T] with planted influences: test example
    j depends on training example 5 j for the first T/2 test examples."""
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    base = rng.uniform(0.2, 0.9, size=t).astype(np.float32)
    correct = rng.random((m, t), dtype=np.float32) < base
    half = t // 2
    src = (5 * np.arange(half)) % n
    correct[:, :half] |= keep[:, src] & (rng.random((m, half)) < 0.5)
    return keep, correct


def numpy_influence(keep: np.ndarray, correct: np.ndarray, k: int, block: int = 1000):
    """Dense baseline: float32 matmul per column block, then the means and a top-k."""
    m = keep.shape[0]
    kf = keep.astype(np.float32)
    c = correct.astype(np.float32)
    n_in = kf.sum(0).astype(np.float64)
    n_out = m - n_in
    colsum = c.sum(0).astype(np.float64)
    t = c.shape[1]
    vals = np.empty((t, k))
    idx = np.empty((t, k), np.int64)
    kt = np.ascontiguousarray(kf.T)
    for j0 in range(0, t, block):
        s = (kt @ c[:, j0:j0 + block]).astype(np.float64)  # [N, b]
        infl = s / n_in[:, None] - (colsum[None, j0:j0 + block] - s) / n_out[:, None]
        part = np.argpartition(-infl, k - 1, axis=0)[:k]  # [k, b]
        pv = np.take_along_axis(infl, part, 0)
        order = np.argsort(-pv, axis=0, kind="stable")
        vals[j0:j0 + block] = np.take_along_axis(pv, order, 0).T
        idx[j0:j0 + block] = np.take_along_axis(part, order, 0).T
    return vals, idx


def bench_influence(args, rows, out):
    m, n, t, k = (256, 50_000, 10_000, 10) if not args.quick else (64, 5_000, 1_000, 10)
    keep, correct = influence_data(m, n, t)
    flops = 2.0 * m * n * t
    rate = matmul_rate(4096 if not args.quick else 1024, args.device)
    if args.device == "cuda":
        kd, cd = torch.from_numpy(keep).cuda(), torch.from_numpy(correct).cuda()
        t_mk, (v_mk, i_mk) = best_time(lambda: mk.memorization.influence(kd, cd, top_k=k),
                                       repeat=args.repeat, sync=torch.cuda.synchronize)
        v_mk, i_mk = v_mk.cpu().numpy(), i_mk.cpu().numpy()
    else:
        t_mk, (v_mk, i_mk) = best_time(lambda: mk.memorization.influence(keep, correct, top_k=k),
                                       repeat=args.repeat)
    t_np, (v_np, i_np) = best_time(lambda: numpy_influence(keep, correct, k), repeat=1)
    agree = bool(np.array_equal(v_mk, v_np))
    planted = float((i_mk[: t // 2, 0] == (5 * np.arange(t // 2)) % n).mean())
    gflops = flops / t_mk / 1e9
    rows.append(("influence top-10 miakit", f"{t_mk:.3f}", f"{gflops:.1f} GFLOP/s",
                 f"{gflops / rate:.0%} of matmul"))
    rows.append(("influence top-10 numpy dense", f"{t_np:.3f}", f"{flops / t_np / 1e9:.1f} GFLOP/s",
                 f"miakit {t_np / t_mk:.1f}x faster"))
    rows.append(("float32 matmul rate", "", f"{rate:.1f} GFLOP/s", ""))
    out["influence"] = {
        "M": m, "N": n, "T": t, "k": k, "miakit_s": t_mk, "numpy_s": t_np,
        "gflops_miakit": gflops, "gflops_numpy_dense": flops / t_np / 1e9,
        "matmul_gflops": rate, "fraction_of_matmul": gflops / rate,
        "values_identical_to_numpy": agree, "planted_top1_recovered": planted,
    }


def mlp(width: int = 1024, depth: int = 4, classes: int = 10):
    layers = []
    for _ in range(depth - 1):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(width, classes))
    return torch.nn.Sequential(*layers)


def bench_gradnorms(args, rows, out):
    n = 4096 if not args.quick else 512
    dev = args.device
    torch.manual_seed(0)
    model = mlp().to(dev).eval()
    x = torch.randn(n, 1024, device=dev)
    y = torch.randint(0, 10, (n,), device=dev)
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    sync = torch.cuda.synchronize if dev == "cuda" else None

    def ordinary():
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        return ce(functional_call(model, p, (xi[None],)), yi[None]).sum()

    per_ex = vmap(grad(one), in_dims=(None, 0, 0))
    chunk = 64 if dev == "cpu" else 256  # per-example grads of 3.2M parameters each

    def vmap_norms():
        outs = []
        for s in range(0, n, chunk):
            g = per_ex(params, x[s:s + chunk], y[s:s + chunk])
            outs.append(torch.sqrt(sum(v.reshape(len(v), -1).pow(2).sum(1) for v in g.values())))
        return torch.cat(outs)

    t_ord, _ = best_time(ordinary, repeat=args.repeat, sync=sync)
    t_mk, res = best_time(lambda: mk.gradients.per_example_norms(model, ce, x, y),
                          repeat=args.repeat, sync=sync)
    t_vm, ref = best_time(vmap_norms, repeat=1, sync=sync)
    rel = (res.norms - ref).abs() / ref
    err, med = float(rel.max()), float(rel.median())
    rows.append(("grad norms miakit (MLP 4x1024)", f"{t_mk:.3f}", f"{t_vm / t_mk:.1f}x vs vmap",
                 f"{t_mk / t_ord:.2f}x one backward"))
    rows.append(("grad norms vmap(grad)", f"{t_vm:.3f}", "", ""))
    rows.append(("ordinary forward+backward", f"{t_ord:.3f}", "", ""))
    out["grad_norms"] = {"N": n, "width": 1024, "layers": 4, "miakit_s": t_mk, "vmap_s": t_vm,
                         "ordinary_backward_s": t_ord, "speedup_vs_vmap": t_vm / t_mk,
                         "ratio_to_ordinary_backward": t_mk / t_ord,
                         "max_rel_err_vs_vmap": err, "median_rel_err_vs_vmap": med,
                         "fallback_layers": res.fallback_layers}


def cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.Softplus(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.Softplus(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 8 * 8, 128), torch.nn.Softplus(),
        torch.nn.Linear(128, 10))


def bench_hutchinson(args, rows, out):
    n, probes = (256 if not args.quick else 64), 10
    dev = args.device
    torch.manual_seed(0)
    model = cnn().to(dev).eval()
    x = torch.randn(n, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (n,), device=dev)
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    sync = torch.cuda.synchronize if dev == "cuda" else None
    v = mk.curvature.probes(torch.arange(n, device=dev), probes, (3, 32, 32))

    def plain():
        tot = torch.zeros(n, device=dev)
        for k in range(probes):
            xb = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(ce(model(xb), y).sum(), xb, create_graph=True)
            (hv,) = torch.autograd.grad(g, xb, grad_outputs=v[:, k])
            tot += (hv * v[:, k]).flatten(1).sum(1)
        return tot / probes

    t_plain, ref = best_time(plain, repeat=args.repeat, sync=sync)
    t_mk, (tr, se) = best_time(lambda: mk.curvature.hutchinson_trace(model, ce, x, y,
                                                                     n_probes=probes),
                               repeat=args.repeat, sync=sync)
    err = float(((tr - ref).abs() / ref.abs().clamp(min=1e-12)).max())
    rows.append(("hutchinson 10 probes miakit (CNN)", f"{t_mk:.3f}",
                 f"{t_mk / t_plain:.2f}x of plain", ""))
    rows.append(("10 plain double-backward passes", f"{t_plain:.3f}", "", ""))
    out["hutchinson"] = {"N": n, "probes": probes, "miakit_s": t_mk, "plain_s": t_plain,
                         "ratio_to_plain": t_mk / t_plain, "max_rel_diff_vs_plain": err}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", choices=["influence", "gradnorms", "hutchinson"], default=None)
    args = p.parse_args()
    rows: list[tuple[str, ...]] = []
    out: dict = {}
    t0 = time.perf_counter()
    for name, fn in (("influence", bench_influence), ("gradnorms", bench_gradnorms),
                     ("hutchinson", bench_hutchinson)):
        if args.only in (None, name):
            fn(args, rows, out)
    print_table(rows, ("benchmark", "seconds", "rate / speed-up", "target check"))
    tag = "quick" if args.quick else "full"
    host = machine()["host"]
    suffix = "" if args.only is None else f"_{args.only}"
    path = write_results(
        f"risk_{args.device}_{tag}{suffix}_{host}", benchmark="risk", device=args.device,
        config={"quick": args.quick, "repeat": args.repeat, "only": args.only,
                "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        results=risk_rows(out),
        details={**out, "wall_s": time.perf_counter() - t0},
        notes="Workload sizes per kernel are in details (M, N, T, width, probes).")
    print(f"wrote {path}")


def risk_rows(out: dict) -> list[dict]:
    """The record's rows: each kernel that ran against its baseline."""
    rows = []
    if "influence" in out:
        r = out["influence"]
        rows.append(row(f"influence top-{r['k']}", r["miakit_s"],
                        "numpy dense float32 matmul in blocks + top-k", r["numpy_s"],
                        fraction_of_matmul=r["fraction_of_matmul"],
                        values_identical=r["values_identical_to_numpy"]))
    if "grad_norms" in out:
        r = out["grad_norms"]
        rows.append(row(f"per-example gradient norms, MLP {r['layers']}x{r['width']}",
                        r["miakit_s"], "torch.func vmap(grad) norms", r["vmap_s"],
                        max_rel_err=r["max_rel_err_vs_vmap"]))
        rows.append(row("per-example gradient norms vs one ordinary backward", r["miakit_s"],
                        "one forward + backward of the mean loss", r["ordinary_backward_s"]))
    if "hutchinson" in out:
        r = out["hutchinson"]
        rows.append(row(f"Hutchinson trace, {r['probes']} probes, CNN", r["miakit_s"],
                        f"{r['probes']} plain double-backward passes", r["plain_s"],
                        max_rel_diff=r["max_rel_diff_vs_plain"]))
    return rows


if __name__ == "__main__":
    main()
