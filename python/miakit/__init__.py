"""miakit: membership-privacy auditing for machine-learning models.

Submodules
----------
signals       membership signals from logits (scaled confidence, hinge, loss, ...)
lira          the Likelihood Ratio Attack: fit, score, leave-one-out; Hellinger distance
              and shadow models needed per example
rmia          the Robust Membership Inference Attack: score, leave-one-out, tuning a
thresholds    threshold attacks (loss, confidence, hinge, ...), the calibrated attack,
              the Bayes and maximum-accuracy-threshold baselines
metrics       ROC, AUC, TPR at low FPR with confidence intervals
ks            Kolmogorov-Smirnov tests in batches, source assignment, the leakage test
shadow        shadow-model experiments: keep matrices, batched training, run store
memorization  Feldman-Zhang memorization and influence (top-k)
neighbors     exact k nearest distances (distance to closest record)
generative    membership risk of generative models (MACE): optimal membership advantage,
              individual risk, DOMIAS
gradients     per-example gradient norms (closed form, ghost norms, vmap fallback)
partial_layers membership attacks on a model's kept lower layers with a retrained head
curvature     input-loss curvature (Hutchinson, finite differences, zero order)
capacity      explicit memorization capacity: bits to remember which n of N items
              are positive, and the n a parameter budget can hold
bounds        DP limits on attacks, DP-SGD accounting (dp-accounting), empirical epsilon
powerlaw      the shots/classes power law: OLS fit (statsmodels) and prediction
studies       the studies behind ``miakit budget``, ``sweep``, ``leakage``, ``generative``
              and ``dp-curvature`` (modules budget, sweep, ks_leakage, generative,
              dp_curvature: each a Config, run() and a result with summary, plot, write)
vulnerability per-example vulnerability tables and plots
exposure      which training records one model exposes: membership p-values, BH q-values
audit         the audit job: attacks on a shadow run, report.json and report.html, ROC
              plot, summary (a package: attacks, evaluation, per_example, run, text, page)
datasets      small embedded datasets (scikit-learn digits, Gaussian mixtures)
"""

import miakit._C as _C
from miakit import (
    audit,
    bounds,
    capacity,
    curvature,
    datasets,
    exposure,
    generative,
    gradients,
    ks,
    lira,
    memorization,
    metrics,
    neighbors,
    partial_layers,
    powerlaw,
    rmia,
    shadow,
    signals,
    studies,
    thresholds,
    vulnerability,
)
from miakit._backend import backend_info

# The version is defined once, in pyproject.toml; the build compiles it into the
# extension (SKBUILD_PROJECT_VERSION), and the package reads it from there.
__version__: str = _C.backend_info()["version"]
__all__ = [
    "audit",
    "backend_info",
    "bounds",
    "capacity",
    "curvature",
    "datasets",
    "exposure",
    "generative",
    "gradients",
    "ks",
    "lira",
    "memorization",
    "metrics",
    "neighbors",
    "partial_layers",
    "powerlaw",
    "rmia",
    "shadow",
    "signals",
    "studies",
    "thresholds",
    "vulnerability",
    "__version__",
]
