"""The exposed-records test on trained models: its false discovery rate and power.

Trains M linear heads on the embedded digits (each on a random half, paired keep), then
makes every model the target once, the other M - 1 its references
(``mk.exposure.membership_pvalues``, the audit's rule). The records a target did NOT
train on are true nulls: any of them declared exposed is a false discovery, so the share
of targets with at least one such discovery estimates the family-wise error, which
Benjamini-Hochberg keeps at most the FDR. The records it trained on measure power (the
share declared exposed). Writes bench/results/exposure_fdr_cpu.json.

Run: ``python bench/exposure_fdr.py [--models 64] [--fdr 0.05] [--quick]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from _common import row, write_results

import miakit as mk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--fdr", type=float, default=0.05)
    ap.add_argument("--quick", action="store_true", help="16 models, 600 examples")
    args = ap.parse_args()
    m = 16 if args.quick else args.models
    d = mk.datasets.digits(n_examples=600 if args.quick else None, views=1)
    n = len(d.labels)
    keep = mk.shadow.balanced_keep(m, n, seed=0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        mk.shadow.train_heads(d.features, d.labels, keep, run_dir=tmp + "/run", seed=0,
                              progress=False)
        run = mk.shadow.open_run(tmp + "/run")
        logits = np.stack([run.model_logits(k) for k in range(m)])
    train_s = time.perf_counter() - t0
    sig = np.asarray(mk.signals.scaled_confidence(logits, d.labels[None, :, None]),
                     np.float64).mean(-1)                                  # [M, N]
    any_false, fdp, power, exposed_in = 0, [], [], []
    t0 = time.perf_counter()
    for k in range(m):
        refs = np.delete(np.arange(m), k)
        # nulls: records model k did not train on
        null = mk.exposure.membership_pvalues(sig[k], sig[refs], keep[refs],
                                              np.flatnonzero(~keep[k]), fdr=args.fdr)
        any_false += null.n_exposed > 0
        # members: what an audit of model k reports
        mem = mk.exposure.membership_pvalues(sig[k], sig[refs], keep[refs],
                                             np.flatnonzero(keep[k]), fdr=args.fdr)
        power.append(mem.n_exposed / mem.records.size)
        exposed_in.append(mem.n_exposed)
        fdp.append(null.n_exposed / max(null.n_exposed + mem.n_exposed, 1))
    test_s = time.perf_counter() - t0
    fwer = any_false / m
    print(f"{m} linear heads on {n} digits: targets with a false discovery among their "
          f"non-members {any_false}/{m} = {fwer:.3f} (FDR {args.fdr}); members declared "
          f"exposed: mean {np.mean(power):.3f} of each target's training records")
    write_results(
        "exposure_fdr_cpu" + ("_quick" if args.quick else ""), benchmark="exposure_fdr",
        device="cpu",
        config={"models": m, "examples": n, "fdr": args.fdr, "head": "linear",
                "quick": args.quick},
        results=[row("null family-wise error (share of targets with a false discovery)",
                     ours_s=test_s, fwer=fwer, targets=m, bound=args.fdr),
                 row("power (share of a target's training records declared exposed)",
                     power_mean=float(np.mean(power)),
                     exposed_mean=float(np.mean(exposed_in)))],
        details={"training_s": round(train_s, 2), "testing_s": round(test_s, 3),
                 "false_discovery_proportion_mean": float(np.mean(fdp)),
                 "power_per_target": [round(p, 4) for p in power]},
        notes="every model the target once, the other M-1 its references; records a "
              "target did not train on are true nulls (a discovery among them is false)")


if __name__ == "__main__":
    main()
