"""Leave-one-out LiRA on scores without any membership signal: AUC must be 0.5.

Scores are i.i.d. standard normal, so no attack can tell members from non-members.
Leaving out the target only (``references="all"``) reads below chance at small M;
balanced references (the default) read 0.5 within noise. Run:

    python docs/examples/null_leakage.py [N]
"""

import sys
import warnings

import numpy as np

import miakit as mk

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
# one reference per side (M = 4) has zero spread, clamped to min_std: expected here
warnings.simplefilter("ignore", mk.lira.ClampedSpreadWarning)
SETTINGS = {
    "online, per_example": dict(mode="online", variance="per_example"),
    "online, global": dict(mode="online", variance="global"),
    "offline": dict(mode="offline", variance="global"),
}

print(f"AUC of leave-one-out LiRA (median centre) on i.i.d. normal scores, N = {N:,}")
print(f"{'M':>3}  {'references':<10}  " + "  ".join(f"{k:>19}" for k in SETTINGS))
for m in (4, 8, 16, 64):
    keep = mk.shadow.balanced_keep(m, N, seed=m)
    scores = np.random.default_rng(m).normal(size=(m, N, 1))
    for refs in ("all", "balanced"):
        aucs = [mk.metrics.auc(mk.lira.leave_one_out(scores, keep, references=refs, **kw),
                               keep) for kw in SETTINGS.values()]
        print(f"{m:>3}  {refs:<10}  " + "  ".join(f"{a:>19.3f}" for a in aucs))
