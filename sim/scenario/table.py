"""Reads one TOML table of a scenario, naming the dotted path in every error and rejecting
unknown keys (the one schema reader every parser uses)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from sim.errors import ScenarioError


class Table:
    """Reads one TOML table, tracking the dotted path for errors and rejecting unknown keys."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(path, f"must be a table, got {type(data).__name__}", f"write [{path}] with keys under it")
        self.data, self.path, self.seen = data, path, set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple, default: Any = ..., *, positive: bool = False,
            nonneg: bool = False, choices: tuple | None = None) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is ...:
                raise ScenarioError(self._p(key), "missing", f"add {key} = ... to [{self.path or 'top level'}]")
            return default
        v = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if isinstance(v, bool) and bool not in kinds or not isinstance(v, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ScenarioError(self._p(key), f"must be {names}, got {v!r}", f"write {key} = <{names}>")
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            raise ScenarioError(self._p(key), f"must be finite, got {v!r}")
        if positive and v <= 0:
            raise ScenarioError(self._p(key), f"must be > 0, got {v!r}", f"set {key} to a positive value")
        if nonneg and v < 0:
            raise ScenarioError(self._p(key), f"must be >= 0, got {v!r}", f"set {key} to zero or more")
        if choices is not None and v not in choices:
            raise ScenarioError(self._p(key), f"unknown value {v!r}", f"use one of: {', '.join(choices)}")
        return v

    def done(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            raise ScenarioError(self._p(extra[0]), "unknown key",
                                f"remove it or check the spelling (known: {', '.join(sorted(self.seen))})")
