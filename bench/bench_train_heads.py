"""Batched shadow heads: miakit's train_heads against training the heads one by one.

Workload: 64 linear softmax heads on N = 20,000 examples of 256 features,
10 classes; head m trains on its half of the examples (``balanced_keep``). Every method
minimises the same objective, mean cross-entropy + weight_decay/2 * ||W||^2 (bias not
penalised), from zero (or warm) start to the same stopping rule, max |gradient| <= tol:

- miakit: ``mk.shadow.train_heads``, all 64 heads in one batched L-BFGS;
- scikit-learn: ``LogisticRegression(C=1/(weight_decay * n_m), tol=tol)`` (lbfgs,
  multinomial, float64), fitted 64 times one after another;
- torch loop: a plain full-batch ``torch.optim.LBFGS`` loop (strong Wolfe line search,
  float32), run 64 times one after another;
- miakit one head at a time: the same solver (pooled warm start computed once, shared
  curvature model) called 64 times with one head, i.e. miakit's optimizer without the
  batching.

Every method gets one untimed warm-up first (miakit: a whole call; the others: their
first head), so that one-time costs (thread pools, kernel selection) are not timed.
Features are a synthetic Gaussian mixture (no download). Test accuracy of a head is its
accuracy on the examples it did not train on (its non-members), averaged over heads.
Prints a table and writes bench/results/train_heads_<device>_<tag>_<host>.json
(bench/README.md describes the format; train_heads_cpu_full_vm.json holds a full run on
2 CPU cores). ``--baseline-heads K`` times the baselines on K heads and scales to M,
for workloads where training every head one by one takes too long.

    python bench/bench_train_heads.py            # the workload above
    python bench/bench_train_heads.py --quick    # small smoke run
    python bench/bench_train_heads.py --device cuda --models 256 --examples 50000 --dim 768
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine, print_table, row, write_results  # noqa: E402

import miakit as mk  # noqa: E402


def make_data(n: int, dim: int, classes: int, seed: int = 0):
    """Gaussian mixture; separation chosen so a linear head reaches ~75% accuracy."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim)) * 0.15
    y = rng.integers(0, classes, n)
    x = (means[y] + rng.normal(size=(n, dim))).astype(np.float32)
    return x, y


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def test_accuracy(pred: np.ndarray, y: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per-head accuracy on the head's non-members: pred [K, N] class indices."""
    return np.array([(pred[k][~keep[k]] == y[~keep[k]]).mean() for k in range(len(pred))])


def run_miakit(x, y, keep, wd, tol, device, repeat):
    """Wall time of ``repeat`` batched runs after one untimed warm-up run (the median is
    reported)."""
    times, out = [], None
    for i in range(repeat + 1):
        sync()
        t0 = time.perf_counter()
        out = mk.shadow.train_heads(x, y, keep, weight_decay=wd, tol=tol, device=device,
                                    heads_per_chunk=len(keep), return_info=True,
                                    progress=False)
        sync()
        if i:  # the first run pays one-time costs (thread pools, kernels): a warm-up
            times.append(time.perf_counter() - t0)
    z, info = out
    return float(np.median(times)), times, z[:, :, 0].argmax(-1), info


def run_miakit_single(x, y, keep, wd, tol, device):
    """miakit's solver on one head per call (no batching; the warm start is shared)."""
    import torch

    from miakit.shadow._runtime import _Quiet
    from miakit.shadow.heads import _resolve_config, _Trainer

    cfg = _resolve_config("linear", 1, "lbfgs", None, None, wd, None, tol, True,
                          int(y.max()) + 1, 0, "float32", 1, False, len(keep))
    trainer = _Trainer(x[:, None, :], y, keep, cfg, torch.device(device), torch)
    trainer.train([0], _Quiet())  # warm-up, untimed
    trainer = _Trainer(x[:, None, :], y, keep, cfg, torch.device(device), torch)
    preds = []
    t0 = time.perf_counter()
    for k in range(len(keep)):
        logits, _, _ = trainer.train([k], _Quiet())
        preds.append(logits[0, :, 0].argmax(-1))
    sync()
    return time.perf_counter() - t0, np.stack(preds)


def run_sklearn(x, y, keep, wd, tol):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    preds, iters = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        LogisticRegression(C=1.0 / (wd * keep[0].sum()), tol=tol, max_iter=1000).fit(
            x[keep[0]], y[keep[0]])  # warm-up, untimed
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in keep:
            clf = LogisticRegression(C=1.0 / (wd * k.sum()), tol=tol, max_iter=1000)
            clf.fit(x[k], y[k])
            preds.append(clf.predict(x))
            iters.append(int(np.max(clf.n_iter_)))
    return time.perf_counter() - t0, np.stack(preds), iters


def run_torch_loop(x, y, keep, wd, tol, device):
    import torch

    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(y).to(device)
    preds, evals = [], []
    t0 = None
    for i, k in enumerate(np.concatenate([keep[:1], keep])):  # the first: warm-up, untimed
        if i == 1:
            sync()
            t0 = time.perf_counter()
        idx = torch.from_numpy(np.flatnonzero(k)).to(device)
        xk, yk = xt[idx], yt[idx]
        w = torch.zeros(x.shape[1], int(y.max()) + 1, device=device, requires_grad=True)
        b = torch.zeros(w.shape[1], device=device, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=1000, tolerance_grad=tol,
                                tolerance_change=0, history_size=10,
                                line_search_fn="strong_wolfe")

        def closure(w=w, b=b, xk=xk, yk=yk, opt=opt):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xk @ w + b, yk) + 0.5 * wd * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            pred = (xt @ w + b).argmax(1).cpu().numpy()
        if i:
            evals.append(int(opt.state[w]["func_evals"]))
            preds.append(pred)
    sync()
    return time.perf_counter() - t0, np.stack(preds), evals


_DEVICE = "cpu"


def sync() -> None:
    if _DEVICE.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main() -> None:
    global _DEVICE
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", type=int, default=64)
    p.add_argument("--examples", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--repeat", type=int, default=7,
                   help="miakit runs after one warm-up run; the median time is reported")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--baseline-heads", type=int, default=None,
                   help="train only this many heads per baseline and scale the time to all "
                        "M (default: all M)")
    p.add_argument("--skip-baselines", action="store_true", help="time miakit only")
    p.add_argument("--quick", action="store_true", help="M=8, N=4,000, d=64: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.models, args.examples, args.dim = 8, 4000, 64
    _DEVICE = args.device
    import torch

    x, y = make_data(args.examples, args.dim, args.classes)
    keep = mk.shadow.balanced_keep(args.models, args.examples, seed=0)
    wd, tol = args.weight_decay, args.tol
    print(f"{args.models} linear heads, N={args.examples}, d={args.dim}, C={args.classes}, "
          f"weight_decay={wd}, tol={tol}, device={args.device}, torch threads "
          f"{torch.get_num_threads()}, load average {load_avg():.2f}")
    load_before = load_avg()

    t_mk, all_mk, pred_mk, info = run_miakit(x, y, keep, wd, tol, args.device, args.repeat)
    acc_mk = test_accuracy(pred_mk, y, keep)
    results = {"miakit": {"seconds": t_mk, "seconds_all_runs": all_mk,
                          "test_accuracy": float(acc_mk.mean()),
                          "iterations_max": int(info["iterations"].max()),
                          "converged": int(info["converged"].sum()),
                          "grad_max": float(np.nanmax(info["grad_max"]))}}
    rows = [("miakit train_heads (batched)", f"{t_mk:.2f}", "1.0x", f"{100 * acc_mk.mean():.2f}")]
    if not args.skip_baselines:
        nb = args.baseline_heads or args.models
        scale = args.models / nb
        sub = keep[:nb]
        t_sk, pred_sk, it_sk = run_sklearn(x, y, sub, wd, tol)
        t_th, pred_th, ev_th = run_torch_loop(x, y, sub, wd, tol, args.device)
        t_one, pred_one = run_miakit_single(x, y, sub, wd, tol, args.device)
        acc_sk, acc_th = test_accuracy(pred_sk, y, sub), test_accuracy(pred_th, y, sub)
        acc_one = test_accuracy(pred_one, y, sub)
        for name, t, acc, extra in (
                ("sklearn", t_sk * scale, acc_sk, {"iterations": it_sk}),
                ("torch_lbfgs_loop", t_th * scale, acc_th, {"func_evals": ev_th}),
                ("miakit_one_head_per_call", t_one * scale, acc_one, {})):
            results[name] = {"seconds": t, "test_accuracy": float(acc.mean()),
                             "heads_timed": nb, "speedup_of_miakit": t / t_mk, **extra}
        labels = {"sklearn": "scikit-learn LogisticRegression x M",
                  "torch_lbfgs_loop": "torch.optim.LBFGS loop x M",
                  "miakit_one_head_per_call": "miakit, one head per call x M"}
        for name, label in labels.items():
            r = results[name]
            rows.append((label, f"{r['seconds']:.2f}", f"{r['speedup_of_miakit']:.1f}x",
                         f"{100 * r['test_accuracy']:.2f}"))
        faster = min(results["sklearn"]["seconds"], results["torch_lbfgs_loop"]["seconds"])
        results["summary"] = {
            "speedup_vs_faster_of_sklearn_and_torch_loop": faster / t_mk,
            "speedup_vs_fastest_baseline": min(results[k]["seconds"] for k in labels) / t_mk,
            "test_accuracy_gap_vs_sklearn_points": float(
                100 * (acc_mk[:nb].mean() - acc_sk.mean())),
            "max_per_head_accuracy_gap_vs_sklearn_points": float(
                100 * np.abs(acc_mk[:nb] - acc_sk).max()),
            "target": ">= 20x faster than the faster of sklearn and the torch loop, test "
                      "accuracy within 1 point of sklearn's"}
    print_table(rows, ("method", "seconds", "miakit speedup", "test acc %"))
    if "summary" in results:
        s = results["summary"]
        print(f"speedup vs the faster of sklearn and the torch loop: "
              f"{s['speedup_vs_faster_of_sklearn_and_torch_loop']:.1f}x; vs the fastest "
              f"baseline: {s['speedup_vs_fastest_baseline']:.1f}x; test accuracy gap vs "
              f"sklearn: {s['test_accuracy_gap_vs_sklearn_points']:+.3f} points (max per "
              f"head {s['max_per_head_accuracy_gap_vs_sklearn_points']:.3f})")
    tag = "quick" if args.quick else "full"
    if not args.quick and (args.models, args.examples, args.dim) != (64, 20_000, 256):
        tag = f"m{args.models}_n{args.examples}_d{args.dim}"  # e.g. the larger GPU workload
    path = write_results(
        f"train_heads_{args.device}_{tag}_{machine()['host']}", benchmark="train_heads",
        device=args.device,
        config={"models": args.models, "examples": args.examples, "dim": args.dim,
                "classes": args.classes, "weight_decay": wd, "tol": tol,
                "repeat": args.repeat, "baseline_heads": args.baseline_heads,
                "quick": args.quick, "data": "Gaussian mixture, make_data(seed=0)",
                "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        results=train_heads_rows(results),
        details={**results, "load_average": [load_before, load_avg()]},
        notes="miakit's time is the median of its runs after a warm-up; a baseline timed "
              "on fewer heads than M (heads_timed) is scaled to M.")
    print(f"wrote {path}")


BASELINES = {"sklearn": "scikit-learn LogisticRegression, one head after another",
             "torch_lbfgs_loop": "torch.optim.LBFGS loop, one head after another",
             "miakit_one_head_per_call": "miakit's solver, one head per call"}


def train_heads_rows(results: dict) -> list[dict]:
    """The record's rows: the batched training against each baseline that ran."""
    ours = results["miakit"]
    rows = [row("train_heads, batched", ours["seconds"],
                test_accuracy=ours["test_accuracy"])]
    for name, label in BASELINES.items():
        if name in results:
            r = results[name]
            rows.append(row(f"train_heads, batched vs {name}", ours["seconds"], label,
                            r["seconds"], test_accuracy=r["test_accuracy"],
                            heads_timed=r["heads_timed"]))
    return rows


if __name__ == "__main__":
    main()
