"""The facility's SimPy processes: turbine trips and repairs, node failures and repairs, tent
commissioning, and the power manager that keeps facility draw (IT x PUE) within the live supply.

Every process stops when the workload has drained (`sim.end`), so runs end with their last
request. Random times come from named streams ("turbine:<source>:<unit>", "node:<name>"), so
policies compared on one seed see the same faults. Facility events at an instant come after its
step ends, arrivals and deadlines (sim/engine/events.py).

Both drivers run these same processes: `sim` is the per-step driver's Simulation or the compiled
driver's facility driver (sim/engine/drivers/facility.py), and replicas are acted on only through
their narrow interface: `fail()`, `repair()`, `drain()`, `undrain()`, `begin_commissioning()`,
`end_commissioning()`, `cap_w`; read: `index`, `pool`, `drained`, `down`, `commissioning`,
`host_w`, `p_now`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.engine.autoscale import start_autoscalers
from sim.engine.events import wait_or_end
from sim.errors import ScenarioError
from sim.registry import MANAGERS
from sim.rng import stream


def start_facility(sim: Any, site: bool = True) -> None:
    """The facility's processes on sim's environment. site=False: a cell of a coupled site
    (sim/studies/site.py), whose sources and manager are the site's (its facility has no
    sources): its nodes, commissioning and autoscalers."""
    env, fac = sim.env, sim.fac
    start_sources(sim)
    if fac.failures.node_mtbf_h and sim.graph is not None:
        for node, data in sim.graph.nodes(data=True):
            if data.get("kind") == "node":
                env.process(_node(sim, node, sorted(data["replicas"])))
    elif fac.failures.node_mtbf_h:
        for rep in sim.replicas:  # no tents declared: one node per replica
            env.process(_node(sim, f"replica{rep.rid}", [rep.rid]))
    for k, t in enumerate(fac.tents):
        if t.commission_s > 0:
            reps = [r for r in sim.replicas if sim.ledger.tent_of[r.index] == k]
            for r in reps:
                r.begin_commissioning()
            env.process(_commission(sim, reps, t.commission_s))
    if fac.tents and site:
        env.process(_manager(sim))
    start_autoscalers(sim)


def start_sources(sim: Any) -> None:
    """The sources' processes: turbines' random trips and repairs, scheduled trips. `sim` has
    env, end, fac, sc.seed, units_up, supply_drops, trip_marks and ledger (a run's facility
    host, or a coupled site's: sim/studies/site.py)."""
    for s in sim.fac.sources:
        if s.kind == "gas_turbine" and s.mtbf_h:
            for u in range(s.units):
                sim.env.process(_turbine(sim, s, u))
        for t in s.trip_at_s:
            sim.env.process(_scheduled_trip(sim, s, t))


def _turbine(sim, src, unit: int):
    env = sim.env
    rng = stream(sim.sc.seed, f"turbine:{src.name}:{unit}")
    repair_h = src.repair_h or 12.0
    while True:
        ended = yield from wait_or_end(env, sim, rng.exponential(src.mtbf_h * 3600.0))
        if ended:
            return
        sim.units_up[src.name] -= 1
        sim.supply_drops += 1
        sim.trip_marks.append(env.now)
        sim.ledger.set_supply(sim.fac.supply_w(sim.units_up), env.now, sim.fac.follow(sim.units_up))
        ended = yield from wait_or_end(env, sim, rng.exponential(repair_h * 3600.0) + src.start_s)
        sim.units_up[src.name] += 1
        sim.ledger.set_supply(sim.fac.supply_w(sim.units_up), env.now, sim.fac.follow(sim.units_up))
        if ended:
            return


def _scheduled_trip(sim, src, at_s: float):
    env = sim.env
    ended = yield from wait_or_end(env, sim, at_s)
    if ended or sim.units_up[src.name] <= 0:
        return
    sim.units_up[src.name] -= 1
    sim.supply_drops += 1
    sim.trip_marks.append(env.now)
    sim.ledger.set_supply(sim.fac.supply_w(sim.units_up), env.now, sim.fac.follow(sim.units_up))
    ended = yield from wait_or_end(env, sim, src.trip_repair_s + src.start_s)
    sim.units_up[src.name] += 1
    sim.ledger.set_supply(sim.fac.supply_w(sim.units_up), env.now, sim.fac.follow(sim.units_up))


def _node(sim, node: str, rids: list[int]):
    env = sim.env
    f = sim.fac.failures
    rng = stream(sim.sc.seed, f"node:{node}")
    while True:
        ended = yield from wait_or_end(env, sim, rng.exponential(f.node_mtbf_h * 3600.0))
        if ended:
            return
        for rid in rids:
            sim.replicas[rid].fail()
        ended = yield from wait_or_end(env, sim, rng.exponential(f.node_repair_h * 3600.0))
        for rid in rids:
            sim.replicas[rid].repair()
        if ended:
            return


def _commission(sim, reps, at_s: float):
    ended = yield from wait_or_end(sim.env, sim, at_s)
    if ended:
        return
    for r in reps:
        r.end_commissioning()


def replica_index(index: Any, n: int, method: str) -> int:
    """A replica index a manager passed, checked (a plug-in's argument, on every call)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
        raise ScenarioError("facility.manager.policy", f"{method}() was given replica {index!r} of {n}",
                            "pass a replica's index (fac.replicas[k].index)")
    return int(index)


def cap_value(w_per_accel: Any) -> float | None:
    """A per-accelerator cap a manager passed, checked: a finite power > 0, or None."""
    if w_per_accel is not None and (isinstance(w_per_accel, bool) or not isinstance(w_per_accel, (int, float,
                                    np.number)) or not math.isfinite(w_per_accel) or w_per_accel <= 0):
        raise ScenarioError("facility.manager.policy", f"set_cap() was given {w_per_accel!r} W per accelerator",
                            "pass a finite power > 0, or None for no cap")
    return None if w_per_accel is None else float(w_per_accel)


def live_supply_w(fac: Any, led: Any, units_up: dict[str, int]) -> float:
    """What the manager may plan on: the sources' supply less the spinning reserve, and with
    ramp-limited turbines no more than they can follow by the next decision (their output, the
    step they take at once and one interval's ramp)."""
    supply = fac.supply_w(units_up) - fac.reserve_w(units_up)  # N+k: the reserve stays spare
    if led.ramp_on and led.gen_w == led.gen_w:
        supply = min(supply, led.gen_w + led.step_w + led.ramp_w_s * fac.interval_s + led.base_w)
    return supply


class FacilityView:
    """The narrow interface a power-manager policy acts through (sim/policies/managers.py)."""

    def __init__(self, sim: Any) -> None:
        self._sim = sim
        self._supply_w = 0.0  # what the sources sustain (turbines as they can follow, grid)
        self._bridge_w = 0.0  # what the battery adds while it holds energy

    @property
    def replicas(self) -> list:
        """Replicas that can serve now: not failed, commissioned."""
        return self._sim.live_replicas()

    @property
    def draw_w(self) -> float:
        """The facility's draw now (IT x PUE), W."""
        return self._sim.ledger.draw_w()

    @property
    def bridge_w(self) -> float:
        """What the battery can add now (0 when empty or none): a bridge over a shortfall."""
        return self._bridge_w

    @property
    def over_supply(self) -> bool:
        """Whether the draw is above everything available now: the sources and the battery's bridge."""
        return self._sim.ledger.draw_w() > self._supply_w + self._bridge_w

    def budget_w(self) -> float:
        """What the accelerators may draw at full activity: supply / PUE (bounded by the tents'
        IT limits) minus what the hosts draw."""
        sim = self._sim
        led = sim.ledger
        pue = max(led.pue_of) if led.pue_of else 1.0
        hosts = sim.hosts_on_w()
        return min(self._supply_w / pue, sum(t.it_limit_w for t in sim.fac.tents)) - hosts

    def _replica(self, index: Any, method: str) -> Any:
        """The replica a manager names, checked (a plug-in's argument, on every call)."""
        return self._sim.replicas[replica_index(index, len(self._sim.replicas), method)]

    def set_cap(self, index: int, w_per_accel: float | None) -> None:
        rep = self._replica(index, "set_cap")
        rep.cap_w = cap_value(w_per_accel)

    def drain(self, index: int) -> None:
        self._replica(index, "drain").drain()

    def undrain(self, index: int) -> None:
        self._replica(index, "undrain").undrain()

    def shed(self, on: bool) -> None:
        self._sim.shedding = bool(on)


def _manager(sim):
    """Every interval: update PUE, compare facility draw with the live supply, act, sample."""
    env, fac, led = sim.env, sim.fac, sim.ledger
    manager = MANAGERS.make(fac.manager_policy)
    view = FacilityView(sim)
    while True:
        now = env.now
        for k, t in enumerate(fac.tents):
            led.set_pue(k, t.pue(now), now)
        supply = live_supply_w(fac, led, sim.units_up)
        # The battery bridges a shortfall (a trip, a ramp the turbines cannot follow) while the
        # manager brings the load down to what the sources sustain; counted as supply, it would
        # raise every cap until it ran empty and leave nothing for the trip it is sized for.
        view._supply_w = supply
        view._bridge_w = led.battery_w * (led.battery_j > 0)
        manager.act(view, supply)
        cap = sim.min_cap_w()
        led.sample(now, sim.units_up, cap, sim.drained_count())
        ended = yield from wait_or_end(env, sim, fac.interval_s)
        if ended:
            led.sample(env.now, sim.units_up, cap, 0)
            return


if TYPE_CHECKING:  # mypy holds the view to what plug-ins are promised (sim/policies/interfaces.py)
    from sim.policies.interfaces import PowerControl

    def _conforms(f: FacilityView) -> PowerControl:
        return f
