"""A config's options on the command line, from their declarations (:mod:`miakit._params`).

Each field of a config dataclass becomes one ``--option`` (:func:`miakit._params.cli_flag`)
with the declared default, choices and help, so that a command's defaults are the
library's; :func:`config_from` builds the config back from the parsed arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from miakit._params import cli_flag, params

C = TypeVar("C")


def _shown(default: Any) -> str:
    return " ".join(map(str, default)) if isinstance(default, tuple) else str(default)


def add_options(parser: Any, config_cls: type, *, exclude: Iterable[str] = (),
                unset: Iterable[str] = (),
                overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Add an ``--option`` per command-line field of ``config_cls`` to ``parser`` (a parser
    or an argument group), its ``dest`` the field's name.

    ``unset`` options parse to None when not given (their help still states the config's
    default), so that a command can tell whether they were given; ``overrides`` replaces
    ``add_argument`` keywords of an option (``metavar``, ``type``, ``help``, ...).

    Examples
    --------
    >>> import argparse
    >>> from miakit.cli._options import add_options
    >>> from miakit.studies.dp_curvature import DpCurvatureConfig
    >>> p = argparse.ArgumentParser()
    >>> add_options(p, DpCurvatureConfig)
    >>> args = p.parse_args(["--epsilon", "2", "8", "--no-plot"])
    >>> args.epsilons, args.models, args.plot
    ([2.0, 8.0], 32, False)
    """
    skip, unset, overrides = set(exclude), set(unset), overrides or {}
    for name, (param, default) in params(config_cls).items():
        if not param.cli or name in skip:
            continue
        flag = cli_flag(name, param)
        kw: dict[str, Any] = {"dest": name}
        if param.kind is bool:
            # an option on by default is turned off by its flag (--no-plot)
            kw["action"] = "store_false" if default else "store_true"
            kw["help"] = ("do not " if default else "") + param.help
        else:
            if param.choices is None:  # argparse names a choice's values itself
                kw["metavar"] = flag.lstrip("-").upper().replace("-", "_")
            kw["default"] = None if name in unset else (
                list(default) if isinstance(default, tuple) else default)
            if param.many:
                # a sequence that may be empty (MaybeEmpty) takes zero or more values
                kw["nargs"] = "*" if param.expected().startswith("none, or") else "+"
            if param.choices is not None:
                kw["choices"] = list(param.choices)
            elif param.kind in (int, float, str):
                kw["type"] = param.kind
            kw["help"] = param.help + ("" if default is None else
                                       f". Default: {_shown(default)}")
        kw.update(overrides.get(name, {}))
        kw["help"] = kw["help"].replace("%", "%%")  # argparse formats help with %
        parser.add_argument(flag, **kw)


def config_from(args: argparse.Namespace, config_cls: type[C], **fixed: Any) -> C:
    """The config of the parsed ``args``: each field from the argument of the same name
    (None, or absent: the config's default), ``fixed`` fields as given.

    Examples
    --------
    >>> import argparse
    >>> from miakit.cli._options import add_options, config_from
    >>> from miakit.studies.ks_leakage import KsLeakageConfig
    >>> p = argparse.ArgumentParser()
    >>> add_options(p, KsLeakageConfig)
    >>> config_from(p.parse_args(["--seeds", "4"]), KsLeakageConfig, dataset="d").seeds
    4
    """
    values = dict(fixed)
    for name in params(config_cls):
        if name not in values and getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    try:
        return config_cls(**values)
    except (ValueError, TypeError) as exc:
        # the config names its fields; the user typed flags (--pca for pca)
        flags = {name: cli_flag(name, param) for name, (param, _) in params(config_cls).items()
                 if param.cli and name not in fixed}
        exc.args = (flag_names(str(exc), flags),)
        raise


def flag_names(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with the option names it starts with (``"pca: ..."``, ``"a, b: ..."``)
    written as their command-line flags, when every one of them has a flag.

    Examples
    --------
    >>> from miakit.cli._options import flag_names
    >>> flag_names("pca: expected an int >= 0, got -1", {"pca": "--pca"})
    '--pca: expected an int >= 0, got -1'
    >>> flag_names("keep: expected booleans", {"pca": "--pca"})
    'keep: expected booleans'
    """
    head, sep, rest = message.partition(": ")
    names = head.split(", ")
    if not sep or not all(name in flags for name in names):
        return message
    return ", ".join(flags[name] for name in names) + sep + rest


def progress_flag(args: argparse.Namespace) -> bool | None:
    """``--quiet``: no progress; ``--progress``: bars always; neither: a bar on a terminal,
    plain lines otherwise (:mod:`miakit._progress`)."""
    if getattr(args, "quiet", False):
        return False
    return True if getattr(args, "progress", False) else None


def add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress (by default: a bar on a terminal, plain lines on stderr "
                        "otherwise)")
    p.add_argument("--progress", action="store_true",
                   help="progress bars even when stderr is not a terminal")
