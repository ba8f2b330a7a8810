"""Roofline perf model: derived sizes, bounds, tensor parallelism, MoE, dtype."""

import pytest

from sim.perf.catalog import builtin_catalog
from sim.perf.roofline import PerfModel

CAT = builtin_catalog()


def pm(model="llama-3.1-8b", hw="h100-sxm", tp=1, dtype="bf16"):
    return PerfModel(CAT.hardware[hw], CAT.models[model], tp, dtype)


@pytest.mark.parametrize("model,billions", [("llama-2-7b", 6.74), ("llama-2-70b", 68.98), ("llama-3.1-8b", 8.03),
                                            ("llama-3.1-70b", 70.55), ("llama-3.1-405b", 405.85),
                                            ("mixtral-8x7b", 46.70), ("mixtral-8x22b", 140.63),
                                            ("qwen2.5-7b", 7.62), ("mistral-nemo-12b", 12.25), ("yi-34b", 34.39),
                                            ("llama-2-13b", 13.02), ("mistral-7b", 7.24), ("qwen3-8b", 8.19),
                                            ("qwen3-30b-a3b", 30.53), ("llama-3.2-3b", 3.21)])
def test_parameter_counts_match_published(model, billions):
    # Published counts (model cards); qwen2.5-7b differs by its small QKV biases only.
    assert CAT.models[model].total_params / 1e9 == pytest.approx(billions, rel=0.01)


def test_kv_bytes_per_token_is_gqa_aware():
    assert pm().kv_bytes_per_token == 2 * 32 * 8 * 128 * 2  # Llama-3.1-8B: 8 KV heads
    assert pm("llama-2-7b").kv_bytes_per_token == 2 * 32 * 32 * 128 * 2  # MHA
    assert pm(dtype="fp8").kv_bytes_per_token == 2 * 32 * 8 * 128 * 1


def test_small_batch_decode_is_memory_bound_near_weight_floor():
    p = pm()
    c = p.decode_cost(1, 512)
    assert c.bound == "memory"
    floor = p.weight_bytes / CAT.hardware["h100-sxm"].mem_bw_bytes_per_s
    assert floor < c.t_s < 3 * floor


def test_long_prefill_is_compute_bound_and_scales_with_tokens():
    p = pm()
    a, b = p.prefill_cost(4096), p.prefill_cost(8192)
    assert a.bound == "compute"
    assert 2.0 < (b.t_s - p.hardware.step_overhead_s) / (a.t_s - p.hardware.step_overhead_s) < 2.3  # + attention


def test_decode_grows_with_context_and_batch():
    p = pm()
    assert p.decode_cost(32, 4096).t_s > p.decode_cost(32, 1024).t_s > p.decode_cost(1, 1024).t_s


def test_tensor_parallel_splits_weights_and_adds_comm():
    p1, p2 = pm("llama-3.1-70b", tp=4), pm("llama-3.1-70b", tp=8)
    c1, c2 = p1.decode_cost(8, 1024), p2.decode_cost(8, 1024)
    assert c2.t_mem_s == pytest.approx(c1.t_mem_s / 2, rel=0.01)
    assert c1.t_comm_s > 0 and pm().decode_cost(8, 1024).t_comm_s == 0


def test_moe_reads_only_touched_experts():
    p = pm("mixtral-8x7b", tp=2)
    assert p.experts_touched(1) == pytest.approx(2.0)
    assert 7.9 < p.experts_touched(64) <= 8.0
    one, many = p.decode_cost(1, 100), p.decode_cost(64, 100)
    assert one.bytes < 0.5 * many.bytes  # one token touches 2 of 8 experts


def test_fp8_halves_weight_bytes():
    assert pm(dtype="fp8").weight_bytes == pytest.approx(pm().weight_bytes / 2)


def test_kv_capacity_beside_weights():
    p = pm()
    tokens = p.kv_capacity_tokens(0.9)
    assert tokens == pytest.approx((80e9 * 0.9 - p.weight_bytes) / 131072)
    assert pm("llama-3.1-70b").kv_capacity_tokens(0.9) < 0  # 141 GB of weights on one 80 GB GPU
