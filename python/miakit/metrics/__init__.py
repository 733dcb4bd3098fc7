"""ROC curves and low-FPR metrics (docs/methods/metrics.md).

Scores are oriented so that larger means "member". An operating point predicts member
for every score at or above a threshold; ties move together. Inputs of any matching
shape are flattened (leave-one-out scores ``[K, N]`` are judged with ``keep[targets]``).

Every name below is importable from ``miakit.metrics``; each lives in one module:

- ``miakit.metrics.ranking``: :class:`RankedScores` (one attack's scores sorted once,
  with every quantity below read from that order) and :class:`RankWorkspace`;
- ``miakit.metrics.from_scores``: the same metrics in one call from scores and
  membership: :func:`roc`, :func:`auc`, :func:`auc_ci`, :func:`tpr_at_fpr`,
  :func:`clustered_roc`, :func:`leakage_test`;
- ``miakit.metrics.records``: their results :class:`TprAtFpr` and :class:`AucCI`;
- ``miakit.metrics.membership_test``: the leakage test's result :class:`LeakagePoint`
  and its null distributions;
- ``miakit.metrics.intervals``: intervals of proportions: :func:`clopper_pearson`,
  :func:`clustered_proportion_ci` (:class:`ClusteredProportion`),
  :func:`korn_graubard`, :func:`effective_dof`, :func:`unseen_share_floor`.

Imports point one way: ``from_scores`` uses ``ranking``, which uses ``records``,
``membership_test`` and ``intervals``; those three use none of the others.
"""

from miakit.metrics.from_scores import (
    auc,
    auc_ci,
    clustered_roc,
    leakage_test,
    roc,
    tpr_at_fpr,
)
from miakit.metrics.intervals import (
    ClusteredProportion,
    clopper_pearson,
    clustered_proportion_ci,
    effective_dof,
    korn_graubard,
    unseen_share_floor,
)
from miakit.metrics.membership_test import LeakagePoint
from miakit.metrics.ranking import RankedScores, RankWorkspace
from miakit.metrics.records import AucCI, TprAtFpr

__all__ = ["RankedScores", "RankWorkspace", "roc", "auc", "auc_ci", "AucCI", "tpr_at_fpr",
           "TprAtFpr",
           "clopper_pearson",
           "clustered_proportion_ci", "ClusteredProportion", "korn_graubard", "clustered_roc",
           "effective_dof", "unseen_share_floor",
           "leakage_test", "LeakagePoint"]
