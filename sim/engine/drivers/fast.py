"""The fast driver: the kernel run as one compiled loop (sim/engine/kernel/loop.py run_until, or
shared.run_shared for central_queue), for runs of millions of requests, with the facility's
events at barriers (sim/engine/drivers/facility.py).

Both drivers give every request the same first-token, start and finish times, status and
preemption count (tests/test_differential.py, bit for bit): they call the same transitions and
differ only in when; the time series differ (one sample per planned step here, per step there)
and the energy bins' float rounding. What the fast driver does not host (plug-ins in plain
Python, `run.fast_forward = false`) runs on the per-step driver; `supported()` says why.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sim.engine import arrays
from sim.engine.arrays import finish, prepare
from sim.engine.compilation import kernel_for
from sim.engine.kernel.jit import NUMBA_ERROR
from sim.registry import ROUTERS, SCHEDULERS


def supported(sc: Any, wl: Any) -> list[str]:
    """Why this scenario needs the per-step driver (empty: the fast driver can run it)."""
    why = []
    if NUMBA_ERROR is not None:
        why.append(f"numba cannot be imported ({NUMBA_ERROR})")
    if sc.router.policy not in ROUTERS.compiled_names() and sc.router.policy != "central_queue":
        kind = "a plug-in in plain Python" if ROUTERS.is_plugin(sc.router.policy) else "not compiled"
        why.append(f"router.policy = {sc.router.policy!r} ({kind}; compiled: {', '.join(ROUTERS.compiled_names())})")
    if not sc.run.fast_forward:
        why.append("run.fast_forward = false (the per-iteration reference mode)")
    delays = set()
    for p in sc.pools:
        if p.service is not None:
            delays.add(0.0)  # analytic service has no front end
            continue
        s = p.scheduler
        if s.policy not in SCHEDULERS.compiled_names():
            why.append(f"pools.{p.name}.scheduler.policy = {s.policy!r} (compiled: "
                       f"{', '.join(SCHEDULERS.compiled_names())})")
        delays.add(p.hardware.request_overhead_s)
    if len(delays) > 1:
        why.append("pools with different hardware request_overhead_s")
    return why


def run(sim: Any) -> Any:
    """Run a Simulation (sim/engine/simulation.py) on the fast driver; its Result."""
    wall0 = time.perf_counter()
    k = prepare(sim, kernel_for(len(sim.wl), sim.report), batch_rows=arrays.BATCH_ROWS)
    drv = None
    if sim.fac is None:
        k.run_until(np.inf)
    else:
        from sim.engine.drivers.facility import FacilityDriver

        drv = FacilityDriver(sim, k)
        drv.run()
    return finish(sim, k, drv, "compiled", wall0)
