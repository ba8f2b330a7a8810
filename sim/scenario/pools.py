"""A pool's tables: [[pools]] and its [pools.scheduler], [pools.service], [pools.cost],
[pools.kv_offload], [pools.autoscaler] (each key declared once, sim/schema.py), with the checks
that need the catalog (expert parallelism, the model fitting the pool's memory) and the pool's
accelerator-hour price."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sim.errors import ScenarioError, warn
from sim.perf.catalog import DTYPE_BYTES, Hardware, Model, builtin_catalog
from sim.perf.roofline import Speculative
from sim.perf.variability import OFF, Variability
from sim.perf.variability import defaults as var_defaults
from sim.registry import AUTOSCALERS, SCHEDULERS
from sim.scenario.common import (KV_TIERS, MAX_REPLICAS, ROLES, SERVICE_DISTS, SERVING_ENGINES, Context, policy_name,
                                 table_of)
from sim.schema import OMIT, REQUIRED, Table, key, read

# --- [[pools]] and its tables -----------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """[pools.scheduler]: the replica's batch scheduler and paged KV cache (vLLM's knobs)."""

    policy: str = key("chunked", "the batch scheduler (dcsim policies), or a plug-in \"file.py:Class\"",
                      parse=policy_name(SCHEDULERS), kind=str)
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

    policy: str = key("queue", "the autoscaling policy (dcsim policies), or a plug-in", parse=policy_name(AUTOSCALERS),
                      kind=str)
    min_replicas: int = key(1, "the fewest replicas serving", positive=True)
    max_replicas: int = key(REQUIRED, "the most (every one is built; those off draw nothing)", positive=True,
                            hi=MAX_REPLICAS, hint="a million replicas is far past a whole site")
    initial_replicas: int = 1  # serving at t = 0 (the pool's `replicas` key; default min_replicas)
    interval_s: float = key(30.0, "time between decisions", positive=True, lo=0.01, unit="s",
                            hint="autoscalers decide every few seconds or more (30 s by default)")
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
    replicas: int = key(1, "replicas (autoscaled: those serving at first)", positive=True, hi=MAX_REPLICAS,
                        hint="a million replicas is far past a whole site; run a fleet of cells ([fleet])",
                        write=lambda v, o: o.autoscaler.initial_replicas if o.autoscaler is not None else v)
    tp: int = key(1, "tensor-parallel degree: accelerators per replica", positive=True)
    ep: int = key(1, "expert-parallel degree: > 1 splits a MoE model's routed experts over this many accelerators "
                  "(a multiple of tp)", positive=True, shown=lambda v: v["ep"] > 1)
    moe_imbalance: float = key(1.0, "with ep: the busiest accelerator's expert load over the mean", lo=1.0, hi=64.0,
                               hint="e.g. moe_imbalance = 1.3", shown=lambda v: v["ep"] > 1)
    scheduler: SchedulerConfig = key(REQUIRED, "[pools.scheduler]", kind=dict, parse=table_of(SchedulerConfig),
                                     derive=lambda ctx, kw: read(SchedulerConfig, {}, f"pools[{ctx.index}].scheduler",
                                                                 ctx))
    service: ServiceConfig | None = key(None, "[pools.service]: analytic service times instead of a scheduler",
                                        kind=dict, parse=table_of(ServiceConfig))
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
                                parse=table_of(PoolCost))
    engine: str = key("vllm", "the serving engine whose KV admission rule the replicas follow (docs/engines.md): vllm "
                      "and sglang admit while the prompt's KV fits now and preempt by recompute when decodes run "
                      "out; trtllm reserves each request's whole sequence at admission and never preempts "
                      "(GUARANTEED_NO_EVICT)", choices=SERVING_ENGINES, shown=lambda v: v["engine"] != "vllm")
    role: str = key("mixed", "prefill/decode disaggregation (docs/disaggregation.md)", choices=ROLES,
                    shown=lambda v: v["role"] != "mixed")
    speculative: Speculative | None = key(None, "[pools.speculative]: speculative decoding", kind=dict,
                                          parse=_speculative)
    kv_offload: KVOffload | None = key(None, "[pools.kv_offload]: a KV tier below HBM for evicted prefix-cache "
                                       "blocks", kind=dict, parse=table_of(KVOffload))
    autoscaler: AutoscalerConfig | None = key(None, "[pools.autoscaler]: how many of its replicas serve "
                                              "(over the scenario's [autoscaler])", kind=dict, parse=_autoscaler_table,
                                              derive=lambda ctx, kw: None)

    @property
    def reserves_kv(self) -> int:
        """1 where a request's whole sequence is reserved at admission (engine trtllm; a prefill-only
        pool of a disaggregated model keeps only the prompt's KV, so it reserves as vllm does), else 0."""
        return int(self.engine == "trtllm" and self.role != "prefill")

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
        if kw["engine"] == "trtllm" and kw["scheduler"].policy == "priority":
            raise ScenarioError(f"{path}.engine", "trtllm never evicts (each request's KV is reserved at admission), "
                                "so scheduler.policy = \"priority\" has no lower class to preempt",
                                "use scheduler.policy = \"chunked\" with engine trtllm, or engine = \"vllm\"")
        if kw["role"] != "mixed" and kw["service"] is not None:
            raise ScenarioError(f"{path}.role", "a pool with analytic [pools.service] times has no KV to hand off",
                                "remove role or the service table")
        if kw["speculative"] is not None and kw["role"] == "prefill":
            raise ScenarioError(f"{path}.speculative", "a prefill pool decodes no tokens to speculate on (its "
                                "requests decode in the decode pools)", "move [pools.speculative] to the decode pool")
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


def check_fits(pool: PoolConfig, path: str) -> None:
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
        block = pm.group_kv_bytes_per_token * sch.block_size
        if pool.kv_offload.capacity_gb * 1e9 < block:
            raise ScenarioError(f"{path}.kv_offload.capacity_gb", f"{pool.kv_offload.capacity_gb:g} GB holds no KV "
                                f"block of {pool.model.id} ({block / 1e6:.3g} MB at block_size {sch.block_size})",
                                f"give at least {block / 1e9:.3g} GB (a tier holds thousands of blocks)")
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


