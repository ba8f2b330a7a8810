"""dcsim: a discrete-event simulator of LLM-inference datacenters.

Data flow: scenario (config) -> workload -> router -> replica scheduler -> perf model -> metrics.
"""

from sim.scenario.config import Scenario, load, parse
from sim.analysis.metrics import summarize
from sim.engine.simulation import Result, Simulation, run_scenario

__all__ = ["Scenario", "load", "parse", "summarize", "Result", "Simulation", "run_scenario"]
__version__ = "0.1.0"
