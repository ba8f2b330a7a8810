"""Simulated requests per wall-second for the quickstart scenario scaled to N requests.

Usage: python benchmarks/bench_quickstart.py [--requests 100000] [--repeat 3]
       [--closed CLIENTS [--think S]]
--closed runs it with closed-loop clients instead of its Poisson arrivals ([workload] arrival =
"closed", concurrency = CLIENTS, think_time_s = S, exponential; 0: none), and the open-loop
quickstart of the same size in the same process, for the ratio. Prints one JSON object with the
machine it ran on. Not a test: run it by hand (`taskset -c 0` for one core) and record the figure
(with the machine) in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


import tomllib

from sim.scenario.config import load, parse
from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-timeseries", action="store_true")
    ap.add_argument("--closed", type=int, default=0, help="closed-loop clients (0: the open-loop quickstart)")
    ap.add_argument("--think", type=float, default=0.0, help="their mean think time, s (exponential)")
    args = ap.parse_args()
    sets = [f"workload.num_requests={args.requests}"]
    if args.no_timeseries:
        sets.append("run.timeseries=false")
    sc = load(REPO / "scenarios" / "quickstart.toml", sets)
    out: dict = {"benchmark": "quickstart scaled", "requests": args.requests, "timeseries": not args.no_timeseries}
    if args.closed:
        raw = tomllib.loads((REPO / "scenarios" / "quickstart.toml").read_text())
        wl = raw["workload"]
        for k in ("rate_per_s",):
            wl.pop(k)
        wl.update(arrival="closed", concurrency=args.closed, num_requests=args.requests)
        if args.think > 0:
            wl["think_time_s"] = {"dist": "exponential", "mean": args.think}
        raw.setdefault("run", {})["timeseries"] = not args.no_timeseries
        out["open_loop"] = _measure(sc, args.repeat)
        out.update(closed_loop_clients=args.closed, think_time_mean_s=args.think)
        sc = parse(raw, base_dir=REPO / "scenarios")
    out.update(_measure(sc, args.repeat))
    print(json.dumps(dict(out, machine={"platform": platform.platform(),
                                        "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "affinity": len(os.sched_getaffinity(0))}), indent=2))
    return 0


def _measure(sc, repeat: int) -> dict:
    """The best of `repeat` runs of scenario sc: wall time and simulated requests per second."""
    walls = []
    summary: dict = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = Simulation(sc).run()
        walls.append(time.perf_counter() - t0)
        summary = summarize(res)
    best = min(walls)
    n = summary["requests_total"]
    return {"wall_s_best": round(best, 3), "wall_s_all": [round(w, 3) for w in walls],
            "sim_requests_per_wall_s": round(n / best),
            "sim_seconds_per_wall_s": round(summary["sim_time_s"] / best, 1),
            "throughput_req_per_s": round(summary["throughput_req_per_s"], 2),
            "e2e_mean_s": round(summary["e2e_mean_s"], 4)}


if __name__ == "__main__":
    sys.exit(main())
