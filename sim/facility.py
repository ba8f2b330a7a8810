"""The facility: power sources, tents, racks, nodes and accelerators as a networkx graph, its
live power supply, the power manager and node failures (the SimPy side acts on replicas only
through narrow methods: set_clock_cap, set_drained, fail, repair).

Declared in a scenario:

    [facility]
    gpus_per_node = 8
    nodes_per_rack = 4
    [[facility.sources]]             # kind = "gas_turbine" | "grid" | "battery"
    name = "turbines"
    kind = "gas_turbine"
    units = 5                        # N+1: one more than the load needs
    unit_mw = 2.5
    mtbf_h = 1000                    # exponential time to failure of each unit
    repair_h = 12                    # exponential repair time
    [[facility.tents]]
    name = "tent1"
    it_limit_mw = 8.0                # hard IT power limit of the tent
    pue = 1.25                       # or { base = 1.2, amplitude = 0.1, peak_hour = 15 }
    commission_s = 0                 # the tent's pools serve from this time on
    [facility.manager]
    policy = "cap_uniform"           # "none" | "cap_uniform" | "cap_priority" | "drain" | "shed"
    interval_s = 5.0
    [[pools]] ... tent = "tent1", priority = 0

Units: W, s, MW and hours where the key says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import networkx as nx
import numpy as np

from .errors import ScenarioError

SOURCE_KINDS = ("gas_turbine", "grid", "battery")
MANAGER_POLICIES = ("none", "cap_uniform", "cap_priority", "drain", "shed")


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    units: int = 1
    unit_mw: float = 0.0  # per unit (turbine) or the feed's capacity (grid) or discharge power (battery)
    mtbf_h: float | None = None
    repair_h: float | None = None
    energy_mwh: float = 0.0  # battery capacity
    trip_at_s: tuple[float, ...] = ()  # scheduled unit trips (for trip scenarios), one unit each
    trip_repair_s: float = 600.0  # how long a scheduled trip keeps the unit down


@dataclass(frozen=True)
class Tent:
    name: str
    it_limit_w: float
    pue_base: float
    pue_amplitude: float = 0.0  # PUE over the day: base + amplitude x cos(2 pi (hour - peak_hour) / 24)
    pue_peak_hour: float = 15.0
    commission_s: float = 0.0

    def pue(self, t_s: float) -> float:
        if not self.pue_amplitude:
            return self.pue_base
        hour = (t_s / 3600.0) % 24.0
        return self.pue_base + self.pue_amplitude * math.cos(2 * math.pi * (hour - self.pue_peak_hour) / 24.0)


@dataclass(frozen=True)
class Failures:
    node_mtbf_h: float | None = None
    node_repair_h: float = 4.0
    retry_limit: int = 2


@dataclass(frozen=True)
class Facility:
    sources: tuple[Source, ...]
    tents: tuple[Tent, ...]
    manager_policy: str
    interval_s: float
    gpus_per_node: int
    nodes_per_rack: int
    failures: Failures
    host_w_per_accel: float = 0.0  # server power besides the accelerators (CPU, NIC, fans), while on

    def tent(self, name: str) -> Tent:
        return next(t for t in self.tents if t.name == name)

    def supply_w(self, units_up: Mapping[str, int]) -> float:
        """Live supply (W) from generation and grid (batteries are counted by the ledger)."""
        tot = 0.0
        for s in self.sources:
            if s.kind == "gas_turbine":
                tot += units_up.get(s.name, s.units) * s.unit_mw * 1e6
            elif s.kind == "grid":
                tot += s.unit_mw * 1e6
        return tot


def parse_facility(raw: Any, failures_raw: Any, pools: list[dict[str, Any]], pool_cfgs: tuple) -> Facility | None:
    """Validate [facility] (and [failures]) against the pools placed in it."""
    from .config import _Table

    fl = None
    if failures_raw is not None:
        ft = _Table(failures_raw, "failures")
        fl = Failures(ft.get("node_mtbf_h", float, None, positive=True), ft.get("node_repair_h", float, 4.0, positive=True),
                      ft.get("retry_limit", int, 2, nonneg=True))
        ft.done()
    if raw is None:
        for i, p in enumerate(pools):
            if "tent" in p:
                raise ScenarioError(f"pools[{i}].tent", f"tent {p['tent']!r} but the scenario has no [facility]",
                                    "declare [[facility.tents]] or remove tent")
        return Facility((), (), "none", 1.0, 8, 4, fl or Failures()) if fl else None
    t = _Table(raw, "facility")
    srcs = []
    for k, sr in enumerate(t.get("sources", list, [])):
        st = _Table(sr, f"facility.sources[{k}]")
        kind = st.get("kind", str, choices=SOURCE_KINDS)
        name = st.get("name", str, f"{kind}{k}")
        if kind == "gas_turbine":
            s = Source(name, kind, st.get("units", int, positive=True), st.get("unit_mw", float, positive=True),
                       st.get("mtbf_h", float, None, positive=True), st.get("repair_h", float, None, positive=True),
                       trip_at_s=tuple(float(x) for x in st.get("trip_at_s", list, [])),
                       trip_repair_s=st.get("trip_repair_s", float, 600.0, positive=True))
        elif kind == "grid":
            s = Source(name, kind, 1, st.get("mw", float, positive=True))
        else:
            s = Source(name, kind, 1, st.get("mw", float, positive=True), energy_mwh=st.get("mwh", float, positive=True))
        st.done()
        srcs.append(s)
    if not srcs:
        raise ScenarioError("facility.sources", "empty", "add at least one [[facility.sources]] (gas_turbine, grid)")
    tents = []
    for k, tr in enumerate(t.get("tents", list, [])):
        tt = _Table(tr, f"facility.tents[{k}]")
        name = tt.get("name", str, f"tent{k}")
        limit = tt.get("it_limit_mw", float, positive=True) * 1e6
        pue_raw = tt.get("pue", (float, dict), 1.3)
        if isinstance(pue_raw, float):
            base, amp, peak = pue_raw, 0.0, 15.0
        else:
            pt = _Table(pue_raw, f"facility.tents[{k}].pue")
            base = pt.get("base", float, positive=True)
            amp = pt.get("amplitude", float, 0.0, nonneg=True)
            peak = pt.get("peak_hour", float, 15.0, nonneg=True)
            pt.done()
        if base - amp < 1.0:
            raise ScenarioError(f"facility.tents[{k}].pue", f"PUE must stay >= 1 (base {base} - amplitude {amp})",
                                "raise base or lower amplitude")
        tents.append(Tent(name, limit, base, amp, peak, tt.get("commission_s", float, 0.0, nonneg=True)))
        tt.done()
    if not tents:
        raise ScenarioError("facility.tents", "empty", "add at least one [[facility.tents]]")
    names = [x.name for x in tents]
    mt = _Table(t.get("manager", dict, {}), "facility.manager")
    policy = mt.get("policy", str, "cap_uniform", choices=MANAGER_POLICIES)
    interval = mt.get("interval_s", float, 5.0, positive=True)
    mt.done()
    fac = Facility(tuple(srcs), tuple(tents), policy, interval, t.get("gpus_per_node", int, 8, positive=True),
                   t.get("nodes_per_rack", int, 4, positive=True), fl or Failures(),
                   t.get("host_w_per_accel", float, 0.0, nonneg=True))
    t.done()
    # pools in tents; the idle power of what is placed must fit under the tent's IT limit
    idle: dict[str, float] = {n: 0.0 for n in names}
    for i, (p, pc) in enumerate(zip(pools, pool_cfgs)):
        tent = p.get("tent", names[0])
        if tent not in names:
            raise ScenarioError(f"pools[{i}].tent", f"no tent named {tent!r}", f"use one of: {', '.join(names)}")
        idle[tent] += pc.replicas * pc.tp * (pc.hardware.idle_w + fac.host_w_per_accel)
    for k, tn in enumerate(tents):
        if idle[tn.name] > tn.it_limit_w:
            raise ScenarioError(f"facility.tents[{k}].it_limit_mw",
                                f"{tn.it_limit_w / 1e6:g} MW is below the idle power of what is placed in "
                                f"{tn.name!r} ({idle[tn.name] / 1e6:.3g} MW)",
                                "raise it_limit_mw or place fewer accelerators in the tent")
    return fac


def build_graph(fac: Facility, pools: tuple, placement: list[str]) -> nx.DiGraph:
    """site -> sources; site -> tents -> racks -> nodes -> accelerators; nodes carry pool/replica."""
    g = nx.DiGraph()
    g.add_node("site", kind="site")
    for s in fac.sources:
        g.add_node(f"source:{s.name}", kind=s.kind, units=s.units, unit_mw=s.unit_mw)
        g.add_edge(f"source:{s.name}", "site")
    for t in fac.tents:
        g.add_node(f"tent:{t.name}", kind="tent", it_limit_w=t.it_limit_w)
        g.add_edge("site", f"tent:{t.name}")
    rid = 0
    counters: dict[str, int] = {t.name: 0 for t in fac.tents}
    for pool, tent in zip(pools, placement):
        for _ in range(pool.replicas):
            for a in range(pool.tp):
                k = counters[tent]
                node_i, rack_i = k // fac.gpus_per_node, k // (fac.gpus_per_node * fac.nodes_per_rack)
                rack, node = f"rack:{tent}/{rack_i}", f"node:{tent}/{node_i}"
                if rack not in g:
                    g.add_node(rack, kind="rack")
                    g.add_edge(f"tent:{tent}", rack)
                if node not in g:
                    g.add_node(node, kind="node", replicas=set())
                    g.add_edge(rack, node)
                g.nodes[node]["replicas"].add(rid)
                acc = f"acc:{tent}/{k}"
                g.add_node(acc, kind="accelerator", hardware=pool.hardware.id, pool=pool.name, replica=rid)
                g.add_edge(node, acc)
                counters[tent] += 1
            rid += 1
    return g


@dataclass
class Ledger:
    """Power and energy bookkeeping. IT power is a step function of time (the sum of every
    replica's current draw); facility power = IT x PUE of the replica's tent. Energy is
    integrated exactly on every change, and the time the facility draws above the live supply
    is accumulated."""

    n: int
    tent_of: list[int]  # replica -> tent index
    pue_of: list[float]  # tent index -> current PUE
    supply_w: float = math.inf
    battery_w: float = 0.0
    battery_j: float = 0.0
    now: float = 0.0
    it_w: float = 0.0
    fac_w: float = 0.0
    energy_it_j: float = 0.0
    energy_fac_j: float = 0.0
    step_energy_j: float = 0.0  # per-step energies summed independently (conservation check)
    exceeded_s: float = 0.0
    peak_fac_w: float = 0.0
    battery_used_j: float = 0.0
    rep_w: list[float] = field(default_factory=list)
    tent_it_w: list[float] = field(default_factory=list)
    samples: dict[str, list] = field(default_factory=lambda: {k: [] for k in (
        "t_s", "it_w", "facility_w", "supply_w", "turbines_up", "pue", "clock_cap_w", "drained")})
    tent_samples: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rep_w = [0.0] * self.n
        self.tent_it_w = [0.0] * len(self.pue_of)

    def _advance(self, t: float) -> None:
        dt = t - self.now
        if dt > 0:
            self.energy_it_j += self.it_w * dt
            self.energy_fac_j += self.fac_w * dt
            deficit = self.fac_w - self.supply_w
            if deficit > 1e-6:
                self._deficit(deficit, dt)
            self.now = t

    def _deficit(self, deficit: float, dt: float) -> None:
        """The facility drew `deficit` W above the supply for dt s: a battery covers it while it
        has energy, otherwise the time counts as over the limit."""
        cover = min(deficit, self.battery_w)
        need_j = cover * dt
        if self.battery_j >= need_j and cover >= deficit - 1e-6:
            self.battery_j -= need_j
            self.battery_used_j += need_j
        else:
            self.exceeded_s += dt

    def _refresh(self) -> None:
        self.fac_w = sum(w * p for w, p in zip(self.tent_it_w, self.pue_of))
        self.peak_fac_w = max(self.peak_fac_w, self.fac_w)

    def set_power(self, rid: int, watts: float, t: float) -> None:
        """Replica `rid` draws `watts` (all its accelerators together) from time t on."""
        dt = t - self.now
        if dt > 0:  # _advance, inlined: this runs once per engine step
            self.energy_it_j += self.it_w * dt
            self.energy_fac_j += self.fac_w * dt
            if self.fac_w - self.supply_w > 1e-6:
                self._deficit(self.fac_w - self.supply_w, dt)
            self.now = t
        d = watts - self.rep_w[rid]
        if d:
            self.rep_w[rid] = watts
            self.it_w += d
            k = self.tent_of[rid]
            self.tent_it_w[k] += d
            self.fac_w += d * self.pue_of[k]
            if self.fac_w > self.peak_fac_w:
                self.peak_fac_w = self.fac_w

    def set_supply(self, watts: float, t: float) -> None:
        self._advance(t)
        self.supply_w = watts

    def set_pue(self, k: int, pue: float, t: float) -> None:
        self._advance(t)
        self.pue_of[k] = pue
        self._refresh()

    def sample(self, t: float, turbines_up: int, cap_w: float, drained: int) -> None:
        self._advance(t)
        s = self.samples
        s["t_s"].append(t)
        s["it_w"].append(self.it_w)
        s["facility_w"].append(self.fac_w)
        s["supply_w"].append(self.supply_w if math.isfinite(self.supply_w) else np.nan)
        s["turbines_up"].append(turbines_up)
        s["pue"].append(self.pue_of[0] if self.pue_of else 1.0)
        s["clock_cap_w"].append(cap_w)
        s["drained"].append(drained)
        self.tent_samples.append(list(self.tent_it_w))

    def close(self, t: float) -> None:
        self._advance(t)
