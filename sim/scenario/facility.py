"""The facility: power sources, tents, racks, nodes and accelerators, its live power supply, the
power manager and node failures (the engine acts on replicas only through narrow methods: fail,
repair, drain, undrain, commissioning, cap). Each key is declared once (sim/schema.py).

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
from sim.schema import OMIT, REQUIRED, Table, effective, key, read

SOURCE_KINDS = ("gas_turbine", "grid", "battery")


MIN_INTERVAL_S = 0.01  # a manager acting more often is a mistake (and a run of 1e9 decisions a second)


def _turbine(v: Mapping[str, Any]) -> bool:
    return v.get("kind") == "gas_turbine"


def _battery(v: Mapping[str, Any]) -> bool:
    return v.get("kind") == "battery"


def _not_turbine(v: Mapping[str, Any]) -> bool:
    return v.get("kind") != "gas_turbine"


@dataclass(frozen=True, kw_only=True)
class Source:
    """[[facility.sources]]: gas turbines (units of unit_mw), a grid feed (mw) or a battery (mw, mwh)."""

    kind: str = key(REQUIRED, "what it is", choices=SOURCE_KINDS)
    name: str = key(REQUIRED, "its name", derive=lambda ctx, kw: f"{kw['kind']}{ctx}", doc_default='"<kind><k>"')
    units: int = key(1, "turbine units", positive=True, when=_turbine, doc_when="gas_turbine", doc_default="required")
    unit_mw: float = key(0.0, "a unit's rating", positive=True, unit="MW", when=_turbine, doc_when="gas_turbine",
                         doc_default="required")
    # a grid's capacity or a battery's discharge power, held in unit_mw
    mw: float = key(0.0, "a grid feed's capacity, a battery's discharge power", positive=True, unit="MW",
                    when=_not_turbine, doc_when="grid, battery", doc_default="required")
    mtbf_h: float | None = key(None, "each unit's exponential time to failure", positive=True, unit="h",
                               when=_turbine, doc_when="gas_turbine")
    repair_h: float | None = key(None, "its exponential repair time (default 12)", positive=True, unit="h",
                                 when=_turbine, doc_when="gas_turbine")
    energy_mwh: float = key(0.0, "the battery's energy (it starts full)", toml="mwh", positive=True, unit="MWh",
                            when=_battery, doc_when="battery", doc_default="required")
    charge_mw: float = key(0.0, "its charge power: it recharges from the supply's headroom", nonneg=True, unit="MW",
                           when=_battery, doc_when="battery", doc_default="mw")
    round_trip_efficiency: float = key(0.85, "energy returned per energy drawn to charge it (NREL ATB: ~0.85)",
                                       positive=True, hi=1.0, hint="lithium-ion systems return about 0.85 (NREL ATB)",
                                       when=_battery, doc_when="battery")
    min_load_frac: float = key(0.0, "the lowest stable output, a share of the rating (below: fuel burnt at it)",
                               nonneg=True, below=1.0, hint="gas turbines run stably from about 0.3-0.5",
                               when=_turbine, doc_when="gas_turbine")
    trip_at_s: tuple[float, ...] = key((), "scheduled unit trips, one unit each", kind=list,
                                       parse=lambda v, p, c, kw: _times(v, p),
                                       write=lambda v, o: list(v) if v else OMIT, when=_turbine,
                                       doc_when="gas_turbine")
    trip_repair_s: float = key(600.0, "how long a scheduled trip keeps the unit down", positive=True, unit="s",
                               when=_turbine, doc_when="gas_turbine")
    ramp_mw_per_s: float = key(math.inf, "per running unit: how fast its output can rise (sim/facility/ramp.py)",
                               positive=True, unit="MW/s", when=_turbine, doc_when="gas_turbine",
                               write=lambda v, o: v if math.isfinite(v) else OMIT)
    step_load_frac: float = key(1.0, "the largest sudden load increase a unit accepts, a share of its rating",
                                positive=True, hi=1.0, when=_turbine, doc_when="gas_turbine")
    start_s: float = key(0.0, "a repaired or tripped unit's start before it delivers", nonneg=True, unit="s",
                         when=_turbine, doc_when="gas_turbine")
    heat_rate_btu_per_kwh: float | None = key(None, "fuel per kWh delivered (with usd_per_mmbtu: the energy's cost)",
                                              positive=True, when=_turbine, doc_when="gas_turbine")
    usd_per_mmbtu: float | None = key(None, "the gas price", nonneg=True, unit="$/MMBtu", when=_turbine,
                                      doc_when="gas_turbine")
    capex_usd_per_mw: float | None = key(None, "installed cost, amortised over amortization_years", nonneg=True,
                                         unit="$/MW", when=_turbine, doc_when="gas_turbine")
    amortization_years: float = key(20.0, "capex is spread over this many years", positive=True, unit="years",
                                    when=_turbine, doc_when="gas_turbine")

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Any, t: Table) -> dict[str, Any]:
        kind = kw["kind"]
        if kind == "gas_turbine":
            for k in ("units", "unit_mw"):
                if k not in t.data:
                    raise ScenarioError(f"{path}.{k}", "missing", f"add {k} = ... to [{path}]")
            if (kw["heat_rate_btu_per_kwh"] is None) != (kw["usd_per_mmbtu"] is None):
                raise ScenarioError(f"{path}.usd_per_mmbtu" if kw["usd_per_mmbtu"] is None else
                                    f"{path}.heat_rate_btu_per_kwh",
                                    "fuel cost needs both heat_rate_btu_per_kwh and usd_per_mmbtu",
                                    "give both (e.g. 9000 BTU/kWh and 3.5 $/MMBtu) or neither")
        else:
            if "mw" not in t.data:
                raise ScenarioError(f"{path}.mw", "missing", f"add mw = ... to [{path}]")
            kw["unit_mw"] = kw["mw"]
            if kind == "battery":
                if "mwh" not in t.data:
                    raise ScenarioError(f"{path}.mwh", "missing", f"add mwh = ... to [{path}]")
                if "charge_mw" not in t.data:
                    kw["charge_mw"] = kw["mw"]
        return kw


def _times(v: Any, path: str) -> tuple[float, ...]:
    """A list of times (s): numbers, finite, >= 0."""
    out = []
    for k, x in enumerate(_list(v, path)):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ScenarioError(f"{path}[{k}]", f"must be a number of seconds, got {x!r}", "write e.g. [1800.0]")
        if not math.isfinite(x) or x < 0:
            raise ScenarioError(f"{path}[{k}]", f"must be a finite time >= 0, got {x!r}", "write e.g. [1800.0]")
        out.append(float(x))
    return tuple(out)


def _list(v: Any, path: str) -> list:
    if not isinstance(v, list):
        raise ScenarioError(path, f"must be list, got {v!r}", f"write {path.rsplit('.', 1)[-1]} = <list>")
    return v


def _pue(raw: Any, path: str, ctx: Any, kw: Any) -> tuple[float, float, float]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    if isinstance(raw, float):
        if math.isnan(raw) or math.isinf(raw):
            raise ScenarioError(path, f"must be finite, got {raw!r}")
        return raw, 0.0, 15.0
    p = read(Pue, raw, path)
    return p.base, p.amplitude, p.peak_hour


@dataclass(frozen=True, kw_only=True)
class Pue:
    """facility.tents.pue as a table: PUE over the day, base + amplitude x cos(2 pi (hour - peak_hour) / 24)."""

    base: float = key(REQUIRED, "the day's mean", positive=True)
    amplitude: float = key(0.0, "the swing either way", nonneg=True)
    peak_hour: float = key(15.0, "the hour of the highest", nonneg=True, below=24.0, unit="h",
                           hint="give an hour of the day, 0 to 24")


@dataclass(frozen=True, kw_only=True)
class Tent:
    """[[facility.tents]]: a hall with a hard IT power limit and a PUE; pools are placed in it."""

    name: str = key(REQUIRED, "its name", derive=lambda ctx, kw: f"tent{ctx}", doc_default='"tent<k>"')
    it_limit_w: float = key(REQUIRED, "its hard IT power limit", toml="it_limit_mw", positive=True, scale=1e6,
                            unit="MW")
    pue_spec: tuple[float, float, float] = key((1.3, 0.0, 15.0), "PUE: a number, or {base, amplitude, peak_hour}",
                                               toml="pue", kind=(float, dict), parse=_pue,
                                          write=lambda v, o: v[0] if v[1] == 0.0 and v[2] == 15.0 else
                                          {"base": v[0], "amplitude": v[1], "peak_hour": v[2]}, doc_default="1.3")
    commission_s: float = key(0.0, "its pools serve from this time on", nonneg=True, unit="s")
    capex_usd: float | None = key(None, "the tent (structure, power distribution, cooling), amortised", nonneg=True,
                                  unit="$")
    amortization_years: float = key(10.0, "capex is spread over this many years", positive=True, unit="years")

    @property
    def pue_base(self) -> float:
        return self.pue_spec[0]

    @property
    def pue_amplitude(self) -> float:
        return self.pue_spec[1]

    @property
    def pue_peak_hour(self) -> float:
        return self.pue_spec[2]

    def pue(self, t_s: float) -> float:
        """The PUE at time t_s (t = 0 at midnight)."""
        base, amp, peak = self.pue_spec
        if not amp:
            return base
        hour = (t_s / 3600.0) % 24.0
        return base + amp * math.cos(2 * math.pi * (hour - peak) / 24.0)

    @classmethod
    def resolve(cls, kw: dict[str, Any], path: str, ctx: Any, t: Table) -> dict[str, Any]:
        base, amp, _peak = kw["pue_spec"]
        if base - amp < 1.0:
            raise ScenarioError(f"{path}.pue", f"PUE must stay >= 1 (base {base} - amplitude {amp})",
                                "raise base or lower amplitude")
        return kw


@dataclass(frozen=True, kw_only=True)
class Failures:
    """[failures]: node failures: each node fails after an exponential time and is repaired after
    another; its requests are re-queued, failing after retry_limit re-queues."""

    node_mtbf_h: float | None = key(None, "a node's mean time between failures (none: nodes do not fail)",
                                    positive=True, unit="h")
    node_repair_h: float = key(4.0, "its mean repair time", positive=True, unit="h")
    retry_limit: int = key(2, "re-queues a request survives", nonneg=True)


@dataclass(frozen=True, kw_only=True)
class Manager:
    """[facility.manager]: the power manager, every interval_s: caps, drains or sheds to keep the
    facility's draw within the live supply (sim/policies/managers.py)."""

    policy: str = key("cap_uniform", "the policy (dcsim policies), or a plug-in \"file.py:Class\"", kind=str,
                      parse=lambda v, p, c, kw: _manager_policy(v, p, c))
    interval_s: float = key(5.0, "time between decisions", positive=True, lo=MIN_INTERVAL_S, unit="s",
                            hint="managers act every second or more (every 5 s by default)")
    reserve_units: int = key(0, "N+k: hold the load under the running turbines less the k largest", nonneg=True)


def _manager_policy(v: Any, path: str, base_dir: Any) -> str:
    if not isinstance(v, str):
        raise ScenarioError(path, f"must be str, got {v!r}", "write policy = <str>")
    return str(MANAGERS.validate(v, path, base_dir))


def _items(cls: type) -> Any:
    def parse(raw: Any, path: str, ctx: Any, kw: Any) -> tuple:
        return tuple(read(cls, x, f"{path}[{k}]", k) for k, x in enumerate(_list(raw, path)))
    return parse


@dataclass(frozen=True, kw_only=True)
class Facility:
    """[facility]: where the accelerators draw their power from."""

    sources: tuple[Source, ...] = key(REQUIRED, "[[facility.sources]]", kind=list, parse=_items(Source),
                                      write=lambda v, o: [effective(s) for s in v])
    tents: tuple[Tent, ...] = key(REQUIRED, "[[facility.tents]]", kind=list, parse=_items(Tent),
                                  write=lambda v, o: [effective(x) for x in v])
    manager: Manager = key(REQUIRED, "[facility.manager]", kind=dict,
                           parse=lambda v, p, c, kw: read(Manager, v, p, c),
                           derive=lambda c, kw: read(Manager, {}, "facility.manager", c))
    gpus_per_node: int = key(8, "accelerators per node (a node fails as a whole)", positive=True)
    nodes_per_rack: int = key(4, "nodes per rack", positive=True)
    host_w_per_accel: float | None = key(None, "server power besides the accelerators (CPU, NIC, fans), while on "
                                         "(none: each part's, serving and idle, from the catalog)", nonneg=True,
                                         unit="W", kind=float, doc_default="the catalog's")
    failures: Failures = Failures()
    declared: bool = True  # from a [facility] table (False: only [failures], or autoscaling's events)
    failures_given: bool = False

    @property
    def manager_policy(self) -> str:
        return self.manager.policy

    @property
    def interval_s(self) -> float:
        return self.manager.interval_s

    @property
    def reserve_units(self) -> int:
        return self.manager.reserve_units

    @classmethod
    def empty(cls, failures: Failures | None = None) -> "Facility":
        """No [facility]: nothing but node failures ([failures]) or autoscaling's events."""
        return cls(
            sources=(),
            tents=(),
            manager=Manager(policy="none", interval_s=1.0),
            failures=failures or Failures(),
            declared=False,
            failures_given=failures is not None,
        )

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
    fl = read(Failures, failures_raw, "failures") if failures_raw is not None else None
    if raw is None:
        for i, p in enumerate(pools):
            if isinstance(p, Mapping) and "tent" in p:
                raise ScenarioError(f"pools[{i}].tent", f"tent {p['tent']!r} but the scenario has no [facility]",
                                    "declare [[facility.tents]] or remove tent")
        return Facility.empty(fl) if fl else None
    fac = read(Facility, raw, "facility", base_dir, failures=fl or Failures(), failures_given=fl is not None)
    if not fac.sources:
        raise ScenarioError("facility.sources", "empty", "add at least one [[facility.sources]] (gas_turbine, grid)")
    if not fac.tents:
        raise ScenarioError("facility.tents", "empty", "add at least one [[facility.tents]]")
    src_names = [x.name for x in fac.sources]
    dup = next((n for n in src_names if src_names.count(n) > 1), None)
    if dup is not None:  # (facility.parquet has a column per source: one would vanish)
        raise ScenarioError("facility.sources.name", f"two sources are named {dup!r}", "give each source its own name")
    units = sum(x.units for x in fac.sources if x.kind == "gas_turbine")
    if fac.manager.reserve_units and fac.manager.reserve_units >= units:
        raise ScenarioError("facility.manager.reserve_units", f"{fac.manager.reserve_units} spare units leave none of "
                            f"the {units} turbine units to carry the load", f"give at most {max(0, units - 1)}")
    for k, x in enumerate(fac.sources):
        if x.kind == "gas_turbine" and len(x.trip_at_s) > x.units * 1000:
            raise ScenarioError(f"facility.sources[{k}].trip_at_s", f"{len(x.trip_at_s)} scheduled trips",
                                "give the trips the study needs (a few)")
    names = [x.name for x in fac.tents]
    cap_w = sum(s.units * s.unit_mw * 1e6 for s in fac.sources)  # every source at once (battery: its power)
    for k, tn in enumerate(fac.tents):
        if tn.it_limit_w > cap_w * (1 + 1e-12):  # a limit that can never bind: a mistake in one of the two
            raise ScenarioError(f"facility.tents[{k}].it_limit_mw",
                                f"{tn.it_limit_w / 1e6:g} MW is above all the sources it can draw from together "
                                f"({cap_w / 1e6:g} MW)", f"lower it_limit_mw to at most {cap_w / 1e6:g} or add sources")
    # pools in tents; the idle power of what is placed must fit under the tent's IT limit
    idle: dict[str, float] = {n: 0.0 for n in names}
    for i, (p, pc) in enumerate(zip(pools, pool_cfgs, strict=True)):
        tent = p.get("tent", names[0])
        if tent not in names:
            raise ScenarioError(f"pools[{i}].tent", f"no tent named {tent!r}", f"use one of: {', '.join(names)}")
        host = fac.host_w_per_accel if fac.host_w_per_accel is not None else pc.hardware.host_idle_w_per_accel
        idle[tent] += pc.replicas * pc.accels * (pc.hardware.idle_w + host)
    for k, tn in enumerate(fac.tents):
        if idle[tn.name] > tn.it_limit_w:
            raise ScenarioError(f"facility.tents[{k}].it_limit_mw",
                                f"{tn.it_limit_w / 1e6:g} MW is below the idle power of what is placed in "
                                f"{tn.name!r} ({idle[tn.name] / 1e6:.3g} MW)",
                                "raise it_limit_mw or place fewer accelerators in the tent")
    return fac
