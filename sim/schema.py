"""Scenario keys stated once, and the reader of one TOML table (`Table`: the dotted path in every
error, unknown keys refused), which every parser uses.

A config dataclass's field declared with `key(...)` is a scenario key: its TOML name, default,
accepted types, bounds, choices, unit and help text live in that one declaration, from which `read`
parses a TOML table (naming the dotted path and the fix in every error), `effective` writes the
table back with every default filled in (the scenario saved beside a run), and `reference` lists
every key for docs/scenario.md.

    @dataclass(frozen=True, kw_only=True)
    class SchedulerConfig:
        max_batch_size: int = key(256, "the most sequences in one step", positive=True)

A key whose value is a table or a list (a distribution, [pools.service]) names a `parse`
function; `write`, `when` and `shown` adjust what the effective scenario holds (a key that has no
effect in a scenario is not written, so that a rerun of the saved scenario does not warn about it).
Cross-key rules live in the class's `resolve(kw, path, ctx, table)` classmethod, which `read`
calls with the keys read before building the object.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from sim.errors import ScenarioError


class Table:
    """Reads one TOML table, tracking the dotted path for errors and rejecting unknown keys."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(
                path, f"must be a table, got {type(data).__name__}", f"write [{path}] with keys under it"
            )
        self.data, self.path = data, path
        self.seen: set[str] = set()

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


REQUIRED: Any = dataclasses.MISSING  # a key without a default must be given
OMIT = object()  # a `write` function's answer: leave the key out of the effective scenario


@dataclass(frozen=True)
class Key:
    """What one scenario key is (see `key`)."""

    help: str
    default: Any = REQUIRED
    kind: Any = None  # the TOML types accepted (None: from the field's annotation)
    toml: str | None = None  # its name in TOML, when not the field's
    positive: bool = False
    nonneg: bool = False
    lo: float | None = None  # inclusive bounds beyond positive / nonneg
    hi: float | None = None
    below: float | None = None  # exclusive upper bound
    choices: Any = None  # a tuple, or a function of no argument giving one
    unit: str = ""  # "s", "W", ... (docs)
    scale: float = 1.0  # the field holds the TOML value x scale (it_limit_mw -> W)
    parse: Callable[..., Any] | None = None  # (value as given, dotted path, ctx, keys read so far) -> field value
    derive: Callable[..., Any] | None = None  # (ctx, keys read so far) -> the default when the key is absent
    when: Callable[[Any], bool] | None = None  # (the keys' values) -> whether the key applies: read only
    # then (else "unknown key"), written to the effective scenario only then
    write: Callable[[Any, Any], Any] | None = None  # (field value, object) -> TOML value, or OMIT
    shown: Callable[[Any], bool] | None = None  # (the object's values) -> whether the effective scenario writes it
    # (a key with no effect in this scenario is accepted with a warning, and not written back)
    hint: str = ""  # the fix an out-of-bounds error suggests
    doc_default: str | None = None  # how the docs state a default that depends on other keys
    doc_when: str = ""  # the docs' words for `when`


def key(default: Any = REQUIRED, help: str = "", **kw: Any) -> Any:  # noqa: A002
    """A dataclass field that is a scenario key (Key's fields as keywords)."""
    k = Key(help=help, default=default, **kw)
    if default is REQUIRED:
        return dataclasses.field(metadata={"key": k})
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: default, metadata={"key": k})
    return dataclasses.field(default=default, metadata={"key": k})


def keys(cls: type) -> list[tuple[dataclasses.Field, Key]]:
    """The scenario keys of a config dataclass, in declaration order."""
    return [(f, f.metadata["key"]) for f in fields(cls) if "key" in f.metadata]


_SCALARS = (bool, int, float, str)


def _kinds(cls: type, f: dataclasses.Field, k: Key) -> tuple:
    """The TOML types a key accepts: its declared `kind`, else the scalar types of its annotation
    (int | None -> int)."""
    if k.kind is not None:
        return k.kind if isinstance(k.kind, tuple) else (k.kind,)
    hint = typing.get_type_hints(cls)[f.name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    out = tuple(a for a in args if a in _SCALARS)
    if not out:
        raise TypeError(f"{cls.__name__}.{f.name}: give kind= or parse= for a key of type {hint}")
    return out


def _bounds(v: Any, k: Key, path: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return
    fix = k.hint
    if k.lo is not None and v < k.lo:
        raise ScenarioError(path, f"must be >= {k.lo:g}, got {v!r}", fix)
    if k.hi is not None and v > k.hi:
        raise ScenarioError(path, f"must be at most {k.hi:g}, got {v!r}", fix)
    if k.below is not None and v >= k.below:
        raise ScenarioError(path, f"must be below {k.below:g}, got {v!r}", fix)


def read(cls: type, raw: Any, path: str, ctx: Any = None, **given: Any) -> Any:
    """An instance of config dataclass `cls` from the TOML table `raw` at dotted `path`: each
    key read, checked and defaulted as declared, unknown keys refused; `given`: fields the caller
    sets itself; then the class's own `resolve(kw, path, ctx, table)` (cross-key rules, derived
    fields), if it has one."""
    t = Table(raw, path)
    kw: dict[str, Any] = dict(given)
    for f, k in keys(cls):
        if f.name in kw:
            continue
        name = k.toml or f.name
        where = f"{path}.{name}" if path else name
        if k.when is not None and not k.when(kw):
            if f.default is dataclasses.MISSING:
                kw[f.name] = None
            continue  # (left unseen: given, it is an unknown key here)
        if name not in t.data and k.derive is not None:
            t.seen.add(name)
            kw[f.name] = k.derive(ctx, kw)
            continue
        if k.parse is not None:
            t.seen.add(name)
            if name in t.data:
                kw[f.name] = k.parse(t.data[name], where, ctx, kw)
            elif k.default is REQUIRED:
                raise ScenarioError(where, "missing", f"add {name} = ... to [{path or 'top level'}]")
            else:
                kw[f.name] = k.default
            continue
        choices = k.choices() if callable(k.choices) else k.choices
        v = t.get(name, _kinds(cls, f, k), ... if k.default is REQUIRED else k.default, positive=k.positive,
                  nonneg=k.nonneg, choices=choices)
        _bounds(v, k, where)
        kw[f.name] = v * k.scale if (k.scale != 1.0 and isinstance(v, (int, float)) and v is not None) else v
    t.done()
    resolve = getattr(cls, "resolve", None)
    if resolve is not None:  # cross-key rules and derived fields
        kw = resolve(kw, path, ctx, t)
    return cls(**kw)


def _toml_value(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return effective(v)
    if isinstance(v, (list, tuple)):
        return [_toml_value(x) for x in v]
    if isinstance(v, typing.Mapping):
        return {str(a): _toml_value(b) for a, b in v.items()}
    return v


def effective(obj: Any) -> dict[str, Any]:
    """The TOML table of a config object, every key written (defaults filled in) but those that
    are None (TOML has no null) or that do not apply here (`when`)."""
    out: dict[str, Any] = {}
    vals = vars(obj)
    for f, k in keys(type(obj)):
        if (k.when is not None and not k.when(vals)) or (k.shown is not None and not k.shown(vals)):
            continue
        v = getattr(obj, f.name)
        if k.write is not None:
            v = k.write(v, obj)
            if v is OMIT:
                continue
        elif v is None:
            continue
        elif k.scale != 1.0 and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = v / k.scale
        out[k.toml or f.name] = _toml_value(v)
    return out


def _fmt(v: Any) -> str:
    if v is REQUIRED:
        return "required"
    if v in ((), {}, []):
        return "none"
    if isinstance(v, float) and math.isinf(v):
        return "inf (none)"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return "(table)"
    return f"{v:g}" if isinstance(v, float) else str(v)


def describe(cls: type, k: Key, f: dataclasses.Field) -> str:
    """What values a key takes, in words."""
    parts = []
    choices = k.choices() if callable(k.choices) else k.choices
    if choices:
        parts.append("one of " + ", ".join(f"`{c}`" for c in choices))
    elif k.parse is None:
        try:
            parts.append(" or ".join(x.__name__ for x in _kinds(cls, f, k)))
        except TypeError:
            pass
    else:
        parts.append("table" if k.kind is None else " or ".join(x.__name__ for x in (
            k.kind if isinstance(k.kind, tuple) else (k.kind,))))
    if k.positive:
        parts.append("> 0")
    if k.nonneg:
        parts.append(">= 0")
    if k.lo is not None:
        parts.append(f">= {k.lo:g}")
    if k.hi is not None:
        parts.append(f"<= {k.hi:g}")
    if k.below is not None:
        parts.append(f"< {k.below:g}")
    if k.unit:
        parts.append(k.unit)
    if k.doc_when:
        parts.append(k.doc_when)
    return ", ".join(parts)


def reference(sections: list[tuple[str, type, str]]) -> str:
    """The scenario reference as Markdown: for each (TOML table, config class, what it is), a
    table of its keys with default, values and meaning."""
    out = []
    for table, cls, what in sections:
        out += [f"### `{table}`", "", what, "", "| key | default | values | meaning |", "|---|---|---|---|"]
        for f, k in keys(cls):
            d = k.doc_default if k.doc_default is not None else (
                "its defaults" if k.default is REQUIRED and k.derive is not None else _fmt(k.default))
            if k.scale != 1.0 and isinstance(k.default, (int, float)) and not isinstance(k.default, bool):
                d = _fmt(k.default / k.scale)
            out.append(f"| `{k.toml or f.name}` | {d} | {describe(cls, k, f)} | {k.help} |")
        out.append("")
    return "\n".join(out)
