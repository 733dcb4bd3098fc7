"""The fuzzer's machinery: argument kinds and the bad values each is given, the oracle that
judges one call, and the runner that executes a batch of calls in a child process.

A *case* is one public callable with a valid baseline call (:class:`Case`); each of its
arguments is declared with a *kind* (:class:`Arg`), and each kind has a menu of mutations
(:func:`mutations`): a new value for that one argument and what the call must then do:

- ``SAME``: the same values in another representation (float32, a non-contiguous view,
  big-endian, a list, a torch tensor, ...). The call returns what the float64 numpy call
  returns on those values (within the precision of the representation), or refuses the
  representation with a ``ValueError``/``TypeError`` that names the argument.
- ``REFUSE``: an invalid value (NaN, a string, an out-of-range label, a level of 95, a
  shape that disagrees with another argument, ...). The call raises ``ValueError`` or
  ``TypeError`` (``MemoryError`` for an absurd size) whose message names the argument.
- ``EITHER``: a value that may be legitimate (an infinity, an empty array, an extra
  dimension): a refusal must name the argument, and a result must not hold a NaN where
  the baseline's result has none.

Any other exception, a hang or a dead interpreter is a failure. The runner
(``python tests/_fuzz_core.py GROUP ...``) prints one JSON line as each call starts and
one as it ends, so that the parent (tests/test_fuzz.py) can name the call that killed the
interpreter and start a new child for the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import pathlib
import random
import re
import signal
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

try:
    import torch
except ImportError:  # the torch mutations are left out
    torch = None

SAME, REFUSE, EITHER = "same", "refuse", "either"
CALL_TIMEOUT_S = 30.0
# The child's address space: an absurd size must fail as a MemoryError (or a size check),
# not take the machine's memory.
MEMORY_LIMIT = 6 * 2**30


class CallTimeout(BaseException):
    """A call ran past CALL_TIMEOUT_S (a BaseException: no library handler catches it)."""


@dataclasses.dataclass(frozen=True)
class Lazy:
    """An argument value made at call time (a fresh output folder, a copy of a run)."""

    make: Callable[[], Any]


@dataclasses.dataclass(frozen=True)
class Arg:
    """One argument of a case: its baseline value and how to mutate it.

    ``kind`` picks the menu of mutations (see :func:`mutations`). ``tied`` names the
    arguments whose shape must agree with this one (a shape mismatch may be reported under
    either name). ``names``: other words that name this argument in a message (a CLI flag,
    a field). ``allow``: mutation labels that are legitimate for this argument (judged as
    EITHER instead of REFUSE); ``skip``: labels not to try.
    """

    value: Any
    kind: str = "opaque"
    optional: bool = False
    tied: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    allow: frozenset[str] = frozenset()
    skip: frozenset[str] = frozenset()
    lo: float = 0.0  # the smallest valid count ("count" kind)
    axis: int = -1  # the axis "shorter" cuts: the one this argument shares with ``tied``
    nan_ok: frozenset[str] = frozenset()  # mutations whose NaN result is documented


@dataclasses.dataclass(frozen=True)
class Case:
    """A public callable, called as ``fn(**kwargs)`` with the resolved ``args``."""

    name: str
    fn: Callable[..., Any]
    args: Mapping[str, Arg]
    group: str = "core"
    ignore: tuple[str, ...] = ()  # result leaves not compared (timestamps, paths)
    files: bool = False  # the call reads or writes files: OSError naming the path is fine


@dataclasses.dataclass(frozen=True)
class Mutation:
    label: str
    make: Callable[[Any], Any]
    expect: str
    ref: Callable[[Any], Any] | None = None  # SAME: the float64 numpy equivalent input
    rtol: float = 1e-9


# -- representations -------------------------------------------------------------------

def _noncontig(x: Any) -> Any:
    a = np.asarray(x)
    if a.ndim == 0:
        return a
    doubled = np.repeat(a, 2, axis=-1)
    return doubled[..., ::2]


def _bigendian(x: Any) -> Any:
    a = np.asarray(x)
    return a.astype(a.dtype.newbyteorder(">"))


def _fortran(x: Any) -> Any:
    return np.asfortranarray(np.asarray(x))


def _readonly(x: Any) -> Any:
    a = np.array(x)
    a.flags.writeable = False
    return a


def _as64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _shorter(x: Any, axis: int = -1) -> Any:
    """One element fewer along ``axis`` (by default the last: the examples' axis of most
    arrays)."""
    a = np.asarray(x)
    if a.ndim == 0 or a.shape[axis] == 0:
        return a.reshape(-1)[:0]
    return np.delete(a, -1, axis=axis)


def _empty(x: Any) -> Any:
    a = np.asarray(x)
    shape = (0,) + a.shape[1:] if a.ndim else (0,)
    return np.zeros(shape, dtype=a.dtype)


def _set_first(x: Any, value: Any, dtype: Any = None) -> Any:
    a = np.array(x, dtype=dtype if dtype is not None else np.asarray(x).dtype)
    if a.ndim == 0:
        return np.asarray(value, dtype=a.dtype)
    a.reshape(-1)[0] = value
    return a


def _torch(x: Any, dtype: Any = None) -> Any:
    t = torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    return t if dtype is None else t.to(dtype)


def _like(baseline: Any, values: np.ndarray) -> Any:
    """The float64 ``values`` as the baseline's kind of array: a torch tensor for a
    tensor baseline (functions of torch models take only tensors), else numpy."""
    return torch.from_numpy(values) if torch is not None and torch.is_tensor(baseline) \
        else values


def _torch_conj(x: Any) -> Any:
    t = torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float64)))
    return t.to(torch.complex128).conj()


def mutations(arg: Arg) -> list[Mutation]:
    """The menu of mutations of one argument, by its kind."""
    kind = arg.kind
    menu: list[Mutation] = []

    def add(label, make, expect, ref=None, rtol=1e-9):
        if label in arg.skip:
            return
        if label in arg.allow and expect == REFUSE:
            expect = EITHER
        menu.append(Mutation(label, make, expect, ref, rtol))

    def none_and_junk():
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
        add("str", lambda v: "abc", REFUSE)
        add("object()", lambda v: object(), REFUSE)

    if kind in ("floats", "probs_array"):
        add("float32", lambda v: np.asarray(v, np.float32), SAME,
            lambda v: np.asarray(v, np.float32).astype(np.float64), 1e-4)
        add("float16", lambda v: np.asarray(v, np.float16), SAME,
            lambda v: np.asarray(v, np.float16).astype(np.float64), 2e-3)
        add("non-contiguous", _noncontig, SAME)
        add("big-endian", _bigendian, SAME)
        add("fortran", _fortran, SAME)
        add("read-only", _readonly, SAME)
        # a list of float32 values becomes float64: equal to float32 precision
        add("list", lambda v: np.asarray(v).tolist(), SAME, _as64, 1e-4)
        add("object array", lambda v: np.asarray(v).astype(object), SAME, _as64, 1e-4)
        add("int", lambda v: np.round(np.asarray(v) * 4).astype(np.int64), SAME,
            lambda v: np.round(np.asarray(v) * 4).astype(np.float64), 1e-9)
        if torch is not None:
            add("torch float64", _torch, SAME)
            add("torch float32", lambda v: _torch(v, torch.float32), SAME,
                lambda v: _like(v, np.asarray(v, np.float32).astype(np.float64)), 1e-4)
            add("torch bfloat16", lambda v: _torch(v, torch.bfloat16), SAME,
                lambda v: _like(v, _torch(v, torch.bfloat16).double().numpy()), 2e-2)
            add("torch conj", _torch_conj, REFUSE)
        add("NaN", lambda v: _set_first(v, np.nan, np.float64), REFUSE)
        add("+inf", lambda v: _set_first(v, np.inf, np.float64), EITHER)
        add("-inf", lambda v: _set_first(v, -np.inf, np.float64), EITHER)
        add("huge 1e300", lambda v: _set_first(v, 1e300, np.float64), EITHER)
        add("complex", lambda v: np.asarray(v, np.float64) + 0j, REFUSE)
        add("strings", lambda v: np.asarray(v).astype(str), REFUSE)
        add("bool", lambda v: np.asarray(v) > np.median(v), EITHER)
        add("0-d", lambda v: np.asarray(v).reshape(-1)[0], EITHER)
        add("extra dim", lambda v: np.asarray(v)[..., None], EITHER)
        add("empty", _empty, EITHER)
        add("shorter", lambda v: _shorter(v, arg.axis), REFUSE if arg.tied else EITHER)
        none_and_junk()
        if kind == "probs_array":
            add("negative", lambda v: _set_first(v, -0.5, np.float64), REFUSE)
            add("above 1", lambda v: _set_first(v, 1.5, np.float64), REFUSE)
    elif kind == "bools":
        add("int 0/1", lambda v: np.asarray(v).astype(np.int64), SAME)
        add("float 0/1", lambda v: np.asarray(v).astype(np.float64), SAME)
        add("list", lambda v: np.asarray(v).tolist(), SAME)
        add("non-contiguous", _noncontig, SAME)
        add("fortran", _fortran, SAME)
        if torch is not None:
            add("torch bool", lambda v: _torch(np.asarray(v, bool)), SAME)
        add("value 2", lambda v: _set_first(np.asarray(v).astype(np.int64), 2), REFUSE)
        add("value 0.5", lambda v: _set_first(np.asarray(v).astype(np.float64), 0.5), REFUSE)
        add("NaN", lambda v: _set_first(np.asarray(v).astype(np.float64), np.nan), REFUSE)
        add("strings", lambda v: np.asarray(v).astype(str), REFUSE)
        add("all True", lambda v: np.ones(np.shape(v), bool), EITHER)
        add("all False", lambda v: np.zeros(np.shape(v), bool), EITHER)
        add("empty", _empty, EITHER)
        add("shorter", lambda v: _shorter(v, arg.axis), REFUSE if arg.tied else EITHER)
        add("extra dim", lambda v: np.asarray(v)[..., None], EITHER)
        none_and_junk()
    elif kind == "labels":
        add("int32", lambda v: np.asarray(v).astype(np.int32), SAME)
        add("uint8", lambda v: np.asarray(v).astype(np.uint8), SAME)
        add("list", lambda v: np.asarray(v).tolist(), SAME)
        add("non-contiguous", _noncontig, SAME)
        add("big-endian", _bigendian, SAME)
        if torch is not None:
            add("torch int64", _torch, SAME)
        add("n_classes", lambda v: _set_first(v, int(np.max(v)) + 100), REFUSE)
        add("-1", lambda v: _set_first(v, -1), REFUSE)
        add("2**40", lambda v: _set_first(np.asarray(v, np.int64), 2**40), REFUSE)
        add("float whole", lambda v: np.asarray(v).astype(np.float64), EITHER)
        add("float 0.5", lambda v: np.asarray(v) + 0.5, REFUSE)
        add("strings", lambda v: np.asarray(v).astype(str), REFUSE)
        add("shorter", lambda v: _shorter(v, arg.axis), REFUSE if arg.tied else EITHER)
        add("2-D", lambda v: np.asarray(v)[:, None], REFUSE)
        add("empty", _empty, EITHER)
        none_and_junk()
    elif kind == "prob":  # a number strictly inside (0, 1): a level, an alpha, an FPR
        add("numpy float64", lambda v: np.float64(v), SAME)
        # numpy computes in float32 with a float32 scalar: equal to float32 precision
        add("numpy float32", lambda v: np.float32(v), SAME,
            lambda v: float(np.float32(v)), 1e-6)
        add("0-d array", lambda v: np.asarray(v), SAME)
        for label, bad in (("0", 0.0), ("1", 1.0), ("-0.5", -0.5), ("1.5", 1.5), ("95", 95),
                           ("NaN", math.nan), ("inf", math.inf), ("1e-300", 1e-300)):
            add(label, lambda v, b=bad: b, EITHER if label == "1e-300" else REFUSE)
        add("'0.5'", lambda v: "0.5", REFUSE)
        add("True", lambda v: True, REFUSE)
        add("complex", lambda v: 0.5 + 0.5j, REFUSE)
        add("list", lambda v: [v, v], REFUSE)
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
    elif kind == "probs":  # a sequence of numbers in (0, 1)
        add("tuple", lambda v: tuple(v), SAME)
        add("array", lambda v: np.asarray(v), SAME)
        add("scalar", lambda v: list(v)[0], EITHER)
        for label, bad in (("[0]", [0.0]), ("[1]", [1.0]), ("[-0.1]", [-0.1]),
                           ("[NaN]", [math.nan]), ("[inf]", [math.inf]), ("[2]", [2.0])):
            add(label, lambda v, b=bad: b, REFUSE)
        add("[]", lambda v: [], EITHER)
        add("'0.1'", lambda v: "0.1", REFUSE)
        add("['0.1']", lambda v: ["0.1"], REFUSE)
        add("[1j]", lambda v: [0.1j], REFUSE)
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
    elif kind in ("count", "seed"):
        lo = 0 if kind == "seed" else int(arg.lo)
        add("numpy int64", lambda v: np.int64(v), SAME)
        add("numpy int32", lambda v: np.int32(v), SAME)
        add("below minimum", lambda v: lo - 1, REFUSE)
        add("-1", lambda v: -1, REFUSE if lo >= 0 else EITHER)
        add("2.5", lambda v: 2.5, REFUSE)
        add("float whole", lambda v: float(v), REFUSE)
        add("'3'", lambda v: "3", REFUSE)
        add("True", lambda v: True, REFUSE)
        add("NaN", lambda v: math.nan, REFUSE)
        add("2**40", lambda v: 2**40, EITHER)
        add("2**70", lambda v: 2**70, EITHER)
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
    elif kind == "real":  # a finite number, positive unless lo says otherwise
        add("numpy float64", lambda v: np.float64(v), SAME)
        add("NaN", lambda v: math.nan, REFUSE)
        add("inf", lambda v: math.inf, EITHER)
        add("-1", lambda v: -1.0, REFUSE if arg.lo >= 0 else EITHER)
        add("0", lambda v: 0.0, EITHER)
        add("'1'", lambda v: "1", REFUSE)
        add("complex", lambda v: 1j, REFUSE)
        add("True", lambda v: True, EITHER)
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
    elif kind == "choice":
        add("unknown", lambda v: "no-such-choice", REFUSE)
        add("empty string", lambda v: "", REFUSE)
        add("upper case", lambda v: v.upper() if isinstance(v, str) else v, EITHER)
        add("int", lambda v: 3, REFUSE)
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
        add("list", lambda v: [v], EITHER)
    elif kind == "choices":  # a sequence of names
        add("tuple", lambda v: tuple(v), SAME)
        add("unknown", lambda v: ["no-such-choice"], REFUSE)
        add("one string", lambda v: list(v)[0], EITHER)
        add("[]", lambda v: [], EITHER)
        add("[3]", lambda v: [3], REFUSE)
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
    elif kind in ("ints", "indices"):  # integer arrays: counts, sizes; example indices
        add("int32", lambda v: np.asarray(v).astype(np.int32), SAME)
        add("list", lambda v: np.asarray(v).tolist(), SAME)
        add("non-contiguous", _noncontig, SAME)
        if torch is not None:
            add("torch int64", _torch, SAME)
        add("-1", lambda v: _set_first(v, -1), REFUSE)
        add("2**40", lambda v: _set_first(np.asarray(v, np.int64), 2**40),
            REFUSE if kind == "indices" else EITHER)
        add("float whole", lambda v: np.asarray(v).astype(np.float64), EITHER)
        add("float 0.5", lambda v: np.asarray(v) + 0.5, REFUSE)
        add("NaN", lambda v: _set_first(np.asarray(v).astype(np.float64), np.nan), REFUSE)
        add("strings", lambda v: np.asarray(v).astype(str), REFUSE)
        add("bools", lambda v: np.ones(np.shape(v), bool), EITHER)
        add("2-D", lambda v: np.asarray(v)[:, None], EITHER)
        add("empty", _empty, EITHER)
        add("shorter", lambda v: _shorter(v, arg.axis), REFUSE if arg.tied else EITHER)
        none_and_junk()
    elif kind == "reals":  # a sequence of finite numbers (epsilons, quantiles)
        add("tuple", lambda v: tuple(v), SAME)
        add("[NaN]", lambda v: [math.nan], REFUSE)
        add("[inf]", lambda v: [math.inf], REFUSE)
        add("[-1]", lambda v: [-1.0], REFUSE if arg.lo >= 0 else EITHER)
        add("['1']", lambda v: ["1"], REFUSE)
        add("[]", lambda v: [], EITHER)
        add("str", lambda v: "abc", REFUSE)
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
    elif kind in ("jsonfile", "npyfile"):  # an input file of JSON or of one .npy array
        add("str", lambda v: str(v), SAME)
        add("missing", lambda v: pathlib.Path(str(v) + ".missing"), REFUSE)
        add("a folder", lambda v: _a_folder(v), REFUSE)
        add("0 bytes", lambda v: _a_file(v, b""), REFUSE)
        add("garbage", lambda v: _a_file(v, b"\x93NUMPY garbage, not what it says"), REFUSE)
        if kind == "jsonfile":
            add("a JSON list", lambda v: _a_file(v, b"[1, 2]"), REFUSE)
            add("truncated", lambda v: _a_file(v, pathlib.Path(v).read_bytes()[:20]), REFUSE)
        else:
            add("an .npz", lambda v: _an_npz(v), REFUSE)
            add("an .npz named .npy", lambda v: _an_npz(v, named_npy=True), REFUSE)
            add("object array", lambda v: _an_object_npy(v), REFUSE)
        add("int", lambda v: 3, REFUSE)
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
    elif kind == "mapping":
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
        add("list", lambda v: [1, 2], REFUSE)
        add("str", lambda v: "abc", REFUSE)
        add("{}", lambda v: {}, EITHER)
    elif kind == "text":
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
        add("int", lambda v: 3, REFUSE)
        add("empty string", lambda v: "", EITHER)
        add("garbage", lambda v: "#:/\\\x00", EITHER)
    elif kind == "path":  # an input file or folder
        add("missing", lambda v: pathlib.Path(str(v) + ".missing"), REFUSE)
        add("str", lambda v: str(v), SAME)
        add("int", lambda v: 3, REFUSE)
        add("None", lambda v: None, EITHER if arg.optional else REFUSE)
    elif kind == "outdir":  # a folder the call writes (a fresh one each call)
        add("str", lambda v: str(v), EITHER)
        add("a file", lambda v: _a_file(v), REFUSE)
        add("under a file", lambda v: _a_file(v) / "sub", REFUSE)
        add("int", lambda v: 3, REFUSE)
    elif kind == "opaque":
        pass
    else:
        raise ValueError(f"unknown argument kind {kind!r}")
    return menu


def _fresh_name(path: Any, suffix: str) -> pathlib.Path:
    p = pathlib.Path(str(path))
    _COUNTER[0] += 1
    return p.with_name(f"{p.stem}-{_COUNTER[0]}{suffix}{p.suffix}")


_COUNTER = [0]


def _a_file(path: Any, content: bytes = b"not a folder\n") -> pathlib.Path:
    p = _fresh_name(path, ".file")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content)
    return p


def _a_folder(path: Any) -> pathlib.Path:
    p = _fresh_name(path, ".dir")
    p.mkdir(parents=True)
    return p


def _an_npz(path: Any, named_npy: bool = False) -> pathlib.Path:
    """The array of ``path`` in an .npz archive (named .npy when ``named_npy``)."""
    p = _fresh_name(path, ".npz")
    q = p if named_npy else p.with_suffix(".npz")
    with open(q, "wb") as f:  # a file object: savez adds no suffix
        np.savez(f, np.load(path))
    return q


def _an_object_npy(path: Any) -> pathlib.Path:
    p = _fresh_name(path, ".obj")
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return p


# -- results ----------------------------------------------------------------------------

_TMP_ROOT: list[str] = []


def leaves(obj: Any, path: str = "r", out: dict | None = None, depth: int = 0) -> dict:
    """The values a result holds, flattened to ``{path: array or string}``: arrays and
    numbers as float/int/bool numpy arrays, strings as they are, other objects by type."""
    out = {} if out is None else out
    if depth > 8:
        out[path] = "<deep>"
        return out
    if torch is not None and isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.is_complex():
            t = t.resolve_conj()
        obj = (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()
    if isinstance(obj, (np.ndarray, np.generic, bool, int, float, complex)):
        a = np.asarray(obj)
        out[path] = a if a.dtype.kind in "biufcMm" else a.astype(str)
    elif isinstance(obj, (str, bytes, os.PathLike)):
        s = os.fspath(obj) if isinstance(obj, os.PathLike) else str(obj)
        if _TMP_ROOT and _TMP_ROOT[0] in s:
            s = "<path>"
        out[path] = s
    elif obj is None:
        out[path] = "None"
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            if not f.name.startswith("_"):
                leaves(getattr(obj, f.name), f"{path}.{f.name}", out, depth + 1)
    elif isinstance(obj, Mapping):
        for k in list(obj)[:2000]:
            leaves(obj[k], f"{path}[{k!r}]", out, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj[:2000]):
            leaves(v, f"{path}[{i}]", out, depth + 1)
    else:
        out[path] = f"<{type(obj).__name__}>"
    return out


def _numeric(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind in "biufc"


def compare(got: dict, want: dict, rtol: float, ignore: tuple[str, ...]) -> str | None:
    """None when two results' leaves agree, else what differs."""
    ignore = (*ignore, "timing_s")  # wall-clock times differ from call to call
    keys = {k for k in set(got) | set(want) if not any(s in k for s in ignore)}
    for k in sorted(keys):
        if k not in got or k not in want:
            return f"{k} present in only one result"
        a, b = got[k], want[k]
        if _numeric(a) and _numeric(b):
            if a.shape != b.shape:
                return f"{k}: shape {a.shape} != {b.shape}"
            a64, b64 = a.astype(np.complex128), b.astype(np.complex128)
            if not np.allclose(a64, b64, rtol=rtol, atol=rtol * 1e-2, equal_nan=True):
                bad = ~np.isclose(a64, b64, rtol=rtol, atol=rtol * 1e-2, equal_nan=True)
                i = np.flatnonzero(bad.ravel())[0]
                return (f"{k}: {a.ravel()[i]!r} != {b.ravel()[i]!r} "
                        f"({int(bad.sum())} of {bad.size} differ)")
        elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                    and a.shape == b.shape and (a == b).all()):
                return f"{k}: {_short(a)} != {_short(b)}"
        elif a != b:
            return f"{k}: {_short(a)} != {_short(b)}"
    return None


def new_nans(got: dict, baseline: dict) -> str | None:
    """A leaf holding a NaN where the baseline's holds none: a silent garbage result."""
    for k, a in got.items():
        if _numeric(a) and a.dtype.kind in "fc" and np.isnan(a).any():
            b = baseline.get(k)
            if not (_numeric(b) and b.dtype.kind in "fc" and np.isnan(b).any()):
                return f"{k} holds NaN ({int(np.isnan(a).sum())} of {a.size})"
    return None


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) < 120 else s[:117] + "..."


# -- the oracle -------------------------------------------------------------------------

def resolve(value: Any) -> Any:
    if isinstance(value, Lazy):
        return value.make()
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def call(case: Case, overrides: Mapping[str, Any] | None = None) -> Any:
    kwargs = {k: resolve(a.value) for k, a in case.args.items()}
    kwargs.update(overrides or {})
    return case.fn(**kwargs)


@contextlib.contextmanager
def time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise CallTimeout(f"no result after {seconds:g} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def names_ok(message: str, words: set[str]) -> bool:
    """Whether ``message`` names one of ``words`` as a whole token ("k" in "k: expected",
    not in "keep")."""
    return any(w and re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", message)
               for w in words)


def judge(case: Case, param: str, mutation: Mutation, baseline: dict) -> tuple[str, str]:
    """Run one mutated call: ``("ok", outcome)`` or ``("fail", what went wrong)``."""
    arg = case.args[param]
    words = {param, *arg.names}
    if mutation.label in ("shorter", "empty", "extra dim", "0-d", "2-D"):
        words |= set(arg.tied)
    value = resolve(arg.value)
    if value is None and mutation.expect == SAME:
        return "ok", "not applicable (the baseline passes None)"
    try:
        mutated = mutation.make(value)
    except Exception as exc:  # noqa: BLE001 - the fuzzer's own mistake, reported as such
        if value is None:
            return "ok", "not applicable (the baseline passes None)"
        return "fail", f"the fuzzer could not make the value: {exc!r}"
    try:
        with time_limit(CALL_TIMEOUT_S), warnings_quiet():
            result = call(case, {param: mutated})
    except CallTimeout as exc:
        return "fail", f"hang: {exc}"
    except MemoryError as exc:
        if names_ok(str(exc), words):
            return "ok", "refused (MemoryError)"
        return "fail", f"MemoryError not naming {param}: {_first_line(exc)}"
    except (ValueError, TypeError) as exc:
        if names_ok(str(exc), words):
            return "ok", "refused"
        return "fail", f"{type(exc).__name__} not naming {param}: {_first_line(exc)}"
    except ImportError as exc:  # an optional package that a legitimate input needs
        if names_ok(str(exc), words):
            return "ok", "refused (ImportError)"
        return "fail", f"ImportError not naming {param}: {_first_line(exc)}"
    except OSError as exc:
        path_words = words | {str(mutated), str(value)} if case.files else set()
        if case.files and names_ok(str(exc), path_words):
            return "ok", "refused (OSError)"
        return "fail", f"{type(exc).__name__}: {_first_line(exc)}"
    except Exception as exc:  # noqa: BLE001 - every other exception type is a finding
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return "fail", (f"{type(exc).__name__}: {_first_line(exc)} "
                        f"(at {pathlib.Path(where.filename).name}:{where.lineno})")
    try:
        got = leaves(result)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be read back
        return "fail", (f"returned a {type(result).__name__} that cannot be read: "
                        f"{type(exc).__name__}: {_first_line(exc)}")
    if mutation.expect == REFUSE:
        return "fail", "accepted an invalid value" + _nan_note(got)
    if mutation.expect == SAME:
        if mutation.ref is None:
            want = baseline
        else:
            try:
                with time_limit(CALL_TIMEOUT_S), warnings_quiet():
                    want = leaves(call(case, {param: mutation.ref(value)}))
            except Exception as exc:  # noqa: BLE001
                return "ok", f"reference call failed ({type(exc).__name__}); not compared"
        diff = compare(got, want, mutation.rtol, case.ignore)
        if diff:
            return "fail", f"a different result: {diff}"
        return "ok", "same"
    nan = new_nans(got, baseline)
    if nan and mutation.label not in arg.nan_ok:
        return "fail", f"silent NaN: {nan}"
    return "ok", "accepted"


def _nan_note(got: dict) -> str:
    nan = new_nans(got, {})
    return f" (and returned NaN: {nan})" if nan else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]


@contextlib.contextmanager
def warnings_quiet():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- the plan: which calls a bounded run makes ------------------------------------------

def plan(cases: list[Case], budget: int, seed: int,
         pinned: list[tuple[str, str, str]] = ()) -> list[tuple[str, str, str]]:
    """``(case, argument, mutation)`` triples: every case's mutations in a seeded order,
    interleaved case by case, the first ``budget`` of them; a case's baseline is ``("",
    "")`` and comes first. The ``pinned`` triples (calls that once failed) run in every
    plan, after the budget's."""
    per_case = []
    for case in cases:
        triples = [(case.name, p, m.label) for p, a in case.args.items()
                   for m in mutations(a)]
        random.Random(f"{seed}:{case.name}").shuffle(triples)
        per_case.append([(case.name, "", "")] + triples)
    out: list[tuple[str, str, str]] = []
    depth = 0
    while len(out) < budget and any(depth < len(t) for t in per_case):
        for triples in per_case:
            if depth < len(triples) and len(out) < budget:
                out.append(triples[depth])
        depth += 1
    chosen = set(out)
    return out + [t for t in pinned if t not in chosen]


def full_size(cases: list[Case]) -> int:
    return sum(1 + sum(len(mutations(a)) for a in c.args.values()) for c in cases)


# -- the child process ------------------------------------------------------------------

def _emit(record: dict) -> None:
    sys.__stdout__.write(json.dumps(record) + "\n")
    sys.__stdout__.flush()


def run_library(group: str, budget: int, seed: int, start: int, tmp: str) -> None:
    import _fuzz_cases
    _TMP_ROOT.append(tmp)
    cases = _fuzz_cases.cases(tmp)
    by_name = {c.name: c for c in cases}
    selected = [t for t in plan(cases, budget, seed, _fuzz_cases.PINNED)
                if by_name[t[0]].group == group]
    baselines: dict[str, dict | None] = {}
    for i, (name, param, label) in enumerate(selected):
        if i < start:
            continue
        case = by_name[name]
        _emit({"i": i, "start": f"{name}({param}={label})" if param else f"{name}(baseline)"})
        if name not in baselines:
            try:
                with time_limit(CALL_TIMEOUT_S * 2), warnings_quiet():
                    baselines[name] = leaves(call(case))
            except BaseException as exc:  # noqa: BLE001 - a broken baseline is a failure
                baselines[name] = None
                _emit({"i": i, "fail": f"the baseline call failed: {type(exc).__name__}: "
                                       f"{_first_line(exc)}"})
                continue
        if not param:
            _emit({"i": i, "ok": "baseline"})
            continue
        if baselines[name] is None:
            _emit({"i": i, "ok": "skipped (no baseline)"})
            continue
        mutation = next(m for m in mutations(case.args[param]) if m.label == label)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            verdict, text = judge(case, param, mutation, baselines[name])
        _emit({"i": i, verdict: text, "expect": mutation.expect})
    _emit({"done": len(selected)})


def _limit_memory() -> None:
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("group")
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--tmp", required=True)
    a = p.parse_args(argv)
    import faulthandler
    faulthandler.enable()  # a crash in compiled code prints the Python stack it came from
    _limit_memory()
    if a.group == "cli":
        import _fuzz_cli
        _fuzz_cli.run(a.budget, a.seed, a.start, a.tmp, _emit)
    else:
        run_library(a.group, a.budget, a.seed, a.start, a.tmp)


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import _fuzz_core  # the module the cases import, not a second copy named __main__
    _fuzz_core.main()
