"""A fuzzer over every public function and command: no crash, no silent wrong result, and
every error names its argument or file.

Each public callable has a valid baseline call in tests/_fuzz_cases.py; one argument at a
time is then given a bad value or another representation of the same values
(tests/_fuzz_core.py says which, and what the call must do). Commands get bad command
lines (tests/_fuzz_cli.py). The calls run in child processes, one per group, so that an
interpreter abort is reported as a failure naming the call and the rest still run.

The run is bounded: ``MIAKIT_FUZZ_CALLS`` library calls (default 600, spread over every
callable, plus the pinned regressions) and ``MIAKIT_FUZZ_COMMANDS`` command lines
(default 200); ``MIAKIT_FUZZ_SEED`` picks which mutations (default 0). A longer local
run::

    MIAKIT_FUZZ_CALLS=5000 MIAKIT_FUZZ_COMMANDS=1000 python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch")  # the table calls torch models (the test extra has torch)

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

import _fuzz_cases  # noqa: E402
import _fuzz_core  # noqa: E402

CALLS = int(os.environ.get("MIAKIT_FUZZ_CALLS", "600"))
COMMANDS = int(os.environ.get("MIAKIT_FUZZ_COMMANDS", "200"))
SEED = int(os.environ.get("MIAKIT_FUZZ_SEED", "0"))
GROUPS = ["stats", "attacks", "runs", "cli"]
# A child that dies is started again after the call that killed it, this many times.
MAX_RESTARTS = 8


def run_group(group: str, budget: int, tmp: pathlib.Path) -> tuple[list[str], dict]:
    """Run one group's calls in child processes; the failures (one line each, naming the
    call) and the count of each outcome."""
    failures: list[str] = []
    counts: dict[str, int] = {}
    start, restarts = 0, 0
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    timeout = 120 + 20 * budget / 10
    while True:
        child_tmp = tmp / f"{group}-{restarts}"
        cmd = [sys.executable, str(HERE / "_fuzz_core.py"), group, "--budget", str(budget),
               "--seed", str(SEED), "--start", str(start), "--tmp", str(child_tmp)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env=env, cwd=str(tmp))
            out, err, code = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err, code = "timeout", None
        started: dict[int, str] = {}
        finished: set[int] = set()
        done = False
        for line in out.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "done" in rec:
                done = True
            elif "start" in rec:
                started[rec["i"]] = rec["start"]
            else:
                finished.add(rec["i"])
                if "fail" in rec:
                    failures.append(f"{started.get(rec['i'], rec['i'])}: {rec['fail']}")
                    counts["fail"] = counts.get("fail", 0) + 1
                else:
                    counts[rec["ok"]] = counts.get(rec["ok"], 0) + 1
        if done and code == 0:
            return failures, counts
        # the child died or hung: the call it started last is the culprit
        culprit = max((i for i in started if i not in finished), default=None)
        how = "hung (the whole batch ran past its time)" if code is None else \
            f"killed the interpreter (exit status {code})"
        tail = " | ".join(err.strip().splitlines()[-3:])
        if culprit is None:
            failures.append(f"{group}: the child failed before any call: {how}: {tail}")
            return failures, counts
        failures.append(f"{started[culprit]}: {how}: {tail}")
        counts["fail"] = counts.get("fail", 0) + 1
        restarts += 1
        if restarts > MAX_RESTARTS:
            failures.append(f"{group}: stopped after {MAX_RESTARTS} dead children")
            return failures, counts
        start = culprit + 1


def group_budget(group: str) -> int:
    return COMMANDS if group == "cli" else CALLS


@pytest.mark.parametrize("group", GROUPS)
def test_fuzz(group, tmp_path):
    failures, counts = run_group(group, group_budget(group), tmp_path)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"fuzz {group}: {sum(counts.values())} calls ({summary})")
    assert not failures, f"{len(failures)} fuzz failure(s) in {group}:\n" + "\n".join(
        failures)


def test_every_public_callable_is_fuzzed_or_excused(tmp_path):
    """A new public function cannot escape the fuzzer: it needs a case in
    tests/_fuzz_cases.py or a reason in NOT_FUZZED."""
    cases = _fuzz_cases.cases(str(tmp_path))
    names = {c.name.split("#")[0] for c in cases}
    missing = []
    for name, obj in _fuzz_cases.public_callables().items():
        if name in names or name in _fuzz_cases.NOT_FUZZED:
            continue
        if any(n.startswith(name + ".") for n in names):  # a class whose methods are fuzzed
            continue
        if isinstance(obj, type) and obj.__name__ in _fuzz_cases.RESULT_RECORDS:
            continue
        missing.append(name)
    assert not missing, f"public callables the fuzzer does not cover: {missing}"
    stale = [n for n in _fuzz_cases.NOT_FUZZED if n not in _fuzz_cases.public_callables()]
    assert not stale, f"NOT_FUZZED names that are no longer public: {stale}"
    assert len({c.name for c in cases}) == len(cases), "two cases share a name"
    # every argument of every case has a menu the runner knows
    for c in cases:
        for a in c.args.values():
            _fuzz_core.mutations(a)


def test_pinned_calls_exist(tmp_path):
    """Every pinned regression names a case, an argument and a mutation that exist."""
    import _fuzz_cli

    by_name = {c.name: c for c in _fuzz_cases.cases(str(tmp_path))}
    for name, param, label in _fuzz_cases.PINNED:
        assert name in by_name and param in by_name[name].args, (name, param)
        assert label in {m.label for m in _fuzz_core.mutations(by_name[name].args[param])}, \
            (name, param, label)
    names = {ln["name"] for ln in _fuzz_cli.lines(_fuzz_cli.CliWorld(str(tmp_path / "cli")))}
    assert set(_fuzz_cli.PINNED) <= names, set(_fuzz_cli.PINNED) - names


def test_the_bounded_run_covers_every_case(tmp_path):
    """The default budget reaches every case's baseline and at least one mutation of
    most of them (the plan interleaves the cases)."""
    cases = _fuzz_cases.cases(str(tmp_path))
    plan = _fuzz_core.plan(cases, CALLS, SEED)
    assert {name for name, _, _ in plan} == {c.name for c in cases}
    print(f"{len(cases)} cases; full menu {_fuzz_core.full_size(cases)} calls; "
          f"bounded run {len(plan)}")
