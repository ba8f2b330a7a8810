"""Executors: a real Dask LocalCluster (loopback), a worker killed mid-sweep, --resume, failing runs."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import sim.studies.study as study
from sim.studies.study import sweep

REPO = Path(__file__).resolve().parents[1]
QUICK = str(REPO / "scenarios" / "quickstart.toml")
SETS = ["workload.num_requests=1200"]
RANGE = "workload.rate_per_s=20:120:20"

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def local_result():
    return sweep(QUICK, RANGE, sets=SETS, workers=2, quiet=True)


@pytest.mark.slow  # (a whole-run integration test: the full suite runs it)
def test_dask_localcluster_matches_local(local_result):
    r = sweep(QUICK, RANGE, sets=SETS, workers=2, quiet=True, executor="dask")
    assert json.dumps(r, sort_keys=True) == json.dumps(local_result, sort_keys=True)


@pytest.mark.slow
def test_killed_worker_does_not_lose_the_sweep():
    """Runs of about a second each on 2 workers (six of them); one worker is killed 1 s in, while it
    runs a task."""
    from distributed import Client, LocalCluster

    long_sets = ["workload.num_requests=30000", 'run.engine="simpy"']  # the slower engine: runs last seconds
    t0 = time.time()
    expected = sweep(QUICK, RANGE, sets=long_sets, workers=2, quiet=True)
    assert time.time() - t0 > 3.0  # long enough for the kill to land mid-sweep
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed = []

        def killer():
            time.sleep(1.0)  # mid-sweep: the first runs are in flight
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

        th = threading.Thread(target=killer)
        th.start()
        r = sweep(QUICK, RANGE, sets=long_sets, workers=2, quiet=True, executor=cluster.scheduler_address)
        th.join()
    assert killed
    assert json.dumps(r, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_resume_reuses_saved_runs(tmp_path, local_result, monkeypatch):
    cache = tmp_path / "runs"
    first = sweep(QUICK, RANGE, sets=SETS, workers=1, quiet=True, cache_dir=cache)
    saved = sorted(cache.glob("*.json"))
    assert len(saved) == 6
    for f in saved[:4]:
        f.unlink()  # as if the sweep had been interrupted after two runs
    calls = []
    real = study.run_task
    monkeypatch.setattr(study, "run_task", lambda t: calls.append(1) or real(t))
    again = sweep(QUICK, RANGE, sets=SETS, workers=1, quiet=True, cache_dir=cache)
    assert len(calls) == 4
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True) == \
        json.dumps(local_result, sort_keys=True)


def test_a_failing_configuration_is_reported_and_the_rest_completes():
    r = sweep(QUICK, "pools.tp=1:3:1", sets=['pools.model="llama-3.1-70b"', "workload.num_requests=100"],
              workers=1, quiet=True)
    assert [f["config"] for f in r["failed_runs"]] == ["pools.tp=1", "pools.tp=3"]
    assert "do not fit" in r["failed_runs"][0]["error"]
    assert "does not divide" in r["failed_runs"][1]["error"]  # TP3 splits no Llama's 64 heads
    pts = r["variants"]["base"]["points"]
    assert pts[0].get("failed") and pts[2].get("failed") and "ttft_p99_s" in pts[1]["metrics"]


def test_a_run_that_raises_is_reported(monkeypatch):
    real = study.run_task

    def flaky(t):
        if t.raw["workload"]["rate_per_s"] == 40:
            raise RuntimeError("boom")
        return real(t)

    monkeypatch.setattr(study, "run_task", flaky)
    r = sweep(QUICK, "workload.rate_per_s=20:60:20", sets=["workload.num_requests=200"], workers=1, quiet=True)
    assert r["failed_runs"] == [{"variant": "base", "config": "workload.rate_per_s=40", "error": "RuntimeError: boom"}]
    assert [p.get("failed", False) for p in r["variants"]["base"]["points"]] == [False, True, False]


def test_a_worker_running_other_code_refuses_the_task_in_one_line(monkeypatch):
    """Each task carries the driver's code digest (every file under sim/): a worker whose own
    differs (another commit installed there) returns an error naming both and the fix instead of
    a result from other code; the same digest runs; the digest follows a change of any source."""
    from sim.scenario.config import read_toml

    raw = read_toml(Path(QUICK))
    raw["workload"]["num_requests"] = 50
    mine = study.code_digest()
    r = study._safe_run(study.Task(raw, str(REPO / "scenarios"), 1, code="0" * 16))
    assert r["error"].startswith("this worker (") and f"runs dcsim code {mine}, the driver {'0' * 16}" in r["error"]
    assert "install the driver's commit on every worker" in r["error"]
    ok = study._safe_run(study.Task(raw, str(REPO / "scenarios"), 1, code=mine))
    assert "error" not in ok and ok["summary"]["requests_completed"] == 50
    study.code_digest.cache_clear()  # a source changed on disk: another digest
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: real(p) + (b"#" if p.name == "study.py" else b""))
    try:
        assert study.code_digest() != mine
    finally:
        monkeypatch.undo()
        study.code_digest.cache_clear()
    assert study.code_digest() == mine


@pytest.mark.slow
def test_files_a_scenario_names_travel_with_its_tasks(tmp_path, monkeypatch):
    """A trace and a plug-in router named by a scenario go to Dask workers by content (written
    under the worker's DCSIM_FILES and checked against their SHA-256), so the results are the
    local executor's, byte for byte; a task still runs once the driver's folder is gone, and a
    damaged file is refused in one line."""
    import shutil

    from sim.studies.portable import MARK, bundle, localize

    src = tmp_path / "driver"
    src.mkdir()
    (src / "trace.csv").write_text("arrival_s,prompt_tokens,output_tokens\n"
                                   + "".join(f"{0.05 * i:.2f},{200 + 7 * i},{20 + i % 9}\n" for i in range(120)))
    shutil.copy(REPO / "examples" / "bandwidth_router.py", src / "router.py")
    (src / "s.toml").write_text('name = "t"\nseed = 1\n[workload]\narrival = "trace"\ntrace = "trace.csv"\n'
                                '[[pools]]\nhardware = "h100-sxm"\nmodel = "llama-3.1-8b"\nreplicas = 2\n'
                                '[router]\npolicy = "router.py:BandwidthWeighted"\n')
    monkeypatch.setenv("DCSIM_FILES", str(tmp_path / "worker-files"))
    rng = "pools.replicas=1:3:1"
    local = sweep(str(src / "s.toml"), rng, workers=1, quiet=True)
    dask = sweep(str(src / "s.toml"), rng, workers=2, quiet=True, executor="dask")
    assert not local.get("failed_runs") and json.dumps(dask, sort_keys=True) == json.dumps(local, sort_keys=True)
    assert len(list((tmp_path / "worker-files").rglob("*.py"))) == 1  # written once, by content

    files: dict[str, bytes] = {}
    raw = study.read_toml(src / "s.toml")
    moved = bundle(raw, src, files)
    assert moved["workload"]["trace"].startswith(MARK) and moved["router"]["policy"].endswith(":BandwidthWeighted")
    assert len(files) == 2
    shutil.rmtree(src)  # the driver's folder gone: the task carries what it needs
    r = study._safe_run(study.Task(moved, str(src), 1), files)
    assert "error" not in r and r["summary"]["requests_completed"] == 120
    sha = next(iter(files))
    bad = study._safe_run(study.Task(moved, str(src), 1), dict(files, **{sha: files[sha] + b"x"}))
    assert "arrived damaged" in bad["error"]
    with pytest.raises(ValueError, match="does not carry"):
        localize(moved, {})


@pytest.mark.slow
def test_a_task_that_kills_every_worker_is_one_line(tmp_path, capsys):
    """A run whose worker dies at every try (here a plug-in that kills its own process: what the
    kernel's out-of-memory killer does) ends the study with one line naming the run and the fix,
    not distributed's KilledWorker traceback."""
    from sim.cli import main

    (tmp_path / "killer.py").write_text("import os, signal\n\n\nclass Killer:\n"
                                        "    def choose(self, request, replicas):\n"
                                        "        os.kill(os.getpid(), signal.SIGKILL)\n")
    (tmp_path / "s.toml").write_text('name = "k"\nseed = 1\n[workload]\narrival = "poisson"\nrate_per_s = 5.0\n'
                                     'num_requests = 20\nprompt_tokens = 100\noutput_tokens = 10\n[[pools]]\n'
                                     'hardware = "h100-sxm"\nmodel = "llama-3.1-8b"\nreplicas = 2\n[router]\n'
                                     'policy = "killer.py:Killer"\n')
    rc = main(["sweep", str(tmp_path / "s.toml"), "--range", "workload.rate_per_s=5:10:5", "--executor", "dask",
               "--workers", "1", "--quiet"])
    assert rc == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "Dask workers died running run" in err[0] and "--memory-limit" in err[0], err
