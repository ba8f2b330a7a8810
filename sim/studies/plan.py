"""`dcsim plan`: the cheapest configuration that meets an SLO at a target rate.

Search space: hardware x TP x scheduler (given lists); for each combination the smallest
replica count that meets the SLO is found by exponential then binary search (SLO attainment
rises with replicas at a fixed rate, so no brute force over counts). Cost = replicas x TP x the
accelerator's hourly rate, per pool ([pools.cost], else [cost], else the catalog's rate,
settable as hardware.<id>.usd_per_accel_hour). The
frontier lists every combination's cheapest passing configuration; the plan is the cheapest.
Every evaluation runs on the scenario's seed (and the next ones with --replications: the SLO must
hold on each), so a `dcsim run` of the answer reproduces it. With --headroom the SLO must hold
with every request's TTFT and TPOT at the prediction intervals' pessimistic end
(slo_attainment_pessimistic, sim/analysis/intervals.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from sim.scenario.config import apply_overrides, parse, read_toml
from sim.scenario.pools import accel_usd_per_hour
from sim.errors import ScenarioError
from sim.studies.study import Task, run_task


def _meets(raw: dict, base: Path, seed: int, attainment: float, headroom: bool = False,
           replications: int = 1) -> tuple[bool, dict]:
    """Whether the configuration meets the SLO on every one of `replications` seeds (from `seed`),
    at the prediction intervals' pessimistic end with `headroom`; the summary of the worst seed."""
    key = "slo_attainment_pessimistic" if headroom else "slo_attainment"
    worst: dict[str, Any] = {}
    for k in range(replications):
        s = run_task(Task(raw, str(base), seed + k))["summary"]
        # an overloaded run can meet an SLO for a while: a plan must be a steady state
        if s.get("stable") is False:
            return False, s
        if not worst or (s.get(key) or 0.0) < (worst.get(key) or 0.0):
            worst = s
    return (worst.get(key) or 0.0) >= attainment, worst


def plan(scenario: str | Path, target_rate: float, slo: dict[str, float] | None = None,
         hardware: Sequence[str] = (), tps: Sequence[int] = (), schedulers: Sequence[str] = (),
         attainment: float = 0.9, max_replicas: int = 512, sets: Sequence[str] = (), headroom: bool = False,
         replications: int = 1) -> dict[str, Any]:
    path = Path(scenario)
    raw0 = apply_overrides(read_toml(path), list(sets) + [f"workload.rate_per_s={target_rate}"])
    if slo:
        raw0["slo"] = dict(raw0.get("slo", {}), **slo)
    if not raw0.get("slo"):
        raise ScenarioError("--slo", "no SLO to plan for", "give --slo ttft_s=0.5,tpot_s=0.05 or an [slo] table")
    # Candidates are validated, not the base: a base that does not fit its own hardware may
    # still be planned onto other hardware or TP.
    pools_raw = raw0.get("pools") or [{}]
    pool0 = pools_raw[0] if isinstance(pools_raw[0], dict) else {}
    hardware = list(hardware) or [pool0.get("hardware", "")]
    tps = list(tps) or [pool0.get("tp", 1)]
    schedulers = list(schedulers) or [pool0.get("scheduler", {}).get("policy", "chunked")]
    if not 0 < attainment <= 1:
        raise ScenarioError("--attainment", f"must be in (0, 1], got {attainment:g}", "give a share, e.g. 0.9")
    if max_replicas < 1:
        raise ScenarioError("--max-replicas", f"must be >= 1, got {max_replicas}")
    if replications < 1:
        raise ScenarioError("--replications", f"must be >= 1, got {replications}", "give a count of seeds, e.g. 3")
    from sim.perf.catalog import builtin_catalog
    cat = builtin_catalog()
    cat.add_models(raw0.get("models", {}), "models")
    model_id = pool0.get("model")
    if model_id in cat.models:
        for tp in tps:
            cat.models[model_id].check_tp(int(tp), "--tp")
    seed = raw0.get("seed", 0)
    frontier, skipped, evals = [], [], 0
    for hw in hardware:
        for tp in tps:
            for pol in schedulers:
                combo = [f'pools.hardware="{hw}"', f"pools.tp={tp}", f'pools.scheduler.policy="{pol}"']
                try:
                    raw_c = apply_overrides(raw0, combo)
                    sc = parse(raw_c, path.parent)
                except ScenarioError as exc:
                    skipped.append({"hardware": hw, "tp": tp, "scheduler": pol, "why": str(exc)})
                    continue
                unpriced = [p.hardware.id for p in sc.pools if accel_usd_per_hour(p, sc.cost) is None]
                if unpriced:
                    skipped.append(
                        {
                            "hardware": hw,
                            "tp": tp,
                            "scheduler": pol,
                            "why": f"no hourly rate for {unpriced[0]}: set hardware.{unpriced[0]}.usd_per_accel_hour, "
                            "[pools.cost] or [cost] usd_per_accel_hour",
                        }
                    )
                    continue
                cache: dict[int, tuple[bool, dict]] = {}

                def test(n: int, cache: dict[int, tuple[bool, dict]] = cache, raw_c: dict = raw_c) -> bool:
                    nonlocal evals
                    if n not in cache:
                        evals += 1
                        cache[n] = _meets(apply_overrides(raw_c, [f"pools.replicas={n}"]), path.parent, seed,
                                          attainment, headroom, replications)
                    return cache[n][0]

                hi = 1
                while hi <= max_replicas and not test(hi):
                    hi *= 2
                if hi > max_replicas and not test(max_replicas):
                    skipped.append({"hardware": hw, "tp": tp, "scheduler": pol,
                                    "why": f"SLO not met with {max_replicas} replicas"})
                    continue
                hi = min(hi, max_replicas)
                lo = hi // 2  # fails (or 0)
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if test(mid):
                        hi = mid
                    else:
                        lo = mid
                s = cache[hi][1]
                at_hi = parse(apply_overrides(raw_c, [f"pools.replicas={hi}"]), path.parent)
                usd_h = sum(p.replicas * p.accels * (accel_usd_per_hour(p, at_hi.cost) or 0.0) for p in at_hi.pools)
                frontier.append(
                    {
                        "hardware": hw,
                        "tp": tp,
                        "scheduler": pol,
                        "replicas": hi,
                        "accelerators": sum(p.replicas * p.accels for p in at_hi.pools),
                        "usd_per_hour": usd_h,
                        "slo_attainment": s["slo_attainment"],
                        "slo_attainment_pessimistic": s.get("slo_attainment_pessimistic"),
                        "ttft_p99_s": s["ttft_p99_s"],
                        "ttft_p99_interval_s": s["prediction_interval"]["ttft_p99_s"],
                        "tpot_p99_s": s["tpot_p99_s"],
                        "one_fewer_attainment": cache[hi - 1][1]["slo_attainment"] if hi - 1 in cache else None,
                    }
                )
    frontier.sort(key=lambda f: (f["usd_per_hour"], f["hardware"], f["tp"], f["scheduler"]))
    best = frontier[0] if frontier else None
    out = {"scenario": str(scenario), "target_rate_per_s": target_rate, "slo": raw0["slo"],
           "attainment": attainment, "headroom": headroom, "replications": replications, "plan": best,
           "frontier": frontier, "skipped": skipped, "evaluations": evals}
    if best:
        out["verify"] = (f"dcsim run {scenario} --set workload.rate_per_s={target_rate} "
                         + " ".join(f"--set {x}" for x in list(sets) + [
                             f"pools.hardware='\"{best['hardware']}\"'", f"pools.tp={best['tp']}",
                             f"pools.scheduler.policy='\"{best['scheduler']}\"'", f"pools.replicas={best['replicas']}"]
                             + [f"slo.{k}={v}" for k, v in raw0["slo"].items()]))
    return out


def table(rep: dict[str, Any]) -> str:
    L = [f"dcsim plan: {rep['scenario']} at {rep['target_rate_per_s']:g} req/s, SLO {rep['slo']} "
         f"at {rep['attainment']:.0%} attainment"
         + (" at the prediction intervals' pessimistic end" if rep.get("headroom") else "")
         + (f" on each of {rep['replications']} seeds" if rep.get("replications", 1) > 1 else "")
         + f" ({rep['evaluations']} runs)", "",
         f"{'hardware':<16} {'TP':>3} {'scheduler':<11} {'replicas':>8} {'accel':>6} {'$/h':>9} {'attain':>7} "
         f"{'p99 TTFT':>9} {'p99 TPOT':>9}"]
    head = rep.get("headroom")
    if head:
        L[-1] += f" {'worst':>7}"
    for f in rep["frontier"]:
        L.append(
            f"{f['hardware']:<16} {f['tp']:>3} {f['scheduler']:<11} {f['replicas']:>8} {f['accelerators']:>6} "
            f"{f['usd_per_hour']:>9.2f} {f['slo_attainment']:>7.3f} {f['ttft_p99_s']:>9.3f} {f['tpot_p99_s']:>9.4f}"
            + (
                f" {f['slo_attainment_pessimistic']:>7.3f}"
                if head and f.get("slo_attainment_pessimistic") is not None
                else ""
            )
        )
    for s in rep["skipped"]:
        L.append(f"skipped {s['hardware']} tp{s['tp']} {s['scheduler']}: {s['why']}")
    if rep["plan"]:
        b = rep["plan"]
        L += ["", f"cheapest: {b['replicas']} x {b['hardware']} (TP{b['tp']}, {b['scheduler']}) at "
                  f"${b['usd_per_hour']:.2f}/h", f"verify: {rep['verify']}"]
    elif rep["evaluations"] == 0:
        L += ["", "nothing could run: every candidate was skipped (reasons above)"]
    else:
        L += ["", "no configuration met the SLO"]
    return "\n".join(L)
