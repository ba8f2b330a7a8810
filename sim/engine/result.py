"""What a run produced: the request table, time series, per-replica figures and the facility
book-keeping. Times in s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.engine.recorder import RequestTable, TimeSeries
from sim.scenario.config import Scenario
from sim.workload.generate import Workload


@dataclass
class ReplicaInfo:
    rid: int
    pool: str
    total_blocks: int
    busy_s: float = 0.0


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
    extra: dict[str, Any] = field(default_factory=dict)
