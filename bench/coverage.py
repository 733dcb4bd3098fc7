"""Coverage of the audit's intervals, by simulation (docs/methods/metrics.md).

Leave-one-out scores ``[M, N]`` are simulated with a known, heterogeneous, heavy-tailed
per-example leak: example n has a difficulty ``mu_n``, a spread ``sigma_n`` and a leak
``delta_n`` (zero for most examples, large for a few); model m scores it
``mu_n + delta_n keep[m, n] + sigma_n eps`` with the models' keep matrix balanced as the
audit's. The examples are drawn from a fixed population of ``POP`` parameter draws, so
the true TPR and FPR at any threshold are exact averages over that population, and the
true AUC is the expected Mann-Whitney statistic of the pooled scores.

For every shape in the grid and every repeat, the audit's metrics are computed the way
the audit computes them (``RankedScores.by_columns``: clustered by example) and each
95% interval is checked against the truth at the threshold the data chose: the TPR and
FPR at FPR budgets 1e-1, 1e-2, 1e-3, and the AUC. The verdict's power at the larger
shapes is reported beside it (share of repeats whose leakage test finds the leak).

    python bench/coverage.py                  # the full grid, 1,000 repeats per shape
    python bench/coverage.py --repeats 200    # quicker

Writes bench/results/coverage_cpu.json (bench/README.md describes the format): one row
per scenario and shape, with no timing. bench/results/coverage_cpu_baseline.json holds
the same simulation run on the earlier intervals and leakage test of commit 21fd65f.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, row, write_results  # noqa: E402

import miakit as mk  # noqa: E402

FPRS = (1e-1, 1e-2, 1e-3)
GRID = ((128, 300), (64, 500), (64, 600), (16, 1000), (64, 1000), (64, 2000))
POP = 100_000


@dataclass(frozen=True)
class Scenario:
    """A population of examples: who leaks, and how much."""

    name: str
    leak_share: float  # share of examples with a leak
    leak_scale: float  # leaks are leak_scale * Pareto(shape) (heavy tail)
    leak_shape: float
    spread: float      # sigma_n = exp(spread * N(0, 1))
    difficulty: float = 1.0  # mu_n = difficulty * N(0, 1)

    def population(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        mu = self.difficulty * rng.normal(size=POP)
        sigma = np.exp(self.spread * rng.normal(size=POP))
        leaky = rng.random(POP) < self.leak_share
        delta = np.where(leaky, self.leak_scale * (1.0 + rng.pareto(self.leak_shape, POP)),
                         0.0)
        return mu, sigma, delta


SCENARIOS = (
    Scenario("heavy-tailed leak (5% of examples)", 0.05, 1.5, 1.5, 0.3),
    Scenario("heavy-tailed leak (1% of examples)", 0.01, 3.0, 1.2, 0.5),
    Scenario("rare large leaks, equal difficulty", 0.02, 4.0, 2.0, 0.0, 0.0),
    Scenario("no leak", 0.0, 0.0, 1.0, 0.3),
)


class Truth:
    """Exact population rates at any threshold, by interpolation on a fine grid."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, delta: np.ndarray, seed: int):
        self.grid = np.linspace(-8.0, 40.0, 2401)
        self.fpr = self._tail(mu, sigma)
        self.tpr = self._tail(mu + delta, sigma)
        rng = np.random.default_rng(seed)
        # AUC between different examples, by Monte Carlo over pairs of the population
        # (error ~1e-4), and within one example
        i, j = rng.integers(0, POP, 4_000_000), rng.integers(0, POP, 4_000_000)
        self.auc_cross = float(special.ndtr(
            (mu[i] + delta[i] - mu[j]) / np.hypot(sigma[i], sigma[j])).mean())
        self.auc_same = float(special.ndtr(delta / (np.sqrt(2.0) * sigma)).mean())

    def _tail(self, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
        out = np.empty(self.grid.size)
        for k in range(0, self.grid.size, 200):
            t = self.grid[k:k + 200, None]
            out[k:k + 200] = special.ndtr((loc[None] - t) / scale[None]).mean(axis=1)
        return out

    def rate(self, curve: np.ndarray, t: float) -> float:
        if not np.isfinite(t):
            return 0.0
        return float(np.interp(t, self.grid, curve))

    def auc(self, n: int) -> float:
        # pooled pairs: a 1/n share of member/non-member pairs comes from one example
        return (1.0 - 1.0 / n) * self.auc_cross + self.auc_same / n


def simulate(scn: Scenario, truth: Truth, pop: tuple, m: int, n: int, repeats: int,
             seed: int, alpha: float = 0.05) -> dict:
    mu, sigma, delta = pop
    rng = np.random.default_rng(seed)
    keep = mk.shadow.balanced_keep(m, n, seed=seed)
    hit = {f"{q}@{f:g}": 0 for q in ("tpr", "fpr") for f in FPRS}
    hit_auc, leaks, below, above = 0, 0, {}, {}
    resolvable = {f"{f:g}": 0 for f in FPRS}
    for _ in range(repeats):
        idx = rng.integers(0, POP, n)
        s = mu[idx] + delta[idx] * keep + sigma[idx] * rng.normal(size=(m, n))
        r = mk.metrics.RankedScores.by_columns(s, keep)
        for f in FPRS:
            p = r.tpr_at_fpr(f)
            resolvable[f"{f:g}"] += p.resolvable
            for q, est_ci, curve in (("tpr", p.ci, truth.tpr), ("fpr", p.fpr_ci, truth.fpr)):
                true = truth.rate(curve, p.threshold)
                key = f"{q}@{f:g}"
                if est_ci[0] <= true <= est_ci[1]:
                    hit[key] += 1
                elif true < est_ci[0]:
                    below[key] = below.get(key, 0) + 1
                else:
                    above[key] = above.get(key, 0) + 1
        a = r.auc_ci()
        hit_auc += a.ci[0] <= truth.auc(n) <= a.ci[1]
        # the verdict's family: every FPR of one attack
        leaks += any(t.leak for t in r.leakage_test(FPRS, alpha))
    cov = {k: v / repeats for k, v in hit.items()}
    cov["auc"] = hit_auc / repeats
    return {"scenario": scn.name, "models": m, "examples": n, "repeats": repeats,
            "coverage": cov, "truth_above": {k: v / repeats for k, v in above.items()},
            "truth_below": {k: v / repeats for k, v in below.items()},
            "resolvable": {k: v / repeats for k, v in resolvable.items()},
            "leak_found": leaks / repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1000)
    ap.add_argument("--scenarios", type=int, nargs="*", default=None,
                    help="indices into the scenario list (default: all)")
    ap.add_argument("--shapes", type=str, default=None,
                    help="comma-separated MxN shapes (default: the grid)")
    ap.add_argument("--seed", type=int, default=0, help="added to every draw's seed")
    ap.add_argument("--out", type=Path, default=RESULTS / "coverage_cpu.json")
    args = ap.parse_args()
    shapes = GRID if args.shapes is None else tuple(
        tuple(int(v) for v in s.split("x")) for s in args.shapes.split(","))
    picked = args.scenarios if args.scenarios else range(len(SCENARIOS))
    rows, t0 = [], time.perf_counter()
    for k in picked:
        scn = SCENARIOS[k]
        pop = scn.population(100 + k)
        truth = Truth(*pop, seed=200 + k)
        for m, n in shapes:
            row = simulate(scn, truth, pop, m, n, args.repeats,
                           seed=1000 * k + m + n + 100_000 * args.seed)
            rows.append(row)
            cov = row["coverage"]
            worst = min(cov.values())
            print(f"{scn.name[:36]:36s} {m:4d} x {n:5d}  min {worst:.3f}  "
                  + "  ".join(f"{q} {v:.3f}" for q, v in cov.items())
                  + f"  leak found {row['leak_found']:.2f}", flush=True)
    worst = min(min(r["coverage"].values()) for r in rows)
    print(f"smallest coverage over the grid: {worst:.3f} (nominal 0.95); "
          f"{time.perf_counter() - t0:.0f} s")
    path = write_results(
        args.out.stem, path=args.out, benchmark="coverage", device="cpu",
        config={"repeats": args.repeats, "scenarios": [SCENARIOS[k].name for k in picked],
                "shapes": [list(s) for s in shapes], "seed": args.seed},
        results=coverage_rows(rows),
        details={"nominal": 0.95, "fprs": list(FPRS), "smallest_coverage": worst,
                 "wall_s": time.perf_counter() - t0},
        notes="No timing: each row is the share of repeats whose 95% intervals hold the "
              "truth (coverage), per quantity, for one scenario and shape (models x "
              "examples).")
    print(f"wrote {path}")


def coverage_rows(rows: list[dict]) -> list[dict]:
    """The record's rows: one per scenario and shape, named by both."""
    return [row(f"{r['scenario']}, {r['models']} x {r['examples']}", **r) for r in rows]


if __name__ == "__main__":
    main()
