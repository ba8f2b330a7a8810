"""A coupled site: every cell of a fleet on one power bus (`[fleet] power_bus = "shared"`),
advanced in lockstep windows, with one site-level facility acting on their summed draw.

Each window [T - w, T] (w: `[fleet] window_s`, by default the power manager's interval):
1. every cell runs to T where it lives (sim/engine/drivers/cell.py; a block of cells in this
   process, a local worker process or a Dask actor: sim/studies/blocks.py) and reports its IT
   draw over the window in bins of `[fleet] bin_s`, per tent, and its replicas' state;
2. the site (`Site`) feeds the summed bins to its one ledger (every turbine and its ramp, the
   battery, each tent's PUE: sim/facility/ledger.py) with its own events in time order (each
   unit's random trips drawn once for the site, scheduled trips), then at T runs the power
   manager, any policy, plug-ins included, over a view of every cell's replicas (`SiteView`);
3. the manager's decisions (per replica: cap, drain, undrain; shedding) go back to the cells,
   which apply them at T before their next window.
Only bins, replica states and decisions cross between the site and the cells. A cell's results
depend only on its scenario, its seed and the decisions it was given, and the site sums the
cells' bins in cell order: the same bits on any executor and worker count.

What the figures rest on: energy is the cells' exact integrals; the site's peak, its time over
the supply and its ramps see the draw averaged over a bin, and the manager decides on what the
site saw. The coupling is exact in the limit: one cell coupled against the same cell run alone
gives the same energy to 1e-9 at 0.0002 s bins; at the default 0.001 s, mean power within 0.3%,
peak and battery energy within about 1% (a cap decided on a bin's mean moves later events);
at 0.01 s the battery's energy is 12% short (tests/test_site.py, benchmarks/bench_site.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from sim.engine.drivers.cell import DRAIN, UNDRAIN, CellReport, window_bins
from sim.engine.facility_procs import cap_value, live_supply_w, replica_index, start_sources
from sim.engine.kernel.layout import PW_R, PW_T, PW_W
from sim.facility.ledger import Ledger, apply_rows
from sim.registry import MANAGERS


@dataclass
class Decisions:
    """A window's decisions for one cell, applied at time `t`."""

    t: float
    cap_set: np.ndarray  # bool per replica: its cap was set
    cap_w: np.ndarray  # the cap per accelerator (NaN: none)
    drain: np.ndarray  # int8 per replica: KEEP, DRAIN or UNDRAIN (the last called)
    shed: bool | None  # shedding on/off (None: not called)

    def args(self) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, bool | None]:
        return self.t, self.cap_set, self.cap_w, self.drain, self.shed


class _Replica:
    """A replica of some cell as the site's manager sees it."""

    __slots__ = ("_v", "_c", "_r", "index", "pool")

    def __init__(self, view: "SiteView", c: int, r: int, index: int, pool: Any) -> None:
        self._v, self._c, self._r, self.index, self.pool = view, c, r, index, pool

    @property
    def drained(self) -> bool:
        return bool(self._v.drained[self._c][self._r])

    @property
    def cap_w(self) -> float | None:
        c = float(self._v.cap[self._c][self._r])
        return None if math.isnan(c) else c


class SiteView:
    """The manager's narrow interface (sim/policies/interfaces.py PowerControl) over every cell's
    replicas; what it is told to do is collected per cell (`decisions`)."""

    def __init__(self, site: "Site", reports: list[CellReport], supply_w: float, bridge_w: float) -> None:
        self._site = site
        self._reports = reports
        self._supply_w, self._bridge_w = supply_w, bridge_w
        self.drained = [r.drained.copy() for r in reports]
        self.cap = [r.cap_w.copy() for r in reports]
        self._set = [np.zeros(len(r.live), bool) for r in reports]
        self._drain = [np.zeros(len(r.live), np.int8) for r in reports]
        self._shed: bool | None = None
        self._live: list[_Replica] | None = None

    @property
    def replicas(self) -> list[_Replica]:
        """Replicas that can serve now (not failed, commissioned), in the site's replica order."""
        if self._live is None:
            s = self._site
            self._live = [_Replica(self, c, r, s.offset[c] + r, s.pools[c][r])
                          for c, rep in enumerate(self._reports) for r in np.flatnonzero(rep.live).tolist()]
        return self._live

    @property
    def draw_w(self) -> float:
        return float(sum(r.draw_w for r in self._reports))

    @property
    def bridge_w(self) -> float:
        return self._bridge_w

    @property
    def over_supply(self) -> bool:
        return self.draw_w > self._supply_w + self._bridge_w

    def budget_w(self) -> float:
        led, fac = self._site.ledger, self._site.fac
        pue = max(led.pue_of) if led.pue_of else 1.0
        hosts = sum(r.hosts_on_w for r in self._reports)
        return min(self._supply_w / pue, sum(t.it_limit_w for t in fac.tents)) - hosts

    def _where(self, index: Any, method: str) -> tuple[int, int]:
        i = replica_index(index, self._site.n_replicas, method)
        return self._site.where[i]

    def set_cap(self, index: int, w_per_accel: float | None) -> None:
        c, r = self._where(index, "set_cap")
        w = cap_value(w_per_accel)
        self._set[c][r] = True
        self.cap[c][r] = math.nan if w is None else w

    def drain(self, index: int) -> None:
        c, r = self._where(index, "drain")
        self._drain[c][r] = DRAIN
        self.drained[c][r] = True

    def undrain(self, index: int) -> None:
        c, r = self._where(index, "undrain")
        self._drain[c][r] = UNDRAIN
        self.drained[c][r] = False

    def shed(self, on: bool) -> None:
        self._shed = bool(on)

    def decisions(self, t: float) -> list[Decisions]:
        return [Decisions(t, self._set[c], self.cap[c], self._drain[c], self._shed) for c in range(len(self._reports))]


def _compiled() -> Any:
    """The compiled engine's namespace (its ledger walk), or None without numba."""
    from sim.engine.kernel.jit import NUMBA_ERROR

    if NUMBA_ERROR is not None:
        return None
    from sim.engine.compilation import compiled

    return compiled()


class Site:
    """The site's facility: one ledger on the cells' summed draw, the sources' events, the manager."""

    def __init__(self, fac: Any, seed: int, bin_s: float, pools: list[list[Any]]) -> None:
        import simpy

        self.env = simpy.Environment()
        self.end = self.env.event()
        self.fac = fac
        self.sc = SimpleNamespace(seed=seed)  # the sources' random streams: the site's seed
        self.bin_s = bin_s
        n_t = len(fac.tents)
        self.ledger = Ledger(n_t, list(range(n_t)), [t.pue(0.0) for t in fac.tents])  # a "replica" per tent
        self.ledger.attach_sources(fac)
        self.ledger.rep_w, self.ledger.tent_it_w = np.zeros(n_t), np.zeros(n_t)  # (arrays: the compiled walk's)
        self._tent_of = np.arange(n_t, dtype=np.int64)
        self._m = _compiled()
        self.units_up = {s.name: s.units for s in fac.sources if s.kind == "gas_turbine"}
        self.supply_drops = 0
        self.trip_marks: list[float] = []
        self.pools = pools  # per cell, each replica's pool (PoolConfig)
        self.offset = np.concatenate(([0], np.cumsum([len(p) for p in pools]))).astype(np.int64)
        self.n_replicas = int(self.offset[-1])
        self.where = [(c, r) for c, p in enumerate(pools) for r in range(len(p))]  # site index -> (cell, replica)
        self.manager = MANAGERS.make(fac.manager_policy)
        self.t0 = 0.0
        start_sources(self)

    def _feed(self, rows: tuple[np.ndarray, np.ndarray, np.ndarray], q: int, t: float) -> int:
        """The bins' rows (time, tent, W) from q up to t (those at t too: power changes come
        before the facility's events of their instant), then the ledger on to t: by the compiled
        engine's ledger walk (the same arithmetic, sim/facility/ledger.py apply_rows) where numba
        is, as a window holds thousands of bins."""
        ts, rs, ws = rows
        q1 = int(np.searchsorted(ts, t, side="right"))
        led = self.ledger
        n = q1 - q
        if n and self._m is not None:
            pw = np.empty((n, 3))
            pw[:, PW_T], pw[:, PW_R], pw[:, PW_W] = ts[q:q1], rs[q:q1], ws[q:q1]
            scratch = (np.empty(n), np.empty(n, np.int64), np.empty(n), np.empty(2 * n + 1, np.int64))
            self._m.ledger_walk(pw, n, t, led.L, led.rep_w, self._tent_of, led.tent_it_w,
                                np.asarray(led.pue_of, dtype=np.float64), *scratch)
            q = q1
        apply_rows(led.L, led.rep_w, led.tent_of, led.tent_it_w, led.pue_of, ts, rs, ws, q, q1, t)
        return q1

    def window(self, T: float, it_uj: np.ndarray, reports: list[CellReport],
               t_end: float | None = None) -> list[Decisions] | None:
        """The window ending at T: the cells' summed draw (it_uj: (tents, bins), microjoules) and
        the site's events into the ledger, then the manager's decisions at T (None: the run
        ended at t_end <= T)."""
        env = self.env
        stop = T if t_end is None else t_end
        if T > self.t0:
            edges = window_bins(self.t0, T, self.bin_s)
            w = it_uj * 1e-6 / np.diff(edges)  # (tents, bins): mean IT draw per bin, W
            n_t, nb = w.shape
            rows = (np.repeat(edges[:-1], n_t), np.tile(np.arange(n_t), nb), w.T.reshape(-1))
            q = 0
            while env.peek() <= stop:
                q = self._feed(rows, q, env.peek())
                env.step()
            self._feed(rows, q, stop)
        else:  # the run's start: every cell's draw from T on
            it_w = np.sum([r.it_uw for r in reports], axis=0) * 1e-6
            n_t = len(it_w)
            self._feed((np.full(n_t, T), np.arange(n_t), it_w), 0, T)
        self.t0 = T
        if t_end is not None:
            self.ledger.sample(t_end, self.units_up, self._min_cap(reports, None), 0)
            self.ledger.close(t_end)
            return None
        return self._manage(T, reports)

    def _manage(self, T: float, reports: list[CellReport]) -> list[Decisions]:
        led, fac = self.ledger, self.fac
        for k, t in enumerate(fac.tents):
            led.set_pue(k, t.pue(T), T)
        supply = live_supply_w(fac, led, self.units_up)
        view = SiteView(self, reports, supply, led.battery_w * (led.battery_j > 0))
        if self.n_replicas and any(r.live.any() for r in reports):
            self.manager.act(view, supply)
        dec = view.decisions(T)
        drained = sum(int(np.count_nonzero(d & ~r.comm)) for d, r in zip(view.drained, reports, strict=True))
        led.sample(T, self.units_up, self._min_cap(reports, view), drained)
        return dec

    @staticmethod
    def _min_cap(reports: list[CellReport], view: SiteView | None) -> float:
        caps = view.cap if view is not None else [r.cap_w for r in reports]
        lows = [float(np.nanmin(c)) for c in caps if len(c) and not np.isnan(c).all()]
        return min(lows) if lows else math.nan

    def figures(self, t_end: float) -> dict[str, Any]:
        """The site's own figures (the fleet summary's fleet_* power keys)."""
        led = self.ledger
        return {"fleet_facility_power_peak_w": led.peak_fac_w,
                "fleet_facility_power_mean_w": led.energy_fac_j / t_end if t_end > 0 else 0.0,
                "fleet_energy_j": led.energy_fac_j, "fleet_it_energy_j": led.energy_it_j,
                "fleet_battery_used_j": led.battery_used_j,
                "ramp_limit_exceeded_s": led.ramp_exceeded_s, "power_limit_exceeded_s": led.exceeded_s,
                "supply_drops": self.supply_drops, "trip_times_s": list(self.trip_marks)}
