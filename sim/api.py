"""Python API for scripts and notebooks.

    import sim.api as dc
    sc = dc.load("scenarios/quickstart.toml", set=["workload.rate_per_s=20"])
    res = dc.run(sc)
    dc.summary(res)["ttft_p99_s"]
    df = dc.requests_df(res)                       # one row per request (pandas)
    cmp = dc.compare("scenarios/quickstart.toml", vary=["pools.scheduler.policy=continuous,chunked"])
    dc.compare_df(cmp)                             # one row per variant and metric
    sw = dc.sweep("scenarios/quickstart.toml", range_="workload.rate_per_s=50:250:50")
    dc.sweep_df(sw)                                # one row per variant, load and metric
    dc.plot(res, "runs/mine")                      # or dc.plot("runs/mine") for a saved folder
    pl = dc.plan("scenarios/quickstart.toml", target_rate=40, slo={"ttft_s": 0.5})
    pl["plan"]                                     # the cheapest configuration meeting the SLO
    dc.perf("h200", "llama-3.1-70b", tp=8, batch=64, context=2048)["decode_step_s"]
    fl = dc.fleet("scenarios/fleet_30t.toml", set=["workload.duration_s=60"])
    fl["fleet_output_tokens_per_day"]              # a fleet's figures (its cells inferred)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from sim.scenario import config
from sim.scenario.config import Scenario
from sim.analysis.metrics import request_columns, summarize
from sim.engine.simulation import Result, Simulation


def load(path: str | Path, set: Sequence[str] = (), seed: int | None = None) -> Scenario:  # noqa: A002
    """Read a scenario file, apply `key.path=value` overrides, validate. A fleet (a [fleet]
    table) is not one simulation: run it with fleet()."""
    if "fleet" in config.read_toml(Path(path)):
        from sim.errors import ScenarioError

        raise ScenarioError("fleet", f"{path} is a fleet of cells, not one simulation",
                            "run it with sim.api.fleet(path), or compare/sweep/plan it")
    return config.load(path, list(set), seed)


def from_dict(raw: dict[str, Any], base_dir: str | Path = ".") -> Scenario:
    """Validate a scenario given as a dict (the TOML structure)."""
    return config.parse(raw, Path(base_dir))


def override(sc: Scenario, set: Sequence[str]) -> Scenario:  # noqa: A002
    """A copy of `sc` with `key.path=value` overrides applied."""
    return config.parse(config.apply_overrides(dict(sc.raw), list(set)), sc.base_dir)


def run(sc: Scenario, quiet: bool = False, bar: bool = False) -> Result:
    """Simulate a scenario. Unless quiet, what it waits for (compiling the engine, a plug-in on
    the per-step driver) is said on stderr, with a progress bar there too when `bar` (and stderr
    is a terminal)."""
    from sim.engine.simulation import plugin_notice
    from sim.progress import ConsoleReporter, Reporter

    report = Reporter() if quiet else ConsoleReporter("run", bar=bar)
    note = plugin_notice(sc)
    if note and not quiet:
        print(note, file=sys.stderr)
    res = Simulation(sc, report=report).run()
    report.close()
    return res


def summary(res: Result) -> dict[str, Any]:
    return summarize(res)


def requests_df(res: Result):
    """The per-request table as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(request_columns(res))


def timeseries_df(res: Result):
    import pandas as pd

    return pd.DataFrame(res.timeseries.columns())


def compare(scenario: str | Path, vary: Sequence[str] = (), replications: int = 3, baseline: str | None = None,
            set: Sequence[str] = (), workers: int | None = None,  # noqa: A002
            variant: Sequence[str] = ()) -> dict[str, Any]:
    from sim.studies.study import compare as _compare  # (on use: a run need not import the studies)

    return _compare(scenario, vary, replications, baseline, workers, set, quiet=True, named=variant)


def compare_df(rep: dict[str, Any]):
    import pandas as pd

    rows = []
    for lab, v in rep["variants"].items():
        for m, d in v["metrics"].items():
            rows.append({"variant": lab, "metric": m, **{k: d.get(k) for k in (
                "mean", "ci_low", "ci_high", "diff_mean", "diff_ci_low", "diff_ci_high", "significant")}})
    return pd.DataFrame(rows)


def sweep(scenario: str | Path, range_: str, vary: Sequence[str] = (), replications: int = 1,
          set: Sequence[str] = (), workers: int | None = None, attainment: float = 0.9,  # noqa: A002
          variant: Sequence[str] = ()) -> dict[str, Any]:
    from sim.studies.study import sweep as _sweep

    return _sweep(scenario, range_, vary, replications, workers, set, quiet=True, attainment=attainment,
                  named=variant)


def sweep_df(rep: dict[str, Any]):
    import pandas as pd

    rows = []
    for lab, v in rep["variants"].items():
        for p in v["points"]:
            for m, d in p["metrics"].items():
                rows.append({"variant": lab, rep["key"]: p["value"], "metric": m, **d})
    return pd.DataFrame(rows)


def plot(obj: Result | dict[str, Any] | str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw the standard plots: of a Result, a compare/sweep report (written to out_dir), or a
    saved run/compare/sweep folder."""
    from sim.analysis.metrics import summarize as _s
    from sim.analysis.output import write_run
    from sim.analysis.plots import plot_dir

    if isinstance(obj, (str, Path)):
        return plot_dir(obj)
    if out_dir is None:
        raise ValueError("out_dir is needed to plot a result or a report")
    out = Path(out_dir)
    if isinstance(obj, Result):
        write_run(obj, _s(obj), out)
    else:
        from sim.studies.study import save

        save(obj, out / ("sweep.json" if "key" in obj else "compare.json"))
    return plot_dir(out)


def report(obj: Result | dict[str, Any] | str | Path, out_dir: str | Path | None = None) -> Path:
    """Write report.html (self-contained, opens offline): of a saved run/compare/sweep/plan/fleet
    folder, or of a Result or a compare/sweep report written to out_dir first (with its plots)."""
    from sim.analysis.report import write_report

    if isinstance(obj, (str, Path)):
        return write_report(obj)
    if out_dir is None:
        raise ValueError("out_dir is needed to report a result or a report")
    plot(obj, out_dir)
    return write_report(out_dir)


def fleet(scenario: str | Path, set: Sequence[str] = (), workers: int | None = None,  # noqa: A002
          executor: str = "local", out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run a fleet scenario (its simulated cells on the executor) and return the fleet's figures
    (`dcsim run FLEET --json`'s keys); with out_dir, the merged requests.parquet there too."""
    from sim.studies.fleet import run_fleet

    return run_fleet(scenario, list(set), workers=workers, quiet=True, executor=executor, out_dir=out_dir)


def plan(scenario: str | Path, target_rate: float, slo: dict[str, float] | None = None,
         hardware: Sequence[str] = (), tp: Sequence[int] = (), schedulers: Sequence[str] = (),
         set: Sequence[str] = (), **options: Any) -> dict[str, Any]:  # noqa: A002
    """`dcsim plan`: the cheapest configuration meeting the SLO at target_rate (plan.json's keys).
    hardware/tp/schedulers as the flags take them ("POOL:VALUE" entries for a scenario of several
    pools); options: attainment, max_replicas, headroom, replications."""
    from sim.studies.plan import plan as _plan

    return _plan(scenario, target_rate, slo, list(hardware), list(tp), list(schedulers), sets=list(set), **options)


def perf(hardware: str, model: str, **query: Any) -> dict[str, Any]:
    """`dcsim perf`: one decode step (and a prefill with prompt=) of `model` on `hardware`; query:
    tp, batch, context, prompt, dtype, kv_dtype, kv_memory_fraction, engine, block_size, catalog,
    clock_lock, power_cap_w. Raises ScenarioError (one line) for a step that could not run."""
    from sim.perf.point import PerfQuery, perf_point

    return perf_point(PerfQuery(hardware=hardware, model=model, **query))
