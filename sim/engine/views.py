"""What policies written in plain Python see of the kernel's state, on the per-step driver:
a router plug-in's `RouterRequest` and `ReplicaView`s (live, read-only), and a scheduler
plug-in's `CoreView` of one replica (its queue, running set and KV cache, and the transitions a
plan may make: each a kernel function, so a plug-in's plan keeps the kernel's invariants).
docs/policies.md documents both interfaces."""

from __future__ import annotations

import numbers

from typing import TYPE_CHECKING, Any

from sim.engine.kernel.layout import (AGE, BS, DIT, DONE, FHLEN, GEN, HELD, NDEC, NRUN, NXT, OUTREQ, OUTTOK,
                                      PH, QLEN, QROW, R_DECODE, R_PREFILL, R_WAITING, RSV, RST, TOKS,
                                      TOT, USED)
from sim.errors import ScenarioError
from sim.policies.interfaces import BUILTIN

if TYPE_CHECKING:
    from sim.policies import interfaces as _i
    from sim.policies.interfaces import ScheduledRequest
    from sim.policies.interfaces import BatchLimits, Plan

WAITING, PREFILL, DECODE, GONE = 0, 1, 2, -1  # a request's state as a scheduler plug-in sees it


class RouterRequest:
    """What a router sees of an arriving request."""

    __slots__ = ("request_id", "arrival_s", "prompt_tokens", "output_tokens", "session", "priority")

    def __init__(self, i: int, arrival_s: float, prompt: int, output: int, session: int, priority: int) -> None:
        self.request_id, self.arrival_s, self.prompt_tokens, self.output_tokens = i, arrival_s, prompt, output
        self.session, self.priority = session, priority


class ReplicaView:
    """What a router sees of a replica: live, read-only figures from the kernel's state."""

    __slots__ = ("_k", "_spec", "index")

    def __init__(self, k: Any, spec: Any) -> None:
        self._k, self._spec, self.index = k, spec, spec.rid

    @property
    def pool(self) -> str:
        return str(self._spec.pool.name)

    @property
    def hardware(self) -> Any:
        return self._spec.pool.hardware

    @property
    def queue_len(self) -> int:
        S = self._k.S
        return int(S[S[self.index, QROW], QLEN])

    @property
    def running(self) -> int:
        return int(self._k.S[self.index, NRUN])

    @property
    def free_kv_blocks(self) -> int:
        S = self._k.S
        return int(S[self.index, TOT] - S[self.index, USED])

    @property
    def outstanding_requests(self) -> int:
        return int(self._k.S[self.index, OUTREQ])

    @property
    def outstanding_tokens(self) -> int:
        return int(self._k.S[self.index, OUTTOK])

    @property
    def token_s(self) -> float:
        return float(self._k.F[self.index, TOKS])

    def cached_prefix_tokens(self, request: Any) -> int:
        """The request's prompt tokens this replica's prefix cache holds now."""
        k = self._k
        j = request.request_id
        rq = k.rq
        hits = k.m.peek_hits(self.index, j, int(rq.prompt[j] + rq.RQ[j, GEN]), k.S, rq.RQ, k.rp.KC)[0]
        return int(hits * k.S[self.index, BS])


class RequestView:
    """A request as a scheduler plug-in sees it (read-only; change it through CoreView)."""

    __slots__ = ("_c", "idx")

    def __init__(self, core: "CoreView", i: int) -> None:
        self._c, self.idx = core, i

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RequestView) and other.idx == self.idx

    def __hash__(self) -> int:
        return self.idx

    @property
    def arrival(self) -> float:
        return float(self._c._k.rq.arr[self.idx])

    @property
    def prompt(self) -> int:
        return int(self._c._k.rq.prompt[self.idx])

    @property
    def output(self) -> int:
        return int(self._c._k.rq.output[self.idx])

    @property
    def priority(self) -> int:
        return int(self._c._prio[self.idx]) if self._c._prio is not None else 0

    @property
    def state(self) -> int:
        st = int(self._c._k.rq.RQ[self.idx, RST])
        return {R_WAITING: WAITING, R_PREFILL: PREFILL, R_DECODE: DECODE}.get(st, GONE)

    @property
    def generated(self) -> int:
        """Output tokens produced so far."""
        c = self._c
        rq, i = c._k.rq, self.idx
        g = int(rq.RQ[i, GEN])
        if rq.RQ[i, RST] == R_DECODE:
            g += int(c._k.S[c.r, DIT] - (rq.prompt[i] + g - 1 - rq.RA[i]))
        return g

    @property
    def target(self) -> int:
        """Tokens to prefill: the prompt, plus the tokens generated before a preemption."""
        return self.prompt + int(self._c._k.rq.RQ[self.idx, GEN])

    @property
    def done(self) -> int:
        """Tokens of `target` in KV (computed or prefix-cache hits)."""
        return int(self._c._k.rq.RQ[self.idx, DONE])


class _Waiting:
    """The replica's queue as a scheduler sees it: its length and its head, `[0]`."""

    def __init__(self, core: "CoreView") -> None:
        self._c = core

    def __len__(self) -> int:
        c = self._c
        S = c._k.S
        return int(S[S[c.r, QROW], QLEN])

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, k: int) -> RequestView:
        if k != 0 or not self:
            raise IndexError("a scheduler reads the head of the queue, [0], and only when it is not empty")
        c = self._c
        K = c._k
        S = K.S
        i = K.m.q_head(c.r, c.now, float(K.F[S[c.r, QROW], AGE]), S, K.rq.QA, K.rq.arr, K.rq.RQ)
        return RequestView(c, int(i))


class CoreView:
    """One replica's kernel state as a scheduler plans over it (docs/policies.md): the queue,
    the running set, the KV cache and the transitions a plan may make. Every method is a kernel
    function, so a plug-in's plan keeps the kernel's invariants."""

    def __init__(self, k: Any, prio: Any, r: int, now: float) -> None:
        self._k, self.r, self.now = k, r, now
        self._prio = prio
        self._grown = 0  # decoding sequences hold the block of this step (after grow_decodes)
        self._planned = (0, 0)
        self.preempted_this_step = False
        self.waiting = _Waiting(self)

    # --- what a plan reads ---
    @property
    def block_size(self) -> int:
        return int(self._k.S[self.r, BS])

    @property
    def total_blocks(self) -> int:
        return int(self._k.S[self.r, TOT])

    @property
    def free_blocks(self) -> int:
        """Blocks an allocation can get: free ones and evictable cached ones."""
        S = self._k.S
        return int(S[self.r, TOT] - S[self.r, USED])

    @property
    def n_dec(self) -> int:
        return int(self._k.S[self.r, NDEC])

    @property
    def prefilling(self) -> list[RequestView]:
        """Requests admitted and still prefilling, in admission order."""
        K = self._k
        out = []
        j = int(K.S[self.r, PH])
        while j >= 0:
            out.append(RequestView(self, j))
            j = int(K.rq.RQ[j, NXT])
        return out

    @property
    def running(self) -> dict[int, RequestView]:
        """Prefilling and decoding requests by index."""
        K = self._k
        out = {v.idx: v for v in self.prefilling}
        for c in range(int(K.S[self.r, FHLEN])):
            j = int(K.rp.FH[self.r, c] & 0xFFFFFFFF)
            out[j] = RequestView(self, j)
        return out

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def held(self, req: ScheduledRequest) -> int:
        """KV blocks the request holds (shared prefix blocks included)."""
        K = self._k
        if K.rq.RQ[req.idx, RST] == R_DECODE and not K.S[self.r, RSV]:
            return self.blocks_for(int(K.rq.RA[req.idx] + K.S[self.r, DIT]) + self._grown)
        return int(K.rq.RQ[req.idx, HELD])

    def peek_hits(self, req: ScheduledRequest) -> tuple[int, int]:
        """(cached leading blocks of the request's prompt, how many of them are evictable now)."""
        K = self._k
        h, idle = K.m.peek_hits(self.r, req.idx, req.target, K.S, K.rq.RQ, K.rp.KC)
        return int(h), int(idle)

    # --- transitions ---
    def admit_with(self, req: ScheduledRequest, hits: int, need: int) -> None:
        """Admit the head of the queue with `hits` prefix-cache blocks and `need` new blocks."""
        K = self._k
        if need > self.free_blocks - self.peek_hits(req)[1]:
            raise ScenarioError("pools.scheduler.policy", f"plan() admitted request {req.idx} with {need} blocks "
                                f"when {self.free_blocks} can be allocated", "check free_blocks before admit_with")
        K.m.admit(self.r, req.idx, hits, need, K.rp, K.rq)

    def take(self, req: ScheduledRequest, n: int) -> None:
        """Give a prefilling request n more blocks (evicting cached blocks if needed)."""
        K = self._k
        ok = not isinstance(n, bool) and isinstance(n, numbers.Integral) and n <= self.free_blocks
        if not ok or req.idx not in self.running:
            raise ScenarioError("pools.scheduler.policy", f"plan() took {n!r} blocks for request {req.idx} with "
                                f"{self.free_blocks} free (it must be running here)",
                                "take at most free_blocks, for a request in core.running")
        if n <= 0:
            return
        K.m.take_for(self.r, req.idx, n, K.S, K.rq.RQ, K.rp.KC)

    def preempt(self, req: ScheduledRequest) -> None:
        """Recompute preemption: the request's KV is freed and it rejoins the queue's front."""
        K = self._k
        if req.idx not in self.running:
            raise ScenarioError("pools.scheduler.policy", f"plan() preempted request {req.idx}, which is not running "
                                f"on replica {self.r}", "preempt only requests in core.running")
        rp, rq = K.rp, K.rq
        K.m.preempt(self.r, req.idx, self._grown, rp.S, rp.FH, rp.CNT, rp.KC, rq.RQ, rq.RA, rq.QA, rq.PRE, rq.prompt)
        self.preempted_this_step = True

    def ensure_blocks(self, req: ScheduledRequest, need: int) -> bool:
        """Make `need` blocks available, preempting the kernel's victims (latest arrival; lowest
        class first under the priority queue). False if `req` itself was preempted."""
        K = self._k
        while self.free_blocks < need:
            v = int(K.m.victim(self.r, K.S, K.rq.RQ, K.rp.FH, K.rq.QA))
            self.preempt(RequestView(self, v))
            if v == req.idx:
                return False
        return True

    def grow_decodes(self) -> None:
        """Before a decode step: a block for every sequence whose next token opens one
        (preempting when the cache is full)."""
        K = self._k
        if K.m.grow(self.r, K.rp, K.rq):
            self.preempted_this_step = True
        self._grown = 1

    def plan_builtin(self, sched: BatchLimits) -> Plan:
        """The kernel's own planner for this replica, with the scheduler's current batch limits."""
        K = self._k
        nch, ndec = K.m.plan_limited(self.r, self.now, min(int(sched.max_batch_size), K.rp.CH.shape[1]),
                                     int(sched.max_batched_tokens), K.rp, K.rq)
        self._planned = (int(nch), int(ndec))
        return BUILTIN


if TYPE_CHECKING:  # mypy holds the views to what plug-ins are promised (sim/policies/interfaces.py)
    def _core(c: CoreView) -> _i.SchedulerCore:
        return c

    def _replica(r: ReplicaView) -> _i.RouterReplica:
        return r

    def _request(r: RequestView) -> _i.ScheduledRequest:
        return r

    def _arrival(r: RouterRequest) -> _i.RouterRequest:
        return r
