"""The audit: attack every shadow model of a run and report how much membership leaks.

Every model of the run is the target once, attacked with the other models as references
(leave-one-out, balanced: see ``docs/methods/leave-one-out.md``) by every attack of
``miakit.audit.attacks`` (LiRA and RMIA online and offline, the calibrated loss attack,
the threshold attacks and, for runs of heads, LiRA on the input curvature), beside the
accuracy baselines. Members are the ``keep`` entries of the target, so each attack is
judged on M x N (target, example) pairs. For each attack the report gives the AUC (with a standard
error clustered by example) and the TPR at FPR 1e-1, 1e-2 and 1e-3 with the achieved FPR,
the counts behind both rates and cluster-robust intervals as wide as the examples that
carry each rate allow (``mk.metrics.tpr_at_fpr``); the verdict tests every attack and FPR
by comparing each example's members with its own non-members (:func:`verdict`,
``mk.metrics.leakage_test``).

The report's per-example vulnerability table (:func:`vulnerability`) joins LiRA's
per-example TPR with memorization, gradient norm, input curvature and the Hellinger
distance. The gradient norm and curvature are exact for runs of heads with stored
parameters, a logit-gradient proxy (and no curvature) for runs of logits only; the
table's meta names the case (:data:`GRAD_NORM_DEFINITION`, :data:`CURVATURE_DEFINITION`).

Every name below is importable from ``miakit.audit``; each lives in one module:

- ``miakit.audit.attacks``: the attacks: :func:`run_attacks`, :func:`iter_attacks` (one
  at a time, from a logits array or the run's streamed signals), :func:`curvature_attack`,
  :func:`baselines`, :data:`ATTACKS`, :data:`RMIA_A`;
- ``miakit.audit.per_example``: the per-example table: :func:`vulnerability`,
  :func:`head_quantities`, :func:`head_matrices`, :data:`GRAD_NORM_DEFINITION`,
  :data:`CURVATURE_DEFINITION`;
- ``miakit.audit.evaluation``: the numbers: :func:`evaluate` (metrics, leakage tests and
  empirical epsilon of each attack), :func:`verdict`, :func:`strongest`,
  :func:`privacy_summary`, :data:`VERDICT_METHOD`, :data:`DEFAULT_FPRS`,
  :data:`DP_DELTA`;
- ``miakit.audit.run``: the driver :func:`audit` (a run in; an :class:`AuditReport`,
  ``report.json`` and the files beside it out), :func:`references_info`,
  :func:`load_report`;
- ``miakit.audit.target``: the audit of one target model against a run's models as
  references, and the records it exposes: :func:`audit_target`;
- ``miakit.audit.report``: the report's declared shape: :class:`AuditReport` (with
  ``to_json``/``from_json``), :class:`AttackResult` and the typed records inside;
- ``miakit.audit.figures``: the ROC figure, :func:`plot_roc`;
- ``miakit.audit.text``: the report in words: :func:`summary_sections`, :func:`summarize`;
- ``miakit.audit.page``: the report as one HTML page: :func:`to_html`, :func:`write_html`.

Imports point one way: ``run`` uses all the others, ``page`` uses ``text``, and
``per_example``, ``evaluation`` and ``text`` use ``attacks`` (its attack names and signal
source); below them lie the primitives (``mk.lira``, ``mk.rmia``, ``mk.metrics``, ...)
and ``mk.vulnerability`` (the vulnerability table and figures), none of which imports the audit.
"""

from __future__ import annotations

from miakit.audit.attacks import (
    ATTACKS,
    RMIA_A,
    baselines,
    curvature_attack,
    iter_attacks,
    run_attacks,
)
from miakit.audit.evaluation import (
    DEFAULT_FPRS,
    DP_DELTA,
    VERDICT_METHOD,
    evaluate,
    privacy_summary,
    strongest,
    verdict,
)
from miakit.audit.figures import plot_roc
from miakit.audit.page import to_html, write_html
from miakit.audit.per_example import (
    CURVATURE_DEFINITION,
    GRAD_NORM_DEFINITION,
    head_matrices,
    head_quantities,
    vulnerability,
)
from miakit.audit.report import AttackResult, AuditReport
from miakit.audit.run import audit, load_report, references_info
from miakit.audit.target import OFFLINE_ATTACKS, TARGET_ATTACKS, audit_target
from miakit.audit.text import summarize, summary_sections

__all__ = ["audit", "audit_target", "TARGET_ATTACKS", "OFFLINE_ATTACKS",
           "AuditReport", "AttackResult", "run_attacks", "iter_attacks",
           "curvature_attack", "head_matrices",
           "baselines", "strongest", "privacy_summary",
           "vulnerability", "head_quantities",
           "summarize", "summary_sections", "plot_roc", "to_html", "write_html",
           "load_report", "references_info", "evaluate", "verdict", "ATTACKS",
           "DEFAULT_FPRS", "RMIA_A", "DP_DELTA", "VERDICT_METHOD",
           "GRAD_NORM_DEFINITION",
           "CURVATURE_DEFINITION"]
