"""Running a coupled site (`[fleet] power_bus = "shared"`): its cells in blocks where they run
(sim/studies/blocks.py), the site's facility here (sim/studies/site.py), window after window;
then the fleet's figures, every cell simulated (nothing extrapolated), merged from the cells'
summaries and latency sketches, the power figures the site's own.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sim.studies.blocks import LAT_KEYS, CellSpec, InProcess, Processes, sketch_percentile
from sim.studies.cells import fleet_cells, fleet_config

EXACT_MAX = 2_000_000  # completed requests up to which the merged percentiles are exact (else sketches)


def site_facility(raw: dict[str, Any], base_dir: Path) -> Any:
    """The site's [facility], parsed with the scenario (the cells' pools placed in its tents)."""
    from sim.scenario.config import parse

    base = {k: v for k, v in raw.items() if k != "fleet"}
    return parse(copy.deepcopy(base), base_dir).facility


def blocks_of(specs: list[CellSpec], n: int) -> list[list[CellSpec]]:
    """n contiguous blocks of cells (sizes differing by one at most)."""
    n = max(1, min(n, len(specs)))
    cuts = np.linspace(0, len(specs), n + 1).round().astype(int)
    return [specs[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _backend(executor: str, blocks: list[list[CellSpec]], args: tuple) -> Any:
    if executor == "local":
        return InProcess(blocks, args) if len(blocks) == 1 else Processes(blocks, args)
    from sim.studies.actors import DaskActors

    return DaskActors(executor, blocks, args)


def run_coupled(raw: dict[str, Any], base_dir: Path, seed: int | None = None, workers: int | None = None,
                executor: str = "local", out_dir: str | None = None, keep_latencies: bool = False,
                quiet: bool = True) -> dict[str, Any]:
    """Every cell of the fleet on one power bus, in lockstep windows; the fleet's figures."""
    from sim.studies.site import Site

    t0 = time.perf_counter()
    fc = fleet_config(raw)
    cells, kinds, n_cells = fleet_cells(raw, base_dir, seed)
    fac = site_facility(raw, base_dir)
    window = fc.window_s if fc.window_s is not None else fac.interval_s
    specs = [CellSpec(c.cell_id, c.kind, c.raw, c.seed, str(base_dir)) for c in cells]
    pools = [p for c in cells for p in c.scenario.pools for _ in range(p.replicas)]  # the site's replicas, in order
    horizon = cells[0].scenario.run.horizon_s
    n_exact = sum(int(c.scenario.workload.rate_per_s * c.scenario.workload.duration_s)
                  if getattr(c.scenario.workload, "rate_per_s", None) else EXACT_MAX for c in cells)
    exact = keep_latencies or n_exact <= EXACT_MAX
    site = Site(fac, int(raw.get("seed", 0)) if seed is None else seed, fc.bin_s, pools)
    blocks = blocks_of(specs, workers or 1)
    be = _backend(executor, blocks, (fc.bin_s, exact, out_dir))
    try:
        decisions: list[Any] = [None] * len(blocks)
        per_cell = np.cumsum([0] + [sum(p.replicas for p in c.scenario.pools) for c in cells])
        cuts = per_cell[np.cumsum([0] + [len(b) for b in blocks])]  # each block's first replica, in the site's order
        i = 0
        t_cells = t_site = 0.0  # wall time waiting for the cells' windows / in the site's (serial) work
        t_built = time.perf_counter()
        while True:
            T = i * window
            if horizon is not None:
                T = min(T, horizon)
            w0 = time.perf_counter()
            reps = be.step(T, decisions)
            w1 = time.perf_counter()
            t_cells += w1 - w0
            done = [r.done_at for r in reps]
            t_end = (horizon if horizon is not None and T >= horizon else
                     max(done) if all(d is not None for d in done) else None)
            dec = site.window(T, reps, t_end)
            if dec is None:
                break
            decisions = [dec.part(int(cuts[j]), int(cuts[j + 1])) for j in range(len(blocks))]
            t_site += time.perf_counter() - w1
            i += 1
            if not quiet and i % 60 == 0:
                print(f"dcsim: site at {T:,.0f} s ({time.perf_counter() - t0:,.0f} s)", file=sys.stderr)
        t_run = time.perf_counter()
        res = [r for rs in be.finish() for r in rs]
    finally:
        be.close()
    wall = {"wall_build_s": t_built - t0, "wall_windows_s": t_run - t_built, "wall_cells_s": t_cells,
            "wall_site_s": t_site, "wall_finish_s": time.perf_counter() - t_run, "windows": i + 1}
    assert t_end is not None
    out = coupled_summary(str(raw.get("name", "fleet")), kinds, n_cells, res, site.figures(t_end), exact)
    out["window_s"], out["bin_s"], out["sim_time_s"] = window, fc.bin_s, t_end
    out["blocks"] = len(blocks)
    out["wall_breakdown"] = wall  # where the wall time went: the site's share is the serial fraction per window
    if out_dir is not None and "://" not in out_dir:  # the site's power over time, beside the summary
        from sim.analysis.output import write_facility

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_facility(Path(out_dir), site.ledger, [t.name for t in fac.tents], site.trip_marks, [])
    if keep_latencies:
        out["_latencies"] = {k: np.concatenate([r["latencies"][k] for r in res]) for k in LAT_KEYS}
    return out


def coupled_summary(name: str, kinds: list[dict[str, Any]], n_cells: int, res: list[dict[str, Any]],
                    site: dict[str, Any], exact: bool) -> dict[str, Any]:
    """The fleet's figures from every cell's results and the site's ledger (no inference)."""
    out: dict[str, Any] = {"scenario": name, "cells_total": n_cells, "cells_simulated": len(res), "kinds": [],
                           "power_bus": "shared", "extrapolated": []}
    tok_s = req_s = cost_h = 0.0
    unpriced = False
    for kind in kinds:
        s = [r["summary"] for r in res if r["kind"] == kind["name"]]
        tput = float(sum(x["throughput_output_tok_per_s"] for x in s))
        rps = float(sum(x["throughput_req_per_s"] for x in s))
        c_h = float(sum(x["cost_usd"] / (x["sim_time_s"] / 3600.0) for x in s if x["sim_time_s"] > 0))
        unpriced |= any(x.get("run_cost_per_mtok_usd") is None and x.get("output_tokens_completed") for x in s)
        tok_s, req_s, cost_h = tok_s + tput, req_s + rps, cost_h + c_h
        out["kinds"].append({"name": kind["name"], "count": kind["count"], "simulated": len(s),
                             "per_cell_output_tok_per_s": tput / len(s), "per_cell_req_per_s": rps / len(s),
                             "per_cell_ttft_p99_s": float(np.mean([x["ttft_p99_s"] for x in s])),
                             "per_cell_usd_per_hour": c_h / len(s),
                             "requests_simulated": int(sum(x["requests_total"] for x in s)),
                             "completed_simulated": int(sum(x["requests_completed"] for x in s)),
                             "engine": ",".join(sorted({x["engine"] for x in s}))})
    if exact:
        for k in LAT_KEYS:
            a = np.concatenate([r["latencies"][k] for r in res])
            a = a[np.isfinite(a)]
            out[f"{k[:-2]}_p50_s"] = float(np.percentile(a, 50)) if a.size else None
            out[f"{k[:-2]}_p99_s"] = float(np.percentile(a, 99)) if a.size else None
    else:
        for k in LAT_KEYS:
            counts = np.sum([r["sketch"][k] for r in res if "sketch" in r], axis=0)  # (one per block)
            out[f"{k[:-2]}_p50_s"] = sketch_percentile(counts, 50)
            out[f"{k[:-2]}_p99_s"] = sketch_percentile(counts, 99)
    out["percentiles"] = "exact (every cell's completed requests)" if exact else "from merged sketches (+-0.06%)"
    out["engine"] = ",".join(sorted({k["engine"] for k in out["kinds"]}))
    out["fleet_output_tok_per_s"] = tok_s
    out["fleet_req_per_s"] = req_s
    out["fleet_output_tokens_per_day"] = tok_s * 86400
    out["fleet_usd_per_hour"] = cost_h
    out["fleet_usd_per_mtok"] = cost_h / (tok_s * 3600 / 1e6) if tok_s and not unpriced else None
    met = [(r["slo_met"], r["slo_counted"]) for r in res if "slo_met" in r]
    if met:
        out["fleet_slo_attainment"] = sum(m for m, _ in met) / max(1, sum(c for _, c in met))
    out.update(site)
    out["fleet_requests_lost_to_power"] = float(sum(sum(v for why, v in (r["summary"].get("reasons") or {}).items()
                                                        if why == "power") for r in res))
    mean_w = site["fleet_facility_power_mean_w"]
    out["fleet_tokens_per_kwh"] = tok_s * 3600 / (mean_w / 1e3) if mean_w else None
    stab = [r["summary"].get("stable") for r in res]
    out["stable"] = None if any(x is None for x in stab) else all(stab)
    out["instability"] = next((r["summary"].get("instability") for r in res
                               if r["summary"].get("stable") is False), None)
    out["calibration_status"] = {k: v for r in res for k, v in (r["summary"].get("calibration_status") or {}).items()}
    out["inference"] = ("none: every cell simulated, coupled on the site's power bus; power figures from the site's "
                        "ledger (its turbines, battery and manager on the cells' summed draw)")
    out["requests_written"] = int(sum(r.get("requests_rows", 0) for r in res))
    return out
