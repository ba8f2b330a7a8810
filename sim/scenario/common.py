"""What every scenario table's parser shares: the choices and constants keys are checked
against, the parsing `Context`, and the writers and errors of plain values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError
from sim.perf.catalog import Catalog
from sim.schema import OMIT, read

ARRIVALS = ("poisson", "gamma", "constant", "trace", "closed")
TRACE_FORMATS = ("csv", "azure", "mooncake")
LENGTH_DISTS = {"fixed": ("value",), "uniform": ("min", "max"), "lognormal": ("mean", "cv"),
                "empirical": ("file",)}
TIME_DISTS = {"fixed": ("value",), "exponential": ("mean",), "lognormal": ("mean", "cv"), "uniform": ("min", "max")}
SERVICE_DISTS = ("exponential", "deterministic")
# How far in simulated time a run may reach: ten years. Past it a time is a typo or an epoch
# timestamp, and the per-hour summaries and the facility's decisions alone would not fit.
MAX_SIM_S = 10 * 365.25 * 86400.0
MAX_REPLICAS = 1_000_000  # per pool (a 200 MW site is about 70,000 replicas)
MAX_TOKENS = 1e9  # per request: past any model's context window (checked per model at build)
MAX_CV = 100.0
ROLES = ("mixed", "prefill", "decode")
SERVING_ENGINES = ("vllm", "sglang", "trtllm")  # pools.engine: whose admission and preemption rules (docs/engines.md)
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



def wrong_type(path: str, kind: str, v: Any) -> Any:
    """The error for a key of the wrong type."""
    raise ScenarioError(path, f"must be {kind}, got {v!r}", f"write {path.rsplit('.', 1)[-1]} = <{kind}>")


def write_dict(v: Any, obj: Any = None) -> Any:
    return dict(v) if v is not None else OMIT


def policy_name(registry: Any) -> Any:
    """The parser of a key naming a policy of `registry` (a built-in or a plug-in spec)."""
    def parse(raw: Any, path: str, ctx: Context, kw: Any = None) -> str:
        if not isinstance(raw, str):
            raise ScenarioError(path, f"must be str, got {raw!r}", f"write {path.rsplit('.', 1)[-1]} = <str>")
        return str(registry.validate(raw, path, ctx.base_dir))
    return parse


def table_of(cls: type) -> Any:
    """The parser of an optional sub-table read into `cls` (None when absent)."""
    def parse(raw: Any, path: str, ctx: Any, kw: Any = None) -> Any:
        return read(cls, raw, path, ctx) if raw is not None else None
    return parse
