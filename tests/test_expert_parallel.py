"""Expert parallelism for wide MoE (issue 14, part 3): the catalog's new models against their
published parameter counts and MLA cache size, an EP decode step by hand, memory, cost and power
per accelerator, the DeepSeek-V3 scenario against DeepSeek's published decode throughput, and
bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation
from sim.perf.catalog import builtin_catalog
from sim.perf.roofline import PerfModel
from helpers import TINY_WORKLOAD, assert_run_fails_in_one_line
from sim.scenario.config import parse
from sim.scenario.pools import accel_usd_per_hour

REPO = Path(__file__).resolve().parents[1]
CAT = builtin_catalog()


@pytest.mark.parametrize("mid,total_b,active_b", [
    ("deepseek-v3", 671, 37),  # DeepSeek-V3 technical report: 671B total, 37B activated per token
    ("qwen3-235b-a22b", 235, 22),  # Qwen3 model card
    ("gpt-oss-120b", 116.8, 5.1),  # OpenAI gpt-oss model card: 116.8B total, 5.1B active
    ("llama-4-maverick-17b-128e", 400, 17),  # Meta: 400B total, 17B active
])
def test_published_parameter_counts(mid, total_b, active_b):
    m = CAT.models[mid]
    assert m.total_params / 1e9 == pytest.approx(total_b, rel=0.015)
    assert m.active_params / 1e9 == pytest.approx(active_b, rel=0.06)


def test_mla_caches_one_latent_per_token_and_layer():
    """DeepSeek-V3: kv_lora_rank 512 + qk_rope_head_dim 64 per layer, 61 layers (70 KB in bf16,
    against 61 x 2 x 128 heads x 128 = 4 MB for the same model with ordinary attention)."""
    m = CAT.models["deepseek-v3"]
    assert m.kv_bytes_per_token("bf16") == 61 * 576 * 2
    pm = PerfModel(CAT.hardware["h800"], m, 8, "fp8", "bf16")
    assert pm.group_kv_bytes_per_token == 8 * 61 * 576 * 2  # every TP rank keeps the latent whole


def _ep_model(ep: int = 32, imb: float = 1.0) -> PerfModel:
    return PerfModel(CAT.hardware["h800"], CAT.models["deepseek-v3"], 1, "fp8", "bf16", ep=ep, moe_imbalance=imb,
                     ep_net=(50e9, 5e-6, 8))


def test_an_ep_decode_step_by_hand():
    """EP32, attention DP32: each GPU reads the non-expert weights whole, its 8 experts as far as
    they are hit, and 1/32 of the batch's KV; the all-to-all sends each token once to every
    other node its experts sit on (at most 4: node-limited routing) over a 50 GB/s port."""
    m, hw = CAT.models["deepseek-v3"], CAT.hardware["h800"]
    pm = _ep_model()
    b, ctx = 32 * 64, 5000.0
    wb = 1.0
    L = 58
    expert = 3 * 7168 * 2048
    dense_bytes = m.weight_bytes("fp8") - L * 256 * expert * wb
    touched = 8 * (1 - (1 - 8 / 256) ** b)  # of the 8 experts on this GPU
    bw = hw.mem_bw_bytes_per_s * hw.bw_efficiency
    mem = (dense_bytes + 61 * 576 * 2 * ctx * b / 32) / bw + touched * L * expert * wb / bw
    flops = hw.peak_flops("fp8") * hw.flops_efficiency
    dense_f = 2 * (m.active_params - m.vocab * m.hidden - L * 8 * expert) * b / 32
    attn_f = 2 * 61 * 128 * (2 * 512 + 64) * ctx * b / 32
    head_f = 2 * m.vocab * m.hidden * b / 32
    exp_f = 2 * L * 8 * expert * b / 32
    comp_main = (dense_f + head_f + attn_f) / flops
    comp_exp = exp_f / (flops * hw.moe_flops_efficiency)
    nodes = 4
    other = min((nodes - 1) * (1 - (1 - 1 / nodes) ** 8), 4)
    per_copy = L * 7168 * 3.0
    a2a = max(per_copy * 8 * 7 / 32 / hw.link_bytes_per_s, per_copy * other / 50e9) * b / 32 + 2 * L * 5e-6
    mem1, mem2 = (dense_bytes + 61 * 576 * 2 * ctx * b / 32) / bw, touched * L * expert * wb / bw
    want = max(mem1, comp_main) + max(mem2, comp_exp) + a2a + hw.step_overhead_s
    assert pm.decode_cost(b, ctx / 1.0).t_s == pytest.approx(want, rel=1e-9)
    assert mem == pytest.approx(mem1 + mem2)


def test_imbalance_slows_the_step_and_memory_holds_the_experts_once():
    b = 32 * 64
    assert _ep_model(imb=1.5).decode_cost(b, 4000).t_s > _ep_model(imb=1.0).decode_cost(b, 4000).t_s
    m = CAT.models["deepseek-v3"]
    pm = _ep_model()
    experts = 58 * 256 * 3 * 7168 * 2048
    assert pm.group_weight_bytes == pytest.approx((m.weight_bytes("fp8") - experts) * 32 + experts)
    usable = 80e9 * 32 * 0.9
    assert pm.kv_capacity_tokens(0.9) == pytest.approx((usable - pm.group_weight_bytes) / (61 * 576 * 2))


def test_an_ep_replica_pays_and_draws_for_ep_accelerators():
    raw = {"seed": 1, "workload": {"arrival": "poisson", "rate_per_s": 2.0, "num_requests": 40, "prompt_tokens": 500,
                                   "output_tokens": 50},
           "pools": [{"name": "m", "hardware": "h100-sxm", "model": "mixtral-8x7b", "tp": 2, "ep": 8, "replicas": 2}],
           "cost": {"usd_per_accel_hour": 2.0}}
    sc = parse(raw)
    s = summarize(Simulation(sc).run())
    assert sc.pools[0].accels == 8
    assert s["cost_breakdown_usd"]["accelerators"] == pytest.approx(2 * 8 * 2.0 * s["sim_time_s"] / 3600, rel=1e-9)
    assert s["requests_completed"] == 40
    assert accel_usd_per_hour(sc.pools[0], sc.cost) == 2.0


def test_deepseek_v3_decode_throughput_against_deepseeks_published_figure():
    """scenarios/deepseek_v3_ep.py: DeepSeek reports ~14.8k output tokens/s per H800 node in
    decode (a day's average); the simulated steady state at its load is within 1.5x of it (the
    gap and its reasons in docs/serving_features.md)."""
    sys.path.insert(0, str(REPO / "scenarios"))
    try:
        import deepseek_v3_ep
    finally:
        sys.path.pop(0)
    r = deepseek_v3_ep.run()
    assert r["stable"] and r["requests"] > 50_000
    assert 1 / 1.5 < r["ratio_to_published"] < 1.5, r["ratio_to_published"]
    assert 15 < r["user_tok_per_s"] < 60


BASE = TINY_WORKLOAD + """[[pools]]
hardware = "h100-sxm"
{pool}
"""


@pytest.mark.slow
@pytest.mark.parametrize("pool,field", [
    ('model = "mixtral-8x7b"\ntp = 2\nep = 6', "pools[0].ep"),  # 6 does not divide 8 experts
    ('model = "deepseek-v3"\ndtype = "fp8"\nep = 48', "pools[0].ep"),  # nor 256
    ('model = "llama-3.1-8b"\nep = 2', "pools[0].ep"),  # a dense model
    ('model = "mixtral-8x7b"\ntp = 4\nep = 2', "pools[0].ep"),  # not a multiple of tp
    ('model = "mixtral-8x7b"\ntp = 2\nep = 4\nmoe_imbalance = 0.8', "pools[0].moe_imbalance"),
    ('model = "mixtral-8x7b"\ntp = 2\nmoe_imbalance = 1.5', "pools[0].moe_imbalance"),  # without ep
    ('model = "deepseek-v3"\ndtype = "bf16"\nep = 8', "pools[0].ep"),  # 1.3 TB of weights on 8 GPUs
])
def test_bad_ep_input_is_one_line_exit_2(tmp_path, pool, field):
    assert_run_fails_in_one_line(tmp_path, BASE.format(pool=pool), field)
