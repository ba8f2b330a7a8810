"""An observed run's folder: requests.parquet (a simulated run's columns where they apply, plus
each request's inter-token gaps), summary.json (`dcsim run --json`'s keys where they apply, and
`"measured": true`), scenario.toml and report.html marked measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sim.analysis.metrics import steady_window
from sim.observe.client import Outcome

MEASURED_KEYS = ("ttft_mean_s", "tpot_mean_s", "throughput_output_tok_per_s")  # what calibrate fits


def columns(outs: list[Outcome], prompt_tokens: np.ndarray, requested: np.ndarray) -> dict[str, Any]:
    """The per-request table (one row per request, in the workload's order)."""
    f = lambda name: np.array([getattr(o, name) for o in outs], dtype=float)  # noqa: E731
    arr, first, fin = f("arrival_s"), f("first_token_s"), f("finish_s")
    tok = np.array([o.tokens for o in outs], dtype=np.int64)
    done = np.array([o.status == "completed" for o in outs])
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(done & (tok > 1), (fin - first) / np.maximum(tok - 1, 1), np.nan)
    gaps = [np.diff(np.asarray(o.token_times_s)).tolist() for o in outs]
    cols: dict[str, Any] = {
        "request_id": np.arange(len(outs), dtype=np.int64), "arrival_s": arr,
        "prompt_tokens": np.asarray(prompt_tokens, dtype=np.int64), "output_tokens": tok,
        "requested_output_tokens": np.asarray(requested, dtype=np.int64),
        "first_token_s": first, "finish_s": fin,
        "ttft_s": np.where(done, first - arr, np.nan), "tpot_s": tpot, "e2e_s": np.where(done, fin - arr, np.nan),
        "status": np.array([o.status for o in outs], dtype=object),
        "reason": np.array([o.reason for o in outs], dtype=object),
        "itl_s": gaps,
    }
    if any(o.client >= 0 for o in outs):
        cols["client"] = np.array([o.client for o in outs], dtype=np.int64)
    return cols


def _stats(name: str, x: np.ndarray) -> dict[str, float | None]:
    x = x[np.isfinite(x)]
    out: dict[str, float | None] = {f"{name}_mean_s": float(x.mean()) if x.size else None}
    for q in (50, 90, 99):
        out[f"{name}_p{q}_s"] = float(np.percentile(x, q)) if x.size else None
    return out


def summary(cols: dict[str, Any], clients: int, complete: bool, url: str, model: str) -> dict[str, Any]:
    """The run's summary: `dcsim run --json`'s keys where a measurement gives them."""
    st = cols["status"]
    done = st == "completed"
    arr = cols["arrival_s"]
    sent = np.isfinite(arr)
    reasons: dict[str, int] = {}
    for r in cols["reason"][~done]:
        k = str(r).split(":", 1)[0].split(" (", 1)[0]
        reasons[k] = reasons.get(k, 0) + 1
    # the whole run's throughput (t = 0, the run's start and the scenario's origin, to the last
    # completion): what calibrate fits, as bench tools report it; the headline figures are the
    # steady state's, defined as for a simulated run (metrics.steady_window)
    t0 = float(np.min(arr[sent])) if sent.any() else 0.0
    t_end = float(np.max(cols["finish_s"][done])) if done.any() else 0.0
    window = max(t_end, 1e-12)
    fin = np.where(done, cols["finish_s"], np.nan)
    win = steady_window(arr, cols["first_token_s"], fin, done, cols["output_tokens"], 0.0, t_end)
    w0, w1 = win["measurement_window_s"]
    in_win = done & (fin > w0) & (fin <= w1)
    s: dict[str, Any] = {
        "measured": True, "complete": complete, "url": url, "model": model,
        "requests_total": int(len(st)), "requests_completed": int(done.sum()), "requests_rejected": 0,
        "requests_failed": int((~done).sum()), "requests_in_flight": 0,
        **_stats("ttft", cols["ttft_s"][done]), **_stats("tpot", cols["tpot_s"][done]),
        **_stats("e2e", cols["e2e_s"][done]),
        "throughput_output_tok_per_s": win["window_output_tokens"] / max(w1 - w0, 1e-12),
        "run_throughput_output_tok_per_s": float(cols["output_tokens"][done].sum()) / window,
        "output_tokens_completed": int(cols["output_tokens"][done].sum()),
        "arrival_span_s": float(np.max(arr[sent]) - t0) if sent.any() else 0.0,
        "clients": int(clients), "throughput_req_per_s": float(in_win.sum()) / max(w1 - w0, 1e-12),
        "run_throughput_req_per_s": float(done.sum()) / window, **win,
        "reasons": dict(sorted(reasons.items())),
    }
    return s


def write(out_dir: Path, cols: dict[str, Any], s: dict[str, Any], raw: dict[str, Any]) -> Path:
    """Write the folder (a `.incomplete` marker until everything is written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tomli_w

    from sim.analysis.output import _clean

    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / ".incomplete"
    marker.write_text("dcsim observe is writing this folder\n")
    table = pa.table({k: (pa.array(v, type=pa.list_(pa.float64())) if k == "itl_s" else pa.array(v))
                      for k, v in cols.items()})
    pq.write_table(table, out_dir / "requests.parquet")
    (out_dir / "summary.json").write_text(json.dumps(s, indent=2) + "\n")
    with open(out_dir / "scenario.toml", "wb") as fh:
        tomli_w.dump(_clean(raw), fh)
    from sim.analysis.report import write_report

    write_report(out_dir)
    marker.unlink()
    return out_dir
