"""Workload: request arrival times and prompt/output lengths, drawn up front as numpy columns.

Arrivals: poisson, gamma (bursty: inter-arrival CV given), constant (evenly spaced) or trace
replay, optionally in load stages (each with its own rate and duration, in order). Lengths:
fixed, uniform, lognormal (mean and CV) or empirical (resampled from a file). Shared prefixes:
each request may start with one of `groups` shared prefixes of `tokens` tokens. Every draw comes
from a named stream (`arrivals`, `prompt_tokens`, `output_tokens`, `prefix_groups`), so two runs
with one seed see the same requests whatever else differs. Units: seconds and tokens.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from sim.errors import ScenarioError, warn
from sim.scenario.common import MAX_SIM_S
from sim.rng import stream


@dataclass(frozen=True)
class Workload:
    """Columns of the requests, sorted by arrival. Length n for every column."""

    arrival_s: np.ndarray  # float64, non-decreasing
    prompt_tokens: np.ndarray  # int64, >= 1
    output_tokens: np.ndarray  # int64, >= 1
    stage: np.ndarray | None = None  # int16 load-stage index of each request (None: one stage)
    prefix_group: np.ndarray | None = None  # int32 shared-prefix group, -1 = none (None: no prefixes)
    prefix_tokens: int = 0  # length of every shared prefix
    stage_bounds_s: tuple[float, ...] = ()  # start time of each stage, then the end of the last
    cls: np.ndarray | None = None  # int16 request-class index (None: one class)
    session: np.ndarray | None = None  # int64 session id (None: no sessions)
    history: bool = False  # multi-turn: a request's prefix group is its session, whose history grows
    clients: int = 0  # closed-loop clients (0: open loop); arrival_s is then written as requests are sent
    think_s: np.ndarray | None = None  # float64: the think time of the client after request j ends (closed loop)

    def head(self, m: int) -> Workload:
        """The first m requests (closed-loop clients that stopped sending)."""
        cut = {f.name: getattr(self, f.name)[:m] for f in fields(self)
               if isinstance(getattr(self, f.name), np.ndarray)}
        return replace(self, **cut)

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])


def draw_lengths(spec: Mapping[str, Any], n: int, rng: np.random.Generator, field: str,
                 base_dir: Path) -> np.ndarray:
    """Draw `n` integer lengths (>= 1) from a length distribution spec (see the README)."""
    dist = spec["dist"]
    if dist == "fixed":
        vals = np.full(n, float(spec["value"]))
    elif dist == "uniform":
        vals = rng.integers(int(spec["min"]), int(spec["max"]) + 1, size=n).astype(float)
    elif dist == "lognormal":
        vals = _lognormal(float(spec["mean"]), float(spec["cv"]), n, rng)
    elif dist == "empirical":
        pool = _read_empirical(base_dir / spec["file"], spec.get("column"), field)
        vals = pool[rng.integers(0, pool.shape[0], size=n)]
    else:  # validated in config
        raise ScenarioError(f"{field}.dist", f"unknown distribution {dist!r}")
    lo = float(spec.get("min", 1)) if dist != "uniform" else 1.0
    hi = float(spec["max"]) if ("max" in spec and dist != "uniform") else np.inf
    out = np.clip(np.rint(vals), max(lo, 1.0), hi)
    return out.astype(np.int64)


def _read_empirical(path: Path, column: str | None, field: str) -> np.ndarray:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise ScenarioError(
            f"{field}.file", f"file not found: {path}", "give a path relative to the scenario"
        ) from None
    if not rows:
        raise ScenarioError(f"{field}.file", f"{path} is empty")
    header = rows[0]
    start = 0
    idx = 0
    try:
        float(header[0])
    except ValueError:
        start = 1
        if column is not None:
            if column not in header:
                raise ScenarioError(f"{field}.column", f"{column!r} not in {header}") from None
            idx = header.index(column)
    try:
        vals = np.array([float(r[idx]) for r in rows[start:] if r], dtype=float)
    except (ValueError, IndexError):
        raise ScenarioError(f"{field}.file", f"{path}: non-numeric value in column {idx}") from None
    if vals.size == 0 or np.any(vals < 1):
        raise ScenarioError(f"{field}.file", f"{path}: needs values >= 1")
    return vals


def gaps(kind: str, rate: float, cv: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` inter-arrival gaps (s) with mean 1/rate."""
    if kind == "constant":
        return np.full(n, 1.0 / rate)
    if kind == "poisson":
        return rng.exponential(1.0 / rate, size=n)
    shape = 1.0 / (cv * cv)
    return rng.gamma(shape, 1.0 / (rate * shape), size=n)


def arrivals(kind: str, rate: float, cv: float, num: int | None, duration: float | None,
             rng: np.random.Generator) -> np.ndarray:
    """Arrival times from t=0: `num` of them, or all before `duration`. Random processes include
    the first gap; constant arrivals start at t=0 and are exactly 1/rate apart."""
    if kind == "constant":
        if num is not None:
            return np.arange(num, dtype=float) / rate
        assert duration is not None  # (validated in config: one of the two)
        t = np.arange(int(np.ceil(duration * rate - 1e-9)), dtype=float) / rate
        return t[t < duration]
    if num is not None:
        return np.cumsum(gaps(kind, rate, cv, num, rng))
    assert duration is not None
    out: list[np.ndarray] = []
    t0 = 0.0
    chunk = max(16, int(rate * duration * 1.1) + 16)
    while True:
        a = t0 + np.cumsum(gaps(kind, rate, cv, chunk, rng))
        if a[-1] >= duration:
            out.append(a[a < duration])
            break
        out.append(a)
        t0 = float(a[-1])
    return np.concatenate(out) if out else np.zeros(0)


def thinned(points: tuple[tuple[float, float], ...], duration: float, rng: np.random.Generator,
            keep_rng: np.random.Generator) -> np.ndarray:
    """A nonhomogeneous Poisson process with rate lambda(t) (linear between the (t_s, rate)
    points, held after the last) over [0, duration), by thinning (Lewis and Shedler 1979): a
    Poisson process at the highest rate, each arrival kept with probability lambda(t) / max."""
    ts = np.array([p[0] for p in points])
    rs = np.array([p[1] for p in points])
    top = float(rs.max())
    cand = arrivals("poisson", top, 1.0, None, duration, rng)
    lam = np.interp(cand, ts, rs)
    return cand[keep_rng.random(cand.shape[0]) * top < lam]


# Trace adapters: each returns (arrival_s, prompt, output) as numpy columns, every row checked.
def _bad_row(path: Path, line: int, what: str, fix: str, field: str) -> ScenarioError:
    return ScenarioError(field, f"{path} line {line}: {what}", fix)


def _token_column(vals: list[Any], col: str, path: Path, line: Callable[[int], int], field: str) -> np.ndarray:
    """Whole numbers >= 1: a request has at least one token each way; a fraction or a
    non-positive count is an error at its row, never rounded or raised to 1."""
    x = np.empty(len(vals))
    for i, v in enumerate(vals):
        try:
            x[i] = float(v)
        except (TypeError, ValueError):
            raise _bad_row(path, line(i), f"{col} = {v!r} is not a number",
                           "give a whole number of tokens >= 1", field) from None
    bad = np.flatnonzero(~np.isfinite(x) | (x < 1) | (x != np.floor(x)))
    if bad.size:
        i = int(bad[0])
        raise _bad_row(path, line(i), f"{col} = {vals[i]!r} is not a whole number >= 1",
                       "correct or remove that row (a request has at least one token each way)", field)
    return x.astype(np.int64)


def _arrival_column(x: np.ndarray, col: str, path: Path, line: Callable[[int], int], field: str,
                    raw: list[Any]) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(x) | (x < 0))
    if bad.size:
        i = int(bad[0])
        raise _bad_row(path, line(i), f"{col} = {raw[i]!r} is not a time >= 0", "correct that row", field)
    back = np.flatnonzero(np.diff(x) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise _bad_row(path, line(i), f"{col} = {raw[i]!r} comes before the previous row's {raw[i - 1]!r}",
                       f"sort the file by {col}", field)
    return x


def read_trace(path: Path, fmt: str, field: str = "workload.trace") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """read_trace_rows, with a file that is not text (or not well-formed CSV) one line, and every
    arrival within the ten years a run reaches (MAX_SIM_S: a larger time is an epoch clock or a typo)."""
    try:
        arr, pr, out = read_trace_rows(path, fmt, field)
    except UnicodeDecodeError:
        raise ScenarioError(field, f"{path} is not a text file (a binary or compressed file?)",
                            "give the trace as CSV or JSON lines text") from None
    except csv.Error as exc:
        raise ScenarioError(field, f"{path} is not well-formed CSV: {exc}", "give the trace as CSV text") from None
    far = np.flatnonzero(arr > MAX_SIM_S)
    if far.size:
        i = int(far[0])
        raise ScenarioError(field, f"{path}: request {i + 1} arrives at {arr[i]:.4g} s, past ten years of simulated "
                            "time (an epoch clock in arrival_s?)", "give arrival_s in seconds from the run's start "
                            "(subtract the first row's), or trace_format = \"azure\" / \"mooncake\" for clocks")
    return arr, pr, out


def read_trace_rows(path: Path, fmt: str, field: str = "workload.trace") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a request trace. Formats: `csv` (arrival_s,prompt_tokens,output_tokens: arrival_s in
    seconds from the run's start), `azure` (Azure LLM inference trace 2023:
    TIMESTAMP,ContextTokens,GeneratedTokens) and `mooncake` (JSON lines with timestamp in ms,
    input_length, output_length); the last two are clocks, shifted to start at 0. Rows must be in
    arrival order, with whole token counts >= 1; a bad row is an error naming its line."""
    if not path.exists():
        raise ScenarioError(field, f"trace file not found: {path}", "give a path relative to the scenario file")
    if path.is_dir():
        raise ScenarioError(field, f"{path} is a folder", "give the trace file's path")
    if fmt == "mooncake":
        recs, lines = [], []
        with open(path) as fh:
            for k, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        r = json.loads(line)
                        recs.append((r["timestamp"], r["input_length"], r["output_length"]))
                    except json.JSONDecodeError:
                        raise _bad_row(path, k, "not a JSON object", "fix that line", field) from None
                    except (KeyError, TypeError):
                        raise _bad_row(path, k, "lacks timestamp, input_length or output_length",
                                       "fix that line", field) from None
                    lines.append(k)
        if not recs:
            raise ScenarioError(field, f"{path} holds no requests", "give a trace with at least one row")
        ts = [r[0] for r in recs]
        try:
            arr = np.array(ts, dtype=float) / 1000.0
        except (TypeError, ValueError):
            raise ScenarioError(field, f"{path}: a timestamp is not a number", "fix the trace") from None
        line_of = lines.__getitem__
        arr = _arrival_column(arr, "timestamp", path, line_of, field, ts)
        pr = _token_column([r[1] for r in recs], "input_length", path, line_of, field)
        out = _token_column([r[2] for r in recs], "output_length", path, line_of, field)
        return arr - arr[0], pr, out
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        need = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"] if fmt == "azure" else \
            ["arrival_s", "prompt_tokens", "output_tokens"]
        missing = [c for c in need if c not in cols]
        if missing:
            raise ScenarioError(field, f"{path} lacks column(s) {missing} (has {cols})",
                                "use columns arrival_s,prompt_tokens,output_tokens or set trace_format")
        rows = list(reader)
    if not rows:
        raise ScenarioError(field, f"{path} holds no requests (a header only)", "give a trace with at least one row")
    short = next((i for i, r in enumerate(rows) if any(r.get(c) is None for c in need)), None)
    if short is not None:
        raise _bad_row(path, short + 2, "has fewer fields than the header", "fix that row", field)
    t_raw = [r[need[0]] for r in rows]
    if fmt == "azure":
        try:
            stamps = np.array([np.datetime64(v.strip()[:26]) for v in t_raw])
        except ValueError:
            i = next(i for i, v in enumerate(t_raw) if not _is_time(v))
            raise _bad_row(path, i + 2, f"TIMESTAMP = {t_raw[i]!r} is not a date-time", "fix that row", field) from None
        nat = np.flatnonzero(np.isnat(stamps))
        if nat.size:
            raise _bad_row(path, int(nat[0]) + 2, f"TIMESTAMP = {t_raw[int(nat[0])]!r} is not a date-time",
                           "fix that row", field)
        arr = (stamps - stamps[0]) / np.timedelta64(1, "us") / 1e6
    else:
        arr = np.empty(len(rows))
        for i, v in enumerate(t_raw):
            try:
                arr[i] = float(v)
            except ValueError:
                raise _bad_row(path, i + 2, f"arrival_s = {v!r} is not a number", "give seconds from the start",
                               field) from None
    if fmt == "azure":  # a clock: only the order is checked
        back = np.flatnonzero(np.diff(arr) < 0)
        if back.size:
            i = int(back[0]) + 1
            raise _bad_row(path, i + 2, f"TIMESTAMP {t_raw[i]!r} comes before the previous row's", "sort the file",
                           field)
    else:
        arr = _arrival_column(arr, "arrival_s", path, lambda i: i + 2, field, t_raw)
    pr = _token_column([r[need[1]] for r in rows], need[1], path, lambda i: i + 2, field)
    out = _token_column([r[need[2]] for r in rows], need[2], path, lambda i: i + 2, field)
    return arr.astype(float), pr, out


def _is_time(v: str) -> bool:
    try:
        np.datetime64(v.strip()[:26])
        return True
    except ValueError:
        return False


# Memory a run holds per request, all columns (workload, requests table, engine state) with
# room: 157 bytes traced and 151 of resident growth were measured per request (quickstart,
# 10^6 requests, README Performance); 400 leaves room for classes, sessions and time series.
BYTES_PER_REQUEST = 400


def _memory_bytes() -> float | None:
    import os
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None


def check_memory(w: Any) -> None:
    """Refuse, before allocating, a workload whose requests would not fit in this machine's
    memory (a typo such as num_requests = 10^12 would otherwise try to allocate terabytes)."""
    if w.arrival == "trace":
        return  # bounded by the file
    if w.stages:
        n = sum(r * d for r, d in w.stages)
    elif w.num_requests is not None:
        n = float(w.num_requests)
    elif w.rate_points:
        n = max(r for _, r in w.rate_points) * w.duration_s
    else:
        n = (w.rate_per_s or 0.0) * (w.duration_s or 0.0)
    if w.multi_turn is not None:  # each arrival starts a session of many requests
        n *= _turns_bound(w)
    mem = _memory_bytes()
    if mem is not None and n * BYTES_PER_REQUEST > 0.8 * mem:
        most = int(0.8 * mem / BYTES_PER_REQUEST)
        key = "workload.num_requests" if w.num_requests is not None else (
            "workload.stages" if w.stages else "workload.duration_s")
        raise ScenarioError(key, f"about {n:.3g} requests would need about {n * BYTES_PER_REQUEST / 1e9:,.0f} GB "
                            f"({BYTES_PER_REQUEST} bytes each); this machine has {mem / 1e9:,.0f} GB",
                            f"simulate at most about {most:,} requests (or a shorter duration_s)")


def _spec_mean(spec: Any) -> float:
    """A length distribution's mean, near enough to size memory (its max where it gives one)."""
    for k in ("value", "mean"):
        if k in spec:
            return float(min(spec[k], spec.get("max", spec[k])))
    if "min" in spec and "max" in spec:
        return (float(spec["min"]) + float(spec["max"])) / 2
    return float(spec.get("max", 1.0))


def _turns_bound(w: Any) -> float:
    """Turns per session, at most: the turns' mean, and no more than fit in max_history_tokens
    (a session ends before a turn past it; each turn adds at least a prompt and an output)."""
    mt = w.multi_turn
    per_turn = max(1.0, _spec_mean(w.prompt_tokens) + _spec_mean(w.output_tokens))
    return max(1.0, min(_spec_mean(mt.turns), mt.max_history_tokens / per_turn + 1))


def build_workload(w: Any, seed: int, base_dir: Path) -> Workload:
    """Draw the whole workload for config `w` (a WorkloadConfig) and run `seed`."""
    check_memory(w)
    if w.arrival == "trace":
        arr, pr, out = read_trace(base_dir / w.trace, w.trace_format)
        if w.time_scale != 1.0:
            arr = arr / w.time_scale
        if w.duration_s is not None:
            keep = arr < w.duration_s
            if not keep.all():
                warn("workload.duration_s", f"replaying the trace's first {int(keep.sum())} of {arr.size} requests "
                     f"(those before {w.duration_s:g} s)", "remove duration_s to replay all of it")
            arr, pr, out = arr[keep], pr[keep], out[keep]
        if w.num_requests is not None and w.num_requests < arr.size:
            warn("workload.num_requests", f"replaying the trace's first {w.num_requests} of {arr.size} requests",
                 "remove num_requests to replay all of it")
            arr, pr, out = arr[: w.num_requests], pr[: w.num_requests], out[: w.num_requests]
        if arr.size == 0:
            raise ScenarioError("workload.duration_s", "no request of the trace arrives before it",
                                "raise duration_s or remove it")
        sess = read_trace_sessions(base_dir / w.trace, w.trace_format, arr.shape[0])
        if sess is None and w.sessions:
            sess = stream(seed, "sessions").integers(0, w.sessions, size=arr.shape[0])
        return Workload(arr, pr, out, session=sess)
    rng = stream(seed, "arrivals")
    stage = None
    bounds: tuple[float, ...] = ()
    if w.stages:
        parts, idx, t0 = [], [], 0.0
        starts = []
        for k, (rate, dur) in enumerate(w.stages):
            a = t0 + arrivals(w.arrival, rate, w.cv, None, dur, rng)
            parts.append(a)
            idx.append(np.full(a.shape[0], k, dtype=np.int16))
            starts.append(t0)
            t0 += dur
        arr = np.concatenate(parts)
        stage = np.concatenate(idx)
        bounds = tuple(starts) + (t0,)
    elif w.rate_points:
        arr = thinned(w.rate_points, w.duration_s, rng, stream(seed, "thinning"))
    elif w.arrival == "closed":  # sent when the clients' previous requests end (sim/engine/kernel/clients.py)
        arr = np.zeros(w.num_requests)
    else:
        arr = arrivals(w.arrival, w.rate_per_s, w.cv, w.num_requests, w.duration_s, rng)
    n = arr.shape[0]
    pr = draw_lengths(w.prompt_tokens, n, stream(seed, "prompt_tokens"), "workload.prompt_tokens", base_dir)
    out = draw_lengths(w.output_tokens, n, stream(seed, "output_tokens"), "workload.output_tokens", base_dir)
    group = None
    ptok = 0
    if w.shared_prefix is not None:
        groups, ptok = w.shared_prefix
        group = stream(seed, "prefix_groups").integers(0, groups, size=n).astype(np.int32)
        # A prompt holds its prefix: one no longer than the prefix carries none of it (a prompt
        # needs at least one token of its own).
        group[pr <= ptok] = -1
    cls: np.ndarray | None = None
    if w.classes:
        shares = np.array([c.share for c in w.classes], dtype=float)
        cls = np.asarray(stream(seed, "classes").choice(len(shares), size=n, p=shares / shares.sum()), np.int16)
        for k, c in enumerate(w.classes):
            m = cls == k
            if c.prompt_tokens is not None:
                pr[m] = draw_lengths(c.prompt_tokens, int(m.sum()), stream(seed, f"prompt_tokens:{c.name}"),
                                     f"workload.classes[{k}].prompt_tokens", base_dir)
            if c.output_tokens is not None:
                out[m] = draw_lengths(c.output_tokens, int(m.sum()), stream(seed, f"output_tokens:{c.name}"),
                                      f"workload.classes[{k}].output_tokens", base_dir)
    sess = stream(seed, "sessions").integers(0, w.sessions, size=n) if w.sessions else None
    if w.multi_turn is not None:
        return _sessions(w, seed, arr, stage, bounds, cls, base_dir)
    if w.arrival == "closed":
        think = (draw_times(w.think_time_s, n, stream(seed, "think_time")) if w.think_time_s is not None
                 else np.zeros(n))
        return Workload(arr, pr, out, stage, group, ptok, bounds, cls, sess, clients=int(w.concurrency),
                        think_s=think)
    return Workload(arr, pr, out, stage, group, ptok, bounds, cls, sess)


def draw_times(spec: Mapping[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `n` durations (s, >= 0) from a time distribution spec (config._time_spec)."""
    dist = spec["dist"]
    if dist == "fixed":
        return np.full(n, float(spec["value"]))
    if dist == "exponential":
        return rng.exponential(float(spec["mean"]), size=n)
    if dist == "uniform":
        return rng.uniform(float(spec["min"]), float(spec["max"]), size=n)
    return _lognormal(float(spec["mean"]), float(spec["cv"]), n, rng)


def _lognormal(mean: float, cv: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n lognormal draws with this mean and coefficient of variation."""
    sigma2 = np.log1p(cv * cv)
    mu = np.log(mean) - sigma2 / 2.0
    return rng.lognormal(mu, np.sqrt(sigma2), size=n)


def _sessions(w: Any, seed: int, starts: np.ndarray, stage: Any, bounds: tuple, cls: Any, base_dir: Path) -> Workload:
    """workload.multi_turn: the arrivals `starts` begin sessions; every turn's new message,
    output and the think time after it are drawn per (session, turn) in session order from their
    own streams; turn k's prompt is the history (earlier prompts and outputs) plus its message.
    The turns are then put in arrival order; the session is each turn's prefix group (its
    history is a prefix of its next prompt)."""
    mt = w.multi_turn
    n_s = starts.shape[0]
    turns = draw_lengths(mt.turns, n_s, stream(seed, "turns"), "workload.multi_turn.turns", base_dir)
    # turn k's prompt holds at least 2 (k - 1) tokens of history (a message and an output of at
    # least one token each), so no session reaches a turn past this: clipping draws nothing less
    turns = np.minimum(turns, mt.max_history_tokens // 2 + 2)
    m = int(turns.sum())
    sess = np.repeat(np.arange(n_s, dtype=np.int64), turns)
    first = np.concatenate([[0], np.cumsum(turns)[:-1]])  # each session's first row
    new = draw_lengths(w.prompt_tokens, m, stream(seed, "prompt_tokens"), "workload.prompt_tokens", base_dir)
    out = draw_lengths(w.output_tokens, m, stream(seed, "output_tokens"), "workload.output_tokens", base_dir)
    think = draw_times(mt.think_time_s, m, stream(seed, "think_time"))

    def before(x: np.ndarray) -> np.ndarray:  # per row: the sum of x over the session's earlier rows
        c = np.cumsum(x) - x
        return c - c[first][sess]

    prompt = before(new + out) + new
    t = starts[sess] + before(think)
    # a session ends before its first turn past the history cap (its first turn always runs)
    over = (prompt + out > mt.max_history_tokens) & (np.arange(m) != first[sess])
    keep = before(over.astype(np.int64)) + over == 0
    order = np.argsort(t[keep], kind="stable")
    sess_k = sess[keep][order]
    st = stage[sess][keep][order] if stage is not None else None
    ck = cls[sess][keep][order] if cls is not None else None
    pk = prompt[keep][order]
    return Workload(t[keep][order], pk, out[keep][order], st, sess_k.astype(np.int32), int(pk.max()), bounds, ck,
                    sess_k, history=True)


def read_trace_sessions(path: Path, fmt: str, n: int) -> np.ndarray | None:
    """The `session_id` column of a CSV trace (first n rows in arrival order), if it has one."""
    if fmt != "csv":
        return None
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if "session_id" not in (reader.fieldnames or []):
            return None
        rows = [(float(r["arrival_s"]), i, r["session_id"]) for i, r in enumerate(reader)]
    rows.sort()
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(s, len(ids)) for _, _, s in rows[:n]], dtype=np.int64)
