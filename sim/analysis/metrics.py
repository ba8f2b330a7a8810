"""Summaries of a run: request counts, latency percentiles, throughput and utilization.

Definitions (see the README): TTFT = first token - arrival; E2E = finish - arrival; queue =
first scheduled - arrival; a request's TPOT = (finish - first token) / (output tokens - 1) over
requests with at least 2 output tokens. Latency statistics cover completed requests that
arrived at or after `warmup_s`; counts cover every request.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.engine.recorder import COMPLETED, FAILED, IN_FLIGHT, REJECTED
from sim.analysis.intervals import pessimistic_factors, prediction_interval
from sim.scenario.pools import accel_usd_per_hour

SUMMARY_KEYS = (
    "requests_total", "requests_completed", "requests_rejected", "requests_failed", "requests_in_flight",
    "ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p99_s",
    "e2e_mean_s", "e2e_p50_s", "e2e_p99_s", "queue_mean_s", "throughput_output_tok_per_s",
    "throughput_req_per_s", "utilization_mean", "sim_time_s", "wall_time_s", "stable", "instability",
    "prediction_interval",
)


def _stat(x: np.ndarray, fn: str, q: float = 0.0) -> float | None:
    if x.size == 0:
        return None
    if fn == "mean":
        return float(np.mean(x))
    return float(np.percentile(x, q))


def slo_limits(res: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-request (TTFT, TPOT) limits in s (inf = none), from [slo] and class SLOs; None when
    the scenario sets no SLO at all."""
    sc = res.scenario
    classes = sc.workload.classes
    g = sc.slo
    if g.ttft_s is None and g.tpot_s is None and not any(c.slo for c in classes):
        return None
    n = len(res.workload)
    ttft = np.full(n, g.ttft_s if g.ttft_s is not None else np.inf)
    tpot = np.full(n, g.tpot_s if g.tpot_s is not None else np.inf)
    cls = res.workload.cls
    if cls is not None:
        for k, c in enumerate(classes):
            if c.slo is not None:
                m = cls == k
                if c.slo.ttft_s is not None:
                    ttft[m] = c.slo.ttft_s
                if c.slo.tpot_s is not None:
                    tpot[m] = c.slo.tpot_s
    return ttft, tpot


def slo_met(res: Any, ttft_factor: float = 1.0, tpot_factor: float = 1.0) -> np.ndarray | None:
    """Whether each request completed within both of its SLOs (DistServe's definition; a
    one-token output has no TPOT and meets any TPOT SLO), its TTFT and TPOT times the factors
    (the prediction intervals' pessimistic end for plan --headroom)."""
    lim = slo_limits(res)
    if lim is None:
        return None
    wl, tb = res.workload, res.requests
    done = tb.status == COMPLETED
    ttft = tb.first_token_s - wl.arrival_s
    denom = np.maximum(wl.output_tokens - 1, 1)
    tpot = np.where(wl.output_tokens > 1, (tb.finish_s - tb.first_token_s) / denom, 0.0)
    return done & (ttft * ttft_factor <= lim[0] + 1e-12) & (tpot * tpot_factor <= lim[1] + 1e-12)


def request_categories(res: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The per-request table's text columns as (codes, labels): labels[codes] is the column. Kept
    as codes so a writer stores them dictionary-encoded without building a string per row."""
    wl, tb = res.workload, res.requests
    from sim.engine.recorder import STATUS

    n = len(wl)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "status": (tb.status.astype(np.int32), np.array([STATUS[k] for k in range(max(STATUS) + 1)]))}
    code = np.zeros(n, np.int32)
    dcode = np.zeros(n, np.int32)
    seen: dict[str, int] = {"": 0}
    dseen: dict[str, int] = {"": 0}
    for i, r in tb.reason.items():  # only the requests that did not complete
        head, _, rest = str(r).partition(":")
        head, rest = head.strip(), rest.strip()  # the code apart from the message
        code[i] = seen.setdefault(head, len(seen))
        dcode[i] = dseen.setdefault(rest, len(dseen))
    out["reason"] = (code, np.array(list(seen)))
    out["reason_detail"] = (dcode, np.array(list(dseen)))
    classes = res.scenario.workload.classes
    if wl.cls is not None and classes:
        out["class"] = (wl.cls.astype(np.int32), np.array([c.name for c in classes]))
    sc = res.scenario
    default = sc.pools[0].model.id
    if classes and wl.cls is not None:
        out["model"] = (wl.cls.astype(np.int32), np.array([c.model if c.model is not None else default
                                                            for c in classes]))
    else:
        out["model"] = (np.zeros(n, np.int32), np.array([default]))
    names = [p.name for p in sc.pools]
    pool_of = np.array([names.index(r.pool) for r in res.replicas] + [len(names)], np.int32)
    out["pool"] = (pool_of[np.where(tb.replica >= 0, tb.replica, len(res.replicas))], np.array(names + [""]))
    return out


def request_columns(res: Any, text: bool = True) -> dict[str, np.ndarray]:
    """The per-request table as columns (one row per request, in arrival order); text columns
    (status, reason, class, model, pool) as strings, or left out with `text=False`
    (request_categories has them as codes)."""
    wl, tb = res.workload, res.requests
    arr = wl.arrival_s
    done = tb.status == COMPLETED
    ttft = np.where(done, tb.first_token_s - arr, np.nan)
    e2e = np.where(done, tb.finish_s - arr, np.nan)
    denom = wl.output_tokens - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(done & (denom > 0), (tb.finish_s - tb.first_token_s) / np.maximum(denom, 1), np.nan)
    queue = np.where(tb.start_s >= 0, tb.start_s - arr, np.nan)
    cats = request_categories(res) if text else {}
    txt = {k: labels[codes] for k, (codes, labels) in cats.items()}  # "" pool: served by none
    extra: dict[str, np.ndarray] = {}
    if "class" in txt:
        extra["class"] = txt["class"]
    if wl.session is not None:
        extra["session"] = wl.session
    if tb.client is not None:  # closed-loop clients: who sent it (arrival_s: when)
        extra["client"] = tb.client
    for k in ("model", "pool"):
        if k in txt:
            extra[k] = txt[k]
    met = slo_met(res)
    if met is not None:
        extra["slo_met"] = met
    cols = {
        **{"request_id": np.arange(len(arr), dtype=np.int64), "arrival_s": arr},
        "prompt_tokens": wl.prompt_tokens, "output_tokens": wl.output_tokens,
        "start_s": tb.start_s, "first_token_s": tb.first_token_s, "finish_s": tb.finish_s,
        "ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e, "queue_s": queue,
        "replica": tb.replica, "status": txt.get("status"), "reason": txt.get("reason"),
        "reason_detail": txt.get("reason_detail"), "preemptions": tb.preemptions,
        "prefill_replica": tb.prefill_replica, "decode_replica": tb.decode_replica, "kv_transfer_s": tb.kv_transfer_s,
        **extra,
    }
    return cols if text else {k: v for k, v in cols.items() if v is not None}


def saturation(res: Any) -> dict[str, Any]:
    """How full the replicas ran, beside utilization_mean (the share of time a step was running,
    which is near 1 on any replica that always has something to decode):

    - kv_used_mean: the time-averaged KV the running sequences held over the replicas' KV
      capacity. From the requests' times: a sequence holds half its prompt while it prefills
      (first scheduled to first token) and its prompt plus half its output while it decodes
      (KV growing a token a step); prefix-cache sharing is not subtracted (an upper bound there).
    - batch_fill_mean: the time-averaged running sequences (first scheduled to finish) over the
      replicas' batch limit (max_batch_size).
    - queue_share_of_latency: mean queueing delay over mean end-to-end latency.
    Analytic-service pools ([pools.service]) are left out of the first two."""
    tb, wl = res.requests, res.workload
    T = res.sim_time_s
    out: dict[str, Any] = {"kv_used_mean": None, "batch_fill_mean": None}
    by_pool = {p.name: p for p in res.scenario.pools}
    engine = np.array([by_pool[r.pool].service is None for r in res.replicas] + [False])
    ran = (tb.start_s >= 0) & ((tb.status == COMPLETED) | (tb.status == IN_FLIGHT))
    ran &= engine[np.where(tb.replica >= 0, tb.replica, len(res.replicas))]
    slots = sum(by_pool[r.pool].scheduler.max_batch_size for r in res.replicas if by_pool[r.pool].service is None)
    cap_tok = sum(r.total_blocks * by_pool[r.pool].scheduler.block_size for r in res.replicas
                  if by_pool[r.pool].service is None)
    if T > 0 and slots:
        end_all = np.where(tb.finish_s >= 0, tb.finish_s, T)  # in flight at the end: running to it
        end, start = end_all[ran], tb.start_s[ran]
        first = np.where(tb.first_token_s >= 0, tb.first_token_s, end_all)[ran]
        out["batch_fill_mean"] = float(np.sum(end - start)) / (T * slots)
        if cap_tok:
            kv = (wl.prompt_tokens[ran] * 0.5 * (first - start)
                  + (wl.prompt_tokens[ran] + 0.5 * wl.output_tokens[ran]) * (end - first))
            out["kv_used_mean"] = min(1.0, float(np.sum(kv)) / (T * cap_tok))
    return out


def prefix_cache(res: Any) -> dict[str, Any]:
    """Prefix-cache hit rate (prompt tokens found cached at admission over those admitted), in
    all and per pool with prefix caching on; empty when no pool caches."""
    pools = [p.name for p in res.scenario.pools if p.service is None and p.scheduler.prefix_caching]
    if not pools:
        return {}
    by = {}
    for name in pools:
        reps = [r for r in res.replicas if r.pool == name]
        adm = sum(r.admitted_tokens for r in reps)
        by[name] = sum(r.prefix_hit_tokens for r in reps) / adm if adm else 0.0
    adm = sum(r.admitted_tokens for r in res.replicas if r.pool in pools)
    hit = sum(r.prefix_hit_tokens for r in res.replicas if r.pool in pools)
    out = {"prefix_cache_hit_rate": hit / adm if adm else 0.0, "prefix_cache_hit_rate_by_pool": by}
    tiers = {p.name: p.kv_offload.tier for p in res.scenario.pools if p.kv_offload is not None}
    if tiers:  # hits per tier (tokens) and the bytes each way over the tier's link
        reps = [r for r in res.replicas if r.pool in tiers]
        bs = {p.name: p.scheduler.block_size for p in res.scenario.pools}
        by_tier: dict[str, int] = {"hbm": hit}
        for r in reps:
            tok = r.tier_hit_blocks * bs[r.pool]
            by_tier["hbm"] -= tok
            by_tier[tiers[r.pool]] = by_tier.get(tiers[r.pool], 0) + tok
        out["prefix_hit_tokens_by_tier"] = by_tier
        out["kv_tier_bytes_loaded"] = float(sum(r.tier_hit_blocks * r.block_bytes for r in reps))
        out["kv_tier_bytes_offloaded"] = float(sum(r.offloaded_blocks * r.block_bytes for r in reps))
    return out


def summarize(res: Any) -> dict[str, Any]:
    """The summary JSON object of a run (keys in SUMMARY_KEYS, then extras)."""
    wl, tb = res.workload, res.requests
    warm = res.scenario.workload.warmup_s
    st = tb.status
    n = len(wl)
    counts = {k: int(np.sum(st == c)) for k, c in
              (("completed", COMPLETED), ("rejected", REJECTED), ("failed", FAILED), ("in_flight", IN_FLIGHT))}
    arr = wl.arrival_s
    sel = (st == COMPLETED) & (arr >= warm)
    lat = latency_stats(res, sel)
    out_tok = wl.output_tokens[sel]
    # the whole run's figures (warm-up end to the last completion, drain included): they depend on
    # the run's length, so the headline figures are the steady state's (measurement_window)
    t_end = float(np.max(tb.finish_s[sel])) if sel.any() else res.sim_time_s
    run_window = max(t_end - warm, 1e-12)
    win = measurement_window(res)
    t0, t1 = win["measurement_window_s"]
    window = max(t1 - t0, 1e-12)
    fin = tb.finish_s
    in_win = (st == COMPLETED) & (fin > t0) & (fin <= t1)
    util = [r.busy_s / res.sim_time_s if res.sim_time_s > 0 else 0.0 for r in res.replicas]
    reasons: dict[str, int] = {}
    for r in tb.reason.values():
        key = r.split(":", 1)[0]
        reasons[key] = reasons.get(key, 0) + 1
    s: dict[str, Any] = {
        "requests_total": n,
        "requests_completed": counts["completed"],
        "requests_rejected": counts["rejected"],
        "requests_failed": counts["failed"],
        "requests_in_flight": counts["in_flight"],
        **lat,
        "throughput_output_tok_per_s": win["window_output_tokens"] / window,
        "output_tokens_completed": int(wl.output_tokens[st == COMPLETED].sum()),
        "arrival_span_s": float(arr[-1] - arr[0]) if len(arr) > 1 else 0.0,
        "clients": int(res.workload.clients),  # closed-loop clients (0: open-loop arrivals)
        "throughput_req_per_s": float(in_win.sum()) / window,
        **win,
        "run_throughput_output_tok_per_s": float(out_tok.sum()) / run_window,
        "run_throughput_req_per_s": float(sel.sum()) / run_window,
        "utilization_mean": float(np.mean(util)) if util else 0.0,  # busy share (saturation: below)
        "sim_time_s": res.sim_time_s,
        "wall_time_s": res.wall_time_s,
        "preemptions_total": int(tb.preemptions.sum()),
        "littles_law_rel_err": _littles_law_gap(res),
        "reasons": dict(sorted(reasons.items())),
        "warmup_s": warm,
        "replicas": len(res.replicas),
        "kv_blocks_total": {str(r.rid): r.total_blocks for r in res.replicas},
        "engine": res.engine,  # which engine ran it (same per-request results)
    }
    s.update(saturation(res))
    e2e_mean, q_mean = s.get("e2e_mean_s"), s.get("queue_mean_s")
    s["queue_share_of_latency"] = q_mean / e2e_mean if e2e_mean and q_mean is not None else None
    s.update(energy_and_cost(res, win))
    s.update(prefix_cache(res))
    s["calibration_status"] = {p.hardware.id: p.hardware.calibration_status
                               for p in res.scenario.pools if p.service is None}
    s.update(stability(res))
    s["prediction_interval"], s["prediction_interval_basis"] = prediction_interval(s)
    met = slo_met(res)
    counted = (arr >= warm) & (st != IN_FLIGHT)
    if met is not None:
        s["slo_ttft_s"] = res.scenario.slo.ttft_s
        s["slo_tpot_s"] = res.scenario.slo.tpot_s
        s["slo_attainment"] = float(np.sum(met & counted) / max(1, counted.sum()))
        s["goodput_req_per_s"] = float(np.sum(met & in_win)) / window
        if s["calibration_status"]:  # every request at the intervals' pessimistic end (plan --headroom)
            worse = slo_met(res, *pessimistic_factors(s["calibration_status"]))
            s["slo_attainment_pessimistic"] = float(np.sum(worse & counted) / max(1, counted.sum()))
    classes = res.scenario.workload.classes
    if wl.cls is not None and classes:
        s["classes"] = []
        for k, c in enumerate(classes):
            in_k = wl.cls == k
            sel_k = sel & in_k
            d = {"name": c.name, "priority": c.priority, "requests": int(in_k.sum()),
                 "completed": int(np.sum(in_k & (st == COMPLETED))), **latency_stats(res, sel_k)}
            if met is not None:
                ck = counted & in_k
                d["slo_attainment"] = float(np.sum(met & ck) / max(1, ck.sum()))
                d["goodput_req_per_s"] = float(np.sum(met & in_win & in_k)) / window
            s["classes"].append(d)
    if res.autoscale is not None or res.sim_time_s >= 2 * 3600.0:  # a day's run: what each hour cost and met
        s["hourly"] = hourly(res)
    if wl.stage is not None and len(wl.stage_bounds_s) > 1:
        stages = []
        for k in range(len(wl.stage_bounds_s) - 1):
            in_k = wl.stage == k
            t0, t1 = wl.stage_bounds_s[k], wl.stage_bounds_s[k + 1]
            stages.append({
                "stage": k, "start_s": t0, "end_s": t1,
                "offered_rate_per_s": float(in_k.sum()) / (t1 - t0),
                "requests": int(in_k.sum()), "completed": int(np.sum(in_k & (st == COMPLETED))),
                "failed": int(np.sum(in_k & (st == FAILED))), "rejected": int(np.sum(in_k & (st == REJECTED))),
                **latency_stats(res, in_k & (st == COMPLETED)),
            })
        s["stages"] = stages
    return s


# The steady state's measurement window starts once the pipeline has filled: warmup_s when the
# scenario gives one, else the first arrival plus this percentile of the completed requests'
# end-to-end latency (what a measured run knows too), capped at half the arrival span (an
# overloaded run's queueing would otherwise push it to the end; its output rate is steady long
# before).
FILL_PERCENTILE = 90


def measurement_window(res: Any) -> dict[str, Any]:
    """The steady-state window of a run (steady_window over its requests)."""
    wl, tb = res.workload, res.requests
    return steady_window(wl.arrival_s, tb.first_token_s, tb.finish_s, tb.status == COMPLETED,
                         wl.output_tokens, res.scenario.workload.warmup_s, res.sim_time_s)


def steady_window(arr: np.ndarray, first: np.ndarray, fin: np.ndarray, done: np.ndarray, out_tok: np.ndarray,
                  warm: float, end_s: float) -> dict[str, Any]:
    """The steady-state window [t0, t1] and what it rests on: t0 after the warm-up (or the
    pipeline's fill), t1 the last arrival (a closed loop's: its last request sent). Within it,
    output tokens are counted as produced (a request's first token at its first-token time, the
    rest evenly between it and its finish), so throughput, goodput and $/Mtoken do not depend on
    the run's length; what runs after t1 (the drain) is reported apart (drain_s,
    drain_output_tokens). A run with no such window (every arrival at once, or no completion in
    it) is measured over the whole run, from the first arrival to the last completion. The same
    for a simulated run and a measured one (dcsim observe)."""
    out_tok = np.asarray(out_tok, dtype=float)
    sent = np.isfinite(arr)
    last_fin = float(fin[done].max()) if done.any() else end_s
    a0 = float(arr[sent].min()) if sent.any() else 0.0
    t1 = float(arr[sent].max()) if sent.any() else 0.0
    if warm > 0:
        t0, basis = warm, f"from warmup_s ({warm:g} s) to the last arrival"
    else:
        e2e = (fin - arr)[done]
        fill = float(np.percentile(e2e, FILL_PERCENTILE)) if e2e.size else 0.0
        fill = min(fill, 0.5 * (t1 - a0))
        t0 = a0 + fill
        basis = (f"from the first arrival plus the p{FILL_PERCENTILE} end-to-end latency ({fill:.3g} s: the "
                 "pipeline filled) to the last arrival")
    if not (t1 > t0) or not np.any(done & (fin > t0) & (fin <= t1)):
        t0, t1 = (warm if warm > 0 else a0), max(last_fin, a0)
        basis = "the whole run, first arrival to last completion (no steady-state window: arrivals too short)"
    produced = tokens_between(first[done], fin[done], out_tok[done], t0, t1)
    drained = tokens_between(first[done], fin[done], out_tok[done], t1, np.inf)
    return {"measurement_window_s": [t0, t1], "measurement_window_basis": basis,
            "window_output_tokens": produced,
            "drain_s": max(0.0, last_fin - t1), "drain_output_tokens": drained}


def tokens_between(first_s: np.ndarray, finish_s: np.ndarray, out_tok: np.ndarray, t0: float, t1: float) -> float:
    """Output tokens produced in (t0, t1]: each request's first at first_s, the other n-1 evenly
    over (first_s, finish_s] (a step at a time in fact; per-step times are not kept)."""
    if first_s.size == 0:
        return 0.0
    one = ((first_s > t0) & (first_s <= t1)).astype(float)
    span = finish_s - first_s
    lo, hi = np.maximum(first_s, t0), np.minimum(finish_s, t1)
    share = np.where(span > 0, np.clip(hi - lo, 0.0, None) / np.where(span > 0, span, 1.0),
                     ((finish_s > t0) & (finish_s <= t1)).astype(float))
    return float(np.sum(one + (out_tok - 1.0).clip(0.0) * share))


def latency_stats(res: Any, sel: np.ndarray) -> dict[str, float | None]:
    """TTFT, TPOT, E2E and queueing statistics (s) over the requests selected by mask `sel`."""
    wl, tb = res.workload, res.requests
    arr = wl.arrival_s[sel]
    ttft = tb.first_token_s[sel] - arr
    e2e = tb.finish_s[sel] - arr
    queue = tb.start_s[sel] - arr
    out_tok = wl.output_tokens[sel]
    multi = out_tok > 1
    tpot = (tb.finish_s[sel][multi] - tb.first_token_s[sel][multi]) / (out_tok[multi] - 1)
    out: dict[str, float | None] = {}
    for name, x, qs in (("ttft", ttft, (50, 90, 99)), ("tpot", tpot, (50, 90, 99)), ("e2e", e2e, (50, 90, 99)),
                        ("queue", queue, (99,))):
        out[f"{name}_mean_s"] = _stat(x, "mean")
        # the percentiles of one column in one pass (one partition for all of them)
        ps = np.percentile(x, qs) if x.size else [None] * len(qs)
        for q, v in zip(qs, ps, strict=False):
            out[f"{name}_p{q}_s"] = None if v is None else float(v)
    return out


def time_average_in_system(res: Any, t_end: float | None = None) -> float:
    """Time-averaged number of requests in the system, from the recorded step function."""
    t = res.in_system_t_s
    n = res.in_system_n
    t_end = res.sim_time_s if t_end is None else t_end
    if t.size == 0 or t_end <= 0:
        return 0.0
    dt = np.diff(np.append(t, t_end))
    return float(np.sum(n * dt) / t_end)


def _littles_law_gap(res: Any) -> float | None:
    """|L - lambda W| / (lambda W) over the whole run, with L integrated from the recorded
    number-in-system and W from per-request times: a self-check printed with every drained run
    (None when requests remain in flight, where the identity needs boundary terms)."""
    tb = res.requests
    done = (tb.status == COMPLETED) | (tb.status == FAILED)  # every request that entered and left
    if (tb.status == IN_FLIGHT).any() or not done.any() or res.sim_time_s <= 0:
        return None
    lam_w = float(np.sum(tb.finish_s[done] - res.workload.arrival_s[done])) / res.sim_time_s
    if lam_w == 0:
        return 0.0
    return abs(time_average_in_system(res) - lam_w) / lam_w


# A run is called unstable when, over the second half of its arrivals (after warm-up), the
# requests in the system grew by more than this share of the arrivals in that half: departures
# at least 10% below arrivals. Statistical noise in a stable queue is far smaller at the run
# lengths dcsim is used at (M/M/1 at rho 0.9 holds ~10 +- 10 requests; tests/test_stability.py).
GROWTH_SHARE = 0.10
GROWTH_MIN_REQUESTS = 20  # and by at least this many requests (short runs)
WAIT_GROWTH = 2.0  # or the last quarter of arrivals waited this many times the second quarter's


def stability(res: Any) -> dict[str, Any]:
    """`stable` and `instability` of a run: whether it reached a steady state, judged from the
    number of requests in the system (arrived, not yet completed, failed or rejected) at the
    middle and at the end of the measured arrivals, and from the growth of queueing delay. A run
    whose arrivals outpace its departures reports "arrival rate above capacity"; one whose
    waiting grows without that, "queue growing". Finite overloaded runs otherwise look like
    steady states with large latencies."""
    wl, tb = res.workload, res.requests
    arr = wl.arrival_s
    warm = res.scenario.workload.warmup_s
    a = arr[arr >= warm]
    if a.size < 8:
        return {"stable": None, "instability": "too few requests to judge"}
    dep = np.where(tb.status == REJECTED, arr, np.where(tb.status == IN_FLIGHT, np.inf, tb.finish_s))
    dep = np.sort(np.where(dep < 0, np.inf, dep))
    t_mid, t_end = float(a[a.size // 2]), float(a[-1])

    def in_system(t: float) -> int:
        return int(np.searchsorted(arr, t, side="right") - np.searchsorted(dep, t, side="right"))

    arrived = int(np.searchsorted(arr, t_end, side="right") - np.searchsorted(arr, t_mid, side="right"))
    growth = in_system(t_end) - in_system(t_mid)
    if arrived > 0 and growth > GROWTH_MIN_REQUESTS and growth > GROWTH_SHARE * arrived:
        return {"stable": False, "instability": (
            f"arrival rate above capacity: {growth} more requests in the system at the last arrival than at the "
            f"middle one; departures {growth / arrived:.0%} below arrivals in between")}
    sel = (arr >= warm) & (tb.status == COMPLETED)
    q = (tb.start_s - arr)[sel]
    if q.size >= 8:
        k = q.size // 4
        early, late = float(np.mean(q[k:2 * k])), float(np.mean(q[3 * k:]))
        if late > WAIT_GROWTH * early and late - early > 1.0:
            return {"stable": False, "instability": (
                f"queue growing: the last quarter of requests waited {late:.3g} s on average, the second "
                f"quarter {early:.3g} s")}
    return {"stable": True, "instability": None}


def fuel_and_capex(fac: Any, led: Any, T: float) -> tuple[float, float, float]:
    """(fuel $, MWh generated by fuelled turbines, amortised capex $ over T s) of a facility.
    The turbines deliver what the grid does not: the facility's energy less the battery's and
    less the grid at its capacity over the run (grid first; exact when the load stays above the
    grid's capacity or no grid is declared). Turbine energy is split between sources by rating."""
    if fac is None or not fac.sources:
        return 0.0, 0.0, 0.0
    years = T / (365.25 * 24 * 3600.0)
    capex = sum(s.capex_usd_per_mw * s.units * s.unit_mw / s.amortization_years * years
                for s in fac.sources if s.kind == "gas_turbine" and s.capex_usd_per_mw)
    capex += sum(t.capex_usd / t.amortization_years * years for t in fac.tents if t.capex_usd)
    turb = [s for s in fac.sources if s.kind == "gas_turbine"]
    grid_w = sum(s.unit_mw * 1e6 for s in fac.sources if s.kind == "grid")
    # what the sources delivered: the load, the battery's recharge and what the turbines burnt at
    # their minimum load beyond it, less what the battery returned
    delivered_j = led.energy_fac_j + led.battery_charged_j + led.min_burn_j - led.battery_used_j
    gen_mwh = max(0.0, delivered_j - grid_w * T) / 3.6e9
    rating = sum(s.units * s.unit_mw for s in turb)
    fuel = fuel_mwh = 0.0
    for s in turb:
        if s.heat_rate_btu_per_kwh is not None and rating > 0:
            mwh = gen_mwh * s.units * s.unit_mw / rating
            fuel_mwh += mwh
            fuel += mwh * 1e3 * s.heat_rate_btu_per_kwh / 1e6 * s.usd_per_mmbtu
    return fuel, fuel_mwh, capex


def replica_hours(res: Any) -> dict[str, float]:
    """Replica-hours per pool: an autoscaled pool's billed time (sim/engine/autoscale.py), every
    replica for the whole run otherwise."""
    hours = max(res.sim_time_s, 0.0) / 3600.0
    billed = res.autoscale.replica_hours() if res.autoscale is not None else {}
    return {p.name: billed[p.name] if p.name in billed else p.replicas * hours for p in res.scenario.pools}


def billed_spans(res: Any) -> list[tuple[str, float, float, int]]:
    """(pool, from s, to s, replicas) billed: an autoscaled pool's intervals, else all the run."""
    T = res.sim_time_s
    auto = set(res.autoscale.billed_s) if res.autoscale is not None else set()
    spans = [(p.name, 0.0, T, p.replicas) for p in res.scenario.pools if p.name not in auto]
    if res.autoscale is not None:
        spans += [(pool, t0, t1, 1) for pool, _r, t0, t1 in res.autoscale.intervals]
    return spans


def hourly(res: Any, width_s: float = 3600.0) -> list[dict[str, Any]]:
    """Per hour of the run (by arrival): requests, completions, output tokens, SLO attainment
    (None without an SLO), p90 TTFT, the mean replicas billed and their replica-hours, and the
    accelerators' cost and $/Mtoken in that hour (rent of the replica-hours only: energy and the
    facility are in the run's totals)."""
    sc, wl, tb = res.scenario, res.workload, res.requests
    T = res.sim_time_s
    # hours up to the last arrival; the last one also takes the tail the run spends draining
    last = float(wl.arrival_s.max()) if len(wl.arrival_s) else 0.0
    n_h = max(1, int(np.floor(min(last, T) / width_s)) + 1)
    hour = np.minimum((wl.arrival_s // width_s).astype(np.int64), n_h - 1)
    done = tb.status == COMPLETED
    met = slo_met(res)
    counted = tb.status != IN_FLIGHT
    ttft = tb.first_token_s - wl.arrival_s
    # billed replica-seconds per pool and hour: an autoscaled pool's intervals, else all the run
    billed = {p.name: np.zeros(n_h) for p in sc.pools}
    edges = np.arange(n_h + 1) * width_s
    edges[-1] = max(edges[-1], T)
    for pool, t0, t1, k in billed_spans(res):
        over = np.clip(np.minimum(edges[1:], t1) - np.maximum(edges[:-1], t0), 0.0, None)
        billed[pool] += k * over
    price = {p.name: p.accels * (accel_usd_per_hour(p, sc.cost) or 0.0) for p in sc.pools}
    # per-hour sums in one pass each (a day at 10^6 requests: no per-hour masks over every request)
    reqs = np.bincount(hour, minlength=n_h)
    comp = np.bincount(hour[done], minlength=n_h)
    toks = np.bincount(hour[done], weights=wl.output_tokens[done], minlength=n_h)
    cnt = np.bincount(hour[counted], minlength=n_h)
    met_h = np.bincount(hour[met & counted], minlength=n_h) if met is not None else None
    order = np.argsort(hour[done], kind="stable")  # completed requests grouped by hour
    ttft_sorted = ttft[done][order]
    cuts = np.concatenate([[0], np.cumsum(comp)])
    rows = []
    for h in range(n_h):
        tok = float(toks[h])
        span = min(edges[h + 1], T) - edges[h]
        rh = {pool: float(v[h]) / 3600.0 for pool, v in billed.items()}
        usd = sum(rh[pool] * price[pool] for pool in rh)
        part = ttft_sorted[cuts[h]:cuts[h + 1]]
        row = {"hour": h, "start_s": float(edges[h]), "end_s": float(min(edges[h + 1], T)),
               "requests": int(reqs[h]), "completed": int(comp[h]), "output_tokens": int(tok),
               "slo_attainment": float(met_h[h]) / int(cnt[h]) if met_h is not None and cnt[h] else None,
               "ttft_p90_s": float(np.percentile(part, 90)) if part.size else None,
               "replicas_mean": sum(rh.values()) * 3600.0 / span if span > 0 else 0.0,
               "replica_hours": rh, "accelerator_usd": usd,
               "accelerator_usd_per_mtok": usd / (tok / 1e6) if tok else None}
        rows.append(row)
    return rows


def energy_and_cost(res: Any, win: dict[str, Any] | None = None) -> dict[str, Any]:
    """Energy (J), power (W) and cost (USD) figures of a run.

    energy_j is facility energy (IT x PUE; PUE 1 without a [facility]); cost covers the
    accelerators' replica-hours (every replica for the simulated time, an autoscaled pool's
    billed hours; rent, or capex amortised per hour), the
    energy at usd_per_mwh, and the facility overhead per hour.
    cost_per_mtok_usd is the steady state's (`win`, measurement_window): the accelerators billed
    within the window and the rest at the run's mean rate, over the tokens produced in it;
    run_cost_per_mtok_usd is the whole run's cost over every completed token (drain included).
    Both are None when a part has no price (a cost of 0 would read as free)."""
    led = res.ledger
    out: dict[str, Any] = {}
    if led is None:
        return out
    T = max(res.sim_time_s, 1e-12)
    done = res.requests.status == COMPLETED
    out_tok = float(res.workload.output_tokens[done].sum())
    out["energy_j"] = led.energy_fac_j
    out["energy_it_j"] = led.energy_it_j
    out["energy_per_output_tok_j"] = led.energy_fac_j / out_tok if out_tok else None
    out["it_power_mean_w"] = led.energy_it_j / T
    out["facility_power_mean_w"] = led.energy_fac_j / T
    out["facility_power_peak_w"] = led.peak_fac_w
    if res.power_peak_window_s is not None:  # compiled engine: peak of the mean over bins this wide
        out["facility_power_peak_window_s"] = res.power_peak_window_s
    out["power_limit_exceeded_s"] = led.exceeded_s
    out["battery_used_j"] = led.battery_used_j
    out["ramp_limit_exceeded_s"] = led.ramp_exceeded_s  # short of power while the turbines ramp up
    out["battery_charged_j"] = led.battery_charged_j  # drawn from the supply to recharge
    out["below_min_load_s"] = led.below_min_s  # the turbines' load under their minimum stable load
    out["min_load_burn_mwh"] = led.min_burn_j / 3.6e9  # burnt at that minimum beyond the load
    ts, fw = led.samples["t_s"], led.samples["facility_w"]
    rates = [abs(fw[k] - fw[k - 1]) / (ts[k] - ts[k - 1]) for k in range(1, len(ts)) if ts[k] > ts[k - 1]]
    # the facility load's fastest change between two of the manager's samples (MW/s)
    out["max_ramp_mw_per_s"] = max(rates) / 1e6 if rates else 0.0
    sup = [a - b for a, b in zip(led.samples["supply_w"], fw, strict=False) if a == a]  # (NaN: no supply declared)
    # spinning reserve: the least headroom of the live supply over the load, at the samples (MW)
    out["spinning_reserve_min_mw"] = min(sup) / 1e6 if sup else None
    out["supply_drops"] = res.facility.supply_drops
    out["node_failures"] = res.facility.node_failures
    sc = res.scenario
    c = sc.cost
    hours = T / 3600.0
    acc_usd = 0.0
    rh = replica_hours(res)
    for p in sc.pools:
        acc_usd += rh[p.name] * p.accels * (accel_usd_per_hour(p, c) or 0.0)
    out["replica_hours"] = rh  # an autoscaled pool's billed hours (starting, serving, draining)
    if res.autoscale is not None:
        log = res.autoscale
        out["autoscaler"] = {p: {"cold_starts": log.cold_starts[p], "drains": log.drains[p]} for p in log.billed_s}
    fuel_usd, fuel_mwh, capex_usd = fuel_and_capex(sc.facility, led, T)
    energy_usd = max(0.0, led.energy_fac_j / 3.6e9 - fuel_mwh) * (c.usd_per_mwh if c else 0.0)
    fac_usd = hours * (c.facility_usd_per_hour if c else 0.0)
    out["cost_usd"] = acc_usd + energy_usd + fac_usd + fuel_usd + capex_usd
    out["cost_breakdown_usd"] = {"accelerators": acc_usd, "energy": energy_usd, "facility": fac_usd}
    if fuel_usd or capex_usd:
        out["cost_breakdown_usd"].update(fuel=fuel_usd, capex=capex_usd)
    priced = all(accel_usd_per_hour(p, c) is not None for p in sc.pools)
    out["run_cost_per_mtok_usd"] = out["cost_usd"] / (out_tok / 1e6) if out_tok and priced else None
    out["cost_per_mtok_usd"] = out["run_cost_per_mtok_usd"]
    if win is not None and priced:
        w0, w1 = win["measurement_window_s"]
        price = {p.name: p.accels * (accel_usd_per_hour(p, c) or 0.0) for p in sc.pools}
        acc_win = sum(k * price[pool] * max(0.0, min(b, w1) - max(a, w0)) / 3600.0
                      for pool, a, b, k in billed_spans(res))
        rest_rate = (out["cost_usd"] - acc_usd) / T  # energy, facility, fuel, capex per second
        tok = win["window_output_tokens"]
        out["cost_per_mtok_usd"] = (acc_win + rest_rate * (w1 - w0)) / (tok / 1e6) if tok else None
    return out
