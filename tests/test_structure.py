"""The package's shape (docs/design.md section 2): no import cycle between modules of `sim/`, and
no module imports from a higher layer. Read from the source with ast, so lazy imports inside
functions count too. An import under `if TYPE_CHECKING:` (annotations only: it never runs) counts
for the layers but cannot make a cycle."""

from __future__ import annotations

import ast
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
    "studies": 8, "validation": 8,
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
