"""What a planner asks of scenarios/tent_200mw.toml, answered by simulation (figure tent_planner.png):

1. How many accelerators does the 200 MW supply carry at the SLO, sized on the peak draw, with
   the SM clock locked at 0.8, and oversubscribed (sized on the mean draw, the manager capping
   clocks at peaks)? A cell is simulated at the tent's per-cell load; cells = the supply with one
   turbine down (N) over a cell's facility power.
2. Output tokens lost to one turbine trip with the "shed" manager (new requests turned away while
   the draw is above the supply), without a battery and with batteries of 20 MW / 10 MWh (the
   scenario's) and 40 MW / 40 MWh.
3. $/Mtoken of the tent (fully loaded) against the same accelerators rented at $920M a month's
   rate or powered from the grid.

Usage: python scenarios/tent_planner.py [--duration 900] [--out runs/tent_planner]   (about a minute)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim.scenario.config import read_toml  # noqa: E402
from sim.studies.fleet import site_share  # noqa: E402
from sim.studies.study import Task, execute  # noqa: E402

H200_USD_PER_GPU_HOUR = 3.3  # the catalog's typical rent (what $920M a month buys at: rented_capacity.py)


def base(duration_s: float) -> tuple[dict, int]:
    raw = read_toml(REPO / "scenarios" / "tent_200mw.toml")
    cells = raw.pop("fleet")["cells"][0]["count"]
    raw["workload"]["duration_s"] = duration_s
    return site_share(raw, 1.0 / cells), cells  # one cell, as the fleet simulates it


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=900.0)
    ap.add_argument("--out", default="runs/tent_planner")
    args = ap.parse_args()
    cell, cells = base(args.duration)
    t = cell["facility"]["sources"][0]
    supply_n_w = (t["units"] - 1) * t["unit_mw"] * 1e6 * cells  # the site's supply with one unit down
    t.pop("trip_at_s")
    runs: dict[str, dict] = {}
    notrip = copy.deepcopy(cell)
    runs["plain"] = notrip
    locked = copy.deepcopy(notrip)
    locked["pools"][0]["clock_lock"] = 0.8
    runs["clock_lock_0.8"] = locked
    for mw, mwh in ((0.0, 0.0), (20.0, 10.0), (40.0, 40.0)):  # the trip with the shed manager, site battery
        r = copy.deepcopy(cell)
        r["facility"]["sources"][0]["trip_at_s"] = [args.duration / 3]
        r["facility"]["sources"][0]["trip_repair_s"] = args.duration / 3
        r["facility"]["manager"]["policy"] = "shed"
        if mw == 0:
            r["facility"]["sources"].pop(1)
        else:
            r["facility"]["sources"][1].update(mw=mw / cells, mwh=mwh / cells)
        runs[f"trip_shed_battery_{mw:g} MW, {mwh:g} MWh" if mw else "trip_shed_battery_none"] = r
    grid = copy.deepcopy(notrip)
    grid["facility"]["sources"] = [{"name": "grid", "kind": "grid", "mw": 2 * t["units"] * t["unit_mw"]}]
    grid["cost"]["usd_per_mwh"] = 80.0  # ASSUMED US industrial tariff, 2025-26
    runs["grid"] = grid
    # rented: the same accelerators at the same load in someone else's datacenter. A rented
    # GPU-hour includes the power and the building, so neither the tent nor its turbines (capex,
    # fuel) are added to the rent: the one cost model (sim/analysis/metrics.py energy_and_cost)
    # with the rent as its only price, as scenarios/rented_capacity.py uses it
    rented = copy.deepcopy(notrip)
    rented.pop("facility")
    for pool in rented["pools"]:
        pool.pop("tent", None)
    rented["cost"] = {"usd_per_accel_hour": H200_USD_PER_GPU_HOUR}
    runs["rented"] = rented
    names = list(runs)
    res = execute([Task(runs[n], str(REPO / "scenarios"), 11) for n in names], None, "tent planner", True)
    S = {n: r["summary"] for n, r in zip(names, res)}
    gpus = cell["pools"][0]["replicas"] * cell["pools"][0]["tp"]
    out: dict = {"cells_in_scenario": cells, "accelerators_per_cell": gpus, "supply_n_minus_1_mw": supply_n_w / 1e6}
    # 1. accelerators the N supply carries, at the SLO the cell meets
    size = {}
    for label, run, key in (("peak", "plain", "facility_power_peak_w"), ("peak, clock_lock 0.8", "clock_lock_0.8",
                             "facility_power_peak_w"), ("mean (oversubscribed)", "plain", "facility_power_mean_w"),
                            ("mean, clock_lock 0.8", "clock_lock_0.8", "facility_power_mean_w")):
        n_cells = int(supply_n_w // S[run][key])
        size[label] = {"cells": n_cells, "accelerators": n_cells * gpus, "slo_attainment": S[run].get("slo_attainment"),
                       "ttft_p99_s": S[run]["ttft_p99_s"], "cell_power_w": S[run][key]}
    out["accelerators_on_the_supply"] = size
    # 2. tokens lost to one trip
    base_tok = S["plain"]["output_tokens_completed"]
    out["trip_tokens_lost_site"] = {n.removeprefix("trip_shed_battery_"): (base_tok - S[n]["output_tokens_completed"]) * cells
                                    for n in names if n.startswith("trip_shed")}
    # 3. $/Mtoken
    # one cost model for every row: the summary's steady-state $/Mtoken at the tent's load
    # (scenarios/rented_capacity.py: the same model at the highest load meeting the SLO)
    out["load_req_per_s_per_replica"] = cell["workload"]["rate_per_s"] / cell["pools"][0]["replicas"]
    out["usd_per_mtok_note"] = ("every row at this cell's load; scenarios/rented_capacity.py prices the same rent "
                                "at the highest load meeting its SLO (several times this load), hence lower")
    out["usd_per_mtok"] = {"tent (fully loaded)": S["plain"]["cost_per_mtok_usd"],
                           "grid at 80 USD/MWh (owned accelerators)": S["grid"]["cost_per_mtok_usd"],
                           f"rented at {H200_USD_PER_GPU_HOUR} USD/GPU-hour (920M USD a month's rate)":
                               S["rented"]["cost_per_mtok_usd"]}
    print(json.dumps(out, indent=1))
    od = Path(args.out)
    od.mkdir(parents=True, exist_ok=True)
    (od / "tent_planner.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(out, od / "tent_planner.png")
    print(f"wrote {od / 'tent_planner.png'}")
    return 0


def plot(out: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(17, 4.8), layout="constrained")
    s = out["accelerators_on_the_supply"]
    ax[0].barh(list(s), [v["accelerators"] / 1e3 for v in s.values()], color="tab:blue")
    ax[0].set_xlabel("thousand H200s")
    ax[0].set_title(f"What {out['supply_n_minus_1_mw']:.0f} MW (N) carries at the SLO")
    lost = out["trip_tokens_lost_site"]
    ax[1].bar([k.replace(", ", "\n") for k in lost], [v / 1e9 for v in lost.values()], color="tab:red")
    for k, v in enumerate(lost.values()):
        ax[1].annotate(f"{v / 1e9:.2f}", (k, v / 1e9), ha="center", va="bottom")
    ax[1].set_xlabel("site battery")
    ax[1].set_ylabel("billion output tokens")
    ax[1].set_title("Tokens lost to one turbine trip (shed manager)")
    c = out["usd_per_mtok"]
    ax[2].barh(list(c), list(c.values()), color="tab:green")
    ax[2].set_xlabel("US$ per million output tokens")
    ax[2].set_title("Cost per token")
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
