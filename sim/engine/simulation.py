"""Assembles one simulation from a built Model and runs it on one of the two drivers over the
one replica kernel (sim/engine/kernel/): the fast driver (sim/engine/drivers/fast.py), or the
per-step SimPy driver (sim/engine/drivers/step.py: one process per replica, one event per batch
step) for plug-ins in plain Python, `run.engine = "simpy"` and what the fast driver does not host.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from sim.errors import ScenarioError
from sim.registry import SCHEDULERS, Registry
from sim.scenario.config import PoolConfig, Scenario
from sim.perf.roofline import PerfModel
from sim.engine.build import Model, build
from sim.engine.result import Result
from sim.engine.recorder import RequestTable
from sim.progress import Reporter
from sim.workload.generate import Workload

def scheduler_code(policy: str) -> tuple[int, Any]:
    """(the kernel's planner and queue code, the scheduler object the per-step driver calls or
    None) for a pool's scheduler policy. A built-in runs as the kernel's planner; a plug-in
    plans in Python over the kernel's state (sim/engine/views.py CoreView) and takes the code
    of the built-in it derives from, else of its `queue` discipline (fifo: chunked)."""
    if policy in SCHEDULERS.compiled_names():
        return SCHEDULERS.code(policy), None
    cls = SCHEDULERS.load(policy)
    builtins = {SCHEDULERS.load(n): SCHEDULERS.code(n) for n in SCHEDULERS.compiled_names()}
    for base in cls.__mro__:
        if base in builtins:
            return builtins[base], cls
    q = getattr(cls, "queue", "fifo")
    return SCHEDULERS.code({"priority": "priority", "sjf": "sjf"}.get(q, "chunked")), cls


class ReplicaSpec:
    """One replica as the drivers build it: its pool, roofline model, KV geometry, power and
    front-end latency. Plain data: no state of a run."""

    def __init__(self, rid: int, pool: PoolConfig, prefix_tokens: int, host_w_per_accel: float | None,
                 scaleout: tuple[float, float] | None = None, ep_net: tuple[float, float, int] | None = None) -> None:
        self.rid = self.index = rid
        self.pool = pool
        self.service = pool.service
        # its hosts' draw while it serves and while it idles: [facility] host_w_per_accel for both,
        # else the catalog's per part (sim/perf/power.py host_power_w)
        hw = pool.hardware
        self.host_w = (hw.host_w_per_accel if host_w_per_accel is None else host_w_per_accel) * pool.accels
        self.host_idle_w = (hw.host_idle_w_per_accel if host_w_per_accel is None else host_w_per_accel) * pool.accels
        sc = pool.scheduler
        if pool.service is None:
            self.perf: PerfModel | None = PerfModel(pool.hardware, pool.model, pool.tp, pool.dtype, pool.kv_dtype,
                                                    pool.clock_lock, scaleout, pool.speculative, pool.ep,
                                                    pool.moe_imbalance, ep_net, pool.engine)
            self.total_blocks = self.perf.kv_blocks(sc.kv_memory_fraction, sc.block_size)
            self.block_size = sc.block_size
            self.prefix_blocks = prefix_tokens // sc.block_size if sc.prefix_caching else 0
            self.lag = pool.hardware.output_lag_steps
            self.delay_s = pool.hardware.request_overhead_s  # host-side latency (HTTP, tokenizer)
            self.policy_code, cls = scheduler_code(sc.policy)
            # a plug-in is untrusted: built and called through the registry's guard (one line on an error)
            self.scheduler = (SCHEDULERS.make(sc.policy, sc.max_batch_size, sc.max_batched_tokens)
                              if cls is not None else None)
            self.max_batch_size = 1 if sc.policy == "fcfs" else sc.max_batch_size
            self.info_blocks = self.total_blocks
            # the KV tier: blocks it holds and seconds to load one (none when it loses to recomputing)
            off = pool.kv_offload
            self.block_bytes = self.perf.group_kv_bytes_per_token * sc.block_size
            self.tier_block_s = self.perf.kv_block_load_s(sc.block_size, off.gbps) if off is not None else 0.0
            pays = off is not None and self.perf.kv_tier_pays(sc.block_size, off.gbps)
            self.tier_blocks = int(off.capacity_gb * 1e9 // self.block_bytes) if pays and off is not None else 0
            # seconds per token of work (least_time): a decode step of 64 sequences at 2,048 tokens
            # of context, per sequence (an assumed reference point: decode dominates serving time)
            self.token_s = self.perf.step_time(64, 64 * 2048.0, n_seq=64) / 64
        else:  # analytic service: no KV, no front end, one request at a time
            self.perf = None
            self.total_blocks, self.block_size, self.prefix_blocks, self.lag = 1 << 62, 1, 0, 0
            self.delay_s = 0.0
            self.policy_code, self.scheduler = 0, None
            self.max_batch_size = 1
            self.info_blocks = 0
            self.token_s = pool.service.mean_s
            self.block_bytes, self.tier_block_s, self.tier_blocks = 0.0, 0.0, 0

    def twin(self, rid: int) -> "ReplicaSpec":
        """Replica rid of the same pool: this spec's data shared (its perf model too: plain data),
        a scheduler plug-in of its own (it may keep state per replica)."""
        t = copy.copy(self)
        t.rid = t.index = rid
        if self.scheduler is not None:
            sc = self.pool.scheduler
            t.scheduler = SCHEDULERS.make(sc.policy, sc.max_batch_size, sc.max_batched_tokens)
        return t


def _closed_loop_supported(sc: Scenario) -> None:
    """What closed-loop clients (sim/engine/kernel/clients.py) do not run with yet."""
    if sc.router.policy == "central_queue":
        raise ScenarioError("router.policy", "central_queue does not run with closed-loop clients yet",
                            'use another router (e.g. "jsq"), or an open-loop arrival process')


class Simulation:
    """One run: give it a Model (sim/engine/build.py: the workload, router and service times,
    drawn) or a Scenario (built here), then call `run()`. Assembling it reads no file and draws
    no random number beyond what the build did."""

    def __init__(self, scenario: Scenario | Model, workload: Workload | None = None,
                 report: Reporter | None = None) -> None:
        model = scenario if isinstance(scenario, Model) else build(scenario, workload)
        scenario = model.scenario
        self.sc = scenario
        self.wl = model.workload
        self.report = report if report is not None else Reporter()  # says nothing unless the caller asks
        self.table = RequestTable(len(self.wl))
        self.router = model.router
        self.groups = model.groups  # routing groups: the replicas serving each model (sim/engine/build.py)
        if self.wl.clients:
            _closed_loop_supported(scenario)
        sess = self.wl.session
        n_g = len(self.groups.models)
        # what session affinity keys on: a session's requests of one model (with several models
        # a session's requests to another model are another session there)
        self.route_session = (None if sess is None else sess if n_g == 1 else
                              np.where(sess < 0, -1, sess * n_g + np.maximum(self.groups.of_request, 0)))
        fac = scenario.facility
        host = fac.host_w_per_accel if fac is not None else None
        self.replicas: list[ReplicaSpec] = []
        net = scenario.network
        ep_net = (net.gbps * 1e9 / 8.0, net.latency_us * 1e-6, net.gpus_per_node)  # the ports EP all-to-alls use
        for pool in scenario.pools:
            if not pool.replicas:
                continue
            first = ReplicaSpec(len(self.replicas), pool, self.wl.prefix_tokens, host, net.scaleout(pool.tp), ep_net)
            self.replicas.append(first)
            for _ in range(pool.replicas - 1):  # the pool's others: the same spec (a site has 1e5 of them)
                self.replicas.append(first.twin(len(self.replicas)))
        cls = self.wl.cls
        classes = scenario.workload.classes
        self._prio = (np.array([c.priority for c in classes], np.int64)[cls] if (cls is not None and classes)
                      else None)  # each request's class priority
        self.fac = fac
        self._setup_power()
        self.service_s: dict[str, np.ndarray] = model.service_s
        self.engine_output = model.engine_output  # speculation's decode lengths (None: the outputs)

    def _setup_power(self) -> None:
        from sim.facility.ledger import Ledger, build_graph

        fac = self.fac
        tents = [t.name for t in fac.tents] if (fac is not None and fac.tents) else ["default"]
        placement = []
        for pool in self.sc.pools:
            tn = pool.tent if pool.tent is not None else tents[0]
            placement += [tents.index(tn)] * pool.replicas
        pue = [fac.tents[k].pue(0.0) if (fac is not None and fac.tents) else 1.0 for k in range(len(tents))]
        self.ledger = Ledger(len(self.replicas), placement, pue)
        self.tent_names = tents
        self.graph = None
        if fac is not None and fac.tents:
            self.graph = build_graph(fac, self.sc.pools, [tents[k] for k in
                                                          [placement[sum(p.replicas for p in self.sc.pools[:i])]
                                                           for i in range(len(self.sc.pools))]])
            self.ledger.attach_sources(fac)
        self.units_up = {s.name: s.units for s in fac.sources if s.kind == "gas_turbine"} if fac is not None else {}

    def request_model(self, i: int) -> str:
        """The model request i asks for (its class's, else the one the pools serve)."""
        classes, cls = self.sc.workload.classes, self.wl.cls
        model = classes[int(cls[i])].model if classes and cls is not None else None
        return model if model is not None else self.groups.models[0]

    def run(self) -> Result:
        from sim.engine.drivers import fast

        engine = self.sc.run.engine
        if engine != "simpy":
            why = fast.supported(self.sc, self.wl)
            if engine == "compiled" and why:
                raise ScenarioError("run.engine", "the compiled engine cannot run this: " + "; ".join(why),
                                    'set run.engine = "auto" (or "simpy")')
            if not why:
                return fast.run(self)
        from sim.engine.drivers import step
        return step.run(self)


def plugin_notice(sc: Scenario) -> str | None:
    """One line saying which of the scenario's policies are plug-ins in plain Python (they run on
    the per-step SimPy driver), or None. The CLI prints it on stderr."""
    named = [("router.policy", sc.router.policy)]
    named += [(f"pools.{p.name}.scheduler.policy", p.scheduler.policy) for p in sc.pools]
    # (a power-manager plug-in acts at control ticks from Python: it runs on the compiled driver too)
    plug = [f"{k} = {v!r}" for k, v in named if Registry.is_plugin(v)]
    if not plug:
        return None
    return ("dcsim: " + ", ".join(plug) + " is a plug-in in plain Python: this run uses the per-step "
            "(SimPy) driver (docs/policies.md says how to make a policy fast)")


def run_scenario(scenario: Scenario) -> Result:
    return Simulation(scenario).run()
