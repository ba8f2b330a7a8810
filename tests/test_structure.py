"""The package's shape (docs/design.md section 2): no import cycle between modules of `sim/`, and
no module imports from a higher layer. Read from the source with ast, so lazy imports inside
functions count too. An import under `if TYPE_CHECKING:` (annotations only: it never runs) counts
for the layers but cannot make a cycle."""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import networkx as nx

SIM = Path(__file__).resolve().parents[1] / "sim"

# layer of each top-level part of the package (docs/design.md): lower never imports higher
LAYERS = {
    "errors": 0, "rng": 0, "progress": 0, "columns": 0, "schema": 0,
    "registry": 0,  # names policy classes by import path, loaded on use (so scenario validation can read it)
    "perf": 1,
    "scenario": 2,
    "workload": 3, "facility": 3,
    "policies": 5,
    "engine": 6,
    "analysis": 7,
    "studies": 8, "validation": 8, "observe": 8,
    "cli": 9, "api": 9, "__init__": 9, "__main__": 9,
}


def _module(path: Path) -> str:
    rel = path.relative_to(SIM.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts = parts[:-1]
    return ".".join(parts)


def _typing_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            out.update(id(n) for b in node.body for n in ast.walk(b))
    return out


def _imports(path: Path, runtime: bool = False) -> set[str]:
    """The sim modules `path` imports (only those that run, with `runtime`)."""
    out = set()
    tree = ast.parse(path.read_text())
    skip = _typing_only(tree) if runtime else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("sim"):
            out.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (use absolute sim.* imports)")
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("sim."))
    return out


@lru_cache(maxsize=2)
def _graph(runtime: bool = False) -> nx.DiGraph:
    g = nx.DiGraph()
    mods = {_module(p): p for p in SIM.rglob("*.py")}
    for m, p in mods.items():
        g.add_node(m)
        for dep in _imports(p, runtime):
            if dep in mods and dep != m:
                g.add_edge(m, dep)
    return g


def _part(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_layer():
    parts = {_part(m) for m in _graph().nodes}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def test_no_import_cycle_in_sim():
    cycles = [c for c in nx.strongly_connected_components(_graph(runtime=True)) if len(c) > 1]
    assert not cycles, cycles


def test_no_import_from_a_higher_layer():
    bad = [(a, b) for a, b in _graph().edges if LAYERS[_part(b)] > LAYERS[_part(a)]]
    assert not bad, bad


def test_the_checker_sees_a_cycle_and_an_upward_import():
    # the checks above must be able to fail
    g = nx.DiGraph([("sim.policies.a", "sim.engine.b"), ("sim.engine.b", "sim.policies.a")])
    assert [c for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert LAYERS[_part("sim.engine.b")] > LAYERS[_part("sim.policies.a")]


def test_a_typing_only_import_is_seen_but_does_not_run(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\nimport sim.rng\n"
                   "if TYPE_CHECKING:\n    from sim.engine import x\n")
    assert _imports(src) == {"sim.rng", "sim.engine"}
    assert _imports(src, runtime=True) == {"sim.rng"}


# Sizes a reader can hold (issue 29): a module of sim/ in one sitting, a kernel module in one
# screenful of semantics, a function's inputs in a few named groups.
MAX_LINES, MAX_KERNEL_LINES, MAX_PARAMS = 700, 450, 12
KERNEL = SIM / "engine" / "kernel"


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args]
    n = len(names) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    return n - (names[:1] in (["self"], ["cls"]))


def _too_many_params(tree: ast.Module) -> list[str]:
    return [f"{fn.name}: {_params(fn)}" for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and _params(fn) > MAX_PARAMS]


def _range_layouts(src: str) -> list[str]:
    """`A, B, C = range(3)`: a layout numbered by hand (columns are declared in sim/columns.py)."""
    out = []
    for node in ast.walk(ast.parse(src)):
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple)
                and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "range"):
            out.append(", ".join(getattr(t, "id", "?") for t in node.targets[0].elts)[:60])
    return out


def test_modules_functions_and_layouts_stay_small_and_named():
    long, params, ranges = [], [], []
    for p in sorted(SIM.rglob("*.py")):
        src = p.read_text()
        limit = MAX_KERNEL_LINES if KERNEL in p.parents else MAX_LINES
        if len(src.splitlines()) > limit:
            long.append(f"{p.relative_to(SIM)}: {len(src.splitlines())} > {limit}")
        params += [f"{p.relative_to(SIM)} {f}" for f in _too_many_params(ast.parse(src))]
        ranges += [f"{p.relative_to(SIM)}: {r}" for r in _range_layouts(src)]
    assert not long, long
    assert not params, params
    assert not ranges, ranges


def test_the_size_checks_can_fail():
    args = ", ".join(f"a{k}" for k in range(MAX_PARAMS + 1))
    assert _too_many_params(ast.parse(f"def f({args}): pass"))
    assert not _too_many_params(ast.parse(f"def f(self, {', '.join(f'a{k}' for k in range(MAX_PARAMS))}): pass"))
    assert _range_layouts("A, B, C = range(3)") == ["A, B, C"]
    assert not _range_layouts("for k in range(3): pass")


def _design_layers() -> dict[str, int]:
    """The layer table of docs/design.md section 2: | layer | parts | one sentence |."""
    text = (SIM.parent / "docs" / "design.md").read_text()
    table = text.split("<!-- layers -->")[1].split("<!-- /layers -->")[0]
    out = {}
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for part in cells[1].split(","):
            name = part.strip().strip("`").removeprefix("sim/").removesuffix("/").removesuffix(".py")
            out[name] = int(cells[0])
    return out


def test_the_design_documents_the_layers_this_test_enforces():
    assert _design_layers() == LAYERS


def test_lint_and_types_are_clean():
    """`ruff check sim tests` and `mypy` with the project's configuration (pyproject.toml)."""
    import subprocess
    import sys

    root = SIM.parent
    for cmd in ([sys.executable, "-m", "ruff", "check", "sim", "tests"], [sys.executable, "-m", "mypy"]):
        out = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        assert out.returncode == 0, f"{' '.join(cmd[2:])}:\n{out.stdout[-3000:]}{out.stderr[-1000:]}"
