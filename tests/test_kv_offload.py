"""KV tiers (issue 14, part 2): prefix-cache blocks evicted from HBM go to a CPU (or SSD) tier
and come back over its link instead of being recomputed. On a multi-turn workload whose HBM
cache is too small, the tier lowers mean TTFT against recompute-on-miss; bytes over the link are
the blocks moved times the block's bytes, computed from the model; a tier slower than
recomputing is not used (and said so); both drivers agree."""

from __future__ import annotations


import numpy as np
import pytest

from sim.analysis.metrics import summarize
from sim.engine.recorder import COMPLETED
from sim.engine.simulation import Simulation
from sim.perf.catalog import builtin_catalog
from helpers import TINY_WORKLOAD, assert_run_fails_in_one_line
from sim.scenario.config import parse

CPU = {"tier": "cpu", "capacity_gb": 200.0, "gbps": 400.0}  # PCIe 5.0 x16 is about 500 Gb/s


def _raw(off: dict | None, engine: str = "compiled") -> dict:
    pool = {"name": "m", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 2,
            "scheduler": {"prefix_caching": True, "kv_memory_fraction": 0.3}}  # ~4 GB of KV: too small
    if off:
        pool["kv_offload"] = off
    return {"seed": 4, "workload": {"arrival": "poisson", "rate_per_s": 2.0, "num_requests": 150,
                                    "prompt_tokens": {"dist": "lognormal", "mean": 600, "cv": 0.8, "max": 4000},
                                    "output_tokens": {"dist": "lognormal", "mean": 200, "cv": 0.8, "max": 1000},
                                    "multi_turn": {"turns": {"dist": "uniform", "min": 3, "max": 8},
                                                   "think_time_s": {"dist": "uniform", "min": 20.0, "max": 90.0}}},
            "pools": [pool], "router": {"policy": "session_affinity"}, "run": {"engine": engine}}


@pytest.fixture(scope="module")
def runs():
    return Simulation(parse(_raw(None))).run(), Simulation(parse(_raw(CPU))).run()


def test_cpu_offload_lowers_ttft_against_recompute_on_miss(runs):
    off, on = runs
    a, b = summarize(off), summarize(on)
    assert np.all(on.requests.status == COMPLETED) and np.all(off.requests.status == COMPLETED)
    assert b["prefix_cache_hit_rate"] > a["prefix_cache_hit_rate"] + 0.3
    assert b["ttft_mean_s"] < 0.8 * a["ttft_mean_s"], (a["ttft_mean_s"], b["ttft_mean_s"])


def test_bytes_over_the_link_are_the_blocks_moved_times_the_block_bytes(runs):
    _, on = runs
    s = summarize(on)
    m = builtin_catalog().models["llama-3.1-8b"]
    block = 2 * m.layers * m.kv_heads * m.head_dim * 2 * 16  # K and V, every layer, bf16, 16 tokens
    loaded = sum(r.tier_hit_blocks for r in on.replicas)
    assert loaded > 0
    assert s["kv_tier_bytes_loaded"] == loaded * block
    assert s["prefix_hit_tokens_by_tier"]["cpu"] == loaded * 16
    assert sum(s["prefix_hit_tokens_by_tier"].values()) == sum(r.prefix_hit_tokens for r in on.replicas)
    offloaded = sum(r.offloaded_blocks for r in on.replicas)
    assert s["kv_tier_bytes_offloaded"] == offloaded * block and offloaded >= loaded


def test_the_tier_holds_at_most_its_capacity():
    """A tier of 2 GB (about 15 blocks' worth of sessions): it drops its least recently used
    blocks, so fewer come back than from 200 GB, and every run still completes."""
    small = Simulation(parse(_raw(dict(CPU, capacity_gb=0.2)))).run()
    big = Simulation(parse(_raw(CPU))).run()
    assert sum(r.tier_hit_blocks for r in small.replicas) < sum(r.tier_hit_blocks for r in big.replicas)
    assert np.all(small.requests.status == COMPLETED)


@pytest.mark.slow
def test_both_drivers_agree():
    a = Simulation(parse(_raw(CPU))).run()
    b = Simulation(parse(_raw(CPU, "simpy"))).run()
    for f in ("first_token_s", "finish_s", "replica", "preemptions"):
        assert np.array_equal(getattr(a.requests, f), getattr(b.requests, f)), f
    assert [r.tier_hit_blocks for r in a.replicas] == [r.tier_hit_blocks for r in b.replicas]


def test_a_tier_slower_than_recomputing_is_not_used(runs):
    off, _ = runs
    with pytest.warns(Warning, match="no faster than recomputing"):
        sc = parse(_raw({"tier": "ssd", "capacity_gb": 200.0, "gbps": 0.5}))
    slow = Simulation(sc).run()
    assert np.array_equal(slow.requests.first_token_s, off.requests.first_token_s)
    assert sum(r.tier_hit_blocks for r in slow.replicas) == 0


BASE = TINY_WORKLOAD + """[[pools]]
hardware = "h100-sxm"
model = "llama-3.1-8b"
[pools.scheduler]
prefix_caching = {pc}
[pools.kv_offload]
{off}
"""


@pytest.mark.slow
@pytest.mark.parametrize("pc,off,field", [
    ("false", 'tier = "cpu"\ncapacity_gb = 100\ngbps = 400', "pools[0].kv_offload"),
    ("true", 'tier = "tape"\ncapacity_gb = 100\ngbps = 400', "pools[0].kv_offload.tier"),
    ("true", 'tier = "cpu"\ncapacity_gb = 0\ngbps = 400', "pools[0].kv_offload.capacity_gb"),
    ("true", 'tier = "cpu"\ncapacity_gb = 100', "pools[0].kv_offload.gbps"),
])
def test_bad_kv_offload_input_is_one_line_exit_2(tmp_path, pc, off, field):
    assert_run_fails_in_one_line(tmp_path, BASE.format(pc=pc, off=off), field)


@pytest.mark.slow
def test_preempted_requests_swap_out_to_the_tier_instead_of_recomputing():
    """No shared prefixes, a KV cache far too small for the batch (heavy recompute preemption):
    with a CPU tier the preempted requests' KV is swapped out and loaded back, so the tier's
    loads are all swaps, and requests finish sooner than when they recompute; both drivers agree."""
    def raw(off, engine="compiled"):
        pool = {"name": "m", "hardware": "h100-sxm", "model": "llama-3.1-8b",
                "scheduler": {"prefix_caching": True, "kv_memory_fraction": 0.225, "max_batch_size": 128}}
        if off:
            pool["kv_offload"] = off
        return {"seed": 2, "workload": {"arrival": "poisson", "rate_per_s": 12.0, "num_requests": 300,
                                        "prompt_tokens": {"dist": "lognormal", "mean": 2000, "cv": 0.5, "max": 6000},
                                        "output_tokens": {"dist": "lognormal", "mean": 800, "cv": 0.5, "max": 3000}},
                "pools": [pool], "run": {"engine": engine}}
    base = Simulation(parse(raw(None))).run()
    swap = Simulation(parse(raw(CPU))).run()
    ref = Simulation(parse(raw(CPU, "simpy"))).run()
    assert np.array_equal(swap.requests.finish_s, ref.requests.finish_s)
    assert base.requests.preemptions.sum() > 50 and swap.requests.preemptions.sum() > 50
    assert sum(r.tier_hit_blocks for r in swap.replicas) > 0
    assert sum(r.prefix_hit_tokens for r in swap.replicas) == 0  # nothing shared: every load is a swap
    a, b = summarize(base), summarize(swap)
    assert b["e2e_mean_s"] < a["e2e_mean_s"], (a["e2e_mean_s"], b["e2e_mean_s"])
    assert np.all(swap.requests.status == COMPLETED)
