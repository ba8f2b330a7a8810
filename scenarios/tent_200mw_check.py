"""How good is tent_200mw.toml's decomposition? One simulation holding many cells on one power bus
(full detail) against the fleet's representative cells at their shares of the same bus, at 1/64
of the site, with the trip; and the trip's cost in tokens (the same runs without it).

Usage: python scenarios/tent_200mw_check.py [--cells 34] [--duration 900]   (about a minute here)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim.analysis.metrics import summarize  # noqa: E402
from sim.engine.simulation import Simulation  # noqa: E402
from sim.scenario.config import parse, read_toml  # noqa: E402
from sim.studies.fleet import run_fleet, site_share  # noqa: E402


def site(cells: int, duration_s: float, trip: bool) -> dict:
    raw = read_toml(REPO / "scenarios" / "tent_200mw.toml")
    total = raw["fleet"]["cells"][0]["count"]
    raw["workload"]["duration_s"] = duration_s
    src = raw["facility"]["sources"][0]
    if trip:
        src["trip_at_s"] = [duration_s / 3]
        src["trip_repair_s"] = duration_s / 3
    else:
        src.pop("trip_at_s", None)
    raw = site_share(raw, cells / total)  # this part of the site and of its bus
    raw["fleet"]["cells"][0]["count"] = cells
    return raw


def full_detail(raw: dict, cells: int) -> dict:
    """The cells as one pool on the bus: one simulation, one manager over every replica."""
    r = copy.deepcopy(raw)
    r.pop("fleet")
    r["pools"][0]["replicas"] *= cells
    t0 = time.perf_counter()
    s = summarize(Simulation(parse(r, REPO / "scenarios")).run())
    return {"facility_power_mean_w": s["facility_power_mean_w"], "ttft_p99_s": s["ttft_p99_s"],
            "output_tok_per_s": s["output_tokens_completed"] / max(s["arrival_span_s"], 1e-9),
            "power_limit_exceeded_s": s["power_limit_exceeded_s"], "wall_s": time.perf_counter() - t0}


def decomposed(raw: dict, tmp: Path) -> dict:
    """The fleet's way: representative cells at 1/cells of this bus each, the rest inferred."""
    r = copy.deepcopy(raw)
    r["fleet"]["power_bus"] = "shared"
    path = tmp / "tent_200mw_part.toml"
    import tomli_w
    path.write_text(tomli_w.dumps(r))
    t0 = time.perf_counter()
    f = run_fleet(path, quiet=True)
    return {"facility_power_mean_w": f["fleet_facility_power_mean_w"], "ttft_p99_s": f["ttft_p99_s"],
            "output_tok_per_s": f["fleet_output_tok_per_s"], "power_limit_exceeded_s": f["power_limit_exceeded_s"],
            "wall_s": time.perf_counter() - t0}


def main() -> int:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=34, help="cells in the part of the site compared (34: 1/64)")
    ap.add_argument("--duration", type=float, default=900.0)
    args = ap.parse_args()
    out: dict = {"cells": args.cells, "duration_s": args.duration}
    with tempfile.TemporaryDirectory() as tmp:
        for trip in (True, False):
            raw = site(args.cells, args.duration, trip)
            full, dec = full_detail(raw, args.cells), decomposed(raw, Path(tmp))
            err = {k: dec[k] / full[k] - 1 for k in ("facility_power_mean_w", "ttft_p99_s", "output_tok_per_s")}
            out["trip" if trip else "no_trip"] = {"full_detail": full, "decomposed": dec, "rel_err": err}
    t, n = out["trip"], out["no_trip"]
    out["trip_cost_output_tokens"] = {
        "full_detail": (n["full_detail"]["output_tok_per_s"] - t["full_detail"]["output_tok_per_s"]) * args.duration,
        "decomposed": (n["decomposed"]["output_tok_per_s"] - t["decomposed"]["output_tok_per_s"]) * args.duration}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
