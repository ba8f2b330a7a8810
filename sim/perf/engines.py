"""Per-engine step constants (sim/data/engines.toml; docs/engines.md): what a pool's `engine` adds
to its part's fitted step overheads."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sim.perf.catalog import DATA_DIR, load_toml


@dataclass(frozen=True)
class EngineConstants:
    """One engine's additions to a step's time."""

    seq_overhead_s: float = 0.0
    step_overhead_s: float = 0.0
    moe_layer_overhead_s: float = 0.0  # per MoE layer per step (routing, dispatch, combine kernels)
    calibration: str = ""


@lru_cache(maxsize=1)
def _table() -> dict[str, EngineConstants]:
    return {k: EngineConstants(**v) for k, v in load_toml(DATA_DIR / "engines.toml").items()}


# the fit script (scripts/fit_engines.py) sets trial values here; nothing else writes it
OVERRIDES: dict[str, EngineConstants] = {}


def engine_names() -> list[str]:
    """The engines the catalog has constants for (sim/data/engines.toml)."""
    return list(_table())


def engine_constants(engine: str) -> EngineConstants:
    """The constants of `engine` (a scenario's `pools.engine`, already validated)."""
    return OVERRIDES.get(engine) or _table()[engine]
