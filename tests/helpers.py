"""Helpers the tests share (imported as `from helpers import ...`; no test module imports another)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.analysis.metrics import summarize, time_average_in_system
from sim.engine.recorder import COMPLETED, FAILED
from sim.engine.simulation import Simulation
from sim.perf.catalog import builtin_catalog
from sim.perf.roofline import PerfModel
from sim.scenario.config import parse
from sim.workload.generate import Workload

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "scenarios" / "quickstart.toml"


def analytic(rate: float, n: int, seed: int, dist: str = "exponential", replicas: int = 1,
             router: str = "central_queue", mean_s: float = 1.0):
    return parse({
        "seed": seed,
        "workload": {"arrival": "poisson", "rate_per_s": rate, "num_requests": n,
                     "prompt_tokens": 1, "output_tokens": 1},
        "pools": [{"name": "m", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": replicas,
                   "service": {"dist": dist, "mean_s": mean_s}}],
        "router": {"policy": router}, "run": {"timeseries": False},
    })


def small(policy: str = "chunked", **over):
    """A small engine scenario: Llama-3.1-8B on H100, lognormal prompts."""
    raw = {
        "seed": over.pop("seed", 3),
        "hardware": over.pop("hardware_tables", {}),
        "workload": {
            "arrival": "poisson",
            "rate_per_s": over.pop("rate", 8.0),
            "num_requests": over.pop("n", 300),
            "prompt_tokens": over.pop("prompt", {"dist": "lognormal", "mean": 800, "cv": 1.0, "max": 6000}),
            "output_tokens": over.pop("output", {"dist": "uniform", "min": 2, "max": 200}),
        },
        "pools": [
            {
                "name": "p",
                "hardware": over.pop("hardware", "h100-sxm"),
                "model": over.pop("model", "llama-3.1-8b"),
                "replicas": over.pop("replicas", 2),
                "tp": over.pop("tp", 1),
                "scheduler": {"policy": policy, **over.pop("scheduler", {})},
            }
        ],
        "router": {"policy": over.pop("router", "round_robin")},
    }
    assert not over, over
    return parse(raw)


def check_invariants(res) -> dict:
    """Invariants every run must satisfy; returns the summary."""
    s = summarize(res)
    assert s["requests_total"] == (s["requests_completed"] + s["requests_rejected"]
                                   + s["requests_failed"] + s["requests_in_flight"])
    tb, wl = res.requests, res.workload
    done = tb.status == COMPLETED
    arr = wl.arrival_s
    assert np.all(np.diff(arr) >= 0)
    assert np.all(tb.start_s[done] >= arr[done] - 1e-12)
    assert np.all(tb.first_token_s[done] >= tb.start_s[done] - 1e-12)
    assert np.all(tb.finish_s[done] >= tb.first_token_s[done] - 1e-12)
    ts = res.timeseries.columns()
    if ts["t_s"].size:
        for rep in res.replicas:
            m = ts["replica"] == rep.rid
            if rep.total_blocks:
                assert np.all(ts["kv_blocks_used"][m] <= rep.total_blocks)
            assert np.all(np.diff(ts["t_s"][m]) >= 0)
    # Little's law: time-average number in system (integrated from the recorded step function)
    # equals throughput x mean time in system, over a run that starts empty and drains.
    left = done | (tb.status == FAILED)
    if s["requests_in_flight"] == 0 and done.any():
        t_end = res.sim_time_s
        L = time_average_in_system(res, t_end)
        lam = left.sum() / t_end
        W = float(np.mean(tb.finish_s[left] - arr[left]))
        assert L == pytest.approx(lam * W, rel=1e-9)
        assert s["littles_law_rel_err"] < 1e-9
    return s


def run(sc):
    return Simulation(sc).run()


# A small scenario's workload, for the bad-input tests of each feature (a pool follows)
TINY_WORKLOAD = """
[workload]
arrival = "poisson"
rate_per_s = 2.0
num_requests = 20
prompt_tokens = 100
output_tokens = 10
"""


def assert_run_fails_in_one_line(tmp_path, toml_text: str, field: str) -> None:
    """`dcsim run` of the scenario text exits 2 with one line on stderr naming `field`, no traceback."""
    p = tmp_path / "s.toml"
    p.write_text(toml_text)
    r = subprocess.run([sys.executable, "-m", "sim", "run", str(p), "--no-plots"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in r.stderr, r.stderr


# --- both drivers, bit for bit ---
def same(a, b):
    assert a.engine == "compiled" and b.engine == "simpy"
    ta, tb = a.requests, b.requests
    np.testing.assert_array_equal(ta.status, tb.status)
    np.testing.assert_array_equal(ta.replica, tb.replica)
    np.testing.assert_array_equal(ta.preemptions, tb.preemptions)
    for k in ("first_token_s", "start_s", "finish_s"):
        np.testing.assert_array_equal(getattr(ta, k), getattr(tb, k), err_msg=k)  # bit for bit
    assert ta.reason == tb.reason
    assert a.sim_time_s == b.sim_time_s
    sa, sb = summarize(a), summarize(b)
    for k in ("requests_completed", "requests_rejected", "ttft_p99_s", "tpot_mean_s", "e2e_mean_s",
              "throughput_output_tok_per_s", "utilization_mean", "littles_law_rel_err"):
        assert sa[k] == (None if sb[k] is None else pytest.approx(sb[k], rel=1e-12, abs=1e-15)), k
    assert sa["energy_j"] == pytest.approx(sb["energy_j"], rel=1e-6)  # summed in another order
    led = a.ledger
    assert led.energy_it_j == pytest.approx(led.step_energy_j, rel=1e-9)  # the ledger = per-replica sums
    if a.scenario.facility is None:
        # the binned peak lies between the mean power and the SimPy engine's per-step peak
        assert sa["it_power_mean_w"] <= sa["facility_power_peak_w"] <= sb["facility_power_peak_w"] * (1 + 1e-9)
    else:
        # both ledgers take every power change in time order: the same figures
        for k in ("facility_power_peak_w", "power_limit_exceeded_s", "battery_used_j", "energy_it_j",
                  "battery_charged_j", "below_min_load_s", "min_load_burn_mwh"):
            assert sa[k] == pytest.approx(sb[k], rel=1e-9, abs=1e-9), k
        for k in ("node_failures", "supply_drops"):
            assert sa[k] == sb[k], k
        assert a.facility.failure_times_s == b.facility.failure_times_s
        for k in ("t_s", "supply_w", "turbines_up", "clock_cap_w", "drained"):
            np.testing.assert_array_equal(a.ledger.samples[k], b.ledger.samples[k], err_msg=k)
        np.testing.assert_allclose(a.ledger.samples["facility_w"], b.ledger.samples["facility_w"], rtol=1e-9)
    # requests in the system (a request turned away for want of capacity adds a point, not a change)
    ta_t, ta_n = changes(a.in_system_t_s, a.in_system_n)
    tb_t, tb_n = changes(b.in_system_t_s, b.in_system_n)
    np.testing.assert_array_equal(ta_t, tb_t)
    np.testing.assert_array_equal(ta_n, tb_n)
    return sa


def changes(t, n):
    keep = np.append(True, n[1:] != n[:-1])
    return t[keep], n[keep]


# --- one replica by hand ---
def hw_table(**over):
    """The h100-sxm catalog entry as an inline [hardware.gpu] table, with overrides."""
    h = builtin_catalog().hardware["h100-sxm"]
    d = {f.name: getattr(h, f.name) for f in dataclasses.fields(h) if f.name != "id" and getattr(h, f.name) is not None}
    d["tflops"] = dict(h.tflops)
    d.update(over)
    return d


# The engine's own timeline: no front-end latency, tokens delivered when sampled.
PLAIN = {"request_overhead_s": 0.0, "output_lag_steps": 0}


def one_replica(policy="chunked", hw=PLAIN, **sched):
    return parse({"seed": 0, "hardware": {"gpu": hw_table(**hw)},
                  "workload": {"arrival": "poisson", "rate_per_s": 1.0, "num_requests": 1,
                               "prompt_tokens": 1, "output_tokens": 1},
                  "pools": [{"name": "p", "hardware": "gpu", "model": "llama-3.1-8b", "variability": False,
                             "scheduler": {"policy": policy, **sched}}]})  # by-hand timelines: exact steps


def perf(hw=PLAIN):
    c = builtin_catalog()
    return PerfModel(dataclasses.replace(c.hardware["h100-sxm"], **hw), c.models["llama-3.1-8b"])


def fixed(arrivals, prompts, outputs):
    return Workload(np.array(arrivals, float), np.array(prompts, np.int64), np.array(outputs, np.int64))


# --- the differential suite's scenarios (tests/test_differential.py draws the dicts) ---
def differential_scenario(d: dict) -> dict:
    """The scenario of one drawn example of the differential suite."""
    sched, tp = dict(d["sched"]), d["tp"]
    if d.get("closed") is not None:  # closed-loop clients do not run with a shared queue yet
        d = dict(d, multi=False, sessions=False,
                 router="jsq" if d["router"] == "central_queue" else d["router"])
    if d["model"] == "mixtral-8x7b":  # 93 GB of weights: two H100s and most of their memory
        tp, sched["kv_memory_fraction"] = 2, max(sched["kv_memory_fraction"], 0.7)
    pools = [{"name": "a", "hardware": "h100-sxm", "model": d["model"], "replicas": d["replicas"], "tp": tp,
              "scheduler": sched, "variability": d.get("variability", True)}]
    if d.get("engine", "vllm") != "vllm" and sched["policy"] != "priority":  # (trtllm cannot preempt a class)
        pools[0]["engine"] = d["engine"]
    if d.get("offload") and sched["prefix_caching"]:  # a CPU tier under the prefix cache (small: it drops blocks)
        pools[0]["kv_offload"] = {"tier": "cpu", "capacity_gb": d["offload"], "gbps": 400.0}
    if d.get("spec") is not None:  # speculative decoding on pool a (the step formula's 1/g steps)
        pools[0]["speculative"] = dict(d["spec"])
    two = d.get("two_models", False) and d["mixed"] and d["router"] != "central_queue"
    if d["mixed"]:  # a second pool on another part (same front-end overhead)
        pools.append(dict(pools[0], name="b", hardware="h200", replicas=1))
        if two:  # ... serving another model: two routing groups, and requests for a third no pool serves
            pools[1].update(model="qwen3-8b", tp=1, replicas=2)
        elif d.get("pd") and d["router"] != "central_queue":  # ... or the same model disaggregated
            pools[0]["role"], pools[1]["role"] = "prefill", "decode"
            pools[0].pop("speculative", None)  # (a prefill pool decodes nothing to speculate on: refused)
            pools[1]["replicas"] = 2
    if d.get("ep") and d["model"] == "mixtral-8x7b":  # expert parallelism: 2 experts on each of 4 GPUs
        pools[0].update(ep=4, moe_imbalance=1.25)
    wl = _differential_workload(d, two)
    raw = {"name": "fuzz", "seed": d["seed"], "workload": wl, "pools": pools, "router": {"policy": d["router"]},
           "run": {"timeseries": True}}
    if any(p.get("role") for p in pools):
        raw["router"]["decode_policy"] = d.get("decode", "least_kv")
        raw["network"] = {"fabric": "roce-200g"}
    if d["horizon"] is not None:
        raw["run"]["horizon_s"] = d["horizon"]
    a = d.get("autoscale")
    if a is not None:  # pool a autoscaled: replicas off at first, cold starts, drains
        pools[0]["autoscaler"] = {"policy": a["policy"], "min_replicas": 1, "max_replicas": d["replicas"] + 1,
                                  "interval_s": a["interval"], "scale_down_delay_s": a["delay"],
                                  "start_s": a["start"], "load_gbps": 2000.0}
        if a["target"] is not None:
            pools[0]["autoscaler"]["target"] = a["target"]
    if d["facility"] is not None:
        _differential_facility(raw, d["facility"], pools, a)
    return raw


def _differential_workload(d: dict, two: bool) -> dict:
    """The [workload] of a differential example."""
    wl = {"arrival": d["arrival"], "rate_per_s": d["rate"], "num_requests": d["n"],
          "prompt_tokens": {"dist": "lognormal", "mean": d["prompt"], "cv": 1.0, "max": 6000},
          "output_tokens": {"dist": "lognormal", "mean": d["output"], "cv": 0.8, "max": 1500}}
    if d.get("closed") is not None:  # (clients, think time: None, or a mean, exponential)
        clients, think = d["closed"]
        wl = {k: v for k, v in wl.items() if k != "rate_per_s"}
        wl.update(arrival="closed", concurrency=min(clients, d["n"]))
        if think is not None:
            wl["think_time_s"] = {"dist": "exponential", "mean": think} if think else 0.0
    elif d["arrival"] == "gamma":
        wl["cv"] = 2.0
    if d["timeout"] is not None:
        wl["timeout_s"] = d["timeout"]
    if d["prefix"] is not None:
        wl["shared_prefix"] = {"groups": d["prefix"][0], "tokens": d["prefix"][1]}
    if two:
        wl["classes"] = [{"name": "hi", "share": 0.3, "priority": 0, "model": d["model"]},
                         {"name": "lo", "share": 0.6, "priority": 1, "model": "qwen3-8b"},
                         {"name": "gone", "share": 0.1, "model": "llama-3.1-70b"}]
    elif d["classes"]:
        wl["classes"] = [{"name": "hi", "share": 0.3, "priority": 0}, {"name": "lo", "share": 0.7, "priority": 1}]
    if d["sessions"]:
        wl["sessions"] = 25
    if d.get("multi"):  # multi-turn sessions: growing histories in the prefix cache, responses published
        wl.pop("sessions", None)
        wl.pop("shared_prefix", None)
        wl["num_requests"] = max(10, d["n"] // 3)
        wl["multi_turn"] = {"turns": {"dist": "uniform", "min": 1, "max": 4},
                            "think_time_s": {"dist": "exponential", "mean": 2.0}, "max_history_tokens": 6000}
    return wl


def _differential_facility(raw: dict, f: dict, pools: list, a: dict | None) -> None:
    """The [facility] (and [failures]) of a differential example, sized on its pools' full draw."""
    for k, p in enumerate(pools):
        p["tent"], p["priority"] = "t", k
    # TDP + host, x PUE, of every replica built (an autoscaled pool builds max_replicas)
    full_mw = sum(p.get("autoscaler", {}).get("max_replicas", p["replicas"]) * max(p["tp"], p.get("ep", 1))
                  for p in pools) \
        * (700 + 300) * 1.4 / 1e6
    src = {"name": "gt", "kind": "gas_turbine", "units": 3, "unit_mw": full_mw * f["supply"] / 3,
           "min_load_frac": f.get("min_load", 0.0)}
    if f["trip"] is not None:
        src.update(trip_at_s=[f["trip"]], trip_repair_s=f["trip_repair"])
    if f["turbine_mtbf_h"] is not None:
        src.update(mtbf_h=f["turbine_mtbf_h"], repair_h=0.01)
    sources = [src]
    if f["battery"]:
        sources.append({"name": "bat", "kind": "battery", "mw": full_mw * 0.3, "mwh": full_mw * 0.002})
    limit = min(full_mw, sum(s.get("units", 1) * s.get("unit_mw", s.get("mw", 0.0)) for s in sources))
    raw["facility"] = {"host_w_per_accel": 300, "gpus_per_node": f["gpus_per_node"], "sources": sources,
                       "tents": [{"name": "t", "it_limit_mw": limit,
                                  "commission_s": f["commission"] if a is None else 0.0,
                                  "pue": {"base": 1.3, "amplitude": 0.1, "peak_hour": 15}}],
                       "manager": {"policy": f["manager"], "interval_s": f["interval"],
                                   "reserve_units": f.get("reserve", 0)}}
    if f["node_mtbf_h"] is not None:
        raw["failures"] = {"node_mtbf_h": f["node_mtbf_h"], "node_repair_h": f["node_repair_h"],
                           "retry_limit": f["retry_limit"]}

