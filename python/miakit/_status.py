"""The compiled kernels' status counts turned into exceptions, in one place.

Every kernel returns a status: a mapping of counts (``{"nonfinite": 2, "bad_label": 0}``)
of the input rows or values it refused. :func:`raise_for_status` reads a caller's checks
in order and raises a ``ValueError`` for the first non-zero count; :data:`MESSAGES` holds
the wording the checks share (each message names the argument, what was expected and what
was received), and :func:`message` fills one in for an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from miakit import _arrays as ar

__all__ = ["MESSAGES", "message", "nonfinite_culprit", "raise_for_status"]

# The common messages; ``{count}`` is the kernel's count, the other fields the caller's.
MESSAGES: Mapping[str, str] = {
    # values (scores, probabilities, features) counted one by one
    "nonfinite": "{arg}: expected finite values, got {count} NaN or inf",
    # values the kernel reads in float32 (overflow there counts too)
    "nonfinite_float32": "{arg}: expected values finite in float32, got {count} NaN or inf",
    # logits rows (the signal kernels count rows, not values)
    "nonfinite_rows": "{arg}: expected finite values, got NaN or inf in {count} rows",
    # label rows outside the classes
    "bad_label": "{arg}: expected class indices in [0, {n_classes}), got {count} rows outside",
}

# A check's message: a template with ``{count}`` (str.format), or a function of the count
# for messages that must look at the inputs (which one holds the NaN).
Check = str | Callable[[int], str]


def message(kind: str, arg: str, **fields: Any) -> str:
    """The :data:`MESSAGES` template ``kind`` for argument ``arg``, with ``{count}`` left
    for :func:`raise_for_status` to fill.

    Examples
    --------
    >>> from miakit._status import message
    >>> message("bad_label", "labels", n_classes=3)
    'labels: expected class indices in [0, 3), got {count} rows outside'
    """
    return MESSAGES[kind].format(arg=arg, count="{count}", **fields)


def nonfinite_culprit(arrays: Mapping[str, Any], otherwise: str) -> str:
    """The message naming the first of ``arrays`` (name -> numpy array or torch tensor)
    that holds a NaN or an infinity, for kernels that count non-finite results without
    saying which input caused them; ``otherwise`` when every input is finite (the
    kernel's arithmetic overflowed).

    Examples
    --------
    >>> import numpy as np
    >>> from miakit._status import nonfinite_culprit
    >>> nonfinite_culprit({"a": np.ones(2), "b": np.array([np.inf])}, "overflow")
    'b: expected finite values, got NaN or inf'
    """
    for name, x in arrays.items():
        if not ar.is_all_finite(x):
            return f"{name}: expected finite values, got NaN or inf"
    return otherwise


def raise_for_status(status: Mapping[str, Any], checks: Mapping[str, Check]) -> None:
    """Raise ``ValueError`` for the first field of ``checks`` (in order) whose count in
    ``status`` is non-zero; its message is the check's template with ``{count}`` filled in
    (or the check called with the count).

    Parameters
    ----------
    status : mapping of str to int
        A compiled kernel's counts.
    checks : mapping of str to str or callable
        Field -> message, in the order the fields are to be checked.

    Examples
    --------
    >>> from miakit._status import message, raise_for_status
    >>> raise_for_status({"nonfinite": 0}, {"nonfinite": message("nonfinite", "scores")})
    >>> raise_for_status({"nonfinite": 2}, {"nonfinite": message("nonfinite", "scores")})
    Traceback (most recent call last):
    ...
    ValueError: scores: expected finite values, got 2 NaN or inf
    """
    for field, check in checks.items():
        count = int(status[field])
        if count:
            raise ValueError(check(count) if callable(check) else check.format(count=count))
