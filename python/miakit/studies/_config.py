"""What every study's ``run`` does with its options: one config, with overrides."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from miakit._params import Param

C = TypeVar("C")


def resolve(cls: type[C], config: C | None, overrides: dict[str, Any]) -> C:
    """``config`` (default: ``cls()``) with ``overrides`` replacing its fields, validated
    again; an override that is not a field is a ``TypeError`` naming the fields."""
    if config is None:
        config = cls()
    elif not isinstance(config, cls):
        raise TypeError(f"config: expected a {cls.__name__}, got {type(config).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"{', '.join(unknown)}: not an option of {cls.__name__}; its "
                        f"options are {', '.join(names)}")
    return dataclasses.replace(config, **overrides) if overrides else config  # type: ignore


@dataclasses.dataclass(frozen=True)
class MaybeEmpty(Param):
    """A sequence option that may be empty (no ranked groups, no Gaussian mixture)."""

    def check(self, value: Any, name: str) -> Any:
        if value is not None and not isinstance(value, (str, bytes)) and \
                hasattr(value, "__len__") and len(value) == 0:
            return ()
        return super().check(value, name)

    def expected(self) -> str:
        return "none, or " + super().expected()


def maybe_empty(default: tuple, help: str, **declaration: Any) -> Any:
    """A dataclass field like :func:`miakit._params.option` for a sequence that may be
    empty."""
    from miakit._params import option

    field = option(default, help, **declaration)
    param = field.metadata["param"]
    return dataclasses.field(default=field.default, metadata={
        "param": MaybeEmpty(**{f.name: getattr(param, f.name)
                               for f in dataclasses.fields(param)})})
