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
    ramp_mw_per_s = 0.1              # optional: per unit, how fast its output can rise
    start_s = 600                    # optional: a repaired or tripped unit's start before it delivers
    step_load_frac = 0.3             # optional: the largest sudden increase a unit takes
    min_load_frac = 0.3              # optional: the lowest stable output (below: fuel burnt at it, counted)
    heat_rate_btu_per_kwh = 9500     # optional, with usd_per_mmbtu: the fuel's cost of its energy
    usd_per_mmbtu = 3.5
    capex_usd_per_mw = 1.2e6         # optional: installed cost, amortised over amortization_years (20)
    mtbf_h = 1000                    # exponential time to failure of each unit
    repair_h = 12                    # exponential repair time
    [[facility.sources]]
    kind = "battery"
    mw = 20                          # discharge power
    mwh = 10                         # energy (starts full)
    charge_mw = 10                   # optional (default mw): recharges from the supply's headroom
    round_trip_efficiency = 0.85     # optional
    [[facility.tents]]
    name = "tent1"
    it_limit_mw = 8.0                # hard IT power limit of the tent
    pue = 1.25                       # or { base = 1.2, amplitude = 0.1, peak_hour = 15 }
    commission_s = 0                 # the tent's pools serve from this time on
    capex_usd = 5e6                  # optional: amortised over amortization_years (10)
    [facility.manager]
    policy = "cap_uniform"           # "none" | "cap_uniform" | "cap_priority" | "drain" | "shed"
    interval_s = 5.0
    reserve_units = 0                # N+k: hold the load under the running turbines less the k largest
    [[pools]] ... tent = "tent1", priority = 0

Units: W, s, MW and hours where the key says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


from sim.errors import ScenarioError
from sim.registry import MANAGERS
from sim.schema import Table

SOURCE_KINDS = ("gas_turbine", "grid", "battery")


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    units: int = 1
    unit_mw: float = 0.0  # per unit (turbine) or the feed's capacity (grid) or discharge power (battery)
    mtbf_h: float | None = None
    repair_h: float | None = None
    energy_mwh: float = 0.0  # battery capacity
    charge_mw: float = 0.0  # battery: charge power (default its discharge power)
    round_trip_efficiency: float = 0.85  # battery: energy returned per energy drawn to charge it
    min_load_frac: float = 0.0  # turbine: the lowest stable output, as a share of its rating
    trip_at_s: tuple[float, ...] = ()  # scheduled unit trips (for trip scenarios), one unit each
    trip_repair_s: float = 600.0  # how long a scheduled trip keeps the unit down
    ramp_mw_per_s: float = math.inf  # per running unit: how fast its output can rise (sim/facility/ramp.py)
    step_load_frac: float = 1.0  # the largest sudden load increase a unit accepts, as a share of its rating
    start_s: float = 0.0  # time to bring a repaired or tripped unit back online (start, synchronise)
    heat_rate_btu_per_kwh: float | None = None  # fuel per kWh delivered (with usd_per_mmbtu: the energy's cost)
    usd_per_mmbtu: float | None = None  # gas price
    capex_usd_per_mw: float | None = None  # installed cost, amortised over amortization_years
    amortization_years: float = 20.0


@dataclass(frozen=True)
class Tent:
    name: str
    it_limit_w: float
    pue_base: float
    pue_amplitude: float = 0.0  # PUE over the day: base + amplitude x cos(2 pi (hour - peak_hour) / 24)
    pue_peak_hour: float = 15.0
    commission_s: float = 0.0
    capex_usd: float | None = None  # the tent (structure, power distribution, cooling), amortised
    amortization_years: float = 10.0

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
    reserve_units: int = 0  # N+k spinning reserve: the manager keeps the k largest running turbines spare

    def reserve_w(self, units_up: Mapping[str, int]) -> float:
        """The spinning reserve the manager keeps: the `reserve_units` largest running turbines, W."""
        sizes = sorted((s.unit_mw * 1e6 for s in self.sources if s.kind == "gas_turbine"
                        for _ in range(units_up.get(s.name, s.units))), reverse=True)
        return float(sum(sizes[:self.reserve_units]))

    def tent(self, name: str) -> Tent:
        return next(t for t in self.tents if t.name == name)

    def follow(self, units_up: Mapping[str, int]) -> tuple[float, float, float, float, float]:
        """What the ledger's supply model reads (sim/facility/ramp.py): (capacity W, ramp W/s,
        step acceptance W) of the running turbines, the instant sources' W (grid) and the
        running turbines' minimum load W; the ramp is infinite unless every turbine source has one."""
        cap = ramp = step = base = low = 0.0
        for s in self.sources:
            if s.kind == "gas_turbine":
                up = units_up.get(s.name, s.units)
                cap += up * s.unit_mw * 1e6
                ramp += up * s.ramp_mw_per_s * 1e6 if math.isfinite(s.ramp_mw_per_s) else math.inf
                step += up * s.unit_mw * 1e6 * s.step_load_frac
                low += up * s.unit_mw * 1e6 * s.min_load_frac
            elif s.kind == "grid":
                base += s.unit_mw * 1e6
        return cap, ramp, step, base, low

    @property
    def ramp_limited(self) -> bool:
        return any(s.kind == "gas_turbine" and math.isfinite(s.ramp_mw_per_s) for s in self.sources)

    def supply_w(self, units_up: Mapping[str, int]) -> float:
        """Live supply (W) from generation and grid (batteries are counted by the ledger)."""
        tot = 0.0
        for s in self.sources:
            if s.kind == "gas_turbine":
                tot += units_up.get(s.name, s.units) * s.unit_mw * 1e6
            elif s.kind == "grid":
                tot += s.unit_mw * 1e6
        return tot


def parse_facility(raw: Any, failures_raw: Any, pools: list[dict[str, Any]], pool_cfgs: tuple,
                   base_dir: Path = Path(".")) -> Facility | None:
    """Validate [facility] (and [failures]) against the pools placed in it."""

    fl = None
    if failures_raw is not None:
        ft = Table(failures_raw, "failures")
        fl = Failures(ft.get("node_mtbf_h", float, None, positive=True), ft.get("node_repair_h", float, 4.0, positive=True),
                      ft.get("retry_limit", int, 2, nonneg=True))
        ft.done()
    if raw is None:
        for i, p in enumerate(pools):
            if "tent" in p:
                raise ScenarioError(f"pools[{i}].tent", f"tent {p['tent']!r} but the scenario has no [facility]",
                                    "declare [[facility.tents]] or remove tent")
        return Facility((), (), "none", 1.0, 8, 4, fl or Failures()) if fl else None
    t = Table(raw, "facility")
    srcs = []
    for k, sr in enumerate(t.get("sources", list, [])):
        st = Table(sr, f"facility.sources[{k}]")
        kind = st.get("kind", str, choices=SOURCE_KINDS)
        name = st.get("name", str, f"{kind}{k}")
        if kind == "gas_turbine":
            s = Source(name, kind, st.get("units", int, positive=True), st.get("unit_mw", float, positive=True),
                       st.get("mtbf_h", float, None, positive=True), st.get("repair_h", float, None, positive=True),
                       trip_at_s=tuple(float(x) for x in st.get("trip_at_s", list, [])),
                       trip_repair_s=st.get("trip_repair_s", float, 600.0, positive=True),
                       ramp_mw_per_s=st.get("ramp_mw_per_s", float, math.inf, positive=True),
                       step_load_frac=st.get("step_load_frac", float, 1.0, positive=True),
                       start_s=st.get("start_s", float, 0.0, nonneg=True),
                       heat_rate_btu_per_kwh=st.get("heat_rate_btu_per_kwh", float, None, positive=True),
                       usd_per_mmbtu=st.get("usd_per_mmbtu", float, None, nonneg=True),
                       capex_usd_per_mw=st.get("capex_usd_per_mw", float, None, nonneg=True),
                       amortization_years=st.get("amortization_years", float, 20.0, positive=True),
                       min_load_frac=st.get("min_load_frac", float, 0.0, nonneg=True))
            if s.min_load_frac >= 1:
                raise ScenarioError(f"facility.sources[{k}].min_load_frac", f"must be in [0, 1) (a share of a unit's "
                                    f"rating), got {s.min_load_frac}", "gas turbines run stably from about 0.3-0.5")
            if (s.heat_rate_btu_per_kwh is None) != (s.usd_per_mmbtu is None):
                raise ScenarioError(f"facility.sources[{k}].usd_per_mmbtu" if s.usd_per_mmbtu is None else
                                    f"facility.sources[{k}].heat_rate_btu_per_kwh",
                                    "fuel cost needs both heat_rate_btu_per_kwh and usd_per_mmbtu",
                                    "give both (e.g. 9000 BTU/kWh and 3.5 $/MMBtu) or neither")
            if s.step_load_frac > 1:
                raise ScenarioError(f"facility.sources[{k}].step_load_frac", f"must be in (0, 1] (a share of a unit's "
                                    f"rating), got {s.step_load_frac}")
        elif kind == "grid":
            s = Source(name, kind, 1, st.get("mw", float, positive=True))
        else:
            mw = st.get("mw", float, positive=True)
            s = Source(name, kind, 1, mw, energy_mwh=st.get("mwh", float, positive=True),
                       charge_mw=st.get("charge_mw", float, mw, nonneg=True),
                       round_trip_efficiency=st.get("round_trip_efficiency", float, 0.85, positive=True))
            if s.round_trip_efficiency > 1:
                raise ScenarioError(f"facility.sources[{k}].round_trip_efficiency",
                                    f"must be in (0, 1], got {s.round_trip_efficiency}",
                                    "lithium-ion systems return about 0.85 (NREL ATB)")
        st.done()
        srcs.append(s)
    if not srcs:
        raise ScenarioError("facility.sources", "empty", "add at least one [[facility.sources]] (gas_turbine, grid)")
    tents = []
    for k, tr in enumerate(t.get("tents", list, [])):
        tt = Table(tr, f"facility.tents[{k}]")
        name = tt.get("name", str, f"tent{k}")
        limit = tt.get("it_limit_mw", float, positive=True) * 1e6
        pue_raw = tt.get("pue", (float, dict), 1.3)
        if isinstance(pue_raw, float):
            base, amp, peak = pue_raw, 0.0, 15.0
        else:
            pt = Table(pue_raw, f"facility.tents[{k}].pue")
            base = pt.get("base", float, positive=True)
            amp = pt.get("amplitude", float, 0.0, nonneg=True)
            peak = pt.get("peak_hour", float, 15.0, nonneg=True)
            pt.done()
        if base - amp < 1.0:
            raise ScenarioError(f"facility.tents[{k}].pue", f"PUE must stay >= 1 (base {base} - amplitude {amp})",
                                "raise base or lower amplitude")
        tents.append(Tent(name, limit, base, amp, peak, tt.get("commission_s", float, 0.0, nonneg=True),
                          tt.get("capex_usd", float, None, nonneg=True),
                          tt.get("amortization_years", float, 10.0, positive=True)))
        tt.done()
    if not tents:
        raise ScenarioError("facility.tents", "empty", "add at least one [[facility.tents]]")
    names = [x.name for x in tents]
    mt = Table(t.get("manager", dict, {}), "facility.manager")
    policy = MANAGERS.validate(mt.get("policy", str, "cap_uniform"), "facility.manager.policy", base_dir)
    interval = mt.get("interval_s", float, 5.0, positive=True)
    reserve = mt.get("reserve_units", int, 0, nonneg=True)
    mt.done()
    fac = Facility(tuple(srcs), tuple(tents), policy, interval, t.get("gpus_per_node", int, 8, positive=True),
                   t.get("nodes_per_rack", int, 4, positive=True), fl or Failures(),
                   t.get("host_w_per_accel", float, 0.0, nonneg=True), reserve)
    t.done()
    cap_w = sum(s.units * s.unit_mw * 1e6 for s in srcs)  # every source at once (battery: its power)
    for k, tn in enumerate(tents):
        if tn.it_limit_w > cap_w * (1 + 1e-12):  # a limit that can never bind: a mistake in one of the two
            raise ScenarioError(f"facility.tents[{k}].it_limit_mw",
                                f"{tn.it_limit_w / 1e6:g} MW is above all the sources it can draw from together "
                                f"({cap_w / 1e6:g} MW)", f"lower it_limit_mw to at most {cap_w / 1e6:g} or add sources")
    # pools in tents; the idle power of what is placed must fit under the tent's IT limit
    idle: dict[str, float] = {n: 0.0 for n in names}
    for i, (p, pc) in enumerate(zip(pools, pool_cfgs)):
        tent = p.get("tent", names[0])
        if tent not in names:
            raise ScenarioError(f"pools[{i}].tent", f"no tent named {tent!r}", f"use one of: {', '.join(names)}")
        idle[tent] += pc.replicas * pc.accels * (pc.hardware.idle_w + fac.host_w_per_accel)
    for k, tn in enumerate(tents):
        if idle[tn.name] > tn.it_limit_w:
            raise ScenarioError(f"facility.tents[{k}].it_limit_mw",
                                f"{tn.it_limit_w / 1e6:g} MW is below the idle power of what is placed in "
                                f"{tn.name!r} ({idle[tn.name] / 1e6:.3g} MW)",
                                "raise it_limit_mw or place fewer accelerators in the tent")
    return fac
