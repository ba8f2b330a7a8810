"""What a run produced: the request table, time series, per-replica figures, the facility's
ledger and events, and which engine ran. Times in s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.engine.recorder import RequestTable, TimeSeries
from sim.facility.ledger import Ledger
from sim.scenario.config import Scenario
from sim.workload.generate import Workload


@dataclass
class ReplicaInfo:
    rid: int
    pool: str
    total_blocks: int
    busy_s: float = 0.0
    prefix_hit_tokens: int = 0  # prompt tokens found in its prefix cache at admission
    admitted_tokens: int = 0  # prompt tokens it admitted (every admission, re-admissions too)
    tier_hit_blocks: int = 0  # KV blocks loaded from its KV tier ([pools.kv_offload])
    offloaded_blocks: int = 0  # KV blocks evicted from HBM into its tier
    block_bytes: float = 0.0  # bytes of one KV block (the whole replica's)


@dataclass
class FacilityEvents:
    """What happened to the facility during a run (empty without a [facility])."""

    node_failures: int = 0
    failure_times_s: list[float] = field(default_factory=list)
    supply_drops: int = 0  # turbine trips
    trip_times_s: list[float] = field(default_factory=list)
    tents: list[str] = field(default_factory=lambda: ["default"])  # tent names, by index
    graph: Any = None  # the facility's networkx graph (None without tents)


@dataclass
class Result:
    """Everything a run produced. Times in s."""

    scenario: Scenario
    workload: Workload
    requests: RequestTable
    timeseries: TimeSeries
    in_system_t_s: np.ndarray  # times at which the number of requests in the system changed
    in_system_n: np.ndarray  # that number, from each time on
    replicas: list[ReplicaInfo]
    sim_time_s: float
    wall_time_s: float
    engine: str  # "compiled" or "simpy": which engine ran
    ledger: Ledger  # power and energy book-keeping
    facility: FacilityEvents = field(default_factory=FacilityEvents)
    power_peak_window_s: float | None = None  # compiled engine: the window of facility_power_peak_w
    autoscale: Any = None  # sim/engine/autoscale.py AutoscaleLog: decisions and replica-hours (None: no autoscaler)

    @property
    def extra(self) -> dict[str, Any]:
        """The old string-keyed view of the typed fields (read-only; kept for scripts written
        against it: use the fields)."""
        out = {"ledger": self.ledger, "failures": self.facility.node_failures,
               "fail_marks": self.facility.failure_times_s, "supply_drops": self.facility.supply_drops,
               "trip_marks": self.facility.trip_times_s, "tents": self.facility.tents, "graph": self.facility.graph,
               "engine": self.engine}
        if self.power_peak_window_s is not None:
            out["power_peak_window_s"] = self.power_peak_window_s
        return out
