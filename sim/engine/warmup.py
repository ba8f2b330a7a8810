"""The warm-up: small runs that compile every entry point of the kernel, for both drivers and a
scheduler plug-in, into numba's cache (once per machine and source), in the background on a
cold first run (sim/engine/compilation.py) or in the foreground before a study's workers start."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from sim.engine.simulation import Simulation
from sim.progress import Reporter
from sim.scenario.config import parse

WARM_UP: dict[str, Any] = {"name": "warm-up", "seed": 0,
           "workload": {"arrival": "poisson", "rate_per_s": 5.0, "num_requests": 8, "prompt_tokens": 64,
                        "output_tokens": 8},
           "pools": [{"name": "p", "hardware": "h100-sxm", "model": "llama-3.1-8b", "replicas": 2}]}
# ... and with a shared queue, and with a facility whose nodes fail, are repaired and drained:
# every entry point of the compiled engine, with the argument types real runs pass
WARM_UP_FACILITY = {
    "facility": {"gpus_per_node": 1, "host_w_per_accel": 300,
                 "sources": [{"name": "g", "kind": "gas_turbine", "units": 2, "unit_mw": 0.0006}],
                 "tents": [{"name": "t", "it_limit_mw": 0.0012}], "manager": {"policy": "drain", "interval_s": 1.0}},
    "failures": {"node_mtbf_h": 0.0003, "node_repair_h": 0.0002, "retry_limit": 3}}


class _WarmUpScheduler:
    """A scheduler plug-in for the warm-up: it compiles the kernel functions plug-ins call."""

    def __init__(self, max_batch_size: int, max_batched_tokens: int) -> None:
        self.max_batch_size, self.max_batched_tokens = max_batch_size, max_batched_tokens

    def plan(self, core: Any) -> Any:
        from sim.policies.interfaces import Plan

        if core.n_dec:
            core.grow_decodes()
        chunks = []
        if core.waiting and len(core.running) < self.max_batch_size:
            req = core.waiting[0]
            hits, idle = core.peek_hits(req)
            need = core.blocks_for(req.target) - hits
            if need <= core.free_blocks - idle:
                core.admit_with(req, hits, need)
                chunks.append((req, req.target - hits * core.block_size))
        if not chunks and core.n_dec == 0:
            return core.plan_builtin(self)
        return Plan(chunks, core.n_dec)


def build_compiled() -> None:
    """Compile every entry point of the kernel, for both drivers, into numba's cache."""
    os.environ["DCSIM_KERNEL"] = "compiled"
    wl = dict(WARM_UP["workload"], num_requests=150, rate_per_s=15.0, prompt_tokens=400, output_tokens=200)
    pools = [dict(WARM_UP["pools"][0], tent="t")]
    for engine in ("compiled", "simpy"):
        run = {"engine": engine}
        Simulation(parse(dict(WARM_UP, run=run))).run()
        Simulation(parse(dict(WARM_UP, run=run, router={"policy": "central_queue"}))).run()
        Simulation(parse(dict(WARM_UP, run=run, workload=dict(wl, timeout_s=5.0), pools=pools,
                              **WARM_UP_FACILITY))).run()
        pd = [dict(WARM_UP["pools"][0], role="prefill", replicas=1), dict(WARM_UP["pools"][0], name="d", role="decode")]
        Simulation(parse(dict(WARM_UP, run=run, pools=pd, network={"fabric": "ib-400g"},
                              router={"policy": "jsq", "decode_policy": "least_kv"}))).run()
        closed = {"arrival": "closed", "concurrency": 4, "num_requests": 40, "think_time_s": 0.0,
                  "prompt_tokens": 200, "output_tokens": 50}  # (closed-loop clients' entry points)
        Simulation(parse(dict(WARM_UP, run=run, workload=closed))).run()
    plug = [dict(WARM_UP["pools"][0], scheduler={"policy": f"{__name__}:_WarmUpScheduler"})]
    Simulation(parse(dict(WARM_UP, pools=plug))).run()
    # entry points a small run may not reach: the ledger taking rows as their buffer fills, the
    # prefix index growing, speculative draws (called here on a fresh state: they change nothing there)
    from sim.engine.arrays import prepare
    from sim.engine.compilation import compiled

    k = prepare(Simulation(parse(dict(WARM_UP, workload=wl, pools=pools, **WARM_UP_FACILITY))), compiled())
    k.m.row_floor(k.st)
    k.m.kc_rehash(k.rp.KC)
    none = np.zeros(0, np.int64)  # speculative decoding's draws (sim/engine/build.py), on an empty walk
    k.m.verify_chunk(np.zeros(1), np.zeros(0, np.int32), np.zeros(0), none, none, np.zeros(4, np.int64), 3)


def warm_up(report: Reporter | None = None) -> None:
    """Build the compiled engine now if this machine has no cached build (saying so), so that
    worker processes load it instead of each compiling it at once."""
    from sim.engine import compilation

    if compilation.cached():
        return
    (report or Reporter()).notice(compilation.COMPILE_NOTICE)

    old = os.environ.get("DCSIM_KERNEL")
    try:
        build_compiled()
    finally:
        if old is None:
            os.environ.pop("DCSIM_KERNEL", None)
        else:
            os.environ["DCSIM_KERNEL"] = old


