"""Bad command lines for every ``miakit`` command (the CLI part of tests/test_fuzz.py).

Each command has a small, valid base line; one option at a time is then given a value the
option's declaration refuses (below its range, NaN, a word for a number, an unknown
choice) or, for a file option, a file that is not what it should be (missing, 0 bytes, an
.npz for an .npy, a folder, a JSON list, truncated JSON). The options and their ranges are
read from the parser and the config declarations, so a new option is fuzzed too.

Every line must fail with exit status 2 (argparse's usage error naming the option) or 1
with ``miakit: error: ...`` naming the option or the file, no traceback, and leave every
file as it was: nothing written outside ``--out``, no half-created ``--out``, nothing
written into an existing run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import random
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from _fuzz_core import CallTimeout, names_ok, time_limit

LINE_TIMEOUT_S = 60.0


class CliWorld:
    """The files the base lines read: a small imported run, its arrays, a report, data
    for the studies and a module with a torch model for ``shadow --model``."""

    def __init__(self, tmp: str):
        import miakit as mk

        self.root = pathlib.Path(tmp)
        self.root.mkdir(parents=True, exist_ok=True)
        d = self.root / "inputs"
        d.mkdir(exist_ok=True)
        self.d = d
        rng = np.random.default_rng(0)
        m, n, c = 8, 40, 3
        keep = mk.shadow.balanced_keep(m, n, seed=0)
        labels = rng.integers(0, c, n)
        logits = rng.normal(size=(m, n, c)).astype(np.float32)
        logits[np.arange(m)[:, None], np.arange(n)[None], labels[None]] += 2.0 * keep
        np.save(d / "L.npy", logits)
        np.save(d / "K.npy", keep)
        np.save(d / "y.npy", labels)
        np.save(d / "S.npy", np.abs(logits[..., 0]))
        np.save(d / "T.npy", logits[0])
        np.save(d / "TK.npy", keep[0])
        self.run = d / "run"
        mk.shadow.import_logits(self.run, logits, keep, labels)
        self.report = d / "report.json"
        self.report.write_text(json.dumps({
            "run": {"n_models": 4, "n_examples": 10, "n_augmentations": 1, "n_classes": 2,
                    "config": {"head": "linear"}, "metadata": {}},
            "models": {"train_accuracy": 1.0, "test_accuracy": 0.9},
            "evaluation": {"confidence_level": 0.95}, "attacks": {}}))
        for name in ("synthetic", "train", "holdout"):
            np.save(d / f"{name}.npy", rng.normal(size=(40, 3)))
        self.folder = d / "folder"  # import --folder: NAME.npy and NAME.keep.npy per model
        self.folder.mkdir(exist_ok=True)
        for k in range(2):
            np.save(self.folder / f"model-{k}.npy", logits[k, :5])
            np.save(self.folder / f"model-{k}.keep.npy", keep[k, :5])
        np.save(d / "y5.npy", labels[:5])
        self.lira = d / "lira"  # import --lira-reference: the LiRA reference code's logs
        self.lira.mkdir(exist_ok=True)
        np.save(self.lira / "y_train.npy", labels[:5])
        for k in range(2):
            (self.lira / f"experiment-{k}_2" / "logits").mkdir(parents=True, exist_ok=True)
            np.save(self.lira / f"experiment-{k}_2" / "keep.npy", keep[k, :5])
            np.save(self.lira / f"experiment-{k}_2" / "logits" / "0000000100.npy",
                    logits[k, :5, None, None, :])
        np.save(d / "features.npy", rng.normal(size=(60, 4)).astype(np.float32))
        np.save(d / "labels.npy", np.repeat(np.arange(3), 20))
        np.savez(d / "data.npz", x=rng.normal(size=(20, 3)).astype(np.float32),
                 y=np.arange(20) % 2)
        mods = self.root / "modules"
        mods.mkdir(exist_ok=True)
        (mods / "fuzz_models.py").write_text(
            "import torch\n"
            "def make_model():\n    return torch.nn.Linear(3, 2)\n"
            "not_callable = 3\n")
        sys.path.insert(0, str(mods))
        self.cwd = self.root / "cwd"
        self.cwd.mkdir(exist_ok=True)
        (self.root / "outs").mkdir(exist_ok=True)
        self.n = 0

    def out(self) -> pathlib.Path:
        self.n += 1
        return self.root / "outs" / f"out-{self.n}"

    # -- bad files ------------------------------------------------------------------------
    def bad_file(self, kind: str, good: pathlib.Path) -> pathlib.Path:
        """A file named like ``good`` that is broken in the way ``kind`` says."""
        self.n += 1
        p = self.root / "bad" / f"{self.n}-{good.name}"
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "missing":
            return p
        if kind == "folder":
            p.mkdir()
        elif kind == "0 bytes":
            p.write_bytes(b"")
        elif kind == "garbage":
            p.write_bytes(b"\x93NUMPY\x01\x00 not an array header")
        elif kind == "text":
            p.write_text("hello\n")
        elif kind == "npz named .npy":
            with open(p, "wb") as f:
                np.savez(f, np.load(good))
        elif kind == ".npz":
            p = p.with_suffix(".npz")
            np.savez(p, np.load(good))
        elif kind == "object array":
            np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        elif kind == "wrong shape":
            np.save(p, np.zeros((2, 2, 2, 2, 2)))
        elif kind == "JSON list":
            p.write_text("[1, 2]")
        elif kind == "truncated JSON":
            p.write_text(good.read_text()[:25])
        elif kind == "run without run.json":
            import shutil
            shutil.copytree(good, p)
            (p / "run.json").unlink()
        elif kind == "run.json a list":
            import shutil
            shutil.copytree(good, p)
            (p / "run.json").write_text("[]")
        elif kind == "empty keep.npy":
            import shutil
            shutil.copytree(good, p)
            (p / "keep.npy").write_bytes(b"")
        else:
            raise ValueError(kind)
        return p


NPY_BAD = ("missing", "folder", "0 bytes", "garbage", "npz named .npy", ".npz",
           "object array", "wrong shape")
JSON_BAD = ("missing", "folder", "0 bytes", "JSON list", "truncated JSON", "text")
RUN_BAD = ("missing", "0 bytes", "run without run.json", "run.json a list",
           "empty keep.npy")


def commands(w: CliWorld) -> list[dict[str, Any]]:
    """The base lines: ``argv`` (OUT stands for a fresh --out), the configs that declare
    the options, and the kind of each file option."""
    i = w.d
    tiny_train = ["--dataset", "synthetic", "--n-examples", "40", "--models", "4",
                  "--epochs", "1", "--head", "linear"]
    from miakit.audit.options import AuditConfig
    from miakit.shadow import ModelRunConfig, TrainingConfig
    from miakit.studies.budget import BudgetConfig
    from miakit.studies.capacity import CapacityConfig
    from miakit.studies.dp_curvature import DpCurvatureConfig
    from miakit.studies.generative import GenerativeConfig
    from miakit.studies.ks_leakage import KsLeakageConfig
    from miakit.studies.partial_layers import PartialLayersConfig
    from miakit.studies.sweep import SweepConfig
    return [
        dict(name="audit --run", argv=["audit", "--run", w.run, "--out", "OUT", "--no-plot"],
             configs=[AuditConfig], files={"--run": RUN_BAD}, only=None,
             skip={"--target-logits", "--target-keep", "--fdr"} | _training_flags()),
        dict(name="audit --target-logits",
             argv=["audit", "--run", w.run, "--target-logits", i / "T.npy", "--target-keep",
                   i / "TK.npy", "--out", "OUT", "--no-plot"],
             configs=[AuditConfig], files={"--run": RUN_BAD, "--target-logits": NPY_BAD,
                                           "--target-keep": NPY_BAD},
             only={"--run", "--target-logits", "--target-keep", "--fdr", "--level",
                   "--alpha", "--fpr", "--variance"}),
        dict(name="audit (training)", argv=["audit", "--out", "OUT", "--no-plot", "--quiet",
                                            *tiny_train],
             configs=[TrainingConfig], files={}, only=_training_flags()),
        dict(name="report", argv=["report", w.report, "--html", "OUT.html"],
             configs=[], files={"report": JSON_BAD}, only={"report"}),
        dict(name="shadow", argv=["shadow", "--out", "OUT", "--quiet", *tiny_train],
             configs=[TrainingConfig], files={},
             skip={"--model", "--data", "--train-fn", "--optimizer", "--augment", "--views",
                   "--eval-batch-size", "--ray"}),
        dict(name="shadow --model",
             argv=["shadow", "--out", "OUT", "--quiet", "--model", "fuzz_models:make_model",
                   "--data", i / "data.npz", "--models", "4", "--epochs", "1"],
             configs=[ModelRunConfig], files={"--data": NPY_BAD + ("text",)},
             specs={"--model", "--train-fn"},
             only={"--model", "--data", "--train-fn", "--optimizer", "--augment", "--views",
                   "--eval-batch-size", "--batch-size", "--lr", "--weight-decay", "--models",
                   "--epochs", "--seed", "--threads"}),
        dict(name="import --logits",
             argv=["import", "--out", "OUT", "--logits", i / "L.npy", "--keep", i / "K.npy",
                   "--labels", i / "y.npy"],
             configs=[], files={"--logits": NPY_BAD, "--keep": NPY_BAD, "--labels": NPY_BAD},
             only={"--logits", "--keep", "--labels", "--logits-dtype"}),
        dict(name="import --signals",
             argv=["import", "--out", "OUT", "--signals", i / "S.npy", "--keep", i / "K.npy",
                   "--kind", "loss"],
             configs=[], files={"--signals": NPY_BAD}, only={"--signals", "--kind"}),
        dict(name="import --folder",
             argv=["import", "--out", "OUT", "--folder", w.folder, "--labels", i / "y5.npy"],
             configs=[], files={"--folder": ("missing", "0 bytes", "folder")},
             only={"--folder"}),
        dict(name="import --lira-reference",
             argv=["import", "--out", "OUT", "--lira-reference", w.lira],
             configs=[], files={"--lira-reference": ("missing", "0 bytes", "folder")},
             only={"--lira-reference"}),
        dict(name="budget", argv=["budget", "--run", w.run, "--out", "OUT", "--budgets", "2",
                                  "--draws", "1", "--targets", "1", "--no-plot"],
             configs=[BudgetConfig], files={"--run": RUN_BAD}),
        dict(name="dp-curvature",
             argv=["dp-curvature", "--out", "OUT", "--epsilon", "1", "--models", "4",
                   "--n-examples", "20", "--steps", "1", "--no-plot", "--quiet"],
             configs=[DpCurvatureConfig], files={}),
        dict(name="leakage",
             argv=["leakage", "--out", "OUT", "--dataset", "synthetic", "--shots", "0",
                   "--seeds", "1", "--train-size", "20", "--no-plot"],
             configs=[KsLeakageConfig], files={}),
        dict(name="sweep",
             argv=["sweep", "--out", "OUT", "--features", i / "features.npy", "--labels",
                   i / "labels.npy", "--shots", "1", "2", "--classes", "2", "--models", "4",
                   "--epochs", "1", "--no-plot", "--quiet"],
             configs=[SweepConfig], files={"--features": NPY_BAD, "--labels": NPY_BAD}),
        dict(name="generative",
             argv=["generative", "--out", "OUT", "--synthetic", i / "synthetic.npy",
                   "--train", i / "train.npy", "--holdout", i / "holdout.npy", "--no-plot",
                   "--quiet"],
             configs=[GenerativeConfig],
             files={"--synthetic": NPY_BAD, "--train": NPY_BAD, "--holdout": NPY_BAD}),
        dict(name="partial-layers",
             argv=["partial-layers", "--out", "OUT", "--n-private", "20", "--n-public", "20",
                   "--n-evaluation", "20", "--n-population", "10", "--epochs", "1",
                   "--head-epochs", "1", "--shadows", "0", "--no-plot", "--quiet"],
             configs=[PartialLayersConfig], files={}),
        dict(name="capacity",
             argv=["capacity", "--out", "OUT", "--n", "4", "--width", "1", "--augmentation",
                   "none", "--epochs", "1", "--no-plot", "--quiet"],
             configs=[CapacityConfig], files={"--features": NPY_BAD}),
    ]


def _training_flags() -> set[str]:
    from miakit._params import cli_flag, params
    from miakit.shadow import TrainingConfig
    return {cli_flag(n, p) for n, (p, _) in params(TrainingConfig).items() if p.cli}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    from miakit.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _bad_values(action: argparse.Action, param: Any) -> list[tuple[str, list[str]]]:
    """``(label, values)`` the option must refuse."""
    out: list[tuple[str, list[str]]] = []
    many = action.nargs in ("+", "*")
    if action.choices is not None:
        out.append(("unknown choice", ["bogus"]))
    elif action.type is int or (param is not None and param.kind is int):
        out += [("a word", ["abc"]), ("a decimal", ["1.5"]), ("empty", [""])]
    elif action.type is float or (param is not None and param.kind is float):
        out += [("a word", ["abc"]), ("NaN", ["nan"]), ("inf", ["inf"]), ("-inf", ["-inf"])]
    if param is not None and param.kind in (int, float):
        if param.low is not None:
            low = param.low
            below = low if param.open_low else (low - 1 if param.kind is int else
                                                 low - 0.5)
            out.append(("below its range", [_num(below, param.kind)]))
        if param.high is not None:
            high = param.high
            above = high if param.open_high else (high + 1 if param.kind is int else
                                                   high + 0.5)
            out.append(("above its range", [_num(above, param.kind)]))
    if callable(action.type) and action.type not in (int, float, str) and \
            getattr(action.type, "__module__", "").startswith("miakit"):
        out += [("a word", ["abc"]), ("NaN", ["nan"]), ("zero", ["0"]), ("negative", ["-1"])]
    if many and action.nargs == "+":
        out.append(("no value", []))
    return out


def _num(v: float, kind: type) -> str:
    return str(int(v)) if kind is int else repr(float(v))


def lines(w: CliWorld) -> list[dict[str, Any]]:
    """Every bad line: ``{"name", "argv", "words"}`` (words: what the error may name)."""
    from miakit._params import cli_flag, params
    subs = _subparsers()
    out: list[dict[str, Any]] = []
    for cmd in commands(w):
        base = [str(a) for a in cmd["argv"]]
        sub = subs[base[0]]
        declared = {}
        for cfg in cmd["configs"]:
            for name, (param, _) in params(cfg).items():
                declared[cli_flag(name, param)] = (name, param)
        for action in sub._actions:
            if not action.option_strings:
                flag = action.dest  # a positional
            else:
                flag = action.option_strings[-1]
            if flag in ("-h", "--help", "--quiet", "--progress", "--out", "--ray"):
                continue
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                continue
            if cmd.get("only") is not None and flag not in cmd["only"]:
                continue
            if flag in cmd.get("skip", set()):
                continue
            dest, param = declared.get(flag, (action.dest, None))
            words = {flag, flag.lstrip("-"), dest, dest.replace("_", "-")}
            if flag in cmd["files"]:
                # the file the base line gives, or (an option it leaves out) any array
                good = _value_of(base, flag) if flag in base or not flag.startswith("-") \
                    else str(w.d / "features.npy")
                for kind in cmd["files"][flag]:
                    out.append(dict(name=f"{cmd['name']}: {flag} {kind}", base=base, flag=flag,
                                    file=(kind, pathlib.Path(good)), words=words))
                continue
            if flag in cmd.get("specs", set()):
                for label, spec in (("no module", "no_such_module_xyz:f"),
                                    ("no attribute", "fuzz_models:nope"),
                                    ("not callable", "fuzz_models:not_callable"),
                                    ("no colon", "fuzz_models")):
                    out.append(dict(name=f"{cmd['name']}: {flag} {label}", base=base,
                                    flag=flag, values=[spec], words=words))
                continue
            for label, values in _bad_values(action, param):
                out.append(dict(name=f"{cmd['name']}: {flag} {label}", base=base, flag=flag,
                                values=values, words=words))
    # lines that are wrong as a whole
    for label, argv in (("unknown command", ["bogus"]), ("unknown option",
                                                          ["audit", "--bogus", "1"]),
                        ("shadow without --out", ["shadow", "--models", "2"]),
                        ("import without a source", ["import", "--out", "OUT"]),
                        ("import with two sources",
                         ["import", "--out", "OUT", "--logits", str(w.d / "L.npy"),
                          "--folder", str(w.d), "--keep", str(w.d / "K.npy"), "--labels",
                          str(w.d / "y.npy")]),
                        ("target audit without --target-keep",
                         ["audit", "--run", str(w.run), "--target-logits",
                          str(w.d / "T.npy"), "--out", "OUT"]),
                        ("--out is a file", ["import", "--out", str(w.d / "L.npy"),
                                             "--logits", str(w.d / "L.npy"), "--keep",
                                             str(w.d / "K.npy"), "--labels",
                                             str(w.d / "y.npy")])):
        out.append(dict(name=label, base=argv, flag=None, values=None,
                        words={"bogus", "--bogus", "--out", "out", "--logits", "--folder", "import",
                               "--target-keep", "--signals", str(w.d / "L.npy")}))
    return out


def _value_of(argv: list[str], flag: str) -> str:
    if not flag.startswith("-"):  # a positional: the first value after the command
        return argv[1]
    return argv[argv.index(flag) + 1]


def _with(argv: list[str], flag: str | None, values: list[str] | None) -> list[str]:
    """``argv`` with ``flag``'s values replaced (or the flag added)."""
    if flag is None or values is None:
        return list(argv)
    if not flag.startswith("-"):
        return [argv[0], *values, *argv[2:]]
    if flag not in argv:
        return [*argv, flag, *values]
    j = argv.index(flag) + 1
    k = j
    while k < len(argv) and not argv[k].startswith("--"):
        k += 1
    return [*argv[:j], *values, *argv[k:]]


def snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        if "__pycache__" in p.parts:
            continue
        try:
            st = p.stat()
        except OSError:
            continue
        out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns if p.is_file()
                       else 0)
    return out


def judge(w: CliWorld, line: dict[str, Any]) -> tuple[str, str]:
    from miakit.cli import main
    out_dir = w.out()
    values = line.get("values")
    words = set(line["words"])
    if "file" in line:
        kind, good = line["file"]
        bad = w.bad_file(kind, good)
        values = [str(bad)]
        words |= {str(bad), bad.name}
    argv = [str(out_dir) + a[3:] if a.startswith("OUT") else a
            for a in _with(line["base"], line.get("flag"), values)]
    before = snapshot(w.root)
    err, std = io.StringIO(), io.StringIO()
    code: Any
    os.chdir(w.cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std), \
                time_limit(LINE_TIMEOUT_S), _quiet_warnings():
            code = main(argv)
    except SystemExit as exc:
        code = exc.code
    except CallTimeout:
        return "fail", "still running after a minute (the bad value was accepted)"
    except BaseException as exc:  # noqa: BLE001 - main() lets this escape: a traceback
        return "fail", f"{type(exc).__name__} escaped main(): {str(exc)[:200]}"
    text = err.getvalue()
    after = snapshot(w.root)
    changed = sorted(set(after) ^ set(before) | {k for k in after if k in before
                                                   and after[k] != before[k]})
    shown = " ".join(argv)
    if code == 0:
        return "fail", f"exit status 0 for a bad line: {shown}"
    if "Traceback" in text:
        return "fail", f"a traceback: {shown}: {text.strip().splitlines()[-1][:200]}"
    last = [ln for ln in text.strip().splitlines() if ln.strip()]
    message = last[-1] if last else ""
    if code == 1 and not message.startswith("miakit: error: "):
        return "fail", f"exit 1 without 'miakit: error:' last: {message[:200]}"
    if code == 2 and "error:" not in message and "usage" not in text:
        return "fail", f"exit 2 without a usage error: {message[:200]}"
    if code not in (1, 2):
        return "fail", f"exit status {code!r}: {message[:200]}"
    if code == 2:  # argparse names the token it could not place
        words |= set(values or [])
    if not names_ok(message, words):
        return "fail", f"the error names neither the option nor the file ({shown}): " \
                       f"{message[:200]}"
    if changed:
        return "fail", f"a refused command changed files: {changed[:3]} ({shown})"
    return "ok", f"refused ({code})"


@contextlib.contextmanager
def _quiet_warnings():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# Lines the fuzzer found failing, now fixed: every run makes them.
PINNED = ["sweep: --features 0 bytes", "sweep: --labels object array",
          "capacity: --features garbage", "shadow --model: --data 0 bytes",
          "shadow --model: --data wrong shape", "budget: --candidates NaN"]


def plan_lines(all_lines: list[dict[str, Any]], budget: int, seed: int) -> list[dict]:
    """The first ``budget`` lines, interleaved command by command in a seeded order, then
    the :data:`PINNED` ones."""
    by_cmd: dict[str, list[dict]] = {}
    for ln in all_lines:
        by_cmd.setdefault(ln["name"].split(":")[0], []).append(ln)
    for name, group in by_cmd.items():
        random.Random(f"{seed}:{name}").shuffle(group)
    out: list[dict] = []
    depth = 0
    while len(out) < budget and any(depth < len(g) for g in by_cmd.values()):
        for group in by_cmd.values():
            if depth < len(group) and len(out) < budget:
                out.append(group[depth])
        depth += 1
    chosen = {ln["name"] for ln in out}
    return out + [ln for ln in all_lines if ln["name"] in PINNED and ln["name"] not in chosen]


def run(budget: int, seed: int, start: int, tmp: str, emit: Callable[[dict], None]) -> None:
    w = CliWorld(tmp)
    selected = plan_lines(lines(w), budget, seed)
    for i, line in enumerate(selected):
        if i < start:
            continue
        emit({"i": i, "start": line["name"]})
        verdict, text = judge(w, line)
        emit({"i": i, verdict: text, "expect": "refuse"})
    emit({"done": len(selected)})
