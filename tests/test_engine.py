"""The batching engine: hand-computed timelines, KV paging, preemption, rejection, determinism."""

import json

import numpy as np
import pytest

from helpers import PLAIN, check_invariants, fixed, hw_table, one_replica, perf, run, small
from sim.scenario.config import parse
from sim.analysis.metrics import summarize
from sim.engine.recorder import COMPLETED, REJECTED
from sim.engine.simulation import Simulation


def test_single_request_timeline_by_hand():
    pm = perf()
    res = Simulation(one_replica(), fixed([0.5], [100], [3])).run()
    dt1 = pm.step_time(0, 0, 100, 0, 100 * (0 + 101 / 2), 1)  # whole prompt in one step
    dt2 = pm.step_time(1, 101, n_seq=1)  # decode: 101 tokens in KV
    dt3 = pm.step_time(1, 102, n_seq=1)
    tb = res.requests
    assert tb.first_token_s[0] == pytest.approx(0.5 + dt1, rel=1e-12)
    assert tb.finish_s[0] == pytest.approx(0.5 + dt1 + dt2 + dt3, rel=1e-12)
    s = summarize(res)
    assert s["tpot_mean_s"] == pytest.approx((dt2 + dt3) / 2, rel=1e-12)
    assert s["queue_mean_s"] == 0.0


def test_two_requests_share_steps_by_hand():
    """Two requests arriving together are prefilled in one step, then decoded together."""
    pm = perf()
    res = Simulation(one_replica(), fixed([0.0, 0.0], [100, 60], [2, 3])).run()
    dt1 = pm.step_time(0, 0, 160, 0, 100 * 50.5 + 60 * 30.5, 2)
    dt2 = pm.step_time(2, 101 + 61, n_seq=2)
    dt3 = pm.step_time(1, 62, n_seq=1)
    tb = res.requests
    assert tb.first_token_s[0] == pytest.approx(dt1) and tb.first_token_s[1] == pytest.approx(dt1)
    assert tb.finish_s[0] == pytest.approx(dt1 + dt2)
    assert tb.finish_s[1] == pytest.approx(dt1 + dt2 + dt3)


def test_chunked_prefill_splits_long_prompt_by_budget():
    pm = perf()
    res = Simulation(one_replica(max_batched_tokens=64), fixed([0.0], [100], [1])).run()
    dt1 = pm.step_time(0, 0, 64, 0, 64 * 32.5, 1)
    dt2 = pm.step_time(0, 0, 36, 64, 36 * (64 + 18.5), 1)
    assert res.requests.finish_s[0] == pytest.approx(dt1 + dt2)


def test_front_end_latency_and_output_lag_by_hand():
    """request_overhead_s delays the engine's view of an arrival; with output_lag_steps = 1 a
    sampled token reaches the client when the next step ends (or at once if the engine idles)."""
    hw = {"request_overhead_s": 0.01, "output_lag_steps": 1}
    pm = perf(hw)
    res = Simulation(one_replica(hw=hw), fixed([0.5], [100], [3])).run()
    dt1 = pm.step_time(0, 0, 100, 0, 100 * (0 + 101 / 2), 1)
    dt2 = pm.step_time(1, 101, n_seq=1)
    dt3 = pm.step_time(1, 102, n_seq=1)
    tb = res.requests
    assert tb.start_s[0] == pytest.approx(0.51, rel=1e-12)
    assert tb.first_token_s[0] == pytest.approx(0.51 + dt1 + dt2, rel=1e-12)
    assert tb.finish_s[0] == pytest.approx(0.51 + dt1 + dt2 + dt3, rel=1e-12)  # idle: no lag


def test_fcfs_serves_one_request_at_a_time():
    res = run(small("fcfs", n=60, rate=5.0, replicas=1, hardware="gpu",
                    hardware_tables={"gpu": hw_table(**PLAIN)}))
    s = check_invariants(res)
    ts = res.timeseries.columns()
    assert ts["batch_size"].max() == 1
    tb = res.requests
    order = np.argsort(tb.start_s)
    # service intervals do not overlap
    assert np.all(tb.start_s[order][1:] >= tb.finish_s[order][:-1] - 1e-12)
    assert s["requests_completed"] == 60


@pytest.mark.parametrize("policy", ["fcfs", "static", "continuous", "chunked"])
def test_every_policy_keeps_invariants(policy):
    s = check_invariants(run(small(policy, n=400, rate=12.0)))
    assert s["requests_completed"] == 400


def test_preemption_under_kv_pressure_loses_nothing():
    # ~1,700 tokens of KV: a handful of 900-token sequences overflow it and force preemption.
    sc = small("chunked", n=80, rate=20.0, replicas=1, prompt=500, output=400,
               scheduler={"kv_memory_fraction": 0.2035})
    res = run(sc)
    s = check_invariants(res)
    assert s["preemptions_total"] > 0
    assert s["requests_completed"] == 80
    assert res.requests.preemptions.sum() == s["preemptions_total"]


def test_request_longer_than_kv_is_rejected_with_reason():
    sc = small("chunked", n=50, rate=5.0, replicas=1, prompt={"dist": "uniform", "min": 100, "max": 3000},
               output=10, scheduler={"kv_memory_fraction": 0.2035})
    res = run(sc)
    s = check_invariants(res)
    tb = res.requests
    big = res.workload.prompt_tokens + res.workload.output_tokens > res.replicas[0].total_blocks * 16
    assert big.any() and (~big).any()
    assert np.all(tb.status[big] == REJECTED) and np.all(tb.status[~big] == COMPLETED)
    assert all("kv_capacity" in tb.reason[i] for i in np.flatnonzero(big))
    assert s["requests_rejected"] == int(big.sum())
    assert s["reasons"] == {"kv_capacity": int(big.sum())}


def test_horizon_leaves_requests_in_flight_and_counts_add_up():
    raw = small("chunked", n=500, rate=50.0, replicas=1).raw
    raw = json.loads(json.dumps(raw))
    raw["run"] = {"horizon_s": 5.0}
    s = check_invariants(run(parse(raw)))
    assert s["requests_in_flight"] > 0
    assert s["sim_time_s"] == 5.0


def test_same_seed_same_summary_bit_for_bit():
    a = summarize(run(small("chunked", n=300)))
    b = summarize(run(small("chunked", n=300)))
    a.pop("wall_time_s"), b.pop("wall_time_s")
    assert json.dumps(a) == json.dumps(b)
    c = summarize(run(small("chunked", n=300, seed=4)))
    c.pop("wall_time_s")
    assert json.dumps(a) != json.dumps(c)


@pytest.mark.parametrize("router", ["round_robin", "least_loaded", "central_queue"])
def test_routers_spread_load_and_keep_invariants(router):
    res = run(small("chunked", n=400, rate=15.0, replicas=3, router=router))
    check_invariants(res)
    per = np.bincount(res.requests.replica, minlength=3)
    assert per.min() > 50  # every replica served a share


def three_replicas(router, prompts, outputs):
    """The kernel's router over three replicas (sim/engine/bench.py RouterBench)."""
    from sim.engine.bench import RouterBench

    sc = small("chunked", n=len(prompts), replicas=3, router=router)
    return RouterBench(sc, fixed([0.0] * len(prompts), prompts, outputs))


def test_least_loaded_prefers_idle_replica():
    b = three_replicas("least_loaded", [4, 2, 1, 1, 1], [1, 1, 1, 1, 1])
    b.load(0, 0)  # 5 tokens outstanding at replica 0, none at 1, 3 at 2
    b.load(2, 1)
    assert b.route(2) == 1
    even = three_replicas("least_loaded", [1, 1, 1, 1], [1, 1, 1, 1])
    for r in range(3):
        even.load(r, r)
    assert even.route(3) == 0  # ties to the lowest index
    rr = three_replicas("round_robin", [1] * 4, [1] * 4)
    assert [rr.route(i) for i in range(4)] == [0, 1, 2, 0]


# --- plan-level properties (no event loop): budgets, batch sizes, KV never over capacity --------
def bench(policy, blocks, mbs=8, mbt=256, n=1, prompts=None, outs=None):
    """One replica of `blocks` KV blocks (16 tokens each) and n requests, driven by hand."""
    from sim.engine.bench import Bench

    sc = one_replica(policy, max_batch_size=mbs, max_batched_tokens=mbt)
    prompts = prompts if prompts is not None else [10] * n
    outs = outs if outs is not None else [5] * n
    return Bench(sc, fixed([0.0] * len(prompts), prompts, outs), total_blocks=blocks)


@pytest.mark.parametrize("policy", ["chunked", "continuous", "static"])
def test_plans_respect_budget_batch_and_kv(policy):
    rng = np.random.default_rng(7)
    mbs, mbt, n = 8, 256, 60
    prompts = rng.integers(1, 200, n).tolist()
    outs = rng.integers(1, 120, n).tolist()
    b = bench(policy, 60, mbs, mbt, prompts=prompts, outs=outs)
    assert b.total_blocks == 60
    for i in range(n):
        b.push(i, 0.0)
    t, steps = 0.0, 0
    while (b.queue_len or b.n_running) and steps < 100_000:
        p = b.plan(t)
        assert p is not None
        chunks, n_dec, dt = p
        assert 0 <= b.free_blocks <= b.total_blocks
        tok = n_dec + sum(c for _, c in chunks)
        if policy == "chunked":
            assert tok <= mbt
            assert b.n_running <= mbs
        if policy == "continuous":
            assert not (chunks and n_dec)  # prefill and decode never mix
        if policy == "static" and n_dec:
            assert not chunks
        t += dt
        b.commit(t)
        assert sum(b.held(j) for j in b.running()) == b.used_blocks  # every held block counted, once
        steps += 1
    assert b.finished() == list(range(n))
    assert b.free_blocks == b.total_blocks and b.used_blocks == 0


def test_static_batch_admits_nothing_while_running():
    b = bench("static", 1000, mbs=4, mbt=8192, n=4)
    for i in range(3):
        b.push(i, 0.0)
    chunks, n_dec, dt = b.plan(0.0)
    assert len(chunks) == 3 and n_dec == 0
    b.commit(dt)
    b.push(3, dt)
    chunks, n_dec, _ = b.plan(dt)
    assert n_dec == 3 and not chunks


def test_one_queue_row_for_central_queue():
    from sim.engine.arrays import prepare
    from sim.engine.compilation import compiled
    from sim.engine.kernel.layout import QROW

    sim = Simulation(small("chunked", n=50, replicas=2, router="central_queue"))
    k = prepare(sim, compiled())
    assert k.central and list(k.S[:, QROW]) == [0, 0]  # both replicas read row 0's queue
    sim = Simulation(small("chunked", n=50, replicas=2))
    assert list(prepare(sim, compiled()).S[:, QROW]) == [0, 1]


def test_result_is_typed_and_the_old_extra_view_agrees():
    res = run(small("chunked", n=50))
    assert res.engine in ("compiled", "simpy") and res.ledger is res.extra["ledger"]
    assert res.extra["engine"] == res.engine and res.facility.node_failures == res.extra["failures"] == 0


def test_build_then_run_assembly_reads_no_file_and_draws_no_number(monkeypatch):
    """Building a model (sim/engine/build.py) draws the workload, the router's random choices and
    the service times; assembling the engine from it does neither, and the run is the same."""
    import builtins

    import numpy.random as npr

    from sim.engine.build import build

    sc = small("chunked", n=200, router="power_of_two")
    direct = run(sc)
    model = build(sc)

    def refuse(*a, **k):
        raise AssertionError("the engine's constructors must not read files or draw random numbers")

    with monkeypatch.context() as m:
        m.setattr(npr, "SeedSequence", refuse)
        m.setattr(npr, "default_rng", refuse)
        m.setattr(builtins, "open", refuse)
        sim = Simulation(model)
    res = sim.run()
    for k in ("first_token_s", "start_s", "finish_s", "replica", "status"):
        assert (getattr(res.requests, k) == getattr(direct.requests, k)).all(), k
    # the check can fail: building does draw
    with monkeypatch.context() as m:
        m.setattr(npr, "SeedSequence", refuse)
        with pytest.raises(AssertionError, match="must not"):
            build(sc)
