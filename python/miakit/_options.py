"""The named options that cross into the compiled kernels, mapped in one place.

The kernels' option switches (which signal, LiRA's centre, variance, mode, offline test
and leave-one-out references, the K-S sides) are bound as Python ``enum.Enum`` classes of
``miakit._C`` (csrc/bindings_options.cpp), and a compiled function accepts only a member
of its argument's class: a plain integer, a string, or a member of another class is a
``TypeError`` that names the argument, so no out-of-range code can reach a kernel.

The public functions take the names users know (``center="median"``); each table below
maps those names onto the members, and :func:`kernel_option` checks a name against its
table (with :func:`miakit._validation.check_choice`, ``ValueError`` naming the argument)
and returns the member to pass on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from miakit import _C
from miakit._validation import check_choice

__all__ = [
    "SIGNALS",
    "CENTERS",
    "VARIANCES",
    "MODES",
    "OFFLINE",
    "REFERENCES",
    "KS_SIDES",
    "kernel_option",
]

# Membership signals computed from logits (csrc/include/miakit/signals.h).
SIGNALS: Mapping[str, enum.Enum] = {
    "scaled_confidence": _C.Signal.scaled_confidence,
    "hinge": _C.Signal.hinge,
    "loss": _C.Signal.loss,
    "confidence": _C.Signal.confidence,
    "max_confidence": _C.Signal.max_confidence,
    "correct": _C.Signal.correct,
    "grad_norm": _C.Signal.grad_norm,
}

# LiRA (csrc/include/miakit/lira_math.h; docs/methods/lira.md).
CENTERS: Mapping[str, enum.Enum] = {"median": _C.Center.median, "mean": _C.Center.mean}
VARIANCES: Mapping[str, enum.Enum] = {
    "per_example": _C.Variance.per_example,
    "global": _C.Variance.global_,  # "global" is a Python keyword
}
MODES: Mapping[str, enum.Enum] = {"online": _C.Mode.online, "offline": _C.Mode.offline}
OFFLINE: Mapping[str, enum.Enum] = {
    "one_sided": _C.Offline.one_sided,
    "two_sided": _C.Offline.two_sided,
}
REFERENCES: Mapping[str, enum.Enum] = {
    "balanced": _C.References.balanced,
    "all": _C.References.all,
}

# Which K-S extremes must be exact (csrc/kernels_attack.h): both, those an alternative
# uses ("greater": the max, "less": the min), or the one of larger magnitude.
KS_SIDES: Mapping[str, enum.Enum] = {
    "both": _C.KsSides.both,
    "greater": _C.KsSides.max,
    "less": _C.KsSides.min,
    "two-sided": _C.KsSides.larger,
}


def kernel_option(value: str, name: str, table: Mapping[str, enum.Enum]) -> enum.Enum:
    """The ``_C`` enum member for the option ``value`` of argument ``name``; ``ValueError``
    (naming the argument and the choices) when ``value`` is not one of the table's names.

    Examples
    --------
    >>> from miakit._options import CENTERS, kernel_option
    >>> kernel_option("mean", "center", CENTERS)
    <Center.mean: 1>
    >>> kernel_option(1, "center", CENTERS)
    Traceback (most recent call last):
    ...
    ValueError: center: expected one of ['median', 'mean'], got 1
    """
    return table[check_choice(value, name, list(table))]
