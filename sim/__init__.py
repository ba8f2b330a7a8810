"""dcsim: a discrete-event simulator of LLM-inference datacenters.

Data flow: scenario (config) -> workload -> router -> replica scheduler -> perf model -> metrics.
"""

from typing import Any

__all__ = ["Scenario", "load", "parse", "summarize", "Result", "Simulation", "run_scenario"]
__version__ = "0.1.0"

# what `sim.X` names, imported on first use: `import sim.cli` (every command) does not load the
# engine, numba or the analysis until a command needs them
_LAZY = {"Scenario": "sim.scenario.config", "load": "sim.scenario.config", "parse": "sim.scenario.config",
         "summarize": "sim.analysis.metrics", "Result": "sim.engine.simulation",
         "Simulation": "sim.engine.simulation", "run_scenario": "sim.engine.simulation"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
