"""Build, then run: everything a run needs that reads files or draws random numbers, made once
from a scenario before the engine starts. The engine's constructors do neither.

- the workload (arrivals, lengths, prefixes, classes, sessions; traces are read here),
- the router, set up (power_of_two's random pairs are drawn here, from the "router" stream),
- analytic service times per pool (`[pools.service]`, from "service:<pool>").

The facility's fault times are still drawn by its processes as the run goes (issue 10, M6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.policies.routers import make_router
from sim.rng import stream
from sim.scenario.config import Scenario
from sim.workload.generate import Workload, build_workload


@dataclass
class Model:
    """A scenario made ready to run once (its router carries state across a run)."""

    scenario: Scenario
    workload: Workload
    router: Any
    service_s: dict[str, np.ndarray]  # pool name -> analytic service time of every request


def build(scenario: Scenario, workload: Workload | None = None) -> Model:
    """The model of one run of `scenario` (with `workload`, when given, instead of drawing it)."""
    wl = workload if workload is not None else build_workload(scenario.workload, scenario.seed, scenario.base_dir)
    n = len(wl)
    n_reps = sum(p.replicas for p in scenario.pools)
    router = make_router(scenario.router.policy, n, n_reps, stream(scenario.seed, "router"))
    service: dict[str, np.ndarray] = {}
    for pool in scenario.pools:
        if pool.service is not None:
            if pool.service.dist == "exponential":
                service[pool.name] = stream(scenario.seed, f"service:{pool.name}").exponential(pool.service.mean_s, size=n)
            else:
                service[pool.name] = np.full(n, pool.service.mean_s)
    return Model(scenario, wl, router, service)
