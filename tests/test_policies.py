"""Scheduling and routing policies: a hand-computed case and an invariant for each."""


import numpy as np
import pytest

from helpers import check_invariants, run, small  # noqa: F401
from sim.scenario.config import parse
from sim.engine.bench import Bench, RouterBench
from sim.engine.kernel.layout import AGE, GEN, TOT
from sim.policies.routers import make_router
from sim.workload.generate import Workload


def bench(policy, arrivals, prompts, outs=None, classes=None, blocks=None, ageing_s=None):
    """One replica (16-token KV blocks) over these requests, driven by hand (no event loop);
    classes: each request's class priority."""
    n = len(arrivals)
    outs = outs if outs is not None else [10] * n
    cls = None
    wcls = {}
    if classes is not None:
        levels = sorted(set(classes))
        cls = np.array([levels.index(c) for c in classes], np.int16)
        wcls = {"classes": [{"name": f"c{p}", "share": 1.0 / len(levels), "priority": p} for p in levels]}
    sched = {"policy": policy} | ({"ageing_s": ageing_s} if ageing_s is not None else {})
    sc = parse({"seed": 0, "workload": {"arrival": "poisson", "rate_per_s": 1.0, "num_requests": n,
                                        "prompt_tokens": 10, "output_tokens": 10, **wcls},
                "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "scheduler": sched}]})
    wl = Workload(np.array(arrivals, float), np.array(prompts, np.int64), np.array(outs, np.int64), cls=cls)
    return Bench(sc, wl, total_blocks=blocks)


def drain_queue(b, t):
    """The queue's order at t: its head, popped, until it is empty (the kernel's queue functions)."""
    k, m = b.k, b.m
    out = []
    while b.queue_len:
        j = int(m.q_head(0, t, float(k.F[0, AGE]), k.S, k.rq.QA, k.rq.arr, k.rq.RQ))
        m.q_pop(0, j, k.S, k.rq.RQ, k.rq.QA)
        out.append(j)
    return out


# --- priority --------------------------------------------------------------------------------
def test_priority_queue_orders_by_class_then_arrival():
    b = bench("priority", [0.0, 0.5, 1.0, 2.0], [10] * 4, classes=[2, 0, 0, 1])
    for j in (0, 2, 3, 1):  # pushed out of arrival order
        b.push(j, 2.0)
    assert drain_queue(b, 2.0) == [1, 2, 3, 0]


def test_priority_admits_high_class_first_and_preempts_lower_when_kv_runs_out():
    # low (class 5): 100 tokens = 7 blocks; high (class 0): 60 tokens = 4 blocks, only 1 free
    b = bench("priority", [0.0, 1.0], [100, 60], outs=[50, 50], classes=[5, 0], blocks=8)
    b.push(0, 0.0)
    _, _, dt = b.plan(0.0)
    b.commit(dt)
    assert b.running() == [0]
    b.push(1, dt)
    chunks, _, _ = b.plan(dt)
    assert b.running() == [1] and [j for j, _ in chunks] == [1]
    assert list(b.k.rq.PRE[:2]) == [1, 0]  # low preempted once, high never
    # chunked (FCFS) would not preempt to admit: the newcomer waits
    c = bench("chunked", [0.0, 1.0], [100, 60], outs=[50, 50], classes=[5, 0], blocks=8)
    c.push(0, 0.0)
    _, _, dt = c.plan(0.0)
    c.commit(dt)
    c.push(1, dt)
    c.plan(dt)
    assert c.running() == [0] and c.queue_len == 1


def classes_scenario(policy, rate=30.0, n=1500):
    return parse({"seed": 5,
                  "workload": {"arrival": "poisson", "rate_per_s": rate, "num_requests": n,
                               "prompt_tokens": {"dist": "lognormal", "mean": 1500, "cv": 1.0, "max": 8000},
                               "output_tokens": {"dist": "uniform", "min": 20, "max": 300},
                               "classes": [{"name": "chat", "share": 0.3, "priority": 0,
                                            "slo": {"ttft_s": 0.5, "tpot_s": 0.05}},
                                           {"name": "batch", "share": 0.7, "priority": 1}]},
                  "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 1,
                             "scheduler": {"policy": policy, "max_batch_size": 64}}],
                  "slo": {"ttft_s": 5.0}})


def test_priority_class_gets_lower_latency_under_load():
    s = check_invariants(run(classes_scenario("priority")))
    chat, batch = s["classes"]
    assert chat["name"] == "chat" and chat["ttft_mean_s"] < 0.5 * batch["ttft_mean_s"]
    fc = check_invariants(run(classes_scenario("chunked")))
    assert chat["ttft_mean_s"] < fc["classes"][0]["ttft_mean_s"]
    # per-class SLOs and goodput are reported
    assert 0 <= chat["slo_attainment"] <= 1 and "goodput_req_per_s" in s
    assert s["classes"][0]["requests"] + s["classes"][1]["requests"] == s["requests_total"]


def test_class_shares():
    sc = classes_scenario("priority", n=20000)
    from sim.workload.generate import build_workload
    wl = build_workload(sc.workload, sc.seed, sc.base_dir)
    assert np.mean(wl.cls == 0) == pytest.approx(0.3, abs=0.01)


# --- sjf ---------------------------------------------------------------------------------------
def test_sjf_serves_shortest_prompt_first():
    b = bench("sjf", [0.0, 0.1, 0.2], [500, 50, 200], ageing_s=10.0)
    for j in range(3):
        b.push(j, 0.2)
    k, m = b.k, b.m
    head = lambda t: int(m.q_head(0, t, 10.0, k.S, k.rq.QA, k.rq.arr, k.rq.RQ))  # noqa: E731
    assert head(0.2) == 1
    m.q_pop(0, 1, k.S, k.rq.RQ, k.rq.QA)
    assert head(10.5) == 0  # request 0 has now waited past the ageing bound
    m.q_pop(0, 0, k.S, k.rq.RQ, k.rq.QA)
    assert drain_queue(b, 10.5) == [2] and b.queue_len == 0


def test_sjf_ageing_bound_keeps_aged_requests_in_arrival_order():
    s_res = run(small("sjf", n=600, rate=40.0, replicas=1, scheduler={"ageing_s": 2.0, "max_batch_size": 32},
                      prompt={"dist": "lognormal", "mean": 1500, "cv": 1.5, "max": 8000}))
    s = check_invariants(s_res)
    tb, wl = s_res.requests, s_res.workload
    wait = tb.start_s - wl.arrival_s
    aged = np.flatnonzero(wait > 2.0 + 1.0)  # waited past the bound (plus one step's slack)
    assert aged.size > 10  # the test exercises the bound
    # once aged, requests are served oldest first: start order follows arrival order
    starts = tb.start_s[aged]
    assert np.all(np.diff(starts) >= -1e-9)
    assert s["requests_completed"] == 600
    # sjf lowers mean TTFT against FCFS on the same requests
    fc = check_invariants(run(small("chunked", n=600, rate=40.0, replicas=1, scheduler={"max_batch_size": 32},
                                    prompt={"dist": "lognormal", "mean": 1500, "cv": 1.5, "max": 8000})))
    assert s["ttft_mean_s"] < fc["ttft_mean_s"]


# --- routers -----------------------------------------------------------------------------------
def test_sjf_requeued_request_is_ordered_by_its_new_length():
    """A request taken off the queue and queued again (preempted after generating tokens) is
    ordered by its remaining length now, not by the entry it left behind."""
    b = bench("sjf", [0.0, 0.1, 0.2], [100, 50, 80], ageing_s=100.0)
    for j in range(3):
        b.push(j, 0.2)
    k, m = b.k, b.m
    assert int(m.q_head(0, 0.2, 100.0, k.S, k.rq.QA, k.rq.arr, k.rq.RQ)) == 1
    m.q_pop(0, 1, k.S, k.rq.RQ, k.rq.QA)
    k.rq.RQ[1, GEN] = 70  # it generated 70 tokens before its preemption: 120 to recompute
    m.q_push(0, 1, True, ((k.rq.prompt[1] + k.rq.RQ[1, GEN]) << 32) | 1, k.S, k.rq.RQ, k.rq.QA)  # as preempt keys it
    assert drain_queue(b, 0.2) == [2, 0, 1] and b.queue_len == 0


def routers(router, replicas, n, sessions=None):
    """The kernel's router over `replicas` replicas and n one-token requests (sessions: each
    request's session)."""
    wl = Workload(np.zeros(n), np.ones(n, np.int64), np.ones(n, np.int64),
                  session=np.array(sessions, np.int64) if sessions is not None else None)
    raw = small("chunked", n=n, replicas=replicas, router=router).raw
    return RouterBench(parse(dict(raw, workload=dict(raw["workload"], sessions=10))), wl)


def test_jsq_and_least_kv_by_hand():
    b = routers("jsq", 3, 10)
    for j, r in enumerate((0, 0, 0, 1, 2)):  # outstanding requests: 3, 1, 1
        b.load(r, j)
    assert b.route(5) == 1  # ties to the lowest index
    kv = routers("least_kv", 3, 2)
    total = int(kv.k.S[0, TOT])  # the same part everywhere
    for r, used in enumerate((total - 10, total - 50, total - 70)):  # free blocks: 10, 50, 70
        kv.use_blocks(r, used)
    assert kv.route(0) == 2


def test_power_of_two_picks_the_less_loaded_of_two_distinct_draws():
    r = make_router("power_of_two", 1000, 5, np.random.default_rng(0))
    assert np.all(r.pairs[:, 0] != r.pairs[:, 1])
    b = routers("power_of_two", 5, 100)
    load = (4, 0, 9, 2, 7)
    j = 50
    for rep, c in enumerate(load):  # outstanding requests at each replica: requests 50..71
        for _ in range(c):
            b.load(rep, j)
            j += 1
    pairs = b.k.st.rt.pairs
    for i in range(50):
        a, c = pairs[i]
        want = a if (load[a], a) <= (load[c], c) else c
        assert b.route(i) == want


def test_session_affinity_by_hand():
    b = routers("session_affinity", 2, 6, sessions=[7, 7, 8, 0, 0, 0])
    b.load(0, 3)  # outstanding requests: 2 at replica 0, none at 1
    b.load(0, 4)
    assert b.route(0) == 1
    for _ in range(5):
        b.load(1, 5)  # now 5 at replica 1
    assert b.route(1) == 1  # kept, though replica 0 is now shorter
    assert b.route(2) == 0


@pytest.mark.parametrize("router", ["jsq", "power_of_two", "least_kv", "session_affinity"])
def test_new_routers_keep_invariants(router):
    raw = small("chunked", n=400, rate=15.0, replicas=3, router=router).raw
    raw = dict(raw)
    raw["workload"] = dict(raw["workload"], sessions=40)
    res = run(parse(raw))
    check_invariants(res)
    per = np.bincount(res.requests.replica, minlength=3)
    assert per.min() > 30
    if router == "session_affinity":
        for sid in np.unique(res.workload.session):
            assert len(np.unique(res.requests.replica[res.workload.session == sid])) == 1


def test_queue_aware_routers_beat_round_robin_and_approach_a_central_queue():
    """4 exponential servers at utilisation 0.8: JSQ and power-of-two wait far less than
    round-robin, and no less than the shared queue (M/M/4), which is optimal."""
    from helpers import analytic
    w = {r: check_invariants(run(analytic(3.2, 60_000, seed=3, replicas=4, router=r)))["queue_mean_s"]
         for r in ("round_robin", "power_of_two", "jsq", "central_queue")}
    assert w["jsq"] < w["power_of_two"] < w["round_robin"]
    assert w["central_queue"] <= w["jsq"]
