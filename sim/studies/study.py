"""Studies over many runs: `compare` (policy variants on common random numbers) and `sweep`
(latency against offered load). Each run is one task; tasks run on a process pool and are
aggregated in task order, so results do not depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sim.scenario.config import apply_overrides, parse, read_toml
from sim.errors import ScenarioError, warn
from sim.progress import Progress
from sim.analysis.report_html import merged_status
from sim.analysis.stats import mean_ci, paired_diff_ci
from sim.studies.cluster import DASK_CONNECT_S, code_digest, dask_client, quiet_worker  # noqa: F401
from sim.studies.portable import named_file, bundle, localize

METRICS = ("ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p99_s",
           "e2e_mean_s", "e2e_p50_s", "e2e_p99_s", "queue_mean_s", "throughput_output_tok_per_s",
           "throughput_req_per_s", "utilization_mean", "slo_attainment", "goodput_req_per_s",
           "requests_completed", "requests_rejected", "requests_failed", "preemptions_total",
           "energy_j", "energy_per_output_tok_j", "it_power_mean_w", "facility_power_mean_w", "facility_power_peak_w",
           "power_limit_exceeded_s", "battery_used_j", "cost_usd", "cost_per_mtok_usd", "prefix_cache_hit_rate")

# a fleet's own figures (its summary also carries the single-run names it shares: cells.STUDY_ALIASES)
FLEET_METRICS = ("fleet_output_tok_per_s", "fleet_req_per_s", "fleet_output_tokens_per_day", "fleet_usd_per_hour",
                 "fleet_usd_per_mtok", "fleet_slo_attainment", "fleet_facility_power_mean_w",
                 "fleet_facility_power_peak_w", "fleet_energy_j", "fleet_requests_lost_to_power",
                 "ramp_limit_exceeded_s")

MAX_SWEEP_POINTS = 10_000  # a sweep's range; each point is one or more runs


@dataclass(frozen=True)
class Task:
    raw: dict[str, Any]  # the scenario with this task's overrides applied
    base_dir: str
    seed: int
    keep_latencies: bool = False
    keep_requests: bool = False  # return the whole per-request table (fleet cells merge them)
    code: str = ""  # the driver's code_digest(): a worker running other code refuses the task ("": unchecked)


def run_task(task: Task) -> dict[str, Any]:
    """Run one scenario; returns its summary (and completed requests' latencies if asked). A
    fleet scenario runs its simulated cells here, one after another (cell k on seed + k), and
    its summary is the fleet's (cells.fleet_summary, with the single-run names added)."""
    from sim.analysis.metrics import request_columns, summarize
    from sim.engine.simulation import Simulation

    if "fleet" in task.raw:
        return _run_fleet_task(task)
    raw = dict(task.raw)
    raw["seed"] = task.seed
    raw.setdefault("run", {})
    raw["run"] = dict(raw["run"], timeseries=bool(task.keep_latencies))
    res = Simulation(parse(raw, Path(task.base_dir))).run()
    s = summarize(res)
    out: dict[str, Any] = {"summary": {k: v for k, v in s.items() if k != "wall_time_s"},
                           "wall_time_s": s["wall_time_s"]}
    cols = request_columns(res) if (task.keep_latencies or task.keep_requests) else {}
    if task.keep_latencies:
        done = cols["status"] == "completed"
        out["latencies"] = {k: cols[k][done].tolist() for k in ("ttft_s", "tpot_s", "e2e_s")}
    if task.keep_requests:
        out["requests"] = cols
    return out


def _run_fleet_task(task: Task) -> dict[str, Any]:
    from sim.studies.cells import as_study_summary, fleet_cells, fleet_config, fleet_summary

    if fleet_config(task.raw).power_bus == "shared":  # every cell, coupled on the site's bus, in this task
        import time

        from sim.studies.coupled import run_coupled

        t0 = time.perf_counter()
        rep = run_coupled(task.raw, Path(task.base_dir), task.seed, keep_latencies=task.keep_latencies)
        lat = rep.pop("_latencies", None)
        rep["scenario"] = str(task.raw.get("name", "fleet"))
        done: dict[str, Any] = {"summary": as_study_summary(rep), "wall_time_s": time.perf_counter() - t0}
        if lat is not None:
            done["latencies"] = {k: v.tolist() for k, v in lat.items()}
        return done
    cells, kinds, n_cells = fleet_cells(task.raw, Path(task.base_dir), task.seed)
    res = [run_task(Task(c.raw, task.base_dir, c.seed, keep_latencies=True)) for c in cells]
    rep = fleet_summary(str(task.raw.get("name", "fleet")), cells, kinds, n_cells, res)
    out: dict[str, Any] = {"summary": as_study_summary(rep), "wall_time_s": sum(r["wall_time_s"] for r in res)}
    if task.keep_latencies:
        out["latencies"] = {k: [x for r in res for x in r["latencies"][k]] for k in ("ttft_s", "tpot_s", "e2e_s")}
    return out


def seed_stride(raw: dict[str, Any]) -> int:
    """Seeds between replications: 1, or a fleet's cell count (its cells draw seed + k), so no
    two replications share a cell's stream."""
    from sim.studies.cells import cells_total

    return cells_total(raw)


def _named_files(node: Any, base: Path, out: set[Path]) -> None:
    """Files a scenario names: string values that are paths to existing files (a "file.py:Class"
    plug-in by its file), relative to the scenario's folder or absolute (portable.named_file)."""
    if isinstance(node, dict):
        for v in node.values():
            _named_files(v, base, out)
    elif isinstance(node, list):
        for v in node:
            _named_files(v, base, out)
    elif isinstance(node, str):
        found = named_file(node, base)
        if found is not None:
            out.add(found[0])


_DIGESTS: dict[tuple[str, int, int], str] = {}


def files_digest(raw: dict[str, Any], base: Path) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of every file the scenario names, by path."""
    import hashlib

    found: set[Path] = set()
    _named_files(raw, base, found)
    out = {}
    for p in sorted(found):
        st = p.stat()
        k = (str(p), st.st_mtime_ns, st.st_size)
        if k not in _DIGESTS:
            _DIGESTS[k] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        out[str(p)] = _DIGESTS[k]
    return out


def task_key(task: Task) -> str:
    """Stable id of a task (scenario, seed, options): names its saved result for --resume."""
    import hashlib

    from sim import __version__

    # keyed on content: the scenario, every file it names (a trace, a rate profile, a plug-in, a
    # profile) by its bytes, and the dcsim version, so a saved result is reused only for the same run
    key = {"raw": task.raw, "seed": task.seed, "lat": task.keep_latencies,
           "files": files_digest(task.raw, Path(task.base_dir)), "dcsim": __version__}
    if task.keep_requests:
        key["req"] = True
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _jsonable(v: Any) -> Any:
    """numpy values in a saved result (a fleet cell's request columns) as JSON keeps them."""
    import numpy as np

    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def _safe_run(task: Task, files: dict[str, bytes] | None = None) -> dict[str, Any]:
    """run_task, with a failure turned into a result that says which run failed and why; a task
    from a driver running other code is refused (its results would not be the driver's). files:
    the bytes of the files the task's scenario names, by content address (sim/studies/portable.py)."""
    if task.code and task.code != code_digest():
        import socket

        why = (f"this worker ({socket.gethostname()}) runs dcsim code {code_digest()}, the driver {task.code}: "
               "install the driver's commit on every worker and restart them")
        return {"error": why, "seed": task.seed}
    try:
        if files is not None:  # (from another machine: the files its scenario names, by content)
            task = dataclasses.replace(task, raw=localize(task.raw, files))
        return run_task(task)
    except Exception as exc:  # noqa: BLE001 - reported per run, the study goes on
        return {"error": f"{type(exc).__name__}: {exc}", "seed": task.seed}


def execute(tasks: Sequence[Task], workers: int | None = None, label: str = "",
            quiet: bool = False, executor: str = "local", cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Run tasks; results come back in task order, identical whatever the executor and worker
    count (each run is deterministic and aggregation follows task order).

    executor: "local" (a process pool over local cores; workers=1 runs in this process),
    "dask" (a Dask LocalCluster on loopback), or "tcp://HOST:PORT" (an existing Dask scheduler).
    cache_dir: each result is saved there as it arrives, and results already there are reused
    (this is what --resume relies on). A run that raises yields {"error": ...}, not an abort."""
    from sim.engine.warmup import warm_up
    from sim.progress import ConsoleReporter, Reporter

    warm_up(Reporter() if quiet else ConsoleReporter(label))  # once here, not in every worker
    bar = Progress(len(tasks), label, enabled=None if not quiet else False)
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    keys = [task_key(t) for t in tasks]
    todo = []
    for i, k in enumerate(keys):
        f = cache_dir / f"{k}.json" if cache_dir is not None else None
        if f is not None and f.exists():
            results[i] = json.loads(f.read_text())
            bar.update()
        else:
            todo.append(i)

    def done(i: int, r: dict[str, Any]) -> None:
        results[i] = r
        if cache_dir is not None and "error" not in r:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_dir / f"{keys[i]}.json.tmp"
            tmp.write_text(json.dumps(r, default=_jsonable))
            tmp.replace(cache_dir / f"{keys[i]}.json")  # atomic: an interrupted write leaves no result
        bar.update()

    workers = workers or os.cpu_count() or 1
    if executor == "local":
        if workers <= 1 or len(todo) <= 1:
            for i in todo:
                done(i, _safe_run(tasks[i]))
        else:
            _execute_local(tasks, todo, workers, done, results)
    elif executor == "dask" or executor.startswith("tcp://"):
        # each task as it runs on another machine: the driver's code digest (each worker checks
        # it) and the files its scenario names carried by content, not as this machine's paths
        code, files = code_digest(), dict[str, bytes]()
        tasks = [dataclasses.replace(t, code=code, raw=bundle(t.raw, Path(t.base_dir), files)) for t in tasks]
        _execute_dask(tasks, todo, executor, workers, done, files)
    else:
        raise ScenarioError("--executor", f"unknown executor {executor!r}", "use local, dask or tcp://HOST:PORT")
    bar.close()
    return [r if r is not None else {"error": "not run"} for r in results]


LOCAL_RETRIES = 3  # a process pool whose worker died (killed, out of memory) is restarted this often


def _execute_local(tasks: Sequence[Task], todo: list[int], workers: int,
                   done: Callable[[int, dict[str, Any]], None], results: list[Any]) -> None:
    """The runs on a local process pool. A worker that dies (killed, out of memory) breaks the
    pool: what finished is kept (and saved with a cache), the rest runs on a new pool, up to
    LOCAL_RETRIES times; then one line naming what was lost."""
    from concurrent.futures.process import BrokenProcessPool

    left = list(todo)
    for attempt in range(LOCAL_RETRIES + 1):
        try:
            with ProcessPoolExecutor(max_workers=min(workers, len(left)), initializer=quiet_worker) as pool:
                futs = {pool.submit(_safe_run, tasks[i]): i for i in left}
                try:
                    for fut in as_completed(futs):
                        done(futs[fut], fut.result())
                except KeyboardInterrupt:  # stop now: the runs under way are dropped, what finished is kept
                    for proc in list(getattr(pool, "_processes", {}).values()):
                        proc.terminate()
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
            return
        except BrokenProcessPool:
            left = [i for i in left if results[i] is None]
            if attempt == LOCAL_RETRIES:
                raise ScenarioError("--workers", f"a worker process died {LOCAL_RETRIES + 1} times ({len(left)} runs "
                                    "not done; out of memory?)", "use fewer --workers or a smaller scenario; with "
                                    "--out, --resume keeps what finished") from None
            warn("--workers", f"a worker process died; {len(left)} runs go to a new pool", "")


def _execute_dask(tasks: Sequence[Task], todo: list[int], executor: str, workers: int,
                  done: Callable[[int, dict[str, Any]], None], files: dict[str, bytes]) -> None:
    """One Dask task per run; a worker that dies has its runs retried on another worker. The
    files the scenarios name go to the cluster once each (scattered), not with every task."""
    from distributed import as_completed as dask_completed

    client, cluster = dask_client(executor, workers)
    try:
        shipped = client.scatter(files) if files else {}  # (a dict of futures: each worker gets the values)
        futs = client.map(_safe_run, [tasks[i] for i in todo], pure=False, retries=3, files=shipped)
        index = {f.key: i for f, i in zip(futs, todo, strict=False)}
        for f in dask_completed(futs, raise_errors=False):
            if f.status != "finished" and _lost(f):
                raise ScenarioError("--executor", f"Dask workers died running run {index[f.key] + 1} of {len(tasks)}, "
                                    "at every try (out of memory?)", "give the workers more memory (dask worker "
                                    "--memory-limit, fewer --nworkers a machine) or run less per task; with --out, "
                                    "--resume keeps what finished")
            done(index[f.key], f.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _lost(f: Any) -> bool:
    """Whether a Dask future ended without a result because its workers died (KilledWorker after
    the scheduler's tries, or cancelled once the scheduler forgot it), not by an error of its own
    (_safe_run returns those as results)."""
    if f.status == "cancelled":
        return True
    try:
        return type(f.exception()).__name__ == "KilledWorker"
    except Exception:  # noqa: BLE001 - a future in any other state: not a lost worker
        return False


def parse_vary(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    out = []
    for it in items:
        if "=" not in it:
            raise ScenarioError(
                "--vary", f"{it!r} is not KEY=V1,V2", "write e.g. --vary pools.scheduler.policy=continuous,chunked"
            )
        k, vs = it.split("=", 1)
        vals = [v.strip() for v in vs.split(",") if v.strip()]
        if not vals:
            raise ScenarioError("--vary", f"no values in {it!r}")
        out.append((k.strip(), vals))
    return out


def variants(vary: Sequence[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """Cartesian product of the varied keys: [(label, [key=value, ...])]."""
    if not vary:
        return [("base", [])]
    combos = itertools.product(*[[(k, v) for v in vals] for k, vals in vary])
    out = []
    for combo in combos:
        label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in combo) if len(vary) > 1 else combo[0][1]
        out.append((label, [f"{k}={v}" for k, v in combo]))
    return out


def named_variants(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`--variant NAME[:KEY=V;KEY=V...]`: a variant that sets several keys at once (none: the
    scenario as it is), e.g. colocated:pools.role=mixed against disaggregated."""
    out = []
    for it in items:
        name, _, rest = it.partition(":")
        name = name.strip()
        if not name or "=" in name:
            raise ScenarioError("--variant", f"{it!r} is not NAME[:KEY=V;KEY=V]",
                                "write e.g. --variant colocated:pools.role=mixed --variant disaggregated")
        sets = [x.strip() for x in rest.split(";") if x.strip()]
        bad = [x for x in sets if "=" not in x]
        if bad:
            raise ScenarioError("--variant", f"{bad[0]!r} in {it!r} is not KEY=VALUE")
        out.append((name, sets))
    return out


def _variants(vary: Sequence[str], named: Sequence[str]) -> list[tuple[str, list[str]]]:
    vs = variants(parse_vary(vary)) if vary or not named else []
    vs += named_variants(named)
    labels = [lab for lab, _ in vs]
    if len(set(labels)) != len(labels):
        raise ScenarioError("--variant", f"two variants are named alike ({labels})", "give each variant its own name")
    return vs


def _load(path: str | Path) -> tuple[dict[str, Any], Path]:
    p = Path(path)
    return read_toml(p), p.parent


def _validated(raw: dict[str, Any], base: Path, sets: list[str]) -> dict[str, Any]:
    r = apply_overrides(raw, sets)
    if "fleet" in r:
        from sim.studies.cells import fleet_cells

        fleet_cells(r, base)  # every simulated cell's scenario, checked here
    else:
        parse(r, base)  # fail fast, in this process, with the field named
    return r


def compare(scenario: str | Path, vary: Sequence[str], replications: int = 3, baseline: str | None = None,
            workers: int | None = None, sets: Sequence[str] = (), quiet: bool = False,
            keep_latencies: bool = True, executor: str = "local", cache_dir: Path | None = None,
            named: Sequence[str] = ()) -> dict[str, Any]:
    """Every variant on the same seeds; means, 95% CIs and paired differences to the baseline.
    Variants: the product of `vary`, then the `named` ones (named_variants)."""
    if replications < 1:
        raise ScenarioError("--replications", "must be >= 1")
    if replications == 1:
        warn("--replications", "1 replication gives no confidence interval and no significance test",
             "use --replications 3 or more")
    raw, base = _load(scenario)
    raw = apply_overrides(raw, list(sets))
    seed0 = int(raw.get("seed", 0))
    vs = _variants(vary, named)
    labels = [v[0] for v in vs]
    if baseline is None:
        baseline = labels[0]
    if baseline not in labels:
        raise ScenarioError("--baseline", f"{baseline!r} is not a variant", f"use one of {labels}")
    raws = {lab: _validated(raw, base, s) for lab, s in vs}
    stride = seed_stride(raw)
    seeds = [seed0 + r * stride for r in range(replications)]
    tasks = [Task(raws[lab], str(base), seeds[r], keep_latencies and r == 0)
             for lab, _ in vs for r in range(replications)]
    res = execute(tasks, workers, "compare", quiet, executor, cache_dir)
    failed = _failures(res, [(lab, seeds[r]) for lab, _ in vs for r in range(replications)])
    if failed:
        raise ScenarioError("compare", f"{len(failed)} run(s) failed, e.g. {failed[0]}", "fix the variant named")
    by: dict[str, list[dict[str, Any]]] = {
        lab: res[i * replications : (i + 1) * replications] for i, lab in enumerate(labels)
    }
    out: dict[str, Any] = {"scenario": str(scenario), "replications": replications, "slo": raw.get("slo") or {},
                           "seeds": seeds, "baseline": baseline,
                           "vary": list(vary), "metrics": [], "variants": {}}
    metrics = [m for m in METRICS + FLEET_METRICS
               if all(r["summary"].get(m) is not None for rs in by.values() for r in rs)]
    out["metrics"] = metrics
    out["calibration_status"] = merged_status(r["summary"] for r in res)  # what the numbers rest on
    for lab, s in vs:
        runs = by[lab]
        md: dict[str, Any] = {}
        for m in metrics:
            vals = [float(r["summary"][m]) for r in runs]
            mean, lo_ci, hi_ci = mean_ci(vals)
            lo, hi = (None, None) if replications == 1 else (lo_ci, hi_ci)  # one run: no interval, not a zero-width one
            d: dict[str, Any] = {"mean": mean, "ci_low": lo, "ci_high": hi, "values": vals}
            if lab != baseline:
                bvals = [float(r["summary"][m]) for r in by[baseline]]
                dm, dlo, dhi = paired_diff_ci(vals, bvals)
                one = replications == 1
                d.update({"diff_mean": dm, "diff_ci_low": None if one else dlo, "diff_ci_high": None if one else dhi,
                          "significant": bool(not one and (dlo > 0 or dhi < 0))})
            md[m] = d
        unstable = [{"seed": seeds[r], "instability": run["summary"].get("instability")}
                    for r, run in enumerate(runs) if run["summary"].get("stable") is False]
        out["variants"][lab] = {"sets": s, "metrics": md, "unstable": unstable}
        if keep_latencies and runs and "latencies" in runs[0]:
            out["variants"][lab]["latencies_seed0"] = runs[0]["latencies"]
    return out


def parse_range(text: str) -> tuple[str, list[float]]:
    if "=" not in text or text.count(":") != 2:
        raise ScenarioError(
            "--range", f"{text!r} is not KEY=START:STOP:STEP", "write e.g. --range workload.rate_per_s=2:20:2"
        )
    k, spec = text.split("=", 1)
    try:
        a, b, st = (float(x) for x in spec.split(":"))
    except ValueError:
        raise ScenarioError("--range", f"{spec!r}: START, STOP and STEP must be numbers") from None
    if st <= 0 or b < a:
        raise ScenarioError("--range", "needs STEP > 0 and STOP >= START")
    if a < 0 or (a == 0 and k.strip().endswith(("rate_per_s", "replicas", "tp", "num_requests", "duration_s"))):
        raise ScenarioError("--range", f"starts at {a:g}: {k.strip()} must be positive", "start the range above 0")
    if not all(math.isfinite(x) for x in (a, b, st)):
        raise ScenarioError("--range", f"{spec!r}: START, STOP and STEP must be finite")
    n = int(math.floor((b - a) / st + 1e-9)) + 1
    if n > MAX_SWEEP_POINTS:
        raise ScenarioError("--range", f"{spec!r} is {n:,} points",
                            f"give at most {MAX_SWEEP_POINTS:,} (a larger STEP)")
    vals = [round(a + i * st, 10) for i in range(n)]
    if all(x.strip().lstrip("-").isdigit() for x in spec.split(":")):
        vals = [int(v) for v in vals]  # an integer key (tp, replicas, ...) stays integer
    return k.strip(), vals


def sweep(scenario: str | Path, range_: str, vary: Sequence[str] = (), replications: int = 1,
          workers: int | None = None, sets: Sequence[str] = (), quiet: bool = False,
          attainment: float = 0.9, executor: str = "local", cache_dir: Path | None = None,
          named: Sequence[str] = ()) -> dict[str, Any]:
    """Latency against a swept key (offered load) for each variant, and the largest value at
    which mean SLO attainment stays at or above `attainment`."""
    if not 0 < attainment <= 1:
        raise ScenarioError("--attainment", f"must be in (0, 1], got {attainment:g}", "give a share, e.g. 0.9")
    if replications < 1:
        raise ScenarioError("--replications", "must be >= 1")
    raw, base = _load(scenario)
    raw = apply_overrides(raw, list(sets))
    seed0 = int(raw.get("seed", 0))
    key, values = parse_range(range_)
    vs = _variants(vary, named)
    stride = seed_stride(raw)
    tasks, index, bad = [], [], {}
    for lab, s in vs:
        for v in values:
            try:
                r = _validated(raw, base, list(s) + [f"{key}={v}"])
            except ScenarioError as exc:  # this configuration cannot run: report it, run the rest
                bad[(lab, v)] = f"invalid scenario: {exc}"
                continue
            for k in range(replications):
                tasks.append(Task(r, str(base), seed0 + k * stride))
                index.append((lab, v))
    res = execute(tasks, workers, "sweep", quiet, executor, cache_dir)
    for (lab, v), why in bad.items():
        index.append((lab, v))
        res.append({"error": why})
    if index and all("error" in r for r in res):  # nothing to report: say why in one line
        f0 = _failures(res[:1], index[:1])[0]
        raise ScenarioError("sweep", f"every run failed, e.g. {f0['variant']} at {key}={f0['config']}: {f0['error']}",
                            "fix the variant or the range")
    out: dict[str, Any] = {"scenario": str(scenario), "key": key, "values": values, "replications": replications,
                           "attainment_target": attainment, "slo": raw.get("slo") or {}, "variants": {},
                           "failed_runs": _failures(res, [(lab, f"{key}={v}") for lab, v in index]),
                           "calibration_status": merged_status(r.get("summary") for r in res)}
    for lab, s in vs:
        pts: list[dict[str, Any]] = []
        for v in values:
            runs = [r for (l2, v2), r in zip(index, res, strict=False) if l2 == lab and v2 == v and "error" not in r]
            if not runs:
                pts.append({"value": v, "metrics": {}, "failed": True})
                continue
            md = {}
            for m in METRICS + FLEET_METRICS:
                vals = [r["summary"].get(m) for r in runs]
                if any(x is None for x in vals):
                    continue
                mean, lo_ci, hi_ci = mean_ci([float(x) for x in vals])
                one = len(vals) < 2  # one run: no interval, not a zero-width one
                md[m] = {"mean": mean, "ci_low": None if one else lo_ci, "ci_high": None if one else hi_ci}
            unstable = [r["summary"]["instability"] for r in runs if r["summary"].get("stable") is False]
            pts.append({"value": v, "metrics": md, "stable": not unstable,
                        "instability": unstable[0] if unstable else None})
        best: Any = None
        has_slo = all("slo_attainment" in p["metrics"] for p in pts if not p.get("failed"))
        if has_slo:
            for p in pts:
                if p.get("failed"):
                    break
                if p["metrics"]["slo_attainment"]["mean"] >= attainment and p["stable"]:
                    best = p["value"]
                else:
                    break
        out["variants"][lab] = {"sets": s, "points": pts, "max_value_meeting_slo": best,
                                "slo_defined": has_slo}
    return out


def _failures(res: list[dict[str, Any]], names: list[tuple]) -> list[dict[str, Any]]:
    return [
        {"variant": n[0], "config": str(n[1]), "error": r["error"]}
        for r, n in zip(res, names, strict=False)
        if "error" in r
    ]


def save(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def strip_latencies(rep: dict[str, Any]) -> dict[str, Any]:
    """The report without the per-request latency lists (for printing)."""
    out = json.loads(json.dumps(rep))
    for v in out.get("variants", {}).values():
        v.pop("latencies_seed0", None)
    return out


def table_compare(rep: dict[str, Any], metrics: Sequence[str] | None = None) -> str:
    metrics = metrics or [m for m in ("ttft_mean_s", "ttft_p99_s", "tpot_mean_s", "tpot_p99_s", "e2e_mean_s",
                                      "e2e_p99_s", "throughput_output_tok_per_s", "goodput_req_per_s",
                                      "slo_attainment", "preemptions_total", "energy_per_output_tok_j",
                                      "facility_power_peak_w", "power_limit_exceeded_s", "cost_per_mtok_usd",
                                      "prefix_cache_hit_rate")
                          if m in rep["metrics"]]
    L = [f"dcsim compare: {rep['scenario']}, {rep['replications']} replications (seeds {rep['seeds']}), "
         f"baseline {rep['baseline']}", "mean [95% CI]; diff = paired difference to the baseline; * = significant", ""]
    for m in metrics:
        L.append(m)
        for lab, v in rep["variants"].items():
            d = v["metrics"][m]
            line = f"  {lab:<28} {_g(d['mean'])} " + _ci(d['ci_low'], d['ci_high'])
            if "diff_mean" in d:
                line += (f"   diff {_g(d['diff_mean'])} {_ci(d['diff_ci_low'], d['diff_ci_high'])}"
                         f"{' *' if d['significant'] else ''}")
            L.append(line)
    for lab, v in rep["variants"].items():
        for u in v.get("unstable", []):
            L.append(f"NO steady state: {lab}, seed {u['seed']}: {u['instability']}")
    return "\n".join(L)


def table_sweep(rep: dict[str, Any]) -> str:
    L = [f"dcsim sweep: {rep['scenario']} over {rep['key']} ({rep['replications']} replication(s) per point)", ""]
    for lab, v in rep["variants"].items():
        L.append(f"variant {lab}: max {rep['key']} meeting the SLO ({rep['attainment_target']:.0%} attainment): "
                 f"{v['max_value_meeting_slo'] if v['slo_defined'] else 'no SLO defined'}")
        L.append(f"  {'value':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'TPOT p50':>9} {'TPOT p99':>9} {'E2E p50':>9} "
                 f"{'E2E p99':>9} {'tok/s':>9} {'goodput':>8} {'attain':>7} {'preempt':>8} {'J/tok':>7} "
                 f"{'$/Mtok':>7} {'over s':>7}")
        for p in v["points"]:
            m = p["metrics"]

            def g(k: str, scale: float = 1.0, m: dict = m) -> str:
                return _g(m[k]["mean"] * scale) if k in m else "-"
            mark = " !" if p.get("stable") is False else "  "
            L.append(f"{mark}{p['value']:>8g} {g('ttft_p50_s'):>9} {g('ttft_p99_s'):>9} {g('tpot_p50_s'):>9} "
                     f"{g('tpot_p99_s'):>9} {g('e2e_p50_s'):>9} {g('e2e_p99_s'):>9} "
                     f"{g('throughput_output_tok_per_s'):>9} {g('goodput_req_per_s'):>8} {g('slo_attainment'):>7} "
                     f"{g('preemptions_total'):>8} {g('energy_per_output_tok_j'):>7} {g('cost_per_mtok_usd'):>7} "
                     f"{g('power_limit_exceeded_s'):>7}")
    if any(p.get("stable") is False for v in rep["variants"].values() for p in v["points"]):
        L.append("! no steady state (arrivals outpace departures or the queue grows): a finite run's transient, "
                 "not what the system would sustain")
    return "\n".join(L)


def _ci(lo: float | None, hi: float | None) -> str:
    return "[no CI: 1 replication]" if lo is None else f"[{_g(lo)}, {_g(hi)}]"


def _g(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"

