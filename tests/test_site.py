"""The coupled site (sim/studies/site.py, coupled.py, blocks.py, actors.py): every cell on one
power bus in lockstep windows, against one monolithic simulation of the same site; the same bits
on any executor and worker count, and after a lost worker; partitioned results; bad input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from sim.analysis.metrics import summarize
from sim.engine.drivers.cell import step_integrals, window_bins
from sim.engine.simulation import Simulation
from sim.scenario.config import parse, read_toml
from sim.studies.blocks import SKETCH_EDGES, sketch, sketch_percentile
from sim.studies.cells import site_share
from sim.studies.fleet import run_fleet

REPO = Path(__file__).resolve().parents[1]


def site(cells: int, duration_s: float, bus: str = "shared", **fleet) -> dict:
    """tent_200mw.toml at `cells` of its cells (its load and facility at that share), the trip at a third."""
    raw = read_toml(REPO / "scenarios" / "tent_200mw.toml")
    total = raw["fleet"]["cells"][0]["count"]
    raw["workload"]["duration_s"] = duration_s
    src = raw["facility"]["sources"][0]
    src["trip_at_s"], src["trip_repair_s"] = [duration_s / 3], duration_s / 3
    raw = site_share(raw, cells / total)
    raw["fleet"]["cells"][0]["count"] = cells
    raw["fleet"] = {k: v for k, v in raw["fleet"].items() if k != "simulate_per_kind"}
    raw["fleet"].update(power_bus=bus, **fleet)
    return raw


def write(tmp: Path, raw: dict, name: str = "site.toml") -> Path:
    p = tmp / name
    p.write_text(tomli_w.dumps(raw))
    return p


def strip(rep: dict) -> str:
    return json.dumps({k: v for k, v in rep.items() if "wall" not in k and k not in ("scenario", "blocks")},
                      sort_keys=True)


def test_a_step_functions_integrals_are_exact_over_any_bins():
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 5, 200))
    d = rng.normal(0, 10, 200)
    edges = window_bins(0.0, 5.0, 0.3)
    assert edges[-1] == 5.0 and np.all(np.diff(edges) > 0) and np.diff(edges)[-1] <= 0.3
    got = step_integrals(100.0, t, d, edges)
    fine = np.linspace(0, 5, 2_000_001)  # midpoint rule on a fine grid
    v = 100.0 + np.concatenate(([0.0], np.cumsum(d)))[np.searchsorted(t, fine[:-1], side="right")]
    assert got.sum() == pytest.approx(np.sum(v * np.diff(fine)), rel=1e-5)
    assert got.sum() == pytest.approx(100.0 * 5 + np.sum(d * (5 - t)), rel=1e-12)  # the closed form


def test_latency_sketches_merge_by_addition_and_give_percentiles_to_their_resolution():
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(-1, 1, 50_000), rng.lognormal(0, 0.5, 30_000)
    merged = sketch(a) + sketch(b)
    assert np.array_equal(merged, sketch(np.concatenate([a, b])))
    step = SKETCH_EDGES[1] / SKETCH_EDGES[0]
    for q in (50, 99):
        exact = np.percentile(np.concatenate([a, b]), q)
        assert sketch_percentile(merged, q) == pytest.approx(exact, rel=step - 1)


def test_a_coupled_site_matches_the_same_site_as_one_simulation(tmp_path):
    raw = site(6, 300.0)
    mono_raw = copy.deepcopy(raw)
    mono_raw.pop("fleet")
    mono_raw["pools"][0]["replicas"] *= 6
    mono = summarize(Simulation(parse(mono_raw, REPO / "scenarios")).run())
    rep = run_fleet(write(tmp_path, raw), out_dir=tmp_path / "out")
    assert rep["cells_simulated"] == rep["cells_total"] == 6 and rep["extrapolated"] == []
    assert rep["fleet_facility_power_mean_w"] == pytest.approx(mono["facility_power_mean_w"], rel=0.01)
    assert rep["fleet_facility_power_peak_w"] == pytest.approx(mono["facility_power_peak_w"], rel=0.02)
    assert abs(rep["fleet_slo_attainment"] - mono["slo_attainment"]) < 0.005
    assert rep["supply_drops"] == 1 and rep["trip_times_s"] == [100.0]  # the unit trips once, for the site
    # the site's energy is the cells' exact integrals (to the microjoule per bin)
    import pyarrow.parquet as pq

    samples = pq.read_table(tmp_path / "out" / "facility.parquet").to_pydict()
    assert samples["t_s"][0] == 0.0 and samples["t_s"][-1] == rep["sim_time_s"]
    assert min(samples["supply_w"]) < max(samples["supply_w"])  # the trip shows in the live supply
    assert max(samples["facility_w"]) <= rep["fleet_facility_power_peak_w"]
    for k in ("fleet_facility_power_peak_w", "fleet_facility_power_mean_w", "fleet_battery_used_j",
              "ramp_limit_exceeded_s", "power_limit_exceeded_s", "fleet_slo_attainment"):
        assert rep[k] is not None, k


def test_the_site_peak_is_the_sites_not_a_sum_of_cell_peaks(tmp_path):
    raw = site(4, 120.0)
    rep = run_fleet(write(tmp_path, raw))
    split = run_fleet(write(tmp_path, site(4, 120.0, bus="split", simulate_per_kind=4), "split.toml"))
    assert split["cells_simulated"] == 4 and split["power_bus"] == "split"
    # cells peak at different moments: the site's peak is below the sum of theirs
    assert rep["fleet_facility_power_peak_w"] < split["fleet_facility_power_peak_w"]
    assert rep["fleet_facility_power_mean_w"] == pytest.approx(split["fleet_facility_power_mean_w"], rel=0.01)


def test_a_coupled_site_is_the_same_bits_on_one_or_two_local_workers(tmp_path):
    p = write(tmp_path, site(3, 60.0))
    one = run_fleet(p, workers=1, out_dir=tmp_path / "one")
    two = run_fleet(p, workers=2, out_dir=tmp_path / "two")
    assert two["blocks"] == 2 and one["blocks"] == 1
    assert strip(one) == strip(two)
    import pyarrow.dataset as ds

    t1 = ds.dataset(tmp_path / "one" / "requests", partitioning="hive").to_table().sort_by([("cell", "ascending"),
                                                                                           ("request_id", "ascending")])
    t2 = ds.dataset(tmp_path / "two" / "requests", partitioning="hive").to_table().sort_by([("cell", "ascending"),
                                                                                           ("request_id", "ascending")])
    assert t1.num_rows == one["requests_written"] > 0 and t1.equals(t2)
    assert sorted(set(t1.column("cell").to_pylist())) == [0, 1, 2]


def test_a_lost_worker_process_is_rebuilt_and_replayed_to_the_same_bits(tmp_path):
    from sim.studies.blocks import CellSpec, InProcess, Processes
    from sim.studies.cells import fleet_cells

    cells, _, _ = fleet_cells(site(2, 40.0), REPO / "scenarios")
    specs = [CellSpec(c.cell_id, c.kind, c.raw, c.seed, str(REPO / "scenarios")) for c in cells]
    args = (0.01, True, None)
    ref, pr = InProcess([specs[:1], specs[1:]], args), Processes([specs[:1], specs[1:]], args)
    try:
        for i in range(5):
            a, b = ref.step(5.0 * i, [None, None]), pr.step(5.0 * i, [None, None])
            assert all(np.array_equal(x.it_uj, y.it_uj) for x, y in zip(a, b, strict=True))
            if i == 2:
                pr.procs[1].kill()  # a worker lost mid-run
                pr.procs[1].join()
        assert pr.lost == 1
        fa, fb = ref.finish(), pr.finish()
        for x, y in zip(fa, fb, strict=True):
            assert x[0]["summary"] == y[0]["summary"]
            assert np.array_equal(x[0]["latencies"]["e2e_s"], y[0]["latencies"]["e2e_s"])
    finally:
        pr.close()


@pytest.mark.slow
def test_a_coupled_site_is_the_same_bits_on_a_dask_cluster(tmp_path):
    p = write(tmp_path, site(3, 60.0))
    local = run_fleet(p, workers=1)
    dask = run_fleet(p, workers=2, executor="dask")
    assert strip(local) == strip(dask)


@pytest.mark.parametrize("fleet, field", [
    ({"simulate_per_kind": 1}, "fleet.simulate_per_kind"),
    ({"window_s": 0}, "fleet.window_s"),
    ({"bin_s": -1}, "fleet.bin_s"),
    ({"power_bus": "split", "window_s": 5.0}, "fleet.window_s"),
    ({"power_bus": "grid"}, "fleet.power_bus"),
])
def test_bad_coupled_site_settings_are_one_line(tmp_path, fleet, field):
    raw = site(2, 30.0)
    raw["fleet"].update(fleet)
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(write(tmp_path, raw))], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 2 and field in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_coupled_site_prints_the_sites_figures(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(write(tmp_path, site(2, 30.0))), "--quiet"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "site peak" in r.stdout and "2 of 2 cells simulated" in r.stdout and "windows" in r.stdout


def test_a_coupled_sites_report_shows_its_power_against_the_supply_and_the_battery(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(write(tmp_path, site(2, 60.0))), "--quiet",
                        "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    page = (out / "report.html").read_text()
    assert "Did the load stay under the power supply" in page
    assert "battery&#x27;s charge" in page or "battery's charge" in page
    assert "Every cell simulated" in page and (out / "requests").is_dir()


def test_dask_workers_start_the_engines_build_without_blocking(monkeypatch):
    from sim.engine import compilation
    from sim.studies import daskwarm

    started = []
    monkeypatch.setattr(compilation, "cached", lambda: False)
    monkeypatch.setattr(compilation, "build_in_background", lambda: started.append(1) or True)
    daskwarm.dask_setup(None)  # (dask worker --preload sim.studies.daskwarm)
    daskwarm.WarmEngine().setup(None)
    assert started == [1, 1]
    monkeypatch.setattr(compilation, "cached", lambda: True)
    daskwarm.WarmEngine().setup(None)
    assert started == [1, 1]  # a warm machine starts nothing


@pytest.mark.slow
def test_a_lost_dask_worker_is_rebuilt_elsewhere_and_replayed_to_the_same_bits():
    import os

    from sim.studies.actors import DaskActors
    from sim.studies.blocks import CellSpec, InProcess
    from sim.studies.cells import fleet_cells

    cells, _, _ = fleet_cells(site(2, 40.0), REPO / "scenarios")
    specs = [CellSpec(c.cell_id, c.kind, c.raw, c.seed, str(REPO / "scenarios")) for c in cells]
    args = (0.01, True, None)
    ref, da = InProcess([specs[:1], specs[1:]], args), DaskActors("dask", [specs[:1], specs[1:]], args)
    try:
        for i in range(5):
            a, b = ref.step(5.0 * i, [None, None]), da.step(5.0 * i, [None, None])
            assert all(np.array_equal(x.it_uj, y.it_uj) for x, y in zip(a, b, strict=True))
            if i == 2:  # the worker holding block 2 dies (its nanny starts a fresh one)
                da.client.run(os._exit, 1, workers=[da.actors[1]._address], on_error="return")
        assert sum(da.lost) >= 1
        fa, fb = ref.finish(), da.finish()
        for x, y in zip(fa, fb, strict=True):
            assert x[0]["summary"] == y[0]["summary"]
    finally:
        da.close()


def test_one_coupled_cell_is_the_cell_run_alone_to_the_bins_resolution(tmp_path):
    # one cell on seed + 0 draws the plain scenario's workload: the coupling's only approximation
    # is the site seeing the draw in bins (and the manager acting on what it saw)
    raw = site(1, 200.0)
    alone = copy.deepcopy(raw)
    alone.pop("fleet")
    s = summarize(Simulation(parse(alone, REPO / "scenarios")).run())
    rep = run_fleet(write(tmp_path, raw))
    assert rep["kinds"][0]["completed_simulated"] == s["requests_completed"]
    # (a cap decided on a bin's mean can shift a late request, and the run's end with it: means, not totals)
    assert rep["fleet_facility_power_mean_w"] == pytest.approx(s["facility_power_mean_w"], rel=5e-3)
    assert rep["fleet_facility_power_peak_w"] == pytest.approx(s["facility_power_peak_w"], rel=0.02)
    assert rep["fleet_battery_used_j"] == pytest.approx(s["battery_used_j"], rel=0.05)
    finer = run_fleet(write(tmp_path, dict(raw, fleet=dict(raw["fleet"], bin_s=0.0002)), "fine.toml"))
    assert finer["fleet_energy_j"] == pytest.approx(s["energy_j"], rel=1e-6)  # converges as the bins shrink


@pytest.mark.parametrize("policy", ["cap_uniform", "cap_priority", "shed"])
def test_built_in_managers_over_arrays_decide_what_they_decide_replica_by_replica(policy):
    from sim.registry import MANAGERS
    from sim.studies.blocks import BlockReport
    from sim.studies.site import Site, SiteView

    sc = parse({k: v for k, v in site(3, 60.0).items() if k != "fleet"}, REPO / "scenarios")
    batch = [p for p in sc.pools for _ in range(p.replicas)]
    pools = batch * 3
    hi = copy.copy(batch[0])
    object.__setattr__(hi, "priority", -1)  # (a pool of higher priority for a third of them)
    pools = [hi if i % 3 == 0 else p for i, p in enumerate(pools)]
    s = Site(sc.facility, 0, 0.001, pools)
    rng = np.random.default_rng(3)
    n = len(pools)
    rep = BlockReport(it_uj=np.zeros((1, 1), np.int64), it_uw=np.zeros(1, np.int64), live=rng.random(n) > 0.1,
                      drained=np.zeros(n, bool), comm=np.zeros(n, bool), cap_w=np.full(n, np.nan),
                      hosts_on_uw=10**11, draw_uw=10**12, done_at=None)
    for supply in (0.5e6, 0.7e6, 1e9):  # short (caps), between, plenty (no caps)
        a, b = SiteView(s, [rep], supply, 0.0), SiteView(s, [rep], supply, 0.0)
        m = MANAGERS.make(policy)
        m.act(a, supply)
        m.act_arrays(b, supply)
        assert np.array_equal(a._set, b._set) and a._shed == b._shed
        assert np.allclose(np.nan_to_num(a.cap, nan=-1), np.nan_to_num(b.cap, nan=-1), rtol=1e-9)
        if supply < 1e9:
            assert np.isfinite(b.cap).any()


def test_a_coupled_site_is_one_task_of_a_study():
    from sim.studies.study import Task, run_task

    out = run_task(Task(site(2, 30.0), str(REPO / "scenarios"), 11, keep_latencies=True))
    s = out["summary"]
    assert s["cells_simulated"] == s["cells_total"] == 2 and s["power_bus"] == "shared"
    assert s["facility_power_peak_w"] == s["fleet_facility_power_peak_w"]  # the single-run names carry the site's
    assert len(out["latencies"]["e2e_s"]) == sum(k["completed_simulated"] for k in s["kinds"])


def test_resume_on_a_coupled_site_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(write(tmp_path, site(2, 30.0))), "--out",
                        str(tmp_path / "o"), "--resume"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "--resume" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_percentiles_from_sketches_are_the_same_bits_however_blocked(tmp_path, monkeypatch):
    from sim.studies import coupled

    monkeypatch.setattr(coupled, "EXACT_MAX", 0)  # (force the sketches)
    p = write(tmp_path, site(3, 30.0))
    one, two = run_fleet(p, workers=1), run_fleet(p, workers=2)
    assert one["percentiles"].startswith("from merged sketches") and strip(one) == strip(two)
    exact = coupled.run_coupled(site(3, 30.0), REPO / "scenarios", keep_latencies=True)
    assert one["ttft_p99_s"] == pytest.approx(exact["ttft_p99_s"], rel=1e-3)
