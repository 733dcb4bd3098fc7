"""miakit: membership-privacy auditing for machine-learning models.

Submodules
----------
signals   membership signals from logits (scaled confidence, hinge, loss, ...)
lira      the Likelihood Ratio Attack: fit, score, leave-one-out
metrics   ROC, AUC, TPR at low FPR with confidence intervals
shadow    shadow-model experiments
"""

from miakit import lira, metrics, shadow, signals
from miakit._backend import backend_info

__version__ = "0.1.0"
__all__ = ["backend_info", "lira", "metrics", "shadow", "signals", "__version__"]
