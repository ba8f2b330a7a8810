"""KV tiers (issue 14, part 2): prefix-cache blocks evicted from HBM go to a CPU (or SSD) tier
and come back over its link instead of being recomputed. On a multi-turn workload whose HBM
cache is too small, the tier lowers mean TTFT against recompute-on-miss; bytes over the link are
the blocks moved times the block's bytes, computed from the model; a tier slower than
recomputing is not used (and said so); both drivers agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.analysis.metrics import summarize
from sim.engine.recorder import COMPLETED
from sim.engine.simulation import Simulation
from sim.perf.catalog import builtin_catalog
from sim.scenario.config import parse

REPO = Path(__file__).resolve().parents[1]
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


BASE = """
[workload]
arrival = "poisson"
rate_per_s = 2.0
num_requests = 20
prompt_tokens = 100
output_tokens = 10
[[pools]]
hardware = "h100-sxm"
model = "llama-3.1-8b"
[pools.scheduler]
prefix_caching = {pc}
[pools.kv_offload]
{off}
"""


@pytest.mark.parametrize("pc,off,field", [
    ("false", 'tier = "cpu"\ncapacity_gb = 100\ngbps = 400', "pools[0].kv_offload"),
    ("true", 'tier = "tape"\ncapacity_gb = 100\ngbps = 400', "pools[0].kv_offload.tier"),
    ("true", 'tier = "cpu"\ncapacity_gb = 0\ngbps = 400', "pools[0].kv_offload.capacity_gb"),
    ("true", 'tier = "cpu"\ncapacity_gb = 100', "pools[0].kv_offload.gbps"),
])
def test_bad_kv_offload_input_is_one_line_exit_2(tmp_path, pc, off, field):
    p = tmp_path / "s.toml"
    p.write_text(BASE.format(pc=pc, off=off))
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(p), "--no-plots"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in r.stderr, r.stderr
