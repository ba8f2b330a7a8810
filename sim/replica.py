"""One model replica: its queue, paged KV cache and in-flight requests (no SimPy here).

`ReplicaCore` holds the state a batch scheduler plans over and applies the result of each step
(`commit`). Decode bookkeeping is O(log n) per event, not O(batch) per step: a request that
joined decoding after decode step j0 with `base` tokens in KV has `base + (d - j0)` tokens during
decode step d, so the batch's total context is `S + n_dec * d` with S = sum(base - j0), and
finishes and KV-block growth are found with heaps keyed by decode-step number.

Invariants: 0 <= free_blocks <= total_blocks; every admitted request holds the blocks its KV
tokens need; a request is in exactly one of waiting / prefilling / decoding, or gone.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

WAITING, PREFILL, DECODE = 0, 1, 2


class Request:
    """A request inside a replica. Token counts in tokens, times in seconds."""

    __slots__ = ("idx", "arrival", "prompt", "output", "generated", "target", "done", "blocks",
                 "base", "j0", "epoch", "state", "preemptions", "reserved", "first_token")

    def __init__(self, idx: int, arrival: float, prompt: int, output: int) -> None:
        self.idx, self.arrival, self.prompt, self.output = idx, arrival, prompt, output
        self.generated = 0  # output tokens produced so far (kept across preemption)
        self.target = prompt  # tokens to prefill this round (prompt + generated after a preemption)
        self.done = 0  # tokens of `target` already prefilled
        self.blocks = 0  # KV blocks held
        self.base = 0  # tokens in KV when decoding began
        self.j0 = 0  # decode-step count when decoding began
        self.epoch = 0  # bumped on preemption; invalidates heap entries
        self.state = WAITING
        self.preemptions = 0
        self.reserved = False  # static batching reserves the whole sequence up front
        self.first_token = -1.0


@dataclass
class Plan:
    """What one step runs: prefill chunks [(request, tokens)] and the decode batch size."""

    chunks: list[tuple[Request, int]] = field(default_factory=list)
    n_dec: int = 0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class ReplicaCore:
    """Queue, KV cache and running set of one replica.

    `on_first_token(req, t)` and `on_finish(req, t)` are called as those events happen.
    """

    def __init__(self, rid: int, total_blocks: int, block_size: int, waiting: deque | None = None,
                 on_first_token: Callable[[Request, float], None] | None = None,
                 on_finish: Callable[[Request, float], None] | None = None) -> None:
        self.rid = rid
        self.total_blocks = total_blocks
        self.free_blocks = total_blocks
        self.block_size = block_size
        self.waiting: deque[Request] = waiting if waiting is not None else deque()
        self.prefilling: list[Request] = []
        self.running: dict[int, Request] = {}  # prefilling + decoding, in admission order
        self.n_dec = 0
        self.ctx_base = 0  # S = sum(base - j0) over decoding requests
        self.dit = 0  # decode steps run so far
        self._fin: list[tuple[int, int, int, Request]] = []  # (decode step, idx, epoch, req)
        self._grow: list[tuple[int, int, int, Request]] = []  # next decode step needing a block
        self.preempted_this_step = False
        self.on_first_token = on_first_token or (lambda r, t: None)
        self.on_finish = on_finish or (lambda r, t: None)

    # --- KV blocks --------------------------------------------------------------------------
    def blocks_for(self, tokens: int) -> int:
        return _ceil_div(tokens, self.block_size)

    def fits_ever(self, tokens: int) -> bool:
        return self.blocks_for(tokens) <= self.total_blocks

    def ensure_blocks(self, req: Request, need: int) -> bool:
        """Make `need` free blocks for `req`, preempting the latest-arrived running requests
        (vLLM's recompute preemption). False if `req` itself had to be preempted."""
        while self.free_blocks < need:
            victim = max(self.running.values(), key=lambda r: (r.arrival, r.idx))
            self.preempt(victim)
            if victim is req:
                return False
        return True

    def take(self, req: Request, n: int) -> None:
        assert 0 <= n <= self.free_blocks
        self.free_blocks -= n
        req.blocks += n

    def release(self, req: Request) -> None:
        self.free_blocks += req.blocks
        req.blocks = 0
        assert self.free_blocks <= self.total_blocks

    @property
    def used_blocks(self) -> int:
        return self.total_blocks - self.free_blocks

    # --- transitions ------------------------------------------------------------------------
    def admit(self, req: Request) -> None:
        req.state = PREFILL
        self.prefilling.append(req)
        self.running[req.idx] = req

    def preempt(self, req: Request) -> None:
        """Recompute preemption: drop the KV and requeue at the front."""
        if req.state == DECODE:
            req.generated += self.dit - req.j0
            self.ctx_base -= req.base - req.j0
            self.n_dec -= 1
        elif req.state == PREFILL:
            self.prefilling.remove(req)
        del self.running[req.idx]
        self.release(req)
        req.epoch += 1
        req.state = WAITING
        req.target = req.prompt + req.generated
        req.done = 0
        req.reserved = False
        req.preemptions += 1
        self.waiting.appendleft(req)
        self.preempted_this_step = True

    def _start_decode(self, req: Request) -> None:
        req.state = DECODE
        req.base = req.target
        req.j0 = self.dit
        self.n_dec += 1
        self.ctx_base += req.base - req.j0
        heapq.heappush(self._fin, (self.dit + req.output - req.generated, req.idx, req.epoch, req))
        if not req.reserved:
            heapq.heappush(self._grow, (self.dit + req.blocks * self.block_size - req.base + 1,
                                        req.idx, req.epoch, req))

    def _finish(self, req: Request, now: float) -> None:
        del self.running[req.idx]
        self.release(req)
        req.state = -1
        self.on_finish(req, now)

    def grow_decodes(self) -> None:
        """Before a decode step: give a block to every decoding request whose next token starts
        a new block, preempting if the cache is full."""
        nxt = self.dit + 1
        g = self._grow
        bs = self.block_size
        while g and g[0][0] <= nxt:
            _, _, ep, req = heapq.heappop(g)
            if req.state != DECODE or ep != req.epoch:
                continue
            if self.ensure_blocks(req, 1):
                self.take(req, 1)
                heapq.heappush(g, (nxt + bs, req.idx, req.epoch, req))

    def decode_context(self) -> int:
        """Total KV tokens the next decode step reads."""
        return self.ctx_base + self.n_dec * (self.dit + 1)

    def commit(self, plan: Plan, now: float) -> None:
        """Apply a finished step at time `now`: decode tokens, finished prefills, completions."""
        if plan.n_dec:
            self.dit += 1
            fin = self._fin
            while fin and fin[0][0] <= self.dit:
                _, _, ep, req = heapq.heappop(fin)
                if req.state != DECODE or ep != req.epoch:
                    continue
                req.generated = req.output
                self.n_dec -= 1
                self.ctx_base -= req.base - req.j0
                self._finish(req, now)
        for req, c in plan.chunks:
            if req.state != PREFILL:
                continue  # preempted while planned (cannot happen after planning, kept safe)
            req.done += c
            if req.done >= req.target:
                self.prefilling.remove(req)
                req.generated += 1  # the prefill step samples the next token
                if req.first_token < 0:
                    req.first_token = now
                    self.on_first_token(req, now)
                if req.generated >= req.output:
                    self._finish(req, now)
                else:
                    self._start_decode(req)
        self.preempted_this_step = False

    @property
    def busy(self) -> bool:
        return bool(self.running)
