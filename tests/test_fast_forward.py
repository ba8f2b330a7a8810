"""The fast driver (replicas advanced lazily, stable decode batches stepped in a tight loop) gives
the same per-request results as the per-step driver (one SimPy event per batch iteration)."""

from pathlib import Path

import numpy as np
import pytest

from sim.scenario.config import load
from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "scenarios" / "quickstart.toml"

CASES = {
    "chunked": (QUICK, ["workload.num_requests=1500"]),
    "continuous": (QUICK, ["workload.num_requests=1500", 'pools.scheduler.policy="continuous"']),
    "static": (QUICK, ["workload.num_requests=800", 'pools.scheduler.policy="static"']),
    "kv_pressure_preemption": (
        QUICK,
        ["workload.num_requests=800", "workload.rate_per_s=30", "pools.scheduler.kv_memory_fraction=0.215"],
    ),
    # preemptions while prompts are split into chunks: no window may start in a step that preempted
    "chunked_small_budget_preemption": (
        QUICK,
        [
            "workload.num_requests=800",
            "pools.replicas=1",
            "workload.rate_per_s=12",
            "pools.scheduler.kv_memory_fraction=0.22",
            "pools.scheduler.max_batched_tokens=2048",
        ],
    ),
    "sjf_kv_pressure_ageing": (
        QUICK,
        [
            "workload.num_requests=800",
            "workload.rate_per_s=30",
            'pools.scheduler.policy="sjf"',
            "pools.scheduler.kv_memory_fraction=0.22",
            "pools.scheduler.ageing_s=0.5",
        ],
    ),
    # the router reads free KV blocks: every replica is brought to each arrival
    "least_kv_router": (
        QUICK,
        [
            "workload.num_requests=800",
            "workload.rate_per_s=30",
            'router.policy="least_kv"',
            "pools.scheduler.kv_memory_fraction=0.22",
        ],
    ),
    "priority_sjf_jsq": (QUICK, ["workload.num_requests=1500", 'pools.scheduler.policy="sjf"', 'router.policy="jsq"']),
    "vllm_experiment_prefix_cache_timeout": (
        REPO / "scenarios" / "validation" / "19-llama-3-1-8b-tp1-roleplay-1.toml",
        ["workload.stages.duration_s=120"],
    ),
    "moe_tp2_two_replicas": (
        REPO / "scenarios" / "validation" / "32-mixtral-8x7b-tp2-general-2-2.toml",
        ["workload.stages.duration_s=60"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_forward_equals_per_iteration(case):
    path, sets = CASES[case]
    runs = {}
    for ff in (False, True):
        engine = "compiled" if ff else "simpy"
        sc = load(path, sets + [f"run.fast_forward={str(ff).lower()}", "run.timeseries=true", f'run.engine="{engine}"'])
        runs[ff] = Simulation(sc).run()
    a, b = runs[False], runs[True]
    assert (a.engine, b.engine) == ("simpy", "compiled")
    np.testing.assert_array_equal(a.requests.status, b.requests.status)
    for k in ("first_token_s", "start_s", "finish_s"):  # bit for bit: a window ends exactly where steps would
        np.testing.assert_array_equal(getattr(a.requests, k), getattr(b.requests, k), err_msg=k)
    np.testing.assert_array_equal(a.requests.preemptions, b.requests.preemptions)
    sa, sb = summarize(a), summarize(b)
    assert sa["energy_j"] == pytest.approx(sb["energy_j"], rel=1e-6)  # window energies: float order
    for k in ("ttft_p99_s", "tpot_mean_s", "e2e_mean_s", "throughput_output_tok_per_s", "requests_completed"):
        assert sa[k] == pytest.approx(sb[k], rel=1e-12)
    # the fast driver must actually have skipped steps (its time series samples planned steps only)
    assert len(b.timeseries.t_s) < len(a.timeseries.t_s)
