"""Per-engine step constants (sim/data/engines.toml; docs/engines.md): what a pool's `engine` adds
to its part's fitted step overheads."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class EngineConstants:
    """One engine's additions to a step's time."""

    seq_overhead_s: float = 0.0
    step_overhead_s: float = 0.0
    calibration: str = ""


@lru_cache(maxsize=1)
def _table() -> dict[str, EngineConstants]:
    with (resources.files("sim") / "data" / "engines.toml").open("rb") as fh:
        raw = tomllib.load(fh)
    return {k: EngineConstants(**v) for k, v in raw.items()}


# the fit script (scripts/fit_engines.py) sets trial values here; nothing else writes it
OVERRIDES: dict[str, EngineConstants] = {}


def engine_constants(engine: str) -> EngineConstants:
    """The constants of `engine` (a scenario's `pools.engine`, already validated)."""
    return OVERRIDES.get(engine) or _table()[engine]
