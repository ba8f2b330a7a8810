"""Answers a planner acts on (issue 32): plan on P/D and fleets, compare/sweep on fleets,
steady-state figures independent of run length, prices, and the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sim.api as dc
from sim.cli import main
from sim.errors import ScenarioError

REPO = Path(__file__).resolve().parents[1]
SC = REPO / "scenarios"
DISAGG = SC / "disagg_h200_crescent.toml"
SHORT_DISAGG = ["--set", "workload.duration_s=200", "--set", "workload.warmup_s=20"]
FLEET = SC / "fleet_30t.toml"
SHORT_FLEET = ["--set", "workload.duration_s=30", "--set", "pools.replicas=4", "--set", "fleet.simulate_per_kind=1"]
TENT = SC / "tent_200mw.toml"
SHORT_TENT = ["--set", "workload.duration_s=120", "--set", "pools.replicas=4", "--set", "fleet.simulate_per_kind=1",
              "--set", "facility.sources.titan130.start_s=10", "--set", "facility.sources.titan130.trip_at_s=[60.0]",
              "--set", "fleet.cells.0.count=40", "--set", "workload.rate_per_s=2000"]


def cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, [line for line in err.splitlines() if line.strip() and not line.startswith("dcsim: note:")]


def _verify_sets(cmd):
    import shlex

    words = shlex.split(cmd)
    return [words[k + 1] for k, w in enumerate(words) if w == "--set"]


def _sets(items):
    return [x for k, x in enumerate(items) if k % 2 == 1]


# --- plan on what the scenario describes -------------------------------------------------------

def test_plan_keeps_both_roles_their_hardware_and_prices_each_pool(capsys):
    rc, out, err = cli(capsys, "plan", DISAGG, "--target-rate", "4", *SHORT_DISAGG, "--json")
    assert rc == 0, err
    rep = json.loads(out)
    best = rep["plan"]
    pools = {p["name"]: p for p in best["pools"]}
    assert set(pools) == {"h200-prefill", "crescent-decode"}
    assert best["hardware"] == "h200/crescent-island-480"  # neither pool collapsed onto the other's part
    # each pool at its own price: H200 at [cost] 3.3, Crescent Island at its [pools.cost] 1.2
    assert pools["h200-prefill"]["usd_per_hour"] == pytest.approx(3.3 * pools["h200-prefill"]["replicas"])
    assert pools["crescent-decode"]["usd_per_hour"] == pytest.approx(1.2 * pools["crescent-decode"]["replicas"])
    assert best["usd_per_hour"] == pytest.approx(sum(p["usd_per_hour"] for p in pools.values()))
    assert best["accelerators"] == sum(p["accelerators"] for p in pools.values())
    # the verify command reproduces the answer
    sets = _verify_sets(rep["verify"])
    res = dc.run(dc.load(DISAGG, set=sets), quiet=True)
    s = dc.summary(res)
    assert s["slo_attainment"] == pytest.approx(best["slo_attainment"])
    hw = {p.name: p.hardware.id for p in res.scenario.pools}
    assert hw == {"h200-prefill": "h200", "crescent-decode": "crescent-island-480"}
    assert {p.name: p.replicas for p in res.scenario.pools} == {k: v["replicas"] for k, v in pools.items()}
    assert best["one_fewer_attainment"] is None or best["one_fewer_attainment"] < 0.9


def test_plan_moves_a_pool_to_other_hardware_at_that_parts_price(capsys):
    rc, out, err = cli(capsys, "plan", DISAGG, "--target-rate", "4", *SHORT_DISAGG, "--hardware",
                       "crescent-decode:h200", "--json")
    assert rc == 0, err
    rep = json.loads(out)
    best = rep["plan"]
    # the decode pool is on H200 now: priced as an H200 (3.3), not at Crescent Island's 1.2
    assert best["usd_per_hour"] == pytest.approx(3.3 * best["accelerators"])
    sets = _verify_sets(rep["verify"])
    res = dc.run(dc.load(DISAGG, set=sets), quiet=True)
    assert dc.summary(res)["cost_usd"] / res.sim_time_s * 3600 >= best["usd_per_hour"]  # rent + energy


@pytest.mark.parametrize("args,field", [
    (["--hardware", "h200"], "--hardware"),  # two pools: which one?
    (["--hardware", "nosuch:h200"], "--hardware"),
    (["--hardware", "h200-prefill:no-such-part"], "--hardware"),
    (["--tp", "x"], "--tp"),
    (["--target-rate", "0"], "--target-rate"),
])
def test_plan_bad_input_is_one_line_exit_2(capsys, args, field):
    base = ["plan", DISAGG, *SHORT_DISAGG]
    if "--target-rate" not in args:
        base += ["--target-rate", "4"]
    rc, out, err = cli(capsys, *base, *args)
    assert rc == 2 and len(err) == 1 and field in err[0] and "Traceback" not in err[0], err


# --- fleets in compare, sweep and plan ---------------------------------------------------------

def test_compare_sweep_and_plan_run_a_fleet(capsys):
    rc, out, err = cli(capsys, "compare", FLEET, "--vary", "pools.replicas=4,8", "--replications", "2",
                       *SHORT_FLEET, "--set", "workload.rate_per_s=20000", "--workers", "1", "--json", "--quiet")
    assert rc == 0, err
    rep = json.loads(out)
    m = rep["variants"]["8"]["metrics"]
    assert "fleet_output_tok_per_s" in rep["metrics"] and "fleet_usd_per_hour" in rep["metrics"]
    # twice the replicas per cell cost twice as much per hour
    assert m["fleet_usd_per_hour"]["mean"] == pytest.approx(2 * rep["variants"]["4"]["metrics"]["fleet_usd_per_hour"]
                                                           ["mean"], rel=0.02)
    assert rep["seeds"] == [1, 1 + 1270]  # replications do not share a cell's stream
    rc, out, err = cli(capsys, "sweep", FLEET, "--range", "workload.rate_per_s=10000:20000:10000", *SHORT_FLEET,
                       "--workers", "1", "--json", "--quiet")
    assert rc == 0, err
    pts = json.loads(out)["variants"]["base"]["points"]
    tput = [p["metrics"]["fleet_output_tok_per_s"]["mean"] for p in pts]
    assert tput[1] == pytest.approx(2 * tput[0], rel=0.05)  # unsaturated: throughput follows the offered load
    rc, out, err = cli(capsys, "plan", FLEET, "--target-rate", "3000", "--slo", "ttft_s=1,tpot_s=0.1", *SHORT_FLEET,
                       "--json")
    assert rc == 0, err
    best = json.loads(out)["plan"]
    assert best["cells"][0]["cells"] >= 1 and best["label"].startswith(f"{best['cells'][0]['cells']} cells")
    assert best["usd_per_hour"] == pytest.approx(best["cells"][0]["cells"] * 4 * 8 * 3.3)


def test_plan_and_compare_a_shrunk_tent_site(capsys):
    rc, out, err = cli(capsys, "compare", TENT, "--vary", "pools.replicas=4,6", "--replications", "2", *SHORT_TENT,
                       "--workers", "1", "--json", "--quiet")
    assert rc == 0, err
    rep = json.loads(out)
    for k in ("fleet_facility_power_mean_w", "fleet_energy_j", "fleet_requests_lost_to_power"):
        assert k in rep["metrics"], k
    rc, out, err = cli(capsys, "plan", TENT, "--target-rate", "2000", *SHORT_TENT, "--max-replicas", "64", "--json")
    assert rc == 0, err
    assert json.loads(out)["plan"]["cells"][0]["cells"] >= 1


def test_a_fleet_takes_stages_diurnal_load_and_a_rate_profile(tmp_path):
    from sim.studies.cells import share_workload

    wl = {"arrival": "poisson", "stages": [{"rate_per_s": 100, "duration_s": 10}, {"rate_per_s": 300,
                                                                                  "duration_s": 10}]}
    assert [s["rate_per_s"] for s in share_workload(wl, 0.25)["stages"]] == [25, 75]
    d = share_workload({"arrival": "poisson", "duration_s": 60, "diurnal": {"peak_rate_per_s": 80,
                                                                           "trough_rate_per_s": 20}}, 0.5)
    assert d["diurnal"] == {"peak_rate_per_s": 40, "trough_rate_per_s": 10}
    assert share_workload({"rate_profile": {"file": "x.csv"}}, 0.5)["rate_profile"]["scale"] == 0.5
    with pytest.raises(ScenarioError, match="workload.arrival"):
        share_workload({"arrival": "trace", "trace": "t.csv"}, 0.5)
    # a whole fleet on stages runs, its cells at their share of each stage
    text = (SC / "quickstart.toml").read_text().replace("rate_per_s = 10.0", "").replace(
        "num_requests = 2000          # or duration_s = ...", "")
    text = text.replace("[workload]", "[workload]\nstages = [{ rate_per_s = 40.0, duration_s = 20 }, "
                                      "{ rate_per_s = 80.0, duration_s = 20 }]")
    p = tmp_path / "f.toml"
    p.write_text(text + "\n[fleet]\nsimulate_per_kind = 1\n[[fleet.cells]]\nname = \"c\"\ncount = 4\n")
    rep = dc.fleet(p, workers=1)
    assert rep["kinds"][0]["requests_simulated"] == pytest.approx((40 * 20 + 80 * 20) / 4, rel=0.15)


# --- steady-state figures --------------------------------------------------------------------------

LONG_OUTPUT = """name = "steady"
seed = 3
[workload]
arrival = "poisson"
rate_per_s = 60
duration_s = 60
prompt_tokens = { dist = "lognormal", mean = 1024, cv = 1.0, max = 8192 }
output_tokens = { dist = "lognormal", mean = 256, cv = 0.8, max = 2048 }
[[pools]]
name = "p"
hardware = "h200"
model = "llama-3.1-70b"
tp = 8
replicas = 8
[router]
policy = "least_loaded"
[cost]
usd_per_accel_hour = 3.3
usd_per_mwh = 80
[run]
timeseries = false
"""


def test_steady_state_figures_do_not_depend_on_run_length(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(LONG_OUTPUT)
    short = dc.summary(dc.run(dc.load(p, set=["workload.duration_s=60"]), quiet=True))
    long_ = dc.summary(dc.run(dc.load(p, set=["workload.duration_s=1200"]), quiet=True))
    assert short["stable"] and long_["stable"] and short["requests_in_flight"] == 0
    for k in ("throughput_output_tok_per_s", "throughput_req_per_s", "cost_per_mtok_usd"):
        assert short[k] == pytest.approx(long_[k], rel=0.03), k
    # the whole run's figures (drain included) do depend on it, and the drain is reported apart
    assert short["run_throughput_output_tok_per_s"] < 0.9 * long_["run_throughput_output_tok_per_s"]
    assert short["drain_s"] > 5 and short["drain_output_tokens"] > 0
    t0, t1 = short["measurement_window_s"]
    assert 0 < t0 < t1 <= 60


def test_tokens_between_counts_each_token_once():
    import numpy as np

    from sim.analysis.metrics import tokens_between

    first, fin, n = np.array([1.0, 2.0]), np.array([5.0, 2.0]), np.array([5.0, 1.0])
    total = tokens_between(first, fin, n, -np.inf, np.inf)
    assert total == 6.0
    assert tokens_between(first, fin, n, 0.0, 3.0) + tokens_between(first, fin, n, 3.0, 10.0) == pytest.approx(total)
    assert tokens_between(first, fin, n, 0.0, 3.0) == pytest.approx(1 + 4 * 2 / 4 + 1)


def test_cost_per_mtok_is_null_when_a_part_has_no_price():
    s = dc.summary(dc.run(dc.load(SC / "quickstart.toml", set=["workload.num_requests=200",
                                                              "hardware.h100-sxm.usd_per_accel_hour=0"]), quiet=True))
    assert s["cost_per_mtok_usd"] is not None  # priced at 0: a price
    # a100-40g has no price in the catalog, and the scenario gives none
    s = dc.summary(dc.run(dc.load(SC / "quickstart.toml", set=["workload.num_requests=200",
                                                              'pools.hardware="a100-40g"']), quiet=True))
    assert s["cost_per_mtok_usd"] is None and s["run_cost_per_mtok_usd"] is None


# --- the API ---------------------------------------------------------------------------------------

def test_api_has_plan_perf_and_fleet():
    pl = dc.plan(SC / "quickstart.toml", 20, {"ttft_s": 1.0}, set=["workload.num_requests=300"], max_replicas=8)
    assert pl["plan"]["replicas"] >= 1
    pf = dc.perf("h200", "llama-3.1-70b", tp=8, batch=32, context=2048)
    assert pf["decode_step_s"] > 0 and pf["hardware"] == "h200"
    with pytest.raises(ScenarioError, match="--tp"):
        dc.perf("h100-sxm", "llama-3.1-405b")
    with pytest.raises(ScenarioError, match="sim.api.fleet"):
        dc.load(FLEET)
    fl = dc.fleet(FLEET, set=_sets(SHORT_FLEET) + ["workload.rate_per_s=20000"], workers=1)
    assert fl["fleet_output_tok_per_s"] > 0 and fl["cells_total"] == 1270


def test_sweep_with_one_replication_has_no_interval():
    sw = dc.sweep(SC / "quickstart.toml", "workload.rate_per_s=5:10:5", set=["workload.num_requests=100"], workers=1)
    df = dc.sweep_df(sw)
    assert df["ci_low"].isna().all() and df["ci_high"].isna().all()


# --- the battery bridges a trip ------------------------------------------------------------------

def test_a_battery_sized_for_a_trip_loses_fewer_requests_to_power():
    from sim.scenario.config import parse, read_toml

    raw = read_toml(SC / "tent_trip.toml")  # one of three 30 kW units trips at 60 s
    raw["facility"]["manager"]["policy"] = "shed"  # arrivals turned away while over the supply
    raw["workload"]["duration_s"] = 150
    lost = {}
    for name, extra in (("none", []), ("35 kW / 10 kWh", [{"name": "bess", "kind": "battery", "mw": 0.035,
                                                          "mwh": 0.01}])):
        r = {**raw, "facility": {**raw["facility"], "sources": raw["facility"]["sources"] + extra}}
        s = dc.summary(dc.run(parse(r, SC), quiet=True))
        lost[name] = s["reasons"].get("power", 0)
        if extra:
            assert s["battery_used_j"] > 0  # it bridged the shortfall ...
            assert s["battery_used_j"] < 0.01 * 3.6e9  # ... without running empty
    assert lost["none"] > 0
    assert lost["35 kW / 10 kWh"] < lost["none"]


# --- classes pinned to pools ----------------------------------------------------------------------

PINNED = ['workload.classes.interactive.pools=["interactive"]', 'workload.classes.batch.pools=["batch"]',
          "workload.duration_s=90"]


@pytest.mark.parametrize("engine", ["compiled", "simpy"])
def test_every_request_of_a_pinned_class_is_served_by_its_pools(engine):
    from helpers import same

    res = dc.run(dc.load(SC / "tent_trip.toml", set=PINNED + [f'run.engine="{engine}"']), quiet=True)
    df = dc.requests_df(res)
    served = df[df["status"] == "completed"]
    assert len(served) > 1000
    assert set(served.loc[served["class"] == "interactive", "pool"]) == {"interactive"}
    assert set(served.loc[served["class"] == "batch", "pool"]) == {"batch"}
    if engine == "simpy":  # both drivers alike, bit for bit
        same(dc.run(dc.load(SC / "tent_trip.toml", set=PINNED), quiet=True), res)


def test_a_class_naming_no_pool_goes_to_the_pools_no_class_names():
    res = dc.run(dc.load(SC / "tent_trip.toml", set=PINNED[:1] + PINNED[2:]), quiet=True)
    df = dc.requests_df(res)
    served = df[df["status"] == "completed"]
    assert set(served.loc[served["class"] == "interactive", "pool"]) == {"interactive"}
    assert set(served.loc[served["class"] == "batch", "pool"]) == {"batch"}


@pytest.mark.parametrize("pools,why", [
    ('["nosuch"]', "no pool named"),
    ('["interactive", "batch"]', "every pool"),  # the batch class then has none left
])
def test_bad_pins_are_one_line(tmp_path, pools, why):
    from helpers import assert_run_fails_in_one_line

    text = (SC / "tent_trip.toml").read_text().replace('name = "interactive"\nshare = 0.6',
                                                         f'name = "interactive"\nshare = 0.6\npools = {pools}')
    assert_run_fails_in_one_line(tmp_path, text, "workload.classes[")


# --- saturation, reasons, notes, units ------------------------------------------------------------

@pytest.mark.parametrize("name", ["quickstart", "disagg"])
def test_saturation_figures_match_the_per_step_time_series(name):
    import numpy as np

    res = dc.run(dc.load(SC / f"{name}.toml", set=["run.timeseries=true"]), quiet=True)
    s = dc.summary(res)
    c = {k: np.asarray(v) for k, v in res.timeseries.columns().items()}
    T, kv, batch = res.sim_time_s, 0.0, 0.0
    for r, info in enumerate(res.replicas):  # the recorded step function, integrated
        m = c["replica"] == r
        dt = np.diff(np.append(c["t_s"][m], T))
        kv += np.sum(c["kv_blocks_used"][m] * dt) / info.total_blocks / len(res.replicas)
        batch += np.sum(c["batch_size"][m] * dt)
    slots = sum(p.replicas * p.scheduler.max_batch_size for p in res.scenario.pools)
    assert s["kv_used_mean"] == pytest.approx(kv / T, rel=0.05)
    assert s["batch_fill_mean"] == pytest.approx(batch / T / slots, rel=0.05)
    assert s["utilization_mean"] > 0.5 and s["kv_used_mean"] < 0.2  # busy is not full
    assert s["queue_share_of_latency"] == pytest.approx(s["queue_mean_s"] / s["e2e_mean_s"])


def test_the_report_headline_shows_saturation_and_class_slos(tmp_path):
    assert main(["run", str(SC / "tent_trip.toml"), "--set", "workload.duration_s=60", "--out", str(tmp_path),
                 "--no-plots", "--quiet"]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "saturation" in html and "utilisation" not in html.lower().replace("utilisation_", "")
    assert "interactive SLO 1 s" in html  # the class's own SLO drawn on the CDFs


def test_reason_is_a_code_and_the_message_is_apart(tmp_path):
    res = dc.run(dc.load(SC / "quickstart.toml", set=["workload.num_requests=50", "workload.timeout_s=0.01"]),
                 quiet=True)
    df = dc.requests_df(res)
    failed = df[df["status"] != "completed"]
    assert len(failed) and set(failed["reason"]) <= {"timeout"}
    assert (df.loc[df["status"] == "completed", "reason"] == "").all()
    assert "reason_detail" in df


def test_studies_and_fleets_say_what_their_numbers_rest_on(tmp_path, capsys):
    rc, out, err = cli(capsys, "compare", FLEET, "--vary", "pools.replicas=4,8", "--replications", "2",
                       *SHORT_FLEET, "--set", "workload.rate_per_s=20000", "--workers", "1", "--quiet",
                       "--out", tmp_path / "c")
    assert rc == 0
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["calibration_status"] == {"h200": "borrowed"}
    assert "What these numbers rest on" in (tmp_path / "c" / "report.html").read_text()
    rc = main(["run", str(FLEET), *map(str, SHORT_FLEET), "--set", "workload.rate_per_s=20000", "--quiet",
               "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert rc == 0 and "h200: constants borrowed" in err and "dcsim calibrate" in err
    assert "What these numbers rest on" in (tmp_path / "f" / "report.html").read_text()


def test_energy_reads_in_the_unit_that_fits():
    from sim.studies.fleet import energy_text

    assert energy_text(15 * 3.6e9) == "15 MWh" and energy_text(2.5 * 3.6e12) == "2.5 GWh"
    assert energy_text(3.6e6) == "1 kWh"


def test_plan_explains_a_wide_interval(capsys):
    rc, out, err = cli(capsys, "plan", SC / "quickstart.toml", "--target-rate", "20", "--slo", "ttft_s=1",
                       "--hardware", "h200", "--headroom", "--set", "workload.num_requests=300")
    assert rc == 0, err
    assert "p99 TTFT interval" in out and "widened x1.5" in out and "borrowed" in out
