"""Batch schedulers: policies that plan the next step of a replica over its kernel state.

Registered by name in sim/registry.py. Each returns a Plan, or None when there is nothing to run.
A user's scheduler has the same interface (docs/policies.md): `__init__(self, max_batch_size,
max_batched_tokens)`, `plan(self, core) -> Plan | None`, and an optional class attribute `queue`
(the queue discipline it plans over: "fifo", "priority" or "sjf"; under "priority" victims of
preemption are the lowest class first).
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
Each is the kernel's planner (sim/engine/kernel/plan.py: `_plan_chunked`, `_plan_continuous`,
`_plan_static`, written once for both drivers); these classes name them and are what a plug-in
subclasses: `plan(core)` runs the kernel's planner with the instance's current
`max_batch_size` and `max_batched_tokens`, so a subclass can change those per step, or plan
from scratch over the core's transitions (sim/policies/interfaces.py SchedulerCore; the engine's
CoreView in sim/engine/views.py; docs/policies.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.policies.interfaces import Plan
from sim.registry import SCHEDULERS

if TYPE_CHECKING:
    from sim.policies.interfaces import SchedulerCore




class Scheduler:
    queue = "fifo"  # the waiting-queue discipline (sim/registry.py QUEUES)

    def __init__(self, max_batch_size: int, max_batched_tokens: int) -> None:
        self.max_batch_size = max_batch_size
        self.max_batched_tokens = max_batched_tokens

    def plan(self, core: SchedulerCore) -> Plan | None:  # pragma: no cover - interface
        raise NotImplementedError


class _Kernel(Scheduler):
    """A built-in: the kernel's planner of the same name."""

    def plan(self, core: SchedulerCore) -> Plan | None:
        return core.plan_builtin(self)


class Chunked(_Kernel):
    pass


class Priority(Chunked):
    queue = "priority"


class Continuous(_Kernel):
    pass


class Static(_Kernel):
    pass


class Sjf(Chunked):
    queue = "sjf"


class Fcfs(Static):
    def __init__(self, max_batch_size: int, max_batched_tokens: int) -> None:
        super().__init__(1, max_batched_tokens)  # one request at a time


def make_scheduler(policy: str, max_batch_size: int, max_batched_tokens: int) -> Scheduler:
    """The scheduler named `policy` (a registered name or a plug-in spec)."""
    return SCHEDULERS.load(policy)(max_batch_size, max_batched_tokens)
