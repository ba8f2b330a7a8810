"""One model replica: its queue, paged KV cache (with optional prefix caching) and in-flight
requests. No SimPy here.

`ReplicaCore` holds the state a batch scheduler plans over and applies the result of each step
(`commit`). Decode bookkeeping is O(log n) per event, not O(batch) per step: a request that
joined decoding after decode step j0 with `base` tokens in KV has `base + (d - j0)` tokens during
decode step d, so the batch's total context is `S + n_dec * d` with S = sum(base - j0), and
finishes and KV-block growth are found with heaps keyed by decode-step number.

KV blocks are free, held by running requests (privately, or shared through the prefix cache),
or cached with no holder (evictable, kept in LRU order). Allocation takes free blocks first,
then evicts the least recently used cached blocks; only when neither suffices is a running
request preempted (as vLLM does). Prefix-cache keys are (shared-prefix group, block index):
blocks of the same shared prefix have equal content.

Invariants: free + evictable + held = total_blocks; every admitted request holds the blocks its
KV tokens need; a request is in exactly one of waiting / prefilling / decoding, or gone.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

WAITING, PREFILL, DECODE, GONE = 0, 1, 2, -1


class Request:
    """A request inside a replica. Token counts in tokens, times in seconds."""

    __slots__ = ("idx", "arrival", "prompt", "output", "generated", "target", "done", "blocks",
                 "base", "j0", "epoch", "state", "preemptions", "reserved", "first_token", "group",
                 "shared", "queue", "owner", "priority", "session", "retries")

    def __init__(self, idx: int, arrival: float, prompt: int, output: int, group: int = -1,
                 priority: int = 0, session: int = -1) -> None:
        self.idx, self.arrival, self.prompt, self.output = idx, arrival, prompt, output
        self.generated = 0  # output tokens produced so far (kept across preemption)
        self.target = prompt  # tokens to prefill this round (prompt + generated after a preemption)
        self.done = 0  # tokens of `target` already in KV (computed or prefix-cache hits)
        self.blocks = 0  # KV blocks held privately
        self.shared: list = []  # prefix-cache keys held (leading blocks of the sequence)
        self.base = 0  # tokens in KV when decoding began
        self.j0 = 0  # decode-step count when decoding began
        self.epoch = 0  # bumped on preemption; invalidates heap entries
        self.state = WAITING
        self.preemptions = 0
        self.reserved = False  # static batching reserves the whole sequence up front
        self.first_token = -1.0
        self.group = group  # shared-prefix group, -1 = none
        self.queue: deque | None = None  # the queue it waits in
        self.owner: "ReplicaCore | None" = None  # the replica running it
        self.priority = priority  # lower value = more important (request class)
        self.session = session
        self.retries = 0  # times re-queued after a node failure

    # What a router sees of a request (sim/policies/routers.py)
    @property
    def request_id(self) -> int:
        return self.idx

    @property
    def arrival_s(self) -> float:
        return self.arrival

    @property
    def prompt_tokens(self) -> int:
        return self.prompt

    @property
    def output_tokens(self) -> int:
        return self.output


@dataclass
class Plan:
    """What one step runs: prefill chunks [(request, tokens)] and the decode batch size."""

    chunks: list[tuple[Request, int]] = field(default_factory=list)
    n_dec: int = 0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class ReplicaCore:
    """Queue, KV cache and running set of one replica.

    `on_finish(req, t)` is called when a request completes. `prefix_blocks` is the number of
    whole KV blocks in a shared prefix (0 disables prefix caching).
    """

    def __init__(self, rid: int, total_blocks: int, block_size: int, waiting: deque | None = None,
                 on_finish: Callable[[Request, float], None] | None = None, prefix_blocks: int = 0,
                 output_lag_steps: int = 0, priority_preemption: bool = False) -> None:
        self.rid = rid
        self.total_blocks = total_blocks
        self.block_size = block_size
        self._free = total_blocks  # blocks holding nothing
        self._ref: dict = {}  # prefix-cache key -> number of running holders
        self._lru: OrderedDict = OrderedDict()  # cached keys with no holder, oldest first
        self.prefix_blocks = prefix_blocks
        self.waiting = waiting if waiting is not None else deque()
        # Victim order for preemption: latest arrival (vLLM); with priorities, lowest class first.
        self.priority_preemption = priority_preemption
        self.prefilling: list[Request] = []
        self.running: dict[int, Request] = {}  # prefilling + decoding, in admission order
        self.n_dec = 0
        self.ctx_base = 0  # S = sum(base - j0) over decoding requests
        self.dit = 0  # decode steps run so far
        self._fin: list[tuple[int, int, int, Request]] = []  # (decode step, idx, epoch, req)
        self._grow: list[tuple[int, int, int, Request]] = []  # next decode step needing a block
        self.preempted_this_step = False
        self.prefill_tokens = 0  # prompt tokens computed (prefix-cache hits excluded)
        self.cache_hit_tokens = 0
        self.evictions = 0
        self.on_finish = on_finish or (lambda r, t: None)
        # Tokens sampled in a step reach the client `output_lag_steps` steps later (0 or 1): the
        # serving front end processes step k's output while step k+1 runs.
        self.lag = output_lag_steps
        self._pending_first: list[Request] = []
        self._pending_done: list[Request] = []

    @property
    def pending_output(self) -> bool:
        """Lagged tokens not yet delivered (routers see completions only once delivered)."""
        return bool(self._pending_first or self._pending_done)

    def flush(self, now: float) -> None:
        """Deliver the tokens of the previous step to clients at `now` (lagged output)."""
        if self._pending_first:
            for req in self._pending_first:
                req.first_token = now
            self._pending_first = []
        if self._pending_done:
            done, self._pending_done = self._pending_done, []
            for req in done:
                self.on_finish(req, now)

    # --- KV blocks --------------------------------------------------------------------------
    def blocks_for(self, tokens: int) -> int:
        return _ceil_div(tokens, self.block_size)

    def fits_ever(self, tokens: int) -> bool:
        return self.blocks_for(tokens) <= self.total_blocks

    @property
    def free_blocks(self) -> int:
        """Blocks an allocation can get: free ones plus evictable cached ones."""
        return self._free + len(self._lru)

    @property
    def used_blocks(self) -> int:
        """Blocks held by running requests."""
        return self.total_blocks - self._free - len(self._lru)

    @property
    def cached_blocks(self) -> int:
        """Blocks in the prefix cache (held or evictable)."""
        return len(self._ref)

    @staticmethod
    def held(req: Request) -> int:
        return req.blocks + len(req.shared)

    def ensure_blocks(self, req: Request, need: int) -> bool:
        """Make `need` blocks available for `req`, preempting the latest-arrived running
        requests (vLLM's recompute preemption) once no free or evictable block is left.
        False if `req` itself had to be preempted."""
        while self.free_blocks < need:
            victim = self.victim()
            self.preempt(victim)
            if victim is req:
                return False
        return True

    def victim(self) -> Request:
        """The running request to preempt next."""
        if self.priority_preemption:
            return max(self.running.values(), key=lambda r: (r.priority, r.arrival, r.idx))
        return max(self.running.values(), key=lambda r: (r.arrival, r.idx))

    def take(self, req: Request, n: int) -> None:
        """Give `req` n private blocks, evicting least recently used cached blocks if needed."""
        assert 0 <= n <= self.free_blocks
        while self._free < n:
            key, _ = self._lru.popitem(last=False)
            del self._ref[key]
            self._free += 1
            self.evictions += 1
        self._free -= n
        req.blocks += n

    def release(self, req: Request) -> None:
        self._free += req.blocks
        req.blocks = 0
        ref, lru = self._ref, self._lru
        for key in req.shared:
            ref[key] -= 1
            if ref[key] == 0:
                lru[key] = None  # most recently used end
        req.shared = []
        assert self._free + len(lru) <= self.total_blocks

    # --- prefix cache -----------------------------------------------------------------------
    def peek_hits(self, req: Request) -> tuple[int, int]:
        """(cached leading blocks of req's prompt, how many of them are evictable now)."""
        if not self.prefix_blocks or req.group < 0 or req.done:
            return 0, 0
        k = min(self.prefix_blocks, (req.target - 1) // self.block_size)  # the last token is always computed
        hits = idle = 0
        g = req.group
        while hits < k:
            n = self._ref.get((g, hits))
            if n is None:
                break
            idle += n == 0
            hits += 1
        return hits, idle

    def acquire_hits(self, req: Request, hits: int) -> None:
        g = req.group
        for j in range(hits):
            key = (g, j)
            if self._ref[key] == 0:
                del self._lru[key]
            self._ref[key] += 1
            req.shared.append(key)
        req.done = hits * self.block_size
        self.cache_hit_tokens += req.done

    def _register(self, req: Request) -> None:
        """Publish req's computed full prefix blocks to the cache (its private blocks become shared)."""
        full = min(self.prefix_blocks, req.done // self.block_size)
        g = req.group
        while len(req.shared) < full:
            key = (g, len(req.shared))
            if key in self._ref:
                break  # computed concurrently by another request: keep ours private
            self._ref[key] = 1
            req.blocks -= 1
            req.shared.append(key)

    # --- transitions ------------------------------------------------------------------------
    def admit_with(self, req: Request, hits: int, need: int) -> None:
        """Admit the head of the queue with `hits` prefix-cache blocks and `need` new blocks."""
        self.waiting.popleft()
        self.admit(req)
        if hits:
            self.acquire_hits(req, hits)
        self.take(req, need)

    def admit(self, req: Request) -> None:
        req.state = PREFILL
        req.owner = self
        self.prefilling.append(req)
        self.running[req.idx] = req

    def _drop(self, req: Request) -> None:
        """Take req out of the running set and free its KV."""
        if req.state == DECODE:
            req.generated += self.dit - req.j0
            self.ctx_base -= req.base - req.j0
            self.n_dec -= 1
        elif req.state == PREFILL:
            self.prefilling.remove(req)
        del self.running[req.idx]
        self.release(req)
        req.epoch += 1

    def preempt(self, req: Request) -> None:
        """Recompute preemption: drop the KV and requeue at the front."""
        self._drop(req)
        req.state = WAITING
        req.target = req.prompt + req.generated
        req.done = 0
        req.reserved = False
        req.preemptions += 1
        self.waiting.appendleft(req)
        req.queue = self.waiting
        self.preempted_this_step = True

    def evacuate(self, now: float, own_queue: bool = True) -> list[Request]:
        """Node failure: deliver lagged output, then take every request off this replica (their
        KV is lost; each keeps the tokens it produced and will recompute the rest). A shared
        queue (own_queue False) stays for the other replicas."""
        self.flush(now)
        out = []
        for req in list(self.running.values()):
            self._drop(req)
            out.append(req)
        while own_queue and self.waiting:
            out.append(self.waiting.popleft())
        for req in out:
            req.state = WAITING
            req.target = req.prompt + req.generated
            req.done = 0
            req.reserved = False
            req.queue = None
            req.owner = None
        out.sort(key=lambda r: (r.arrival, r.idx))
        return out

    def cancel(self, req: Request) -> None:
        """Remove a request for good (client gone): from the queue, or from the running set."""
        if req.state == WAITING:
            if req.queue is not None:  # None: still on its way to the engine
                req.queue.remove(req)
        elif req.owner is not self:
            assert req.owner is not None
            req.owner.cancel(req)
            return
        elif req.state in (PREFILL, DECODE):
            self._drop(req)
        req.state = GONE

    def _start_decode(self, req: Request) -> None:
        req.state = DECODE
        req.base = req.target
        req.j0 = self.dit
        self.n_dec += 1
        self.ctx_base += req.base - req.j0
        heapq.heappush(self._fin, (self.dit + req.output - req.generated, req.idx, req.epoch, req))
        if not req.reserved:
            heapq.heappush(self._grow, (self.dit + self.held(req) * self.block_size - req.base + 1,
                                        req.idx, req.epoch, req))

    def _finish(self, req: Request, now: float) -> None:
        del self.running[req.idx]
        self.release(req)
        req.state = GONE
        if self.lag:
            self._pending_done.append(req)
        else:
            self.on_finish(req, now)

    def grow_decodes(self) -> None:
        """Before a decode step: give a block to every decoding request whose next token starts
        a new block, evicting cached blocks or preempting if the cache is full."""
        nxt = self.dit + 1
        g = self._grow
        bs = self.block_size
        while g and g[0][0] <= nxt:
            _, _, ep, req = g[0]
            if req.state != DECODE or ep != req.epoch:
                heapq.heappop(g)
                continue
            if self._free > 0:  # the common case, inlined: a free block
                self._free -= 1
                req.blocks += 1
            elif self.ensure_blocks(req, 1):
                self.take(req, 1)
            else:
                continue  # req itself was preempted (its entry is now stale)
            heapq.heapreplace(g, (nxt + bs, req.idx, req.epoch, req))

    def window_limit(self, k_max: int) -> int:
        """How many decode steps from now the batch stays stable: up to and including the next
        finish, and no more than the free KV blocks can feed (so no preemption is possible)."""
        k = k_max
        fin = self._fin
        while fin and (fin[0][3].state != DECODE or fin[0][2] != fin[0][3].epoch):
            heapq.heappop(fin)
        if fin:
            k = min(k, fin[0][0] - self.dit)
        if self.n_dec and self._grow:
            # each sequence needs a new block at most every block_size steps (+1 for rounding)
            k = min(k, max(0, (self.free_blocks // self.n_dec - 1)) * self.block_size)
        return max(k, 0)

    def advance_decodes(self, k: int) -> None:
        """Bulk form of k decode steps' bookkeeping before committing them: every decoding
        request whose context crosses into a new KV block during the window gets the blocks it
        needs after step dit + k (window_limit guarantees they are free). Walks the growth heap,
        so the cost is the number of block crossings, not the batch size."""
        end = self.dit + k
        bs = self.block_size
        g = self._grow
        while g and g[0][0] <= end:
            _, _, ep, req = heapq.heappop(g)
            if req.state != DECODE or ep != req.epoch:
                continue
            need = -(-(req.base + end - req.j0) // bs) - self.held(req)
            if need > 0:
                assert need <= self.free_blocks, "fast-forward window outran the free KV blocks"
                self.take(req, need)
            heapq.heappush(g, (req.j0 + self.held(req) * bs - req.base + 1, req.idx, req.epoch, req))

    def decode_context(self) -> int:
        """Total KV tokens the next decode step reads."""
        return self.ctx_base + self.n_dec * (self.dit + 1)

    def commit(self, plan: Plan, now: float) -> None:
        """Apply a finished step at time `now`: decode tokens, finished prefills, completions."""
        if self.lag:
            self.flush(now)
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
                continue  # preempted while the step was planned
            req.done += c
            self.prefill_tokens += c
            if self.prefix_blocks and req.group >= 0:
                self._register(req)
            if req.done >= req.target:
                self.prefilling.remove(req)
                req.generated += 1  # the prefill step samples the next token
                if req.first_token < 0:
                    if self.lag:
                        req.first_token = 0.0  # marks "sampled"; the client time is set by flush()
                        self._pending_first.append(req)
                    else:
                        req.first_token = now
                if req.generated >= req.output:
                    self._finish(req, now)
                else:
                    self._start_decode(req)
        self.preempted_this_step = False

    @property
    def busy(self) -> bool:
        return bool(self.running)
