"""`dcsim plan`: the cheapest configuration that meets an SLO at a target rate, for what the
scenario describes: one pool, several pools (prefill and decode roles, several models), or a
fleet of cells.

Search space: per pool, hardware x TP x scheduler (given lists; `POOL:VALUE` entries when the
scenario has several pools; a pool not named keeps its own). For each combination the counts
are searched: each pool's replicas (a fleet: each kind's cell count, each cell as declared).
First every count doubles together from 1 until the SLO holds; then each count in turn, the
costliest unit first, is cut to the smallest that still holds with the others fixed (binary
search: SLO attainment rises with capacity at a fixed rate), until no count moves. With one
pool this is the exact smallest replica count; with several it is a configuration in which no
single count can be lowered (a local minimum of the cost, said in the report).

Cost = sum over pools of replicas x accelerators per replica x that pool's own hourly rate
([pools.cost], else [cost], else the catalog's rate, settable as
hardware.<id>.usd_per_accel_hour); a pool moved to other hardware takes the price declared for
that hardware in the scenario (a [pools.cost] belongs to the part it was declared with). A
fleet's cost is each kind's count x its cell's cost. Every evaluation runs on the scenario's
seed (and the next ones with --replications: the SLO must hold on each), so the verify command
reproduces it. With --headroom the SLO must hold with every request's TTFT and TPOT at the
prediction intervals' pessimistic end (slo_attainment_pessimistic, sim/analysis/intervals.py).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sim.analysis.intervals import why_wide
from sim.errors import ScenarioError
from sim.scenario.config import Scenario, apply_overrides, parse, read_toml
from sim.scenario.pools import accel_usd_per_hour
from sim.studies.cells import fleet_cells
from sim.studies.study import Task, run_task, seed_stride

POOL_COST_KEYS = ("usd_per_accel_hour", "capex_usd_per_accel", "amortization_years")  # [pools.cost]
MAX_ROUNDS = 4  # rounds of the per-count descent (each round moves at least one count, or stops)


@dataclass(frozen=True)
class Dim:
    """One searched count: a pool's replicas or a fleet kind's cells."""

    name: str  # the pool's or the kind's name
    path: str  # the --set key that sets it
    what: str  # "replicas" or "cells"


def _meets(raw: dict, base: Path, seeds: Sequence[int], attainment: float,
           headroom: bool = False) -> tuple[bool, dict]:
    """Whether the configuration meets the SLO on every seed, at the prediction intervals'
    pessimistic end with `headroom`; the summary of the worst seed."""
    key = "slo_attainment_pessimistic" if headroom else "slo_attainment"
    worst: dict[str, Any] = {}
    for seed in seeds:
        s = run_task(Task(raw, str(base), seed))["summary"]
        # an overloaded run can meet an SLO for a while: a plan must be a steady state
        if s.get("stable") is False:
            return False, s
        if not worst or (s.get(key) or 0.0) < (worst.get(key) or 0.0):
            worst = s
    return (worst.get(key) or 0.0) >= attainment, worst


def _pool_names(pools: list[Any]) -> list[str]:
    return [str(p.get("name", f"pool{k}")) if isinstance(p, dict) else f"pool{k}" for k, p in enumerate(pools)]


def _pool_ref(pools: list[Any], k: int) -> str:
    """How --set names pool k: its name where it has one (and no other pool shares it), else its index."""
    n = pools[k].get("name") if isinstance(pools[k], dict) else None
    alike = sum(1 for p in pools if isinstance(p, dict) and p.get("name") == n)
    return str(n) if n and alike == 1 and not str(n).isdigit() else str(k)


def per_pool(flag: str, values: Sequence[str], names: list[str]) -> list[list[str | None]]:
    """Each pool's candidates from a flag's entries (`POOL:VALUE`, or plain values for a scenario
    of one pool); [None] (keep the pool's own) for a pool not named."""
    out: list[list[str | None]] = [[] for _ in names]
    for v in values:
        pool, sep, val = v.rpartition(":")
        if not sep:
            if len(names) > 1:
                raise ScenarioError(flag, f"the scenario has {len(names)} pools ({', '.join(names)}): say which pool "
                                    f"{v!r} is for", f"write e.g. {flag} {names[0]}:{v}")
            pool, val = names[0], v
        if pool not in names:
            raise ScenarioError(flag, f"no pool named {pool!r}", f"use one of {', '.join(names)}")
        out[names.index(pool)].append(val)
    return [c or [None] for c in out]


def _candidates(raw0: dict, hardware: Sequence[str], tps: Sequence[str], schedulers: Sequence[str],
                names: list[str]) -> list[list[tuple[str | None, int | None, str | None]]]:
    """Per pool: its (hardware, tp, scheduler) candidates (None: the pool's own)."""
    from sim.perf.catalog import builtin_catalog

    cat = builtin_catalog()
    cat.add_models(raw0.get("models", {}), "models")
    own = set(raw0.get("hardware") or {})  # parts the scenario defines (or a profile: "catalog")
    hw = per_pool("--hardware", hardware, names)
    tp_raw = per_pool("--tp", tps, names)
    sch = per_pool("--schedulers", schedulers, names)
    out = []
    for k, pool in enumerate(raw0.get("pools") or [{}]):
        for h in hw[k]:
            if h is not None and h not in own and "catalog" not in raw0:
                cat.get_hardware(h, "--hardware")  # an unknown id: one line naming it
        tp: list[int | None] = []
        for t in tp_raw[k]:
            if t is None:
                tp.append(None)
                continue
            try:
                degree = int(t)
            except ValueError:
                raise ScenarioError("--tp", f"{t!r} is not a whole number",
                                    "give TP degrees, e.g. --tp 1,2,8") from None
            if degree < 1:
                raise ScenarioError("--tp", f"must be >= 1, got {degree}")
            model = pool.get("model") if isinstance(pool, dict) else None
            if model in cat.models:
                cat.models[model].check_tp(degree, "--tp")
            tp.append(degree)
        out.append(list(itertools.product(hw[k], tp, sch[k])))
    return out


def _apply(raw0: dict, combo: Sequence[tuple[str | None, int | None, str | None]]) -> tuple[dict, list[str]]:
    """The scenario with each pool's (hardware, tp, scheduler); and the --set lines that say so."""
    raw = copy.deepcopy(raw0)
    pools = raw.get("pools") or []
    # what the scenario itself prices each part at: a [pools.cost] goes with its pool's hardware
    price_of = {p.get("hardware"): p["cost"] for p in raw0.get("pools") or [] if isinstance(p, dict) and "cost" in p}
    sets: list[str] = []
    refs = [_pool_ref(pools, k) for k in range(len(pools))]
    for k, (hw, tp, pol) in enumerate(combo):
        p = pools[k]
        if hw is not None:
            if hw != p.get("hardware") and "cost" in p:
                # the pool's own price was the old part's: the new part's is the scenario's for it
                # (another pool's [pools.cost], else [cost], else the catalog's), written out so
                # the verify command (which cannot remove the old one) prices it alike
                glob = {c: v for c, v in (raw0.get("cost") or {}).items() if c in POOL_COST_KEYS}
                own = price_of.get(hw) or (glob if glob.get("usd_per_accel_hour") or glob.get("capex_usd_per_accel")
                                           else None) or _catalog_price(raw0, hw)
                p.pop("cost")
                if own:
                    p["cost"] = copy.deepcopy(dict(own))
                    sets += [f"pools.{refs[k]}.cost.{c}={v}" for c, v in own.items()]
            p["hardware"] = hw
            sets.append(f"pools.{refs[k]}.hardware='\"{hw}\"'")
        if tp is not None:
            p["tp"] = tp
            sets.append(f"pools.{refs[k]}.tp={tp}")
        if pol is not None:
            p.setdefault("scheduler", {})["policy"] = pol
            sets.append(f"pools.{refs[k]}.scheduler.policy='\"{pol}\"'")
    return raw, sets


def _catalog_price(raw: dict, hw: str) -> dict[str, float] | None:
    from sim.perf.catalog import builtin_catalog

    rate = ((raw.get("hardware") or {}).get(hw) or {}).get("usd_per_accel_hour")
    if rate is None and hw in builtin_catalog().hardware:
        rate = builtin_catalog().hardware[hw].usd_per_accel_hour
    return {"usd_per_accel_hour": rate} if rate is not None else None


def _dims(raw: dict) -> list[Dim]:
    if "fleet" in raw:
        kinds = raw["fleet"].get("cells") or []
        names = [str(c.get("name", f"cell{k}")) for k, c in enumerate(kinds)]
        return [Dim(n, f"fleet.cells.{k}.count", "cells") for k, n in enumerate(names)]
    pools = raw.get("pools") or [{}]
    return [Dim(n, f"pools.{_pool_ref(pools, k)}.replicas", "replicas") for k, n in enumerate(_pool_names(pools))]


def _scenarios(raw: dict, base: Path) -> list[tuple[int, Scenario]]:
    """(dimension index, parsed scenario) of what one unit of each dimension is: the scenario
    itself for pools, a simulated cell of each kind for a fleet."""
    if "fleet" not in raw:
        return [(0, parse(raw, base))]
    cells, kinds, _ = fleet_cells(raw, base)
    names = [k["name"] for k in kinds]
    first = {c.kind: c.scenario for c in cells}  # (the cells of a kind share one parsed scenario)
    return [(names.index(n), sc) for n, sc in first.items()]


def _below_physics(scs: list[tuple[int, Scenario]], slo: dict[str, Any]) -> str | None:
    """Why no replica count can meet the SLO on this configuration (its `_scenarios`: an SLO
    below one step of a one-token request on its fastest pool), or None."""
    from sim.perf.roofline import PerfModel

    pools = [p for _, sc in scs for p in sc.pools if p.service is None]
    if not pools:
        return None
    pms = [PerfModel(p.hardware, p.model, p.tp, p.dtype, p.kv_dtype, p.clock_lock, ep=p.ep) for p in pools]
    floor = {"ttft_s": min(pm.prefill_cost(1).t_s for pm in pms), "tpot_s": min(pm.decode_cost(1, 1).t_s for pm in pms)}
    for k, lim in slo.items():
        if k in floor and isinstance(lim, (int, float)) and lim < floor[k]:
            return (f"slo.{k} = {lim:g} s is below one step of a one-token request on the fastest pool "
                    f"({floor[k]:.3g} s): no count of replicas meets it")
    return None


def unit_costs(raw: dict, scs: list[tuple[int, Scenario]], dims: list[Dim]) -> tuple[list[float], list[int],
                                                                                     list[str]]:
    """USD/h and accelerators of one unit of each dimension (a replica of the pool; a cell of the
    kind; `scs`: the configuration's `_scenarios`), and the parts that have no price."""
    usd, acc, unpriced = [0.0] * len(dims), [0] * len(dims), []
    for k, sc in scs:
        for j, p in enumerate(sc.pools):
            rate = accel_usd_per_hour(p, sc.cost)
            if rate is None and p.service is None:
                unpriced.append(p.hardware.id)
            if "fleet" in raw:  # a cell: all its pools
                usd[k] += p.replicas * p.accels * (rate or 0.0)
                acc[k] += p.replicas * p.accels
            else:
                usd[j], acc[j] = p.accels * (rate or 0.0), p.accels
    return usd, acc, unpriced


def search(test: Callable[[tuple[int, ...]], bool], unit_usd: Sequence[float],
           max_count: int) -> tuple[int, ...] | None:
    """The counts (module docstring): all doubled together from 1 until `test` holds, then each
    cut to its smallest passing value, the costliest unit first, until none moves; None when
    even max_count of each fails."""
    n = len(unit_usd)
    c = 1
    while c <= max_count and not test((c,) * n):
        c *= 2
    if c > max_count:
        if not test((max_count,) * n):
            return None
        c = max_count
    cur = [c] * n
    order = sorted(range(n), key=lambda i: (-unit_usd[i], i))
    for _ in range(MAX_ROUNDS):
        moved = False
        for i in order:
            lo, hi = 0, cur[i]  # lo fails (0: nothing), hi passes
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if test(tuple(cur[:i] + [mid] + cur[i + 1:])):
                    hi = mid
                else:
                    lo = mid
            moved |= hi != cur[i]
            cur[i] = hi
        if not moved or n == 1:
            break
    return tuple(cur)


def plan(scenario: str | Path, target_rate: float, slo: dict[str, float] | None = None,
         hardware: Sequence[str] = (), tps: Sequence[Any] = (), schedulers: Sequence[str] = (),
         attainment: float = 0.9, max_replicas: int = 512, sets: Sequence[str] = (), headroom: bool = False,
         replications: int = 1) -> dict[str, Any]:
    path = Path(scenario)
    raw0 = apply_overrides(read_toml(path), list(sets) + [f"workload.rate_per_s={target_rate}"])
    if not target_rate > 0:
        raise ScenarioError("--target-rate", f"must be > 0, got {target_rate:g}", "give requests/s, e.g. 10")
    if slo:
        raw0["slo"] = dict(raw0.get("slo", {}), **slo)
    if not raw0.get("slo"):
        raise ScenarioError("--slo", "no SLO to plan for", "give --slo ttft_s=0.5,tpot_s=0.05 or an [slo] table")
    if not 0 < attainment <= 1:
        raise ScenarioError("--attainment", f"must be in (0, 1], got {attainment:g}", "give a share, e.g. 0.9")
    if max_replicas < 1:
        raise ScenarioError("--max-replicas", f"must be >= 1, got {max_replicas}")
    if replications < 1:
        raise ScenarioError("--replications", f"must be >= 1, got {replications}", "give a count of seeds, e.g. 3")
    if not isinstance(raw0.get("pools", [{}]), list) or not raw0.get("pools"):
        raise ScenarioError("pools", "no [[pools]] to plan", "declare at least one [[pools]] table")
    names = _pool_names(raw0["pools"])
    if "fleet" in raw0:
        for k, c in enumerate(raw0["fleet"].get("cells") or []):
            moved = [s for s in c.get("set", []) if str(s).split("=")[0].strip().startswith("pools")
                     and (hardware or tps or schedulers)]
            if moved:
                raise ScenarioError(f"fleet.cells[{k}].set", f"the kind sets {moved[0]!r} itself, so plan cannot "
                                    "search that pool's hardware, TP or scheduler across the fleet",
                                    "plan without --hardware/--tp/--schedulers (cell counts are searched), or move "
                                    "the setting to the base scenario")
    per = _candidates(raw0, hardware, [str(t) for t in tps], schedulers, names)
    dims = _dims(raw0)
    seed0 = int(raw0.get("seed", 0))
    seeds = [seed0 + k * seed_stride(raw0) for k in range(replications)]
    frontier: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    status: dict[str, str] = {}  # the parts' calibration_status over every run
    evals = 0
    for combo in itertools.product(*per):
        raw_c, combo_sets = _apply(raw0, combo)
        label = _combo_label(names, combo)
        try:
            scs = _scenarios(raw_c, path.parent)  # parsed once: priced and checked against physics
        except ScenarioError as exc:
            skipped.append({**_combo_keys(names, combo), "label": label, "why": str(exc)})
            continue
        usd, acc, unpriced = unit_costs(raw_c, scs, dims)
        too_tight = _below_physics(scs, raw0["slo"])
        if too_tight:
            skipped.append({**_combo_keys(names, combo), "label": label, "why": too_tight})
            continue
        if unpriced:
            skipped.append({**_combo_keys(names, combo), "label": label,
                            "why": f"no hourly rate for {unpriced[0]}: set hardware.{unpriced[0]}.usd_per_accel_hour, "
                                   "[pools.cost] or [cost] usd_per_accel_hour"})
            continue
        cache: dict[tuple[int, ...], tuple[bool, dict]] = {}

        def test(counts: tuple[int, ...], cache: dict = cache, raw_c: dict = raw_c) -> bool:
            nonlocal evals
            if counts not in cache:
                evals += 1
                r = apply_overrides(raw_c, [f"{d.path}={n}" for d, n in zip(dims, counts, strict=True)])
                cache[counts] = _meets(r, path.parent, seeds, attainment, headroom)
                status.update(cache[counts][1].get("calibration_status") or {})
            return cache[counts][0]

        best = search(test, usd, max_replicas)
        if best is None:
            skipped.append({**_combo_keys(names, combo), "label": label,
                            "why": f"SLO not met with {max_replicas} {dims[0].what} each"})
            continue
        s = cache[best][1]
        fewer = [cache[c][1]["slo_attainment"] for i in range(len(dims))
                 if (c := best[:i] + (best[i] - 1,) + best[i + 1:]) in cache]
        units = [{"name": d.name, d.what: n, "accelerators": n * a, "usd_per_hour": n * u}
                 for d, n, a, u in zip(dims, best, acc, usd, strict=True)]
        frontier.append({
            **_combo_keys(names, combo, raw_c),
            "label": _answer_label(names, combo, raw_c, dims, best),
            "replicas": _replicas(raw_c, dims, best), "accelerators": sum(u["accelerators"] for u in units),
            "usd_per_hour": sum(u["usd_per_hour"] for u in units),
            ("cells" if dims[0].what == "cells" else "pools"): units,
            "slo_attainment": s["slo_attainment"], "slo_attainment_pessimistic": s.get("slo_attainment_pessimistic"),
            "ttft_p99_s": s["ttft_p99_s"],
            "ttft_p99_interval_s": (s.get("prediction_interval") or {}).get("ttft_p99_s"),
            "tpot_p99_s": s["tpot_p99_s"],
            "ttft_p99_interval_why": why_wide("ttft_p99", s.get("calibration_status") or {}),
            "one_fewer_attainment": max(fewer) if fewer else None,
            "verify_sets": combo_sets + [f"{d.path}={n}" for d, n in zip(dims, best, strict=True)],
        })
    if evals == 0 and skipped and all(not s["why"].startswith("SLO not met") for s in skipped):
        field = "--slo" if all("no count of replicas meets it" in x["why"] for x in skipped) else (
            "--hardware" if hardware else "pools")
        raise ScenarioError(field, f"nothing could run: {skipped[0]['label']}: "
                            f"{skipped[0]['why']}", "loosen the SLO" if field == "--slo" else
                            "pick candidates that fit (dcsim perf says what fits where)")
    frontier.sort(key=lambda f: (f["usd_per_hour"], str(f["hardware"]), str(f["tp"]), str(f["scheduler"]), f["label"]))
    best_row = frontier[0] if frontier else None
    out = {"scenario": str(scenario), "target_rate_per_s": target_rate, "slo": raw0["slo"],
           "attainment": attainment, "headroom": headroom, "replications": replications, "plan": best_row,
           "searched": [d.path for d in dims], "search": "exact" if len(dims) == 1 else "local minimum",
           "frontier": frontier, "skipped": skipped, "evaluations": evals, "calibration_status": status}
    if best_row:
        out["verify"] = (f"dcsim run {scenario} --set workload.rate_per_s={target_rate} "
                         + " ".join(f"--set {x}" for x in list(sets) + best_row["verify_sets"]
                                    + [f"slo.{k}={v}" for k, v in raw0["slo"].items()]))
    return out


def _combo_keys(names: list[str], combo: Sequence[tuple], raw: dict | None = None) -> dict[str, Any]:
    """hardware, tp, scheduler of a combination: plain values for one pool, "a/b" for several
    (each pool's own where the combination keeps it)."""
    pools = (raw or {}).get("pools") or []
    vals: dict[str, list[Any]] = {"hardware": [], "tp": [], "scheduler": []}
    for k, (hw, tp, pol) in enumerate(combo):
        p = pools[k] if k < len(pools) and isinstance(pools[k], dict) else {}
        vals["hardware"].append(hw or p.get("hardware", "?"))
        vals["tp"].append(tp or p.get("tp", 1))
        vals["scheduler"].append(pol or (p.get("scheduler") or {}).get("policy", "chunked"))
    if len(names) == 1:
        return {k: v[0] for k, v in vals.items()}
    return {k: "/".join(str(x) for x in v) for k, v in vals.items()}


def _combo_label(names: list[str], combo: Sequence[tuple]) -> str:
    parts = []
    for n, (hw, tp, pol) in zip(names, combo, strict=True):
        bits = [x for x in (hw, f"tp{tp}" if tp else None, pol) if x]
        parts.append((f"{n}: " if len(names) > 1 else "") + (" ".join(bits) or "as declared"))
    return "; ".join(parts)


def _replicas(raw: dict, dims: list[Dim], counts: tuple[int, ...]) -> int:
    if dims[0].what == "replicas":
        return sum(counts)
    per_cell = sum(int(p.get("replicas", 1)) for p in raw.get("pools") or [])
    return per_cell * sum(counts)


def _answer_label(names: list[str], combo: Sequence[tuple], raw: dict, dims: list[Dim],
                  counts: tuple[int, ...]) -> str:
    raw_pools: list[dict] = raw.get("pools") or []
    keys = [_combo_keys([n], [c], {"pools": [p]}) for n, c, p in zip(names, combo, raw_pools, strict=True)]
    pools = [f"{k['hardware']} TP{k['tp']}, {k['scheduler']}" for k in keys]
    if dims[0].what == "cells":
        per = " + ".join(f"{p.get('replicas', 1)} x {d}" for p, d in zip(raw_pools, pools, strict=True))
        return ", ".join(f"{n} cells of {d.name}" for d, n in zip(dims, counts, strict=True)) + f" ({per} each)"
    if len(names) == 1:
        return f"{counts[0]} x {pools[0]}"
    roles = [p.get("role") for p in raw_pools]
    return " + ".join(f"{n} x {pools[k]} ({names[k]}" + (f", {roles[k]})" if roles[k] else ")")
                      for k, n in enumerate(counts))


def table(rep: dict[str, Any]) -> str:
    L = [f"dcsim plan: {rep['scenario']} at {rep['target_rate_per_s']:g} req/s, SLO {rep['slo']} "
         f"at {rep['attainment']:.0%} attainment"
         + (" at the prediction intervals' pessimistic end" if rep.get("headroom") else "")
         + (f" on each of {rep['replications']} seeds" if rep.get("replications", 1) > 1 else "")
         + f" ({rep['evaluations']} runs; searched {', '.join(rep.get('searched', []))})", "",
         f"{'configuration':<60} {'accel':>6} {'$/h':>10} {'attain':>7} {'p99 TTFT':>9} {'p99 TPOT':>9}"]
    head = rep.get("headroom")
    if head:
        L[-1] += f" {'worst':>7}"
    for f in rep["frontier"]:
        L.append(
            f"{f['label']:<60} {f['accelerators']:>6} {f['usd_per_hour']:>10.2f} {f['slo_attainment']:>7.3f} "
            f"{f['ttft_p99_s']:>9.3f} {f['tpot_p99_s']:>9.4f}"
            + (f" {f['slo_attainment_pessimistic']:>7.3f}" if head and f.get("slo_attainment_pessimistic") is not None
               else ""))
    for s in rep["skipped"]:
        L.append(f"skipped {s['label']}: {s['why']}")
    if rep["plan"]:
        b = rep["plan"]
        L += ["", f"cheapest: {b['label']}: {b['accelerators']} accelerators at ${b['usd_per_hour']:.2f}/h"]
        iv = b.get("ttft_p99_interval_s")
        if rep.get("headroom") or (iv and iv[0] > 0 and iv[1] / iv[0] > 10):
            L.append(f"  p99 TTFT interval {iv[0]:.3g}-{iv[1]:.3g} s: {b['ttft_p99_interval_why']}" if iv else
                     f"  {b['ttft_p99_interval_why']}")
        if rep.get("search") == "local minimum":
            L.append("  (several counts searched: no single count can be lowered; another mix may cost less)")
        L.append(f"verify: {rep['verify']}")
    else:
        L += ["", "no configuration met the SLO"]
    return "\n".join(L)
