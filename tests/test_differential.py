"""Driver against driver, on scenarios hypothesis draws over the registry: every compiled
scheduler and router, with KV pressure (preemption), prefix caching (LRU eviction), client
timeouts, request classes, two models in two pools (routing groups), prefill/decode disaggregation,
step-time variability (warm-up, jitter), horizons, mixed hardware and a facility (every
power-manager policy, supplies short enough to cap, scheduled trips and turbine faults, node
failures with retries, commissioning, a battery), autoscaling (every policy, cold starts, drains),
speculative decoding, expert parallelism, multi-turn sessions and KV tiers, and closed-loop clients
(sim/engine/kernel/clients.py) instead of open-loop arrivals. The compiled engine
must give the SimPy engine's per-request first-token, start and finish times, statuses and
preemptions, bit for bit.

Derandomized, so CI runs the same examples every time; `DCSIM_FUZZ=N` runs N more random ones."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import differential_scenario
from helpers import same as _same
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sim.analysis.metrics import summarize
from sim.engine import arrays
from sim.engine.simulation import Simulation
from sim.registry import AUTOSCALERS, MANAGERS, ROUTERS, SCHEDULERS
from sim.scenario.config import parse

scenarios = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "model": st.sampled_from(["llama-3.1-8b", "mixtral-8x7b"]),
    "replicas": st.integers(1, 4),
    "tp": st.sampled_from([1, 2]),
    "mixed": st.booleans(),
    "two_models": st.booleans(),
    "pd": st.booleans(),  # prefill/decode disaggregation (with mixed and one model)
    "decode": st.sampled_from(["least_kv", "least_loaded", "jsq", "round_robin", "least_time"]),
    "sched": st.fixed_dictionaries({
        "policy": st.sampled_from(SCHEDULERS.compiled_names()),
        "max_batch_size": st.sampled_from([8, 32, 256]),
        "max_batched_tokens": st.sampled_from([1024, 2048, 8192]),
        "kv_memory_fraction": st.sampled_from([0.22, 0.3, 0.9]),
        "block_size": st.sampled_from([16, 32]),
        "prefix_caching": st.booleans(),
        "ageing_s": st.sampled_from([0.5, 10.0]),
    }),
    "router": st.sampled_from(ROUTERS.compiled_names()),
    # step-time warm-up and jitter: off, the fitted defaults, strong (a hash per step: both drivers draw alike)
    "variability": st.sampled_from([False, True, {"jitter": 0.2, "jitter_prob": 0.1, "warmup_factor": 3.0,
                                                  "warmup_s": 2.0, "episode_s": 1.5, "episode_share": 0.3,
                                                  "episode_stretch": 1.0}]),
    "arrival": st.sampled_from(["poisson", "gamma", "constant"]),
    "rate": st.floats(2.0, 60.0),
    "n": st.integers(50, 300),
    "prompt": st.sampled_from([200, 1000, 2500]),
    "output": st.sampled_from([30, 150, 400]),
    "timeout": st.one_of(st.none(), st.floats(0.5, 8.0)),
    "prefix": st.one_of(st.none(), st.tuples(st.integers(1, 12), st.sampled_from([100, 600, 1200]))),
    "classes": st.booleans(),
    "sessions": st.booleans(),
    "horizon": st.one_of(st.none(), st.floats(5.0, 30.0)),
    "ep": st.booleans(),
    "multi": st.booleans(),
    "offload": st.sampled_from([None, 0.02, 50.0]),
    "engine": st.sampled_from(["vllm", "trtllm"]),  # KV admission: as it fits now / whole sequence reserved
    "spec": st.one_of(st.none(), st.sampled_from([{"method": "eagle", "num_tokens": 3, "acceptance_rate": 0.7},
                                                  {"method": "ngram", "num_tokens": 5, "acceptance_rate": 0.4}])),
    "autoscale": st.one_of(st.none(), st.fixed_dictionaries({
        "policy": st.sampled_from(AUTOSCALERS.names()),
        "interval": st.sampled_from([0.5, 2.0]),
        "delay": st.sampled_from([0.0, 3.0]),
        "start": st.sampled_from([0.0, 1.0]),
        "target": st.sampled_from([None, 0.3, 2.0]),
    })),
    "facility": st.one_of(st.none(), st.fixed_dictionaries({
        "manager": st.sampled_from(MANAGERS.names()),
        "interval": st.sampled_from([0.5, 2.0, 5.0]),
        "supply": st.sampled_from([0.35, 0.6, 1.5]),  # of the full draw: deep caps (below idle x PUE), some, none
        "trip": st.one_of(st.none(), st.floats(1.0, 20.0)),
        "trip_repair": st.sampled_from([3.0, 30.0]),
        "turbine_mtbf_h": st.one_of(st.none(), st.sampled_from([0.002, 0.01])),
        "battery": st.booleans(),
        "min_load": st.sampled_from([0.0, 0.0, 0.5]),
        "reserve": st.sampled_from([0, 0, 1]),
        "commission": st.sampled_from([0.0, 0.0, 4.0]),
        "gpus_per_node": st.sampled_from([1, 2, 8]),
        "node_mtbf_h": st.one_of(st.none(), st.sampled_from([0.001, 0.003, 0.02])),
        "node_repair_h": st.sampled_from([0.0005, 0.002]),
        "retry_limit": st.integers(0, 2),
    })),
})


def _check(d: dict) -> None:
    raw = differential_scenario(d)
    keep = arrays.BATCH_ROWS
    arrays.BATCH_ROWS = 1  # the batch arrays widened as the batches grow, from one slot (plan.batch_low)
    try:
        fast = Simulation(parse(dict(raw, run=dict(raw["run"], engine="compiled")))).run()
    finally:
        arrays.BATCH_ROWS = keep
    # the reference: the per-step driver, one SimPy event per batch step over the same kernel
    ref = Simulation(parse(dict(raw, run=dict(raw["run"], engine="simpy")))).run()
    _same(fast, ref)
    if raw.get("facility") is not None:  # the ledger taking power rows as their buffer fills: the same bits
        _same_with_few_rows(raw, fast)
    if fast.autoscale is not None:  # the autoscalers' decisions and billing
        ca, cb = fast.autoscale.columns(), ref.autoscale.columns()
        assert all((ca[k] == cb[k]).all() for k in ca), "autoscaler decisions differ"
        assert fast.autoscale.billed_s == ref.autoscale.billed_s
        assert fast.autoscale.events == ref.autoscale.events


def _same_with_few_rows(raw: dict, fast) -> None:
    """The compiled run again with a power-row buffer of one row per replica, so the ledger takes
    rows between barriers at every fill (FacilityDriver._take_rows): identical results, the
    ledger's figures bit for bit."""
    keep = arrays.ROWS_PER_REPLICA, arrays.ROWS_MIN
    arrays.ROWS_PER_REPLICA, arrays.ROWS_MIN = 1, 1
    try:
        few = Simulation(parse(dict(raw, run=dict(raw["run"], engine="compiled")))).run()
    finally:
        arrays.ROWS_PER_REPLICA, arrays.ROWS_MIN = keep
    for k in ("status", "replica", "preemptions", "first_token_s", "start_s", "finish_s"):
        np.testing.assert_array_equal(getattr(few.requests, k), getattr(fast.requests, k), err_msg=k)
    sa, sb = summarize(few), summarize(fast)
    for k in ("facility_power_peak_w", "facility_power_mean_w", "power_limit_exceeded_s", "battery_used_j",
              "energy_it_j", "energy_j", "battery_charged_j", "below_min_load_s", "min_load_burn_mwh"):
        assert sa[k] == sb[k], k
    for k in few.ledger.samples:
        np.testing.assert_array_equal(few.ledger.samples[k], fast.ledger.samples[k], err_msg=k)


# found by fuzzing: the last request to leave was a response delivered after its client's
# deadline; the run ends at the delivery, though the request is recorded at the deadline
LATE_LAST = {"seed": 9395, "model": "llama-3.1-8b", "replicas": 1, "tp": 2, "mixed": True,
             "sched": {"policy": "static", "max_batch_size": 8, "max_batched_tokens": 1024,
                       "kv_memory_fraction": 0.22, "block_size": 16, "prefix_caching": False, "ageing_s": 0.5},
             "router": "least_kv", "arrival": "poisson", "rate": 38.0, "n": 87, "prompt": 2500, "output": 30,
             "timeout": 1.0, "prefix": None, "classes": False, "sessions": False, "horizon": None, "facility": None}


# found by fuzzing: with a facility and a horizon, the last request left before the horizon; the
# facility's processes (the manager's last sample) see the end then, as on the per-step driver
END_BEFORE_HORIZON = {"seed": 0, "model": "llama-3.1-8b", "replicas": 1, "tp": 1, "mixed": False,
                      "sched": {"policy": "continuous", "max_batch_size": 8, "max_batched_tokens": 1024,
                                "kv_memory_fraction": 0.22, "block_size": 16, "prefix_caching": False,
                                "ageing_s": 0.5},
                      "router": "round_robin", "arrival": "poisson", "rate": 9.0, "n": 50, "prompt": 200,
                      "output": 30, "timeout": None, "prefix": None, "classes": False, "sessions": False,
                      "horizon": 5.0,
                      "facility": {"manager": "none", "interval": 0.5, "supply": 0.35, "trip": None,
                                   "trip_repair": 3.0, "turbine_mtbf_h": None, "battery": False, "commission": 0.0,
                                   "gpus_per_node": 1, "node_mtbf_h": None, "node_repair_h": 0.0005,
                                   "retry_limit": 0}}

# found by fuzzing: a node failure failed the last requests (retry_limit 0); the per-step driver
# did not see the run end then, ran the facility on (a repair after the end) and cut the busy time
END_BY_FAILURE = dict(END_BEFORE_HORIZON, sched=dict(END_BEFORE_HORIZON["sched"], policy="fcfs"), rate=6.0,
                      horizon=None, facility=dict(END_BEFORE_HORIZON["facility"], node_mtbf_h=0.001))


# found by fuzzing: a hand-off routed after the run's last deadlines read stale router trees
PD_AFTER_DEADLINES = {'seed': 0, 'model': 'llama-3.1-8b', 'replicas': 1, 'tp': 1, 'mixed': True, 'two_models': False,
                      'pd': True, 'decode': 'least_loaded',
                      'sched': {'policy': 'fcfs', 'max_batch_size': 8, 'max_batched_tokens': 1024,
                                'kv_memory_fraction': 0.22, 'block_size': 16, 'prefix_caching': False, 'ageing_s': 0.5},
                      'router': 'round_robin', 'variability': False, 'arrival': 'poisson', 'rate': 2.0, 'n': 215,
                      'prompt': 200, 'output': 150, 'timeout': 1.0, 'prefix': None, 'classes': False,
                      'sessions': False, 'horizon': None, 'facility': None}


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(scenarios)
@example(LATE_LAST)
@example(END_BEFORE_HORIZON)
@example(END_BY_FAILURE)
@example(dict(END_BY_FAILURE, horizon=9.0))
@example(PD_AFTER_DEADLINES)
def test_compiled_equals_simpy_on_drawn_scenarios(d):
    _check(d)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(scenarios, st.tuples(st.integers(1, 48), st.sampled_from([None, 0.0, 0.3, 2.0])))
def test_closed_loop_compiled_equals_simpy(d, clients):
    """The same with closed-loop clients (concurrency, think time) instead of open-loop arrivals."""
    _check(dict(d, closed=clients))


if os.environ.get("DCSIM_FUZZ"):
    @settings(max_examples=int(os.environ["DCSIM_FUZZ"]), deadline=None, suppress_health_check=list(HealthCheck))
    @given(scenarios)
    def test_compiled_equals_simpy_fuzz(d):
        _check(d)
