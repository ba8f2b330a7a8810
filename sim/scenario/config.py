"""Scenario files: TOML in, validated frozen dataclasses out.

Each key is declared once, as a field of the config dataclass of its table (`key(default, help,
bounds...)`, sim/schema.py): parsing, every error message (the dotted path and the fix), the
effective scenario saved beside a run (`Scenario.raw`: every default written out, so a run can be
repeated exactly) and the reference in docs/scenario.md (`dcsim keys`) all derive from it. A
table's cross-key rules are its class's `resolve`. `apply_overrides` implements
`--set key.path=value`.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sim.errors import ScenarioError, warn
from sim.perf.catalog import DTYPE_BYTES, Catalog, Hardware, Model, builtin_catalog, load_catalog_file
from sim.perf.roofline import Speculative
from sim.perf.variability import OFF, Variability
from sim.perf.variability import defaults as var_defaults
from sim.registry import AUTOSCALERS, ROUTERS, SCHEDULERS
from sim.scenario.facility import Facility, parse_facility
from sim.schema import OMIT, REQUIRED, Table, effective, key, read

ARRIVALS = ("poisson", "gamma", "constant", "trace")
TRACE_FORMATS = ("csv", "azure", "mooncake")
LENGTH_DISTS = {"fixed": ("value",), "uniform": ("min", "max"), "lognormal": ("mean", "cv"),
                "empirical": ("file",)}
TIME_DISTS = {"fixed": ("value",), "exponential": ("mean",), "lognormal": ("mean", "cv"), "uniform": ("min", "max")}
SERVICE_DISTS = ("exponential", "deterministic")
MAX_TOKENS = 1e9  # per request: past any model's context window (checked per model at build)
MAX_CV = 100.0
ROLES = ("mixed", "prefill", "decode")
DECODE_ROUTERS = ("least_kv", "least_loaded", "jsq", "round_robin", "least_time")  # router.decode_policy (compiled)
ENGINES = ("auto", "simpy", "compiled")
KV_TIERS = ("cpu", "ssd")
# KV-transfer fabrics per accelerator (one NIC or NVLink port each): Gb/s one way, latency us.
# Bandwidth: vendor figures (NVLink 4: 900 GB/s bidirectional per H100/H200 GPU; ConnectX-7 NDR
# InfiniBand 400 Gb/s; 200 Gb/s RoCE v2; 100 GbE); latencies: ASSUMED typical end-to-end
# figures for an RDMA (or TCP) transfer through one switch tier.
FABRICS = {"nvlink": (3600.0, 1.0), "ib-400g": (400.0, 5.0), "roce-200g": (200.0, 10.0),
           "ethernet-100g": (100.0, 30.0)}


@dataclass(frozen=True)
class Context:
    """What parsing a table may need beyond the table: the catalog, the scenario's folder, the
    classes and pools read so far, the top-level [autoscaler], the index of a table in its list."""

    catalog: Catalog
    base_dir: Path = Path(".")
    classes: tuple = ()
    scale_all: Any = None
    index: int = 0
    pools_raw: tuple = ()


# --- distributions --------------------------------------------------------------------------------

def length_spec(raw: Any, path: str, ctx: Any = None, kw: Any = None) -> dict[str, Any]:
    """A token-length distribution: a number (fixed) or {dist = "fixed" | "uniform" | "lognormal" |
    "empirical", its parameters, optional min / max}."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"dist": "fixed", "value": raw}
    t = Table(raw, path)
    dist = t.get("dist", str, choices=tuple(LENGTH_DISTS))
    out: dict[str, Any] = {"dist": dist}
    for k in LENGTH_DISTS[dist]:
        out[k] = t.get(k, str if k == "file" else (int, float), positive=(k != "file"))
    if dist == "empirical":
        col = t.get("column", str, None)
        if col is not None:
            out["column"] = col
    if dist != "uniform":
        for k in ("min", "max"):
            v = t.get(k, (int, float), None, positive=True)
            if v is not None:
                out[k] = v
    t.done()
    for k, v in out.items():
        limit = MAX_CV if k == "cv" else MAX_TOKENS
        if k != "file" and isinstance(v, (int, float)) and v > limit:
            raise ScenarioError(f"{path}.{k}", f"{v:g} is past {limit:g}" + ("" if k == "cv" else " tokens"),
                                f"give {k} up to {limit:g}")
    if dist == "uniform" and out["min"] > out["max"]:
        raise ScenarioError(f"{path}.min", "must be <= max")
    if "min" in out and "max" in out and out["min"] > out["max"]:
        raise ScenarioError(f"{path}.min", "must be <= max")
    return out


def time_spec(raw: Any, path: str, ctx: Any = None, kw: Any = None) -> dict[str, Any]:
    """A distribution of seconds: a number (fixed) or {dist = "exponential", mean = ...} |
    {dist = "lognormal", mean, cv} | {dist = "uniform", min, max} | {dist = "fixed", value}."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = {"dist": "fixed", "value": float(raw)}
    t = Table(raw, path)
    dist = t.get("dist", str, choices=tuple(TIME_DISTS))
    out: dict[str, Any] = {"dist": dist}
    for k in TIME_DISTS[dist]:
        out[k] = t.get(k, float, nonneg=(k in ("value", "min")), positive=(k not in ("value", "min")))
    t.done()
    if dist == "uniform" and out["min"] > out["max"]:
        raise ScenarioError(f"{path}.min", "must be <= max")
    return out


def _must(path: str, kind: str, v: Any) -> Any:
    """The error for a key of the wrong type."""
    raise ScenarioError(path, f"must be {kind}, got {v!r}", f"write {path.rsplit('.', 1)[-1]} = <{kind}>")


def _dict(v: Any, obj: Any = None) -> Any:
    return dict(v) if v is not None else OMIT


# --- [slo], [[workload.classes]], [workload.multi_turn] -----------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SLO:
    """Latency objectives (s); None = no objective on that metric."""

    ttft_s: float | None = key(None, "time to first token the requests should meet", positive=True, unit="s")
    tpot_s: float | None = key(None, "time per output token the requests should meet", positive=True, unit="s")


def _slo(raw: Any, path: str, ctx: Any = None, kw: Any = None) -> SLO | None:
    return read(SLO, raw, path) if raw is not None else None


def _slo_write(v: Any, obj: Any = None) -> Any:
    d = effective(v) if v is not None else {}
    return d if d else OMIT


@dataclass(frozen=True, kw_only=True)
class RequestClass:
    """A share of the traffic with its own priority (lower = served first), lengths and SLO."""

    name: str = key(REQUIRED, "the class's name", derive=lambda ctx, kw: f"class{ctx.index}",
                    doc_default='"class<k>"')
    share: float = key(REQUIRED, "its share of the requests (the classes' shares sum to 1)", positive=True)
    priority: int = key(0, "its priority: lower is served first (the priority scheduler)")
    prompt_tokens: Mapping[str, Any] | None = key(None, "its own prompt lengths (else the workload's)",
                                                  parse=length_spec, write=_dict, kind=(int, dict))
    output_tokens: Mapping[str, Any] | None = key(None, "its own output lengths (else the workload's)",
                                                  parse=length_spec, write=_dict, kind=(int, dict))
    slo: SLO | None = key(None, "its own latency objectives (else [slo])", parse=_slo, write=_slo_write)
    model: str | None = key(None, "the model its requests ask for (else the one every pool serves)")


def _classes(raw: Any, path: str, ctx: Context, kw: Any = None) -> tuple[RequestClass, ...]:
    if not isinstance(raw, list):
        raise ScenarioError(path, f"must be list, got {raw!r}", "write classes = <list>")
    out = tuple(read(RequestClass, c, f"{path}[{k}]", Context(ctx.catalog, ctx.base_dir, index=k))
                for k, c in enumerate(raw))
    if out and abs(sum(c.share for c in out) - 1.0) > 1e-6:
        raise ScenarioError("workload.classes.share", f"the classes' shares sum to {sum(c.share for c in out):g}",
                            "make them sum to 1 (each is the fraction of requests in that class)")
    if len({c.name for c in out}) != len(out):
        raise ScenarioError("workload.classes.name", "duplicate class names", "give each class a unique name")
    return out


@dataclass(frozen=True, kw_only=True)
class MultiTurn:
    """workload.multi_turn: each arrival of the process starts a session of `turns` turns; turn
    k + 1 arrives `think_time_s` after turn k did (open loop: drawn up front, as a trace replays)
    and its prompt is the session's history (every earlier prompt and response) plus a new
    message drawn from workload.prompt_tokens; a session ends before a turn whose prompt and
    output would pass max_history_tokens."""

    turns: Mapping[str, Any] = key(REQUIRED, "turns per session (a length distribution, >= 1)", parse=length_spec,
                                   write=_dict, kind=(int, dict))
    think_time_s: Mapping[str, Any] = key(REQUIRED, "the user's time between a response and the next turn "
                                          "(a time distribution)", parse=time_spec, write=_dict,
                                          kind=(int, float, dict), unit="s")
    max_history_tokens: int = key(32768, "a session ends before a turn past this many tokens of history",
                                  positive=True)


def _multi_turn(raw: Any, path: str, ctx: Any = None, kw: Any = None) -> MultiTurn | None:
    return read(MultiTurn, raw, path) if raw is not None else None


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One load stage: rate_per_s for duration_s (stages run back to back)."""

    rate_per_s: float = key(REQUIRED, "the stage's arrival rate", positive=True, unit="req/s")
    duration_s: float = key(REQUIRED, "how long it lasts", positive=True, unit="s")


def _stages(raw: Any, path: str, ctx: Any = None, kw: Any = None) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list):
        raise ScenarioError(path, f"must be list, got {raw!r}", "write stages = <list>")
    return tuple((s.rate_per_s, s.duration_s) for s in (read(Stage, x, f"{path}[{k}]") for k, x in enumerate(raw)))


@dataclass(frozen=True, kw_only=True)
class SharedPrefix:
    """workload.shared_prefix: each request's prompt begins with one of `groups` prefixes of
    `tokens` tokens (a system prompt, a document), which prefix caching can reuse."""

    groups: int = key(REQUIRED, "how many distinct prefixes", positive=True)
    tokens: int = key(REQUIRED, "each prefix's length", positive=True, unit="tokens")


def _shared_prefix(raw: Any, path: str, ctx: Any = None, kw: Any = None) -> tuple[int, int] | None:
    if raw is None:
        return None
    sp = read(SharedPrefix, raw, path)
    return sp.groups, sp.tokens


# --- [workload] ----------------------------------------------------------------------------------

def _rate_spec(key_: str) -> Any:
    """workload.diurnal or workload.rate_profile, checked as a table (its points: _rate_points)."""

    def parse(raw: Any, path: str, ctx: Context, kw: Any = None) -> Mapping[str, Any] | None:
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise ScenarioError(path, f"must be dict, got {raw!r}", f"write {key_} = <dict>")
        return dict(raw)

    return parse


def _not_trace(v: Mapping[str, Any]) -> bool:
    return v.get("arrival") != "trace"


@dataclass(frozen=True, kw_only=True)
class WorkloadConfig:
    """[workload]: the arrival process and the requests' lengths."""

    arrival: str = key("poisson", "the arrival process: Poisson, gamma (bursty, with cv), constant, or a trace's times",
                       choices=ARRIVALS)
    rate_per_s: float = key(None, "the mean arrival rate (a trace: ignored; stages, diurnal, rate_profile: their own)",
                            kind=float, nonneg=True, unit="req/s", doc_default="required",
                            shown=lambda v: v.get("arrival") != "trace" and not v.get("stages")
                            and v.get("diurnal") is None and v.get("rate_profile") is None)
    cv: float = key(1.0, "gamma arrivals: the coefficient of variation of the gaps (1: Poisson)", positive=True,
                    shown=lambda v: v.get("arrival") == "gamma")
    num_requests: int | None = key(None, "how many requests arrive (or give duration_s)", positive=True,
                                   shown=lambda v: not v.get("stages"))
    duration_s: float | None = key(None, "how long requests arrive (or give num_requests)", positive=True, unit="s",
                                   shown=lambda v: not v.get("stages"))
    prompt_tokens: Mapping[str, Any] = key(None, "prompt lengths: a number or a distribution table", kind=(int, dict),
                                           parse=length_spec, write=_dict, shown=_not_trace, doc_default="required")
    output_tokens: Mapping[str, Any] = key(None, "output lengths: a number or a distribution table", kind=(int, dict),
                                           parse=length_spec, write=_dict, shown=_not_trace, doc_default="required")
    trace: str | None = key(None, "arrival = \"trace\": the trace file (relative to the scenario)")
    trace_format: str = key("csv", "the trace's format", choices=TRACE_FORMATS,
                            shown=lambda v: v.get("arrival") == "trace")
    time_scale: float = key(1.0, "a trace's times are divided by this (2: twice as fast)", positive=True,
                            shown=lambda v: v.get("arrival") == "trace")
    warmup_s: float = key(0.0, "requests arriving before this are left out of the statistics", nonneg=True, unit="s")
    stages: tuple[tuple[float, float], ...] = key((), "load stages run back to back ([[workload.stages]]: rate_per_s, "
                                                  "duration_s) instead of rate_per_s", kind=list, parse=_stages,
                                                  write=lambda v, o: [{"rate_per_s": r, "duration_s": d} for r, d in v]
                                                  if v else OMIT)
    shared_prefix: tuple[int, int] | None = key(None, "requests share leading prefixes (groups, tokens)", kind=dict,
                                                parse=_shared_prefix,
                                                write=lambda v, o: {"groups": v[0], "tokens": v[1]} if v else OMIT)
    timeout_s: float | None = key(None, "a client gives up this long after arriving (the request fails: timeout)",
                                  positive=True, unit="s")
    classes: tuple[RequestClass, ...] = key((), "[[workload.classes]]: shares of the traffic with their own priority, "
                                            "lengths, SLO or model", kind=list, parse=_classes,
                                            write=lambda v, o: [effective(c) for c in v] if v else OMIT)
    sessions: int | None = key(None, "draw a session id per request from this many sessions", positive=True)
    diurnal: Mapping[str, Any] | None = key(None, "a rate over the day: peak_rate_per_s, trough_rate_per_s, peak_hour "
                                            "(poisson, with duration_s)", kind=dict, parse=_rate_spec("diurnal"),
                                            write=_dict)
    rate_profile: Mapping[str, Any] | None = key(
        None,
        "a rate from a CSV file: file, column (poisson, with duration_s)",
        kind=dict,
        parse=_rate_spec("rate_profile"),
        write=_dict,
    )
    multi_turn: MultiTurn | None = key(None, "sessions of turns whose prompts carry their history", kind=dict,
                                       parse=_multi_turn)
    # a time-varying rate (nonhomogeneous Poisson, drawn by thinning): (t_s, rate_per_s) points,
    # linear between them and held after the last; from diurnal or rate_profile (derived)
    rate_points: tuple[tuple[float, float], ...] = ()

    @property
    def rate_spec(self) -> Mapping[str, Any] | None:
        return self.diurnal if self.diurnal is not None else self.rate_profile

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Context, t: Table) -> dict[str, Any]:
        _arrivals(kw, t.data, ctx)
        _no_effect(kw, t.data)
        warmup, dur, stages = kw["warmup_s"], kw["duration_s"], kw["stages"]
        if dur is not None and warmup >= dur:
            raise ScenarioError("workload.warmup_s", f"{warmup:g} s is not before the end of arrivals ({dur:g} s): "
                                "no request would be measured", f"give warmup_s below {dur:g}")
        if stages and warmup >= sum(d for _, d in stages):
            raise ScenarioError("workload.warmup_s", f"{warmup:g} s is not before the end of the stages "
                                f"({sum(d for _, d in stages):g} s): no request would be measured", "lower warmup_s")
        multi = kw["multi_turn"]
        if multi is not None:
            clash = ("workload.sessions" if kw["sessions"] else "workload.shared_prefix" if kw["shared_prefix"]
                     is not None else "workload.trace" if kw["arrival"] == "trace" else None)
            if clash:
                raise ScenarioError("workload.multi_turn", f"cannot be combined with {clash} (multi-turn sessions "
                                    "make their own session ids and shared prefixes)", f"remove {clash} or multi_turn")
            if any(c.prompt_tokens or c.output_tokens for c in kw["classes"]):
                raise ScenarioError("workload.multi_turn", "classes with their own prompt or output lengths cannot "
                                    "build a session's history", "give the lengths in workload.prompt_tokens/"
                                    "output_tokens")
        return kw


def _arrivals(kw: dict[str, Any], given: Mapping[str, Any], ctx: Context) -> None:
    """The arrival process's keys, which depend on the process: the rate (given, or from the
    stages or the time-varying profile), how many or for how long, the lengths (a trace's own)."""
    arrival, stages, num, dur = kw["arrival"], kw["stages"], kw["num_requests"], kw["duration_s"]
    if stages and arrival == "trace":
        raise ScenarioError("workload.stages", "stages do not apply to trace replay", "remove [[workload.stages]]")
    if arrival == "trace":
        if kw["trace"] is None:
            raise ScenarioError("workload.trace", "missing for arrival = \"trace\"",
                                "add trace = \"path/to/trace.csv\"")
        if kw["rate_per_s"] is None:
            kw["rate_per_s"] = 0.0
        for k in ("prompt_tokens", "output_tokens"):
            if kw[k] is None:
                kw[k] = {"dist": "fixed", "value": 1}
        return
    if kw["diurnal"] is not None or kw["rate_profile"] is not None:
        key_ = "diurnal" if kw["diurnal"] is not None else "rate_profile"
        if kw["diurnal"] is not None and kw["rate_profile"] is not None:
            raise ScenarioError("workload.rate_profile", "give diurnal or rate_profile, not both", "remove one")
        if arrival != "poisson" or stages or num is not None or dur is None or "rate_per_s" in given:
            raise ScenarioError(f"workload.{key_}", "a time-varying rate is drawn as a Poisson process over "
                                "duration_s", 'use arrival = "poisson" and duration_s, without rate_per_s, '
                                "num_requests or stages")
        points, spec = _rate_points(key_, kw[key_], dur, ctx.base_dir)
        kw["rate_points"], kw[key_] = points, spec
        kw["rate_per_s"] = max(r for _, r in points)
    elif stages:
        if num is not None or dur is not None or "rate_per_s" in given:
            raise ScenarioError("workload.stages", "stages set their own rate and duration",
                                "remove rate_per_s, num_requests and duration_s from [workload]")
        kw["rate_per_s"] = stages[0][0]
    else:
        rate = kw["rate_per_s"]
        if rate is None:
            raise ScenarioError("workload.rate_per_s", "missing", "add rate_per_s = ... to [workload]")
        if rate <= 0:
            raise ScenarioError("workload.rate_per_s", f"must be > 0, got {rate!r}",
                                "set rate_per_s to a positive value")
        if num is None and dur is None:
            raise ScenarioError("workload.num_requests", "missing: give num_requests or duration_s",
                                "add num_requests = 1000 (or duration_s = 600)")
        if num is not None and dur is not None:
            raise ScenarioError("workload.duration_s", "give either num_requests or duration_s, not both",
                                "remove one of them")
    for k in ("prompt_tokens", "output_tokens"):
        if kw[k] is None:
            raise ScenarioError(f"workload.{k}", "missing", f"add {k} = ... to [workload]")


def _no_effect(kw: dict[str, Any], given: Mapping[str, Any]) -> None:
    """A warning for each key given that does nothing with this arrival process."""
    arrival = kw["arrival"]
    if "cv" in given and arrival != "gamma":
        warn("workload.cv", f"has no effect with arrival = \"{arrival}\"", "remove it, or use arrival = \"gamma\"")
    if arrival != "trace":
        for k in ("trace", "trace_format", "time_scale"):
            if k in given:
                warn(f"workload.{k}", f"has no effect with arrival = \"{arrival}\"",
                     "remove it, or use arrival = \"trace\"")
    elif "rate_per_s" in given:
        warn("workload.rate_per_s", "has no effect with arrival = \"trace\" (the trace sets the arrival times)",
             "remove it; time_scale speeds the trace up")


def _rate_points(key_: str, raw: Mapping[str, Any], duration: float, base_dir: Path) -> tuple[tuple, dict]:
    """(t_s, rate_per_s) points of workload.diurnal (every 5 minutes over the run: rate =
    trough + (peak - trough) x (1 + cos(2 pi (hour - peak_hour) / 24)) / 2, t = 0 at midnight) or
    of workload.rate_profile (a CSV file: t_s and the named rate column, from 0, increasing); and
    the table as the effective scenario writes it (defaults in, the file's path absolute)."""
    if key_ == "diurnal":
        d = read(Diurnal, raw, "workload.diurnal")
        ts = np.arange(0.0, duration + 300.0, 300.0)
        rates = d.trough_rate_per_s + (d.peak_rate_per_s - d.trough_rate_per_s) * (
            1 + np.cos(2 * np.pi * (ts / 3600.0 - d.peak_hour) / 24.0)) / 2
        return tuple(zip(ts.tolist(), rates.tolist(), strict=True)), effective(d)
    rp = read(RateProfile, raw, "workload.rate_profile")
    path = base_dir / rp.file
    import csv

    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ScenarioError("workload.rate_profile.file", f"cannot read {path}: {exc.strerror}",
                            "give a CSV file with columns t_s and the rate column") from None
    col = rp.column
    if not rows or "t_s" not in rows[0] or col not in rows[0]:
        raise ScenarioError("workload.rate_profile.column", f"{path} needs columns t_s and {col!r}",
                            "name the rate column with column = \"...\"")
    pts: list[tuple[float, float]] = []
    for i, r in enumerate(rows):
        try:
            ti, ri = float(r["t_s"]), float(r[col])
        except (TypeError, ValueError):
            raise ScenarioError("workload.rate_profile.file", f"{path} line {i + 2}: a gap (t_s {r['t_s']!r}, "
                                f"{col} {r[col]!r})", "give a number in every row") from None
        if not (np.isfinite(ti) and np.isfinite(ri)) or ri < 0:
            raise ScenarioError("workload.rate_profile.file", f"{path} line {i + 2}: rate {ri:g} at t_s {ti:g}",
                                "rates are finite and >= 0")
        if (i == 0 and ti != 0.0) or (i > 0 and ti <= pts[-1][0]):
            raise ScenarioError("workload.rate_profile.file", f"{path} line {i + 2}: t_s {ti:g} leaves a gap "
                                f"(the profile starts at 0 and increases)", "sort the rows and start at t_s = 0")
        pts.append((ti, ri))
    if max(r for _, r in pts) <= 0:
        raise ScenarioError("workload.rate_profile.file", f"{path}: every rate is 0", "give some positive rate")
    return tuple(pts), {"file": str(path.resolve()), "column": col}


@dataclass(frozen=True, kw_only=True)
class Diurnal:
    """workload.diurnal: rate = trough + (peak - trough) x (1 + cos(2 pi (hour - peak_hour) / 24)) / 2."""

    peak_rate_per_s: float = key(REQUIRED, "the rate at peak_hour", positive=True, unit="req/s")
    trough_rate_per_s: float = key(REQUIRED, "the rate 12 hours from it", nonneg=True, unit="req/s")
    peak_hour: float = key(15.0, "the hour of the peak (t = 0 is midnight)", nonneg=True, unit="h")

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Any, t: Table) -> dict[str, Any]:
        if kw["trough_rate_per_s"] > kw["peak_rate_per_s"]:
            raise ScenarioError(f"{path}.trough_rate_per_s", f"{kw['trough_rate_per_s']:g} is above peak_rate_per_s "
                                f"{kw['peak_rate_per_s']:g}", "give the trough at or below the peak")
        return kw


@dataclass(frozen=True, kw_only=True)
class RateProfile:
    """workload.rate_profile: the rate over time from a CSV file (linear between rows, held after
    the last)."""

    file: str = key(REQUIRED, "the CSV file: a t_s column from 0, increasing, and a rate column")
    column: str = key("rate_per_s", "the rate column's name")


# --- [[pools]] and its tables -----------------------------------------------------------------------

def _policy(registry: Any) -> Any:
    def parse(raw: Any, path: str, ctx: Context, kw: Any = None) -> str:
        if not isinstance(raw, str):
            raise ScenarioError(path, f"must be str, got {raw!r}", f"write {path.rsplit('.', 1)[-1]} = <str>")
        return str(registry.validate(raw, path, ctx.base_dir))
    return parse


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """[pools.scheduler]: the replica's batch scheduler and paged KV cache (vLLM's knobs)."""

    policy: str = key("chunked", "the batch scheduler (dcsim policies), or a plug-in \"file.py:Class\"",
                      parse=_policy(SCHEDULERS), kind=str)
    max_batch_size: int = key(256, "the most sequences in a step (vLLM max_num_seqs)", positive=True)
    max_batched_tokens: int = key(8192, "the most tokens in a step (vLLM max_num_batched_tokens)", positive=True)
    kv_memory_fraction: float = key(0.9, "the share of accelerator memory for weights and KV (vLLM "
                                    "gpu_memory_utilization)", positive=True)
    block_size: int = key(16, "tokens per KV block", positive=True)
    prefix_caching: bool = key(False, "automatic prefix caching: shared leading blocks are computed once")
    ageing_s: float = key(10.0, "sjf: a request waiting this long is served before shorter ones", positive=True,
                          unit="s")

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Any, t: Table) -> dict[str, Any]:
        if kw["kv_memory_fraction"] > 1:
            raise ScenarioError(f"{path}.kv_memory_fraction", f"must be in (0, 1], got {kw['kv_memory_fraction']}")
        return kw


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """[pools.service]: analytic service times instead of a scheduler (one request at a time, no KV)."""

    dist: str = key(REQUIRED, "the service time's distribution", choices=SERVICE_DISTS)
    mean_s: float = key(REQUIRED, "its mean", positive=True, unit="s")


@dataclass(frozen=True, kw_only=True)
class PoolCost:
    """[pools.cost]: this pool's accelerator price, before [cost]: rent, or capex amortised."""

    usd_per_accel_hour: float | None = key(None, "rent per accelerator-hour", nonneg=True, unit="$")
    capex_usd_per_accel: float | None = key(None, "or the purchase price, amortised", nonneg=True, unit="$")
    amortization_years: float = key(4.0, "capex is spread over this many years", positive=True, unit="years")

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Any, t: Table) -> dict[str, Any]:
        if kw["usd_per_accel_hour"] is not None and kw["capex_usd_per_accel"] is not None:
            raise ScenarioError(f"{path}.capex_usd_per_accel", "give either rent (usd_per_accel_hour) or capex, not "
                                "both", "remove one of them")
        return kw


@dataclass(frozen=True, kw_only=True)
class CostConfig(PoolCost):
    """[cost]: money: rent (usd_per_accel_hour) or capex amortised over years, energy price, and a
    facility overhead per hour. Unset rent falls back to the hardware catalog's typical rate."""

    usd_per_mwh: float = key(0.0, "the energy price (facility energy)", nonneg=True, unit="$/MWh")
    facility_usd_per_hour: float = key(0.0, "the facility's other costs per hour", nonneg=True, unit="$/h")


@dataclass(frozen=True, kw_only=True)
class KVOffload:
    """[pools.kv_offload]: prefix-cache blocks evicted from HBM go to a tier of capacity_gb per
    replica (least recently used out first) and come back over gbps (the replica's read
    bandwidth from it, all its accelerators' links together) instead of being recomputed."""

    tier: str = key("cpu", "where: host memory or local SSD", choices=KV_TIERS)
    capacity_gb: float = key(REQUIRED, "the tier's size per replica", positive=True, unit="GB")
    gbps: float = key(REQUIRED, "the replica's read bandwidth from it", positive=True, unit="Gb/s")


@dataclass(frozen=True, kw_only=True)
class AutoscalerConfig:
    """[autoscaler] / [pools.autoscaler]: how many of the pool's max_replicas serve, decided
    every interval_s by a policy (sim/policies/autoscalers.py). A replica added serves after its
    cold start: start_s plus its weights over load_gbps; one removed drains first."""

    policy: str = key("queue", "the autoscaling policy (dcsim policies), or a plug-in", parse=_policy(AUTOSCALERS),
                      kind=str)
    min_replicas: int = key(1, "the fewest replicas serving", positive=True)
    max_replicas: int = key(REQUIRED, "the most (every one is built; those off draw nothing)", positive=True)
    initial_replicas: int = 1  # serving at t = 0 (the pool's `replicas` key; default min_replicas)
    interval_s: float = key(30.0, "time between decisions", positive=True, unit="s")
    scale_down_delay_s: float = key(300.0, "scale down to the highest recommendation of this window", nonneg=True,
                                    unit="s")
    # ASSUMED defaults: a replica reads its weights at 25 Gb/s (about 3 GB/s: one local NVMe
    # drive, or a fast object-store client) and spends 60 s starting (container, engine, graphs)
    load_gbps: float = key(25.0, "a starting replica reads its weights at this rate (ASSUMED)", positive=True,
                           unit="Gb/s")
    start_s: float = key(60.0, "and spends this long starting (ASSUMED)", nonneg=True, unit="s")
    target: float | None = key(None, "the policy's set point (default: the policy's)", positive=True)


def _pool_name(ctx: Context, kw: Any) -> str:
    return f"pool{ctx.index}"


def _hardware(raw: Any, path: str, ctx: Context, kw: Any = None) -> Hardware:
    if not isinstance(raw, str):
        raise ScenarioError(path, f"must be str, got {raw!r}", "write hardware = <str>")
    return ctx.catalog.get_hardware(raw, path)


def _model(raw: Any, path: str, ctx: Context, kw: Any = None) -> Model:
    if not isinstance(raw, str):
        raise ScenarioError(path, f"must be str, got {raw!r}", "write model = <str>")
    return ctx.catalog.get_model(raw, path)


def _table_of(cls: type) -> Any:
    def parse(raw: Any, path: str, ctx: Any, kw: Any = None) -> Any:
        return read(cls, raw, path, ctx) if raw is not None else None
    return parse


def _variability(raw: Any, path: str, ctx: Context, kw: dict[str, Any]) -> Variability:
    """[pools.variability]: false (the default: deterministic steps), true (the values fitted for
    the model's kind), or a table overriding some of those (sim/perf/variability.py)."""
    if raw is False:
        return OFF
    base = var_defaults("moe" if kw["model"].is_moe else "dense")
    if raw is True:
        return Variability.given(base, True)
    if not isinstance(raw, Mapping):
        raise ScenarioError(path, f"must be bool or dict, got {raw!r}", "write variability = <bool or dict>")
    return Variability.given(read(Variability, raw, path, base), copy.deepcopy(dict(raw)))


def _speculative(raw: Any, path: str, ctx: Context, kw: dict[str, Any]) -> Speculative | None:
    if raw is None:
        return None
    return read(Speculative, raw, path, {"catalog": ctx.catalog, "classes": ctx.classes, "model": kw["model"]})


def _autoscaler_table(raw: Any, path: str, ctx: Context, kw: Any = None) -> Any:
    if raw is not None and not isinstance(raw, Mapping):
        raise ScenarioError(path, f"must be dict, got {raw!r}", "write autoscaler = <dict>")
    return raw  # (merged with the scenario's [autoscaler] in PoolConfig.resolve)


def _id(v: Any, obj: Any = None) -> Any:
    return v.id


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    """[[pools]]: identical replicas of one model on one kind of accelerator."""

    name: str = key(REQUIRED, "the pool's name", derive=_pool_name, doc_default='"pool<i>"')
    hardware: Hardware = key(REQUIRED, "the accelerator (dcsim catalog, or your [hardware] table)", kind=str,
                             parse=_hardware, write=_id)
    model: Model = key(REQUIRED, "the model (dcsim catalog, or your [models] table)", kind=str, parse=_model,
                       write=_id)
    dtype: str = key("bf16", "weights' precision", choices=tuple(DTYPE_BYTES))
    kv_dtype: str = key(REQUIRED, "the KV cache's precision", choices=tuple(DTYPE_BYTES),
                        derive=lambda ctx, kw: kw["dtype"], doc_default="dtype")
    replicas: int = key(1, "replicas (autoscaled: those serving at first)", positive=True,
                        write=lambda v, o: o.autoscaler.initial_replicas if o.autoscaler is not None else v)
    tp: int = key(1, "tensor-parallel degree: accelerators per replica", positive=True)
    ep: int = key(1, "expert-parallel degree: > 1 splits a MoE model's routed experts over this many accelerators "
                  "(a multiple of tp)", positive=True, shown=lambda v: v["ep"] > 1)
    moe_imbalance: float = key(1.0, "with ep: the busiest accelerator's expert load over the mean", lo=1.0, hi=64.0,
                               hint="e.g. moe_imbalance = 1.3", shown=lambda v: v["ep"] > 1)
    scheduler: SchedulerConfig = key(REQUIRED, "[pools.scheduler]", kind=dict, parse=_table_of(SchedulerConfig),
                                     derive=lambda ctx, kw: read(SchedulerConfig, {}, f"pools[{ctx.index}].scheduler",
                                                                 ctx))
    service: ServiceConfig | None = key(None, "[pools.service]: analytic service times instead of a scheduler",
                                        kind=dict, parse=_table_of(ServiceConfig))
    variability: Variability = key(OFF, "step-time warm-up and jitter: false, true (fitted) or a table",
                                   kind=(bool, dict), parse=_variability,
                                   write=lambda v, o: v.source if v.source is not None else OMIT)
    tent: str | None = key(None, "the facility's tent it is placed in (default: the first)")
    priority: int = key(0, "the power manager caps and drains pools with a higher value first",
                        shown=lambda v: v["priority"] != 0)
    clock_lock: float = key(1.0, "the SM clock locked at this fraction of the part's maximum", positive=True, hi=1.0,
                            hint="a fraction of the part's maximum clock, e.g. 0.8",
                            shown=lambda v: v["clock_lock"] != 1.0)
    cost: PoolCost | None = key(None, "[pools.cost]: this pool's accelerator price, before [cost]", kind=dict,
                                parse=_table_of(PoolCost))
    role: str = key("mixed", "prefill/decode disaggregation (docs/disaggregation.md)", choices=ROLES,
                    shown=lambda v: v["role"] != "mixed")
    speculative: Speculative | None = key(None, "[pools.speculative]: speculative decoding", kind=dict,
                                          parse=_speculative)
    kv_offload: KVOffload | None = key(None, "[pools.kv_offload]: a KV tier below HBM for evicted prefix-cache "
                                       "blocks", kind=dict, parse=_table_of(KVOffload))
    autoscaler: AutoscalerConfig | None = key(None, "[pools.autoscaler]: how many of its replicas serve "
                                              "(over the scenario's [autoscaler])", kind=dict, parse=_autoscaler_table,
                                              derive=lambda ctx, kw: None)

    @property
    def accels(self) -> int:
        """Accelerators per replica: ep with expert parallelism, else tp."""
        return self.ep if self.ep > 1 else self.tp

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Context, t: Table) -> dict[str, Any]:
        model, tp, ep, imb = kw["model"], kw["tp"], kw["ep"], kw["moe_imbalance"]
        model.check_tp(tp, f"{path}.tp")
        _expert_parallel(model, tp, ep, imb, path)
        if kw["kv_offload"] is not None and not kw["scheduler"].prefix_caching:
            raise ScenarioError(f"{path}.kv_offload", "the tier keeps blocks evicted from the prefix cache, which is "
                                "off", "set scheduler.prefix_caching = true in this pool")
        ascale = _autoscaler(kw["autoscaler"], ctx.scale_all, kw["name"], path,
                             kw["replicas"] if "replicas" in t.data else None, ctx.base_dir)
        kw["autoscaler"] = ascale
        if ascale is not None:
            kw["replicas"] = ascale.max_replicas  # every replica it may use is built; those beyond initial start off
        if kw["role"] != "mixed" and kw["service"] is not None:
            raise ScenarioError(f"{path}.role", "a pool with analytic [pools.service] times has no KV to hand off",
                                "remove role or the service table")
        if kw["speculative"] is not None and kw["service"] is not None:
            raise ScenarioError(f"{path}.speculative", "a pool with analytic [pools.service] times has no decode "
                                "steps to speculate on", "remove one of the two tables")
        return kw


def _expert_parallel(model: Model, tp: int, ep: int, imb: float, path: str) -> None:
    """pools.ep and pools.moe_imbalance, checked against the model."""
    if ep > 1:
        if not model.is_moe:
            raise ScenarioError(f"{path}.ep", f"{model.id} has no experts to split", "remove ep (use tp or replicas)")
        if model.experts % ep:
            divs = [d for d in range(2, model.experts + 1) if model.experts % d == 0 and d % tp == 0]
            raise ScenarioError(f"{path}.ep", f"{ep} does not divide {model.id}'s {model.experts} routed experts",
                                f"use one of {', '.join(map(str, divs[:12]))}")
        if ep % tp:
            raise ScenarioError(f"{path}.ep", f"must be a multiple of tp ({tp}): attention runs in ep / tp ranks of tp",
                                f"set ep to a multiple of {tp}")
    if imb != 1.0 and ep == 1:
        raise ScenarioError(f"{path}.moe_imbalance", "needs ep > 1 (with tensor parallelism every accelerator holds "
                            "a slice of every expert: no accelerator is busier)", "set ep, or remove moe_imbalance")


def _autoscaler(own: Any, every: Any, pool: str, path: str, replicas: int | None,
                base_dir: Path) -> AutoscalerConfig | None:
    """[pools.autoscaler], over the scenario's [autoscaler] (which applies to every pool, or to
    those it names in `pools`); None when neither applies."""
    if every is not None and "pools" in every:
        names = every["pools"]
        if not (isinstance(names, list) and all(isinstance(x, str) for x in names)):
            raise ScenarioError("autoscaler.pools", f"must be a list of pool names, got {names!r}",
                                'e.g. pools = ["decode"]')
        if pool not in names:
            every = None
    if own is None and every is None:
        return None
    merged = {k: v for k, v in (every or {}).items() if k != "pools"}
    merged.update(own or {})
    ap = f"{path}.autoscaler" if own is not None else "autoscaler"
    cfg = read(AutoscalerConfig, merged, ap, Context(builtin_catalog(), base_dir))
    initial = replicas if replicas is not None else cfg.min_replicas
    lo, hi = cfg.min_replicas, cfg.max_replicas
    if lo > hi:
        raise ScenarioError(f"{ap}.min_replicas", f"min_replicas {lo} is above max_replicas {hi}",
                            "lower min_replicas or raise max_replicas")
    if not lo <= initial <= hi:
        raise ScenarioError(f"{path}.replicas", f"{initial} replicas at the start is outside the "
                            f"autoscaler's [{lo}, {hi}]", "set replicas between min_replicas and max_replicas, or "
                            "remove it (the autoscaler starts at min_replicas)")
    return dataclasses_replace(cfg, initial_replicas=initial)


def dataclasses_replace(obj: Any, **kw: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **kw)


def accel_usd_per_hour(pool: PoolConfig, cost: CostConfig | None) -> float | None:
    """One accelerator-hour of `pool`: its own [pools.cost], else the scenario's [cost] (rent, or
    capex over the amortisation years), else the hardware's catalog rate (settable as
    hardware.<id>.usd_per_accel_hour); None when none is known."""
    for c in (pool.cost, cost):
        if c is not None and c.capex_usd_per_accel is not None:
            return c.capex_usd_per_accel / (c.amortization_years * 8760.0)
        if c is not None and c.usd_per_accel_hour is not None:
            return c.usd_per_accel_hour
    return pool.hardware.usd_per_accel_hour


def _check_fits(pool: PoolConfig, path: str) -> None:
    from sim.perf.roofline import PerfModel

    pm = PerfModel(pool.hardware, pool.model, pool.tp, pool.dtype, pool.kv_dtype, pool.clock_lock,
                   speculative=pool.speculative, ep=pool.ep, moe_imbalance=pool.moe_imbalance)
    sch = pool.scheduler
    usable = pool.hardware.memory_bytes * pool.accels * sch.kv_memory_fraction
    if pool.ep > 1 and pm.group_weight_bytes >= usable:
        per = pm.group_weight_bytes / pool.ep
        raise ScenarioError(f"{path}.ep", f"{pool.model.id} needs {per / 1e9:.1f} GB of weights on each of {pool.ep} "
                            f"{pool.hardware.id} ({usable / pool.ep / 1e9:.1f} GB usable each)",
                            "raise ep (fewer experts each), use dtype = \"fp8\", or pick hardware with more memory")
    if pool.speculative is not None and pm.weight_bytes < usable <= pm.weight_bytes + pm.drafter_weight_bytes:
        raise ScenarioError(f"{path}.speculative", f"the drafter's weights ({pm.drafter_weight_bytes / 1e9:.1f} GB) do "
                            f"not fit beside {pool.model.id}'s", "use a smaller draft_model, method = \"eagle\" or a "
                            "larger tp")
    if pool.kv_offload is not None:
        if not pm.kv_tier_pays(sch.block_size, pool.kv_offload.gbps):
            load, redo = pm.kv_block_load_s(sch.block_size, pool.kv_offload.gbps), pm.block_recompute_s(sch.block_size)
            warn(f"{path}.kv_offload.gbps", f"loading a KV block ({load * 1e3:.3g} ms) is no faster than recomputing "
                 f"it ({redo * 1e3:.3g} ms): the tier is not used", "raise gbps (PCIe 5.0 x16: about 500)")
    if pm.weight_bytes >= usable:
        fits = [t for t in pool.model.tp_degrees() if t > pool.tp
                and pm.weight_bytes < pool.hardware.memory_bytes * t * sch.kv_memory_fraction]
        raise ScenarioError(
            f"{path}.tp",
            f"{pool.model.id} weights ({pm.weight_bytes / 1e9:.1f} GB in {pool.dtype}) do not fit in "
            f"{pool.tp} x {pool.hardware.id} ({usable / 1e9:.1f} GB usable at kv_memory_fraction "
            f"{sch.kv_memory_fraction})",
            (f"raise tp to {fits[0]} (a degree that splits the model's heads), " if fits else "")
            + "use dtype = \"fp8\", or pick hardware with more memory")
    if pm.kv_blocks(sch.kv_memory_fraction, sch.block_size) < 1:
        raise ScenarioError(f"{path}.scheduler.kv_memory_fraction", "no room left for one KV block beside the weights",
                            "raise kv_memory_fraction or tp")


# --- [router], [run], [network] ---------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RouterConfig:
    """[router]: which replica each request goes to."""

    policy: str = key("round_robin", "the router (dcsim policies), or a plug-in \"file.py:Class\"",
                      parse=_policy(ROUTERS), kind=str)
    decode_policy: str = key("least_kv", "disaggregated models: the decode replica of a prefilled request",
                             choices=DECODE_ROUTERS, shown=lambda v: v.get("_disaggregated", False))


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """[run]: how the simulation runs."""

    horizon_s: float | None = key(None, "stop at this simulated time (none: when the last request leaves)",
                                  positive=True, hi=1e12, unit="s",
                                  hint="energy = watts x seconds must stay finite: at most 1e12 s (about 31,700 years)")
    timeseries: bool = key(True, "record each replica's batch, KV and queue at every step (timeseries.parquet)")
    fast_forward: bool = key(True, "advance stable decode batches many steps at once (exact)")
    engine: str = key("auto", "\"compiled\", \"simpy\" (the per-step driver), or \"auto\": compiled where it applies",
                      choices=ENGINES)


@dataclass(frozen=True, kw_only=True)
class Link:
    """[[network.links]]: a link between two nodes, shared by the transfers that cross it."""

    a: str = key(REQUIRED, "one end (a node)", toml="from")
    b: str = key(REQUIRED, "the other end", toml="to")
    fabric: str | None = key(None, "a preset for gbps and latency_us", choices=tuple(FABRICS), write=lambda v, o: OMIT)
    gbps: float = key(None, "its bandwidth", kind=float, positive=True, unit="Gb/s", doc_default="the fabric's")
    latency_us: float = key(None, "its latency", kind=float, nonneg=True, unit="us", doc_default="the fabric's, or 0")

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Any, t: Table) -> dict[str, Any]:
        f = kw["fabric"]
        if kw["gbps"] is None:
            if f is None:
                raise ScenarioError(f"{path}.gbps", "missing", "add gbps = ... to [network.links]")
            kw["gbps"] = FABRICS[f][0]
        if kw["latency_us"] is None:
            kw["latency_us"] = FABRICS[f][1] if f is not None else 0.0
        return kw


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """[[network.nodes]]: a place pools sit (a rack, a switch domain)."""

    name: str = key(REQUIRED, "the node's name")
    pools: list = key([], "the pools placed there", kind=list)


def _nodes(raw: Any, path: str, ctx: Context, kw: Any = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, list):
        _must(path, "list", raw)
    out: list[tuple[str, tuple[str, ...]]] = []
    for k, nd in enumerate(raw):
        n = read(NodeSpec, nd, f"{path}[{k}]")
        if n.name in {x for x, _ in out}:
            raise ScenarioError(f"{path}[{k}].name", f"duplicate node {n.name!r}", "give each node its own name")
        out.append((n.name, tuple(n.pools)))
    return tuple(out)


def _links(raw: Any, path: str, ctx: Context, kw: Any = None) -> tuple[Link, ...]:
    if not isinstance(raw, list):
        _must(path, "list", raw)
    return tuple(read(Link, lk, f"{path}[{k}]") for k, lk in enumerate(raw))


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """[network]: how KV moves from a prefill replica to a decode replica: each accelerator's port
    (Gb/s, latency), and optionally where pools sit (nodes: racks, switch domains) and the links
    between those places, shared by the transfers that cross them."""

    fabric: str = key("ib-400g", "each accelerator's port: a preset for gbps and latency_us", choices=tuple(FABRICS))
    gbps: float = key(400.0, "the port's bandwidth", positive=True, unit="Gb/s",
                      derive=lambda ctx, kw: FABRICS[kw["fabric"]][0], doc_default="the fabric's")
    latency_us: float = key(5.0, "the port's latency", nonneg=True, unit="us",
                            derive=lambda ctx, kw: FABRICS[kw["fabric"]][1], doc_default="the fabric's")
    gpus_per_node: int = key(8, "a replica with a larger TP group spans nodes: its all-reduce uses the ports",
                             positive=True)
    nodes: tuple[tuple[str, tuple[str, ...]], ...] = key(
        (),
        "[[network.nodes]]: name, pools",
        kind=list,
        parse=_nodes,
        write=lambda v, o: [{"name": n, "pools": list(p)} for n, p in v] if v else OMIT,
    )
    links: tuple[Link, ...] = key((), "[[network.links]]: from, to, gbps (or fabric), latency_us", kind=list,
                                  parse=_links, write=lambda v, o: [effective(x) for x in v] if o.nodes else OMIT)

    def scaleout(self, tp: int) -> tuple[float, float] | None:
        """(bytes/s, latency s) of the ports a TP group of `tp` all-reduces over when it spans
        nodes (None: it fits in one node, on the part's scale-up link)."""
        return (self.gbps * 1e9 / 8.0, self.latency_us * 1e-6) if tp > self.gpus_per_node else None

    def graph(self) -> Any:
        """The network as a networkx graph: nodes, and links with gbps and latency_us."""
        import networkx as nx

        g = nx.Graph()
        for name, pools in self.nodes:
            g.add_node(name, pools=pools)
        for ln in self.links:
            g.add_edge(ln.a, ln.b, gbps=ln.gbps, latency_us=ln.latency_us)
        return g

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Context, t: Table) -> dict[str, Any]:
        pools = ctx.pools_raw  # the PoolConfigs
        names = [p.name for p in pools]
        placed: dict[str, str] = {}
        for k, (node, ps) in enumerate(kw["nodes"]):
            for pn in ps:
                if pn not in names:
                    raise ScenarioError(f"network.nodes[{k}].pools", f"no pool named {pn!r}",
                                        f"use one of: {', '.join(names)}")
                if pn in placed:
                    raise ScenarioError(f"network.nodes[{k}].pools", f"pool {pn!r} is already on node {placed[pn]!r}",
                                        "place each pool on one node")
                placed[pn] = node
        known = {n for n, _ in kw["nodes"]}
        for k, ln in enumerate(kw["links"]):
            for key_, v in (("from", ln.a), ("to", ln.b)):
                if v not in known:
                    raise ScenarioError(
                        f"network.links[{k}].{key_}",
                        f"no node named {v!r}",
                        f"declare it under [[network.nodes]] (known: {', '.join(sorted(known)) or 'none'})",
                    )
        if kw["nodes"]:
            unplaced = [p.name for p in pools if p.role != "mixed" and p.name not in placed]
            if unplaced:
                raise ScenarioError("network.nodes", f"pool {unplaced[0]!r} is on no node",
                                    "list every prefill and decode pool under one [[network.nodes]]")
            import networkx as nx

            g = cls(**{k: v for k, v in kw.items()}).graph()
            for m in dict.fromkeys(p.model.id for p in pools):
                pre = [p.name for p in pools if p.model.id == m and p.role == "prefill"]
                dec = [p.name for p in pools if p.model.id == m and p.role == "decode"]
                for a in pre:
                    for b in dec:
                        if not nx.has_path(g, placed[a], placed[b]):
                            raise ScenarioError("network.links", f"no path from node {placed[a]!r} (pool {a!r}) to "
                                                f"{placed[b]!r} (pool {b!r}): their KV cannot move",
                                                "add [[network.links]] between them")
        return kw


# --- the scenario ------------------------------------------------------------------------------

def _catalog_write(v: Any, obj: Any) -> Any:
    return v if v else OMIT


def _path_write(v: Any, obj: Any) -> Any:
    return v if v is not None else OMIT


def _any_table(name: str) -> Any:
    def parse(raw: Any, path: str, ctx: Any, kw: Any = None) -> Any:
        if not isinstance(raw, Mapping):
            _must(path, "dict", raw)
        return copy.deepcopy(dict(raw))
    return parse


def _pools(raw: Any, path: str, ctx: Context, kw: dict[str, Any]) -> tuple[PoolConfig, ...]:
    if not isinstance(raw, list):
        _must(path, "list", raw)
    if not raw:
        raise ScenarioError("pools", "empty", "add at least one [[pools]] table")
    out = []
    for i, p in enumerate(raw):
        c = Context(ctx.catalog, ctx.base_dir, kw["workload"].classes, kw.get("autoscaler"), i)
        pool = read(PoolConfig, p, f"pools[{i}]", c)
        if pool.service is None:
            _check_fits(pool, f"pools[{i}]")
        out.append(pool)
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A whole scenario: the top level of its TOML file."""

    catalog: str | None = key(None, "a catalog file of your own hardware and models (relative to the scenario)",
                              write=_path_write)
    hardware_tables: Mapping[str, Any] = key({}, "[hardware.<id>]: your accelerators, or changes to the catalog's",
                                             toml="hardware", kind=dict, parse=_any_table("hardware"),
                                             write=_catalog_write)
    model_tables: Mapping[str, Any] = key({}, "[models.<id>]: your models, or changes to the catalog's",
                                          toml="models", kind=dict, parse=_any_table("models"), write=_catalog_write)
    name: str = key("scenario", "the scenario's name")
    seed: int = key(0, "the random seed: the same scenario and seed give the same results", nonneg=True)
    workload: WorkloadConfig = key(REQUIRED, "[workload]", kind=dict, parse=_table_of(WorkloadConfig))
    autoscaler: Mapping[str, Any] | None = key(None, "[autoscaler]: autoscale every pool (or those in its `pools`) "
                                               "with these keys of [pools.autoscaler]", kind=dict,
                                               parse=_any_table("autoscaler"), write=lambda v, o: OMIT)
    pools: tuple[PoolConfig, ...] = key(REQUIRED, "[[pools]]", kind=list, parse=_pools,
                                        write=lambda v, o: [effective(p) for p in v])
    router: RouterConfig = key(REQUIRED, "[router]", kind=dict, parse=_table_of(RouterConfig),
                               derive=lambda ctx, kw: read(RouterConfig, {}, "router", ctx),
                               write=lambda v, o: {**effective(v), **({"decode_policy": v.decode_policy}
                                                                      if o.disaggregated else {})})
    network: NetworkConfig = key(REQUIRED, "[network]: KV transfers between prefill and decode replicas", kind=dict,
                                 parse=lambda v, p, c, kw: read(NetworkConfig, v, p, _with_pools(c, kw)),
                                 derive=lambda ctx, kw: None, write=lambda v, o: effective(v) if o.network_given
                                 else OMIT)
    slo: SLO = key(REQUIRED, "[slo]: latency objectives", kind=dict, parse=lambda v, p, c, kw: read(SLO, v, p),
                   derive=lambda ctx, kw: SLO(), write=_slo_write)
    facility: Any = key(None, "[facility]: power sources, tents and the power manager (docs/power.md)", kind=dict,
                        parse=lambda v, p, c, kw: v, write=lambda v, o: effective(v) if v is not None and v.declared
                        else OMIT)
    failures: Any = key(None, "[failures]: node failures", kind=dict, parse=lambda v, p, c, kw: v,
                        write=lambda v, o: effective(o.facility.failures) if o.facility is not None
                        and o.facility.failures_given else OMIT)
    cost: CostConfig | None = key(None, "[cost]: prices", kind=dict, parse=_table_of(CostConfig))
    run: RunConfig = key(REQUIRED, "[run]", kind=dict, parse=_table_of(RunConfig),
                         derive=lambda ctx, kw: RunConfig())
    base_dir: Path = Path(".")
    raw: Mapping[str, Any] = field(default_factory=dict)  # the effective scenario (defaults filled in)
    network_given: bool = False

    @property
    def disaggregated(self) -> bool:
        return any(p.role != "mixed" for p in self.pools)

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Context, t: Table) -> dict[str, Any]:
        pools = kw["pools"]
        if kw["autoscaler"] is not None and not any(p.autoscaler for p in pools):
            raise ScenarioError("autoscaler.pools", f"names none of the pools ({', '.join(p.name for p in pools)})",
                                "name at least one pool, or remove pools to scale every pool")
        names = [p.name for p in pools]
        if len(set(names)) != len(names):
            raise ScenarioError("pools.name", f"duplicate pool names {names}", "give each pool a unique name")
        _check_models(kw["workload"], pools, ctx.catalog)
        kw["network_given"] = kw["network"] is not None
        if kw["network"] is None:
            kw["network"] = read(NetworkConfig, {}, "network", _with_pools(ctx, kw))
        _check_roles(pools, kw["router"])
        facility = parse_facility(kw["facility"], kw["failures"], t.data.get("pools", []), pools, ctx.base_dir)
        if facility is None and any(p.autoscaler for p in pools):  # its controller runs with the facility's events
            facility = Facility.empty()
        for i, p in enumerate(pools):
            tent = p.tent if p.tent is not None else (facility.tents[0].name if facility and facility.tents else None)
            if p.autoscaler is not None and tent is not None and facility is not None \
                    and facility.tent(tent).commission_s > 0:
                raise ScenarioError(f"pools[{i}].autoscaler", f"pool {p.name!r} is autoscaled in tent {tent!r}, which "
                                    "is commissioned later (commission_s): the two would both switch its replicas on",
                                    "set the tent's commission_s = 0 or autoscale another pool")
        kw["facility"] = facility
        kw["failures"] = None
        return kw


def _with_pools(ctx: Context, kw: dict[str, Any]) -> Context:
    return Context(ctx.catalog, ctx.base_dir, pools_raw=kw["pools"])


def _check_roles(pools: tuple[PoolConfig, ...], router: RouterConfig) -> None:
    """Each model is served co-located (mixed pools) or disaggregated (prefill and decode
    pools), and a disaggregated one's KV layout can move between its pools."""
    for m in dict.fromkeys(p.model.id for p in pools):
        mine = [(i, p) for i, p in enumerate(pools) if p.model.id == m]
        roles = {p.role for _, p in mine}
        if roles == {"mixed"}:
            continue
        first = next(i for i, p in mine if p.role != "mixed")
        if "mixed" in roles:
            i = next(i for i, p in mine if p.role == "mixed")
            raise ScenarioError(f"pools[{i}].role", f"{m} is served disaggregated (pools[{first}] has role "
                                f"{pools[first].role!r}) and co-located here", 'give every pool of a model '
                                'role = "prefill" or "decode", or leave them all "mixed"')
        if roles != {"prefill", "decode"}:
            missing = "decode" if "prefill" in roles else "prefill"
            raise ScenarioError(f"pools[{first}].role", f"{m} has {pools[first].role} pools but no {missing} pool",
                                f'add a [[pools]] with model = "{m}" and role = "{missing}"')
        if router.policy == "central_queue":
            raise ScenarioError("router.policy", "central_queue is one queue of whole requests: it cannot hand "
                                "prefilled requests to decode pools", "use a per-request router (e.g. jsq)")
        kvd = {p.kv_dtype for _, p in mine}
        if len(kvd) > 1:
            raise ScenarioError(f"pools[{first}].kv_dtype", f"{m}'s prefill and decode pools keep KV as "
                                f"{', '.join(sorted(kvd))}: the KV cannot be handed over as it is",
                                "give its prefill and decode pools one kv_dtype")


def _check_models(w: WorkloadConfig, pools: tuple[PoolConfig, ...], cat: Any) -> None:
    """Requests that name a model name a catalog one; pools that serve several models need
    requests that say which (a class without a model would go to any of them)."""
    for k, c in enumerate(w.classes):
        if c.model is not None and c.model not in cat.models:
            raise ScenarioError(f"workload.classes[{k}].model", f"unknown model {c.model!r}",
                                f"use a catalog id ({', '.join(sorted(cat.models))}) or declare it under [models]")
    served = sorted({p.model.id for p in pools})
    if len(served) > 1:
        unnamed = [k for k, c in enumerate(w.classes) if c.model is None]
        if not w.classes or unnamed:
            where = f"workload.classes[{unnamed[0]}].model" if w.classes else "workload.classes"
            raise ScenarioError(where, f"the pools serve several models ({', '.join(served)}) but "
                                f"{'the requests name none' if not w.classes else 'this class names none'}",
                                "give each [[workload.classes]] a model = \"...\" (one of those served)")
    for k, c in enumerate(w.classes):
        if c.model is not None and c.model not in served:
            warn(f"workload.classes[{k}].model", f"no pool serves {c.model!r}: its requests are rejected "
                 "(reason no_pool_for_model)", f"add a pool with model = {c.model!r} or use one of {', '.join(served)}")


def _absolute_paths(eff: dict[str, Any], base_dir: Path) -> None:
    """Files the scenario names, made absolute, so the copy saved beside the results reruns from
    anywhere (`dcsim run OUT/scenario.toml`)."""
    def fix(d: Any, key_: str) -> None:
        if isinstance(d, dict) and isinstance(d.get(key_), str):
            d[key_] = str((base_dir / d[key_]).resolve())

    fix(eff, "catalog")
    w = eff.get("workload", {})
    fix(w, "trace")
    for spec in [w.get("prompt_tokens"), w.get("output_tokens")] + [
            c.get(k) for c in w.get("classes", []) for k in ("prompt_tokens", "output_tokens")]:
        fix(spec, "file")


def parse(raw: Mapping[str, Any], base_dir: Path = Path(".")) -> Scenario:
    """Validate a scenario dict (as read from TOML) into a Scenario."""
    raw = copy.deepcopy(dict(raw))
    cat = builtin_catalog()
    t = Table(raw, "")
    cat_file = t.get("catalog", str, None)
    if cat_file is not None:
        load_catalog_file(cat, base_dir / cat_file)
    cat.add_hardware(t.get("hardware", dict, {}), "hardware")
    cat.add_models(t.get("models", dict, {}), "models")
    sc = read(Scenario, raw, "", Context(cat, base_dir), base_dir=base_dir)
    eff = effective(sc)
    _absolute_paths(eff, base_dir)
    return dataclasses_replace(sc, raw=eff)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError("scenario", f"file not found: {path}", "check the path") from None
    except IsADirectoryError:
        raise ScenarioError(
            "scenario",
            f"{path} is a folder",
            f"give a scenario file, e.g. {Path(path) / 'quickstart.toml'}"
            if Path(path, "quickstart.toml").exists()
            else "give a scenario file (.toml)",
        ) from None
    except UnicodeDecodeError:
        raise ScenarioError("scenario", f"{path} is not a text file", "give a scenario file (.toml)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("scenario", f"{path} is not valid TOML: {exc}", "fix the syntax at that line") from None


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def apply_overrides(raw: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides. In arrays of tables (pools) a segment may be an index
    or a pool name; otherwise the rest of the path applies to every element."""
    raw = copy.deepcopy(raw)
    for item in sets:
        if "=" not in item:
            raise ScenarioError("--set", f"{item!r} is not key.path=value", "write e.g. --set workload.rate_per_s=5")
        key, text = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ScenarioError("--set", f"empty key in {item!r}")
        _set(raw, parts, _parse_value(text.strip()), key)
    return raw


def _set(node: Any, parts: list[str], value: Any, key: str) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        targets: list[Any]
        if head.isdigit():
            i = int(head)
            if i >= len(node):
                raise ScenarioError(f"--set {key}", f"index {i} out of range (have {len(node)})")
            targets, rest = [node[i]], rest
        elif any(isinstance(e, dict) and e.get("name") == head for e in node):
            targets = [e for e in node if isinstance(e, dict) and e.get("name") == head]
        else:
            targets, rest = node, parts
        for tgt in targets:
            if rest:
                _set(tgt, rest, value, key)
            else:
                raise ScenarioError(f"--set {key}", "cannot replace a whole array element")
        return
    if not isinstance(node, dict):
        raise ScenarioError(f"--set {key}", f"{head!r} is under a value, not a table")
    if not rest:
        node[head] = value
        return
    if head not in node:
        node[head] = {}
    _set(node[head], rest, value, key)


def load(path: str | Path, sets: list[str] | None = None, seed: int | None = None) -> Scenario:
    """Read, override and validate a scenario file."""
    p = Path(path)
    raw = read_toml(p)
    if sets:
        raw = apply_overrides(raw, sets)
    if seed is not None:
        raw["seed"] = seed
    return parse(raw, p.parent)
