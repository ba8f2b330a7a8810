"""A fleet's cells, as data: the [fleet] tables, each simulated cell's scenario (its share of the
site's load and, on a shared power bus, of its facility), and the fleet's figures inferred from
the cells' summaries. No executor here: `sim/studies/fleet.py` runs a fleet on one
(run_fleet), and a compare, sweep or plan runs a fleet as one of its tasks (study.run_task).

    [fleet]
    simulate_per_kind = 2          # cells simulated of each kind; the rest are inferred
    [[fleet.cells]]
    name = "h200-70b"
    count = 1100                   # identical cells of this kind
    weight = 1.0                   # share of the traffic per cell (relative)
    set = ["pools.replicas=64"]    # overrides of the base scenario for this kind

Inference: a kind's totals are the mean over its simulated cells times its count (identical
cells with equal weights are statistically identical); a cell's rates are its steady-state
figures (metrics.measurement_window: the drain after its last arrival is not counted); latency
percentiles come from the merged requests of the simulated cells.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.scenario.config import apply_overrides, parse
from sim.schema import REQUIRED, key, read
from sim.errors import ScenarioError

MAX_CELLS = 10_000_000  # per kind: a million cells is a 100 GW site; past this a count is a mistake
POWER_REASONS = ("power",)  # requests shed while the facility is over its supply (reason "power")


def share_facility(fac: dict[str, Any], share: float) -> dict[str, Any]:
    """A [facility] table scaled to one cell's share of a site on one power bus: every source's
    power, energy, ramp and capex and every tent's IT limit and capex times `share`; unit counts,
    trips, failures, PUE and the manager as they are. Cells alike at their shares see what the
    site does when its load is spread evenly: a unit's trip costs each cell its share."""
    out = copy.deepcopy(fac)
    for src in out.get("sources", []):
        for k in ("unit_mw", "mw", "mwh", "ramp_mw_per_s"):
            if k in src:
                src[k] = float(src[k]) * share
    for tent in out.get("tents", []):
        for k in ("it_limit_mw", "capex_usd"):
            if k in tent:
                tent[k] = float(tent[k]) * share
    return out


def share_workload(wl: dict[str, Any], share: float) -> dict[str, Any]:
    """A [workload] table at `share` of its load: rate_per_s, every stage's rate, a diurnal day's
    peak and trough, or a rate profile's scale (a Poisson stream split by independent weighted
    choice is again Poisson at the share of the rate, at every moment)."""
    out = copy.deepcopy(wl)
    if out.get("arrival") == "trace" or "trace" in out:
        raise ScenarioError("workload.arrival", "a fleet splits a rate across its cells; a trace would be replayed "
                            "whole by every cell", "give rate_per_s, [[workload.stages]], diurnal or rate_profile")
    if "clients" in out:
        raise ScenarioError("workload.clients", "a fleet splits an open-loop rate across its cells",
                            "remove clients (closed loop) or run the scenario without [fleet]")
    if isinstance(out.get("stages"), list) and out["stages"]:
        out["stages"] = [dict(st, rate_per_s=float(st["rate_per_s"]) * share) if isinstance(st, dict) else st
                         for st in out["stages"]]
    elif isinstance(out.get("diurnal"), dict):
        d = out["diurnal"]
        for k in ("peak_rate_per_s", "trough_rate_per_s"):
            if k in d:
                d[k] = float(d[k]) * share
    elif isinstance(out.get("rate_profile"), dict):
        out["rate_profile"]["scale"] = float(out["rate_profile"].get("scale", 1.0)) * share
    elif "rate_per_s" in out:
        out["rate_per_s"] = float(out["rate_per_s"]) * share
    else:
        raise ScenarioError("workload.rate_per_s", "a fleet splits a rate across its cells",
                            "give rate_per_s, [[workload.stages]], diurnal or rate_profile")
    return out


def site_share(raw: dict[str, Any], share: float, shared_bus: bool = True) -> dict[str, Any]:
    """A scenario for `share` of a site: its load times share (share_workload) and, on a shared
    power bus, its [facility] at that share (share_facility). What each simulated cell runs."""
    out = copy.deepcopy(raw)
    out["workload"] = share_workload(raw.get("workload", {}), share)
    if shared_bus:
        out["facility"] = share_facility(raw["facility"], share)
    return out


@dataclass(frozen=True, kw_only=True)
class CellKind:
    """[[fleet.cells]]: identical cells of one kind."""

    name: str = key(REQUIRED, "the kind's name", derive=lambda ctx, kw: f"cell{ctx}", doc_default='"cell<k>"')
    count: int = key(1, "identical cells of this kind", positive=True, hi=MAX_CELLS,
                     hint="a site of a million cells is far beyond any built; check the count")
    weight: float = key(1.0, "the share of the traffic each of its cells takes (relative)", positive=True)
    set: list = key([], "overrides of the base scenario for this kind (key.path=value)", kind=list)


def _cells(raw: Any, path: str, ctx: Any, kw: Any) -> tuple[CellKind, ...]:
    if not isinstance(raw, list):
        raise ScenarioError(path, f"must be list, got {raw!r}", "write cells = <list>")
    return tuple(read(CellKind, c, f"{path}[{k}]", k) for k, c in enumerate(raw))


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    """[fleet]: cells of the scenario's router and pools, a global balancer splitting arrivals
    across them by weight."""

    simulate_per_kind: int | None = key(None, "cells simulated of each kind, the rest inferred (power_bus "
                                        "\"none\" or \"split\"; a coupled site simulates every cell)",
                                        positive=True, kind=int, doc_default="2 (every cell when \"shared\")")
    power_bus: str = key("none", "\"shared\": every cell on the site's one [facility], coupled in lockstep "
                         "windows (sim/studies/site.py); \"split\": each simulated cell with its share of "
                         "the facility, the site's figures extrapolated", choices=("none", "shared", "split"))
    window_s: float | None = key(None, "a coupled site's lockstep window (the site's facility acts on the "
                                 "cells' summed draw at each window's end)", positive=True, unit="s", kind=float,
                                 doc_default="the power manager's interval_s")
    bin_s: float = key(0.001, "a coupled site's draw resolution: each cell's IT draw integrated over bins of "
                       "this width (the site's peak, ramps and time over the supply see bin means)",
                       positive=True, unit="s")
    cells: tuple[CellKind, ...] = key(REQUIRED, "[[fleet.cells]]", kind=list, parse=_cells)


def fleet_config(raw: dict[str, Any]) -> FleetConfig:
    """[fleet], validated (naming the field)."""
    fc = read(FleetConfig, raw["fleet"], "fleet")
    if fc.power_bus != "none" and "facility" not in raw:
        raise ScenarioError("fleet.power_bus", f"{fc.power_bus!r} needs the site's [facility]",
                            "declare [facility] or remove power_bus")
    if not fc.cells:
        raise ScenarioError("fleet.cells", "empty", "add at least one [[fleet.cells]]")
    if fc.power_bus == "shared" and fc.simulate_per_kind is not None:
        few = [c for c in fc.cells if c.count > fc.simulate_per_kind]
        if few:
            raise ScenarioError("fleet.simulate_per_kind", f"a coupled site (power_bus = \"shared\") simulates "
                                f"every cell; {fc.simulate_per_kind} of {few[0].name}'s {few[0].count} would leave "
                                "the rest's draw off the bus", "remove simulate_per_kind, or set power_bus = "
                                "\"split\" (cells sampled at their shares; the site's figures extrapolated)")
    if fc.power_bus != "shared" and (fc.window_s is not None or "bin_s" in raw["fleet"]):
        raise ScenarioError("fleet.window_s" if fc.window_s is not None else "fleet.bin_s",
                            "only a coupled site (power_bus = \"shared\") has windows and bins",
                            "remove it, or set power_bus = \"shared\"")
    return fc


def parse_fleet(raw: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    fc = fleet_config(raw)
    kinds = [{"name": c.name, "count": c.count, "weight": c.weight, "set": list(c.set), "bus": fc.power_bus}
             for c in fc.cells]
    per_kind = fc.simulate_per_kind or 2
    if fc.power_bus == "shared":
        per_kind = max(c.count for c in fc.cells)
    return kinds, per_kind




@dataclass(frozen=True)
class Cell:
    """One simulated cell: its scenario, seed, kind and id among all the fleet's cells."""

    raw: dict[str, Any]
    seed: int
    kind: str
    cell_id: int
    scenario: Any = None  # its scenario parsed (shared by the cells of a kind)


def fleet_cells(raw: dict[str, Any], base_dir: Path, seed: int | None = None) -> tuple[list[Cell], list[dict], int]:
    """The simulated cells of a fleet scenario (cell k draws from seed + k: a one-cell fleet is
    exactly the plain scenario), its kinds, and the count of all its cells. Each simulated cell's
    scenario is validated here, naming the field."""
    kinds, per_kind = parse_fleet(raw)
    base = {k: v for k, v in raw.items() if k != "fleet"}
    total_w = sum(k["count"] * k["weight"] for k in kinds)
    seed0 = int(base.get("seed", 0)) if seed is None else seed
    cells, cell_id = [], 0
    for kind in kinds:  # (only the simulated cells are visited: a kind may count billions)
        r = site_share(apply_overrides(copy.deepcopy(base), list(kind["set"])), kind["weight"] / total_w,
                       kind["bus"] == "split")
        sc = parse(r, base_dir)  # fail fast, naming the field
        for j in range(min(per_kind, kind["count"])):
            cells.append(Cell(r, seed0 + cell_id + j, kind["name"], cell_id + j, sc))
        cell_id += kind["count"]
    return cells, kinds, cell_id


def cells_total(raw: dict[str, Any]) -> int:
    """How many cells a fleet scenario has (1 without [fleet]): seeds of replications stride by it."""
    if "fleet" not in raw:
        return 1
    kinds, _ = parse_fleet(raw)
    return sum(k["count"] for k in kinds)


def fleet_summary(path: str, cells: list[Cell], kinds: list[dict], n_cells: int,
                  res: list[dict[str, Any]]) -> dict[str, Any]:
    """The fleet's figures from its simulated cells' results (run_task's, with latencies)."""
    bad = [(c, r["error"]) for c, r in zip(cells, res, strict=False) if "error" in r]
    if bad:
        raise ScenarioError("fleet", f"cell {bad[0][0].cell_id} ({bad[0][0].kind}) failed: {bad[0][1]}")
    out: dict[str, Any] = {"scenario": str(path), "cells_total": n_cells, "cells_simulated": len(cells),
                           "kinds": []}
    lat: dict[str, list[Any]] = {"ttft_s": [], "tpot_s": [], "e2e_s": []}
    tok_s = req_s = cost_h = 0.0
    power = {"facility_power_mean_w": 0.0, "energy_j": 0.0, "facility_power_peak_w": 0.0, "battery_used_j": 0.0}
    over: dict[str, list[Any]] = {"power_limit_exceeded_s": [], "ramp_limit_exceeded_s": []}
    lost = 0.0
    slo: list[tuple[float, int]] = []  # (attainment, cells) per kind
    unpriced = False
    for kind in kinds:
        runs = [r for c, r in zip(cells, res, strict=False) if c.kind == kind["name"]]
        s = [r["summary"] for r in runs]
        # each cell's steady-state rates (its drain after the last arrival is not counted)
        tput = float(np.mean([x["throughput_output_tok_per_s"] for x in s]))
        rps = float(np.mean([x["throughput_req_per_s"] for x in s]))
        hours = float(np.mean([x["sim_time_s"] for x in s])) / 3600.0
        c_h = float(np.mean([x["cost_usd"] for x in s])) / hours if hours > 0 else 0.0
        unpriced |= any(x.get("run_cost_per_mtok_usd") is None and x.get("output_tokens_completed") for x in s)
        tok_s += tput * kind["count"]
        req_s += rps * kind["count"]
        cost_h += c_h * kind["count"]
        for r in runs:
            for k in lat:
                lat[k].extend(r["latencies"][k])
        for k in power:  # the sum of the kind's cells (peaks: cells alike peak together, an upper bound)
            if all(x.get(k) is not None for x in s):
                power[k] += float(np.mean([x[k] for x in s])) * kind["count"]
        for k in over:
            over[k] += [x[k] for x in s if x.get(k) is not None]
        if all(x.get("slo_attainment") is not None for x in s):
            slo.append((float(np.mean([x["slo_attainment"] for x in s])), kind["count"]))
        lost += float(np.mean([sum(v for why, v in (x.get("reasons") or {}).items() if why in POWER_REASONS)
                               for x in s])) * kind["count"]
        out["kinds"].append({"name": kind["name"], "count": kind["count"], "simulated": len(runs),
                             "per_cell_output_tok_per_s": tput, "per_cell_req_per_s": rps,
                             "per_cell_ttft_p99_s": float(np.mean([x["ttft_p99_s"] for x in s])),
                             "per_cell_usd_per_hour": c_h,
                             "requests_simulated": int(sum(x["requests_total"] for x in s)),
                             "completed_simulated": int(sum(x["requests_completed"] for x in s)),
                             "engine": ",".join(sorted({x["engine"] for x in s}))})
    for k, v in lat.items():
        a = np.asarray(v, dtype=float)
        a = a[np.isfinite(a)]
        out[f"{k[:-2]}_p50_s"] = float(np.percentile(a, 50)) if a.size else None
        out[f"{k[:-2]}_p99_s"] = float(np.percentile(a, 99)) if a.size else None
    out["engine"] = ",".join(sorted({k["engine"] for k in out["kinds"]}))  # which engine ran the cells
    out["fleet_output_tok_per_s"] = tok_s
    out["fleet_req_per_s"] = req_s
    out["fleet_output_tokens_per_day"] = tok_s * 86400
    out["fleet_usd_per_hour"] = cost_h
    out["fleet_usd_per_mtok"] = cost_h / (tok_s * 3600 / 1e6) if tok_s and not unpriced else None
    if slo:  # requests meeting the SLO, weighted by cells (cells of a kind serve alike)
        out["fleet_slo_attainment"] = sum(a * n for a, n in slo) / sum(n for _, n in slo)
    if any(k["bus"] == "split" for k in kinds) or power["energy_j"]:
        out.update({f"fleet_{k}": v for k, v in power.items()})
        out.update({k: (float(np.max(v)) if v else 0.0) for k, v in over.items()})  # the worst simulated cell
        out["fleet_requests_lost_to_power"] = lost  # shed while over the supply (inferred over the cells)
        out["fleet_tokens_per_kwh"] = (tok_s * 3600 / (power["facility_power_mean_w"] / 1e3)
                                       if power["facility_power_mean_w"] else None)
    stab = [r["summary"].get("stable") for r in res]
    out["stable"] = None if any(x is None for x in stab) else all(stab)
    out["instability"] = next((r["summary"].get("instability") for r in res
                               if r["summary"].get("stable") is False), None)
    out["calibration_status"] = {k: v for r in res for k, v in (r["summary"].get("calibration_status") or {}).items()}
    out["power_bus"] = kinds[0]["bus"] if kinds else "none"
    out["extrapolated"] = ([k for k in out if k.startswith("fleet_") or k in ("power_limit_exceeded_s",
                                                                                "ramp_limit_exceeded_s")]
                           if len(cells) < n_cells else [])
    out["inference"] = ("each kind's totals = mean over its simulated cells x its count; each cell's steady-state "
                        "rates (the drain after its last arrival not counted); percentiles from the merged "
                        "requests of the simulated cells")
    return out


# A fleet's figures under the names a single run's summary uses, so compare, sweep and plan
# read both alike (the fleet's totals: the whole site's rates and cost)
STUDY_ALIASES = {"throughput_output_tok_per_s": "fleet_output_tok_per_s", "throughput_req_per_s": "fleet_req_per_s",
                 "cost_per_mtok_usd": "fleet_usd_per_mtok", "slo_attainment": "fleet_slo_attainment",
                 "facility_power_mean_w": "fleet_facility_power_mean_w",
                 "facility_power_peak_w": "fleet_facility_power_peak_w", "energy_j": "fleet_energy_j"}


def as_study_summary(rep: dict[str, Any]) -> dict[str, Any]:
    """The fleet's report with the single-run names added (STUDY_ALIASES)."""
    out = dict(rep)
    for k, v in STUDY_ALIASES.items():
        if rep.get(v) is not None:
            out[k] = rep[v]
    return out
