"""Autoscaling (issue 14, part 4): a pool's replicas follow its load, each new one serving only
after its cold start (start_s + weights / load_gbps), scale-down drains (nothing lost), and
replica-hours (and the cost they carry) are the billed time, checked by hand from the replicas'
state changes. Both drivers give the same decisions (also drawn in tests/test_differential.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.analysis.metrics import summarize
from sim.engine.recorder import COMPLETED
from sim.engine.simulation import Simulation
from sim.perf.roofline import PerfModel
from sim.policies.autoscalers import hpa
from helpers import TINY_WORKLOAD, assert_run_fails_in_one_line
from sim.scenario.config import parse
from sim.scenario.pools import accel_usd_per_hour

REPO = Path(__file__).resolve().parents[1]


def _raw(engine: str = "compiled", **scale) -> dict:
    a = {"policy": "queue", "min_replicas": 1, "max_replicas": 6, "target": 24.0, "interval_s": 20.0,
         "scale_down_delay_s": 120.0, "start_s": 45.0, "load_gbps": 16.0}
    a.update(scale)
    return {"name": "step", "seed": 4,
            "workload": {"arrival": "poisson", "prompt_tokens": {"dist": "lognormal", "mean": 1000, "cv": 1.0,
                                                                 "max": 6000},
                         "output_tokens": {"dist": "fixed", "value": 200},
                         "stages": [{"rate_per_s": 8.0, "duration_s": 600.0}, {"rate_per_s": 24.0, "duration_s": 900.0},
                                    {"rate_per_s": 8.0, "duration_s": 900.0}]},
            "pools": [{"name": "main", "hardware": "h100-sxm", "model": "llama-3.1-8b", "autoscaler": a}],
            "router": {"policy": "least_loaded"}, "run": {"engine": engine}}


@pytest.fixture(scope="module")
def step():
    sc = parse(_raw())
    return sc, Simulation(sc).run()


def _windows(res) -> dict[int, list[tuple[float, float, str]]]:
    """Each replica's states as (from, to, state) from the log of its changes."""
    ev = res.autoscale.events
    out: dict[int, list] = {}
    for t, r, s in zip(ev["t_s"], ev["replica"], ev["state"], strict=False):
        w = out.setdefault(r, [])
        if w:
            w[-1] = (w[-1][0], t, w[-1][2])
        w.append((t, res.sim_time_s, s))
    return out


def test_a_load_step_adds_replicas_each_serving_after_its_cold_start(step):
    sc, res = step
    c = res.autoscale.columns()
    t, serving = c["t_s"], c["serving"]
    before = serving[t < 600].max()
    during = serving[(t > 700) & (t < 1500)].max()
    assert before == 1 and during >= 3, (before, during)  # 3x the load: at least 3x the replicas
    pm = PerfModel(sc.pools[0].hardware, sc.pools[0].model, 1, "bf16", "bf16")
    cold = 45.0 + pm.weight_bytes / (16.0 * 1e9 / 8)
    starts = 0
    for w in _windows(res).values():
        for (t0, _t1, s), nxt in zip(w, w[1:] + [None], strict=False):
            if s == "starting" and nxt is not None and nxt[2] == "serving":
                assert nxt[0] - t0 == pytest.approx(cold, rel=1e-12)  # serving exactly after its cold start
                starts += 1
    assert starts >= 2
    # every request reached a replica while it was serving (none while starting, off or draining)
    win = _windows(res)
    arr, rep = res.workload.arrival_s, res.requests.replica
    for r, w in win.items():
        mine = arr[rep == r]
        ok = np.zeros(len(mine), bool)
        for t0, t1, s in w:
            if s == "serving":
                ok |= (mine >= t0) & (mine <= t1)
        assert ok.all(), f"replica {r}: {np.sum(~ok)} requests routed while it was not serving"


def test_scale_down_drains_and_loses_nothing(step):
    _sc, res = step
    st = res.requests.status
    assert np.all(st == COMPLETED)  # every request completed: none lost to a scale-down
    assert summarize(res)["autoscaler"]["main"]["drains"] >= 2
    c = res.autoscale.columns()
    assert c["serving"][-1] < c["serving"].max()  # back down after the step
    ev = res.autoscale.events
    assert "draining" in ev["state"] and "off" in ev["state"][len(res.replicas):]


def test_replica_hours_are_the_billed_time_and_carry_the_cost(step):
    sc, res = step
    billed = 0.0
    for w in _windows(res).values():  # starting, serving and draining are billed; off is not
        billed += sum(t1 - t0 for t0, t1, s in w if s != "off")
    s = summarize(res)
    assert s["replica_hours"]["main"] == pytest.approx(billed / 3600.0, rel=1e-12)
    assert s["replica_hours"]["main"] < 6 * res.sim_time_s / 3600.0 * 0.7  # far below max_replicas all day
    price = accel_usd_per_hour(sc.pools[0], sc.cost)
    assert s["cost_breakdown_usd"]["accelerators"] == pytest.approx(s["replica_hours"]["main"] * price, rel=1e-12)
    hours = s["hourly"]
    assert sum(h["replica_hours"]["main"] for h in hours) == pytest.approx(s["replica_hours"]["main"], rel=1e-9)
    assert sum(h["requests"] for h in hours) == len(res.workload)


@pytest.mark.slow
def test_both_drivers_take_the_same_decisions():
    raw = _raw()
    raw["workload"]["stages"] = [{"rate_per_s": 8.0, "duration_s": 200.0}, {"rate_per_s": 24.0, "duration_s": 300.0},
                                 {"rate_per_s": 8.0, "duration_s": 300.0}]
    a = Simulation(parse(raw)).run()
    b = Simulation(parse(dict(raw, run={"engine": "simpy"}))).run()
    assert a.engine == "compiled" and b.engine == "simpy"
    for f in ("first_token_s", "finish_s", "replica", "status"):
        assert np.array_equal(getattr(a.requests, f), getattr(b.requests, f)), f
    assert a.autoscale.events == b.autoscale.events
    assert a.autoscale.billed_s == b.autoscale.billed_s
    assert a.ledger.energy_it_j == b.ledger.energy_it_j
    assert len(set(a.autoscale.events["state"])) == 4  # every state was visited


def test_the_hpa_rule():
    assert hpa(4, 1.5, 1.0) == 6  # ceil(4 x 1.5)
    assert hpa(4, 1.05, 1.0) == 4  # within the 10% tolerance
    assert hpa(4, 0.3, 1.0) == 2  # ceil(1.2)
    assert hpa(3, 0.0, 1.0) == 1  # never below one


def test_a_plugin_policy_from_a_file(tmp_path):
    (tmp_path / "mine.py").write_text("class Three:\n    def desired(self, pool):\n        return 3\n")
    raw = _raw(policy=f"{tmp_path / 'mine.py'}:Three")
    raw["workload"]["stages"] = [{"rate_per_s": 4.0, "duration_s": 300.0}]
    res = Simulation(parse(raw)).run()
    c = res.autoscale.columns()
    assert c["serving"][-1] == 3 and c["serving"][0] == 1


BASE = TINY_WORKLOAD + """[[pools]]
hardware = "h100-sxm"
model = "llama-3.1-8b"
{pool}
[pools.autoscaler]
{scale}
"""


@pytest.mark.slow
@pytest.mark.parametrize("pool,scale,field", [
    ("", "min_replicas = 5\nmax_replicas = 3", "pools[0].autoscaler.min_replicas"),
    ("replicas = 9", "max_replicas = 3", "pools[0].replicas"),
    ("", "max_replicas = 3\npolicy = \"bogus\"", "pools[0].autoscaler.policy"),
    ("", "min_replicas = 1", "pools[0].autoscaler.max_replicas"),
    ("", "max_replicas = 3\ninterval_s = 0", "pools[0].autoscaler.interval_s"),
])
def test_bad_autoscaler_input_is_one_line_exit_2(tmp_path, pool, scale, field):
    assert_run_fails_in_one_line(tmp_path, BASE.format(pool=pool, scale=scale), field)


def test_a_scenario_autoscaler_naming_no_pool_is_refused(tmp_path):
    text = BASE.format(pool="", scale="max_replicas = 2").replace("[pools.autoscaler]\nmax_replicas = 2\n", "")
    assert_run_fails_in_one_line(tmp_path, text + '[autoscaler]\nmax_replicas = 2\npools = ["nope"]\n',
                                 "autoscaler.pools")


@pytest.mark.slow
def test_day_fleet_follows_the_diurnal_load_over_24_hours():
    """scenarios/day_fleet.toml as shipped (about 12 s): 24 hourly rows; the fleet is larger at
    the afternoon peak than at the night trough, and the hours' replica-hours and requests add
    up to the run's."""
    from sim.scenario.config import load

    sc = load(REPO / "scenarios" / "day_fleet.toml")
    res = Simulation(sc).run()
    s = summarize(res)
    hours = s["hourly"]
    assert len(hours) == 24 and res.sim_time_s >= 86400.0
    reps = np.array([h["replicas_mean"] for h in hours])
    assert reps[13:17].mean() > 2 * reps[2:5].mean(), reps  # peak at 15:00, trough at 03:00 (4:1 rate)
    assert sum(h["requests"] for h in hours) == s["requests_total"]
    assert sum(h["replica_hours"]["chat"] for h in hours) == pytest.approx(s["replica_hours"]["chat"], rel=1e-9)
    assert s["requests_completed"] == s["requests_total"]  # nothing lost to the day's drains
    assert all(h["slo_attainment"] is not None and h["accelerator_usd_per_mtok"] > 0 for h in hours)


@pytest.mark.slow
def test_the_example_rate_autoscaler_follows_the_step_on_both_drivers():
    """examples/rate_autoscaler.py: replicas for the last interval's rate at 10 req/s each, x1.2:
    1-2 at 8 req/s (ceil(9.6 / 10) and the Poisson noise), at least 3 at 24 req/s (ceil(28.8 /
    10)); both drivers take the same decisions; nothing lost."""
    raw = _raw(policy=f"{REPO / 'examples' / 'rate_autoscaler.py'}:RateAutoscaler")
    raw["workload"]["stages"] = [{"rate_per_s": 8.0, "duration_s": 200.0}, {"rate_per_s": 24.0, "duration_s": 300.0},
                                 {"rate_per_s": 8.0, "duration_s": 300.0}]
    a = Simulation(parse(raw)).run()
    b = Simulation(parse(dict(raw, run={"engine": "simpy"}))).run()
    assert a.autoscale.events == b.autoscale.events
    c = a.autoscale.columns()
    t, desired = c["t_s"], c["desired"]
    assert desired[(t > 20) & (t < 200)].max() <= 2 and 3 <= desired[(t > 220) & (t < 500)].min()
    assert np.all(a.requests.status == COMPLETED)
