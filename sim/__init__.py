"""dcsim: a discrete-event simulator of LLM-inference datacenters.

Data flow: scenario (config) -> workload -> router -> replica scheduler -> perf model -> metrics.
"""

from .config import Scenario, load, parse
from .metrics import summarize
from .simulation import Result, Simulation, run_scenario

__all__ = ["Scenario", "load", "parse", "summarize", "Result", "Simulation", "run_scenario"]
__version__ = "0.1.0"
