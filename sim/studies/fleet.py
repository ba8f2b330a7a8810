"""Fleets of cells, for fleets no single process can hold.

A cell is the scenario's router and pools (with per-kind overrides); a stateless global balancer
splits arrivals across cells by weight, as large platforms do with weighted DNS or anycast.
Cells do not interact, so each runs as its own simulation (one task on the executor), and a
Poisson or gamma stream split by independent weighted choice is again such a stream at the
cell's share of the rate: each cell draws its own arrivals at that rate from its own seed
(cell k uses seed + k; a one-cell fleet is exactly the plain scenario). The [fleet] tables
are described in `sim/studies/cells.py`.

The simulated cells' per-request tables merge into one (`requests.parquet` in the output
folder, with `cell` and `kind` columns; request ids are per cell).

The cells as data and the inference (a kind's totals = the mean over its simulated cells x its
count): `sim/studies/cells.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sim.scenario.config import apply_overrides
from sim.studies.cells import (  # noqa: F401 - the fleet's data, named here too
    POWER_REASONS, CellKind, FleetConfig, fleet_cells, fleet_config, fleet_summary, parse_fleet, share_facility,
    site_share)
from sim.studies.study import Task, execute


def run_fleet(path: str | Path, sets: list[str] | None = None, workers: int | None = None,
              quiet: bool = True, executor: str = "local", out_dir: str | Path | None = None,
              cache_dir: Path | None = None) -> dict[str, Any]:
    """Run a fleet's representative cells on the executor and infer the fleet; with `out_dir`,
    also write the merged per-request table of the simulated cells there (requests.parquet)."""
    from sim.scenario.config import read_toml

    p = Path(path)
    raw = apply_overrides(read_toml(p), list(sets or []))
    if fleet_config(raw).power_bus == "shared":  # every cell, coupled on the site's bus
        from sim.studies.coupled import run_coupled

        out = run_coupled(raw, p.parent, None, workers, executor, None if out_dir is None else str(out_dir),
                          quiet=quiet)
        out["scenario"] = str(path)
        if out_dir is not None:
            out["requests_dataset"] = "requests/"  # partitioned by cell: requests/cell=<id>/part-0.parquet
        return out
    cells, kinds, n_cells = fleet_cells(raw, p.parent)
    tasks = [Task(c.raw, str(p.parent), c.seed, keep_latencies=True, keep_requests=out_dir is not None)
             for c in cells]
    res = execute(tasks, workers, "fleet", quiet, executor, cache_dir)
    out = fleet_summary(str(path), cells, kinds, n_cells, res)
    if out_dir is not None:
        out["requests_file"] = write_merged([(c.kind, c.cell_id) for c in cells], res, Path(out_dir)).name
    return out


def write_merged(meta: list[tuple[str, int]], res: list[dict[str, Any]], out_dir: Path) -> Path:
    """One per-request table from the simulated cells, in cell order, with cell id and kind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for (kind, cell), r in zip(meta, res, strict=False):
        cols = {k: np.asarray(v) for k, v in r["requests"].items()}  # (lists when read back by --resume)
        n = len(cols["request_id"])
        cols = {"cell": np.full(n, cell, np.int32), "kind": np.full(n, kind), **cols}
        tables.append(pa.table(cols))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "requests.parquet"
    pq.write_table(pa.concat_tables(tables, promote_options="default"), path)
    return path


def energy_text(j: float) -> str:
    """Joules in the unit that reads best: kWh, MWh or GWh (3 significant figures)."""
    for unit, per in (("GWh", 3.6e12), ("MWh", 3.6e9), ("kWh", 3.6e6)):
        if abs(j) >= per or unit == "kWh":
            return f"{j / per:,.3g} {unit}"
    return ""  # (unreachable)


def table_fleet(rep: dict[str, Any]) -> str:
    """The fleet's figures as `dcsim run FLEET` prints them."""
    L = [f"dcsim fleet: {rep['scenario']}: {rep['cells_simulated']} of {rep['cells_total']} cells simulated "
         f"(engine {rep['engine']})"]
    for k in rep["kinds"]:
        L.append(f"  {k['name']}: {k['count']} cells, {k['simulated']} simulated; per cell "
                 f"{k['per_cell_output_tok_per_s']:,.0f} output tok/s, {k['per_cell_req_per_s']:,.1f} req/s, "
                 f"p99 TTFT {k['per_cell_ttft_p99_s']:.3g} s, ${k['per_cell_usd_per_hour']:,.0f}/h")
    L.append(f"  fleet: {rep['fleet_output_tokens_per_day'] / 1e12:,.2f} trillion output tokens/day, "
             f"{rep['fleet_req_per_s']:,.0f} req/s, ${rep['fleet_usd_per_hour']:,.0f}/h, "
             f"${rep['fleet_usd_per_mtok'] or 0:.3f} per million output tokens"
             + (f", SLO attainment {rep['fleet_slo_attainment']:.1%}" if rep.get("fleet_slo_attainment") is not None
                else ""))
    L.append(f"  latency (merged simulated cells): TTFT p50 {rep['ttft_p50_s']:.3g} s, p99 {rep['ttft_p99_s']:.3g} s; "
             f"TPOT p50 {rep['tpot_p50_s']:.3g} s, p99 {rep['tpot_p99_s']:.3g} s")
    coupled = rep.get("power_bus") == "shared"
    if "fleet_facility_power_mean_w" in rep:
        peak = "site peak" if coupled else "peak of cells at most"
        L.append(
            f"  power: facility mean {rep['fleet_facility_power_mean_w'] / 1e6:,.1f} MW ({peak} "
            f"{rep['fleet_facility_power_peak_w'] / 1e6:,.1f} MW), energy {energy_text(rep['fleet_energy_j'])}, "
            f"{(rep['fleet_tokens_per_kwh'] or 0):,.0f} output tokens/kWh; over the supply "
            f"{rep['power_limit_exceeded_s']:.1f} s, short while ramping {rep['ramp_limit_exceeded_s']:.1f} s "
            f"({'the site' if coupled else 'worst cell'}); requests shed for power "
            f"{rep['fleet_requests_lost_to_power']:,.0f}"
            + (f"; battery gave {energy_text(rep['fleet_battery_used_j'])}, {rep['supply_drops']} trips"
               if coupled else ""))
    if coupled:
        L.append(f"  coupled: {rep['window_s']:g} s windows, draw in {rep['bin_s']:g} s bins, {rep['blocks']} "
                 f"block(s) of cells; percentiles {rep['percentiles']}")
    L.append(f"  inferred: {rep['inference']}")
    return "\n".join(L)
