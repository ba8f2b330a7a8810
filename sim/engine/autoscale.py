"""The autoscaler: one control process per autoscaled pool, run with the facility's events on
either driver (sim/engine/facility_procs.py starts it), acting on replicas only through their
narrow interface (`scale_off`, `scale_standby`, `scale_on`).

Every pool builds `max_replicas` replicas; each is in one state:
- off: takes nothing, draws nothing, is not billed;
- starting: cold start (`start_s` + its weights over `load_gbps`), drawing idle power, billed;
- serving;
- draining: takes no new requests, finishes what it holds (nothing is lost), billed until the
  controller finds it empty at a decision, then off.
Every `interval_s` the pool's policy (sim/policies/autoscalers.py) says how many replicas it
wants; more than serving + starting: draining ones serve again first (their weights are still
loaded), then off ones start, lowest index first; fewer (the highest answer of the last
`scale_down_delay_s`, the HPA's stabilisation window): starting ones stop first, then the
highest-index serving ones drain. Replica-hours are the billed time.
"""

from __future__ import annotations

import math
from collections import deque
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.engine.events import FACILITY, Later, then, wait_or_end
from sim.engine.kernel.layout import IDLE, NRUN, OUTREQ, QLEN, QROW, ST, TOT, USED
from sim.engine.recorder import IN_FLIGHT
from sim.errors import ScenarioError
from sim.registry import AUTOSCALERS

OFF, STARTING, SERVING, DRAINING = 0, 1, 2, 3
STATE_NAMES = ("off", "starting", "serving", "draining")


class AutoscaleLog:
    """What the autoscalers did: a sample per pool per decision (columns) and each replica's
    billed seconds."""

    COLUMNS = ("t_s", "pool", "serving", "starting", "draining", "desired", "outstanding", "queued",
               "arrivals_per_s")

    def __init__(self) -> None:
        self.cols: dict[str, list] = {k: [] for k in self.COLUMNS}
        self.billed_s: dict[str, float] = {}  # pool -> replica-seconds billed
        self.cold_starts: dict[str, int] = {}
        self.drains: dict[str, int] = {}
        self._since: dict[int, tuple[str, float]] = {}  # replica -> (pool, billed since)
        self.intervals: list[tuple[str, int, float, float]] = []  # billed: (pool, replica, from, to)
        # each change of a replica's state: (time, replica, new state: STATE_NAMES' index)
        self.events: dict[str, list] = {"t_s": [], "replica": [], "state": []}

    def mark(self, t: float, r: int, state: int) -> None:
        self.events["t_s"].append(t)
        self.events["replica"].append(r)
        self.events["state"].append(STATE_NAMES[state])

    def bill_from(self, r: int, pool: str, t: float) -> None:
        self._since.setdefault(r, (pool, t))

    def bill_to(self, r: int, t: float) -> None:
        if r in self._since:
            pool, t0 = self._since.pop(r)
            self.billed_s[pool] = self.billed_s.get(pool, 0.0) + max(0.0, t - t0)
            self.intervals.append((pool, r, t0, t))

    def close(self, t_end: float) -> None:
        """Bill every replica still on up to the end of the run."""
        for r in sorted(self._since):
            self.bill_to(r, t_end)

    def replica_hours(self) -> dict[str, float]:
        return {p: s / 3600.0 for p, s in self.billed_s.items()}

    def columns(self) -> dict[str, np.ndarray]:
        return {k: (np.asarray(v, dtype=object if k == "pool" else float)) for k, v in self.cols.items()}


def _right(arr: np.ndarray, d0: float, x: float) -> int:
    """np.searchsorted(arr + d0, x, side="right"), bit for bit, without forming arr + d0: the
    search on x - d0, then the few rows where rounding could differ checked as the sum would."""
    n = len(arr)
    i = int(np.searchsorted(arr, x - d0, side="right"))
    while i > 0 and arr[i - 1] + d0 > x:
        i -= 1
    while i < n and arr[i] + d0 <= x:
        i += 1
    return i


class PoolView:
    """What an autoscaling policy reads of its pool at a decision (sim/policies/autoscalers.py).
    The counts are read at once; the KV share and the interval's p90 TTFT only if the policy
    reads them (a percentile at every decision was most of a long autoscaled run's overhead)."""

    def __init__(self, ctl: "_Controller", now: float) -> None:
        k = ctl.kernel
        cfg = ctl.cfg
        self.now_s = now
        self.pool = ctl.pool
        self.min_replicas, self.max_replicas = cfg.min_replicas, cfg.max_replicas
        self.interval_s, self.target = cfg.interval_s, cfg.target
        self.slo_ttft_s = ctl.slo_ttft_s
        st = ctl.state
        self.serving = st.count(SERVING)
        self.starting = st.count(STARTING)
        self.draining = st.count(DRAINING)
        self.current = self.serving + self.starting
        self._on = on = ctl.idx[np.array([s == SERVING for s in st], bool)]
        self._S = S = k.S
        self.outstanding = int(S[on, OUTREQ].sum()) if len(on) else 0
        self.queued = int(S[S[on, QROW], QLEN].sum()) if len(on) else 0
        self.running = int(S[on, NRUN].sum()) if len(on) else 0
        # the last interval's arrivals at this pool (the interval's rows found in the arrival
        # column as it is: adding d0 to every request at every decision made autoscaling
        # O(requests x decisions))
        self._rq = rq = k.rq
        self._d0 = d0 = k.st.clk.d0
        lo = _right(rq.arr, d0, now - cfg.interval_s)
        hi = _right(rq.arr, d0, now)
        js = np.arange(lo, hi)
        self._js = js[ctl.in_pool[rq.REP[js]]]  # (REP = -1, not routed: in_pool's last entry, False)
        self.arrivals_per_s = len(self._js) / cfg.interval_s

    @cached_property
    def kv_used_frac(self) -> float:
        """Mean share of KV blocks in use over the serving replicas."""
        on, S = self._on, self._S
        if not len(on):
            return 0.0
        return float(np.mean(S[on, USED] / np.maximum(S[on, TOT].astype(float), 1.0)))

    @cached_property
    def ttft_p90_s(self) -> float:
        """p90 TTFT of the interval's arrivals (those still waiting: their wait so far); NaN: none."""
        js, rq = self._js, self._rq
        if not len(js):
            return math.nan
        first = rq.FIRST[js]
        t_js = rq.arr[js] + self._d0
        wait = np.where(first > 0, first - t_js, self.now_s - t_js)
        keep = (first > 0) | (rq.STATUS[js] == IN_FLIGHT)
        return float(np.percentile(wait[keep], 90)) if keep.any() else math.nan


class _Controller:
    """One pool's autoscaler."""

    def __init__(self, sim: Any, pool: Any, log: AutoscaleLog) -> None:
        self.sim, self.pool, self.cfg, self.log = sim, pool, pool.autoscaler, log
        self.kernel = sim.kernel
        self.reps = [r for r in sim.replicas if r.pool.name == pool.name]
        self.idx = np.array([r.index for r in self.reps], np.int64)
        self.in_pool = np.zeros(len(sim.replicas) + 1, bool)  # by replica; the last: not routed (-1)
        self.in_pool[self.idx] = True
        self.policy = AUTOSCALERS.make(self.cfg.policy)
        self.slo_ttft_s = sim.sc.slo.ttft_s
        perf = sim.sim.replicas[self.reps[0].index].perf if self.reps else None
        weights = perf.weight_bytes if perf is not None else 0.0
        self.cold_s = self.cfg.start_s + weights / (self.cfg.load_gbps * 1e9 / 8.0)
        self.state = [SERVING] * self.cfg.initial_replicas + [OFF] * (len(self.reps) - self.cfg.initial_replicas)
        self.gen = [0] * len(self.reps)  # a start's token: a start cancelled before it ends does nothing
        self.recs: deque = deque()  # (time, recommendation) over the stabilisation window
        log.billed_s.setdefault(pool.name, 0.0)
        log.cold_starts.setdefault(pool.name, 0)
        log.drains.setdefault(pool.name, 0)
        for q, r in enumerate(self.reps):
            if self.state[q] == OFF:
                r.scale_off()
            else:
                log.bill_from(r.index, pool.name, 0.0)
            log.mark(0.0, r.index, self.state[q])

    def _set(self, q: int, state: int, now: float) -> None:
        """Replica q of the pool to `state`: the replica told, the billing and the log kept."""
        r, log = self.reps[q], self.log
        was, self.state[q] = self.state[q], state
        if state == SERVING:
            r.scale_on()
        elif state == STARTING:
            self.gen[q] += 1
            r.scale_standby()
            log.cold_starts[self.pool.name] += 1
            then(Later(self.sim.env, self.cold_s, FACILITY), self._served, q, self.gen[q])
        elif was != DRAINING:  # (a drained replica is off already)
            r.scale_off()
            log.drains[self.pool.name] += state == DRAINING
        if state == OFF:
            log.bill_to(r.index, now)
        else:
            log.bill_from(r.index, self.pool.name, now)
        log.mark(now, r.index, state)

    def _served(self, q: int, gen: int) -> None:
        if self.state[q] == STARTING and self.gen[q] == gen:
            self._set(q, SERVING, self.sim.env.now)

    def decide(self, now: float) -> None:
        k, st = self.kernel, self.state
        for q, r in enumerate(self.reps):  # drained and empty: off
            if st[q] == DRAINING and int(k.S[r.index, ST]) == IDLE and int(k.S[r.index, OUTREQ]) == 0:
                self._set(q, OFF, now)
        view = PoolView(self, now)
        got = self.policy.desired(view)
        # (a plug-in's answer, checked every call: a whole number, not a bool, NaN, inf or text)
        if isinstance(got, bool) or not isinstance(got, (int, float, np.integer, np.floating)) or not np.isfinite(got) \
                or got != int(got):
            raise ScenarioError(f"pools.{self.pool.name}.autoscaler.policy", f"{self.cfg.policy}: desired() returned "
                                f"{got!r}", "return a whole number of replicas")
        want = int(got)
        want = min(max(want, self.cfg.min_replicas), self.cfg.max_replicas)
        self.recs.append((now, want))
        while self.recs and self.recs[0][0] < now - self.cfg.scale_down_delay_s:
            self.recs.popleft()
        cur = view.current
        goal = want if want >= cur else min(cur, max(w for _, w in self.recs))
        if goal > cur:
            need = goal - cur
            for q in range(len(st)):  # draining ones first: their weights are loaded
                if need and st[q] == DRAINING:
                    self._set(q, SERVING, now)
                    need -= 1
            for q in range(len(st)):
                if need and st[q] == OFF:
                    self._set(q, STARTING, now)
                    need -= 1
        elif goal < cur:
            cut = cur - goal
            for q in reversed(range(len(st))):  # cold starts in progress stop first
                if cut and st[q] == STARTING:
                    self._set(q, OFF, now)
                    cut -= 1
            for q in reversed(range(len(st))):
                if cut and st[q] == SERVING:
                    self._set(q, DRAINING, now)
                    cut -= 1
        c = self.log.cols
        c["t_s"].append(now)
        c["pool"].append(self.pool.name)
        c["serving"].append(st.count(SERVING))
        c["starting"].append(st.count(STARTING))
        c["draining"].append(st.count(DRAINING))
        c["desired"].append(want)
        c["outstanding"].append(view.outstanding)
        c["queued"].append(view.queued)
        c["arrivals_per_s"].append(view.arrivals_per_s)


def start_autoscalers(sim: Any) -> None:
    """Every autoscaled pool's controller: replicas beyond initial_replicas off from the start,
    then a decision every interval_s until the run ends."""
    pools = [p for p in sim.sc.pools if p.autoscaler is not None]
    if not pools:
        return
    log = sim.autoscale = AutoscaleLog()

    def run(ctl: _Controller):
        while True:
            ended = yield from wait_or_end(sim.env, sim, ctl.cfg.interval_s)
            if ended:
                return
            ctl.decide(sim.env.now)

    for p in pools:
        sim.env.process(run(_Controller(sim, p, log)))


if TYPE_CHECKING:  # mypy holds the view to what plug-ins are promised (sim/policies/interfaces.py)
    from sim.policies.interfaces import AutoscaledPool

    def _conforms(p: PoolView) -> AutoscaledPool:
        return p
