"""Hardware and model catalogs: specs loaded from TOML data files, derived sizes computed.

Units: bytes, seconds, watts, FLOP/s. Nothing here touches SimPy.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Mapping

from sim.errors import ScenarioError

DATA_DIR = resources.files("sim") / "data"  # package data: works from a wheel as from a checkout

#: Bytes per element of each supported dtype.
DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp4": 0.5}


@dataclass(frozen=True)
class Hardware:
    """One accelerator. Peak figures from vendor specs; efficiencies from calibration."""

    id: str
    name: str
    memory_gb: float
    mem_bw_tbps: float
    tflops: Mapping[str, float]
    tdp_w: float
    idle_w: float
    scaleup_gbps_bidir: float
    bw_efficiency: float = 0.8
    flops_efficiency: float = 0.55
    moe_flops_efficiency: float = 1.0  # fused-MoE expert GEMMs, relative to flops_efficiency
    # per weight precision, where it differs from the above: the achieved fraction of that dtype's
    # dense peak in GEMMs (e.g. { fp8 = 0.69 }), and the bandwidth a step achieves reading weights
    # of that dtype relative to bf16 weights (dequantising GEMV kernels read fp8/fp4 more slowly)
    flops_efficiency_dtype: Mapping[str, float] = field(default_factory=dict)
    # measured all-reduce bus bandwidth (NCCL busbw, large messages) by group size, GB/s, e.g.
    # { 2 = 311, 8 = 352 }: a TP ring's bandwidth; absent, the scale-up link's peak in one direction
    allreduce_busbw_gbps: Mapping[str, float] = field(default_factory=dict)
    weight_bw_dtype: Mapping[str, float] = field(default_factory=dict)
    request_overhead_s: float = 0.0  # host-side per-request latency (HTTP, tokenizer) before the engine
    output_lag_steps: int = 0  # engine steps between sampling a token and the client receiving it
    memory_power_frac: float = 0.75  # share of (TDP - idle) drawn by memory at full bandwidth (sim/perf/power.py)
    clock_power_frac: float = 0.0  # share of (TDP - idle) the clocked, active chip draws at full clock
    step_overhead_s: float = 0.003
    seq_overhead_s: float = 0.0
    comm_latency_s: float = 1e-5
    usd_per_accel_hour: float | None = None
    # the server's maximum power per accelerator (system spec, e.g. DGX H100 10.2 kW / 8), W: what
    # its hosts (CPUs, NICs, switches, fans, power conversion) may draw besides the accelerators;
    # None: NODE_PER_TDP x tdp_w (sim/perf/power.py host_power_w)
    node_w_per_accel: float | None = None
    node_source: str = ""  # where node_w_per_accel comes from
    sources: str = ""
    calibration: str = ""  # what the efficiency constants rest on
    power_calibration: str = ""  # what clock_power_frac and memory_power_frac rest on
    # "measured": fitted on measurements shipped in data/; "borrowed": constants of another part;
    # "assumed": specs or constants without a source (a user's own entry unless it says otherwise)
    calibration_status: str = "assumed"

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9

    @property
    def mem_bw_bytes_per_s(self) -> float:
        return self.mem_bw_tbps * 1e12

    @property
    def link_bytes_per_s(self) -> float:
        """Scale-up bandwidth in one direction (half the bidirectional figure)."""
        return self.scaleup_gbps_bidir * 1e9 / 2

    def calibration_note(self) -> str | None:
        """One line when this part's numbers rest on borrowed or assumed constants, else None."""
        if self.calibration_status == "measured":
            return None
        why = self.calibration.split(": ", 1)[-1] if self.calibration else "no calibration recorded"
        what = f"constants {why}" if why.startswith(self.calibration_status) else \
            f"constants {self.calibration_status} ({why})"
        if self.calibration_status == "assumed" and "assumed" in self.sources:
            what += f"; specs partly assumed ({self.sources})"
        return (f"{self.id}: {what}; its latencies and throughput are estimates, outside the error measured "
                f"on h100-sxm (docs/validation.md); measure your own: dcsim observe, then dcsim calibrate "
                f"(docs/calibrate.md)")

    @property
    def host_w_per_accel(self) -> float:
        """The hosts' draw per accelerator while it serves, W (sim/perf/power.py host_power_w)."""
        from sim.perf.power import host_power_w

        return host_power_w(self.tdp_w, self.node_w_per_accel, loaded=True)

    @property
    def host_idle_w_per_accel(self) -> float:
        """... while it idles, W."""
        from sim.perf.power import host_power_w

        return host_power_w(self.tdp_w, self.node_w_per_accel, loaded=False)

    def flops_efficiency_for(self, dtype: str) -> float:
        """The achieved fraction of `dtype`'s dense peak in GEMMs."""
        return float(self.flops_efficiency_dtype.get(dtype, self.flops_efficiency))

    def weight_bw_for(self, dtype: str) -> float:
        """Weight-read bandwidth with `dtype` weights relative to bf16 weights (1: the same)."""
        return float(self.weight_bw_dtype.get(dtype, 1.0))

    def allreduce_bytes_per_s(self, n: int) -> float:
        """A ring all-reduce's bus bandwidth over n accelerators: measured where the catalog has it
        (the largest measured group not above n, else the smallest), else the link's peak."""
        if not self.allreduce_busbw_gbps:
            return self.link_bytes_per_s
        sizes = sorted(int(k) for k in self.allreduce_busbw_gbps)
        k = max([s for s in sizes if s <= n], default=sizes[0])
        return float(self.allreduce_busbw_gbps[str(k)]) * 1e9

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s for `dtype`; fp16 uses bf16, and a dtype without tensor-core
        support (fp8 on A100) falls back to the next wider supported one."""
        order = {"fp4": ["fp4", "fp8", "bf16"], "fp8": ["fp8", "bf16"], "bf16": ["bf16"],
                 "fp16": ["bf16"], "fp32": ["bf16"]}[dtype]
        for d in order:
            if d in self.tflops:
                return float(self.tflops[d]) * 1e12
        raise ScenarioError(f"hardware.{self.id}.tflops", f"no figure for {dtype} or wider",
                            "add tflops.bf16 to the hardware entry")


@dataclass(frozen=True)
class Model:
    """A decoder-only transformer. Sizes are derived from the architecture, in elements."""

    id: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    max_context_tokens: int  # longest prompt + output served (config.json max_position_embeddings)
    tie_embeddings: bool = False
    experts: int = 0
    active_experts: int = 0
    shared_experts: int = 0
    shared_ffn: int = 0
    # multi-head latent attention (DeepSeek-V2/V3): queries through a rank-q_lora_rank
    # bottleneck (0: full rank), K and V through one cached latent of kv_lora_rank plus a shared
    # RoPE key of qk_rope_dim per token and layer; head_dim is the per-head no-RoPE query/key and
    # value size. kv_lora_rank = 0: ordinary (GQA) attention
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_dim: int = 0
    # MoE models with dense layers (DeepSeek-V3's first 3, Llama-4-Maverick's every other):
    # how many, and their MLP's intermediate size (0: ffn)
    dense_layers: int = 0
    dense_ffn: int = 0
    route_nodes: int = 0  # node-limited routing: a token's experts on at most this many nodes (0: any)
    source: str = ""

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        """Layers with routed experts (every layer of an MoE model but its dense ones)."""
        return self.layers - self.dense_layers if self.is_moe else 0

    def tp_problem(self, tp: int) -> str | None:
        """Why `tp` is not a tensor-parallel degree of this model, or None. vLLM's rule: the
        ranks split the attention heads evenly, and the KV heads too, or replicate them (a whole
        number of ranks per KV head)."""
        if tp < 1:
            return f"must be >= 1, got {tp}"
        if self.heads % tp:
            return f"{tp} does not divide {self.id}'s {self.heads} attention heads"
        if (self.kv_heads % tp) if tp < self.kv_heads else (tp % self.kv_heads):
            return f"{tp} neither divides nor is a multiple of {self.id}'s {self.kv_heads} KV heads"
        return None

    def tp_degrees(self) -> list[int]:
        """Every valid tensor-parallel degree, ascending."""
        return [t for t in range(1, self.heads + 1) if self.tp_problem(t) is None]

    def check_tp(self, tp: int, field: str) -> None:
        """Raise a ScenarioError naming `field` unless `tp` is a valid degree."""
        why = self.tp_problem(tp)
        if why is not None:
            raise ScenarioError(field, why, f"use one of {', '.join(map(str, self.tp_degrees()))}")

    @property
    def attn_params_per_layer(self) -> int:
        if self.is_mla:
            qk = self.head_dim + self.qk_rope_dim
            q = (self.hidden * self.q_lora_rank + self.q_lora_rank * self.heads * qk if self.q_lora_rank
                 else self.hidden * self.heads * qk)
            kv = (
                self.hidden * (self.kv_lora_rank + self.qk_rope_dim)
                + self.kv_lora_rank * self.heads * 2 * self.head_dim
            )
            o = self.heads * self.head_dim * self.hidden
            return q + kv + o + 2 * self.hidden + self.q_lora_rank + self.kv_lora_rank  # + RMSNorms
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        return q + kv + o + 2 * self.hidden  # + the two RMSNorm weight vectors

    @property
    def expert_params(self) -> int:
        """One gated MLP (gate, up, down) of size `ffn`: a dense MLP or one routed expert."""
        return 3 * self.hidden * self.ffn

    @property
    def shared_params_per_layer(self) -> int:
        return self.shared_experts * 3 * self.hidden * self.shared_ffn

    @property
    def router_params_per_layer(self) -> int:
        return self.hidden * self.experts if self.is_moe else 0

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tie_embeddings else 2)

    @property
    def dense_mlp_params(self) -> int:
        """The MLP of a dense layer (all of a dense model's, an MoE model's dense_layers)."""
        return 3 * self.hidden * (self.dense_ffn or self.ffn)

    def _params(self, experts_per_layer: int) -> int:
        """Every layer's attention, the MoE layers' shared experts, router and `experts_per_layer`
        routed experts, the dense layers' MLPs."""
        moe = self.shared_params_per_layer + self.router_params_per_layer + experts_per_layer * self.expert_params
        return (self.layers * self.attn_params_per_layer + self.moe_layers * moe
                + (self.layers - self.moe_layers) * self.dense_mlp_params)

    @property
    def total_params(self) -> int:
        return self._params(self.experts if self.is_moe else 0) + self.embedding_params

    @property
    def active_params(self) -> int:
        """Parameters used per token (matmul FLOPs = 2 x this), including the LM head."""
        return self._params(self.active_experts if self.is_moe else 0) + self.vocab * self.hidden

    @property
    def attn_flops_per_pair(self) -> float:
        """FLOPs of attention per (query, key) pair, all layers: 4 x heads x head_dim (scores and
        values); MLA with its projections absorbed (as served in decode): scores over the latent
        and the RoPE key, values over the latent."""
        if self.is_mla:
            return 2.0 * self.layers * self.heads * (2 * self.kv_lora_rank + self.qk_rope_dim)
        return 4.0 * self.layers * self.heads * self.head_dim

    @property
    def attn_flops_per_pair_prefill(self) -> float:
        """The same for a prompt's tokens: MLA runs prefill with per-head keys (head_dim +
        qk_rope_dim) and values (head_dim), as DeepSeek's and vLLM's kernels do."""
        if self.is_mla:
            return 2.0 * self.layers * self.heads * (2 * self.head_dim + self.qk_rope_dim)
        return self.attn_flops_per_pair

    def weight_bytes(self, dtype: str) -> float:
        return self.total_params * DTYPE_BYTES[dtype]

    def kv_bytes_per_token(self, dtype: str) -> float:
        """K and V for every layer: 2 x layers x kv_heads x head_dim x bytes (GQA-aware); MLA: the
        latent and the RoPE key, layers x (kv_lora_rank + qk_rope_dim) x bytes."""
        if self.is_mla:
            return self.layers * (self.kv_lora_rank + self.qk_rope_dim) * DTYPE_BYTES[dtype]
        return 2 * self.layers * self.kv_heads * self.head_dim * DTYPE_BYTES[dtype]


def _merged(known: Any, entry: Any, where: str, entry_id: str) -> Mapping[str, Any]:
    """A new entry as given, or a known one with the given fields replaced."""
    if not isinstance(entry, Mapping):
        raise ScenarioError(f"{where}.{entry_id}", f"must be a table, got {entry!r}")
    if known is None:
        return entry
    base = {f.name: getattr(known, f.name) for f in fields(known) if f.name != "id"}
    return {**base, **entry}


def _build(cls: type, entry_id: str, raw: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in fields(cls)} - {"id"}
    unknown = set(raw) - names
    if unknown:
        key = sorted(unknown)[0]
        raise ScenarioError(f"{where}.{entry_id}.{key}", "unknown field",
                            f"use one of: {', '.join(sorted(names))}")
    required = {f.name for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING and f.name != "id"}
    missing = required - set(raw)
    if missing:
        key = sorted(missing)[0]
        raise ScenarioError(f"{where}.{entry_id}.{key}", "missing field", f"add {key} = ...")
    try:
        obj = cls(id=entry_id, **raw)
    except TypeError as exc:  # pragma: no cover - guarded above
        raise ScenarioError(f"{where}.{entry_id}", str(exc)) from None
    _check_numbers(obj, where)
    return obj


CALIBRATION_STATUSES = ("measured", "borrowed", "assumed")
_LARGEST = 1e9  # no catalog figure in its units (GB, TB/s, TFLOP/s, W, layers, ...) comes near this


def _check_tflops(obj: Any, where: str, v: Any) -> None:
    if not isinstance(v, Mapping) or not v:
        raise ScenarioError(f"{where}.{obj.id}.tflops", f"must be a table of dtype = TFLOP/s, got {v!r}",
                            "write tflops = { bf16 = 989 }")
    for k, x in v.items():
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= _LARGEST:
            raise ScenarioError(f"{where}.{obj.id}.tflops.{k}", f"must be a positive number, got {x!r}",
                                "give the dense peak in TFLOP/s")


def _check_numbers(obj: Any, where: str) -> None:
    for f in fields(obj):
        v = getattr(obj, f.name)
        if f.name in ("id", "name", "source", "sources", "calibration", "power_calibration", "tie_embeddings",
                      "node_source"):
            continue
        if f.name == "calibration_status":
            if v not in CALIBRATION_STATUSES:
                raise ScenarioError(f"{where}.{obj.id}.calibration_status", f"unknown value {v!r}",
                                    f"use one of: {', '.join(CALIBRATION_STATUSES)}")
            continue
        if f.name == "tflops":
            _check_tflops(obj, where, v)
            continue
        if f.name in ("flops_efficiency_dtype", "weight_bw_dtype", "allreduce_busbw_gbps"):
            continue  # (tables: checked with the efficiencies)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= _LARGEST:
            raise ScenarioError(
                f"{where}.{obj.id}.{f.name}",
                f"must be a number from 0 to {_LARGEST:g}, got {v!r}",
                f"give {f.name} in the catalog's units "
                f"(see sim/data/{'hardware' if isinstance(obj, Hardware) else 'models'}.toml)",
            )
        if f.type in ("int", int) and not isinstance(v, int):
            raise ScenarioError(f"{where}.{obj.id}.{f.name}", f"must be a whole number, got {v!r}", "give an integer")
    if isinstance(obj, Model):
        _check_model(obj, where)
    if isinstance(obj, Hardware):
        _check_hardware(obj, where)


def _check_model(obj: Any, where: str) -> None:
    """A model's shape is consistent."""
    for name in ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "max_context_tokens"):
        if getattr(obj, name) <= 0:
            raise ScenarioError(f"{where}.{obj.id}.{name}", "must be a positive integer")
    if obj.is_moe and not (0 < obj.active_experts <= obj.experts):
        raise ScenarioError(f"{where}.{obj.id}.active_experts", "must be between 1 and experts")
    if obj.dense_layers and not (obj.is_moe and obj.dense_layers < obj.layers):
        raise ScenarioError(f"{where}.{obj.id}.dense_layers", "must be fewer than layers, in an MoE model",
                            "remove it (a dense model's layers are all dense)")
    if obj.is_mla and obj.qk_rope_dim <= 0:
        raise ScenarioError(f"{where}.{obj.id}.qk_rope_dim", "MLA (kv_lora_rank > 0) needs its RoPE key size",
                            "add qk_rope_dim (64 in DeepSeek-V3)")


def _check_hardware(obj: Any, where: str) -> None:
    """A part's figures are in range."""
    if obj.node_w_per_accel is not None and obj.node_w_per_accel < obj.tdp_w:
        raise ScenarioError(f"{where}.{obj.id}.node_w_per_accel", f"{obj.node_w_per_accel:g} W is below the "
                            f"accelerator's own tdp_w ({obj.tdp_w:g} W)", "give the server's maximum power divided "
                            "by its accelerators, or remove it (then 1.82 x tdp_w)")
    for name in ("memory_gb", "mem_bw_tbps"):
        if getattr(obj, name) <= 0:
            raise ScenarioError(f"{where}.{obj.id}.{name}", "must be positive")
    for name in ("bw_efficiency", "flops_efficiency", "moe_flops_efficiency", "memory_power_frac"):
        if not 0 < getattr(obj, name) <= 1:
            raise ScenarioError(f"{where}.{obj.id}.{name}", "must be in (0, 1]")
    for name in ("flops_efficiency_dtype", "weight_bw_dtype"):
        table = getattr(obj, name)
        if not isinstance(table, Mapping):
            raise ScenarioError(f"{where}.{obj.id}.{name}", "must be a table of dtype = fraction",
                                f"write {name} = {{ fp8 = 0.7 }}")
        for d, v in table.items():
            if d not in DTYPE_BYTES:
                raise ScenarioError(f"{where}.{obj.id}.{name}.{d}", f"unknown dtype {d!r}",
                                    f"use one of {sorted(DTYPE_BYTES)}")
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 1:
                raise ScenarioError(f"{where}.{obj.id}.{name}.{d}", f"must be in (0, 1], got {v!r}")
    ar = obj.allreduce_busbw_gbps
    if not isinstance(ar, Mapping):
        raise ScenarioError(f"{where}.{obj.id}.allreduce_busbw_gbps", "must be a table of group size = GB/s",
                            "write allreduce_busbw_gbps = { 8 = 350 }")
    for k, v in ar.items():
        if not str(k).isdigit() or int(k) < 2:
            raise ScenarioError(f"{where}.{obj.id}.allreduce_busbw_gbps", f"keys are group sizes >= 2, got {k!r}",
                                "write allreduce_busbw_gbps = { 8 = 350 }")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= _LARGEST:
            raise ScenarioError(f"{where}.{obj.id}.allreduce_busbw_gbps.{k}", f"must be a positive number, got {v!r}")
    if not 0 <= obj.clock_power_frac < 1:
        raise ScenarioError(f"{where}.{obj.id}.clock_power_frac", "must be in [0, 1)")


def load_toml(path: Path | Traversable) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(str(path), "file not found", "check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), f"not valid TOML: {exc}") from None


@dataclass
class Catalog:
    """Hardware and models by id; built-ins from sim/data, extendable by users."""

    hardware: dict[str, Hardware] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)

    def add_hardware(self, raw: Mapping[str, Mapping[str, Any]], where: str = "hardware") -> None:
        """Add entries; a table naming a known id changes only the fields it gives (e.g.
        `[hardware.h200] usd_per_accel_hour = 3.1`)."""
        for hid, entry in raw.items():
            self.hardware[hid] = _build(Hardware, hid, _merged(self.hardware.get(hid), entry, where, hid), where)

    def add_models(self, raw: Mapping[str, Mapping[str, Any]], where: str = "models") -> None:
        for mid, entry in raw.items():
            self.models[mid] = _build(Model, mid, _merged(self.models.get(mid), entry, where, mid), where)

    def get_hardware(self, hid: str, field_name: str = "hardware") -> Hardware:
        try:
            return self.hardware[hid]
        except KeyError:
            raise ScenarioError(
                field_name,
                f"unknown hardware {hid!r}",
                f"use one of: {', '.join(sorted(self.hardware))}, or define it under [hardware.{hid}]",
            ) from None

    def get_model(self, mid: str, field_name: str = "model") -> Model:
        try:
            return self.models[mid]
        except KeyError:
            raise ScenarioError(
                field_name,
                f"unknown model {mid!r}",
                f"use one of: {', '.join(sorted(self.models))}, or define it under [models.{mid}]",
            ) from None

    def copy(self) -> "Catalog":
        return Catalog(dict(self.hardware), dict(self.models))


@lru_cache(maxsize=1)
def _builtin() -> Catalog:
    cat = Catalog()
    cat.add_hardware(load_toml(DATA_DIR / "hardware.toml"), "hardware")
    cat.add_models(load_toml(DATA_DIR / "models.toml"), "models")
    return cat


def builtin_catalog() -> Catalog:
    """A fresh copy of the built-in catalog (callers may add entries to it)."""
    return _builtin().copy()


def load_catalog_file(cat: Catalog, path: Path) -> None:
    """Add `[hardware.<id>]` and `[models.<id>]` tables from a user's TOML file."""
    raw = load_toml(path)
    cat.add_hardware(raw.get("hardware", {}), f"{path}:hardware")
    cat.add_models(raw.get("models", {}), f"{path}:models")
