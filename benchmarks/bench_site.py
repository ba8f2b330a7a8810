"""A coupled site against the same site as one monolithic simulation, and the old sampled way.

The site is scenarios/tent_200mw.toml at `cells` of its 2,200 cells (its load and its facility at
that share), with the turbine trip at a third of the run: as one simulation holding every
replica on one bus (the monolith: one router, one manager, one ledger), as a coupled fleet
(power_bus = "shared": every cell its own simulation, the site's facility on their summed
draw) and as the sampled fleet (power_bus = "split": 2 cells at their shares, extrapolated).

Usage: python benchmarks/bench_site.py --scaling --cells 16 [--executor dask]   (1 vs 2 workers)
       python benchmarks/bench_site.py [--cells 24,34] [--duration 900] [--workers 1] [--noise]
                                        [--no-battery]
                                        [--no-split] [--out benchmarks/results/site.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim.analysis.metrics import summarize  # noqa: E402
from sim.engine.simulation import Simulation  # noqa: E402
from sim.scenario.config import parse, read_toml  # noqa: E402
from sim.studies.cells import site_share  # noqa: E402
from sim.studies.fleet import run_fleet  # noqa: E402

KEYS = {"facility_power_peak_w": "fleet_facility_power_peak_w", "facility_power_mean_w": "fleet_facility_power_mean_w",
        "battery_used_j": "fleet_battery_used_j", "ramp_limit_exceeded_s": "ramp_limit_exceeded_s",
        "power_limit_exceeded_s": "power_limit_exceeded_s", "slo_attainment": "fleet_slo_attainment"}
BIN_S: float | None = None  # (an experiment: the coupled runs at another bin_s)
TOL = {"facility_power_peak_w": 0.02, "facility_power_mean_w": 0.01, "battery_used_j": 0.10,
       "ramp_limit_exceeded_s": 0.20, "slo_attainment": 0.005}  # slo: points (absolute)


def site(cells: int, duration_s: float, trip: bool = True, bus: str = "shared", battery: bool = True) -> dict:
    """tent_200mw.toml at `cells` of its cells: load and facility at that share (battery=False:
    without its battery, so the turbines' ramp shows as time short of power)."""
    raw = read_toml(REPO / "scenarios" / "tent_200mw.toml")
    if not battery:
        raw["facility"]["sources"] = [s for s in raw["facility"]["sources"] if s["kind"] != "battery"]
    total = raw["fleet"]["cells"][0]["count"]
    raw["workload"]["duration_s"] = duration_s
    src = raw["facility"]["sources"][0]
    if trip:
        src["trip_at_s"] = [duration_s / 3]
        src["trip_repair_s"] = duration_s / 3
    else:
        src.pop("trip_at_s", None)
    raw = site_share(raw, cells / total)
    raw["fleet"]["cells"][0]["count"] = cells
    raw["fleet"]["power_bus"] = bus
    if bus == "shared" and BIN_S:
        raw["fleet"]["bin_s"] = BIN_S
    raw["fleet"].pop("simulate_per_kind", None)
    if bus == "split":
        raw["fleet"]["simulate_per_kind"] = 2
    return raw


def monolith(raw: dict, cells: int, seed: int | None = None) -> dict:
    """Every cell's replicas as one pool on the bus: one simulation, router, manager, ledger."""
    r = copy.deepcopy(raw)
    r.pop("fleet")
    if seed is not None:
        r["seed"] = seed
    r["pools"][0]["replicas"] *= cells
    t0 = time.perf_counter()
    s = summarize(Simulation(parse(r, REPO / "scenarios")).run())
    out = {k: s.get(k) for k in KEYS}
    out["wall_s"] = time.perf_counter() - t0
    return out


def fleet(raw: dict, tmp: Path, workers: int) -> dict:
    import tomli_w

    path = tmp / f"site_{raw['fleet']['power_bus']}.toml"
    path.write_text(tomli_w.dumps(raw))
    t0 = time.perf_counter()
    f = run_fleet(path, workers=workers)
    out = {k: f.get(v) for k, v in KEYS.items()}
    out["wall_s"] = time.perf_counter() - t0
    return out


def scaling(cells: int, duration_s: float, tmp: Path, executor: str = "local", repeat: int = 1) -> dict:
    """The coupled site on 1 and 2 workers: wall time, parallel efficiency, and the serial
    fraction per window (the site's work and the exchange, measured on 1 worker), extrapolated
    to 1,000 cores by Amdahl's law (an upper bound on the speed-up: the exchange grows with the
    workers)."""
    import tomli_w

    path = tmp / "site_scaling.toml"
    path.write_text(tomli_w.dumps(site(cells, duration_s)))
    import statistics

    out: dict = {"cells": cells, "duration_s": duration_s, "executor": executor, "repeat": repeat}
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(repeat):  # interleaved: the machine's drift hits both alike
        for w in (1, 2):
            t0 = time.perf_counter()
            f = run_fleet(path, workers=w, executor=executor)
            runs[w].append({"wall_s": time.perf_counter() - t0, **f["wall_breakdown"]})
    for w in (1, 2):  # the median of each figure
        out[f"workers_{w}"] = {k: statistics.median(r[k] for r in runs[w]) for k in runs[w][0]}
    w1, w2 = out["workers_1"], out["workers_2"]
    out["parallel_efficiency"] = w1["wall_windows_s"] / (2 * w2["wall_windows_s"])
    out["parallel_efficiency_runs"] = [a["wall_windows_s"] / (2 * b["wall_windows_s"])
                                       for a, b in zip(runs[1], runs[2], strict=True)]
    # the machine's own ceiling: the two halves' windows, uncoupled (no site, no decisions), each
    # alone and then both at once in two processes (two cores sharing memory and caches)
    import subprocess

    cmd = [sys.executable, __file__, "--_half", "K", "--cells", str(cells), "--duration", str(duration_s)]
    alone = [float(subprocess.run([*cmd[:3], str(k), *cmd[4:]], capture_output=True, text=True,
                                  check=True).stdout) for k in (0, 1)]
    procs = [subprocess.Popen([*cmd[:3], str(k), *cmd[4:]], stdout=subprocess.PIPE, text=True) for k in (0, 1)]
    both = [float(p.communicate()[0]) for p in procs]
    out["uncoupled_halves"] = {"alone_s": alone, "together_s": both,
                               "efficiency": sum(alone) / (2 * max(both))}
    serial = w1["wall_site_s"] / w1["wall_windows_s"]  # per window: the site's work, the cells waited for
    out["serial_fraction_per_window"] = serial
    out["windows"] = w1["windows"]
    out["site_s_per_window"] = w1["wall_site_s"] / w1["windows"]
    out["amdahl_speedup_1000_cores"] = 1 / (serial + (1 - serial) / 1000)
    return out


def _half(k: int, cells: int, duration_s: float) -> float:
    """Seconds for half k of the site's cells to run every window, uncoupled (after building)."""
    from sim.studies.blocks import CellBlock, CellSpec
    from sim.studies.cells import fleet_cells
    from sim.studies.coupled import blocks_of

    cs, _, _ = fleet_cells(site(cells, duration_s), REPO / "scenarios")
    specs = [CellSpec(c.cell_id, c.kind, c.raw, c.seed, str(REPO / "scenarios")) for c in cs]
    b = CellBlock(blocks_of(specs, 2)[k], 0.001, False, None)
    t0 = time.perf_counter()
    for i in range(int(duration_s / 5) + 8):
        b.step(5.0 * i, None)
    return time.perf_counter() - t0


def errors(got: dict, ref: dict) -> dict:
    e = {}
    for k in KEYS:
        a, b = got.get(k), ref.get(k)
        if a is None or b is None:
            e[k] = None
        elif k == "slo_attainment":
            e[k] = a - b
        else:
            e[k] = (a / b - 1) if b else (0.0 if a == 0 else float("inf"))
    return e


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="24,34")
    ap.add_argument("--duration", type=float, default=900.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-split", action="store_true", help="skip the sampled (split) fleet")
    ap.add_argument("--_half", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--scaling", action="store_true", help="instead: 1 vs 2 workers on the first --cells")
    ap.add_argument("--executor", default="local", help="for --scaling: local or dask")
    ap.add_argument("--repeat", type=int, default=1, help="for --scaling: runs of each, medians reported")
    ap.add_argument("--no-battery", action="store_true", help="the site without its battery (ramp shortfalls)")
    ap.add_argument("--noise", action="store_true", help="also the monolith on another seed (the noise floor)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args._half is not None:  # (scaling's helper: one half of the cells' windows, uncoupled; prints seconds)
        print(_half(args._half, int(args.cells.split(",")[0]), args.duration))
        return 0
    if args.scaling:
        with tempfile.TemporaryDirectory() as tmp:
            sc = {"machine": platform.processor() or platform.machine(), "when": time.strftime("%Y-%m-%d %H:%M"),
                  **scaling(int(args.cells.split(",")[0]), args.duration, Path(tmp), args.executor, args.repeat)}
        print(json.dumps(sc, indent=1))
        if args.out:
            args.out.write_text(json.dumps(sc, indent=1) + "\n")
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.cells.split(",")]:
            raw = site(n, args.duration, battery=not args.no_battery)
            mono = monolith(raw, n)
            coup = fleet(raw, Path(tmp), args.workers)
            row = {"cells": n, "duration_s": args.duration, "battery": not args.no_battery, "monolith": mono,
                   "coupled": coup, "coupled_err": errors(coup, mono)}
            if args.noise:  # the monolith against itself on another seed: the comparison's noise floor
                row["monolith_other_seed_err"] = errors(monolith(raw, n, int(raw.get("seed", 0)) + 1000), mono)
            if not args.no_split:
                split = fleet(site(n, args.duration, bus="split", battery=not args.no_battery), Path(tmp),
                              args.workers)
                row["split"], row["split_err"] = split, errors(split, mono)
            row["coupled_within"] = {k: (v is not None and abs(v) <= TOL[k]) for k, v in row["coupled_err"].items()
                                     if k in TOL}
            rows.append(row)
            print(json.dumps(row, indent=1), flush=True)
    res = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
           "when": time.strftime("%Y-%m-%d %H:%M"), "tolerances": TOL, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
