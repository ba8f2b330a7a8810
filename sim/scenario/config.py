"""Scenario files: TOML in, validated frozen dataclasses out.

Every check names the field (as a dotted path) and the fix. `apply_overrides` implements
`--set key.path=value`. `effective_dict` is what gets saved beside results so a run can be
repeated exactly.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sim.perf.catalog import DTYPE_BYTES, Catalog, Hardware, Model, builtin_catalog, load_catalog_file
from sim.perf.variability import KEYS as VAR_KEYS, OFF, Variability, defaults as var_defaults
import numpy as np

from sim.errors import ScenarioError, warn
from sim.registry import AUTOSCALERS, ROUTERS, SCHEDULERS
from sim.scenario.facility import Facility, Failures, parse_facility
from sim.schema import Table

ARRIVALS = ("poisson", "gamma", "constant", "trace")
TRACE_FORMATS = ("csv", "azure", "mooncake")
LENGTH_DISTS = {"fixed": ("value",), "uniform": ("min", "max"), "lognormal": ("mean", "cv"),
                "empirical": ("file",)}
SERVICE_DISTS = ("exponential", "deterministic")
MAX_TOKENS = 1e9  # per request: past any model's context window (checked per model at build)
MAX_CV = 100.0


@dataclass(frozen=True)
class SLO:
    """Latency objectives (s); None = no objective on that metric."""

    ttft_s: float | None = None
    tpot_s: float | None = None


@dataclass(frozen=True)
class RequestClass:
    """A share of the traffic with its own priority (lower = served first), lengths and SLO."""

    name: str
    share: float
    priority: int
    prompt_tokens: Mapping[str, Any] | None
    output_tokens: Mapping[str, Any] | None
    slo: SLO | None
    model: str | None = None  # the model its requests ask for (None: the one every pool serves)


@dataclass(frozen=True)
class WorkloadConfig:
    arrival: str
    rate_per_s: float
    cv: float
    num_requests: int | None
    duration_s: float | None
    prompt_tokens: Mapping[str, Any]
    output_tokens: Mapping[str, Any]
    trace: str | None
    trace_format: str
    time_scale: float
    warmup_s: float
    stages: tuple[tuple[float, float], ...] = ()  # (rate_per_s, duration_s) per load stage
    shared_prefix: tuple[int, int] | None = None  # (groups, tokens)
    timeout_s: float | None = None  # client gives up (request fails, reason "timeout")
    classes: tuple[RequestClass, ...] = ()
    sessions: int | None = None  # draw a session id per request from this many sessions
    # a time-varying rate (nonhomogeneous Poisson, drawn by thinning): (t_s, rate_per_s) points,
    # linear between them and held after the last; from workload.diurnal or workload.rate_profile
    rate_points: tuple[tuple[float, float], ...] = ()
    rate_spec: Mapping[str, Any] | None = None  # the key as given (for the effective scenario)
    multi_turn: MultiTurn | None = None  # sessions of turns (the arrivals start sessions)


@dataclass(frozen=True)
class MultiTurn:
    """workload.multi_turn: each arrival of the process starts a session of `turns` turns; turn
    k + 1 arrives `think_time_s` after turn k did (open loop: drawn up front, as a trace replays)
    and its prompt is the session's history (every earlier prompt and response) plus a new
    message drawn from workload.prompt_tokens; a session ends before a turn whose prompt and
    output would pass max_history_tokens."""

    turns: Mapping[str, Any]  # a length distribution (>= 1)
    think_time_s: Mapping[str, Any]  # a time distribution: fixed value, exponential mean, lognormal mean/cv, uniform
    max_history_tokens: int = 32768


@dataclass(frozen=True)
class SchedulerConfig:
    policy: str
    max_batch_size: int
    max_batched_tokens: int
    kv_memory_fraction: float
    block_size: int
    prefix_caching: bool = False
    ageing_s: float = 10.0  # sjf: a request waiting this long is served before shorter ones


@dataclass(frozen=True)
class ServiceConfig:
    dist: str
    mean_s: float


@dataclass(frozen=True)
class PoolConfig:
    name: str
    hardware: Hardware
    model: Model
    dtype: str
    kv_dtype: str
    replicas: int
    tp: int
    scheduler: SchedulerConfig
    service: ServiceConfig | None
    tent: str | None = None  # facility tent the pool is placed in
    priority: int = 0  # power manager: pools with a higher value are capped/drained first
    cost: "CostConfig | None" = None  # [pools.cost]: this pool's accelerator price, before [cost]
    variability: Variability = OFF  # step-time warm-up and jitter (sim/perf/variability.py)
    clock_lock: float = 1.0  # SM clock locked at this fraction of the part's maximum (sim/perf/power.py)
    role: str = "mixed"  # "prefill" | "decode" | "mixed": prefill/decode disaggregation (docs/disaggregation.md)
    autoscaler: AutoscalerConfig | None = None  # replicas = its max_replicas; initial_replicas serve at first
    speculative: Speculative | None = None  # speculative decoding (sim/perf/roofline.py)
    kv_offload: KVOffload | None = None  # a KV tier below HBM for evicted prefix-cache blocks
    ep: int = 1  # expert-parallel degree: > 1, the replica's accelerators (a multiple of tp)
    moe_imbalance: float = 1.0  # with ep: the busiest accelerator's expert load over the mean

    @property
    def accels(self) -> int:
        """Accelerators per replica: ep with expert parallelism, else tp."""
        return self.ep if self.ep > 1 else self.tp


@dataclass(frozen=True)
class KVOffload:
    """[pools.kv_offload]: prefix-cache blocks evicted from HBM go to a tier of capacity_gb per
    replica (least recently used out first) and come back over gbps (the replica's read
    bandwidth from it, all its accelerators' links together) instead of being recomputed."""

    tier: str  # "cpu" | "ssd"
    capacity_gb: float
    gbps: float


@dataclass(frozen=True)
class AutoscalerConfig:
    """[autoscaler] / [pools.autoscaler]: how many of the pool's max_replicas serve, decided
    every interval_s by a policy (sim/policies/autoscalers.py). A replica added serves after its
    cold start: start_s plus its weights over load_gbps; one removed drains first."""

    policy: str = "queue"
    min_replicas: int = 1
    max_replicas: int = 1
    initial_replicas: int = 1  # serving at t = 0 (the pool's `replicas` key; default min_replicas)
    interval_s: float = 30.0
    scale_down_delay_s: float = 300.0  # scale down to the highest recommendation of this window
    # ASSUMED defaults: a replica reads its weights at 25 Gb/s (about 3 GB/s: one local NVMe
    # drive, or a fast object-store client) and spends 60 s starting (container, engine, graphs)
    load_gbps: float = 25.0
    start_s: float = 60.0
    target: float | None = None  # the policy's set point (None: the policy's default)


ROLES = ("mixed", "prefill", "decode")
DECODE_ROUTERS = ("least_kv", "least_loaded", "jsq", "round_robin", "least_time")  # router.decode_policy (compiled)
# KV-transfer fabrics per accelerator (one NIC or NVLink port each): Gb/s one way, latency us.
# Bandwidth: vendor figures (NVLink 4: 900 GB/s bidirectional per H100/H200 GPU; ConnectX-7 NDR
# InfiniBand 400 Gb/s; 200 Gb/s RoCE v2; 100 GbE); latencies: ASSUMED typical end-to-end
# figures for an RDMA (or TCP) transfer through one switch tier.
FABRICS = {"nvlink": (3600.0, 1.0), "ib-400g": (400.0, 5.0), "roce-200g": (200.0, 10.0),
           "ethernet-100g": (100.0, 30.0)}


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    gbps: float
    latency_us: float


@dataclass(frozen=True)
class NetworkConfig:
    """How KV moves from a prefill replica to a decode replica: each accelerator's port (Gb/s,
    latency), and optionally where pools sit (nodes: racks, switch domains) and the links
    between those places, shared by the transfers that cross them."""

    fabric: str = "ib-400g"
    gbps: float = 400.0
    latency_us: float = 5.0
    nodes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (node, the pools placed there)
    links: tuple[Link, ...] = ()
    gpus_per_node: int = 8  # a replica with a larger TP group spans nodes: its all-reduce uses the ports

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


@dataclass(frozen=True)
class RouterConfig:
    policy: str
    decode_policy: str = "least_kv"  # picks the decode replica of a prefilled request


ENGINES = ("auto", "simpy", "compiled")


@dataclass(frozen=True)
class RunConfig:
    horizon_s: float | None
    timeseries: bool
    fast_forward: bool = True  # advance stable decode batches many steps at once (exact)
    engine: str = "auto"  # "simpy", "compiled" (sim/engine/compiled.py), or "auto": compiled where it applies


@dataclass(frozen=True)
class CostConfig:
    """Money: rent (usd_per_accel_hour) or capex amortised over years, energy price, and a
    facility overhead per hour. Unset rent falls back to the hardware catalog's typical rate."""

    usd_per_accel_hour: float | None = None
    capex_usd_per_accel: float | None = None
    amortization_years: float = 4.0
    usd_per_mwh: float = 0.0
    facility_usd_per_hour: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    workload: WorkloadConfig
    pools: tuple[PoolConfig, ...]
    router: RouterConfig
    run: RunConfig
    slo: SLO
    facility: Any  # sim.facility.Facility, or None
    cost: CostConfig | None
    base_dir: Path
    raw: Mapping[str, Any]  # the effective scenario (defaults filled in)
    network: NetworkConfig = NetworkConfig()  # KV transfers between prefill and decode replicas

    @property
    def disaggregated(self) -> bool:
        return any(p.role != "mixed" for p in self.pools)


def _length_spec(raw: Any, path: str) -> dict[str, Any]:
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


def _workload(raw: Any, base_dir: Path = Path(".")) -> WorkloadConfig:
    t = Table(raw, "workload")
    arrival = t.get("arrival", str, "poisson", choices=ARRIVALS)
    trace = t.get("trace", str, None)
    trace_format = t.get("trace_format", str, "csv", choices=TRACE_FORMATS)
    time_scale = t.get("time_scale", float, 1.0, positive=True)
    num = t.get("num_requests", int, None, positive=True)
    dur = t.get("duration_s", float, None, positive=True)
    warmup = t.get("warmup_s", float, 0.0, nonneg=True)
    cv = t.get("cv", float, 1.0, positive=True)
    timeout = t.get("timeout_s", float, None, positive=True)
    sessions = t.get("sessions", int, None, positive=True)
    multi = _multi_turn(t.get("multi_turn", dict, None))
    classes = []
    for k, c in enumerate(t.get("classes", list, [])):
        ct = Table(c, f"workload.classes[{k}]")
        pt, ot = ct.data.get("prompt_tokens"), ct.data.get("output_tokens")
        ct.seen.update({"prompt_tokens", "output_tokens"})
        classes.append(RequestClass(
            name=ct.get("name", str, f"class{k}"), share=ct.get("share", float, positive=True),
            priority=ct.get("priority", int, 0),
            prompt_tokens=_length_spec(pt, f"workload.classes[{k}].prompt_tokens") if pt is not None else None,
            output_tokens=_length_spec(ot, f"workload.classes[{k}].output_tokens") if ot is not None else None,
            slo=_slo(ct.get("slo", dict, None), f"workload.classes[{k}].slo"),
            model=ct.get("model", str, None)))
        ct.done()
    if classes and abs(sum(c.share for c in classes) - 1.0) > 1e-6:
        raise ScenarioError("workload.classes.share", f"the classes' shares sum to {sum(c.share for c in classes):g}",
                            "make them sum to 1 (each is the fraction of requests in that class)")
    if len({c.name for c in classes}) != len(classes):
        raise ScenarioError("workload.classes.name", "duplicate class names", "give each class a unique name")
    prefix = None
    if "shared_prefix" in t.data:
        sp = Table(t.get("shared_prefix", dict), "workload.shared_prefix")
        prefix = (sp.get("groups", int, positive=True), sp.get("tokens", int, positive=True))
        sp.done()
    stages: list[tuple[float, float]] = []
    for k, st in enumerate(t.get("stages", list, [])):
        s = Table(st, f"workload.stages[{k}]")
        stages.append((s.get("rate_per_s", float, positive=True), s.get("duration_s", float, positive=True)))
        s.done()
    if stages and arrival == "trace":
        raise ScenarioError("workload.stages", "stages do not apply to trace replay", "remove [[workload.stages]]")
    rate_points: tuple = ()
    rate_spec = None
    if arrival == "trace":
        if trace is None:
            raise ScenarioError("workload.trace", "missing for arrival = \"trace\"", "add trace = \"path/to/trace.csv\"")
        rate = t.get("rate_per_s", float, 0.0, nonneg=True)
        pt = t.data.get("prompt_tokens")
        ot = t.data.get("output_tokens")
        t.seen.update({"prompt_tokens", "output_tokens"})
        prompt = _length_spec(pt, "workload.prompt_tokens") if pt is not None else {"dist": "fixed", "value": 1}
        output = _length_spec(ot, "workload.output_tokens") if ot is not None else {"dist": "fixed", "value": 1}
    elif "diurnal" in t.data or "rate_profile" in t.data:
        key = "diurnal" if "diurnal" in t.data else "rate_profile"
        if "diurnal" in t.data and "rate_profile" in t.data:
            raise ScenarioError("workload.rate_profile", "give diurnal or rate_profile, not both", "remove one")
        if arrival != "poisson" or stages or num is not None or dur is None or "rate_per_s" in t.data:
            raise ScenarioError(f"workload.{key}", "a time-varying rate is drawn as a Poisson process over duration_s",
                                'use arrival = "poisson" and duration_s, without rate_per_s, num_requests or stages')
        rate_points, rate_spec = _rate_points(key, t.get(key, dict), dur, base_dir)
        rate = max(r for _, r in rate_points)
        prompt = _length_spec(t.get("prompt_tokens", (dict, int)), "workload.prompt_tokens")
        output = _length_spec(t.get("output_tokens", (dict, int)), "workload.output_tokens")
    elif stages:
        if num is not None or dur is not None or "rate_per_s" in t.data:
            raise ScenarioError("workload.stages", "stages set their own rate and duration",
                                "remove rate_per_s, num_requests and duration_s from [workload]")
        rate = stages[0][0]
        prompt = _length_spec(t.get("prompt_tokens", (dict, int)), "workload.prompt_tokens")
        output = _length_spec(t.get("output_tokens", (dict, int)), "workload.output_tokens")
    else:
        rate = t.get("rate_per_s", float, positive=True)
        if num is None and dur is None:
            raise ScenarioError("workload.num_requests", "missing: give num_requests or duration_s",
                                "add num_requests = 1000 (or duration_s = 600)")
        if num is not None and dur is not None:
            raise ScenarioError("workload.duration_s", "give either num_requests or duration_s, not both",
                                "remove one of them")
        prompt = _length_spec(t.get("prompt_tokens", (dict, int)), "workload.prompt_tokens")
        output = _length_spec(t.get("output_tokens", (dict, int)), "workload.output_tokens")
    t.done()
    if "cv" in t.data and arrival != "gamma":
        warn("workload.cv", f"has no effect with arrival = \"{arrival}\"", "remove it, or use arrival = \"gamma\"")
    if arrival != "trace":
        for k in ("trace", "trace_format", "time_scale"):
            if k in t.data:
                warn(f"workload.{k}", f"has no effect with arrival = \"{arrival}\"", "remove it, or use arrival = \"trace\"")
    elif "rate_per_s" in t.data:
        warn("workload.rate_per_s", "has no effect with arrival = \"trace\" (the trace sets the arrival times)",
             "remove it; time_scale speeds the trace up")
    if dur is not None and warmup >= dur:
        raise ScenarioError("workload.warmup_s", f"{warmup:g} s is not before the end of arrivals ({dur:g} s): "
                            "no request would be measured", f"give warmup_s below {dur:g}")
    if stages and warmup >= sum(d for _, d in stages):
        raise ScenarioError("workload.warmup_s", f"{warmup:g} s is not before the end of the stages "
                            f"({sum(d for _, d in stages):g} s): no request would be measured", "lower warmup_s")
    if multi is not None:
        clash = ("workload.sessions" if sessions else "workload.shared_prefix" if prefix is not None else
                 "workload.trace" if arrival == "trace" else None)
        if clash:
            raise ScenarioError("workload.multi_turn", f"cannot be combined with {clash} (multi-turn sessions make "
                                "their own session ids and shared prefixes)", f"remove {clash} or multi_turn")
        if any(c.prompt_tokens or c.output_tokens for c in classes):
            raise ScenarioError("workload.multi_turn", "classes with their own prompt or output lengths cannot "
                                "build a session's history", "give the lengths in workload.prompt_tokens/output_tokens")
    return WorkloadConfig(arrival, rate, cv, num, dur, prompt, output, trace, trace_format, time_scale, warmup,
                          tuple(stages), prefix, timeout, tuple(classes), sessions, rate_points, rate_spec, multi)


TIME_DISTS = {"fixed": ("value",), "exponential": ("mean",), "lognormal": ("mean", "cv"), "uniform": ("min", "max")}


def _time_spec(raw: Any, path: str) -> dict[str, Any]:
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


def _multi_turn(raw: Any) -> MultiTurn | None:
    if raw is None:
        return None
    t = Table(raw, "workload.multi_turn")
    turns = _length_spec(t.get("turns", (int, dict)), "workload.multi_turn.turns")
    think = _time_spec(t.get("think_time_s", (int, float, dict)), "workload.multi_turn.think_time_s")
    cap = t.get("max_history_tokens", int, 32768, positive=True)
    t.done()
    return MultiTurn(turns, think, cap)


def _rate_points(key: str, raw: dict, duration: float, base_dir: Path) -> tuple[tuple, dict]:
    """(t_s, rate_per_s) points of workload.diurnal (every 5 minutes over the run: rate =
    trough + (peak - trough) x (1 + cos(2 pi (hour - peak_hour) / 24)) / 2, t = 0 at midnight) or
    of workload.rate_profile (a CSV file: t_s and the named rate column, from 0, increasing)."""
    t = Table(raw, f"workload.{key}")
    if key == "diurnal":
        peak = t.get("peak_rate_per_s", float, positive=True)
        trough = t.get("trough_rate_per_s", float, nonneg=True)
        hour = t.get("peak_hour", float, 15.0, nonneg=True)
        t.done()
        if trough > peak:
            raise ScenarioError("workload.diurnal.trough_rate_per_s", f"{trough:g} is above peak_rate_per_s {peak:g}",
                                "give the trough at or below the peak")
        ts = np.arange(0.0, duration + 300.0, 300.0)
        rates = trough + (peak - trough) * (1 + np.cos(2 * np.pi * (ts / 3600.0 - hour) / 24.0)) / 2
        return tuple(zip(ts.tolist(), rates.tolist())), {"peak_rate_per_s": peak, "trough_rate_per_s": trough,
                                                          "peak_hour": hour}
    file = t.get("file", str)
    col = t.get("column", str, "rate_per_s")
    t.done()
    path = base_dir / file
    import csv
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ScenarioError("workload.rate_profile.file", f"cannot read {path}: {exc.strerror}",
                            "give a CSV file with columns t_s and the rate column") from None
    if not rows or "t_s" not in rows[0] or col not in rows[0]:
        raise ScenarioError("workload.rate_profile.column", f"{path} needs columns t_s and {col!r}",
                            "name the rate column with column = \"...\"")
    pts = []
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


def _slo(raw: Any, path: str) -> SLO | None:
    if raw is None:
        return None
    t = Table(raw, path)
    out = SLO(t.get("ttft_s", float, None, positive=True), t.get("tpot_s", float, None, positive=True))
    t.done()
    return out


def _pool(raw: Any, i: int, cat: Catalog, base_dir: Path = Path("."), scale_all: Any = None,
          classes: tuple = ()) -> PoolConfig:
    path = f"pools[{i}]"
    t = Table(raw, path)
    name = t.get("name", str, f"pool{i}")
    given_replicas = "replicas" in t.data
    hw = cat.get_hardware(t.get("hardware", str), f"{path}.hardware")
    model = cat.get_model(t.get("model", str), f"{path}.model")
    dtype = t.get("dtype", str, "bf16", choices=tuple(DTYPE_BYTES))
    kv_dtype = t.get("kv_dtype", str, dtype, choices=tuple(DTYPE_BYTES))
    replicas = t.get("replicas", int, 1, positive=True)
    tp = t.get("tp", int, 1, positive=True)
    model.check_tp(tp, f"{path}.tp")
    ep, imbalance = _expert_parallel(t, model, tp, path)
    s = Table(t.get("scheduler", dict, {}), f"{path}.scheduler")
    sched = SchedulerConfig(
        policy=SCHEDULERS.validate(s.get("policy", str, "chunked"), f"{path}.scheduler.policy", base_dir),
        max_batch_size=s.get("max_batch_size", int, 256, positive=True),
        max_batched_tokens=s.get("max_batched_tokens", int, 8192, positive=True),
        kv_memory_fraction=s.get("kv_memory_fraction", float, 0.9, positive=True),
        block_size=s.get("block_size", int, 16, positive=True),
        prefix_caching=s.get("prefix_caching", bool, False),
        ageing_s=s.get("ageing_s", float, 10.0, positive=True),
    )
    s.done()
    if sched.kv_memory_fraction > 1:
        raise ScenarioError(f"{path}.scheduler.kv_memory_fraction", f"must be in (0, 1], got {sched.kv_memory_fraction}")
    service = None
    if "service" in t.data:
        sv = Table(t.get("service", dict), f"{path}.service")
        service = ServiceConfig(sv.get("dist", str, choices=SERVICE_DISTS), sv.get("mean_s", float, positive=True))
        sv.done()
    var = _variability(t.get("variability", (bool, dict), False), model, f"{path}.variability")
    tent = t.get("tent", str, None)
    prio = t.get("priority", int, 0)
    clock_lock = t.get("clock_lock", float, 1.0)
    if not 0.0 < clock_lock <= 1.0:
        raise ScenarioError(f"{path}.clock_lock", f"must be in (0, 1] (a fraction of the part's maximum clock, "
                            f"e.g. 0.8), got {clock_lock}")
    pcost = None
    if "cost" in t.data:
        ct = Table(t.get("cost", dict), f"{path}.cost")
        pcost = CostConfig(ct.get("usd_per_accel_hour", float, None, nonneg=True),
                           ct.get("capex_usd_per_accel", float, None, nonneg=True),
                           ct.get("amortization_years", float, 4.0, positive=True))
        ct.done()
        _one_price(pcost, f"{path}.cost")
    role = t.get("role", str, "mixed", choices=ROLES)
    spec = _speculative(t.get("speculative", dict, None), model, cat, f"{path}.speculative", classes)
    offload = _kv_offload(t.get("kv_offload", dict, None), sched, f"{path}.kv_offload")
    ascale = _autoscaler(t.get("autoscaler", dict, None), scale_all, name, path, replicas if given_replicas else None,
                         base_dir)
    if ascale is not None:
        replicas = ascale.max_replicas  # every replica it may use is built; those beyond initial_replicas start off
    t.done()
    if role != "mixed" and service is not None:
        raise ScenarioError(f"{path}.role", "a pool with analytic [pools.service] times has no KV to hand off",
                            'remove role or the service table')
    if spec is not None and service is not None:
        raise ScenarioError(f"{path}.speculative", "a pool with analytic [pools.service] times has no decode steps "
                            "to speculate on", "remove one of the two tables")
    pool = PoolConfig(name, hw, model, dtype, kv_dtype, replicas, tp, sched, service, tent, prio, pcost, var,
                      clock_lock, role, ascale, spec, offload, ep, imbalance)
    if service is None:
        _check_fits(pool, path)
    return pool


KV_TIERS = ("cpu", "ssd")


def _kv_offload(raw: Any, sched: SchedulerConfig, path: str) -> KVOffload | None:
    if raw is None:
        return None
    t = Table(raw, path)
    out = KVOffload(t.get("tier", str, "cpu", choices=KV_TIERS), t.get("capacity_gb", float, positive=True),
                    t.get("gbps", float, positive=True))
    t.done()
    if not sched.prefix_caching:
        raise ScenarioError(path, "the tier keeps blocks evicted from the prefix cache, which is off",
                            "set scheduler.prefix_caching = true in this pool")
    return out


def _expert_parallel(t: Table, model: Model, tp: int, path: str) -> tuple[int, float]:
    """pools.ep and pools.moe_imbalance, checked against the model."""
    ep = t.get("ep", int, 1, positive=True)
    imb = t.get("moe_imbalance", float, 1.0)
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
    if not 1.0 <= imb <= 64.0:
        raise ScenarioError(f"{path}.moe_imbalance", f"must be from 1 (every expert as busy) to 64, got {imb}",
                            "e.g. moe_imbalance = 1.3")
    if imb != 1.0 and ep == 1:
        raise ScenarioError(f"{path}.moe_imbalance", "needs ep > 1 (with tensor parallelism every accelerator holds "
                            "a slice of every expert: no accelerator is busier)", "set ep, or remove moe_imbalance")
    return ep, imb


def _speculative(raw: Any, model: Any, cat: Catalog, path: str, classes: tuple = ()) -> Any:
    """[pools.speculative] -> sim.perf.roofline.Speculative (None when absent)."""
    from sim.perf.roofline import METHODS, Speculative

    if raw is None:
        return None
    t = Table(raw, path)
    method = t.get("method", str, choices=METHODS)
    k = t.get("num_tokens", int, positive=True)
    if k > 16:
        raise ScenarioError(f"{path}.num_tokens", f"{k} tokens drafted per step is past what engines run (vLLM "
                            "and SGLang use 1-8)", "set num_tokens between 1 and 16")
    rates: tuple[tuple[str, float], ...] = ()
    if isinstance(t.data.get("acceptance_rate"), dict):  # per request class
        table = t.get("acceptance_rate", dict)
        names = [c.name for c in classes]
        missing = [c for c in names if c not in table]
        unknown = [c for c in table if c not in names]
        if not names or unknown or missing:
            raise ScenarioError(f"{path}.acceptance_rate", (f"names no class {unknown[0]!r}" if unknown else
                                f"gives no rate for class {missing[0]!r}" if missing else
                                "is a per-class table but the workload has no classes"),
                                f"give one number, or a rate for each class ({', '.join(names) or 'none'})")
        for c, v in table.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ScenarioError(f"{path}.acceptance_rate.{c}", f"must be in [0, 1) (a per-token acceptance "
                                    f"probability), got {v!r}", "e.g. 0.7")
        rates = tuple((c, float(table[c])) for c in names)
        share = {c.name: c.share for c in classes}
        a = sum(share[c] * v for c, v in rates) / sum(share.values())
    else:
        a = t.get("acceptance_rate", float)
        if not 0.0 <= a < 1.0:
            raise ScenarioError(f"{path}.acceptance_rate", f"must be in [0, 1) (a per-token acceptance probability), "
                                f"got {a}", "e.g. acceptance_rate = 0.7")
    draft = None
    if method == "draft":
        draft = cat.get_model(t.get("draft_model", str), f"{path}.draft_model")
        if draft.vocab != model.vocab:
            raise ScenarioError(f"{path}.draft_model", f"{draft.id} has a vocabulary of {draft.vocab} tokens, "
                                f"{model.id} one of {model.vocab}: a drafter must share the target's tokenizer",
                                "pick a draft model of the target's family (e.g. llama-3.2-1b for Llama 3.1)")
    elif "draft_model" in t.data:
        raise ScenarioError(f"{path}.draft_model", f"only method = \"draft\" takes a draft model ({method!r} "
                            "drafts with the target's own head or the prompt)", "remove draft_model or set method = \"draft\"")
    t.done()
    return Speculative(method, k, a, draft, rates)


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
    t = Table(merged, ap)
    lo = t.get("min_replicas", int, 1, positive=True)
    hi = t.get("max_replicas", int, positive=True)
    cfg = AutoscalerConfig(
        policy=AUTOSCALERS.validate(t.get("policy", str, "queue"), f"{ap}.policy", base_dir),
        min_replicas=lo, max_replicas=hi, initial_replicas=replicas if replicas is not None else lo,
        interval_s=t.get("interval_s", float, 30.0, positive=True),
        scale_down_delay_s=t.get("scale_down_delay_s", float, 300.0, nonneg=True),
        load_gbps=t.get("load_gbps", float, 25.0, positive=True),
        start_s=t.get("start_s", float, 60.0, nonneg=True),
        target=t.get("target", float, None, positive=True))
    t.done()
    if lo > hi:
        raise ScenarioError(f"{ap}.min_replicas", f"min_replicas {lo} is above max_replicas {hi}",
                            "lower min_replicas or raise max_replicas")
    if not lo <= cfg.initial_replicas <= hi:
        raise ScenarioError(f"{path}.replicas", f"{cfg.initial_replicas} replicas at the start is outside the "
                            f"autoscaler's [{lo}, {hi}]", "set replicas between min_replicas and max_replicas, or "
                            "remove it (the autoscaler starts at min_replicas)")
    return cfg


def _variability(v: bool | dict, model: Model, path: str) -> Variability:
    """[pools.variability]: false (the default: deterministic steps), true (the values fitted for
    the model's kind), or a table overriding some of those."""
    if v is False:
        return OFF
    base = var_defaults("moe" if model.is_moe else "dense")
    if v is True:
        return base
    t = Table(v, path)
    kw = {k: t.get(k, float, getattr(base, k), nonneg=True) for k in VAR_KEYS}
    t.done()
    if kw["jitter"] >= 1:
        raise ScenarioError(f"{path}.jitter",
                            f"must be below 1 (the mean stretch as a share of a step), got {kw['jitter']}")
    if not 0 < kw["jitter_prob"] <= 1:
        raise ScenarioError(f"{path}.jitter_prob", f"must be in (0, 1], got {kw['jitter_prob']}")
    if kw["warmup_decode"] > 1:
        raise ScenarioError(f"{path}.warmup_decode", f"must be in [0, 1] (the share of the warm-up a decode-only "
                            f"step gets), got {kw['warmup_decode']}")
    if kw["warmup_s"] <= 0:
        raise ScenarioError(f"{path}.warmup_s", f"must be > 0, got {kw['warmup_s']}")
    if kw["episode_share"] > 1:
        raise ScenarioError(f"{path}.episode_share", f"must be in [0, 1], got {kw['episode_share']}")
    if kw["episode_stretch"] * kw["episode_share"] >= 1:
        raise ScenarioError(f"{path}.episode_stretch", "episode_stretch x episode_share must be below 1 (the other "
                            "windows are shortened by it to keep the mean)")
    for k in ("warmup_factor", "episode_stretch"):
        if kw[k] > 1e3:
            raise ScenarioError(f"{path}.{k}", f"must be at most 1000, got {kw[k]}")
    return Variability(**kw)


def _one_price(c: "CostConfig", path: str) -> None:
    if c.usd_per_accel_hour is not None and c.capex_usd_per_accel is not None:
        raise ScenarioError(f"{path}.capex_usd_per_accel", "give either rent (usd_per_accel_hour) or capex, not both",
                            "remove one of them")


def accel_usd_per_hour(pool: PoolConfig, cost: "CostConfig | None") -> float | None:
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
        raise ScenarioError(f"{path}.speculative", f"the drafter's weights ({pm.drafter_weight_bytes / 1e9:.1f} GB) do not fit "
                            f"beside {pool.model.id}'s", "use a smaller draft_model, method = \"eagle\" or a larger tp")
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


def parse(raw: Mapping[str, Any], base_dir: Path = Path(".")) -> Scenario:
    """Validate a scenario dict (as read from TOML) into a Scenario."""
    raw = copy.deepcopy(dict(raw))
    t = Table(raw, "")
    cat = builtin_catalog()
    cat_file = t.get("catalog", str, None)
    if cat_file is not None:
        load_catalog_file(cat, base_dir / cat_file)
    cat.add_hardware(t.get("hardware", dict, {}), "hardware")
    cat.add_models(t.get("models", dict, {}), "models")
    name = t.get("name", str, "scenario")
    seed = t.get("seed", int, 0, nonneg=True)
    workload = _workload(t.get("workload", dict), base_dir)
    pools_raw = t.get("pools", list)
    if not pools_raw:
        raise ScenarioError("pools", "empty", "add at least one [[pools]] table")
    scale_all = t.get("autoscaler", dict, None)
    pools = tuple(_pool(p, i, cat, base_dir, scale_all, workload.classes) for i, p in enumerate(pools_raw))
    if scale_all is not None and not any(p.autoscaler for p in pools):
        raise ScenarioError("autoscaler.pools", f"names none of the pools ({', '.join(p.name for p in pools)})",
                            "name at least one pool, or remove pools to scale every pool")
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise ScenarioError("pools.name", f"duplicate pool names {names}", "give each pool a unique name")
    _check_models(workload, pools, cat)
    r = Table(t.get("router", dict, {}), "router")
    router = RouterConfig(ROUTERS.validate(r.get("policy", str, "round_robin"), "router.policy", base_dir),
                          r.get("decode_policy", str, "least_kv", choices=DECODE_ROUTERS))
    r.done()
    network = _network(t.get("network", dict, None), pools)
    _check_roles(pools, router)
    slo = _slo(t.get("slo", dict, {}), "slo") or SLO()
    facility = parse_facility(t.get("facility", dict, None), t.get("failures", dict, None), pools_raw, pools, base_dir)
    if facility is None and any(p.autoscaler for p in pools):  # its controller runs with the facility's events
        facility = Facility((), (), "none", 1.0, 8, 4, Failures())
    for i, p in enumerate(pools):
        tent = p.tent if p.tent is not None else (facility.tents[0].name if facility and facility.tents else None)
        if p.autoscaler is not None and tent is not None and facility.tent(tent).commission_s > 0:
            raise ScenarioError(f"pools[{i}].autoscaler", f"pool {p.name!r} is autoscaled in tent {tent!r}, which "
                                "is commissioned later (commission_s): the two would both switch its replicas on",
                                "set the tent's commission_s = 0 or autoscale another pool")
    cost = None
    if "cost" in t.data:
        ct = Table(t.get("cost", dict), "cost")
        cost = CostConfig(ct.get("usd_per_accel_hour", float, None, nonneg=True),
                          ct.get("capex_usd_per_accel", float, None, nonneg=True),
                          ct.get("amortization_years", float, 4.0, positive=True),
                          ct.get("usd_per_mwh", float, 0.0, nonneg=True),
                          ct.get("facility_usd_per_hour", float, 0.0, nonneg=True))
        ct.done()
        _one_price(cost, "cost")
    rn = Table(t.get("run", dict, {}), "run")
    run = RunConfig(rn.get("horizon_s", float, None, positive=True), rn.get("timeseries", bool, True),
                    rn.get("fast_forward", bool, True), rn.get("engine", str, "auto", choices=ENGINES))
    rn.done()
    if run.horizon_s is not None and run.horizon_s > 1e12:  # energy = watts x seconds must stay finite
        raise ScenarioError("run.horizon_s", f"must be at most 1e12 s (about 31,700 years), got {run.horizon_s:g}")
    t.done()
    effective = _effective(raw, seed, name, workload, pools, router, run, slo)
    _absolute_paths(effective, base_dir)
    for k in ("facility", "failures", "cost"):
        if k in raw:
            effective[k] = copy.deepcopy(raw[k])
    if facility is not None and isinstance(effective.get("facility", {}).get("manager"), dict):
        effective["facility"]["manager"]["policy"] = facility.manager_policy  # a plug-in's path, resolved
    if network is not None:
        effective["network"] = {"fabric": network.fabric, "gbps": network.gbps, "latency_us": network.latency_us,
                                "gpus_per_node": network.gpus_per_node}
        if network.nodes:
            effective["network"]["nodes"] = [{"name": n, "pools": list(ps)} for n, ps in network.nodes]
            effective["network"]["links"] = [{"from": ln.a, "to": ln.b, "gbps": ln.gbps, "latency_us": ln.latency_us}
                                             for ln in network.links]
    return Scenario(name, seed, workload, pools, router, run, slo, facility, cost, base_dir, effective,
                    network or NetworkConfig())


def _network(raw: Any, pools: tuple[PoolConfig, ...]) -> NetworkConfig | None:
    if raw is None:
        return None
    t = Table(raw, "network")
    fabric = t.get("fabric", str, "ib-400g", choices=tuple(FABRICS))
    gbps, lat = FABRICS[fabric]
    gbps, lat = t.get("gbps", float, gbps, positive=True), t.get("latency_us", float, lat, nonneg=True)
    per_node = t.get("gpus_per_node", int, 8, positive=True)
    names = [p.name for p in pools]
    nodes: list[tuple[str, tuple[str, ...]]] = []
    placed: dict[str, str] = {}
    for k, nd in enumerate(t.get("nodes", list, [])):
        nt = Table(nd, f"network.nodes[{k}]")
        name = nt.get("name", str)
        ps = tuple(nt.get("pools", list, []))
        nt.done()
        if name in {n for n, _ in nodes}:
            raise ScenarioError(f"network.nodes[{k}].name", f"duplicate node {name!r}", "give each node its own name")
        for pn in ps:
            if pn not in names:
                raise ScenarioError(f"network.nodes[{k}].pools", f"no pool named {pn!r}", f"use one of: {', '.join(names)}")
            if pn in placed:
                raise ScenarioError(f"network.nodes[{k}].pools", f"pool {pn!r} is already on node {placed[pn]!r}",
                                    "place each pool on one node")
            placed[pn] = name
        nodes.append((name, ps))
    known = {n for n, _ in nodes}
    links = []
    for k, lk in enumerate(t.get("links", list, [])):
        lt = Table(lk, f"network.links[{k}]")
        a, b = lt.get("from", str), lt.get("to", str)
        for key, v in (("from", a), ("to", b)):
            if v not in known:
                raise ScenarioError(f"network.links[{k}].{key}", f"no node named {v!r}",
                                    f"declare it under [[network.nodes]] (known: {', '.join(sorted(known)) or 'none'})")
        lf = lt.get("fabric", str, None, choices=tuple(FABRICS))
        if lf is not None:  # a preset's figures, unless given
            lg = lt.get("gbps", float, FABRICS[lf][0], positive=True)
            ll = lt.get("latency_us", float, FABRICS[lf][1], nonneg=True)
        else:
            lg, ll = lt.get("gbps", float, positive=True), lt.get("latency_us", float, 0.0, nonneg=True)
        links.append(Link(a, b, lg, ll))
        lt.done()
    out = NetworkConfig(fabric, gbps, lat, tuple(nodes), tuple(links), per_node)
    t.done()
    if nodes:
        unplaced = [p.name for p in pools if p.role != "mixed" and p.name not in placed]
        if unplaced:
            raise ScenarioError("network.nodes", f"pool {unplaced[0]!r} is on no node",
                                "list every prefill and decode pool under one [[network.nodes]]")
        import networkx as nx

        g = out.graph()
        for m in dict.fromkeys(p.model.id for p in pools):
            pre = [p.name for p in pools if p.model.id == m and p.role == "prefill"]
            dec = [p.name for p in pools if p.model.id == m and p.role == "decode"]
            for a in pre:
                for b in dec:
                    if not nx.has_path(g, placed[a], placed[b]):
                        raise ScenarioError("network.links", f"no path from node {placed[a]!r} (pool {a!r}) to "
                                            f"{placed[b]!r} (pool {b!r}): their KV cannot move",
                                            "add [[network.links]] between them")
    return out


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
    def fix(d: Any, key: str) -> None:
        if isinstance(d, dict) and isinstance(d.get(key), str):
            d[key] = str((base_dir / d[key]).resolve())

    fix(eff, "catalog")
    w = eff.get("workload", {})
    fix(w, "trace")
    for spec in [w.get("prompt_tokens"), w.get("output_tokens")] + [
            c.get(k) for c in w.get("classes", []) for k in ("prompt_tokens", "output_tokens")]:
        fix(spec, "file")


def _slo_dict(slo: SLO | None) -> dict[str, float] | None:
    return None if slo is None else {k: v for k, v in slo.__dict__.items() if v is not None}


def _effective(raw: dict, seed: int, name: str, w: WorkloadConfig, pools: tuple[PoolConfig, ...],
               router: RouterConfig, run: RunConfig, slo: SLO) -> dict[str, Any]:
    """The scenario with every default written out (None values dropped: TOML has no null)."""
    out = {k: v for k, v in raw.items() if k in ("catalog", "hardware", "models")}
    out.update({"name": name, "seed": seed})
    wd = {k: v for k, v in w.__dict__.items() if v is not None and k not in ("stages", "shared_prefix", "classes",
                                                                             "multi_turn",
                                                                                "rate_points", "rate_spec")}
    if w.rate_spec is not None:
        wd["diurnal" if "peak_rate_per_s" in w.rate_spec else "rate_profile"] = dict(w.rate_spec)
        wd.pop("rate_per_s", None)
    if w.classes:
        wd["classes"] = [{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in
                          {"name": c.name, "share": c.share, "priority": c.priority, "prompt_tokens": c.prompt_tokens,
                           "output_tokens": c.output_tokens, "slo": _slo_dict(c.slo), "model": c.model}.items()
                          if v is not None}
                         for c in w.classes]
    wd["prompt_tokens"] = dict(w.prompt_tokens)
    wd["output_tokens"] = dict(w.output_tokens)
    if w.multi_turn is not None:
        wd["multi_turn"] = {"turns": dict(w.multi_turn.turns), "think_time_s": dict(w.multi_turn.think_time_s),
                            "max_history_tokens": w.multi_turn.max_history_tokens}
    if w.stages:
        for k in ("rate_per_s", "num_requests", "duration_s"):
            wd.pop(k, None)
        wd["stages"] = [{"rate_per_s": r, "duration_s": d} for r, d in w.stages]
    if w.shared_prefix is not None:
        wd["shared_prefix"] = {"groups": w.shared_prefix[0], "tokens": w.shared_prefix[1]}
    if w.arrival == "trace":
        wd.pop("prompt_tokens")
        wd.pop("output_tokens")
        wd.pop("rate_per_s", None)
    else:
        wd.pop("trace_format", None)
        wd.pop("time_scale", None)
    if w.arrival != "gamma":
        wd.pop("cv", None)  # keys that do nothing are not written (a rerun would warn about them)
    out["workload"] = wd
    out["pools"] = []
    for p in pools:
        d: dict[str, Any] = {"name": p.name, "hardware": p.hardware.id, "model": p.model.id, "dtype": p.dtype,
                             "kv_dtype": p.kv_dtype, "replicas": p.replicas, "tp": p.tp,
                             **({"ep": p.ep, "moe_imbalance": p.moe_imbalance} if p.ep > 1 else {}),
                             "scheduler": dict(p.scheduler.__dict__)}
        if p.tent is not None:
            d["tent"] = p.tent
        if p.priority:
            d["priority"] = p.priority
        if p.cost is not None:
            d["cost"] = {k: v for k, v in p.cost.__dict__.items() if v is not None and k in
                         ("usd_per_accel_hour", "capex_usd_per_accel", "amortization_years")}
        if p.service:
            d["service"] = dict(p.service.__dict__)
        if p.role != "mixed":
            d["role"] = p.role
        if p.clock_lock != 1.0:
            d["clock_lock"] = p.clock_lock
        if p.autoscaler is not None:
            a = p.autoscaler
            d["replicas"] = a.initial_replicas
            d["autoscaler"] = {k: v for k, v in a.__dict__.items() if v is not None and k != "initial_replicas"}
        if p.kv_offload is not None:
            d["kv_offload"] = dict(p.kv_offload.__dict__)
        if p.speculative is not None:
            sp = p.speculative
            d["speculative"] = {"method": sp.method, "num_tokens": sp.num_tokens,
                                "acceptance_rate": dict(sp.class_rates) if sp.class_rates else sp.acceptance_rate}
            if sp.draft_model is not None:
                d["speculative"]["draft_model"] = sp.draft_model.id
        given = raw.get("pools", [])
        k = len(out["pools"])
        if k < len(given) and isinstance(given[k], dict) and "variability" in given[k]:
            d["variability"] = copy.deepcopy(given[k]["variability"])  # as given (true, or a table)
        out["pools"].append(d)
    out["router"] = {"policy": router.policy}
    if any(p.role != "mixed" for p in pools):
        out["router"]["decode_policy"] = router.decode_policy
    if _slo_dict(slo):
        out["slo"] = _slo_dict(slo)
    out["run"] = {k: v for k, v in run.__dict__.items() if v is not None}
    return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError("scenario", f"file not found: {path}", "check the path") from None
    except IsADirectoryError:
        raise ScenarioError("scenario", f"{path} is a folder", f"give a scenario file, e.g. {Path(path) / 'quickstart.toml'}"
                            if Path(path, "quickstart.toml").exists() else "give a scenario file (.toml)") from None
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
