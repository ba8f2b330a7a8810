"""Is cost linear? (issue 34) Whole-process CPU seconds of `dcsim run`, one core, side by side in
one invocation: requests, replicas under each router at fixed load per replica, features against
the plain quickstart, a small run's start-up and what --out adds. Prints one JSON object with the
machine it ran on and the fitted exponents: the log-log slope between the two sizes of the CPU
net of start-up (a 200-request run's CPU: interpreter, imports, the cached engine's load), so
that a fixed cost does not pass for sub-linear growth.

Usage:
  python benchmarks/bench_linear.py [--quick] [--out benchmarks/results/linear.json]
--quick uses smaller sizes (a few minutes on 2 cores); the default takes longer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MACHINE = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "processor": platform.processor() or platform.machine()}


def cpu_of(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of one `dcsim` process pinned to one core (taskset where found),
    from that process's own rusage (os.wait4: the children's maximum would carry an earlier,
    larger run's peak)."""
    pin = ["taskset", "-c", "0"] if Path("/usr/bin/taskset").exists() else []
    p = subprocess.Popen(pin + [sys.executable, "-m", "sim", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=dict(os.environ, **(env or {})))
    err = p.stderr.read() if p.stderr is not None else ""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"dcsim {' '.join(args)} failed: {err.strip()[-300:]}")
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


BASE_CPU_S = 0.0  # start-up, measured first (main)


def slope(xs: list[float], ys: list[float]) -> float:
    """log-log slope of CPU net of start-up between the last two sizes."""
    a, b = max(ys[-2] - BASE_CPU_S, 1e-3), max(ys[-1] - BASE_CPU_S, 1e-3)
    return math.log(b / a) / math.log(xs[-1] / xs[-2])


def scenario(text: str) -> Path:
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False, dir=tempfile.gettempdir())
    f.write(text)
    f.close()
    return Path(f.name)


def requests(sizes: list[int]) -> dict:
    cpu = [cpu_of(["run", "scenarios/quickstart.toml", "--quiet", "--set", f"workload.num_requests={n}"])[0]
           for n in sizes]
    return {"sizes": sizes, "cpu_s": cpu, "us_per_request": [1e6 * c / n for c, n in zip(cpu, sizes, strict=True)],
            "exponent": slope(sizes, cpu)}


def replicas(sizes: list[int], router: str, facility: bool = False, repeat: int = 3) -> dict:
    """8B replicas at 6 req/s each for 20 s (load per replica fixed), timeseries off."""
    out = {"router": router, "facility": facility, "sizes": sizes, "cpu_s": []}
    for r in sizes:
        text = (f'name = "scale"\nseed = 1\n[workload]\narrival = "poisson"\nrate_per_s = {6.0 * r}\n'
                'duration_s = 20\nprompt_tokens = 512\noutput_tokens = 64\n[[pools]]\nhardware = "h100-sxm"\n'
                f'model = "llama-3.1-8b"\nreplicas = {r}\n' + ('tent = "t"\n' if facility else "")
                + f'[router]\npolicy = "{router}"\n[run]\ntimeseries = false\n')
        if facility:
            text += (f'[facility]\n[[facility.sources]]\nname = "grid"\nkind = "grid"\nmw = {r * 0.002}\n'
                     f'[[facility.tents]]\nname = "t"\nit_limit_mw = {r * 0.002}\n')
        path = str(scenario(text))
        # a small run's CPU net of start-up is a few tenths of a second: the median of `repeat`
        # runs, so that one noisy run does not set the exponent
        runs = [cpu_of(["run", path, "--quiet"])[0] for _ in range(repeat if r * 120 < 10**6 else 1)]
        out["cpu_s"].append(statistics.median(runs))
    out["us_per_request"] = [1e6 * c / (6.0 * r * 20) for c, r in zip(out["cpu_s"], sizes, strict=True)]
    out["exponent"] = slope(sizes, out["cpu_s"])
    return out


def sessions(n_sessions: int) -> dict:
    """Multi-turn sessions with prefix caching (5 turns, session affinity, 64 replicas): CPU and
    peak memory per request (the prefix index is sparse: O(blocks cached))."""
    rate = 400.0
    text = (f'name = "sessions"\nseed = 1\n[workload]\narrival = "poisson"\nrate_per_s = {rate}\n'
            f'duration_s = {n_sessions / rate}\nprompt_tokens = 200\noutput_tokens = 100\n'
            '[workload.multi_turn]\nturns = 5\nthink_time_s = 5.0\n[[pools]]\nhardware = "h100-sxm"\n'
            'model = "llama-3.1-8b"\nreplicas = 64\n[pools.scheduler]\nprefix_caching = true\n'
            '[router]\npolicy = "session_affinity"\n[run]\ntimeseries = false\n')
    path = scenario(text)
    cpu, rss_mib = cpu_of(["run", str(path), "--quiet"])
    from sim.api import load
    from sim.engine.build import build
    n = len(build(load(path)).workload)  # the requests the run had (every session's turns)
    return {"sessions": n_sessions, "requests": n, "cpu_s": cpu, "us_per_request": 1e6 * cpu / n,
            "peak_rss_mib": rss_mib, "bytes_per_request": rss_mib * 2**20 / n}


def features(n: int, repeat: int) -> dict:
    """Each feature's run against the plain quickstart at n requests (the same load): the median
    of `repeat` runs each, interleaved (plain, each feature, plain, ...), so that a noisy
    neighbour or a clock change hits every case alike."""
    q = ["run", "scenarios/quickstart.toml", "--quiet", "--set", f"workload.num_requests={n}", "--set",
         "run.timeseries=false"]
    cases = {
        "autoscaling": ["--set", "pools.autoscaler.max_replicas=8"],
        "speculative": ["--set", 'pools.speculative={method = "eagle", num_tokens = 3, acceptance_rate = 0.7}'],
        "pd": ["--set", 'pools=[{name = "p", hardware = "h100-sxm", model = "llama-3.1-8b", replicas = 2, '
               'role = "prefill"}, {name = "d", hardware = "h100-sxm", model = "llama-3.1-8b", replicas = 2, '
               'role = "decode"}]', "--set", 'router.decode_policy="least_kv"'],
    }
    runs: dict[str, list[float]] = {k: [] for k in ["plain", *cases]}
    for _ in range(repeat):
        runs["plain"].append(cpu_of(q)[0])
        for k, extra in cases.items():
            runs[k].append(cpu_of(q + extra)[0])
    plain = statistics.median(runs["plain"])
    out: dict = {"requests": n, "repeat": repeat, "plain_cpu_s": plain, "plain_runs_cpu_s": runs["plain"]}
    for k in cases:
        c = statistics.median(runs[k])
        out[k] = {"cpu_s": c, "ratio": c / plain, "runs_cpu_s": runs[k]}
    return out


def startup_and_output(n_small: int, n_big: int) -> dict:
    small = cpu_of(["run", "scenarios/quickstart.toml", "--quiet", "--set", f"workload.num_requests={n_small}"])[0]
    q = ["run", "scenarios/quickstart.toml", "--quiet", "--set", f"workload.num_requests={n_big}"]
    without = cpu_of(q)[0]
    d = tempfile.mkdtemp()
    with_out = cpu_of(q + ["--out", str(Path(d) / "o"), "--no-plots", "--no-report"])[0]
    return {"small_run_requests": n_small, "small_run_cpu_s": small, "big_requests": n_big,
            "without_out_cpu_s": without, "with_out_cpu_s": with_out, "out_ratio": with_out / without}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--replicas", help="two replica counts, e.g. 1000,100000 (default 1000,10000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case in the features part (median)")
    ap.add_argument("--only", help="comma-separated parts to run (requests, replicas, sessions, features, "
                                   "startup); default all")
    a = ap.parse_args()
    parts = set(a.only.split(",")) if a.only else {"requests", "replicas", "sessions", "features", "startup"}
    global BASE_CPU_S
    # dcsim's bytecode compiled first, as an installed package has it (a machine that sets
    # PYTHONDONTWRITEBYTECODE would otherwise compile its ~60 modules in every process: ~0.13 s)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "sim"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    cpu_of(["run", "scenarios/quickstart.toml", "--quiet", "--set", "workload.num_requests=200"],
           env={"DCSIM_KERNEL": "compiled"})  # (the engine compiled and cached first)
    BASE_CPU_S = statistics.median(cpu_of(["run", "scenarios/quickstart.toml", "--quiet", "--set",
                                            "workload.num_requests=200"])[0] for _ in range(max(a.repeat, 1)))
    t = time.time()
    big = 10**5 if a.quick else 10**6
    reps = [100, 1000] if a.quick else [1000, 10000]
    if a.replicas:
        reps = [int(x) for x in a.replicas.split(",")]
    res: dict = {"machine": MACHINE, "date": time.strftime("%Y-%m-%d"), "one_core": True,
                 "startup_cpu_s": BASE_CPU_S}
    if "requests" in parts:
        res["requests"] = requests([big // 10, big])
    if "replicas" in parts:
        res["replicas"] = [replicas(reps, "round_robin", repeat=a.repeat),
                           replicas(reps, "least_loaded", repeat=a.repeat),
                           replicas(reps, "least_loaded", facility=True, repeat=a.repeat)]
    if "sessions" in parts:
        res["sessions"] = sessions(20_000 if a.quick else 200_000)
    if "features" in parts:
        res["features"] = features(big, a.repeat)
    if "startup" in parts:
        res["startup_and_output"] = startup_and_output(10**4, big)
    res["wall_s"] = time.time() - t
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
