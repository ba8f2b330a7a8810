"""Build, then run: everything a run needs that reads files or draws random numbers, made once
from a scenario before the engine starts. The engine's constructors do neither.

- the workload (arrivals, lengths, prefixes, classes, sessions; traces are read here),
- the router, set up (power_of_two's random pairs are drawn here, from the "router" stream),
- analytic service times per pool (`[pools.service]`, from "service:<pool>"),
- the routing groups: the replicas serving each model, and each request's group (the model its
  class names; -1: no pool serves it, rejected with reason no_pool_for_model),
- speculative decoding's accepted tokens, per sequence per step (`engine_output`).

The facility's fault times are still drawn by its processes as the run goes (issue 10, M6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.errors import ScenarioError, warn
from sim.policies.routers import make_router
from sim.rng import stream
from sim.scenario.config import Scenario
from sim.workload.generate import Workload, build_workload


@dataclass(frozen=True)
class Groups:
    """Routing groups: a router chooses among the replicas of the request's group only. A model
    served co-located has one group (its mixed pools); one served disaggregated has two: its
    prefill pools (where its requests arrive) and its decode pools (`decode_of`)."""

    models: tuple[str, ...]  # the model each group serves, in the order pools first name them
    roles: tuple[str, ...]  # "mixed", "prefill" or "decode"
    replicas: tuple[np.ndarray, ...]  # each group's replica indices, ascending
    of_request: np.ndarray  # int64 group each request arrives at; -1: no pool serves its model
    of_replica: np.ndarray  # int64 group of each replica
    decode_of: tuple[int, ...]  # a prefill group's decode group (-1: none)

    @property
    def disaggregated(self) -> bool:
        return any(d >= 0 for d in self.decode_of)

    def requests_in(self, groups: Any) -> np.ndarray:
        """bool per request: it arrives at one of `groups` (np.isin by a lookup table: a pass over
        the requests, not a sort of them)."""
        table = np.zeros(len(self.models) + 1, bool)  # (the last entry: -1, no group)
        table[np.asarray(groups, np.int64)] = True
        return table[self.of_request]


def routing_groups(sc: Scenario, wl: Workload) -> Groups:
    """Which replicas may serve each request: those of the pools serving its model (its prefill
    pools when the model is served disaggregated); a class pinned to pools (`pools = [...]`),
    those pools only, and a class that names none, its model's pools no class names."""
    classes = sc.workload.classes
    pins = list(dict.fromkeys(frozenset(c.pools) for c in classes if c.pools))  # one group per set
    pin_of = {n: k for k, s in enumerate(pins) for n in s}
    keys: list[tuple[str, str, int]] = []
    rep_group = []
    for p in sc.pools:
        side = "decode" if p.role == "decode" else "entry"
        key = (p.model.id, side, pin_of.get(p.name, -1) if side == "entry" else -1)
        if key not in keys:
            keys.append(key)
        rep_group += [keys.index(key)] * p.replicas
    roles = []
    for m, side, pin in keys:
        rs = {p.role for p in sc.pools if p.model.id == m and (p.role == "decode") == (side == "decode")
              and (side == "decode" or pin_of.get(p.name, -1) == pin)}
        roles.append(rs.pop())
    entry = {(m, pin): g for g, (m, side, pin) in enumerate(keys) if side == "entry"}
    of_replica = np.asarray(rep_group, np.int64)
    of_request = np.zeros(len(wl), np.int64)
    first = sc.pools[0].model.id
    if classes and wl.cls is not None:
        # a class without a model: the one model every pool serves (parse refuses it otherwise)
        code = np.array([entry.get((c.model or first, pins.index(frozenset(c.pools)) if c.pools else -1), -1)
                         for c in classes], np.int64)
        of_request = code[wl.cls]
    else:
        of_request[:] = entry[(first, -1)]
    reps = tuple(np.flatnonzero(of_replica == g) for g in range(len(keys)))
    dec = tuple(keys.index((m, "decode", -1)) if (m, "decode", -1) in keys and side == "entry" else -1
                for m, side, _ in keys)
    return Groups(tuple(m for m, _, _ in keys), tuple(roles), reps, of_request, of_replica, dec)


def check_workload(sc: Scenario, wl: Workload, groups: Groups | None = None) -> None:
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
        mine: Any = True
        if groups is not None:  # the requests of its model
            entry = [g for g, m in enumerate(groups.models) if m == p.model.id and groups.roles[g] != "decode"]
            mine = groups.requests_in(entry)
        over = np.flatnonzero((need > ctx) & mine)
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
    groups: Groups
    engine_output: np.ndarray | None = None  # output lengths the engine decodes (speculation: below)


def engine_output(sc: Scenario, wl: Workload, groups: Groups) -> np.ndarray | None:
    """Speculative decoding's draws: for the requests of a model whose decoding pools all
    speculate alike, the verify steps S each needs are drawn per sequence per step (their
    class's acceptance rate; sim.perf.roofline.verify_steps, stream "speculative:<model>"), and
    the engine, which advances a sequence one token per step at 1/g of a verify step, decodes
    1 + round(g x S) tokens for it: its decode takes S verify steps, as drawn. Its KV then grows
    by g x S tokens instead of its output (equal in expectation). None: no model qualifies
    (the engine decodes the outputs, at 1/g of a verify step a token: acceptance in expectation)."""
    from sim.perf.roofline import tokens_per_step

    out = None
    for model in dict.fromkeys(groups.models):
        # its requests arrive at its model's entry groups (prefill or mixed; several when classes are pinned)
        entry = [g for g, m in enumerate(groups.models) if m == model and groups.roles[g] != "decode"]
        specs = {p.speculative for p in sc.pools if p.model.id == model and p.role != "prefill"}
        if len(specs) != 1 or None in specs:
            continue
        sp = specs.pop()
        assert sp is not None  # (None was ruled out above)
        mine = np.flatnonzero(groups.requests_in(entry))
        if not mine.size:
            continue
        rates = np.full(mine.size, sp.acceptance_rate)
        if sp.class_rates and wl.cls is not None:
            rates = np.array([a for _, a in sp.class_rates])[wl.cls[mine]]
        steps = _verify_steps(wl.output_tokens[mine], rates, sp.num_tokens, stream(sc.seed, f"speculative:{model}"))
        if out is None:
            out = wl.output_tokens.astype(np.int64).copy()
        gain = tokens_per_step(sp.acceptance_rate, sp.num_tokens)
        out[mine] = np.where(wl.output_tokens[mine] > 1, 1 + np.maximum(1, np.rint(gain * steps)), 1).astype(np.int64)
    return out


VERIFY_CHUNK = 1 << 16  # draws per chunk handed to the compiled walk (its buffer stays in cache)


def _verify_steps(out_tok: np.ndarray, rates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """sim.perf.roofline.verify_steps's counts, bit for bit: by the compiled kernel's walk over
    chunks of the same stream (sim/engine/kernel/verify.py) where the kernel is compiled, else
    by the numpy reference itself (numba's interpreter would take a Python step per draw)."""
    from sim.engine.compilation import compiled, kernel_mode
    from sim.perf.roofline import verify_steps

    m = compiled() if kernel_mode(len(out_tok)) == "compiled" else None
    if m is None or m.interpreted:
        return verify_steps(out_tok, rates, k, rng)
    need_all = np.asarray(out_tok, np.int64) - 1
    steps = np.zeros(need_all.shape[0], np.int64)
    live = np.flatnonzero(need_all > 0)
    with np.errstate(divide="ignore"):
        log_a = np.log(np.asarray(rates, float)[live])  # (-inf for a = 0: nothing accepted)
    # (need as int32: the columns walked every step are memory-bound; int64 for a trace's absurd outputs)
    small = not live.size or need_all[live].max() < 2**31 - 1
    need, vs = need_all[live].astype(np.int32 if small else np.int64), np.array([live.size, 0, 0, 0], np.int64)
    buf = np.empty(VERIFY_CHUNK)
    while vs[m.V_LIVE]:
        rng.random(out=buf)
        with np.errstate(divide="ignore"):
            np.log(buf, out=buf)
        m.verify_chunk(buf, need, log_a, live, steps, vs, k)
    return steps


def _before_horizon(sc: Scenario, wl: Workload) -> Workload:
    """The requests that arrive before run.horizon_s: those after it are not part of the run (they
    would otherwise be counted in flight, though they never arrived). Said in one warning."""
    h = sc.run.horizon_s
    if h is None or wl.clients or not len(wl):
        return wl
    m = int(np.searchsorted(wl.arrival_s, h, side="left"))
    if m < len(wl):
        if m == 0:
            first = float(wl.arrival_s[0])
            raise ScenarioError("run.horizon_s", f"{h:g} s is before the first arrival ({first:.6g} s): nothing "
                                "would run", "raise horizon_s or remove it")
        warn("run.horizon_s", f"{len(wl) - m} of {len(wl)} requests arrive after {h:g} s and are not simulated",
             "remove horizon_s (or shorten the workload) to run them")
        wl = wl.head(m)
    return wl


MAX_DECISIONS = 10**8  # a controller's decisions in one run (each a Python call): past this, an interval typo


def _check_decisions(sc: Scenario, wl: Workload) -> None:
    """Refuse, before the run, a power manager or autoscaler that would decide more than
    MAX_DECISIONS times over the arrivals' span (a 1e-9 s interval over an hour)."""
    last = float(wl.arrival_s[-1]) if len(wl) and not wl.clients else 0.0
    span = sc.run.horizon_s if sc.run.horizon_s is not None else last
    fac = sc.facility
    ctl = [("facility.manager.interval_s", fac.interval_s)] if fac is not None and fac.sources else []
    ctl += [(f"pools.{p.name}.autoscaler.interval_s", p.autoscaler.interval_s) for p in sc.pools if p.autoscaler]
    for key, iv in ctl:
        if span / iv > MAX_DECISIONS:
            raise ScenarioError(key, f"{iv:g} s over {span:.4g} s of arrivals is {span / iv:.3g} decisions",
                                f"give an interval of at least {span / MAX_DECISIONS:.3g} s")


def build(scenario: Scenario, workload: Workload | None = None) -> Model:
    """The model of one run of `scenario` (with `workload`, when given, instead of drawing it)."""
    wl = workload if workload is not None else build_workload(scenario.workload, scenario.seed, scenario.base_dir)
    wl = _before_horizon(scenario, wl)
    _check_decisions(scenario, wl)
    n = len(wl)
    groups = routing_groups(scenario, wl)
    check_workload(scenario, wl, groups)
    n_reps = sum(p.replicas for p in scenario.pools)
    sizes = None
    if len(groups.models) > 1:  # power_of_two draws its pairs within each request's (arrival) group
        if scenario.router.policy == "central_queue":
            why = (f"the pools serve several models ({', '.join(dict.fromkeys(groups.models))})"
                   if len(set(groups.models)) > 1 else "classes are pinned to pools (workload.classes.pools)")
            raise ScenarioError("router.policy", f"central_queue is one queue for every replica, but {why}",
                                "use a per-request router (e.g. jsq)")
        sizes = np.array([len(r) for r in groups.replicas], np.int64)[np.maximum(groups.of_request, 0)]
    router = make_router(scenario.router.policy, n, n_reps, stream(scenario.seed, "router"), sizes)
    service: dict[str, np.ndarray] = {}
    for pool in scenario.pools:
        if pool.service is not None:
            if pool.service.dist == "exponential":
                service[pool.name] = stream(scenario.seed, f"service:{pool.name}").exponential(
                    pool.service.mean_s, size=n
                )
            else:
                service[pool.name] = np.full(n, pool.service.mean_s)
    return Model(scenario, wl, router, service, groups, engine_output(scenario, wl, groups))
