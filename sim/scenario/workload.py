"""The workload's tables: length and time distributions, [slo], [[workload.classes]],
[workload.multi_turn], [[workload.stages]], [workload.shared_prefix], [workload] itself and its
rate profiles (each key declared once, sim/schema.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sim.errors import ScenarioError, warn
from sim.scenario.common import (
    ARRIVALS,
    LENGTH_DISTS,
    MAX_CV,
    MAX_SIM_S,
    MAX_TOKENS,
    TIME_DISTS,
    TRACE_FORMATS,
    Context,
    write_dict,
)
from sim.schema import OMIT, REQUIRED, Table, effective, key, read

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
        if not raw >= 0 or raw == float("inf"):
            raise ScenarioError(path, f"must be a finite number of seconds >= 0, got {raw!r}",
                                f"give {path.rsplit('.', 1)[-1]} = 0 or more")
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



# --- [slo], [[workload.classes]], [workload.multi_turn] -----------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SLO:
    """Latency objectives (s); None = no objective on that metric."""

    ttft_s: float | None = key(None, "time to first token the requests should meet", positive=True, unit="s")
    tpot_s: float | None = key(None, "time per output token the requests should meet", positive=True, unit="s")


def _slo(raw: Any, path: str, ctx: Any = None, kw: Any = None) -> SLO | None:
    return read(SLO, raw, path) if raw is not None else None


def write_slo(v: Any, obj: Any = None) -> Any:
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
                                                  parse=length_spec, write=write_dict, kind=(int, dict))
    output_tokens: Mapping[str, Any] | None = key(None, "its own output lengths (else the workload's)",
                                                  parse=length_spec, write=write_dict, kind=(int, dict))
    slo: SLO | None = key(None, "its own latency objectives (else [slo])", parse=_slo, write=write_slo)
    model: str | None = key(None, "the model its requests ask for (else the one every pool serves)")
    pools: list = key([], "the pools that serve it, by name (dedicated: a pool named here serves only the classes "
                      "that name it; a class naming none goes to its model's pools no class names)", kind=list)


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
                                   write=write_dict, kind=(int, dict))
    think_time_s: Mapping[str, Any] = key(REQUIRED, "the user's time between a response and the next turn "
                                          "(a time distribution)", parse=time_spec, write=write_dict,
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
                                   hi=MAX_SIM_S, hint="a run reaches at most ten years of simulated time",
                                   shown=lambda v: not v.get("stages"))
    concurrency: int | None = key(None, "arrival = \"closed\": clients, each sending its next request when its last "
                                  "one ends (offline: num_requests, all at once)", positive=True,
                                  shown=lambda v: v.get("arrival") == "closed")
    think_time_s: Mapping[str, Any] | None = key(None, "arrival = \"closed\": a client's pause between a request's end "
                                                 "and its next (a number or a time distribution; none: 0)",
                                                 parse=time_spec, write=write_dict, kind=(int, float, dict), unit="s",
                                                 shown=lambda v: v.get("arrival") == "closed")
    prompt_tokens: Mapping[str, Any] = key(None, "prompt lengths: a number or a distribution table", kind=(int, dict),
                                           parse=length_spec, write=write_dict, shown=_not_trace,
                                           doc_default="required")
    output_tokens: Mapping[str, Any] = key(None, "output lengths: a number or a distribution table", kind=(int, dict),
                                           parse=length_spec, write=write_dict, shown=_not_trace,
                                           doc_default="required")
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
                                            write=write_dict)
    rate_profile: Mapping[str, Any] | None = key(
        None,
        "a rate from a CSV file: file, column (poisson, with duration_s)",
        kind=dict,
        parse=_rate_spec("rate_profile"),
        write=write_dict,
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


def _closed(kw: dict[str, Any], given: Mapping[str, Any]) -> None:
    """arrival = "closed": concurrency clients send num_requests requests in all (duration_s: they
    send nothing after it); no rate, and nothing that draws arrival times up front."""
    num, c = kw["num_requests"], kw["concurrency"]
    if c is None:
        raise ScenarioError("workload.concurrency", "missing for arrival = \"closed\"",
                            "add concurrency = 64 (clients; offline: concurrency = num_requests)")
    if num is None:
        raise ScenarioError("workload.num_requests", "missing for arrival = \"closed\" (the most requests the "
                            "clients send; duration_s then stops them early)", "add num_requests = 10000")
    if c > num:
        raise ScenarioError("workload.concurrency", f"{c} clients for {num} requests",
                            f"give at most num_requests ({num}) clients")
    for k in ("rate_per_s", "stages", "diurnal", "rate_profile", "multi_turn", "trace", "sessions"):
        if k in given:
            raise ScenarioError(f"workload.{k}", "does not apply to closed-loop clients (each sends when its last "
                                "request ends)", f"remove {k}, or use an open-loop arrival process")


def _arrivals(kw: dict[str, Any], given: Mapping[str, Any], ctx: Context) -> None:
    """The arrival process's keys, which depend on the process: the rate (given, or from the
    stages or the time-varying profile), how many or for how long, the lengths (a trace's own)."""
    arrival, stages, num, dur = kw["arrival"], kw["stages"], kw["num_requests"], kw["duration_s"]
    if arrival != "closed" and (kw["concurrency"] is not None or kw["think_time_s"] is not None):
        k = "concurrency" if kw["concurrency"] is not None else "think_time_s"
        raise ScenarioError(f"workload.{k}", f"applies to closed-loop clients only (arrival = \"{arrival}\")",
                            f'use arrival = "closed", or remove {k}')
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
    if arrival == "closed":
        _closed(kw, given)
    elif kw["diurnal"] is not None or kw["rate_profile"] is not None:
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
        pts.append((ti, ri * rp.scale))
    if max(r for _, r in pts) <= 0:
        raise ScenarioError("workload.rate_profile.file", f"{path}: every rate is 0", "give some positive rate")
    return tuple(pts), {"file": str(path.resolve()), "column": col, "scale": rp.scale}


@dataclass(frozen=True, kw_only=True)
class Diurnal:
    """workload.diurnal: rate = trough + (peak - trough) x (1 + cos(2 pi (hour - peak_hour) / 24)) / 2."""

    peak_rate_per_s: float = key(REQUIRED, "the rate at peak_hour", positive=True, unit="req/s")
    trough_rate_per_s: float = key(REQUIRED, "the rate 12 hours from it", nonneg=True, unit="req/s")
    peak_hour: float = key(15.0, "the hour of the peak (t = 0 is midnight)", nonneg=True, below=24.0, unit="h",
                           hint="give an hour of the day, 0 to 24")

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
    scale: float = key(1.0, "a factor on every rate of the file (a fleet's cell takes its share this way)",
                       positive=True)


