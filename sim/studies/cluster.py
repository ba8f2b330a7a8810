"""What a study needs of a cluster, below the studies that use it (study, blocks, actors): the
code digest a worker checks against the driver's, a Dask client on a LocalCluster or a
scheduler elsewhere (its workers warming the engine on start: sim/studies/daskwarm.py), and what
a local worker process does first (quiet_worker)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError

DASK_CONNECT_S = 10  # how long to wait for a Dask scheduler to answer


@functools.cache
def code_digest() -> str:
    """A digest of this dcsim's code and data (every file under sim/ but bytecode): what a worker
    checks against the driver's before it runs a task (a cluster's machines must run the same
    commit; the package version alone does not change between commits)."""
    import hashlib

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".nbi", ".nbc", ".lock"):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def dask_client(executor: str, workers: int) -> tuple[Any, Any]:
    """(a Dask client, its LocalCluster or None): "dask" starts a LocalCluster on loopback with
    `workers` single-threaded worker processes; "tcp://HOST:PORT" connects to a scheduler."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover
        raise ScenarioError("--executor", "Dask is not installed", "pip install 'dcsim[dask]'") from None
    from sim.studies.daskwarm import WarmEngine

    cluster = None
    if executor == "dask":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(executor, timeout=DASK_CONNECT_S)
        except (OSError, TimeoutError) as exc:
            raise ScenarioError("--executor", f"no Dask scheduler answers at {executor} ({type(exc).__name__})",
                                "start one (dask scheduler --host 127.0.0.1) or use --executor local") from None
    client.register_plugin(WarmEngine())  # workers that join later warm up too
    return client, cluster


def quiet_worker() -> None:
    """A pool worker leaves Ctrl-C to the parent (which stops the study in one line), instead of
    each printing its own traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
