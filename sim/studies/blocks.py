"""Where a coupled site's cells live: blocks of cells, each built once where it runs and
advanced a window at a time (sim/studies/site.py drives them).

- `CellBlock`: a block's cells (sim/engine/drivers/cell.py), their windows and their results.
- Backends, one interface (`step`, `finish`, `close`):
  `InProcess` (one block here), `Processes` (a block per local worker process, talking over
  multiprocessing's pipes) and `DaskActors` (a block per Dask actor: the cells stay on their
  worker, only a window's decisions go out and its reports come back).
A block that is lost (its process killed, its worker gone) is rebuilt and replayed: the
driver keeps every window's decisions, and a cell's results depend only on its scenario, seed
and decisions, so the replayed block is the lost one, bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import ScenarioError

# latency sketch: log-spaced bins, exact counts (mergeable by addition); percentiles to +-0.06%
SKETCH_LO_S, SKETCH_HI_S, SKETCH_PER_DECADE = 1e-5, 1e6, 2000
SKETCH_EDGES = np.logspace(math.log10(SKETCH_LO_S), math.log10(SKETCH_HI_S),
                           int(round(math.log10(SKETCH_HI_S / SKETCH_LO_S) * SKETCH_PER_DECADE)) + 1)
LAT_KEYS = ("ttft_s", "tpot_s", "e2e_s")


@dataclass(frozen=True)
class CellSpec:
    """One cell to build: its scenario (the site's at its share of the load), seed and id."""

    cell_id: int
    kind: str
    raw: dict[str, Any]
    seed: int
    base_dir: str


def build_cell(spec: CellSpec, bin_s: float, parsed: dict[int, Any] | None = None) -> Any:
    """A cell's driver, started (its workload drawn, every replica at rest power). parsed: the
    scenarios parsed so far, by their raw table's id (the cells of a kind share one)."""
    from sim.engine import arrays
    from sim.engine.arrays import prepare
    from sim.engine.compilation import kernel_for
    from sim.engine.drivers import fast
    from sim.engine.drivers.cell import CellDriver
    from sim.engine.simulation import Simulation
    from sim.scenario.config import parse

    parsed = {} if parsed is None else parsed
    sc = parsed.get(id(spec.raw))
    if sc is None:
        raw = dict(spec.raw, seed=spec.seed)
        raw["run"] = dict(raw.get("run", {}), timeseries=False)
        sc = parse(raw, Path(spec.base_dir))
        sc = dataclasses.replace(sc, facility=dataclasses.replace(sc.facility, sources=()))  # the site's
        parsed[id(spec.raw)] = sc
    sc = dataclasses.replace(sc, seed=spec.seed)
    sim = Simulation(sc)
    sim.ledger.supply_w = math.inf  # the supply side is the site's ledger
    why = fast.supported(sc, sim.wl)
    if sc.run.engine == "simpy" or why:
        raise ScenarioError("fleet.power_bus", "a coupled site runs its cells on the compiled engine: "
                            + ("; ".join(why) or 'run.engine = "simpy"'),
                            'use compiled policies, or power_bus = "split" (cells sampled at their share)')
    k = prepare(sim, kernel_for(len(sim.wl), sim.report), batch_rows=arrays.BATCH_ROWS)
    drv = CellDriver(sim, k, bin_s)
    drv.start()
    return drv


def sketch(x: np.ndarray) -> np.ndarray:
    """Counts of x (finite, > 0) in SKETCH_EDGES' bins (below and above: the first and last)."""
    x = x[np.isfinite(x)]
    i = np.clip(np.searchsorted(SKETCH_EDGES, x, side="right") - 1, 0, len(SKETCH_EDGES) - 2)
    return np.bincount(i, minlength=len(SKETCH_EDGES) - 1).astype(np.int64)


def sketch_percentile(counts: np.ndarray, q: float) -> float | None:
    """The q-th percentile of a sketch: the geometric middle of the bin holding it."""
    n = int(counts.sum())
    if n == 0:
        return None
    rank = q / 100.0 * (n - 1)
    b = int(np.searchsorted(np.cumsum(counts), math.floor(rank) + 1))
    return float(math.sqrt(SKETCH_EDGES[b] * SKETCH_EDGES[b + 1]))


def cell_result(spec: CellSpec, drv: Any, keep_latencies: bool, out_dir: str | None) -> dict[str, Any]:
    """A finished cell: its summary, its SLO counts, latency sketches (and the exact latencies
    if asked); its requests written under out_dir/requests/cell=<id>/ (Parquet)."""
    from sim.analysis.metrics import request_columns, slo_met, summarize
    from sim.engine.recorder import IN_FLIGHT

    res = drv.finish()
    s = summarize(res)
    out: dict[str, Any] = {"cell": spec.cell_id, "kind": spec.kind,
                           "summary": {k: v for k, v in s.items() if k != "wall_time_s"},
                           "wall_time_s": s["wall_time_s"]}
    met = slo_met(res)
    if met is not None:
        counted = (res.workload.arrival_s >= s["warmup_s"]) & (res.requests.status != IN_FLIGHT)
        out["slo_met"], out["slo_counted"] = int(np.sum(met & counted)), int(counted.sum())
    cols = request_columns(res)
    done = cols["status"] == "completed"
    out["sketch"] = {k: sketch(np.asarray(cols[k][done], dtype=np.float64)) for k in LAT_KEYS}
    if keep_latencies:
        out["latencies"] = {k: np.asarray(cols[k][done], dtype=np.float64) for k in LAT_KEYS}
    if out_dir is not None:
        out["requests_rows"] = write_partition(out_dir, spec, cols)
    return out


def write_partition(out_dir: str, spec: CellSpec, cols: dict[str, Any]) -> int:
    """The cell's requests as out_dir/requests/cell=<id>/part-0.parquet (a path or an fsspec URL:
    a shared filesystem or an object store, so workers on other machines write there too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.table({"kind": np.full(len(cols["request_id"]), spec.kind), **{k: np.asarray(v) for k, v in cols.items()}})
    part = f"requests/cell={spec.cell_id}/part-0.parquet"
    if "://" in out_dir:
        try:
            import fsspec
        except ImportError:  # (it comes with the dask extra)
            raise ScenarioError("--out", f"{out_dir} is a URL, which needs fsspec",
                                "pip install 'dcsim[dask]'") from None

        fs, root = fsspec.core.url_to_fs(out_dir)
        fs.makedirs(f"{root}/requests/cell={spec.cell_id}", exist_ok=True)
        with fs.open(f"{root}/{part}", "wb") as f:
            pq.write_table(t, f)
    else:
        p = Path(out_dir) / part
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, p)
    return t.num_rows


@dataclass
class BlockReport:
    """A block's window: what its cells report (sim/engine/drivers/cell.py CellReport), summed
    where the site sums and concatenated where it reads per replica."""

    it_uj: np.ndarray  # (tents, bins): IT energy per bin, integer microjoules
    it_uw: np.ndarray  # (tents,): IT draw now, integer microwatts
    live: np.ndarray  # per replica (the block's cells in order): can serve
    drained: np.ndarray
    comm: np.ndarray
    cap_w: np.ndarray  # per-accelerator cap (NaN: none)
    hosts_on_uw: int
    draw_uw: int
    done_at: float | None  # when its cells' last request left (None: some cell not done)


class CellBlock:
    """A block of cells where they run (this process, a worker process, a Dask actor)."""

    def __init__(self, specs: list[CellSpec], bin_s: float, keep_latencies: bool, out_dir: str | None,
                 code: str | None = None, files: dict[str, bytes] | None = None) -> None:
        if code is not None:  # (a Dask actor, maybe on another machine: the same dcsim as the driver's)
            from sim.studies.cluster import code_digest

            if code != code_digest():
                raise ScenarioError("--executor", f"this worker runs other dcsim code ({code_digest()[:12]}) than "
                                    f"the driver ({code[:12]})", "install the driver's commit on every worker "
                                    "and restart them")
        if files is not None:  # the files the cells' scenarios name, by content (sim/studies/portable.py)
            from sim.studies.portable import localize

            specs = [dataclasses.replace(s, raw=localize(s.raw, files)) for s in specs]
        self.specs = specs
        self.opts = (keep_latencies, out_dir)
        parsed: dict[int, Any] = {}
        self.cells = [build_cell(s, bin_s, parsed) for s in specs]

    def step(self, T: float, dec: Any) -> BlockReport:
        """Each cell: the previous window's decisions (`dec`: the block's slice of the site's
        Decisions, or None), then on to T. Returns the block's report: its cells' binned draw
        and scalars summed (integers: exact in any order, so the same bits however the site's
        cells are blocked), their replicas' state concatenated in cell order."""
        reps = []
        lo = 0
        for cell in self.cells:
            n = len(cell.replicas)
            if dec is not None:
                cell.apply(dec.t, dec.cap_set[lo:lo + n], dec.cap_w[lo:lo + n], dec.drain[lo:lo + n], dec.shed)
            lo += n
            cell.advance(T)
            reps.append(cell.report(T))
        done = [r.done_at for r in reps]
        def cat(k: str) -> np.ndarray:
            return np.concatenate([getattr(r, k) for r in reps])

        return BlockReport(it_uj=np.sum([r.it_uj for r in reps], axis=0), it_uw=np.sum([r.it_uw for r in reps], axis=0),
                           live=cat("live"), drained=cat("drained"), comm=cat("comm"), cap_w=cat("cap_w"),
                           hosts_on_uw=sum(r.hosts_on_uw for r in reps), draw_uw=sum(r.draw_uw for r in reps),
                           done_at=None if any(d is None for d in done) else max(done))

    def finish(self) -> list[dict[str, Any]]:
        """Each cell's result; the block's latency sketches travel summed, on its first cell's
        (integer counts: the same sum however blocked; 0.5 MB a block, not a cell)."""
        res = []
        for s, c in zip(self.specs, self.cells, strict=True):
            res.append(cell_result(s, c, *self.opts))
            if len(res) > 1:
                for k, v in res[-1].pop("sketch").items():
                    res[0]["sketch"][k] += v
        self.cells = []
        return res


class InProcess:
    """Every block here, one after another."""

    def __init__(self, blocks: list[list[CellSpec]], args: tuple) -> None:
        self.blocks = [CellBlock(b, *args) for b in blocks]

    def step(self, T: float, decisions: list[Any]) -> list[BlockReport]:
        return [b.step(T, d) for b, d in zip(self.blocks, decisions, strict=True)]

    def finish(self) -> list[list[dict[str, Any]]]:
        return [b.finish() for b in self.blocks]

    def close(self) -> None:
        self.blocks = []


def _serve(conn: Any, specs: list[CellSpec], args: tuple) -> None:
    """A local worker process: one block, commands from the driver's pipe until "close"."""
    import traceback

    from sim.studies.cluster import quiet_worker

    quiet_worker()  # (Ctrl-C is the driver's to report, as in the study's process pool)
    try:
        block = CellBlock(specs, *args)
        conn.send(("ok", None))
        while True:
            cmd, arg = conn.recv()
            if cmd == "step":
                conn.send(("ok", block.step(*arg)))
            elif cmd == "finish":
                conn.send(("ok", block.finish()))
            else:
                return
    except ScenarioError as e:
        conn.send(("error", (e.field, e.problem, e.fix)))
    except Exception as e:  # noqa: BLE001 - one line to the driver, not a traceback
        conn.send(("crash", f"{type(e).__name__}: {e} | {traceback.format_exc().splitlines()[-3:]}"))


class Processes:
    """A block per local process: forked on Linux, as the study's process pool (the engine already
    loaded, and a caller's script need not guard its main module), spawned elsewhere."""

    RETRIES = 2

    def __init__(self, blocks: list[list[CellSpec]], args: tuple) -> None:
        import multiprocessing as mp
        import sys

        self._ctx: Any = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        self.blocks, self.args = blocks, args
        self.log: list[tuple[float, list[Any]]] = []  # every window's (T, decisions): for replays
        self.procs: list[Any] = [None] * len(blocks)
        self.conns: list[Any] = [None] * len(blocks)
        self.lost = 0
        for b in range(len(blocks)):
            self._start(b)
        for b in range(len(blocks)):
            try:
                self._recv(b)
            except _Lost:  # (it died building its cells: again, then one line)
                self._revive(b)

    def _start(self, b: int) -> None:
        mine, theirs = self._ctx.Pipe()
        p = self._ctx.Process(target=_serve, args=(theirs, self.blocks[b], self.args), daemon=True)
        p.start()
        theirs.close()
        self.procs[b], self.conns[b] = p, mine

    def _recv(self, b: int) -> Any:
        try:
            kind, val = self.conns[b].recv()
        except (EOFError, ConnectionError, OSError):
            raise _Lost(b) from None
        if kind == "error":
            raise ScenarioError(*val)
        if kind == "crash":
            raise RuntimeError(f"a cell block failed: {val}")
        return val

    def _revive(self, b: int) -> None:
        """Block b's process died: a new one, replayed through every window so far (again if that
        one dies too; past RETRIES a process, one line)."""
        while True:
            self.lost += 1
            if self.lost > self.RETRIES * max(1, len(self.blocks)):
                raise ScenarioError("--workers", f"worker processes died {self.lost} times (out of memory?)",
                                    "use fewer --workers or fewer cells per worker")
            self.procs[b].join(timeout=5)
            self._start(b)
            try:
                self._recv(b)
                for T, dec in self.log:
                    self.conns[b].send(("step", (T, dec[b])))
                    self._recv(b)
                return
            except _Lost:
                continue

    def _all(self, cmd: str, args: list[Any]) -> list[Any]:
        for b, a in enumerate(args):
            self._send(b, cmd, a)
        out = []
        for b, a in enumerate(args):
            while True:
                try:
                    out.append(self._recv(b))
                    break
                except _Lost:
                    self._revive(b)
                    self._send(b, cmd, a)
        return out

    def _send(self, b: int, cmd: str, a: Any) -> None:
        try:
            self.conns[b].send((cmd, a))
        except (BrokenPipeError, ConnectionError, OSError):
            pass  # (its reply's recv sees it gone)

    def step(self, T: float, decisions: list[Any]) -> list[BlockReport]:
        out = self._all("step", [(T, d) for d in decisions])
        self.log.append((T, decisions))
        return out

    def finish(self) -> list[list[dict[str, Any]]]:
        return self._all("finish", [None] * len(self.blocks))

    def close(self) -> None:
        for b, c in enumerate(self.conns):
            if c is not None:
                self._send(b, "close", None)
                c.close()
        for p in self.procs:
            if p is not None:
                p.join(timeout=5)
                if p.is_alive():
                    p.kill()


class _Lost(Exception):
    def __init__(self, b: int) -> None:
        super().__init__(b)
        self.block = b
