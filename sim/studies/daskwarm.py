"""Dask workers warm dcsim's compiled engine when they start, so the first task on a new worker
does not compile it (about two minutes on a cold machine). The build runs in a detached process
(sim/engine/compilation.py build_in_background: once per machine and source, a lock file keeps
a second from starting), so the worker's event loop is never blocked by it; a task that arrives
before it ends runs as on any cold machine. Registered by the driver on every cluster it uses
(sim/studies/cluster.py dask_client), or at a worker's start with
`dask worker ... --preload sim.studies.daskwarm`."""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class WarmEngine(WorkerPlugin):
    """On each worker: start the engine's build if this machine has none cached."""

    name = "dcsim-warm-engine"

    def setup(self, worker: Any) -> None:
        from sim.engine import compilation

        if not compilation.cached():
            compilation.build_in_background()


def dask_setup(worker: Any) -> None:
    """`--preload sim.studies.daskwarm`: the plugin's setup at the worker's start."""
    WarmEngine().setup(worker)
