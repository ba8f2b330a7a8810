"""Run folder: requests.parquet, timeseries.parquet, summary.json and scenario.toml.

Parquet (via pyarrow) because the tables are columnar already, typed, compressed, and read
directly by pandas, polars and DuckDB; CSV would lose types and be 5-10x larger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tomli_w

from sim.analysis.metrics import request_columns


def _table(cols: dict[str, np.ndarray]) -> pa.Table:
    return pa.table({k: pa.array(v) for k, v in cols.items()})


def write_run(res: Any, summary: dict[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(_table(request_columns(res)), out / "requests.parquet")
    ts = res.timeseries.columns()
    if res.timeseries.enabled:
        pq.write_table(_table(ts), out / "timeseries.parquet")
    pq.write_table(_table({"t_s": res.in_system_t_s, "in_system": res.in_system_n}), out / "in_system.parquet")
    led = res.ledger
    if led is not None and led.samples["t_s"]:
        cols = {k: np.asarray(v, dtype=float) for k, v in led.samples.items()}
        tents = res.facility.tents
        tv = np.asarray(led.tent_samples, dtype=float)
        for k, name in enumerate(tents):
            cols[f"tent_it_w:{name}"] = tv[:, k]
        sv = np.asarray(led.source_samples, dtype=float).reshape(len(led.source_samples), len(led.sources))
        for k, src in enumerate(led.sources):  # each source's output (W; a battery charging: negative)
            cols[f"source_w:{src.name}"] = sv[:, k]
        pq.write_table(_table(cols), out / "facility.parquet")
        (out / "facility_events.json").write_text(json.dumps(
            {"turbine_trips_s": res.facility.trip_times_s, "node_failures_s": res.facility.failure_times_s}))
    if res.autoscale is not None:  # each decision (replicas against load) and each replica's state changes
        pq.write_table(_table(res.autoscale.columns()), out / "autoscale.parquet")
        ev = res.autoscale.events
        pq.write_table(_table({"t_s": np.asarray(ev["t_s"], float), "replica": np.asarray(ev["replica"], np.int64),
                               "state": np.asarray(ev["state"], object)}), out / "autoscale_events.parquet")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "scenario.toml", "wb") as fh:
        tomli_w.dump(_clean(res.scenario.raw), fh)
    return out


def _clean(obj: Any) -> Any:
    """TOML has no null: drop None values recursively."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj
