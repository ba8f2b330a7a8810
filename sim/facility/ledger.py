"""The facility at run time: its graph (site -> sources; site -> tents -> racks -> nodes ->
accelerators) and the power ledger that integrates IT and facility power and energy and the
time spent above the live supply. No event loop here: the engine's drivers call it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from sim.facility.ramp import supply_interval
from sim.scenario.facility import Facility


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
            for a in range(pool.accels):
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
    battery_mwh: float = 0.0  # capacity (for the state of charge)
    battery_cap_j: float = 0.0
    charge_w: float = 0.0  # the batteries' charge power (sim/facility/ramp.py: recharge from headroom)
    charge_eff: float = 1.0  # round-trip efficiency: energy stored per energy drawn
    battery_charged_j: float = 0.0  # drawn from the supply to recharge
    min_gen_w: float = 0.0  # the running turbines' minimum stable load
    below_min_s: float = 0.0
    min_burn_j: float = 0.0  # burnt at the turbines' minimum beyond the load
    sources: tuple = ()  # the facility's sources (per-source output in the samples)
    # ramp-limited generation (sim/facility/ramp.py): on only when a turbine has a ramp rate
    ramp_on: bool = False
    gen_w: float = math.nan  # the ramp-limited units' output
    ramp_w_s: float = math.inf
    step_w: float = math.inf
    follow_cap_w: float = math.inf
    base_w: float = 0.0
    ramp_exceeded_s: float = 0.0
    rep_w: list[float] = field(default_factory=list)
    tent_it_w: list[float] = field(default_factory=list)
    samples: dict[str, list] = field(default_factory=lambda: {k: [] for k in (
        "t_s", "it_w", "facility_w", "supply_w", "turbines_up", "pue", "clock_cap_w", "drained", "battery_soc",
        "generation_w")})
    source_samples: list[list[float]] = field(default_factory=list)
    tent_samples: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rep_w = [0.0] * self.n
        self.tent_it_w = [0.0] * len(self.pue_of)

    def _advance(self, t: float) -> None:
        dt = t - self.now
        if dt > 0:
            self._interval(dt)
            self.now = t

    def _interval(self, dt: float) -> None:
        """dt s at the current load: energy, and the supply side (sim/facility/ramp.py)."""
        self.energy_it_j += self.it_w * dt
        self.energy_fac_j += self.fac_w * dt
        (self.gen_w, self.battery_j, used, short, over, charged, below, burnt) = supply_interval(
            dt, self.fac_w, self.supply_w, self.ramp_on, self.gen_w, self.ramp_w_s, self.step_w, self.follow_cap_w,
            self.base_w, self.min_gen_w, self.battery_w, self.battery_j, self.battery_cap_j, self.charge_w,
            self.charge_eff)
        self.battery_used_j += used
        self.ramp_exceeded_s += short
        self.exceeded_s += over
        self.battery_charged_j += charged
        self.below_min_s += below
        self.min_burn_j += burnt

    def _refresh(self) -> None:
        self.fac_w = sum(w * p for w, p in zip(self.tent_it_w, self.pue_of))
        self.peak_fac_w = max(self.peak_fac_w, self.fac_w)

    def set_power(self, rid: int, watts: float, t: float) -> None:
        """Replica `rid` draws `watts` (all its accelerators together) from time t on."""
        dt = t - self.now
        if dt > 0:
            self._interval(dt)
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

    def draw_w(self) -> float:
        """The facility's draw now, summed afresh in replica order (IT per tent x its PUE): what
        a power manager reads, the same bits in both drivers whatever the order of updates."""
        tent = [0.0] * len(self.pue_of)
        for rid, w in enumerate(self.rep_w):
            tent[self.tent_of[rid]] += float(w)
        return sum(w * p for w, p in zip(tent, self.pue_of))

    def set_supply(self, watts: float, t: float,
                   follow: tuple[float, float, float, float, float] | None = None) -> None:
        """The live supply from time t on, and (with `follow`: Facility.follow) what the
        running units can deliver and their minimum load; a unit lost takes its output with it."""
        self._advance(t)
        self.supply_w = watts
        if follow is not None:
            self.follow_cap_w, self.ramp_w_s, self.step_w, self.base_w, self.min_gen_w = follow
            if self.gen_w > self.follow_cap_w:
                self.gen_w = self.follow_cap_w

    def set_pue(self, k: int, pue: float, t: float) -> None:
        self._advance(t)
        self.pue_of[k] = pue
        self._refresh()

    def sample(self, t: float, units_up: dict[str, int], cap_w: float, drained: int) -> None:
        self._advance(t)
        s = self.samples
        s["t_s"].append(t)
        turbines_up = sum(units_up.values())
        s["it_w"].append(self.it_w)
        s["facility_w"].append(self.fac_w)
        s["supply_w"].append(self.supply_w if math.isfinite(self.supply_w) else np.nan)
        s["turbines_up"].append(turbines_up)
        s["pue"].append(self.pue_of[0] if self.pue_of else 1.0)
        s["clock_cap_w"].append(cap_w)
        s["drained"].append(drained)
        s["battery_soc"].append(self.battery_j / (self.battery_mwh * 3.6e9) if self.battery_mwh > 0 else np.nan)
        s["generation_w"].append(self.gen_w if self.ramp_on else np.nan)
        self.tent_samples.append(list(self.tent_it_w))
        self.source_samples.append(self.dispatch(units_up))

    def dispatch(self, units_up: dict[str, int]) -> list[float]:
        """Each source's output now, W, in declaration order: the grid first (to its capacity),
        then the turbines (the ramp model's output when on), split by running capacity, then the
        batteries for the rest while they hold energy (negative: charging, at its rate now)."""
        rest = self.fac_w
        out = [0.0] * len(self.sources)
        for i, s in enumerate(self.sources):
            if s.kind == "grid":
                out[i] = min(rest, s.unit_mw * 1e6)
                rest -= out[i]
        up_w = [units_up.get(s.name, s.units) * s.unit_mw * 1e6 if s.kind == "gas_turbine" else 0.0
                for s in self.sources]
        cap = sum(up_w)
        gen = min(rest, cap)
        if self.ramp_on and self.gen_w == self.gen_w:  # ramping: their output and the step they take at once
            gen = min(gen, self.gen_w + self.step_w)
        rest -= gen
        flow = 0.0  # the batteries' output (negative: charging)
        if self.battery_w > 0:
            if rest > 1e-6 and self.battery_j > 0:
                flow = min(rest, self.battery_w)
            elif rest <= 1e-6 and self.battery_j < self.battery_cap_j:
                flow = -max(0.0, min(self.charge_w, self.supply_w - self.fac_w))
        if flow < 0 and cap > 0:
            gen -= flow  # the turbines carry the charge
        for i, w in enumerate(up_w):
            if w > 0:
                out[i] = gen * w / cap
        for i, s in enumerate(self.sources):
            if s.kind == "battery":
                out[i] = flow * s.unit_mw * 1e6 / self.battery_w
        return out

    def close(self, t: float) -> None:
        self._advance(t)
