"""The facility's SimPy processes: turbine trips and repairs, node failures and repairs, tent
commissioning, and the power manager that keeps facility draw (IT x PUE) within the live supply.

Every process stops when the workload has drained (`sim.end`), so runs end with their last
request. Random times come from named streams ("turbine:<source>:<unit>", "node:<name>"), so
policies compared on one seed see the same faults.
"""

from __future__ import annotations

from typing import Any

from sim.rng import stream


def _wait(env, sim, dt: float):
    """Timeout of dt, or the end of the run, whichever first; True if the run ended."""
    t = env.timeout(dt)
    res = yield t | sim.end
    return sim.end in res


def start_facility(sim: Any) -> None:
    env, fac = sim.env, sim.fac
    for s in fac.sources:
        if s.kind == "gas_turbine" and s.mtbf_h:
            for u in range(s.units):
                env.process(_turbine(sim, s, u))
        for t in s.trip_at_s:
            env.process(_scheduled_trip(sim, s, t))
    if fac.failures.node_mtbf_h and sim.graph is not None:
        for node, data in sim.graph.nodes(data=True):
            if data.get("kind") == "node":
                env.process(_node(sim, node, sorted(data["replicas"])))
    elif fac.failures.node_mtbf_h:
        for rep in sim.replicas:  # no tents declared: one node per replica
            env.process(_node(sim, f"replica{rep.rid}", [rep.rid]))
    for k, t in enumerate(fac.tents):
        if t.commission_s > 0:
            reps = [r for r in sim.replicas if sim.ledger.tent_of[r.rid] == k]
            for r in reps:
                r.drained = True
                r.commissioning = True
                r.set_power(0.0)
            env.process(_commission(sim, reps, t.commission_s))
    if fac.tents:
        env.process(_manager(sim))


def _turbine(sim, src, unit: int):
    env = sim.env
    rng = stream(sim.sc.seed, f"turbine:{src.name}:{unit}")
    repair_h = src.repair_h or 12.0
    while True:
        ended = yield from _wait(env, sim, rng.exponential(src.mtbf_h * 3600.0))
        if ended:
            return
        sim.units_up[src.name] -= 1
        sim.supply_drops += 1
        sim.trip_marks.append(env.now)
        sim.ledger.set_supply(sim.fac.supply_w(sim.units_up), env.now)
        ended = yield from _wait(env, sim, rng.exponential(repair_h * 3600.0))
        sim.units_up[src.name] += 1
        sim.ledger.set_supply(sim.fac.supply_w(sim.units_up), env.now)
        if ended:
            return


def _scheduled_trip(sim, src, at_s: float):
    env = sim.env
    ended = yield from _wait(env, sim, at_s)
    if ended or sim.units_up[src.name] <= 0:
        return
    sim.units_up[src.name] -= 1
    sim.supply_drops += 1
    sim.trip_marks.append(env.now)
    sim.ledger.set_supply(sim.fac.supply_w(sim.units_up), env.now)
    ended = yield from _wait(env, sim, src.trip_repair_s)
    sim.units_up[src.name] += 1
    sim.ledger.set_supply(sim.fac.supply_w(sim.units_up), env.now)


def _node(sim, node: str, rids: list[int]):
    env = sim.env
    f = sim.fac.failures
    rng = stream(sim.sc.seed, f"node:{node}")
    while True:
        ended = yield from _wait(env, sim, rng.exponential(f.node_mtbf_h * 3600.0))
        if ended:
            return
        for rid in rids:
            sim.replicas[rid].fail()
        ended = yield from _wait(env, sim, rng.exponential(f.node_repair_h * 3600.0))
        for rid in rids:
            sim.replicas[rid].repair()
        if ended:
            return


def _commission(sim, reps, at_s: float):
    ended = yield from _wait(sim.env, sim, at_s)
    if ended:
        return
    for r in reps:
        r.commissioning = False
        r.drained = False
        r.set_power(r.rest_power())
        if r.idle:
            r.notify()


def _manager(sim):
    """Every interval: update PUE, compare facility draw with the live supply, act, sample."""
    env, fac, led = sim.env, sim.fac, sim.ledger
    reps = sim.replicas
    policy = fac.manager_policy
    while True:
        now = env.now
        for k, t in enumerate(fac.tents):
            led.set_pue(k, t.pue(now), now)
        supply = fac.supply_w(sim.units_up) + led.battery_w * (led.battery_j > 0)
        if policy != "none":
            _act(sim, policy, supply)
        cap = min((r.cap_w for r in reps if r.cap_w is not None), default=float("nan"))
        led.sample(now, sum(sim.units_up.values()), cap, sum(1 for r in reps if r.drained and not
                                                           getattr(r, "commissioning", False)))
        ended = yield from _wait(env, sim, fac.interval_s)
        if ended:
            led.sample(env.now, sum(sim.units_up.values()), cap, 0)
            return


def min_cap_w(hw) -> float:
    """Lowest per-accelerator power limit a part accepts (about 30% of TDP on current GPUs,
    e.g. 200 W of an H100 SXM's 700 W in nvidia-smi's range)."""
    return max(hw.idle_w, 0.3 * hw.tdp_w)


def _act(sim, policy: str, supply_w: float) -> None:
    """Set clock caps, drain replicas or shed arrivals so that the facility draw at full
    activity fits the supply: accelerator budget = supply / PUE (bounded by the tents' IT
    limits) minus what the hosts draw. Caps never go below a part's minimum power limit."""
    fac, led, reps = sim.fac, sim.ledger, sim.replicas
    pue = max(led.pue_of) if led.pue_of else 1.0
    hosts = sum(r.host_w for r in reps if r.p_now > 0)
    budget = min(supply_w / pue, sum(t.it_limit_w for t in fac.tents)) - hosts
    live = [r for r in reps if not r.down and not getattr(r, "commissioning", False)]
    if not live:
        return
    floor = {r.rid: min_cap_w(r.pool.hardware) * r.pool.tp for r in live}
    full = {r.rid: r.pool.hardware.tdp_w * r.pool.tp for r in live}
    over = led.fac_w > supply_w

    def cap_all(caps: dict[int, float]) -> None:
        for r in live:
            c = caps[r.rid]
            r.cap_w = None if c >= full[r.rid] - 1e-9 else c / r.pool.tp

    if policy in ("cap_uniform", "shed"):
        n_acc = sum(r.pool.tp for r in live)
        per = budget / n_acc
        cap_all({r.rid: min(full[r.rid], max(floor[r.rid], per * r.pool.tp)) for r in live})
        if policy == "shed":
            # and reject new requests while the draw is over the supply
            sim.shedding = over
        return
    if policy == "cap_priority":
        # water-filling: everyone at its floor, then the most important pools (lowest priority
        # value) raised to full power first; batch pools are the ones left capped.
        caps = dict(floor)
        left = budget - sum(floor.values())
        for r in sorted(live, key=lambda r: (r.pool.priority, r.rid)):
            add = min(max(left, 0.0), full[r.rid] - floor[r.rid])
            caps[r.rid] += add
            left -= add
        cap_all(caps)
        return
    if policy == "drain":
        # keep as many replicas at full power as the budget allows, most important first, while
        # the drained ones finish what they have at their lowest power limit (their draw counts
        # until they switch off)
        used = sum(floor.values())
        for r in sorted(live, key=lambda r: (r.pool.priority, r.rid)):
            if used - floor[r.rid] + full[r.rid] <= budget + 1e-6:
                used += full[r.rid] - floor[r.rid]
                r.cap_w = None
                if r.drained:
                    r.drained = False
                    if r.idle:
                        r.set_power(r.rest_power())
                        r.notify()
            else:
                r.cap_w = floor[r.rid] / r.pool.tp
                if not r.drained:
                    r.drained = True
                    if r.idle:
                        r.set_power(0.0)
        return
    raise ValueError(policy)  # pragma: no cover

