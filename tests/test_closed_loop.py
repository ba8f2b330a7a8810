"""Closed-loop clients ([workload] arrival = "closed", sim/engine/kernel/clients.py): against the
mean-value analysis of a closed queueing network, each client's sends against the ends of its
requests, both drivers bit for bit, and the bad inputs.

The MVA tolerance (2%) was set from the spread over seeds 0-4 before fixing seed 1 (all within
1.2% at 200,000 requests)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_run_fails_in_one_line, check_invariants, same

from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation
from sim.errors import ScenarioError
from sim.scenario.config import parse


def closed(clients: int, n: int, seed: int = 1, think: float | dict | None = None, replicas: int = 1,
           router: str = "round_robin", service: float | None = 1.0, **wl) -> dict:
    """A closed-loop scenario: analytic exponential service (mean `service` s) or, with
    service=None, Llama-3.1-8B on H100s."""
    pool = {"name": "m", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": replicas}
    if service is not None:
        pool["service"] = {"dist": "exponential", "mean_s": service}
        lengths = {"prompt_tokens": 1, "output_tokens": 1}
    else:
        lengths = {"prompt_tokens": {"dist": "lognormal", "mean": 800, "cv": 1.0, "max": 6000},
                   "output_tokens": {"dist": "uniform", "min": 10, "max": 300}}
    w = {"arrival": "closed", "concurrency": clients, "num_requests": n, **lengths, **wl}
    if think is not None:
        w["think_time_s"] = think
    return {"seed": seed, "workload": w, "pools": [pool], "router": {"policy": router}, "run": {"timeseries": False}}


def run(raw: dict, engine: str = "compiled"):
    return Simulation(parse(dict(raw, run=dict(raw["run"], engine=engine)))).run()


def mva(clients: int, service_s: float, think_s: float) -> tuple[float, float]:
    """Exact mean-value analysis of a closed network: one FCFS exponential server (service_s)
    and a delay station (think_s): throughput and mean response time with `clients` customers."""
    q = 0.0
    x = r = 0.0
    for k in range(1, clients + 1):
        r = service_s * (1.0 + q)
        x = k / (think_s + r)
        q = x * r
    return x, r


@pytest.mark.parametrize("clients,think", [(1, 1.0), (4, 2.0), (8, 4.0)])
def test_closed_mm1_matches_mean_value_analysis(clients, think):
    res = run(closed(clients, 200_000, think={"dist": "exponential", "mean": think}))
    s = check_invariants(res)
    x, r = mva(clients, 1.0, think)
    assert s["throughput_req_per_s"] == pytest.approx(x, rel=0.02)
    assert s["e2e_mean_s"] == pytest.approx(r, rel=0.02)


def test_saturated_server_without_think_time():
    """N clients, no think time, one server: it never idles (throughput 1/S) and each response
    takes N services (Little's law on the closed loop)."""
    s = summarize(run(closed(10, 100_000)))
    assert s["throughput_req_per_s"] == pytest.approx(1.0, rel=0.01)
    assert s["e2e_mean_s"] == pytest.approx(10.0, rel=0.01)
    assert s["utilization_mean"] > 0.999


def test_each_client_sends_when_its_last_request_ends():
    """Request by request: a client's next send is its previous request's end plus the think time
    drawn for that request, exactly; never more than `concurrency` requests out at once."""
    raw = closed(6, 3_000, think={"dist": "exponential", "mean": 0.4}, replicas=2, router="least_loaded",
                 service=None, timeout_s=3.0)
    res = run(raw)
    wl, tb = res.workload, res.requests
    cli = res.requests.client
    assert sorted(np.unique(cli).tolist()) == list(range(6))
    assert np.all(np.diff(wl.arrival_s) >= 0)  # sent in time order
    for c in range(6):
        mine = np.flatnonzero(cli == c)
        ends = tb.finish_s[mine[:-1]]
        assert np.all(tb.status[mine[:-1]] != 0)  # ended before the next was sent
        np.testing.assert_array_equal(wl.arrival_s[mine[1:]], ends + wl.think_s[mine[:-1]])
    out = np.searchsorted(np.sort(tb.finish_s), wl.arrival_s, side="right")
    assert np.max(np.arange(len(wl.arrival_s)) + 1 - out) <= 6


def test_offline_everything_sent_at_once():
    res = run(closed(300, 300, service=None, replicas=2, router="jsq"))
    assert np.all(res.workload.arrival_s == 0.0)
    assert summarize(res)["requests_completed"] == 300


@pytest.mark.parametrize("extra", [
    {},
    {"router": "least_loaded", "think": 0.0, "timeout_s": 1.5},
    {"router": "jsq", "think": {"dist": "exponential", "mean": 0.3}, "duration_s": 20.0},
    {"router": "power_of_two", "think": 0.5},
])
def test_both_drivers_identical(extra):
    extra = dict(extra)
    router = extra.pop("router", "round_robin")
    think = extra.pop("think", None)
    raw = closed(12, 400, think=think, replicas=3, router=router, service=None, **extra)
    same(run(raw), run(raw, "simpy"))


def test_horizon_and_duration_keep_only_what_was_sent():
    raw = closed(8, 5_000, think=0.2, replicas=2, router="jsq", service=None, duration_s=10.0)
    res = run(raw)
    n = len(res.requests.status)
    assert 0 < n < 5_000 and len(res.workload.arrival_s) == n
    assert res.workload.arrival_s.max() < 10.0
    assert np.all(res.requests.status != 0)  # all ended: the run drained after the clients stopped


@pytest.mark.parametrize("over,field", [
    ({"concurrency": 0}, "workload.concurrency"),
    ({"concurrency": 2.5}, "workload.concurrency"),
    ({"concurrency": 500}, "workload.concurrency"),
    ({"think_time_s": -1.0}, "workload.think_time_s"),
    ({"think_time_s": {"dist": "exponential", "mean": -2}}, "workload.think_time_s.mean"),
    ({"rate_per_s": 5.0}, "workload.rate_per_s"),
    ({"concurrency": None}, "workload.concurrency"),
    ({"num_requests": None}, "workload.num_requests"),
])
def test_bad_closed_loop_input_names_the_key(over, field):
    raw = closed(4, 100)
    raw["workload"].update(over)
    raw["workload"] = {k: v for k, v in raw["workload"].items() if v is not None}
    with pytest.raises(ScenarioError) as e:
        Simulation(parse(raw))
    assert e.value.field == field


def test_clients_on_an_open_loop_process_are_refused():
    raw = closed(4, 100)
    raw["workload"].update(arrival="poisson", rate_per_s=2.0)
    with pytest.raises(ScenarioError) as e:
        parse(raw)
    assert e.value.field == "workload.concurrency"


def test_what_closed_loop_does_not_run_with_yet():
    raw = closed(4, 100, service=None, replicas=2)
    raw["router"]["policy"] = "central_queue"
    with pytest.raises(ScenarioError) as e:
        Simulation(parse(raw))
    assert e.value.field == "router.policy"


@pytest.mark.parametrize("think", [None, 0.4])
def test_disaggregated_closed_loop_on_both_drivers(think):
    """Prefill and decode pools: a client's request ends on its decode replica (or fails in the
    hand-off); both drivers bit for bit."""
    raw = closed(10, 300, think=think, service=None, replicas=2, router="least_loaded", timeout_s=4.0)
    raw["pools"] = [dict(raw["pools"][0], name="p", role="prefill", replicas=1),
                    dict(raw["pools"][0], name="d", role="decode", replicas=2)]
    raw["network"] = {"fabric": "roce-200g"}
    raw["router"]["decode_policy"] = "least_kv"
    fast, ref = run(raw), run(raw, "simpy")
    same(fast, ref)
    assert summarize(fast)["requests_completed"] > 250
    assert np.all(fast.requests.decode_replica[fast.requests.status == 1] >= 1)


def test_cli_one_line_exit_2(tmp_path):
    assert_run_fails_in_one_line(tmp_path, """
[workload]
arrival = "closed"
concurrency = -3
num_requests = 10
prompt_tokens = 100
output_tokens = 10
[[pools]]
name = "m"
hardware = "h100-sxm"
model = "llama-3.1-8b"
""", "workload.concurrency")
