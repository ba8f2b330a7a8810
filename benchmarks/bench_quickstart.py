"""Simulated requests per wall-second for the quickstart scenario scaled to N requests.

Usage: python benchmarks/bench_quickstart.py [--requests 100000] [--repeat 3]
Prints one JSON object with the machine it ran on. Not a test: run it by hand and record the
figure (with the machine) in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


from sim.scenario.config import load
from sim.analysis.metrics import summarize
from sim.engine.simulation import Simulation

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-timeseries", action="store_true")
    args = ap.parse_args()
    sets = [f"workload.num_requests={args.requests}"]
    if args.no_timeseries:
        sets.append("run.timeseries=false")
    sc = load(REPO / "scenarios" / "quickstart.toml", sets)
    walls = []
    summary = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = Simulation(sc).run()
        walls.append(time.perf_counter() - t0)
        summary = summarize(res)
    best = min(walls)
    print(json.dumps({
        "benchmark": "quickstart scaled", "requests": args.requests, "timeseries": not args.no_timeseries,
        "wall_s_best": round(best, 3), "wall_s_all": [round(w, 3) for w in walls],
        "sim_requests_per_wall_s": round(args.requests / best),
        "sim_seconds_per_wall_s": round(summary["sim_time_s"] / best, 1),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
