"""Waiting queues of a replica, one per ordering discipline; all share deque's interface
(append, appendleft, popleft, [0], remove, len) so schedulers stay policy-agnostic.

- FIFO: `collections.deque`.
- PriorityQueue: lowest `priority` value first, then earliest arrival (a preempted request keeps
  its place). O(log n) per operation, lazy deletion.
- SjfQueue: shortest remaining prompt first, except that a request which has waited `ageing_s`
  or more is served before any shorter one (oldest first), so nothing starves.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Callable

from sim.registry import QUEUES


class _HeapQueue:
    """Heap with lazy deletion; subclasses define the key."""

    def __init__(self) -> None:
        self._heap: list = []
        # id of each queued request -> the sequence number of its current heap entry: an entry
        # left behind by remove() must not come back to life when the request is queued again
        # (a preempted request re-enters with a new key)
        self._live: dict[int, int] = {}
        self._seq = 0

    def _key(self, req) -> tuple:  # pragma: no cover - interface
        raise NotImplementedError

    def append(self, req) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (*self._key(req), self._seq, req))
        self._live[id(req)] = self._seq

    appendleft = append  # order comes from the key (a preempted request keeps its key)

    def _clean(self) -> None:
        h = self._heap
        live = self._live
        while h and live.get(id(h[0][-1])) != h[0][-2]:
            heapq.heappop(h)

    def __getitem__(self, i: int):
        if i != 0:
            raise IndexError("only the head is accessible")
        self._clean()
        if not self._heap:
            raise IndexError("empty queue")
        return self._heap[0][-1]

    def popleft(self):
        self._clean()
        req = heapq.heappop(self._heap)[-1]
        del self._live[id(req)]
        return req

    def remove(self, req) -> None:
        if id(req) not in self._live:
            raise ValueError("not queued")
        del self._live[id(req)]

    def __len__(self) -> int:
        return len(self._live)

    def __bool__(self) -> bool:
        return bool(self._live)


class PriorityQueue(_HeapQueue):
    def __init__(self, ageing_s: float = 0.0, now: Callable[[], float] | None = None) -> None:
        super().__init__()

    def _key(self, req) -> tuple:
        return (req.priority, req.arrival, req.idx)


class SjfQueue:
    """Shortest prompt first with an ageing bound (`now()` gives the current time)."""

    time_dependent = True  # the head can change as requests age, with no arrival

    def __init__(self, ageing_s: float, now: Callable[[], float]) -> None:
        self.ageing_s = ageing_s
        self.now = now
        self._by_len = _ByLen()
        self._by_age: deque = deque()  # arrival order (lazy deletion through _by_len's live set)

    def append(self, req) -> None:
        self._by_len.append(req)
        self._by_age.append(req)

    def appendleft(self, req) -> None:
        self._by_len.append(req)
        self._by_age.appendleft(req)

    def _oldest(self):
        live = self._by_len._live
        q = self._by_age
        while q and id(q[0]) not in live:
            q.popleft()
        return q[0] if q else None

    def __getitem__(self, i: int):
        if i != 0:
            raise IndexError("only the head is accessible")
        old = self._oldest()
        if old is None:
            raise IndexError("empty queue")
        if self.now() - old.arrival >= self.ageing_s:
            return old
        return self._by_len[0]

    def popleft(self):
        req = self[0]
        self._by_len.remove(req)
        return req

    def remove(self, req) -> None:
        self._by_len.remove(req)

    def __len__(self) -> int:
        return len(self._by_len)

    def __bool__(self) -> bool:
        return bool(self._by_len)


class _ByLen(_HeapQueue):
    def _key(self, req) -> tuple:
        return (req.target - req.done, req.arrival, req.idx)


class FifoQueue(deque):
    """Arrival order; a preempted request goes back to the front (appendleft)."""

    def __init__(self, ageing_s: float = 0.0, now: Callable[[], float] | None = None) -> None:
        super().__init__()


def make_queue(discipline: str, ageing_s: float, now: Callable[[], float]):
    """A waiting queue of the named discipline ("fifo", "priority", "sjf")."""
    return QUEUES.load(discipline)(ageing_s, now)
