"""The package's shape (docs/architecture.md): no import cycle, imports point down the
layers, no module over 600 lines."""

import ast
import pathlib

import pytest

import miakit

ROOT = pathlib.Path(miakit.__file__).parent
MAX_LINES = 600


def _module_name(path: pathlib.Path) -> str:
    parts = ("miakit",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The miakit module an imported name lives in (a package's attribute: the package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, top_level_only: bool) -> set[str]:
    """The miakit modules ``module`` imports (all, or those run at import time)."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # imports under if/try at module level run at import time too
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef,
                                          ast.ClassDef))]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for n in names:
            target = _resolve(n) if n.startswith("miakit") else None
            if target and target != module:
                out.add(target)
    return out


# (layer, module prefixes): a module may import its own layer and those below it
LAYERS = [
    ("plumbing", ("miakit._C", "miakit._arrays", "miakit._validation", "miakit._options",
                  "miakit._params", "miakit._status", "miakit._backend", "miakit.io",
                  "miakit._plotting", "miakit._progress")),
    ("primitives", ("miakit.signals", "miakit.lira", "miakit._lira", "miakit.rmia",
                    "miakit.thresholds", "miakit.metrics", "miakit.ks", "miakit._ks",
                    "miakit.memorization", "miakit.neighbors", "miakit.gradients",
                    "miakit._ghost", "miakit.curvature", "miakit._curvature",
                    "miakit.bounds", "miakit.powerlaw", "miakit.generative",
                    "miakit.vulnerability", "miakit._models", "miakit.datasets",
                    "miakit.exposure", "miakit.capacity",
                    "miakit._binomial",
                    "miakit.partial_layers",
                    # keep matrices: what every membership test is stated over
                    "miakit.shadow.keep")),
    ("experiments", ("miakit.shadow",)),
    ("audit", ("miakit.audit", "miakit._audit_signals")),
    ("studies", ("miakit.studies",)),
    ("cli", ("miakit.cli", "miakit.__main__")),
]


def _layer(module: str) -> int:
    if module == "miakit":
        return len(LAYERS)  # the package imports everything
    # the longest prefix decides (shadow.keep is a primitive inside the shadow package)
    found = [(len(p), i) for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes
             if module == p or module.startswith(p + ".")
             or (p.rsplit(".", 1)[-1].startswith("_") and module.startswith(p))]
    if not found:
        raise AssertionError(f"{module}: not placed in a layer of docs/architecture.md")
    return max(found)[1]


def test_every_module_has_a_layer():
    for m in MODULES:
        _layer(m)


def test_imports_point_down_the_layers():
    bad = []
    for m in MODULES:
        for t in _imports(m, top_level_only=False):
            if t != "miakit" and _layer(t) > _layer(m):
                bad.append(f"{m} ({LAYERS[_layer(m)][0]}) imports {t} "
                           f"({LAYERS[_layer(t)][0]})")
    assert bad == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` found by a depth-first walk (a package importing its
    own submodules, which import each other directly, is not one)."""
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                if not m.startswith(t + "."):
                    cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"p": {"p.x"}, "p.x": {"p"}}) == []  # a package and its submodule
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_there_is_no_import_cycle_at_import_time():
    graph = {m: _imports(m, top_level_only=True) - {"miakit"} for m in MODULES}
    assert _cycles(graph) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_600_lines(module):
    n = len(MODULES[module].read_text().splitlines())
    assert n <= MAX_LINES, f"{module}: {n} lines"
