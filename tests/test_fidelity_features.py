"""Workload and engine features the vLLM experiments need: constant arrivals, load stages,
shared prefixes with prefix caching (LRU eviction), client timeouts, `dcsim validate`."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import check_invariants, run
from sim.scenario.config import parse
from sim.kernel.replica import ReplicaCore, Request
from sim.policies.schedulers import make_scheduler
from sim.engine.simulation import Simulation
from sim.workload.generate import build_workload

REPO = Path(__file__).resolve().parents[1]


def scenario(**wl_over):
    wl = {"arrival": "constant", "rate_per_s": 4.0, "num_requests": 40, "prompt_tokens": 300, "output_tokens": 20}
    wl.update(wl_over)
    wl = {k: v for k, v in wl.items() if v is not None}
    sched = wl.pop("scheduler", {})
    return parse({"seed": 2, "workload": wl,
                  "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "scheduler": sched}]})


def test_constant_arrivals_are_evenly_spaced():
    sc = scenario()
    wl = build_workload(sc.workload, sc.seed, sc.base_dir)
    assert len(wl) == 40
    assert np.allclose(np.diff(wl.arrival_s), 0.25, rtol=0, atol=1e-12)


def test_stages_switch_rate_at_the_right_time():
    sc = scenario(stages=[{"rate_per_s": 2.0, "duration_s": 10.0}, {"rate_per_s": 5.0, "duration_s": 4.0}],
                  rate_per_s=None, num_requests=None)
    wl = build_workload(sc.workload, sc.seed, sc.base_dir)
    a = wl.arrival_s
    assert list(np.bincount(wl.stage)) == [20, 20]
    assert np.allclose(a[:20], np.arange(20) * 0.5)
    assert np.allclose(a[20:], 10.0 + np.arange(20) * 0.2)
    assert wl.stage_bounds_s == (0.0, 10.0, 14.0)
    s = check_invariants(run(sc))
    assert [st["requests"] for st in s["stages"]] == [20, 20]
    assert s["stages"][1]["offered_rate_per_s"] == pytest.approx(5.0)


def test_poisson_stages_follow_each_rate():
    sc = scenario(arrival="poisson", rate_per_s=None, num_requests=None,
                  stages=[{"rate_per_s": 50.0, "duration_s": 100.0}, {"rate_per_s": 10.0, "duration_s": 100.0}])
    wl = build_workload(sc.workload, sc.seed, sc.base_dir)
    n0, n1 = np.bincount(wl.stage)
    assert n0 == pytest.approx(5000, rel=0.05) and n1 == pytest.approx(1000, rel=0.1)
    assert wl.arrival_s[wl.stage == 1].min() >= 100.0


def test_shared_prefix_groups_are_uniform():
    sc = scenario(num_requests=9000, shared_prefix={"groups": 9, "tokens": 100})
    wl = build_workload(sc.workload, sc.seed, sc.base_dir)
    counts = np.bincount(wl.prefix_group, minlength=9)
    assert len(counts) == 9 and counts.min() > 850 and wl.prefix_tokens == 100


def _two_same_prefix(caching: bool):
    sc = parse({"seed": 0, "workload": {"arrival": "constant", "rate_per_s": 1.0, "num_requests": 2,
                                        "prompt_tokens": 300, "output_tokens": 5,
                                        "shared_prefix": {"groups": 1, "tokens": 160}},
                "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b",
                           "scheduler": {"prefix_caching": caching}}],
                "run": {"engine": "simpy"}})  # the test reads the SimPy engine's replica state
    sim = Simulation(sc)
    sim.run()
    return sim.replicas[0].core, sim


@pytest.mark.parametrize("caching,computed,hits", [(True, 300 + 140, 160), (False, 600, 0)])
def test_shared_prefix_computed_once_with_caching_twice_without(caching, computed, hits):
    core, sim = _two_same_prefix(caching)
    assert core.prefill_tokens == computed
    assert core.cache_hit_tokens == hits
    assert all(sim.table.status == 1)


def test_cached_blocks_are_evicted_before_running_requests_are_preempted():
    core = ReplicaCore(0, total_blocks=10, block_size=16, prefix_blocks=4)
    sched = make_scheduler("chunked", 8, 1000)
    a = Request(0, 0.0, 70, 2, group=0)  # 5 blocks, the first 4 of them a shareable prefix
    core.waiting.append(a)
    core.commit(sched.plan(core), 1.0)  # prefill: prefix blocks published to the cache
    assert core.cached_blocks == 4
    core.commit(sched.plan(core), 2.0)  # decode: a finishes, its prefix stays cached
    assert not core.running and core.cached_blocks == 4 and core.free_blocks == 10
    # b (other group) runs; c then needs more than the truly free blocks
    b = Request(1, 3.0, 40, 50, group=1)
    core.waiting.append(b)
    core.commit(sched.plan(core), 3.0)
    c = Request(2, 4.0, 60, 50, group=2)
    core.waiting.append(c)
    core.commit(sched.plan(core), 4.0)
    assert core.evictions > 0  # cached blocks went first ...
    assert b.preemptions == 0 and c.preemptions == 0  # ... and nobody was preempted
    assert core.used_blocks + core.free_blocks == core.total_blocks


def test_timeouts_fail_requests_with_reason_and_counts_add_up():
    sc = parse({"seed": 1, "workload": {"arrival": "constant", "rate_per_s": 200.0, "num_requests": 600,
                                        "prompt_tokens": 2000, "output_tokens": 300, "timeout_s": 5.0},
                "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b",
                           "scheduler": {"max_batch_size": 32}}]})
    s = check_invariants(run(sc))
    assert s["requests_failed"] > 0 and s["reasons"].get("timeout") == s["requests_failed"]
    assert s["requests_completed"] + s["requests_failed"] == 600
    assert s["e2e_p99_s"] <= 5.0 + 1e-9


@pytest.mark.slow
def test_validate_cli_on_a_small_folder(tmp_path):
    src = REPO / "data" / "validation" / "vllm-measured" / "experiments.csv"
    lines = src.read_text().splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.startswith(("19-llama-3-1-8b", "64-qwen2-5-7b"))]
    (tmp_path / "experiments.csv").write_text("\n".join(keep) + "\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "sim", "validate", "--data", str(tmp_path), "--json", "--out", str(out),
                        "--workers", "1"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert {"experiments", "median_abs_err"} <= set(rep)
    assert set(rep["median_abs_err"]) >= {"ttft_mean", "e2e_mean", "tpot_mean"}
    assert len(rep["experiments"]) == 2
    for row in rep["experiments"]:
        assert abs(row["rel_err"]["e2e_mean"]) < 0.15 and abs(row["rel_err"]["ttft_mean"]) < 0.3
    # the written scenario reruns with dcsim run
    toml = out / "19-llama-3-1-8b-tp1-roleplay-1.toml"
    r2 = subprocess.run([sys.executable, "-m", "sim", "run", str(toml), "--json", "--set", "workload.stages.duration_s=60"],
                        capture_output=True, text=True, cwd=REPO)
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["requests_total"] == 360


@pytest.mark.slow
def test_calibration_fit_reproduces_the_catalog_constants():
    from sim.validation.calibrate import PARAMS, fit, serving_rows
    from sim.perf.catalog import builtin_catalog
    fitted = fit(serving_rows())
    h = builtin_catalog().hardware["h100-sxm"]
    for p in PARAMS:
        assert fitted["h100-sxm"][p] == pytest.approx(getattr(h, p)), p
