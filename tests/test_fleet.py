"""Fleets of cells: one cell is the plain scenario; the rest are inferred from simulated cells."""

from pathlib import Path

import numpy as np
import pytest

from sim.scenario.config import load
from sim.studies.fleet import run_fleet
from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation


def write(tmp_path: Path, count: int, per_kind: int) -> Path:
    p = tmp_path / "fleet.toml"
    p.write_text(f"""
seed = 4
[workload]
arrival = "poisson"
rate_per_s = {20.0 * count}
duration_s = 30
prompt_tokens = {{ dist = "lognormal", mean = 800, cv = 1.0, max = 4000 }}
output_tokens = 64
[[pools]]
hardware = "h100-sxm"
model = "llama-3.1-8b"
replicas = 2
[run]
timeseries = false
[fleet]
simulate_per_kind = {per_kind}
[[fleet.cells]]
name = "a"
count = {count}
""")
    return p


def test_one_cell_fleet_is_the_plain_scenario(tmp_path):
    p = write(tmp_path, 1, 1)
    rep = run_fleet(p, workers=1)
    raw_plain = tmp_path / "plain.toml"
    raw_plain.write_text(p.read_text().split("[fleet]")[0])
    s = summarize(Simulation(load(raw_plain)).run())
    k = rep["kinds"][0]
    assert k["requests_simulated"] == s["requests_total"] and k["completed_simulated"] == s["requests_completed"]
    # a cell's rate is its steady-state throughput (metrics.measurement_window), as a plain run reports it
    assert k["per_cell_output_tok_per_s"] == pytest.approx(s["throughput_output_tok_per_s"])
    assert rep["ttft_p99_s"] == pytest.approx(s["ttft_p99_s"])


def test_fleet_totals_are_inferred_from_simulated_cells(tmp_path):
    rep = run_fleet(write(tmp_path, 10, 2), workers=2)
    k = rep["kinds"][0]
    assert rep["cells_total"] == 10 and rep["cells_simulated"] == 2 and k["simulated"] == 2
    assert rep["engine"] == k["engine"] == "compiled"
    assert rep["fleet_output_tok_per_s"] == pytest.approx(10 * k["per_cell_output_tok_per_s"])
    assert rep["fleet_output_tokens_per_day"] == pytest.approx(86400 * rep["fleet_output_tok_per_s"])
    # each cell takes its share of the global rate: 20 req/s here
    assert k["per_cell_req_per_s"] == pytest.approx(20.0, rel=0.15)
    # deterministic whatever the worker count
    assert run_fleet(write(tmp_path, 10, 2), workers=1) == rep


@pytest.mark.slow  # (a whole-run integration test: the full suite runs it)
def test_fleet_cells_on_dask_match_local(tmp_path):
    pytest.importorskip("distributed")
    p = write(tmp_path, 6, 2)
    assert run_fleet(p, workers=2, executor="dask") == run_fleet(p, workers=2)


def test_fleet_merges_the_cells_request_tables(tmp_path):
    import pyarrow.parquet as pq

    rep = run_fleet(write(tmp_path, 10, 2), workers=1, out_dir=tmp_path / "out")
    t = pq.read_table(tmp_path / "out" / rep["requests_file"]).to_pydict()  # (a name in the folder)
    k = rep["kinds"][0]
    assert len(t["request_id"]) == k["requests_simulated"]
    assert sorted(set(t["cell"])) == [0, 1] and set(t["kind"]) == {"a"}
    ttft = np.array([x for x, s in zip(t["ttft_s"], t["status"], strict=False) if s == "completed"])
    assert np.sum(np.array(t["status"]) == "completed") == k["completed_simulated"]
    assert rep["ttft_p99_s"] == pytest.approx(float(np.percentile(ttft, 99)))


@pytest.mark.slow
def test_dcsim_run_takes_the_fleets_worker_count(tmp_path):
    import json
    import subprocess
    import sys
    p = write(tmp_path, 4, 2)
    outs = []
    for w in ("1", "2"):
        r = subprocess.run([sys.executable, "-m", "sim", "run", str(p), "--workers", w, "--json"], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    assert outs[0] == outs[1]
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(p), "--workers", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--workers" in r.stderr and len(r.stderr.strip().splitlines()) == 1
