"""The options of the audit (``miakit audit``), each declared once.

:class:`AuditConfig`'s fields are :func:`miakit.audit.audit`'s options, with the same
names; their defaults are the audit's constants (:data:`~miakit.audit.DEFAULT_FPRS`,
:data:`~miakit.audit.DP_DELTA`), and the command line's ``--fpr``, ``--variance``, ...
are made from these declarations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from miakit._options import REFERENCES
from miakit._params import option, validate
from miakit.audit.attacks import ATTACKS
from miakit.audit.evaluation import DEFAULT_FPRS, DP_DELTA

__all__ = ["AuditConfig"]

_OPEN: dict[str, Any] = dict(low=0.0, high=1.0, open_low=True, open_high=True)


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """The audit's options.

    Examples
    --------
    >>> import dataclasses
    >>> from miakit.audit.options import AuditConfig
    >>> AuditConfig(fprs=[0.05]).fprs, AuditConfig().variance
    ((0.05,), 'auto')
    >>> sorted(dataclasses.asdict(AuditConfig()))[:3]
    ['alpha', 'attacks', 'dp_delta']
    """

    fprs: tuple[float, ...] = option(DEFAULT_FPRS, "false-positive budgets of the TPR table",
                                     flag="--fpr", **_OPEN)
    variance: str = option("auto", "LiRA spread: per example, or pooled ('auto': pooled "
                           "below 64 models)", choices=("auto", "per_example", "global"))
    references: str = option(
        "balanced", "leave-one-out references: 'balanced' leaves out the target and one "
        "model from the other side of every example, so the reference counts do not depend "
        "on the target's membership (unbiased); 'all' leaves out the target only (biased "
        "against members with few models; for comparison)", choices=tuple(REFERENCES))
    level: float = option(0.95, "confidence level of the intervals (Clopper-Pearson, "
                          "cluster-robust over examples)",
                          # below 1/2 an interval would not hold its own point estimate
                          low=0.5, high=1.0, open_high=True)
    alpha: float = option(0.05, "family-wise error rate of the leakage verdict (a test over "
                          "every attack and FPR)", **_OPEN)
    attacks: tuple[str, ...] | None = option(
        None, "attacks to run (default: all; lira_curvature needs a run of heads)",
        choices=tuple(ATTACKS), many=True)
    dp_epsilon: float | None = option(
        None, "the (EPS, dp_delta)-DP guarantee the models claim: roc.png shows the TPR it "
        "allows, and the report says whether every attack's empirical epsilon lower bound "
        "is consistent with it", kind=float, low=0.0, open_low=True)
    dp_delta: float = option(DP_DELTA, "delta of the DP claim and of the empirical epsilon "
                             "bounds", low=0.0, high=1.0, open_high=True)
    plot: bool = option(True, "write roc.png", flag="--no-plot")

    def __post_init__(self) -> None:
        validate(self)

    def kwargs(self) -> dict[str, Any]:
        """The options as keywords of :func:`miakit.audit.audit`.

        Examples
        --------
        >>> from miakit.audit.options import AuditConfig
        >>> AuditConfig(alpha=0.01).kwargs()["alpha"]
        0.01
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
