"""Fleets of cells, for fleets no single process can hold.

A cell is the scenario's router and pools (with per-kind overrides); a stateless global balancer
splits arrivals across cells by weight, as large platforms do with weighted DNS or anycast.
Cells do not interact, so each runs as its own simulation (one task on the executor), and a
Poisson or gamma stream split by independent weighted choice is again such a stream at the
cell's share of the rate: each cell draws its own arrivals at that rate from its own seed
(cell k uses seed + k; a one-cell fleet is exactly the plain scenario).

    [fleet]
    simulate_per_kind = 2          # cells simulated of each kind; the rest are inferred
    [[fleet.cells]]
    name = "h200-70b"
    count = 1100                   # identical cells of this kind
    weight = 1.0                   # share of the traffic per cell (relative)
    set = ["pools.replicas=64"]    # overrides of the base scenario for this kind

The simulated cells' per-request tables merge into one (`requests.parquet` in the output
folder, with `cell` and `kind` columns; request ids are per cell).

Inference: a kind's totals are the mean over its simulated cells times its count (identical
cells with equal weights are statistically identical); a cell's rate is what it completed over
its arrival window; latency percentiles come from the merged requests of the simulated cells.
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
from sim.studies.study import Task, execute

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


def site_share(raw: dict[str, Any], share: float, shared_bus: bool = True) -> dict[str, Any]:
    """A scenario for `share` of a site: its arrival rate times share and, on a shared power bus,
    its [facility] at that share (share_facility). What run_fleet gives each simulated cell."""
    out = copy.deepcopy(raw)
    out["workload"]["rate_per_s"] = float(raw["workload"]["rate_per_s"]) * share
    if shared_bus:
        out["facility"] = share_facility(raw["facility"], share)
    return out


@dataclass(frozen=True, kw_only=True)
class CellKind:
    """[[fleet.cells]]: identical cells of one kind."""

    name: str = key(REQUIRED, "the kind's name", derive=lambda ctx, kw: f"cell{ctx}", doc_default='"cell<k>"')
    count: int = key(1, "identical cells of this kind", positive=True)
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

    simulate_per_kind: int = key(2, "cells simulated of each kind; the rest are inferred", positive=True)
    power_bus: str = key("none", "\"shared\": the cells share the site's [facility] at their share",
                         choices=("none", "shared"))
    cells: tuple[CellKind, ...] = key(REQUIRED, "[[fleet.cells]]", kind=list, parse=_cells)


def parse_fleet(raw: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    fc = read(FleetConfig, raw["fleet"], "fleet")
    if fc.power_bus == "shared" and "facility" not in raw:
        raise ScenarioError("fleet.power_bus", "\"shared\" needs the site's [facility]",
                            "declare [facility] or remove it")
    if not fc.cells:
        raise ScenarioError("fleet.cells", "empty", "add at least one [[fleet.cells]]")
    kinds = [{"name": c.name, "count": c.count, "weight": c.weight, "set": list(c.set), "bus": fc.power_bus}
             for c in fc.cells]
    return kinds, fc.simulate_per_kind


def run_fleet(path: str | Path, sets: list[str] | None = None, workers: int | None = None,
              quiet: bool = True, executor: str = "local", out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run a fleet's representative cells on the executor and infer the fleet; with `out_dir`,
    also write the merged per-request table of the simulated cells there (requests.parquet)."""
    from sim.scenario.config import read_toml

    p = Path(path)
    raw = apply_overrides(read_toml(p), list(sets or []))
    kinds, per_kind = parse_fleet(raw)
    base = {k: v for k, v in raw.items() if k != "fleet"}
    if "rate_per_s" not in base.get("workload", {}):
        raise ScenarioError("workload.rate_per_s", "a fleet splits a rate across cells", "give rate_per_s")
    total_w = sum(k["count"] * k["weight"] for k in kinds)
    seed0 = int(base.get("seed", 0))
    tasks, meta, cell_id = [], [], 0
    for kind in kinds:
        for j in range(kind["count"]):
            if j < per_kind:
                r = site_share(apply_overrides(copy.deepcopy(base), list(kind["set"])), kind["weight"] / total_w,
                               kind["bus"] == "shared")
                parse(r, p.parent)  # fail fast, naming the field
                tasks.append(Task(r, str(p.parent), seed0 + cell_id, keep_latencies=True,
                                  keep_requests=out_dir is not None))
                meta.append((kind["name"], cell_id))
            cell_id += 1
    res = execute(tasks, workers, "fleet", quiet, executor)
    bad = [(m, r["error"]) for m, r in zip(meta, res, strict=False) if "error" in r]
    if bad:
        raise ScenarioError("fleet", f"cell {bad[0][0][1]} ({bad[0][0][0]}) failed: {bad[0][1]}")
    out: dict[str, Any] = {"scenario": str(path), "cells_total": cell_id, "cells_simulated": len(tasks),
                           "kinds": []}
    lat: dict[str, list[Any]] = {"ttft_s": [], "tpot_s": [], "e2e_s": []}
    tok_s = req_s = 0.0
    cost_h = 0.0
    power = {"facility_power_mean_w": 0.0, "energy_j": 0.0, "facility_power_peak_w": 0.0}
    over: dict[str, list[Any]] = {"power_limit_exceeded_s": [], "ramp_limit_exceeded_s": []}
    lost = 0.0
    slo: list[tuple[float, int]] = []  # (attainment, cells) per kind
    for kind in kinds:
        runs = [r for (name, _), r in zip(meta, res, strict=False) if name == kind["name"]]
        s = [r["summary"] for r in runs]
        # served rate over the arrival window (a drain tail would dilute a short run's average)
        tput = float(np.mean([x["output_tokens_completed"] / max(x["arrival_span_s"], 1e-9) for x in s]))
        rps = float(np.mean([x["requests_completed"] / max(x["arrival_span_s"], 1e-9) for x in s]))
        hours = float(np.mean([x["sim_time_s"] for x in s])) / 3600.0
        c_h = float(np.mean([x["cost_usd"] for x in s])) / hours if hours > 0 else 0.0
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
    out["fleet_usd_per_mtok"] = cost_h / (tok_s * 3600 / 1e6) if tok_s else None
    if slo:  # requests meeting the SLO, weighted by cells (cells of a kind serve alike)
        out["fleet_slo_attainment"] = sum(a * n for a, n in slo) / sum(n for _, n in slo)
    if any(k["bus"] == "shared" for k in kinds) or power["energy_j"]:
        out.update({f"fleet_{k}": v for k, v in power.items()})
        out.update({k: (float(np.max(v)) if v else 0.0) for k, v in over.items()})  # the worst simulated cell
        out["fleet_requests_lost_to_power"] = lost  # shed while over the supply (inferred over the cells)
        out["fleet_tokens_per_kwh"] = (tok_s * 3600 / (power["facility_power_mean_w"] / 1e3)
                                       if power["facility_power_mean_w"] else None)
    out["inference"] = ("each kind's totals = mean over its simulated cells x its count; percentiles from the "
                        "merged requests of the simulated cells")
    if out_dir is not None:
        out["requests_file"] = str(write_merged(meta, res, Path(out_dir)))
    return out


def write_merged(meta: list[tuple[str, int]], res: list[dict[str, Any]], out_dir: Path) -> Path:
    """One per-request table from the simulated cells, in cell order, with cell id and kind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for (kind, cell), r in zip(meta, res, strict=False):
        cols = dict(r["requests"])
        n = len(cols["request_id"])
        cols = {"cell": np.full(n, cell, np.int32), "kind": np.full(n, kind), **cols}
        tables.append(pa.table(cols))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "requests.parquet"
    pq.write_table(pa.concat_tables(tables, promote_options="default"), path)
    return path
