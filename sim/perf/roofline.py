"""Roofline performance model: time of one engine iteration (a batch step) on a TP group.

One step runs `n_dec` decode sequences (one token each, reading their whole KV context) and
prefill chunks totalling `p_tok` tokens. Per accelerator of a tensor-parallel group of `tp`:

    bytes   = weights touched / tp + KV read and written / tp
    flops   = 2 x active params x tokens / tp + attention flops / tp
    t_mem   = bytes / (peak bandwidth x bw_efficiency)
    t_comp  = flops / (peak dense FLOP/s x flops_efficiency)
    t_comm  = 2 all-reduces per layer of tokens x hidden activations (ring), plus a latency each
    t_step  = max(t_mem, t_comp) + t_comm + step_overhead + seq_overhead x sequences

Speculative decoding (a pool's [pools.speculative], `Speculative` below): a decode step verifies
k + 1 tokens per sequence (k more query tokens, attending over its context) after the drafter's k
sequential steps, and emits g = (1 - a^(k+1)) / (1 - a) tokens per sequence on average. The
engine advances a decoding sequence one token per step, so a decode step costs 1/g of such a
verify step; one with prefill chunks costs the whole step less (1 - 1/g) of a verify step alone
(the decoders' other g - 1 tokens are charged as the steps that follow): the time of a request's
tokens is the real steps' time in expectation, and KV grows token by token. The acceptance is
applied in expectation (g per step, not a draw per sequence), which keeps the engine's O(1)
decode loop; per-request spread from acceptance is not modelled.

MoE: the routed experts are a second roofline term, max(expert bytes / bandwidth, expert FLOPs /
(peak x flops_efficiency x moe_flops_efficiency)), added to the first (attention and every
other weight). Their bytes count only the experts the batch touches (expected number of
distinct experts hit by `tokens` tokens each routed to k of E experts uniformly); their FLOPs
use the k active experts. Fused-MoE grouped GEMMs run far below dense GEMM efficiency at
serving batch sizes (each expert sees about tokens x k / E rows), hence their own factor.
Units: seconds, bytes, FLOPs. Pure Python, no SimPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.columns import Table as Columns
from sim.errors import ScenarioError
from sim.perf.catalog import DTYPE_BYTES, Hardware, Model
from sim.perf.engines import engine_constants
from sim.perf.power import StepPower, at_clock, capped
from sim.schema import OMIT, REQUIRED, Table, key

if TYPE_CHECKING:
    import numpy as np

ACT_BYTES = 2.0  # activations travel in bf16 in the TP all-reduces

# A PerfModel's constants as one flat tuple (PerfModel.constants), in this order: what the step
# formula below reads, and what the compiled engine keeps per pool (its PC[pool, column]).
PERF = Columns("PC", "float64", "a pool's step-formula constants (PerfModel.constants), PC[pool, column]; "
             "per accelerator of its TP (or EP) group")
W_FIXED = PERF.col("weight bytes every step reads: all but the routed experts, TP-split")
KV_TOK = PERF.col("KV bytes read or written per context token")
BW = PERF.col("memory bandwidth achieved, bytes/s (peak x bw_efficiency)")
F_TOK = PERF.col("FLOPs per token of the linear layers (not the LM head, not the routed experts)")
F_SEQ = PERF.col("FLOPs per sequence in the step (the LM head: logits of its sampled token)")
F_ATTN = PERF.col("attention FLOPs per decode (query, key) pair")
FLOPS = PERF.col("FLOP/s achieved on dense GEMMs (peak x flops_efficiency)")
F_EXP_TOK = PERF.col("routed experts' FLOPs per token (0: not MoE)")
FLOPS_EXP = PERF.col("FLOP/s achieved by the fused-MoE GEMMs")
W_EXP_LAYER = PERF.col("weight bytes of one routed expert over every MoE layer (TP-split unless EP)")
EXPERTS = PERF.col("routed experts on this accelerator (0: not MoE)")
Q_MISS = PERF.col("probability that a token does not route to a given expert (1 - k / E)")
COMM_FIXED = PERF.col("collective latency per step, s (TP all-reduce hops, EP all-to-alls)")
COMM_TOK = PERF.col("collective seconds per token")
OVH = PERF.col("fixed seconds per step (launches, scheduling)")
OVH_SEQ = PERF.col("seconds per sequence in the step")
IDLE_W = PERF.col("an accelerator's idle draw, W")
DYN_W = PERF.col("its draw above idle at full activity, W (TDP - idle)")
MEM_FRAC = PERF.col("the share of dynamic power that memory traffic draws")
INV_FLOPS = PERF.col("1 / FLOPS (a multiplication where a division would cost)")
CLK_FRAC = PERF.col("the share of dynamic power that scales with the clock")
F_MAX = PERF.col("the clock lock, a fraction of the part's maximum (1: none)")
SPEC_K = PERF.col("speculative decoding: tokens drafted per step (0: no speculation)")
SPEC_INVG = PERF.col("speculative decoding: 1 / tokens emitted per step")
D_W = PERF.col("speculative decoding: one drafter step's weight bytes")
D_KV = PERF.col("speculative decoding: the drafter's KV bytes per context token")
D_FTOK = PERF.col("speculative decoding: the drafter's FLOPs per token")
D_OVH = PERF.col("speculative decoding: the drafter's fixed seconds per step")
F_ATTN_P = PERF.col("attention FLOPs per prefill (query, key) pair (MLA: per head, unlike F_ATTN)")
PERF.seal(globals())
N_PC = PERF.n


def plain_terms(pc: tuple, n_dec: int, ctx_dec: float, p_tok: int, p_read: float, p_attn: float,
                   n_seq: int, exact: bool) -> tuple[float, float, float, float, float]:
    """The roofline terms of one step, in s at full clock: (m1, c1) memory and compute time of
    attention and every weight but the routed experts, (m2, c2) those of the routed experts, and
    the clock-independent rest (TP all-reduces, per-step and per-sequence overhead). The only
    statement of the step formula: PerfModel, the power model and the compiled engine (which
    compiles this function) all call it. `pc` is PerfModel.constants.

    Divisions are most of a step's cost in the compiled engine, so c1 is first estimated with a
    multiplication by 1 / FLOPS and divided out exactly only where it may decide the step's
    time (`exact` forces it, for breakdowns and clocks below 1, where c1 / f may win)."""
    tokens = n_dec + p_tok
    m1 = (pc[W_FIXED] + pc[KV_TOK] * (ctx_dec + p_read + p_tok)) / pc[BW]
    if pc[F_ATTN_P] == pc[F_ATTN]:
        f_main = pc[F_TOK] * tokens + pc[F_SEQ] * n_seq + pc[F_ATTN] * (ctx_dec + p_attn)
    else:  # MLA: decode attends over the latent (absorbed), prefill over per-head K and V
        f_main = pc[F_TOK] * tokens + pc[F_SEQ] * n_seq + pc[F_ATTN] * ctx_dec + pc[F_ATTN_P] * p_attn
    c1 = f_main * pc[INV_FLOPS]
    if exact or c1 >= m1 * (1.0 - 1e-9):
        c1 = f_main / pc[FLOPS]
    m2 = 0.0
    c2 = 0.0
    if pc[F_EXP_TOK] != 0.0:
        touched = 0.0
        if tokens > 0:
            # expected distinct experts per layer hit by `tokens` tokens, each routed to k of E
            touched = pc[EXPERTS] * (1.0 - pc[Q_MISS] ** float(tokens))
        m2 = touched * pc[W_EXP_LAYER] / pc[BW]
        c2 = pc[F_EXP_TOK] * tokens / pc[FLOPS_EXP]
    fixed = pc[COMM_FIXED] + pc[COMM_TOK] * tokens + pc[OVH] + pc[OVH_SEQ] * n_seq
    return m1, c1, m2, c2, fixed


def with_speculation(plain):
    """The step formula over `plain` (plain_terms, or its compiled form in the kernel) with
    speculative decoding where pc has it (module docstring)."""

    def terms(pc: tuple, n_dec: int, ctx_dec: float, p_tok: int, p_read: float, p_attn: float,
              n_seq: int, exact: bool) -> tuple[float, float, float, float, float]:
        if pc[SPEC_K] == 0.0 or n_dec == 0:
            return plain(pc, n_dec, ctx_dec, p_tok, p_read, p_attn, n_seq, exact)
        k = pc[SPEC_K]
        kn = int(k) * n_dec  # the drafted tokens the target verifies
        m1, c1, m2, c2, fx = plain(pc, n_dec, ctx_dec, p_tok + kn, p_read, p_attn + k * ctx_dec, n_seq + kn, exact)
        # the drafter: k sequential steps over the decoding sequences
        dm = k * (pc[D_W] + pc[D_KV] * ctx_dec) / pc[BW]
        dc = k * pc[D_FTOK] * n_dec / pc[FLOPS]
        df = k * pc[D_OVH]
        m1 += dm
        c1 += dc
        fx += df
        if p_tok == 0:
            s = pc[SPEC_INVG]
            return m1 * s, c1 * s, m2 * s, c2 * s, fx * s
        # prefill chunks ride along: the step's time (at full clock) is the whole step's less the
        # (1 - 1/g) of a verify step alone that the decoders' other tokens are charged later, so
        # over the real step's tokens the time is conserved; the terms are scaled to it (the
        # step's power is the whole step's: time and power at a clock are homogeneous in them)
        vm1, vc1, vm2, vc2, vfx = plain(pc, n_dec, ctx_dec, kn, 0.0, k * ctx_dec, n_dec + kn, exact)
        t_w = (m1 if m1 >= c1 else c1) + (m2 if m2 >= c2 else c2) + fx
        t_v = (vm1 + dm if vm1 + dm >= vc1 + dc else vc1 + dc) + (vm2 if vm2 >= vc2 else vc2) + vfx + df
        s = 1.0 - (1.0 - pc[SPEC_INVG]) * t_v / t_w
        return m1 * s, c1 * s, m2 * s, c2 * s, fx * s

    return terms


roofline_terms = with_speculation(plain_terms)
roofline_terms.__doc__ = plain_terms.__doc__


METHODS = ("draft", "eagle", "mtp", "ngram")


def _draft_model(raw: Any, path: str, ctx: Any, kw: Any) -> Model:
    if not isinstance(raw, str):
        raise ScenarioError(path, f"must be str, got {raw!r}", "write draft_model = <str>")
    return ctx["catalog"].get_model(raw, path)


def _acceptance(raw: Any, path: str, ctx: Any, kw: Any) -> float:
    """acceptance_rate: one number, or a table of one per request class (kept in class_rates;
    the pool's rate is their share-weighted mean)."""
    classes = ctx["classes"]
    if isinstance(raw, dict):
        names = [c.name for c in classes]
        missing = [c for c in names if c not in raw]
        unknown = [c for c in raw if c not in names]
        if not names or unknown or missing:
            raise ScenarioError(path, (f"names no class {unknown[0]!r}" if unknown else
                                f"gives no rate for class {missing[0]!r}" if missing else
                                "is a per-class table but the workload has no classes"),
                                f"give one number, or a rate for each class ({', '.join(names) or 'none'})")
        for c, v in raw.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ScenarioError(f"{path}.{c}", f"must be in [0, 1) (a per-token acceptance probability), got "
                                    f"{v!r}", "e.g. 0.7")
        kw["class_rates"] = tuple((c, float(raw[c])) for c in names)
        share = {c.name: c.share for c in classes}
        return sum(share[c] * v for c, v in kw["class_rates"]) / sum(share.values())
    t = Table({"acceptance_rate": raw}, path.rsplit(".", 1)[0])
    a = t.get("acceptance_rate", float)
    if not 0.0 <= a < 1.0:
        raise ScenarioError(path, f"must be in [0, 1) (a per-token acceptance probability), got {a}",
                            "e.g. acceptance_rate = 0.7")
    return float(a)


@dataclass(frozen=True, kw_only=True)
class Speculative:
    """[pools.speculative]: the drafter proposes `num_tokens` (k) tokens per step, each accepted
    with probability `acceptance_rate` (a) given the ones before it; the target verifies them all
    and keeps the accepted run plus one token of its own. method: "draft" (a separate
    `draft_model` on the same GPUs), "eagle" (a one-layer head on the target's features: EAGLE-1/3),
    "mtp" (the model's own multi-token-prediction module, one layer: DeepSeek-V3), "ngram"
    (prompt lookup on the host: no GPU cost)."""

    method: str = key(REQUIRED, "how tokens are drafted", choices=METHODS)
    num_tokens: int = key(REQUIRED, "tokens drafted per step (k)", positive=True, hi=16,
                          hint="set num_tokens between 1 and 16 (vLLM and SGLang use 1-8)")
    # the pool's (with per-class rates: their mean weighted by the classes' shares)
    acceptance_rate: float = key(REQUIRED, "each drafted token's acceptance probability given the ones before it, "
                                 "in [0, 1): a number, or a table per request class", kind=(float, dict),
                                 parse=_acceptance,
                                 write=lambda v, o: dict(o.class_rates) if o.class_rates else v)
    draft_model: Model | None = key(None, "method = \"draft\": the drafter (a catalog model sharing the target's "
                                    "tokenizer)", kind=str, parse=_draft_model, write=lambda v, o: v.id if v else OMIT)
    class_rates: tuple[tuple[str, float], ...] = ()  # per request class, when given as a table

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens emitted per sequence per step: sum_{i=0..k} a^i = (1 - a^(k+1)) / (1 - a)."""
        return tokens_per_step(self.acceptance_rate, self.num_tokens)

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Any, t: Table) -> dict[str, Any]:
        model, draft, method = ctx["model"], kw["draft_model"], kw["method"]
        if method == "draft":
            if draft is None:
                raise ScenarioError(f"{path}.draft_model", "missing", f"add draft_model = ... to [{path}]")
            if draft.vocab != model.vocab:
                raise ScenarioError(f"{path}.draft_model", f"{draft.id} has a vocabulary of {draft.vocab} tokens, "
                                    f"{model.id} one of {model.vocab}: a drafter must share the target's tokenizer",
                                    "pick a draft model of the target's family (e.g. llama-3.2-1b for Llama 3.1)")
            if draft.active_params >= model.active_params:
                raise ScenarioError(f"{path}.draft_model", f"{draft.id} ({draft.active_params / 1e9:.3g}B active) is "
                                    f"no smaller than the target {model.id} ({model.active_params / 1e9:.3g}B): "
                                    "drafting would cost more than it saves",
                                    "pick a drafter a small fraction of the target's size")
        elif draft is not None:
            raise ScenarioError(f"{path}.draft_model", f"only method = \"draft\" takes a draft model ({method!r} "
                                "drafts with the target's own head or the prompt)",
                                "remove draft_model or set method = \"draft\"")
        return kw


def tokens_per_step(a: float, k: int) -> float:
    """sum_{i=0..k} a^i: the expected tokens a step emits per sequence (Leviathan et al. 2023)."""
    return float(k + 1) if a >= 1.0 else (1.0 - a ** (k + 1)) / (1.0 - a)


def verify_steps(out_tok, rates, k: int, rng) -> "np.ndarray":
    """Verify steps each request needs to emit out_tok - 1 tokens after its first (prefill's):
    each step, per sequence, the drafted tokens are kept while accepted (probability rates[j]
    each, given the ones before) and the target adds one of its own; drawn per sequence per
    step from `rng`, in step order over the requests still decoding."""
    import numpy as np

    need_all = np.asarray(out_tok, np.int64) - 1
    a_all = np.asarray(rates, float)
    steps = np.zeros(need_all.shape[0], np.int64)
    live = np.flatnonzero(need_all > 0)
    # the live requests' columns kept compact (not gathered from the full arrays every step), and
    # their step counts written back once each is done: the same draws, in the same order
    need, a, n_steps = need_all[live], a_all[live], 0
    with np.errstate(divide="ignore"):
        log_a = np.log(a)  # (-inf for a = 0: nothing accepted)
    pos = a > 0.0
    while live.size:
        u = rng.random(live.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.where(pos, np.floor(np.log(u) / log_a), 0.0)  # P(acc >= i) = a^i
        need -= 1 + np.minimum(acc, k).astype(np.int64)
        n_steps += 1
        done = need <= 0
        if done.any():
            steps[live[done]] = n_steps
            keep = ~done
            live, need, log_a, pos = live[keep], need[keep], log_a[keep], pos[keep]
    return steps


@dataclass(frozen=True)
class StepCost:
    """Breakdown of one step's time (s) and the quantities behind it (per accelerator)."""

    t_s: float
    t_mem_s: float
    t_comp_s: float
    t_comm_s: float
    t_overhead_s: float
    bytes: float
    flops: float

    @property
    def bound(self) -> str:
        return "memory" if self.t_mem_s >= self.t_comp_s else "compute"


class PerfModel:
    """Step-time calculator for `model` on `tp` x `hardware` with weights in `dtype`."""

    def __init__(self, hardware: Hardware, model: Model, tp: int = 1, dtype: str = "bf16",
                 kv_dtype: str | None = None, clock_lock: float = 1.0,
                 scaleout: tuple[float, float] | None = None, speculative: Speculative | None = None,
                 ep: int = 1, moe_imbalance: float = 1.0, ep_net: tuple[float, float, int] | None = None,
                 engine: str = "vllm") -> None:
        """scaleout: (bytes/s, latency s) of the network ports when the tensor-parallel group
        spans nodes: its ring all-reduce then runs at the slower of them and the scale-up link.
        speculative: speculative decoding (its drafter's weights and KV share the memory).
        ep > 1: expert parallelism over ep accelerators (a multiple of tp): the routed experts
        are split whole over them, attention runs data-parallel over ep / tp ranks of tp (each
        rank its share of the batch and its KV), and each MoE layer dispatches and combines the
        tokens in two all-to-alls over ep_net = (port bytes/s, latency s, accelerators per
        node): NVLink inside a node, the ports across nodes. moe_imbalance: the busiest
        accelerator's expert load over the mean (it sets the pace). engine: whose step overheads
        are added to the part's (sim/data/engines.toml)."""
        if tp < 1:
            raise ScenarioError("tp", f"must be >= 1, got {tp}")
        if dtype not in DTYPE_BYTES:
            raise ScenarioError("dtype", f"unknown dtype {dtype!r}", f"use one of {sorted(DTYPE_BYTES)}")
        kv_dtype = kv_dtype or dtype
        if kv_dtype not in DTYPE_BYTES:
            raise ScenarioError("kv_dtype", f"unknown dtype {kv_dtype!r}", f"use one of {sorted(DTYPE_BYTES)}")
        if not 0.0 < clock_lock <= 1.0:
            raise ScenarioError(
                "clock_lock", f"must be in (0, 1] (a fraction of the part's maximum clock), got {clock_lock}"
            )
        if ep < 1 or (ep > 1 and ep % tp):
            raise ScenarioError("ep", f"must be a multiple of tp ({tp}), got {ep}")
        self.hardware, self.model, self.tp, self.ep = hardware, model, tp, ep
        self.accels = ep if ep > 1 else tp  # accelerators per replica
        dp = ep // tp if ep > 1 else 1  # attention data-parallel ranks
        share = 1.0 / dp  # a rank's share of the replica's sequences (spread evenly: an assumption)
        self._share = share
        self.clock_lock = float(clock_lock)  # the SM clock locked at this fraction of the maximum (1: not locked)
        self.dtype, self.kv_dtype = dtype, kv_dtype
        wb = DTYPE_BYTES[dtype]
        self.weight_bytes = model.weight_bytes(dtype)
        self.kv_bytes_per_token = model.kv_bytes_per_token(kv_dtype)
        # KV heads are split across TP ranks; with fewer KV heads than ranks they are replicated
        # (an MLA latent is one per token: every rank keeps it whole)
        self._kv_shard = 1.0 if model.is_mla else max(1.0, min(tp, model.kv_heads))
        # KV bytes a token takes in the group, its replicas over TP ranks included
        self.group_kv_bytes_per_token = self.kv_bytes_per_token * tp / self._kv_shard
        self._bw = hardware.mem_bw_bytes_per_s * hardware.bw_efficiency
        self._flops = hardware.peak_flops(dtype) * hardware.flops_efficiency_for(dtype)
        # quantised weights are read at a lower achieved bandwidth (dequantising kernels): counted
        # as more bytes at the part's bandwidth, so the step formula stays one
        w_read = 1.0 / hardware.weight_bw_for(dtype)
        # Weight bytes every step reads (everything but routed experts), per accelerator.
        n_exp = model.experts if model.is_moe else 0
        L = model.moe_layers
        k_act = model.active_experts if model.is_moe else 0
        expert_bytes = L * n_exp * model.expert_params * wb
        self._w_fixed = (self.weight_bytes - expert_bytes) / tp * w_read  # every DP rank holds them, TP-split
        # weights in the replica's memory: the rest on every DP rank, the experts once
        self.group_weight_bytes = (self.weight_bytes - expert_bytes) * dp + expert_bytes
        self.moe_imbalance = float(moe_imbalance)
        if ep > 1:  # whole experts, n_exp / ep of them on each accelerator
            self._w_expert_layer = L * model.expert_params * wb * w_read  # one expert, all MoE layers
            self._experts_here = n_exp / ep
            self._f_exp_tok = 2.0 * L * k_act * model.expert_params * self.moe_imbalance / ep
        else:  # every expert TP-split over the group
            self._w_expert_layer = L * model.expert_params * wb / tp * w_read
            self._experts_here = float(n_exp)
            self._f_exp_tok = 2.0 * L * k_act * model.expert_params / tp
        self._kv_per_tok = self.kv_bytes_per_token / self._kv_shard * share
        # FLOPs per token for linear layers (LM head counted per sequence, not per token);
        # routed experts separately.
        self._f_tok = (
            2.0 * (model.active_params - model.vocab * model.hidden - L * k_act * model.expert_params) / tp * share
        )
        self._flops_exp = self._flops * hardware.moe_flops_efficiency
        self._f_seq = 2.0 * model.vocab * model.hidden / tp * share
        self._f_attn = model.attn_flops_per_pair / tp * share  # per (query, key) pair
        self._f_attn_p = model.attn_flops_per_pair_prefill / tp * share
        self._comm_per_tok = 0.0
        self._comm_fixed = 0.0
        if ep > 1 and L:
            # per token, each MoE layer: its hidden state to its k experts (fp8, as DeepEP dispatches)
            # and k results back (bf16); the share leaving the accelerator goes over NVLink inside
            # its node, over the ports across nodes, both at once (the slower sets the time). Not
            # overlapped with compute (DeepSeek overlaps them with two micro-batches: a bound)
            port, lat, gpn = ep_net if ep_net is not None else (50e9, 5e-6, 8)
            in_node = min(gpn, ep)
            nodes = ep / in_node
            per_copy = L * model.hidden * 3.0 * self.moe_imbalance  # one copy out and back, every MoE layer
            # NVLink: the copies for this node's other accelerators; the ports: one copy per other
            # node hit (DeepEP sends a token once per node and forwards it there), the expected
            # distinct other nodes among k experts drawn uniformly, at most route_nodes (the
            # model's node-limited routing: DeepSeek-V3's topk_group)
            other = (nodes - 1) * (1.0 - (1.0 - 1.0 / nodes) ** k_act) if nodes > 1 else 0.0
            if model.route_nodes:
                other = min(other, float(model.route_nodes))
            t_nv = per_copy * k_act * (in_node - 1) / ep / hardware.link_bytes_per_s
            t_net = per_copy * other / port
            self._comm_per_tok = max(t_nv, t_net) * share
            self._comm_fixed = 2 * L * (lat if ep > in_node else hardware.comm_latency_s)
        if tp > 1:
            ring = 2.0 * (tp - 1) / tp
            link = hardware.allreduce_bytes_per_s(tp)
            hop = hardware.comm_latency_s
            if scaleout is not None:  # a ring across nodes: its slowest hop sets the pace
                link, hop = min(link, scaleout[0]), max(hop, scaleout[1])
            self._comm_per_tok += 2 * model.layers * ring * model.hidden * ACT_BYTES / link * share
            # ring all-reduce: 2 (tp - 1) hops, half of them carrying the latency of a hop each way
            self._comm_fixed += 2 * model.layers * hop * (tp - 1)
        eng = engine_constants(engine)
        self.engine = engine
        self._ovh = hardware.step_overhead_s + eng.step_overhead_s
        if model.is_moe:  # the engine's fixed cost of each MoE layer's routing, dispatch and combine
            self._ovh += eng.moe_layer_overhead_s * model.moe_layers
        self._ovh_seq = hardware.seq_overhead_s + eng.seq_overhead_s
        self._mem_frac = hardware.memory_power_frac
        self._dyn_w = hardware.tdp_w - hardware.idle_w
        self.speculative = speculative
        self._drafter = self._drafter_figures(speculative, wb)
        self.constants = self._constants()

    def _drafter_figures(self, spec: Speculative | None, wb: float) -> tuple[float, float, float, float, float]:
        """(weight bytes, KV bytes per token: its whole footprint in the group; and per accelerator
        per drafter step: weight bytes read, KV bytes per context token, FLOPs per token)."""
        if spec is None or spec.method == "ngram":
            return 0.0, 0.0, 0.0, 0.0, 0.0
        m, tp = self.model, self.tp
        if spec.method == "draft":
            d = spec.draft_model
            if d is None:
                raise ScenarioError("speculative.draft_model", "method = \"draft\" needs a draft model")
            w = d.weight_bytes(self.dtype)
            kv = d.kv_bytes_per_token(self.kv_dtype)
            # a dense draft model reads every weight each step; its logits for every drafted token
            return (w, kv, w / tp, kv / max(1.0, min(tp, d.kv_heads)) * self._share,
                    2.0 * d.active_params / tp * self._share)
        # eagle / mtp: one decoder layer of the target's shape (dense MLP of its ffn size), over the
        # target's features, sharing its embeddings and LM head (read each step: vocab x hidden)
        layer = (m.attn_params_per_layer + m.expert_params) * wb
        head = m.vocab * m.hidden * wb
        kv = m.kv_bytes_per_token(self.kv_dtype) / m.layers
        return (layer, kv, (layer + head) / tp, kv / self._kv_shard * self._share,
                2.0 * (layer / wb + m.vocab * m.hidden) / tp * self._share)

    def _constants(self) -> tuple:
        """The figures the step formula reads, in the order of the W_FIXED... indices above."""
        m, h = self.model, self.hardware
        moe = m.is_moe
        return (self._w_fixed, self._kv_per_tok, self._bw, self._f_tok, self._f_seq, self._f_attn,
                self._flops, self._f_exp_tok, self._flops_exp, self._w_expert_layer,
                self._experts_here if moe else 0.0, (1.0 - m.active_experts / m.experts) if moe else 0.0,
                self._comm_fixed, self._comm_per_tok, self._ovh, self._ovh_seq, h.idle_w, self._dyn_w,
                self._mem_frac, 1.0 / self._flops, h.clock_power_frac, self.clock_lock) + self._spec_constants()

    def _spec_constants(self) -> tuple:
        sp = self.speculative
        if sp is None:
            return (0.0, 1.0, 0.0, 0.0, 0.0, 0.0, self._f_attn_p)
        _w, _kv, d_w, d_kv, d_f = self._drafter
        # ASSUMED: a drafter step on the GPU costs one step's fixed overhead (kernel launches,
        # sampling); prompt lookup (ngram) runs on the host, overlapped
        ovh = 0.0 if sp.method == "ngram" else self._ovh
        return (float(sp.num_tokens), 1.0 / sp.tokens_per_step, d_w, d_kv, d_f, ovh, self._f_attn_p)

    def experts_touched(self, tokens: float) -> float:
        """Expected distinct routed experts per layer hit by `tokens` tokens (top-k of E)."""
        m = self.model
        if not m.is_moe or tokens <= 0:
            return 0.0
        return m.experts * (1.0 - (1.0 - m.active_experts / m.experts) ** tokens)

    def cost(self, n_dec: float, ctx_dec: float, p_tok: int = 0, p_ctx_read: float = 0.0,
             p_attn: float = 0.0, n_seq: float | None = None) -> StepCost:
        """Full breakdown of one uncapped step.

        n_dec: decode sequences; ctx_dec: sum of their context lengths (tokens in KV, incl. the
        new one); p_tok: prefill tokens computed this step; p_ctx_read: KV tokens already cached
        that the prefill chunks attend to; p_attn: prefill (query, key) pairs, i.e. sum over
        chunks of c * (prior + (c + 1) / 2); n_seq: sequences in the step (default n_dec + 1
        if there is prefill).
        """
        tokens = n_dec + p_tok
        if n_seq is None:
            n_seq = n_dec + (1 if p_tok else 0)
        if tokens <= 0:
            return StepCost(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        pc = self.constants
        m1, c1, m2, c2, fixed = roofline_terms(pc, n_dec, ctx_dec, p_tok, p_ctx_read, p_attn, n_seq, True)
        t, _ = at_clock(m1, c1, m2, c2, fixed, pc[F_MAX], pc[IDLE_W], pc[DYN_W], pc[MEM_FRAC], pc[CLK_FRAC])
        t_comm = self._comm_fixed + self._comm_per_tok * tokens  # the breakdown of `fixed`
        return StepCost(t, m1 + m2, c1 + c2, t_comm, fixed - t_comm, (m1 + m2) * self._bw,
                        c1 * self._flops + c2 * self._flops_exp)

    def step_time(self, n_dec: float, ctx_dec: float, p_tok: int = 0, p_ctx_read: float = 0.0,
                  p_attn: float = 0.0, n_seq: float = 0) -> float:
        """Seconds for one uncapped step."""
        return self.step_power(n_dec, ctx_dec, p_tok, p_ctx_read, p_attn, n_seq).t_s

    def step_power(self, n_dec: float, ctx_dec: float, p_tok: int = 0, p_ctx_read: float = 0.0,
                   p_attn: float = 0.0, n_seq: float = 0, cap_w: float | None = None) -> StepPower:
        """(time s, per-accelerator power W, clock factor) of one step under an optional
        per-accelerator power cap; see sim/perf/power.py for the model."""
        if n_dec + p_tok <= 0:
            return StepPower(0.0, self.hardware.idle_w, 1.0)
        pc = self.constants
        m1, c1, m2, c2, fixed = roofline_terms(pc, n_dec, ctx_dec, p_tok, p_ctx_read, p_attn, n_seq,
                                               cap_w is not None or pc[F_MAX] < 1.0)
        t, p, f = capped(m1, c1, m2, c2, fixed, pc[IDLE_W], pc[DYN_W], pc[MEM_FRAC], pc[CLK_FRAC],
                         -1.0 if cap_w is None else cap_w, pc[F_MAX])
        return StepPower(t, p, f)

    def decode_window(self, n: int, ctx0: float, k: int):
        """Times (s) and per-accelerator powers (W) of k consecutive uncapped decode steps of the
        same n sequences, the first reading ctx0 KV tokens and each next one n more."""
        import numpy as np

        pc = self.constants
        t = np.empty(k)
        p = np.empty(k)
        for j in range(k):
            m1, c1, m2, c2, fixed = roofline_terms(pc, n, ctx0 + n * j, 0, 0, 0.0, n, False)
            t[j], p[j] = at_clock(m1, c1, m2, c2, fixed, pc[F_MAX], pc[IDLE_W], pc[DYN_W], pc[MEM_FRAC], pc[CLK_FRAC])
        return t, p

    # Convenience forms used by the calculator, validation and tests.
    def decode_cost(self, batch: int, context: int) -> StepCost:
        """One decode step of `batch` sequences each with `context` tokens in KV."""
        return self.cost(batch, float(batch) * context, n_seq=batch)

    def prefill_cost(self, prompt: int, batch: int = 1) -> StepCost:
        """Prefill `batch` whole prompts of `prompt` tokens in one step (no cached prefix)."""
        pairs = batch * prompt * (prompt + 1) / 2.0
        return self.cost(0, 0.0, batch * prompt, 0.0, pairs, n_seq=batch)

    # Memory capacity.
    def kv_capacity_tokens(self, kv_memory_fraction: float) -> float:
        """KV tokens that fit in the replica beside its weights (and a drafter's weights, its KV
        taking its share per token) (negative if weights do not fit)."""
        usable = self.hardware.memory_bytes * self.accels * kv_memory_fraction
        dp = self.accels // self.tp
        d_w, d_kv = self.drafter_weight_bytes * dp, self._drafter[1]
        return (usable - self.group_weight_bytes - d_w) / (self.group_kv_bytes_per_token + d_kv)

    def kv_block_load_s(self, block_size: int, gbps: float) -> float:
        """Seconds to bring one KV block (all its accelerators' shares) over a gbps link."""
        return self.group_kv_bytes_per_token * block_size / (gbps * 1e9 / 8.0)

    def block_recompute_s(self, block_size: int) -> float:
        """Seconds one block of a prompt costs to prefill (within a 2,048-token prompt: the
        reference a KV tier must beat)."""
        return self.prefill_cost(2048).t_s / 2048 * block_size

    def kv_tier_pays(self, block_size: int, gbps: float) -> bool:
        """Whether loading a block over a gbps link beats recomputing it (else a tier is unused)."""
        return self.kv_block_load_s(block_size, gbps) < self.block_recompute_s(block_size)

    @property
    def drafter_weight_bytes(self) -> float:
        """A speculative pool's drafter's weights (one copy: each attention rank holds one)."""
        return self._drafter[0]

    def kv_blocks(self, kv_memory_fraction: float, block_size: int) -> int:
        return int(math.floor(self.kv_capacity_tokens(kv_memory_fraction) / block_size))
