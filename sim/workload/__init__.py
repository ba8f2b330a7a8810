"""The workload: arrivals and lengths drawn up front from named seeded streams, and traces read."""

from sim.workload.generate import Workload, arrivals, build_workload, draw_lengths, read_trace

__all__ = ["Workload", "arrivals", "build_workload", "draw_lengths", "read_trace"]
