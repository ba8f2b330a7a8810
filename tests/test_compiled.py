"""The compiled engine (sim/engine/drivers/fast.py) gives the same per-request results as the SimPy engine,
bit for bit, on every scenario it accepts; it hands the rest to SimPy and says why."""

from pathlib import Path

import numpy as np
import pytest

from sim.scenario.config import load, parse
from sim.errors import ScenarioError
from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation
from helpers import same

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "scenarios" / "quickstart.toml"

CASES = {
    "quickstart_round_robin": ["workload.num_requests=1500"],
    "least_loaded_busy": ["workload.num_requests=1500", "workload.rate_per_s=24", 'router.policy="least_loaded"'],
    "jsq": ["workload.num_requests=1200", "workload.rate_per_s=20", 'router.policy="jsq"'],
    "power_of_two": ["workload.num_requests=1200", "workload.rate_per_s=20", 'router.policy="power_of_two"'],
    "least_kv_preemption": [
        "workload.num_requests=800",
        "workload.rate_per_s=30",
        'router.policy="least_kv"',
        "pools.scheduler.kv_memory_fraction=0.22",
    ],
    "session_affinity": [
        "workload.num_requests=1200",
        "workload.rate_per_s=20",
        'router.policy="session_affinity"',
        "workload.sessions=40",
    ],
    # admissions held back by the KV cache (no preemption) and by the batch-size limit
    "kv_and_slot_limits": [
        "workload.num_requests=800",
        "workload.rate_per_s=30",
        "pools.scheduler.max_batch_size=24",
        "pools.scheduler.kv_memory_fraction=0.4",
        "pools.scheduler.max_batched_tokens=2048",
    ],
    "moe_tp2": [
        "workload.num_requests=800",
        "workload.rate_per_s=8",
        'pools.model="mixtral-8x7b"',
        "pools.tp=2",
        'router.policy="least_loaded"',
    ],
    "single_replica_gamma": [
        "workload.num_requests=800",
        "pools.replicas=1",
        "workload.rate_per_s=4",
        'workload.arrival="gamma"',
        "workload.cv=3.0",
    ],
    # recompute preemption under KV pressure (decoding and prefilling victims), with load routers
    "preemption_round_robin": [
        "workload.num_requests=800",
        "workload.rate_per_s=30",
        "pools.scheduler.kv_memory_fraction=0.215",
    ],
    "preemption_least_loaded": [
        "workload.num_requests=800",
        "workload.rate_per_s=40",
        "pools.scheduler.kv_memory_fraction=0.22",
        'router.policy="least_loaded"',
        "pools.scheduler.max_batched_tokens=2048",
    ],
    "preemption_70b_tp2_jsq": [
        "workload.num_requests=500",
        "workload.rate_per_s=4.5",  # (3.5 preempted nothing once the TP ring ran at NCCL's bandwidth)
        'pools.model="llama-3.1-70b"',
        "pools.tp=2",
        'router.policy="jsq"',
    ],
    "continuous": [
        "workload.num_requests=1200",
        "workload.rate_per_s=20",
        'pools.scheduler.policy="continuous"',
        'router.policy="least_loaded"',
    ],
    "continuous_preemption": [
        "workload.num_requests=800",
        "workload.rate_per_s=30",
        'pools.scheduler.policy="continuous"',
        "pools.scheduler.kv_memory_fraction=0.215",
    ],
    "static": [
        "workload.num_requests=800",
        "workload.rate_per_s=12",
        'pools.scheduler.policy="static"',
        "pools.scheduler.max_batch_size=32",
        'router.policy="jsq"',
    ],
    "fcfs": ["workload.num_requests=300", "workload.rate_per_s=1.5", 'pools.scheduler.policy="fcfs"'],
    "priority_classes_preemption": [
        "workload.num_requests=1000",
        "workload.rate_per_s=30",
        'pools.scheduler.policy="priority"',
        "pools.scheduler.kv_memory_fraction=0.22",
        'workload.classes=[{name="hi", share=0.3, priority=0}, {name="lo", share=0.7, priority=2}]',
        'router.policy="least_loaded"',
    ],
    "sjf_ageing_preemption": [
        "workload.num_requests=1000",
        "workload.rate_per_s=30",
        'pools.scheduler.policy="sjf"',
        "pools.scheduler.kv_memory_fraction=0.22",
        "pools.scheduler.ageing_s=0.5",
        'router.policy="jsq"',
    ],
    # a horizon stops the run with requests in flight (their first tokens are not recorded)
    "horizon_preemption": [
        "workload.num_requests=3000",
        "workload.rate_per_s=30",
        "run.horizon_s=45.0",
        "pools.scheduler.kv_memory_fraction=0.22",
        'router.policy="least_loaded"',
    ],
    "horizon_lag_static": [
        "workload.num_requests=800",
        "workload.rate_per_s=12",
        "run.horizon_s=30.0",
        'pools.scheduler.policy="static"',
        "pools.scheduler.max_batch_size=16",
    ],
    # client timeouts: each request cancelled at its deadline wherever it is (queued, prefilling,
    # decoding, finished but not yet delivered), under overload
    "timeouts_overload": ["workload.num_requests=1500", "workload.rate_per_s=110", "workload.timeout_s=1.0"],
    "timeouts_least_loaded_preemption": [
        "workload.num_requests=1200",
        "workload.rate_per_s=45",
        "workload.timeout_s=2.5",
        'router.policy="least_loaded"',
        "pools.scheduler.kv_memory_fraction=0.22",
    ],
    "timeouts_continuous_jsq": [
        "workload.num_requests=1200",
        "workload.rate_per_s=80",
        "workload.timeout_s=2.0",
        'pools.scheduler.policy="continuous"',
        'router.policy="jsq"',
    ],
    "timeouts_static": [
        "workload.num_requests=600",
        "workload.rate_per_s=70",
        "workload.timeout_s=4.0",
        'pools.scheduler.policy="static"',
        "pools.scheduler.max_batch_size=16",
    ],
    "timeouts_priority": [
        "workload.num_requests=1200",
        "workload.rate_per_s=50",
        "workload.timeout_s=2.0",
        'pools.scheduler.policy="priority"',
        "pools.scheduler.kv_memory_fraction=0.22",
        'workload.classes=[{name="hi", share=0.3, priority=0}, {name="lo", share=0.7, priority=2}]',
    ],
    "timeouts_sjf_horizon": [
        "workload.num_requests=3000",
        "workload.rate_per_s=100",
        "workload.timeout_s=2.0",
        'pools.scheduler.policy="sjf"',
        "pools.scheduler.ageing_s=0.5",
        "run.horizon_s=40.0",
        'router.policy="power_of_two"',
    ],
    # prefix caching: hits on shared prefixes, LRU eviction of cached blocks under KV pressure
    # (before any preemption), and preemption of requests holding shared blocks
    "prefix_cache_hits": [
        "workload.num_requests=1200",
        "workload.rate_per_s=20",
        "pools.scheduler.prefix_caching=true",
        "workload.shared_prefix={groups=6, tokens=600}",
        'router.policy="session_affinity"',
        "workload.sessions=30",
    ],
    "prefix_cache_eviction_preemption": [
        "workload.num_requests=1000",
        "workload.rate_per_s=35",
        "pools.scheduler.prefix_caching=true",
        "pools.scheduler.kv_memory_fraction=0.22",
        "workload.shared_prefix={groups=40, tokens=900}",
        'router.policy="least_kv"',
    ],
    "prefix_cache_continuous_timeouts": [
        "workload.num_requests=1200",
        "workload.rate_per_s=60",
        'pools.scheduler.policy="continuous"',
        "pools.scheduler.prefix_caching=true",
        "pools.scheduler.kv_memory_fraction=0.25",
        "workload.timeout_s=3.0",
        "workload.shared_prefix={groups=12, tokens=700}",
    ],
    "prefix_cache_static": [
        "workload.num_requests=600",
        "workload.rate_per_s=12",
        'pools.scheduler.policy="static"',
        "pools.scheduler.max_batch_size=16",
        "pools.scheduler.prefix_caching=true",
        "workload.shared_prefix={groups=3, tokens=500}",
    ],
    "prefix_cache_priority_preemption": [
        "workload.num_requests=1000",
        "workload.rate_per_s=30",
        'pools.scheduler.policy="priority"',
        "pools.scheduler.kv_memory_fraction=0.22",
        "pools.scheduler.prefix_caching=true",
        "workload.shared_prefix={groups=20, tokens=800}",
        'workload.classes=[{name="hi", share=0.3, priority=0}, {name="lo", share=0.7, priority=2}]',
    ],
    "prefix_cache_sjf": [
        "workload.num_requests=1000",
        "workload.rate_per_s=30",
        'pools.scheduler.policy="sjf"',
        "pools.scheduler.prefix_caching=true",
        "pools.scheduler.kv_memory_fraction=0.22",
        "workload.shared_prefix={groups=10, tokens=400}",
        "pools.scheduler.ageing_s=0.5",
    ],
    # central_queue: one shared queue that every replica pulls from (preempted requests rejoin it
    # at the front, for any replica to take)
    "central_queue": ["workload.num_requests=1200", "workload.rate_per_s=30", 'router.policy="central_queue"'],
    "central_queue_preemption_timeouts": [
        "workload.num_requests=1200",
        "workload.rate_per_s=60",
        'router.policy="central_queue"',
        "pools.scheduler.kv_memory_fraction=0.22",
        "workload.timeout_s=2.0",
        "pools.scheduler.prefix_caching=true",
        "workload.shared_prefix={groups=8, tokens=500}",
    ],
    "central_queue_priority": [
        "workload.num_requests=1000",
        "workload.rate_per_s=40",
        'router.policy="central_queue"',
        'pools.scheduler.policy="priority"',
        "pools.scheduler.kv_memory_fraction=0.22",
        'workload.classes=[{name="hi", share=0.3, priority=0}, {name="lo", share=0.7, priority=2}]',
    ],
    "central_queue_sjf_horizon": [
        "workload.num_requests=2000",
        "workload.rate_per_s=50",
        'router.policy="central_queue"',
        'pools.scheduler.policy="sjf"',
        "pools.scheduler.ageing_s=0.5",
        "run.horizon_s=30.0",
    ],
    # preempted requests of every replica rejoin the shared sjf queue at the front of its
    # arrival-order list (the queue row is row 0's, whoever pushes)
    "central_queue_sjf_preemption": [
        "workload.num_requests=1000",
        "workload.rate_per_s=40",
        'router.policy="central_queue"',
        'pools.scheduler.policy="sjf"',
        "pools.scheduler.ageing_s=0.5",
        "pools.scheduler.kv_memory_fraction=0.22",
    ],
    # recompute preemption under a FIFO scheduler (the regression of an out-of-bounds read of the
    # heap-queue key: bounds-checked in test_preemption_reads_no_queue_key_it_does_not_have)
    "continuous_preemption_small_batch": [
        "workload.num_requests=50",
        "workload.rate_per_s=2.0",
        "pools.replicas=1",
        'pools.scheduler.policy="continuous"',
        "pools.scheduler.max_batch_size=8",
        "pools.scheduler.max_batched_tokens=1024",
        "pools.scheduler.kv_memory_fraction=0.22",
        'workload.prompt_tokens={dist="lognormal", mean=1000, cv=1.0, max=6000}',
        'workload.output_tokens={dist="lognormal", mean=400, cv=0.8, max=1500}',
    ],
    "central_queue_continuous_constant": [
        "workload.num_requests=800",
        "workload.rate_per_s=25",
        'router.policy="central_queue"',
        'pools.scheduler.policy="continuous"',
        'workload.arrival="constant"',
    ],
    "rejections": [
        "workload.num_requests=600",
        "pools.scheduler.kv_memory_fraction=0.23",
        'workload.prompt_tokens={dist="lognormal", mean=4000, cv=2.0, max=400000}',
        "workload.rate_per_s=0.4",
    ],
}


def _pair(sets, base=QUICK, raw=None):
    out = {}
    for eng in ("compiled", "simpy"):
        if raw is not None:
            r = dict(raw, run=dict(raw.get("run", {}), engine=eng, timeseries=True))
            sc = parse(r, REPO)
        else:
            sc = load(base, sets + [f'run.engine="{eng}"', "run.timeseries=true"])
        out[eng] = Simulation(sc).run()
    return out["compiled"], out["simpy"]


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_equals_simpy(case):
    a, b = _pair(CASES[case])
    sa = same(a, b)
    assert sa["requests_completed"] > 0
    if case.startswith("horizon"):
        assert sa["requests_in_flight"] > 0 and sa["sim_time_s"] == a.scenario.run.horizon_s
    if case == "rejections":
        assert sa["requests_rejected"] > 0
    if "preemption" in case:
        assert sa["preemptions_total"] > 0
    if case.startswith("timeouts"):
        assert sa["requests_failed"] > 20  # the deadlines bite (queued and running requests)


def test_two_pools_and_ties(tmp_path):
    """Different hardware per pool, a trace with many requests at the same instant (they join
    the same first step, as SimPy orders them), lagged and unlagged output."""
    rng = np.random.default_rng(3)
    t = np.repeat(np.cumsum(rng.exponential(0.5, 150)), 4)  # 4 requests at each instant
    rows = "\n".join(f"{a:.6f},{int(p)},{int(o)}" for a, p, o in
                     zip(t, rng.integers(50, 3000, t.size), rng.integers(1, 300, t.size), strict=False))
    (tmp_path / "tr.csv").write_text("arrival_s,prompt_tokens,output_tokens\n" + rows + "\n")
    raw = {"seed": 2, "workload": {"arrival": "trace", "trace": str(tmp_path / "tr.csv")},
           "pools": [{"name": "a", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 2},
                     {"name": "b", "hardware": "h200", "model": "llama-3.1-8b", "replicas": 1}],
           "router": {"policy": "least_loaded"}}
    a, b = _pair(None, raw=raw)
    same(a, b)
    assert len(set(a.requests.replica.tolist())) == 3


def test_stages_classes_prefixes_fp8():
    """Load stages, request classes with their own lengths and SLOs, shared prefixes without
    prefix caching, fp8 weights and KV on H200, 70B at TP 4, warm-up."""
    raw = {
        "seed": 5,
        "workload": {
            "arrival": "gamma",
            "cv": 2.0,
            "warmup_s": 5.0,
            "shared_prefix": {"groups": 4, "tokens": 300},
            "prompt_tokens": {"dist": "lognormal", "mean": 1500, "cv": 1.0, "max": 16000},
            "output_tokens": {"dist": "lognormal", "mean": 200, "cv": 1.0, "max": 2000},
            "stages": [{"rate_per_s": 6.0, "duration_s": 60}, {"rate_per_s": 14.0, "duration_s": 60}],
            "classes": [
                {"name": "chat", "share": 0.6, "priority": 0, "slo": {"ttft_s": 0.5, "tpot_s": 0.05}},
                {"name": "batch", "share": 0.4, "priority": 1, "output_tokens": {"dist": "fixed", "value": 600}},
            ],
        },
        "pools": [
            {
                "hardware": "h200",
                "model": "llama-3.1-70b",
                "tp": 4,
                "dtype": "fp8",
                "replicas": 2,
                "scheduler": {"max_batched_tokens": 4096},
            }
        ],
        "router": {"policy": "least_loaded"},
    }
    a, b = _pair(None, raw=raw)
    sa = same(a, b)
    sb = summarize(b)
    assert sa["classes"] == sb["classes"] and sa["stages"] == sb["stages"]


@pytest.mark.slow
def test_timeseries():
    a, b = _pair(CASES["least_loaded_busy"])
    ts = a.timeseries.columns()
    assert len(ts["t_s"]) > 0 and np.all(np.diff(ts["t_s"][ts["replica"] == 0]) >= 0)
    assert ts["kv_blocks_used"].max() <= a.replicas[0].total_blocks


@pytest.mark.parametrize("name", ["19-llama-3-1-8b-tp1-roleplay-1", "10-mixtral-8x7b-tp2-codegen"])
def test_validation_scenarios_with_prefix_caching_run_compiled_and_equal(name):
    """Measured vLLM experiments (prefix caching, client timeouts, load stages) on the fast path."""
    path = REPO / "scenarios" / "validation" / f"{name}.toml"
    a, b = _pair(["workload.stages.duration_s=150"], base=path)
    assert a.scenario.pools[0].scheduler.prefix_caching and a.scenario.workload.timeout_s is not None
    same(a, b)
    sa = summarize(Simulation(load(path, ["workload.stages.duration_s=150"])).run())
    assert sa["engine"] == "compiled"


@pytest.mark.parametrize("dist,router,replicas,timeout", [
    ("exponential", "central_queue", 1, None),  # M/M/1
    ("deterministic", "central_queue", 1, 3.0),  # M/D/1, with clients giving up
    ("exponential", "round_robin", 3, None),
    ("exponential", "jsq", 4, 2.0),
    ("exponential", "central_queue", 4, None),  # M/M/4
    ("deterministic", "central_queue", 3, 2.5),
])
def test_analytic_service_runs_compiled_and_equal(dist, router, replicas, timeout):
    """[pools.service] (the queueing-theory mode) on the fast path: the same per-request times."""
    from helpers import analytic
    raw = analytic(0.9 * replicas, 3000, seed=5, dist=dist, replicas=replicas, router=router).raw
    if timeout is not None:
        raw = dict(raw, workload=dict(raw["workload"], timeout_s=timeout))
    a, b = _pair([], raw=raw)
    sa = same(a, b)
    assert sa["requests_completed"] > 1000
    if timeout is not None:
        assert sa["requests_failed"] > 0


def test_compiled_refuses_what_it_does_not_model():
    tent = REPO / "scenarios" / "tent.toml"
    reference = "run.fast_forward=false"  # the per-iteration reference mode
    sc = load(tent, ['run.engine="compiled"', "workload.duration_s=5", reference])
    with pytest.raises(ScenarioError) as e:
        Simulation(sc).run()
    assert "run.engine" in str(e.value) and "fast_forward" in str(e.value)
    # auto picks SimPy for it, and the compiled engine for the tent, with a shared queue too
    assert Simulation(load(tent, ["workload.duration_s=5", reference])).run().engine == "simpy"
    assert Simulation(load(tent, ["workload.duration_s=5"])).run().engine == "compiled"
    shared = load(tent, ["workload.duration_s=5", 'router.policy="central_queue"'])
    assert Simulation(shared).run().engine == "compiled"


def test_the_build_compiles_every_entry_point():
    """The session's warm-up (conftest) ran build_compiled: every function the drivers call from
    Python is in numba's cache, or every later process would say it is compiling."""
    from sim.engine import compilation

    compilation._FOUND = False
    assert compilation.cached()


def test_central_queue_with_a_facility_equals_the_per_step_driver():
    """The shared queue couples every replica at every step; with the facility's barriers, node
    failures (requests re-queued into the shared queue), client timeouts and drains."""
    sets = ["workload.duration_s=40", 'router.policy="central_queue"', "failures.node_mtbf_h=0.005",
            "failures.node_repair_h=0.003", "workload.timeout_s=8", 'facility.manager.policy="drain"',
            "facility.tents.0.it_limit_mw=0.05"]
    tent = REPO / "scenarios" / "tent.toml"
    fast = Simulation(load(tent, sets + ['run.engine="compiled"'])).run()
    ref = Simulation(load(tent, sets + ['run.engine="simpy"'])).run()
    assert fast.engine == "compiled" and ref.engine == "simpy"
    assert fast.facility.node_failures > 0 and (fast.requests.status == 3).any()  # failed: timeouts, nodes
    for f in ("first_token_s", "start_s", "finish_s", "status", "replica", "preemptions"):
        assert np.array_equal(getattr(fast.requests, f), getattr(ref.requests, f)), f
    assert fast.ledger.energy_it_j == pytest.approx(ref.ledger.energy_it_j, rel=1e-12)
    assert fast.ledger.peak_fac_w == ref.ledger.peak_fac_w


def test_without_numba_the_kernel_runs_as_python_on_the_per_step_driver(monkeypatch):
    import sys

    import sim.engine

    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` fails
    for name in [m for m in sys.modules if m.startswith(("sim.engine.kernel", "sim.engine.drivers"))] + [
            "sim.engine.compilation", "sim.engine.arrays", "sim.engine.views"]:  # imported afresh, without it
        monkeypatch.delitem(sys.modules, name, raising=False)
        if name.count(".") == 2:
            monkeypatch.delattr(sim.engine, name.split(".")[-1], raising=False)
    from sim.engine import compilation as fresh

    assert fresh.NUMBA_ERROR is not None and fresh.plain() is fresh.compiled()
    res = Simulation(load(QUICK, ["workload.num_requests=50"])).run()
    assert res.engine == "simpy" and (res.requests.status == 1).all()
    with pytest.raises(ScenarioError, match="numba"):
        Simulation(load(QUICK, ["workload.num_requests=50", 'run.engine="compiled"'])).run()


def _random_scenario(seed: int) -> dict:
    """A random small scenario over the schedulers, routers, models and load levels the compiled
    engine runs (the fuzzing that found the fast-forward bugs, kept as a regression test)."""
    import random

    rng = random.Random(seed)
    sched = rng.choice(["chunked", "continuous", "static", "fcfs", "priority", "sjf"])
    router = rng.choice(["round_robin", "least_loaded", "jsq", "power_of_two", "least_kv", "session_affinity"])
    model, hw, tp = rng.choice([("llama-3.1-8b", "h100-sxm", 1), ("mixtral-8x7b", "h100-sxm", 2),
                                ("llama-3.1-70b", "h200", 2)])
    reps = rng.choice([1, 2, 3])
    arrival = rng.choice(["poisson", "gamma"])
    w = {"arrival": arrival, **({"cv": 3.0} if arrival == "gamma" else {}), "rate_per_s": rng.uniform(1, 30) * reps / 3,
         "num_requests": 250,
         "prompt_tokens": {"dist": "lognormal", "mean": rng.choice([200, 1000, 3000]), "cv": 1.5, "max": 30000},
         "output_tokens": {"dist": "lognormal", "mean": rng.choice([20, 128, 400]), "cv": 1.0, "max": 3000},
         "sessions": 20}
    if sched == "priority":
        w["classes"] = [{"name": "a", "share": 0.4, "priority": 0}, {"name": "b", "share": 0.6, "priority": 1}]
    sch = {"policy": sched, "max_batch_size": rng.choice([8, 64, 256]), "max_batched_tokens": rng.choice([512, 2048]),
           "kv_memory_fraction": 0.3 if model == "llama-3.1-8b" else 0.95, "block_size": rng.choice([16, 32]),
           "ageing_s": rng.choice([0.2, 5.0])}
    pools = [{"name": "a", "hardware": hw, "model": model, "tp": tp, "replicas": reps, "scheduler": sch}]
    if rng.random() < 0.5:
        pools.append({"name": "b", "hardware": "h200", "model": model, "tp": tp, "replicas": 1, "scheduler": sch})
    return {"seed": seed, "workload": w, "pools": pools, "router": {"policy": router}}


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_random_scenarios_bit_for_bit(seed):
    a, b = _pair(None, raw=_random_scenario(seed))
    same(a, b)


def test_priority_victim_that_already_grew():
    """Found by fuzzing: with the priority scheduler, block growth can preempt a lower-class
    request that took its block earlier in the same round (it is not the latest arrival); its
    freed blocks must include that one."""
    raw = {"seed": 732476, "workload": {"arrival": "constant", "rate_per_s": 38.75656383812427, "num_requests": 200,
                                        "prompt_tokens": {"dist": "lognormal", "mean": 3000, "cv": 0.5, "max": 30000},
                                        "output_tokens": {"dist": "lognormal", "mean": 400, "cv": 1.0, "max": 3000},
                                        "sessions": 5,
                                        "classes": [{"name": "a", "share": 0.4, "priority": 0},
                                                    {"name": "b", "share": 0.6, "priority": 1}]},
           "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 3,
                      "scheduler": {"policy": "priority", "kv_memory_fraction": 0.3}}],
           "router": {"policy": "session_affinity"}}
    a, b = _pair(None, raw=raw)
    assert same(a, b)["preemptions_total"] > 0


TENT_TRIP = REPO / "scenarios" / "tent_trip.toml"
FACILITY_CASES = {  # the shipped trip scenario (caps after the trip), and harsher variants of it
    "trip_cap_priority": [],
    "failures_retries": ["failures.node_mtbf_h=0.01", "failures.node_repair_h=0.005"],
    "failures_drain": ["failures.node_mtbf_h=0.01", "failures.node_repair_h=0.01", 'facility.manager.policy="drain"'],
    "shed": ['facility.manager.policy="shed"', "failures.node_mtbf_h=0.02"],
    "commissioning": ["facility.tents.commission_s=30", "failures.node_mtbf_h=0.01",
                      'facility.manager.policy="cap_uniform"'],
    "sjf_jsq": ['pools.scheduler.policy="sjf"', 'router.policy="jsq"',
                "failures.node_mtbf_h=0.01"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(FACILITY_CASES))
def test_compiled_equals_simpy_with_a_facility(case):
    """The facility on the fast path: power caps, drains, shedding, commissioning, trips and node
    failures with re-queues give the per-step driver's per-request results and ledger."""
    a, b = _pair(["workload.duration_s=120"] + FACILITY_CASES[case], base=TENT_TRIP)
    sa = same(a, b)
    assert sa["requests_completed"] > 100 and sa["supply_drops"] == 1
    if "failures" in case:
        assert sa["node_failures"] > 5 and sa["requests_failed"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("sets,base", [
    (['pools.scheduler.policy="chunked"', "workload.num_requests=300", "workload.timeout_s=3.0",
      "pools.scheduler.prefix_caching=true", "workload.shared_prefix={groups=3, tokens=400}"], QUICK),
    (["workload.duration_s=60", "failures.node_mtbf_h=0.01", "failures.node_repair_h=0.005"], TENT_TRIP),
])
def test_interpreted_kernel_gives_the_compiled_results(monkeypatch, sets, base):
    """A cold cache runs small runs on the kernel interpreted (the same functions as Python) while
    it compiles in the background: the results must be the compiled ones, bit for bit."""
    from sim.engine import compilation

    monkeypatch.setenv("DCSIM_KERNEL", "compiled")
    a = Simulation(load(base, sets)).run()
    monkeypatch.setenv("DCSIM_KERNEL", "interpreted")
    b = Simulation(load(base, sets)).run()
    assert a.engine == b.engine == "compiled"
    for k in ("status", "replica", "preemptions", "first_token_s", "start_s", "finish_s"):
        np.testing.assert_array_equal(getattr(a.requests, k), getattr(b.requests, k), err_msg=k)
    assert a.requests.reason == b.requests.reason and a.sim_time_s == b.sim_time_s
    assert a.ledger.energy_it_j == b.ledger.energy_it_j and a.ledger.peak_fac_w == b.ledger.peak_fac_w
    assert not hasattr(compilation.plain().run_until, "signatures")  # plain Python, not a numba dispatcher


def test_kernel_mode_interprets_only_small_runs_on_a_cold_cache(monkeypatch):
    from sim.engine import compilation

    monkeypatch.delenv("DCSIM_KERNEL", raising=False)
    monkeypatch.setattr(compilation, "cached", lambda: False)
    assert compilation.kernel_mode(2000) == "interpreted"
    assert (
        compilation.kernel_mode(compilation.INTERPRET_MAX_REQUESTS + 1) == "compiled"
    )  # compiles first, with a notice
    monkeypatch.setattr(compilation, "cached", lambda: True)
    assert compilation.kernel_mode(10) == "compiled"
    monkeypatch.setenv("DCSIM_KERNEL", "interpreted")
    assert compilation.kernel_mode(10**7) == "interpreted"


def test_every_shipped_scenario_runs_on_the_fast_path():
    from sim.engine.drivers.fast import supported
    from sim.scenario.config import read_toml

    for p in sorted((REPO / "scenarios").rglob("*.toml")):
        raw = read_toml(p)
        if "fleet" in raw:  # a fleet's cells are its base scenario
            raw.pop("fleet")
        sc = parse(raw, p.parent)
        assert supported(sc, None) == [], p.name


def test_analytic_service_with_node_failures_on_both_drivers():
    """An M/M/c pool in a tent whose nodes fail: the request in service is re-queued like the
    queued ones (before, the per-step driver crashed on the interrupt and the compiled engine
    refused the scenario); every request ends, and the two drivers agree."""
    raw = {"seed": 5, "workload": {"arrival": "poisson", "rate_per_s": 3.0, "num_requests": 400,
                                   "prompt_tokens": 1, "output_tokens": 1, "timeout_s": 20.0},
           "pools": [{"name": "m", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 4, "tent": "t",
                      "service": {"dist": "exponential", "mean_s": 1.0}}],
           "router": {"policy": "jsq"},
           "facility": {"gpus_per_node": 1, "sources": [{"name": "grid", "kind": "grid", "mw": 1.0}],
                        "tents": [{"name": "t", "it_limit_mw": 1.0}], "manager": {"policy": "none", "interval_s": 5.0}},
           "failures": {"node_mtbf_h": 0.01, "node_repair_h": 0.002, "retry_limit": 1}}
    a, b = _pair([], raw=raw)
    sa = same(a, b)
    assert sa["node_failures"] > 10 and sa["requests_failed"] > 0
    assert sa["requests_completed"] + sa["requests_failed"] + sa["requests_rejected"] == 400


def test_the_batch_arrays_start_narrow_and_widen_to_the_batches_reached(monkeypatch):
    """The fast driver's batch arrays (CH, FH, PFIRST, PDONE) start one slot wide and widen when a
    replica's next plan may need more (plan.batch_low, Kernel.grow): to the batches reached, not
    max_batch_size, with the per-step driver's results bit for bit (it sizes them at once)."""
    from sim.engine import arrays

    widths: list[int] = []
    widen = arrays.Kernel._widen

    def spy(self):
        before = int(self.st.rp.FH.shape[1])
        widen(self)
        if int(self.st.rp.FH.shape[1]) != before:  # (the per-step driver's are full width from the start)
            widths.append(int(self.st.rp.FH.shape[1]))

    monkeypatch.setattr(arrays.Kernel, "_widen", spy)
    monkeypatch.setattr(arrays, "BATCH_ROWS", 1)
    a, b = _pair(["workload.num_requests=1500", "workload.rate_per_s=24", 'router.policy="least_loaded"'])
    same(a, b)
    assert widths and 2 <= max(widths) < 256  # widened, and not to max_batch_size
    assert widths == sorted(widths)
