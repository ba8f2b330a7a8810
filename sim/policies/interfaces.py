"""What a policy sees of the running model, as Protocols, and what a scheduler returns (`Plan`;
`sim.policies.schedulers` re-exports it): the engine's views (sim/engine/views.py,
sim/engine/autoscale.py PoolView, sim/engine/facility_procs.py FacilityView) satisfy them, and a
plug-in is type-checked against them without importing the engine. docs/policies.md documents
the same interfaces in words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

if TYPE_CHECKING:  # (annotations only: the scenario layer is below this one)
    from sim.perf.catalog import Hardware
    from sim.scenario.config import PoolConfig


@dataclass
class Plan:
    """What one step runs: prefill chunks [(request, tokens)] and the decode batch size (the
    replica's `n_dec`, or 0 for a prefill-only step)."""

    chunks: list[tuple[Any, int]] = field(default_factory=list)
    n_dec: int = 0


BUILTIN = Plan()  # returned by core.plan_builtin: the kernel has planned the step in place


class BatchLimits(Protocol):
    """A scheduler's limits for the step it plans (sim/policies/schedulers.py Scheduler)."""

    max_batch_size: int
    max_batched_tokens: int


class RouterRequest(Protocol):
    """An arriving request, as a router sees it."""

    @property
    def request_id(self) -> int: ...
    @property
    def arrival_s(self) -> float: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def session(self) -> int: ...
    @property
    def priority(self) -> int: ...


class RouterReplica(Protocol):
    """A replica, as a router sees it: live, read-only figures."""

    @property
    def index(self) -> int: ...
    @property
    def pool(self) -> str: ...
    @property
    def hardware(self) -> Hardware: ...
    @property
    def queue_len(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def free_kv_blocks(self) -> int: ...
    @property
    def outstanding_requests(self) -> int: ...
    @property
    def outstanding_tokens(self) -> int: ...
    @property
    def token_s(self) -> float: ...
    def cached_prefix_tokens(self, request: RouterRequest) -> int: ...


class ScheduledRequest(Protocol):
    """A request, as a scheduler plug-in sees it (read-only; changed through its core)."""

    @property
    def idx(self) -> int: ...
    @property
    def arrival(self) -> float: ...
    @property
    def prompt(self) -> int: ...
    @property
    def output(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def state(self) -> int: ...
    @property
    def generated(self) -> int: ...
    @property
    def target(self) -> int: ...
    @property
    def done(self) -> int: ...


class WaitingQueue(Protocol):
    """A replica's queue as a scheduler reads it: its length and its head, `[0]`."""

    def __len__(self) -> int: ...
    def __getitem__(self, k: int) -> ScheduledRequest: ...


class SchedulerCore(Protocol):
    """One replica's queue, running set and KV cache, as a scheduler plug-in sees them, with the
    transitions a plan may make."""

    @property
    def block_size(self) -> int: ...
    @property
    def total_blocks(self) -> int: ...
    @property
    def free_blocks(self) -> int: ...
    @property
    def n_dec(self) -> int: ...
    @property
    def waiting(self) -> WaitingQueue: ...
    @property
    def prefilling(self) -> Sequence[ScheduledRequest]: ...
    @property
    def running(self) -> Mapping[int, ScheduledRequest]: ...
    def blocks_for(self, tokens: int) -> int: ...
    def held(self, req: ScheduledRequest) -> int: ...
    def peek_hits(self, req: ScheduledRequest) -> tuple[int, int]: ...
    def admit_with(self, req: ScheduledRequest, hits: int, need: int) -> None: ...
    def take(self, req: ScheduledRequest, n: int) -> None: ...
    def preempt(self, req: ScheduledRequest) -> None: ...
    def ensure_blocks(self, req: ScheduledRequest, need: int) -> bool: ...
    def grow_decodes(self) -> None: ...
    def plan_builtin(self, sched: BatchLimits) -> Plan: ...


class AutoscaledPool(Protocol):
    """A pool, as an autoscaling policy reads it at a decision."""

    now_s: float
    pool: PoolConfig
    min_replicas: int
    max_replicas: int
    interval_s: float
    target: float | None
    slo_ttft_s: float | None
    serving: int
    starting: int
    draining: int
    current: int
    outstanding: int
    queued: int
    running: int
    kv_used_frac: float
    arrivals_per_s: float
    ttft_p90_s: float


class PowerReplica(Protocol):
    """A replica, as a power manager sees it."""

    @property
    def index(self) -> int: ...
    @property
    def pool(self) -> PoolConfig: ...
    @property
    def drained(self) -> bool: ...
    @property
    def cap_w(self) -> float | None: ...


class PowerControl(Protocol):
    """The facility's narrow interface, as a power manager acts through it."""

    @property
    def replicas(self) -> Sequence[PowerReplica]: ...
    @property
    def draw_w(self) -> float: ...
    @property
    def over_supply(self) -> bool: ...
    def budget_w(self) -> float: ...
    def set_cap(self, index: int, w_per_accel: float | None) -> None: ...
    def drain(self, index: int) -> None: ...
    def undrain(self, index: int) -> None: ...
    def shed(self, on: bool) -> None: ...
