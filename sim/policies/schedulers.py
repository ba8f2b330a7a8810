"""Batch schedulers: pure policies that plan the next step of a replica over a ReplicaCore.

Registered by name in sim/registry.py. Each returns a Plan, or None when there is nothing to run.
A user's scheduler has the same interface (docs/policies.md): `__init__(self, max_batch_size,
max_batched_tokens)`, `plan(self, core) -> Plan | None`, and optional class attributes `queue`
(the queue discipline it plans over: "fifo", "priority" or "sjf") and `priority_preemption`
(victims by class first).
- fcfs: one request at a time, served whole (static batching with batch size 1).
- static: request-level batching (FasterTransformer-style): take up to max_batch_size waiting
  requests, reserve KV for their whole sequences, prefill them together, decode until the last
  one finishes; nothing joins a batch in progress.
- continuous: iteration-level batching with whole prefills (Orca; vLLM v0 default): a step
  prefills newly admitted prompts (up to max_batched_tokens) or decodes every running request;
  prefills take priority, which stalls decodes.
- chunked: decode first, then prefill chunks fill the token budget (vLLM v1, Sarathi-Serve):
  every step decodes every running request, and the rest of max_batched_tokens goes to
  prompt chunks in arrival order.
- priority: chunked, with the queue ordered by request-class priority (lower value first, then
  arrival) and preemption of the lowest class first; a waiting request that does not fit
  preempts running requests of a lower class (vLLM's `--scheduling-policy priority`).
- sjf: chunked, with the queue ordered by shortest prompt first, except that a request waiting
  longer than `ageing_s` goes first (shortest-job-first with ageing, e.g. Fu et al. 2024,
  "Efficient LLM Scheduling by Learning to Rank", and Qiu et al. 2024 on starvation bounds).
The queue order lives in sim/kernel/queues.py; the step planning below is shared.
"""

from __future__ import annotations

from sim.kernel.replica import PREFILL, Plan, ReplicaCore
from sim.registry import SCHEDULERS


class Scheduler:
    queue = "fifo"  # the waiting-queue discipline (sim/registry.py QUEUES)
    priority_preemption = False  # preempt the lowest class first (else the latest arrival)

    def __init__(self, max_batch_size: int, max_batched_tokens: int) -> None:
        self.max_batch_size = max_batch_size
        self.max_batched_tokens = max_batched_tokens

    def plan(self, core: ReplicaCore) -> Plan | None:  # pragma: no cover - interface
        raise NotImplementedError


class Chunked(Scheduler):
    def plan(self, core: ReplicaCore) -> Plan | None:
        if core.n_dec:
            core.grow_decodes()
        budget = self.max_batched_tokens - core.n_dec
        slots = self.max_batch_size - len(core.running)
        chunks: list = []
        for req in list(core.prefilling):
            if budget <= 0:
                break
            if req.state != PREFILL:
                continue  # preempted by an earlier allocation in this loop
            c = min(req.target - req.done, budget)
            need = core.blocks_for(req.done + c) - core.held(req)
            if need > 0 and not core.ensure_blocks(req, need):
                continue
            core.take(req, max(need, 0))
            chunks.append((req, c))
            budget -= c
        # vLLM v1 admits no new request in a step that had to preempt.
        waiting = core.waiting
        while budget > 0 and slots > 0 and waiting and not core.preempted_this_step:
            req = waiting[0]
            hits, idle = core.peek_hits(req)
            cached = hits * core.block_size
            c = min(req.target - cached, budget)
            need = core.blocks_for(cached + c) - hits
            if need > core.free_blocks - idle:
                if not self._make_room(core, req, need + idle):
                    break
                continue  # the queue head may have changed (preempted requests rejoin it)
            core.admit_with(req, hits, need)
            chunks.append((req, c))
            budget -= c
            slots -= 1
        if core.n_dec == 0 and not chunks:
            return None
        return Plan(chunks, core.n_dec)


    def _make_room(self, core: ReplicaCore, req, need: int) -> bool:
        """FCFS waits for room; see Priority."""
        return False


class Priority(Chunked):
    queue = "priority"
    priority_preemption = True

    def _make_room(self, core: ReplicaCore, req, need: int) -> bool:
        """Preempt running requests of a lower class (higher priority value) until `need`
        blocks are free; False (and nothing preempted) if that cannot be done."""
        lower = sorted((r for r in core.running.values() if r.priority > req.priority),
                       key=lambda r: (r.priority, r.arrival, r.idx), reverse=True)
        free = core.free_blocks
        if free + sum(core.held(r) for r in lower) < need:
            return False
        for r in lower:
            if core.free_blocks >= need:
                break
            core.preempt(r)
        core.preempted_this_step = False  # the admission this made room for goes ahead
        return core.free_blocks >= need


class Continuous(Scheduler):
    def plan(self, core: ReplicaCore) -> Plan | None:
        waiting = core.waiting
        chunks: list = []
        budget = self.max_batched_tokens
        slots = self.max_batch_size - len(core.running)
        while waiting and slots > 0:
            req = waiting[0]
            hits, idle = core.peek_hits(req)
            cached = hits * core.block_size
            c = req.target - cached
            if chunks and c > budget:
                break
            need = core.blocks_for(req.target) - hits
            if need > core.free_blocks - idle:
                break
            core.admit_with(req, hits, need)
            chunks.append((req, c))
            budget -= c
            slots -= 1
            if budget <= 0:
                break
        if chunks:
            return Plan(chunks, 0)
        if core.n_dec:
            core.grow_decodes()
            if core.n_dec:
                return Plan([], core.n_dec)
        return None


class Static(Scheduler):
    def plan(self, core: ReplicaCore) -> Plan | None:
        if core.running:
            return Plan([], core.n_dec) if core.n_dec else None
        waiting = core.waiting
        chunks: list = []
        while waiting and len(chunks) < self.max_batch_size:
            req = waiting[0]
            hits, idle = core.peek_hits(req)
            need = core.blocks_for(req.target + req.output - req.generated) - hits
            if need > core.free_blocks - idle:
                break
            core.admit_with(req, hits, need)
            req.reserved = True
            chunks.append((req, req.target - req.done))
        return Plan(chunks, 0) if chunks else None


class Sjf(Chunked):
    queue = "sjf"


class Fcfs(Static):
    def __init__(self, max_batch_size: int, max_batched_tokens: int) -> None:
        super().__init__(1, max_batched_tokens)  # one request at a time


def make_scheduler(policy: str, max_batch_size: int, max_batched_tokens: int) -> Scheduler:
    """The scheduler named `policy` (a registered name or a plug-in spec)."""
    return SCHEDULERS.load(policy)(max_batch_size, max_batched_tokens)
