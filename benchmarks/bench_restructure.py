"""Side by side: this checkout against another revision (default: the one before issue 29's
restructuring), on the same machine in one run, alternating, so that the machine's drift hits
both alike. Not a test: run it by hand and record the figures (with the machine).

    python benchmarks/bench_restructure.py [--base 3dfaff6] [--head REV] [--rounds 5]
                                           [--requests 1000000] [--skip-compile]

(--head: a committed revision instead of the working tree, e.g. HEAD, so that editing the tree
while it runs changes nothing.)

Measures, for each side:
- quickstart at N requests (`dcsim run scenarios/quickstart.toml --set workload.num_requests=N
  --json`), the whole process: CPU seconds (user + system, from the OS) and wall seconds, each
  round; the engine's cache warm;
- the engine's compile time: the warm-up that compiles every entry point, into an empty cache
  (NUMBA_CACHE_DIR), CPU and wall seconds;
- the first run after install: `dcsim run scenarios/quickstart.toml --out DIR` on an empty cache
  (a small run interprets the kernel while a background process compiles it), wall seconds of
  the command itself; the background build is waited for before the next measurement.
Prints one JSON object: every figure, the medians, head / base ratios, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARMUP = {  # how each side compiles every entry point (the module moved in issue 29)
    "head": "from sim.engine.warmup import build_compiled; build_compiled()",
    "base": "from sim.engine.simulation import build_compiled; build_compiled()",
}


def measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(0, wall seconds, stdout) of one command."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{p.stderr[-2000:]}")
    return 0.0, wall, p.stdout


def cpu_of(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """measure(), with CPU seconds (user + system) from the children's resource usage before and
    after; the last call's user and system seconds in LAST."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    _, wall, out = measure(cmd, cwd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST[:] = [after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime]
    return LAST[0] + LAST[1], wall, out


LAST = [0.0, 0.0]


def wait_background(cache: Path, limit_s: float = 900.0) -> None:
    """Wait for a background build (its lock file in the cache folder) to finish."""
    t0 = time.time()
    while time.time() - t0 < limit_s:
        if not list(cache.rglob("dcsim-build.lock")):
            return
        time.sleep(1.0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="3dfaff6")
    ap.add_argument("--head", default=None, help="a revision (default: the working tree)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--skip-compile", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dcsim-bench-"))
    base = tmp / "base"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base), args.base], cwd=REPO, check=True)
    head = REPO
    if args.head is not None:
        head = tmp / "head"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(head), args.head], cwd=REPO, check=True)
    sides = {"base": base, "head": head}
    py = sys.executable
    out: dict = {"benchmark": "issue 29 side by side", "base": args.base,
                 "head": subprocess.run(["git", "rev-parse", "--short", args.head or "HEAD"], cwd=REPO,
                                        capture_output=True, text=True).stdout.strip()
                 + ("" if args.head else " + working tree"),
                 "requests": args.requests, "rounds": args.rounds}
    try:
        for side, root in sides.items():  # each side's engine compiled into its own cache first
            env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(tmp / f"cache-{side}"))
            measure([py, "-c", WARMUP[side]], root, env)
        if not args.skip_compile:
            comp: dict[str, list] = {"base": [], "head": []}
            for side, root in sides.items():
                env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(tmp / f"cold-{side}"))
                cpu, wall, _ = cpu_of([py, "-c", WARMUP[side]], root, env)
                comp[side] = [round(cpu, 2), round(wall, 2)]
            out["compile_cpu_wall_s"] = comp
            out["compile_cpu_ratio"] = round(comp["head"][0] / comp["base"][0], 3)
            first: dict[str, float] = {}
            for side, root in sides.items():
                cache = tmp / f"first-{side}"
                env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache))
                env.pop("DCSIM_KERNEL", None)
                _, wall, _ = measure([py, "-m", "sim", "run", "scenarios/quickstart.toml", "--out",
                                      str(tmp / f"run-{side}")], root, env)
                first[side] = round(wall, 2)
                time.sleep(2.0)
                wait_background(cache)
                wait_background(root / "sim")
            out["first_run_wall_s"] = first
        rows: dict[str, list] = {"base": [], "head": []}
        cmd = ["-m", "sim", "run", "scenarios/quickstart.toml", "--set", f"workload.num_requests={args.requests}",
               "--json"]
        for _ in range(args.rounds):
            for side, root in sides.items():
                env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(tmp / f"cache-{side}"))
                cpu, wall, text = cpu_of([py] + cmd, root, env)
                s = json.loads(text)
                rows[side].append([round(cpu, 3), round(LAST[0], 3), round(LAST[1], 3), round(wall, 3),
                                   s["requests_completed"]])
        out["quickstart_cpu_user_sys_wall_completed"] = rows
        med = {side: statistics.median(r[0] for r in rows[side]) for side in rows}
        out["quickstart_cpu_median_s"] = med
        out["quickstart_cpu_ratio"] = round(med["head"] / med["base"], 4)
        user = {side: statistics.median(r[1] for r in rows[side]) for side in rows}
        out["quickstart_user_median_s"] = user
        out["quickstart_user_ratio"] = round(user["head"] / user["base"], 4)
        out["quickstart_cpu_min_s"] = {side: min(r[0] for r in rows[side]) for side in rows}
        out["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count(), "python": platform.python_version()}
    finally:
        for side in ("base", "head"):
            if sides[side] != REPO:
                subprocess.run(["git", "worktree", "remove", "--force", str(sides[side])], cwd=REPO, check=False)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
