"""The facility at run time: its graph (site -> sources; site -> tents -> racks -> nodes ->
accelerators) and the power ledger that integrates IT and facility power and energy and the
time spent above the live supply. No event loop here: the engine's drivers call it.

The ledger's state is one float array `L` (its columns: `LEDGER`), and its arithmetic one
function, `apply_rows`: the replicas' power changes in time order, each interval between them
integrated with the supply side (sim/facility/ramp.py). The Python `Ledger` calls it for a
facility event's change; the fast engine compiles it (`apply_rows_with`) for the millions of
rows its replicas write, so both drivers count the same bits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.columns import Table
from sim.facility.ramp import supply_interval
from sim.scenario.facility import Facility


def build_graph(fac: Facility, pools: tuple, placement: list[str]) -> Any:
    """site -> sources; site -> tents -> racks -> nodes -> accelerators; nodes carry pool/replica."""
    import networkx as nx  # (only with a facility: 0.09 s of every start-up otherwise)

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
    for pool, tent in zip(pools, placement, strict=False):
        for _ in range(pool.replicas):
            for _a in range(pool.accels):
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


LEDGER = Table("L", "float64", "the power ledger's state, L[column] (sim/facility/ledger.py)")
L_NOW = LEDGER.col("the time it has been integrated up to")
L_IT = LEDGER.col("IT draw now, W (every replica's)")
L_FAC = LEDGER.col("facility draw now, W (each tent's IT x its PUE)")
L_EIT = LEDGER.col("IT energy so far, J")
L_EFAC = LEDGER.col("facility energy so far, J")
L_EXC = LEDGER.col("time the draw was over the live supply, s")
L_PEAK = LEDGER.col("the highest facility draw, W")
L_BATJ = LEDGER.col("energy in the batteries, J")
L_BATU = LEDGER.col("energy the batteries gave, J")
L_SUP = LEDGER.col("the live supply, W (inf: none)")
L_BATW = LEDGER.col("the batteries' power, W")
L_RON = LEDGER.col("1: generation follows the load at a finite ramp (sim/facility/ramp.py)")
L_GEN = LEDGER.col("the ramp-limited units' output, W (NaN: not started)")
L_RAMPW = LEDGER.col("their ramp, W/s")
L_STEPW = LEDGER.col("the load step they take at once, W")
L_FCAP = LEDGER.col("what the running units can deliver, W")
L_BASE = LEDGER.col("the sources that follow at once (the grid), W")
L_REXC = LEDGER.col("time short of power while ramping, s")
L_MINW = LEDGER.col("the running turbines' minimum stable load, W")
L_BATCAP = LEDGER.col("the batteries' capacity, J")
L_CHGW = LEDGER.col("their charge power, W")
L_CHGEFF = LEDGER.col("their round-trip efficiency (stored per drawn)")
L_CHG = LEDGER.col("energy drawn to recharge them, J")
L_BELOW = LEDGER.col("time the turbines ran below their minimum load, s")
L_BURN = LEDGER.col("energy burnt at that minimum beyond the load, J")
LEDGER.seal(globals())
N_L = LEDGER.n


def apply_rows_with(supply_interval):
    """`apply_rows` over a given supply_interval: the Python one, or the compiled one in the fast
    engine (which compiles the function this returns), so the ledger's arithmetic is written once."""

    def apply_rows(L, rep_w, tent_of, tent_it, pue_of, ts, rs, ws, q0, q1, t_to):
        """Rows q0..q1 of (ts, rs, ws) (time order: replica rs[q] draws ws[q] from ts[q]) into the
        ledger L, each interval before a row integrated at the draw then (energy, and the supply
        side: supply_interval), then on to t_to if later (-inf: not)."""
        now = L[L_NOW]
        it_w = L[L_IT]
        fac_w = L[L_FAC]
        e_it = L[L_EIT]
        e_fac = L[L_EFAC]
        exc = L[L_EXC]
        peak = L[L_PEAK]
        bat_j = L[L_BATJ]
        bat_u = L[L_BATU]
        sup = L[L_SUP]
        bat_w = L[L_BATW]
        ron = L[L_RON] != 0.0
        gen = L[L_GEN]
        rexc = L[L_REXC]
        chg = L[L_CHG]
        bel = L[L_BELOW]
        burn = L[L_BURN]
        q = q0
        while q <= q1:
            if q < q1:
                t = ts[q]
            else:
                t = t_to
            dt = t - now
            if dt > 0:
                e_it += it_w * dt
                e_fac += fac_w * dt
                gen, bat_j, used, short, over, charged, below, burnt = supply_interval(
                    dt, fac_w, sup, ron, gen, bat_j, (L[L_RAMPW], L[L_STEPW], L[L_FCAP], L[L_BASE], L[L_MINW]),
                    (bat_w, L[L_BATCAP], L[L_CHGW], L[L_CHGEFF]))
                bat_u += used
                rexc += short
                exc += over
                chg += charged
                bel += below
                burn += burnt
                now = t
            if q < q1:
                r = rs[q]
                d = ws[q] - rep_w[r]
                if d != 0.0:
                    rep_w[r] = ws[q]
                    it_w += d
                    k = tent_of[r]
                    tent_it[k] += d
                    fac_w += d * pue_of[k]
                    if fac_w > peak:
                        peak = fac_w
            q += 1
        L[L_NOW] = now
        L[L_IT] = it_w
        L[L_FAC] = fac_w
        L[L_EIT] = e_it
        L[L_EFAC] = e_fac
        L[L_EXC] = exc
        L[L_PEAK] = peak
        L[L_BATJ] = bat_j
        L[L_BATU] = bat_u
        L[L_GEN] = gen
        L[L_REXC] = rexc
        L[L_CHG] = chg
        L[L_BELOW] = bel
        L[L_BURN] = burn

    return apply_rows


apply_rows = apply_rows_with(supply_interval)


class _Field:
    """A Ledger attribute that is a column of its state array L."""

    def __init__(self, col: int) -> None:
        self.col = col

    def __get__(self, led: "Ledger", owner: Any = None) -> float:
        return float(led.L[self.col])

    def __set__(self, led: "Ledger", v: float) -> None:
        led.L[self.col] = v


class _Flag(_Field):
    def __get__(self, led: "Ledger", owner: Any = None) -> bool:
        return bool(led.L[self.col] != 0.0)

    def __set__(self, led: "Ledger", v: float) -> None:
        led.L[self.col] = 1.0 if v else 0.0


class Ledger:
    """Power and energy bookkeeping. IT power is a step function of time (the sum of every
    replica's current draw); facility power = IT x PUE of the replica's tent. Energy is
    integrated exactly on every change, and the time the facility draws above the live supply
    is accumulated. Its state is the array L (LEDGER's columns), read and written through the
    attributes below."""

    now = _Field(L_NOW)
    it_w = _Field(L_IT)
    fac_w = _Field(L_FAC)
    energy_it_j = _Field(L_EIT)
    energy_fac_j = _Field(L_EFAC)
    exceeded_s = _Field(L_EXC)
    peak_fac_w = _Field(L_PEAK)
    battery_j = _Field(L_BATJ)
    battery_used_j = _Field(L_BATU)
    supply_w = _Field(L_SUP)
    battery_w = _Field(L_BATW)
    ramp_on = _Flag(L_RON)  # ramp-limited generation (sim/facility/ramp.py): on only when a turbine has a ramp rate
    gen_w = _Field(L_GEN)  # the ramp-limited units' output
    ramp_w_s = _Field(L_RAMPW)
    step_w = _Field(L_STEPW)
    follow_cap_w = _Field(L_FCAP)
    base_w = _Field(L_BASE)
    ramp_exceeded_s = _Field(L_REXC)
    min_gen_w = _Field(L_MINW)  # the running turbines' minimum stable load
    battery_cap_j = _Field(L_BATCAP)
    charge_w = _Field(L_CHGW)  # the batteries' charge power (sim/facility/ramp.py: recharge from headroom)
    charge_eff = _Field(L_CHGEFF)  # round-trip efficiency: energy stored per energy drawn
    battery_charged_j = _Field(L_CHG)  # drawn from the supply to recharge
    below_min_s = _Field(L_BELOW)
    min_burn_j = _Field(L_BURN)  # burnt at the turbines' minimum beyond the load

    def __init__(self, n: int, tent_of: list[int], pue_of: list[float]) -> None:
        self.n = n
        self.tent_of = tent_of  # replica -> tent index
        self.pue_of = pue_of  # tent index -> current PUE
        self.L = np.zeros(N_L)
        self.supply_w = math.inf
        self.gen_w = math.nan
        self.ramp_w_s = self.step_w = self.follow_cap_w = math.inf
        self.charge_eff = 1.0
        self.step_energy_j = 0.0  # per-step energies summed independently (conservation check)
        self.battery_mwh = 0.0  # capacity (for the state of charge)
        self.sources: tuple = ()  # the facility's sources (per-source output in the samples)
        self.rep_w: Any = [0.0] * n
        self.tent_it_w: Any = [0.0] * len(pue_of)
        self.samples: dict[str, list] = {k: [] for k in (
            "t_s", "it_w", "facility_w", "supply_w", "turbines_up", "pue", "clock_cap_w", "drained", "battery_soc",
            "generation_w")}
        self.source_samples: list[list[float]] = []
        self.tent_samples: list[list[float]] = []

    def attach_sources(self, fac: Facility) -> None:
        """The supply side of `fac`: its sources' live supply, the batteries pooled, the turbines'
        ramp model (every unit up)."""
        self.supply_w = fac.supply_w({})
        self.sources = fac.sources
        bats = [s for s in fac.sources if s.kind == "battery"]
        for s in bats:
            self.battery_w += s.unit_mw * 1e6
            self.battery_j += s.energy_mwh * 3.6e9
            self.battery_mwh += s.energy_mwh
            self.charge_w += s.charge_mw * 1e6
        self.battery_cap_j = self.battery_j
        if bats:  # one pooled battery: the capacity-weighted efficiency
            self.charge_eff = sum(s.round_trip_efficiency * s.energy_mwh for s in bats) / self.battery_mwh
        self.ramp_on = fac.ramp_limited
        self.follow_cap_w, self.ramp_w_s, self.step_w, self.base_w, self.min_gen_w = fac.follow({})

    def _advance(self, t: float) -> None:
        apply_rows(self.L, self.rep_w, self.tent_of, self.tent_it_w, self.pue_of, (), (), (), 0, 0, t)

    def _refresh(self) -> None:
        self.fac_w = sum(w * p for w, p in zip(self.tent_it_w, self.pue_of, strict=True))
        self.peak_fac_w = max(self.peak_fac_w, self.fac_w)

    def set_power(self, rid: int, watts: float, t: float) -> None:
        """Replica `rid` draws `watts` (all its accelerators together) from time t on."""
        apply_rows(self.L, self.rep_w, self.tent_of, self.tent_it_w, self.pue_of, (t,), (rid,), (watts,), 0, 1,
                   -math.inf)

    def draw_w(self) -> float:
        """The facility's draw now, summed afresh in replica order (IT per tent x its PUE): what
        a power manager reads, the same bits in both drivers whatever the order of updates."""
        tent = [0.0] * len(self.pue_of)
        for rid, w in enumerate(self.rep_w):
            tent[self.tent_of[rid]] += float(w)
        return sum(w * p for w, p in zip(tent, self.pue_of, strict=True))

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
