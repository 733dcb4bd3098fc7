"""Every option declared once: its default, allowed values, range and help.

A study's or a command's options are the fields of one dataclass (its *config*). Each
field is made with :func:`option`, which stores a :class:`Param` (kind, choices, range,
help) in the field's metadata beside its default. That declaration is read by

- the validation: :func:`validate` checks every field of a config against its
  :class:`Param` and raises a ``ValueError``/``TypeError`` naming the option, what was
  expected and what was received (a config calls it in ``__post_init__``);
- the command line: ``miakit.cli`` turns each field into an ``--option`` with the same
  default, choices and help (:func:`cli_flag`, :func:`params`);
- the docs: :func:`table` renders the options as the Markdown table the docs pages hold.

scikit-learn's ``_parameter_constraints`` is the model: a default in the CLI that copies
a library constant cannot drift from it, because there is only one.

Examples
--------
>>> from dataclasses import dataclass
>>> from miakit._params import option, validate
>>> @dataclass
... class Config:
...     draws: int = option(20, "random subsets per budget", low=1)
...     rank_by: str = option("gap", "how examples are ranked", choices=("gap", "loss"))
...     def __post_init__(self):
...         validate(self)
>>> Config(draws=5).draws
5
>>> Config(draws=0)
Traceback (most recent call last):
...
ValueError: draws: expected an int >= 1, got 0
>>> Config(rank_by="auc")
Traceback (most recent call last):
...
ValueError: rank_by: expected one of ['gap', 'loss'], got 'auc'
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any

from miakit._validation import SEED_EXPECTED, check_choice, check_int, check_real, check_seed

__all__ = ["Param", "option", "params", "validate", "cli_flag", "table"]


@dataclasses.dataclass(frozen=True)
class Param:
    """The declaration of one option (stored in its dataclass field's metadata).

    ``kind`` is the type of one value (``int``, ``float``, ``str``, ``bool``, or ``None``
    for a value the validation leaves to the code that uses it, such as a path or an
    array); ``many`` marks a sequence of such values; ``optional`` lets the value be
    None. ``low``/``high`` bound numbers (``open_low``/``open_high``: strictly), and
    ``choices`` lists the allowed strings; ``seed`` marks a random seed (an int in
    ``[0, 2**64)``, :func:`miakit._validation.check_seed`). ``flag`` is the
    command-line name when it is not ``--`` + the field's name with ``-`` for ``_``;
    ``cli=False`` keeps an option off the command line (arrays, callbacks).
    """

    help: str
    kind: type | None = None
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    many: bool = False
    optional: bool = False
    seed: bool = False
    flag: str | None = None
    cli: bool = True

    def check(self, value: Any, name: str) -> Any:
        """``value`` checked against this declaration (sequences become tuples)."""
        if value is None:
            if self.optional:
                return None
            raise TypeError(f"{name}: expected {self.expected()}, got None")
        if self.many:
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not \
                    hasattr(value, "__iter__"):
                raise TypeError(f"{name}: expected a sequence of {self._one()}, got "
                                f"{type(value).__name__}")
            values = tuple(value)
            if not values:
                raise ValueError(f"{name}: expected at least one value, got none")
            for v in values:
                # a 2-D array or a nested list gives rows, not values: refuse them here, where
                # the message can say what one value should be
                if getattr(v, "ndim", 0) or isinstance(v, (list, tuple)):
                    raise TypeError(f"{name}: expected a flat sequence of {self._one()}, got "
                                    f"a nested {type(v).__name__}")
            return tuple(self._check_one(v, name) for v in values)
        return self._check_one(value, name)

    def _check_one(self, value: Any, name: str) -> Any:
        if self.choices is not None:
            return check_choice(value, name, list(self.choices))
        if self.seed:
            return check_seed(value, name)
        if self.kind is bool:
            if not isinstance(value, (bool, numbers.Integral)) or value not in (0, 1):
                raise TypeError(f"{name}: expected a bool, got {value!r}")
            return bool(value)
        if self.kind is int:
            lo = None if self.low is None else math.ceil(self.low + (1 if self.open_low else 0))
            hi = None if self.high is None else math.floor(self.high - (1 if self.open_high
                                                                         else 0))
            return check_int(value, name, lo, hi)
        if self.kind is float:
            return check_real(value, name, self.low, self.high, open_lo=self.open_low,
                              open_hi=self.open_high)
        if self.kind is str and not isinstance(value, str):
            raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
        return value

    def _one(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.seed:
            return SEED_EXPECTED
        if self.kind in (int, float):
            word = "an int" if self.kind is int else "a float"
            lo = "" if self.low is None else f"{'>' if self.open_low else '>='} {self.low:g}"
            hi = "" if self.high is None else f"{'<' if self.open_high else '<='} " \
                                              f"{self.high:g}"
            return word + (" " + " and ".join(s for s in (lo, hi) if s) if lo or hi else "")
        if self.kind is bool:
            return "a bool"
        if self.kind is str:
            return "a string"
        return "a value"

    def expected(self) -> str:
        """The allowed values, in words (the docs' table and the error messages)."""
        one = self._one()
        text = f"one or more of: {one}" if self.many else one
        return text + (", or None" if self.optional else "")


def option(default: Any, help: str, *, kind: type | None = None, **declaration: Any) -> Any:
    """A dataclass field with this default and its :class:`Param` declaration.

    ``kind`` defaults to the default's type (a sequence default: its first element's
    type, with ``many=True``); list defaults are stored as tuples so configs stay
    immutable and hashable.

    Examples
    --------
    >>> import dataclasses
    >>> from miakit._params import option
    >>> f = option((0.1, 0.01), "FPR budgets", low=0, high=1, open_low=True)
    >>> f.default, f.metadata["param"].expected()
    ((0.1, 0.01), 'one or more of: a float > 0 and <= 1')
    """
    if isinstance(default, list):
        default = tuple(default)
    if kind is None and declaration.get("choices") is None:
        sample = default[0] if isinstance(default, tuple) and default else default
        if isinstance(sample, bool):
            kind = bool
        elif isinstance(sample, numbers.Integral):
            kind = int
        elif isinstance(sample, numbers.Real):
            kind = float
        elif isinstance(sample, str):
            kind = str
    if isinstance(default, tuple):
        declaration.setdefault("many", True)
    if default is None:
        declaration.setdefault("optional", True)
    if "choices" in declaration and declaration["choices"] is not None:
        declaration["choices"] = tuple(declaration["choices"])
    return dataclasses.field(default=default,
                             metadata={"param": Param(help, kind=kind, **declaration)})


def params(config: Any) -> dict[str, tuple[Param, Any]]:
    """``{field name: (Param, default)}`` of a config class or instance, in field order
    (fields made without :func:`option` are left out).

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> from miakit._params import option, params
    >>> @dataclass
    ... class C:
    ...     seed: int = option(0, "random seed", seed=True)
    >>> [(name, default) for name, (_, default) in params(C).items()]
    [('seed', 0)]
    """
    out = {}
    for f in dataclasses.fields(config):
        if "param" in f.metadata:
            out[f.name] = (f.metadata["param"], f.default)
    return out


def validate(config: Any) -> None:
    """Check every declared field of ``config`` in place (sequences become tuples,
    numbers their checked type); the first bad one raises, naming the option.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> from miakit._params import option, validate
    >>> @dataclass
    ... class C:
    ...     fprs: tuple = option((0.1,), "FPR budgets", low=0, high=1, open_low=True)
    >>> c = C(fprs=[0.01, 0.001]); validate(c); c.fprs
    (0.01, 0.001)
    """
    for name, (param, _) in params(config).items():
        object.__setattr__(config, name, param.check(getattr(config, name), name))


def cli_flag(name: str, param: Param) -> str:
    """The command-line flag of option ``name`` (``--n-models`` for ``n_models``).

    Examples
    --------
    >>> from miakit._params import Param, cli_flag
    >>> cli_flag("n_models", Param("models per cell")), cli_flag("fprs", Param("", flag="--fpr"))
    ('--n-models', '--fpr')
    """
    return param.flag or "--" + name.replace("_", "-")


def table(config: Any) -> str:
    """The options of a config as a Markdown table: option, flag, default, allowed values
    and help (what the docs pages hold).

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> from miakit._params import option, table
    >>> @dataclass
    ... class C:
    ...     draws: int = option(20, "random subsets per budget", low=1)
    >>> print(table(C))
    | option | flag | default | allowed | meaning |
    |---|---|---|---|---|
    | `draws` | `--draws` | `20` | an int >= 1 | random subsets per budget |
    """
    rows = ["| option | flag | default | allowed | meaning |", "|---|---|---|---|---|"]
    for name, (param, default) in params(config).items():
        flag = f"`{cli_flag(name, param)}`" if param.cli else "(API only)"
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        rows.append(f"| `{name}` | {flag} | `{shown}` | {param.expected()} | {param.help} |")
    return "\n".join(rows)
