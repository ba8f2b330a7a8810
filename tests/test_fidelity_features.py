"""Workload and engine features the vLLM experiments need: constant arrivals, load stages,
shared prefixes with prefix caching (LRU eviction), client timeouts, `dcsim validate`."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import check_invariants, run
from sim.scenario.config import parse
from sim.workload.generate import Workload, build_workload

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


def _prefix_bench(caching, arrivals, prompts, outs, groups, prefix_tokens, blocks=None):
    from sim.engine.bench import Bench

    sc = parse({"seed": 0, "workload": {"arrival": "constant", "rate_per_s": 1.0, "num_requests": len(arrivals),
                                        "prompt_tokens": 300, "output_tokens": 5,
                                        "shared_prefix": {"groups": 1, "tokens": prefix_tokens}},
                "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b",
                           "scheduler": {"prefix_caching": caching}}]})
    wl = Workload(np.array(arrivals, float), np.array(prompts, np.int64), np.array(outs, np.int64),
                  prefix_group=np.array(groups, np.int32), prefix_tokens=prefix_tokens)
    return Bench(sc, wl, total_blocks=blocks)


def _serve(b, j, t):
    """Push request j at t and step until the replica is idle; the prompt tokens computed."""
    b.push(j, t)
    computed = 0
    while (p := b.plan(t)) is not None:
        chunks, _, dt = p
        computed += sum(c for _, c in chunks)
        t += dt
        b.commit(t)
    return computed, t


@pytest.mark.parametrize("caching,computed,hits", [(True, 300 + 140, 160), (False, 600, 0)])
def test_shared_prefix_computed_once_with_caching_twice_without(caching, computed, hits):
    b = _prefix_bench(caching, [0.0, 1.0], [300, 300], [5, 5], [0, 0], 160)
    c0, t = _serve(b, 0, 0.0)
    c1, _ = _serve(b, 1, max(t, 1.0))
    assert c0 + c1 == computed and 300 - c1 == hits
    assert b.finished() == [0, 1]


def test_cached_blocks_are_evicted_before_running_requests_are_preempted():
    # 10 blocks of 16 tokens; a shared prefix is 4 blocks; a (70 tokens, 5 blocks, group 0) runs
    # alone and leaves its 4 prefix blocks cached with no holder
    b = _prefix_bench(True, [0.0, 3.0, 4.0], [70, 40, 60], [2, 50, 50], [0, 1, 2], 64, blocks=10)
    _serve(b, 0, 0.0)
    assert b.cached_idle_blocks == 4 and b.used_blocks == 0 and b.free_blocks == 10
    b.push(1, 3.0)  # b (group 1, 3 blocks) runs ...
    _, _, dt = b.plan(3.0)
    b.commit(3.0 + dt)
    b.push(2, 4.0)  # ... and c (group 2, 4 blocks) needs more than the 3 truly free ones
    b.plan(4.0)
    assert b.cached_idle_blocks < 4  # cached blocks went first ...
    assert list(b.k.rq.PRE[:3]) == [0, 0, 0] and sorted(b.running()) == [1, 2]  # ... and nobody was preempted
    assert b.used_blocks + b.cached_idle_blocks <= b.total_blocks


def test_timeouts_fail_requests_with_reason_and_counts_add_up():
    sc = parse({"seed": 1, "workload": {"arrival": "constant", "rate_per_s": 200.0, "num_requests": 600,
                                        "prompt_tokens": 2000, "output_tokens": 300, "timeout_s": 5.0},
                "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "variability": False,
                           "scheduler": {"max_batch_size": 32}}]})  # (with the warm-up, every request times out)
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
    r2 = subprocess.run(
        [sys.executable, "-m", "sim", "run", str(toml), "--json", "--set", "workload.stages.duration_s=60"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["requests_total"] == 360
    # with the fitted tails model: a cold start lengthens the first requests' p99, and the
    # written scenarios carry the values they ran with
    out_v = tmp_path / "out_v"
    r3 = subprocess.run([sys.executable, "-m", "sim", "validate", "--data", str(tmp_path), "--json", "--variability",
                         "--out", str(out_v), "--workers", "1"], capture_output=True, text=True, cwd=REPO)
    assert r3.returncode == 0, r3.stderr
    rep_v = json.loads(r3.stdout)
    assert rep["variability"] == "off" and rep_v["variability"] != "off"
    for a, b in zip(rep["experiments"], rep_v["experiments"], strict=False):
        assert b["predicted"]["e2e_p99"] > a["predicted"]["e2e_p99"]
    assert "[pools.variability]" in (out_v / "19-llama-3-1-8b-tp1-roleplay-1.toml").read_text()


@pytest.mark.slow
def test_calibration_fit_reproduces_the_catalog_constants():
    from sim.validation.calibrate import PARAMS, fit, serving_rows
    from sim.perf.catalog import builtin_catalog
    fitted = fit(serving_rows())
    h = builtin_catalog().hardware["h100-sxm"]
    for p in PARAMS:
        assert fitted["h100-sxm"][p] == pytest.approx(getattr(h, p)), p
