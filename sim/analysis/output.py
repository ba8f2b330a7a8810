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

from sim.analysis.metrics import request_categories, request_columns


# zstd at level 1, dictionary pages only for the text columns, floats byte-stream-split: 47 MB and
# 0.28 CPU-s for 10^6 requests against snappy's defaults' 71 MB and 0.37 s (one core, measured
# 2026-12-07; pyarrow dictionary-encodes every column by default, futile on float times)
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1


def write(table: pa.Table, path: Path, dict_cols: tuple[str, ...] = (), codec: str = COMPRESSION) -> None:
    """One parquet file at its floor (COMPRESSION; the per-step time series in lz4: a third
    faster to write than zstd for 20% more bytes)."""
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    pq.write_table(table, path, compression=codec, compression_level=COMPRESSION_LEVEL if codec == "zstd" else None,
                   use_dictionary=[c for c in dict_cols if c in table.column_names] or False,
                   use_byte_stream_split=floats or False,
                   # statistics (min/max per page) on the ids, counts and text, where readers filter;
                   # on every float column they cost 15% of the write
                   write_statistics=[f.name for f in table.schema if f.name not in floats or f.name == "arrival_s"])


_ARROW = {np.dtype(t): getattr(pa, t) for t in ("int8", "int16", "int32", "int64", "uint8", "uint32", "uint64",
                                                   "float32", "float64")}


def column(x: Any) -> pa.Array:
    """A numpy column as an arrow array over the same memory where the type allows. Built from
    buffers, not with pa.array(), which imports pandas (0.3 s) to see whether x is one of its."""
    x = np.asarray(x)
    if x.dtype in _ARROW:
        x = np.ascontiguousarray(x)
        return pa.Array.from_buffers(_ARROW[x.dtype](), len(x), [None, pa.py_buffer(x)])
    if x.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), len(x), [None, pa.py_buffer(np.packbits(x, bitorder="little"))])
    return strings([str(v) for v in x.tolist()])


def strings(values: list[str]) -> pa.Array:
    """Python strings as an arrow string array (from buffers: no pandas)."""
    enc = [v.encode() for v in values]
    off = np.zeros(len(enc) + 1, np.int64)
    np.cumsum([len(b) for b in enc], out=off[1:])
    if off[-1] < 2**31:
        return pa.Array.from_buffers(pa.string(), len(enc), [None, pa.py_buffer(off.astype(np.int32)),
                                                             pa.py_buffer(b"".join(enc))])
    return pa.Array.from_buffers(pa.large_string(), len(enc), [None, pa.py_buffer(off), pa.py_buffer(b"".join(enc))])


def categorical(codes: np.ndarray, labels: np.ndarray) -> pa.Array:
    """A dictionary-encoded text column from its codes and labels."""
    return pa.DictionaryArray.from_arrays(column(np.asarray(codes, np.int32)), strings([str(v) for v in labels]))


def _table(cols: dict[str, Any]) -> pa.Table:
    return pa.Table.from_arrays([column(v) for v in cols.values()], names=list(cols))


TEXT_COLUMNS = ("status", "reason", "reason_detail", "class", "model", "pool")


def request_table(res: Any) -> pa.Table:
    """requests.parquet's table: the numbers as they are (float64 times), the text columns
    dictionary-encoded from their codes (no string built per row), in request_columns' order."""
    nums = request_columns(res, text=False)
    cats = request_categories(res)
    cols: dict[str, Any] = {}
    for k, v in nums.items():
        cols[k] = column(v)
        if k == "replica":
            for c in ("status", "reason", "reason_detail"):
                cols[c] = categorical(*cats[c])
    for c in ("class", "model", "pool"):
        if c in cats:
            cols[c] = categorical(*cats[c])
    if "slo_met" in cols:  # (after the text columns, as request_columns puts it)
        cols["slo_met"] = cols.pop("slo_met")
    return pa.Table.from_arrays(list(cols.values()), names=list(cols))


def write_run(res: Any, summary: dict[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write(request_table(res), out / "requests.parquet", TEXT_COLUMNS)
    ts = res.timeseries.columns()
    if res.timeseries.enabled:
        write(_table(ts), out / "timeseries.parquet", codec="lz4")
    # (the requests in the system over time is not written: requests.parquet's arrival_s and
    # finish_s give it, and it was as large as the time series)
    if res.ledger is not None:
        write_facility(out, res.ledger, res.facility.tents, res.facility.trip_times_s, res.facility.failure_times_s)
    if res.autoscale is not None:  # each decision (replicas against load) and each replica's state changes
        write(_table(res.autoscale.columns()), out / "autoscale.parquet")
        ev = res.autoscale.events
        write(_table({"t_s": np.asarray(ev["t_s"], float), "replica": np.asarray(ev["replica"], np.int64),
                      "state": np.asarray(ev["state"], object)}), out / "autoscale_events.parquet", ("state",))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "scenario.toml", "wb") as fh:
        tomli_w.dump(_clean(res.scenario.raw), fh)
    return out


def write_facility(out: Path, led: Any, tents: list[str], trips_s: list[float], failures_s: list[float]) -> None:
    """facility.parquet (the ledger's samples at the manager's ticks: draw, supply, each tent's IT
    and each source's output) and facility_events.json (turbine trips, node failures): a run's,
    or a coupled site's (sim/studies/site.py)."""
    if not led.samples["t_s"]:
        return
    cols = {k: np.asarray(v, dtype=float) for k, v in led.samples.items()}
    tv = np.asarray(led.tent_samples, dtype=float)
    for k, name in enumerate(tents):
        cols[f"tent_it_w:{name}"] = tv[:, k]
    sv = np.asarray(led.source_samples, dtype=float).reshape(len(led.source_samples), len(led.sources))
    for k, src in enumerate(led.sources):  # each source's output (W; a battery charging: negative)
        cols[f"source_w:{src.name}"] = sv[:, k]
    write(_table(cols), out / "facility.parquet")
    (out / "facility_events.json").write_text(json.dumps({"turbine_trips_s": list(trips_s),
                                                          "node_failures_s": list(failures_s)}))


def _clean(obj: Any) -> Any:
    """TOML has no null: drop None values recursively."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj
