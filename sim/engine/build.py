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

from sim.errors import ScenarioError
from sim.policies.routers import make_router
from sim.rng import stream
from sim.scenario.config import Scenario
from sim.workload.generate import Workload, build_workload


def check_workload(sc: Scenario, wl: Workload) -> None:
    """What only the drawn requests can show: one that does not fit a pool's context window
    (vLLM refuses a prompt past max_model_len and stops a sequence there), a warm-up past the
    last arrival."""
    w = sc.workload
    if len(wl) and w.warmup_s > float(wl.arrival_s[-1]):
        raise ScenarioError("workload.warmup_s", f"{w.warmup_s:g} s is past the last arrival "
                            f"({float(wl.arrival_s[-1]):.6g} s): no request would be measured",
                            f"give warmup_s below {float(wl.arrival_s[-1]):.6g}")
    need = wl.prompt_tokens + wl.output_tokens
    for p in sc.pools:
        if p.service is not None:
            continue
        ctx = p.model.max_context_tokens
        over = np.flatnonzero(need > ctx)
        if over.size:
            i = int(over[0])
            where = (f"{w.trace} line {i + 2}" if w.trace_format == "csv" or w.trace_format == "azure"
                     else f"{w.trace} request {i + 1}") if w.arrival == "trace" else f"request {i}"
            key = "workload.trace" if w.arrival == "trace" else "workload.prompt_tokens"
            raise ScenarioError(key, f"{over.size} of {len(wl)} requests do not fit {p.model.id}'s context window of "
                                f"{ctx} tokens (prompt + output; first: {where}, {int(wl.prompt_tokens[i])} + "
                                f"{int(wl.output_tokens[i])})",
                                f"cap the lengths (e.g. max = ... in prompt_tokens and output_tokens) or use a model "
                                f"with a longer context (pools[{sc.pools.index(p)}].model)")


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
    check_workload(scenario, wl)
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
