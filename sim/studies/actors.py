"""A coupled site's cells on a Dask cluster: a block of cells per Dask actor (sim/studies/blocks.py
CellBlock), placed round-robin on the workers. The cells stay where they were built; a window's
call sends its decisions and returns the block's summed draw and replica states. The files the
cells' scenarios name travel once, by content (sim/studies/portable.py); each actor checks that
its worker runs the driver's dcsim. A block whose worker is lost is rebuilt on another worker and
replayed through the windows so far (the same bits: a cell depends only on its inputs).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError
from sim.studies.blocks import CellBlock, CellSpec

RETRIES = 3  # rebuilds of one block before the run gives up


class DaskActors:
    """The blocks as Dask actors (executor "dask": a LocalCluster; "tcp://...": a scheduler)."""

    def __init__(self, executor: str, blocks: list[list[CellSpec]], args: tuple) -> None:
        from sim.studies.portable import bundle
        from sim.studies.cluster import code_digest, dask_client

        self.client, self.cluster = dask_client(executor, len(blocks))
        files: dict[str, bytes] = {}
        raws: dict[int, dict[str, Any]] = {}  # each kind's scenario bundled once (its cells share it)
        for s in (s for b in blocks for s in b):
            if id(s.raw) not in raws:
                raws[id(s.raw)] = bundle(s.raw, Path(s.base_dir), files)
        self.blocks = [[dataclasses.replace(s, raw=raws[id(s.raw)]) for s in b] for b in blocks]
        self.args = (*args, code_digest())
        self.files = self.client.scatter(files, broadcast=True) if files else {}
        self.log: list[tuple[float, list[Any]]] = []
        self.lost = [0] * len(blocks)
        self.actors = [self._make(b, k) for k, b in enumerate(self.blocks)]

    def _make(self, b: list[CellSpec], k: int) -> Any:
        workers = sorted(self.client.scheduler_info()["workers"])
        if not workers:
            raise ScenarioError("--executor", "the Dask cluster has no workers", "start workers (dask worker ...)")
        fut = self.client.submit(CellBlock, b, *self.args, files=self.files, actor=True, pure=False,
                                 workers=[workers[k % len(workers)]])
        return fut.result()

    def _call(self, k: int, method: str, *a: Any) -> Any:
        """actor k's method, its block rebuilt and replayed if its worker is gone."""
        while True:
            try:
                return getattr(self.actors[k], method)(*a).result()
            except ScenarioError:
                raise
            except Exception as exc:  # noqa: BLE001 - a worker lost (closed comms, a killed process)
                self.lost[k] += 1
                if self.lost[k] > RETRIES:
                    raise ScenarioError("--executor", f"the Dask worker holding cell block {k + 1} was lost "
                                        f"{self.lost[k]} times ({type(exc).__name__}; out of memory?)",
                                        "give the workers more memory (dask worker --memory-limit) or use "
                                        "more workers, so each holds fewer cells") from None
                self._revive(k)

    def _revive(self, k: int) -> None:
        import time

        time.sleep(0.5)  # (the scheduler notices the loss)
        self.actors[k] = self._make(self.blocks[k], k)
        for T, dec in self.log:
            self.actors[k].step(T, dec[k]).result()

    def step(self, T: float, decisions: list[Any]) -> list[Any]:
        futs: list[Any] = []
        for a, d in zip(self.actors, decisions, strict=True):  # every block's window at once
            try:
                futs.append(a.step(T, d))
            except ScenarioError:
                raise
            except Exception:  # noqa: BLE001 - its worker is gone (the proxy says so at once)
                futs.append(None)
        out = []
        for k, f in enumerate(futs):
            try:
                if f is None:
                    raise RuntimeError("lost")
                out.append(f.result())
            except ScenarioError:
                raise
            except Exception:  # noqa: BLE001 - lost: rebuilt, replayed, asked again
                out.append(self._call(k, "step", T, decisions[k]))
        self.log.append((T, decisions))
        return out

    def finish(self) -> list[Any]:
        return [self._call(k, "finish") for k in range(len(self.actors))]

    def close(self) -> None:
        self.actors = []
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
