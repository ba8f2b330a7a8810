"""Columnar recording: per-request result columns (numpy, preallocated) and per-replica time
series (typed arrays appended on change). Status codes: see STATUS."""

from __future__ import annotations

from array import array

import numpy as np

IN_FLIGHT, COMPLETED, REJECTED, FAILED = 0, 1, 2, 3
STATUS = {IN_FLIGHT: "in_flight", COMPLETED: "completed", REJECTED: "rejected", FAILED: "failed"}


class RequestTable:
    """Results of n requests, indexed by request index. Times in s; -1 = never happened."""

    def __init__(self, n: int) -> None:
        self.first_token_s = np.full(n, -1.0)
        self.start_s = np.full(n, -1.0)  # first scheduled (prefill begins or service starts)
        self.finish_s = np.full(n, -1.0)
        self.replica = np.full(n, -1, dtype=np.int32)
        self.status = np.zeros(n, dtype=np.int8)
        self.preemptions = np.zeros(n, dtype=np.int32)
        self.reason: dict[int, str] = {}  # only for rejected/failed requests
        # disaggregation: where a request was prefilled and decoded (co-located: both its
        # replica), and how long its KV took from one to the other
        self.prefill_replica = np.full(n, -1, dtype=np.int32)
        self.decode_replica = np.full(n, -1, dtype=np.int32)
        self.kv_transfer_s = np.zeros(n)
        self.client: np.ndarray | None = None  # int32: the closed-loop client that sent it (None: open loop)

    def head(self, m: int) -> RequestTable:
        """The first m requests' rows (closed-loop clients that stopped sending)."""
        t = RequestTable(0)
        for name, v in vars(self).items():
            setattr(t, name, v[:m].copy() if isinstance(v, np.ndarray) else None if v is None else
                    {i: x for i, x in v.items() if i < m})
        return t


class TimeSeries:
    """Per-replica samples at each step start and each idle transition."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.t_s = array("d")
        self.replica = array("i")
        self.batch_size = array("i")
        self.kv_blocks_used = array("i")
        self.queue_len = array("i")
        self.busy = array("b")

    def add(self, t: float, rid: int, batch: int, kv: int, queue: int, busy: int) -> None:
        if self.enabled:
            self.t_s.append(t)
            self.replica.append(rid)
            self.batch_size.append(batch)
            self.kv_blocks_used.append(kv)
            self.queue_len.append(queue)
            self.busy.append(busy)

    def columns(self) -> dict[str, np.ndarray]:
        return {"t_s": np.frombuffer(self.t_s, dtype=np.float64).copy() if len(self.t_s) else np.zeros(0),
                "replica": np.array(self.replica, dtype=np.int32),
                "batch_size": np.array(self.batch_size, dtype=np.int32),
                "kv_blocks_used": np.array(self.kv_blocks_used, dtype=np.int32),
                "queue_len": np.array(self.queue_len, dtype=np.int32),
                "busy": np.array(self.busy, dtype=np.int8)}
