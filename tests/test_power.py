"""Power, facility, failures and cost."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import check_invariants, run
from sim.perf.catalog import builtin_catalog
from sim.scenario.config import apply_overrides, parse, read_toml
from sim.analysis.metrics import summarize
from sim.perf.roofline import PerfModel

REPO = Path(__file__).resolve().parents[1]
TRIP = REPO / "scenarios" / "tent_trip.toml"


def scenario(path, sets=()):
    raw = apply_overrides(read_toml(path), list(sets))
    return parse(raw, path.parent)


def test_clock_cap_slows_compute_bound_prefill_in_proportion_and_decode_barely():
    c = builtin_catalog()
    pm = PerfModel(c.hardware["h100-sxm"], c.models["llama-3.1-70b"], 4)
    h = c.hardware["h100-sxm"]
    pre_full = pm.step_power(0, 0.0, 4096, 0.0, 4096 * 4097 / 2, 1)
    pre_cap = pm.step_power(0, 0.0, 4096, 0.0, 4096 * 4097 / 2, 1, cap_w=450.0)
    assert pre_full.power_w > 450 >= pre_cap.power_w - 1e-6 and pre_cap.clock < 1
    fixed = pm.cost(0, 0.0, 4096, 0.0, 4096 * 4097 / 2, 1)
    compute_full = pre_full.t_s - fixed.t_comm_s - fixed.t_overhead_s
    compute_cap = pre_cap.t_s - fixed.t_comm_s - fixed.t_overhead_s
    assert compute_cap == pytest.approx(compute_full / pre_cap.clock, rel=1e-6)  # in proportion
    dec_full = pm.step_power(32, 32 * 2048.0, n_seq=32)
    dec_cap = pm.step_power(32, 32 * 2048.0, n_seq=32, cap_w=0.5 * h.tdp_w)  # Splitwise's 700 -> 350 W
    assert dec_full.power_w > 0.5 * h.tdp_w  # the cap binds
    assert dec_cap.power_w <= 0.5 * h.tdp_w + 1e-6 and dec_cap.clock < 1
    assert dec_cap.t_s / dec_full.t_s - 1 < 0.10


def test_perf_calculator_power_cap():
    r = subprocess.run([sys.executable, "-m", "sim", "perf", "--hardware", "h100-sxm", "--model", "llama-3.1-70b",
                        "--tp", "4", "--batch", "16", "--context", "2048", "--prompt", "4096", "--power-cap-w", "450",
                        "--json"], capture_output=True, text=True, cwd=REPO)
    o = json.loads(r.stdout)
    assert o["clock_factor"] <= 1 and o["prefill_clock_factor"] < 1 and o["power_w"] <= 700
    assert o["prefill_s"] > o["prefill_uncapped_s"]


@pytest.fixture(scope="module")
def trip_runs():
    out = {}
    for pol in ("none", "cap_uniform", "cap_priority", "drain", "shed"):
        res = run(scenario(TRIP, [f'facility.manager.policy="{pol}"', "workload.duration_s=150"]))
        out[pol] = (res, check_invariants(res))
    return out


def test_energy_conservation(trip_runs):
    res, s = trip_runs["cap_uniform"]
    led = res.ledger
    # integrated IT energy (the ledger's step function) = the sum of every replica's per-step
    # and idle-interval energies, accumulated separately
    assert led.energy_it_j == pytest.approx(led.step_energy_j, rel=1e-9)
    assert s["energy_it_j"] == led.energy_it_j and s["energy_j"] >= s["energy_it_j"]
    # with a constant PUE, facility energy = IT energy x PUE
    sc = scenario(TRIP, ["facility.tents.pue=1.3", "workload.duration_s=60"])
    r2 = run(sc)
    s2 = summarize(r2)
    assert s2["energy_j"] == pytest.approx(1.3 * s2["energy_it_j"], rel=1e-9)
    assert s2["energy_per_output_tok_j"] == pytest.approx(
        s2["energy_j"] / r2.workload.output_tokens[r2.requests.status == 1].sum())


@pytest.mark.parametrize("policy", ["cap_uniform", "cap_priority", "drain", "shed"])
def test_power_manager_keeps_overshoot_within_one_interval_per_drop(trip_runs, policy):
    res, s = trip_runs[policy]
    interval = res.scenario.facility.interval_s
    assert s["supply_drops"] == 1
    assert s["power_limit_exceeded_s"] <= interval * s["supply_drops"]


def test_without_manager_the_overshoot_is_reported(trip_runs):
    _, s = trip_runs["none"]
    assert s["supply_drops"] == 1 and s["power_limit_exceeded_s"] > 60  # most of the 120 s trip
    assert s["facility_power_peak_w"] > 60_000


def test_trip_accounts_for_every_request_with_reasons(trip_runs):
    for _res, s in trip_runs.values():
        assert s["requests_total"] == (s["requests_completed"] + s["requests_rejected"] + s["requests_failed"]
                                       + s["requests_in_flight"])
    _, s = trip_runs["shed"]
    assert s["requests_rejected"] > 0 and s["reasons"] == {"power": s["requests_rejected"]}


def test_node_failures_requeue_or_fail_with_reason():
    sc = scenario(TRIP, ["failures.node_mtbf_h=0.01", "failures.node_repair_h=0.005", "failures.retry_limit=1",
                         "workload.duration_s=120", 'facility.manager.policy="none"'])
    res = run(sc)
    s = check_invariants(res)
    assert s["node_failures"] > 0
    assert s["requests_failed"] > 0 and set(s["reasons"]) <= {"node_failure", "timeout", "no_capacity"}
    assert s["reasons"].get("node_failure", 0) > 0
    assert s["requests_completed"] > 0.5 * s["requests_total"]


def test_cost_by_hand():
    sc = scenario(TRIP, ["workload.duration_s=30", 'facility.manager.policy="none"'])
    res = run(sc)
    s = summarize(res)
    hours = res.sim_time_s / 3600
    acc = 64 * hours * 3.3
    energy = s["energy_j"] / 3.6e9 * 60
    fac = hours * 40
    assert s["cost_usd"] == pytest.approx(acc + energy + fac, rel=1e-9)
    tok = res.workload.output_tokens[res.requests.status == 1].sum()
    assert s["run_cost_per_mtok_usd"] == pytest.approx(s["cost_usd"] / (tok / 1e6))
    # the steady state's: the rent of the window, the rest at the run's mean rate, over the tokens made in it
    t0, t1 = s["measurement_window_s"]
    rate = (energy + fac) / res.sim_time_s
    steady = (64 * 3.3 * (t1 - t0) / 3600 + rate * (t1 - t0)) / (s["window_output_tokens"] / 1e6)
    assert s["cost_per_mtok_usd"] == pytest.approx(steady, rel=1e-9)


def test_facility_graph():
    res = run(scenario(TRIP, ["workload.duration_s=5"]))
    g = res.facility.graph
    kinds = [d["kind"] for _, d in g.nodes(data=True)]
    assert kinds.count("accelerator") == 64 and kinds.count("node") == 8 and kinds.count("rack") == 2
    assert kinds.count("tent") == 1 and kinds.count("gas_turbine") == 1


@pytest.mark.parametrize("edit,field", [
    ('pools.0.tent="tent-b"', "pools[0].tent"),
    ("facility.tents.it_limit_mw=0.01", "facility.tents[0].it_limit_mw"),
    ('facility.sources.kind="fusion"', "facility.sources[0].kind"),
    ('facility.manager.policy="pray"', "facility.manager.policy"),
])
def test_bad_facility_declarations(tmp_path, edit, field):
    import tomli_w
    raw = apply_overrides(read_toml(TRIP), [edit])
    p = tmp_path / "bad.toml"
    p.write_text(tomli_w.dumps(raw))
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(p)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert field in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # (a whole-run integration test: the full suite runs it)
def test_facility_plots(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(TRIP), "--set", "workload.duration_s=90", "--out",
                        str(tmp_path), "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "facility.json").read_text())
    assert min(data["turbines_up"]) == 2 and data["events"]["turbine_trips_s"] == [60.0]
    assert (tmp_path / "cost_breakdown.png").stat().st_size > 5000
