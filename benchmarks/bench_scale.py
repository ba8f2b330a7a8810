"""Scale benchmarks (not tests): simulated requests and seconds per wall-second, memory per
request, and how wall time grows with requests and replicas. One core, as the figures in the
README were taken.

Usage:
  python benchmarks/bench_scale.py quickstart --requests 1000000
  python benchmarks/bench_scale.py fleet70b [--replicas 100] [--hours 1] [--load 0.8]
  python benchmarks/bench_scale.py azure [--speedup 100] [--replicas 64]
  python benchmarks/bench_scale.py memory [--requests 100000]
  python benchmarks/bench_scale.py scaling
  python benchmarks/bench_scale.py disagg [--replicas 32] [--duration 600]   (scale factor k)
  python benchmarks/bench_scale.py day        (scenarios/day_fleet.toml: 24 h, autoscaled)
Each prints one JSON object, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path


from sim.scenario.config import load, parse, read_toml
from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation

REPO = Path(__file__).resolve().parents[1]
MACHINE = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}


def timed(sc) -> tuple[dict, float]:
    """Summary and wall time of a run: workload generation, simulation and summary."""
    t0 = time.perf_counter()
    s = summarize(Simulation(sc).run())
    return s, time.perf_counter() - t0


def quickstart(n: int) -> dict:
    sc = load(REPO / "scenarios" / "quickstart.toml", [f"workload.num_requests={n}", "run.timeseries=false"])
    s, wall = timed(sc)
    return {"benchmark": f"quickstart x {n} requests", "wall_s": wall, "sim_requests_per_wall_s": n / wall,
            "sim_seconds_per_wall_s": s["sim_time_s"] / wall, "completed": s["requests_completed"],
            "engine": s["engine"]}


def fleet70b(replicas: int, hours: float, load_frac: float) -> dict:
    base = {"seed": 1, "workload": {"arrival": "poisson", "rate_per_s": 1.0, "duration_s": 600.0,
                                    "prompt_tokens": {"dist": "lognormal", "mean": 1024, "cv": 1.0, "max": 8192},
                                    "output_tokens": {"dist": "lognormal", "mean": 256, "cv": 0.8, "max": 2048}},
            "pools": [{"hardware": "h200", "model": "llama-3.1-70b", "tp": 8, "replicas": 1,
                       "scheduler": {"max_batch_size": 256}}],
            "router": {"policy": "least_loaded"}, "run": {"timeseries": False}}
    # saturation throughput of one replica (heavily overloaded short run), then 80% of it per replica
    sat = json.loads(json.dumps(base))
    sat["workload"].update(rate_per_s=200.0, duration_s=60.0)
    s_sat, _ = timed(parse(sat))
    cap = s_sat["throughput_req_per_s"]
    run = json.loads(json.dumps(base))
    run["pools"][0]["replicas"] = replicas
    run["workload"].update(rate_per_s=load_frac * cap * replicas, duration_s=hours * 3600.0)
    s, wall = timed(parse(run))
    return {"benchmark": f"{replicas} x Llama-3.1-70B on 8xH200 at {load_frac:.0%} load, {hours:g} h",
            "replica_capacity_req_per_s": cap, "rate_per_s": run["workload"]["rate_per_s"],
            "requests": s["requests_total"], "wall_s": wall, "sim_requests_per_wall_s": s["requests_total"] / wall,
            "sim_seconds_per_wall_s": s["sim_time_s"] / wall, "ttft_p99_s": s["ttft_p99_s"], "engine": s["engine"]}


def azure(speedup: float, replicas: int) -> dict:
    sc = parse({"seed": 1, "workload": {"arrival": "trace", "trace_format": "azure", "time_scale": speedup,
                                        "trace": "data/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"},
                "pools": [{"hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": replicas}],
                "router": {"policy": "least_loaded"}, "run": {"timeseries": False}}, REPO)
    s, wall = timed(sc)
    return {"benchmark": f"Azure 2023 conversation trace at {speedup:g}x on {replicas} x H100 (Llama-3.1-8B)",
            "requests": s["requests_total"], "wall_s": wall, "sim_requests_per_wall_s": s["requests_total"] / wall,
            "sim_seconds_per_wall_s": s["sim_time_s"] / wall, "ttft_p99_s": s["ttft_p99_s"], "engine": s["engine"]}


def memory(n: int) -> dict:
    """Peak memory of a run per simulated request: traced allocations (tracemalloc, which numpy
    reports to) and, as a cross-check that sees every allocation, the growth of the process's
    peak resident set size over a small warm-up run."""
    import resource

    warm = load(REPO / "scenarios" / "quickstart.toml", ["workload.num_requests=1000", "run.timeseries=false"])
    Simulation(warm).run()  # imports and the compiled engine's code are loaded before measuring
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sc = load(REPO / "scenarios" / "quickstart.toml", [f"workload.num_requests={n}", "run.timeseries=false"])
    tracemalloc.start()
    res = Simulation(sc).run()
    summarize(res)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"benchmark": f"peak memory, quickstart x {n} (run + summary)", "engine": res.engine,
            "peak_traced_bytes": peak, "bytes_per_request": peak / n,
            "peak_rss_growth_bytes_per_request": (rss1 - rss0) / n}


def scaling() -> dict:
    """Wall time against requests (quickstart, same rate) and against replicas (least_loaded, which
    reads every replica's load per arrival; rate and requests in proportion to replicas)."""
    out: dict = {"requests": [], "replicas": []}
    quickstart(1000)  # load the compiled engine once, so that no point carries it
    for n in (250_000, 500_000, 1_000_000, 2_000_000):
        r = quickstart(n)
        out["requests"].append({"requests": n, "wall_s": r["wall_s"], "us_per_request": 1e6 * r["wall_s"] / n})
    for reps in (4, 16, 64, 256):
        n = 10_000 * reps
        sc = load(REPO / "scenarios" / "quickstart.toml", [f"pools.replicas={reps}", f"workload.rate_per_s={2.5 * reps}",
                                                          f"workload.num_requests={n}", 'router.policy="least_loaded"',
                                                          "run.timeseries=false"])
        s, wall = timed(sc)
        out["replicas"].append({"replicas": reps, "requests": n, "wall_s": wall, "us_per_request": 1e6 * wall / n,
                                "engine": s["engine"]})
    return {"benchmark": "wall time against requests and against replicas", **out}


def tent_scaled(replicas: int, duration_s: float) -> dict:
    """scenarios/tent.toml (16 replicas of Llama-3.1-70B on 4xH200, microturbines, cap_priority,
    node failures, client timeouts) scaled to `replicas`: rate, turbine units and the tent's IT
    limit in proportion; node MTBF shortened to 1 h so that failures happen within the run."""
    raw = read_toml(REPO / "scenarios" / "tent.toml")
    k = replicas / sum(p["replicas"] for p in raw["pools"])
    for pl in raw["pools"]:
        pl["replicas"] = max(1, round(pl["replicas"] * k))
    raw["workload"].update(rate_per_s=raw["workload"]["rate_per_s"] * k, duration_s=duration_s)
    raw["facility"]["sources"][0]["units"] = max(2, round(raw["facility"]["sources"][0]["units"] * k))
    raw["facility"]["tents"][0]["it_limit_mw"] *= k
    raw["failures"]["node_mtbf_h"] = 1.0  # about one node failure every 30 s across 125 nodes
    raw.setdefault("run", {})["timeseries"] = False
    s, wall = timed(parse(raw, REPO / "scenarios"))
    return {"benchmark": f"tent.toml scaled to {sum(p['replicas'] for p in raw['pools'])} replicas, "
                         f"{duration_s:g} s simulated", "requests": s["requests_total"], "wall_s": wall,
            "sim_requests_per_wall_s": s["requests_total"] / wall, "node_failures": s["node_failures"],
            "failed": s["requests_failed"], "engine": s["engine"]}


def validation_scaled(name: str, k: int, duration_s: float) -> dict:
    """A measured vLLM experiment (prefix caching, client timeouts, load stages) with k times its
    replicas and arrival rates: the prefix-caching workload at fleet scale."""
    raw = read_toml(REPO / "scenarios" / "validation" / f"{name}.toml")
    for pl in raw["pools"]:
        pl["replicas"] = pl.get("replicas", 1) * k
    for st in raw["workload"]["stages"]:
        st.update(rate_per_s=st["rate_per_s"] * k, duration_s=duration_s)
    raw.setdefault("run", {})["timeseries"] = False
    s, wall = timed(parse(raw, REPO / "scenarios" / "validation"))
    return {"benchmark": f"{name} x {k} (replicas and rates), stages of {duration_s:g} s", "requests": s["requests_total"],
            "wall_s": wall, "sim_requests_per_wall_s": s["requests_total"] / wall, "engine": s["engine"],
            "prefix_caching": raw["pools"][0]["scheduler"].get("prefix_caching", False)}


def disagg_scaled(k: int, duration_s: float) -> dict:
    """scenarios/disagg.toml (2 prefill + 4 decode replicas) with k times the replicas and rate."""
    raw = read_toml(REPO / "scenarios" / "disagg.toml")
    for pl in raw["pools"]:
        pl["replicas"] *= k
    raw["workload"].update(rate_per_s=raw["workload"]["rate_per_s"] * k, duration_s=duration_s)
    s, wall = timed(parse(raw, REPO / "scenarios"))
    n = s["requests_total"]
    return {"benchmark": f"disagg.toml x {k} ({6 * k} replicas, {n} requests)", "wall_s": wall,
            "sim_requests_per_wall_s": n / wall, "completed": s["requests_completed"], "engine": s["engine"]}


def day() -> dict:
    """scenarios/day_fleet.toml as it is: 24 simulated hours of an autoscaled fleet."""
    s, wall = timed(load(REPO / "scenarios" / "day_fleet.toml"))
    n = s["requests_total"]
    return {"benchmark": f"day_fleet.toml ({n} requests, {s['sim_time_s'] / 3600:.1f} simulated h)",
            "wall_s": wall, "sim_requests_per_wall_s": n / wall, "completed": s["requests_completed"],
            "replica_hours": s["replica_hours"], "engine": s["engine"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["quickstart", "fleet70b", "azure", "memory", "scaling", "tent", "validation",
                                            "disagg", "day"])
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--replicas", type=int, default=None)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--speedup", type=float, default=100.0)
    a = ap.parse_args()
    if a.which == "quickstart":
        r = quickstart(a.requests or 1_000_000)
    elif a.which == "fleet70b":
        r = fleet70b(a.replicas or 100, a.hours, a.load)
    elif a.which == "azure":
        r = azure(a.speedup, a.replicas or 64)
    elif a.which == "memory":
        r = memory(a.requests or 1_000_000)
    elif a.which == "tent":
        r = tent_scaled(a.replicas or 1000, a.duration or 240.0)  # tent.toml's own duration
    elif a.which == "validation":
        r = validation_scaled("19-llama-3-1-8b-tp1-roleplay-1", a.replicas or 200, a.duration or 600.0)
    elif a.which == "disagg":
        r = disagg_scaled(a.replicas or 32, a.duration or 600.0)
    elif a.which == "day":
        r = day()
    else:
        r = scaling()
    r["machine"] = MACHINE
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    from sim.cli import exit_now

    exit_now(main())  # as the dcsim command ends: no interpreter teardown (about 0.25 s)
