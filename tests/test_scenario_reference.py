"""Each scenario key is declared once (sim/schema.py `key`), and everything else derives from the
declaration: docs/scenario.md is `dcsim keys`, the effective scenario saved beside a run parses
back to the same scenario, and a key's declared bounds are what parsing enforces."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sim.errors import ScenarioError
from sim.scenario.config import parse, read_toml
from sim.studies.reference import SECTIONS, markdown
from sim.schema import keys, read

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (REPO / "scenarios").rglob("*.toml"))


def test_docs_scenario_md_is_the_generated_reference():
    assert (REPO / "docs" / "scenario.md").read_text() == markdown(), \
        "docs/scenario.md is stale: regenerate it with `dcsim keys > docs/scenario.md`"


def test_every_key_says_what_it_is():
    for table, cls, _ in SECTIONS:
        for f, k in keys(cls):
            assert k.help.strip(), f"{table} {f.name}: no help text"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_the_effective_scenario_parses_back_to_the_same(path):
    raw = read_toml(path)
    raw.pop("fleet", None)
    sc = parse(raw, path.parent)
    again = parse(sc.raw, path.parent)
    assert again.raw == sc.raw
    for f in dataclasses.fields(sc):
        if f.name not in ("raw", "base_dir", "network_given"):
            assert getattr(again, f.name) == getattr(sc, f.name), f.name


def _minimal(cls):
    """A table with a valid value for each of cls's required keys, or None when one is not a scalar."""
    import typing

    out = {}
    for f, k in keys(cls):
        if k.default is not dataclasses.MISSING or k.derive is not None:
            continue
        if k.parse is not None:
            return None
        choices = k.choices() if callable(k.choices) else k.choices
        hint = typing.get_type_hints(cls)[f.name]
        out[k.toml or f.name] = choices[0] if choices else ("x" if hint is str else 1 if hint is int else 1.0)
    return out


def _scalar_bounds():
    """(table, class, field, key) of every scalar key declared positive, non-negative or bounded."""
    out = []
    for table, cls, _ in SECTIONS:
        if _minimal(cls) is None:
            continue
        for f, k in keys(cls):
            if (
                k.parse is None
                and k.when is None
                and (k.positive or k.nonneg or k.hi is not None or k.below is not None)
            ):
                out.append((table, cls, f, k))
    return out


def _context(cls):
    """What reading a table of cls needs besides it (the defaults a [pools.variability] table
    overrides; a list item's index)."""
    from sim.perf.variability import Variability, defaults
    from sim.scenario.common import Context
    from sim.perf.catalog import builtin_catalog

    if cls is Variability:
        return defaults("dense")
    return Context(builtin_catalog())


@pytest.mark.parametrize("case", _scalar_bounds(), ids=lambda c: f"{c[0]}.{c[3].toml or c[2].name}")
def test_a_key_out_of_its_declared_bounds_is_refused_naming_it(case):
    table, cls, f, k = case
    name = k.toml or f.name
    bad = -1.0 if (k.positive or k.nonneg) else (k.hi if k.hi is not None else k.below) * 10 + 1
    with pytest.raises(ScenarioError) as e:
        read(cls, dict(_minimal(cls), **{name: bad}), "t", _context(cls))
    assert str(e.value).startswith(f"t.{name}:"), str(e.value)


def test_the_bounds_test_covers_most_keys():
    assert len(_scalar_bounds()) >= 40
