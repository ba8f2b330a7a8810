"""Command line: `dcsim run | perf | catalog`. Bad input exits 2 with one line naming the field."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from sim.errors import ScenarioError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit 2 with one line, as for scenario errors
        self.exit(2, f"dcsim: error: {message} (see {self.prog} --help)\n")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    return str(v)


def print_table(summary: dict[str, Any], title: str, scenario: Any = None) -> None:
    """The run table; with a [facility] or [cost] in `scenario`, energy, cost and power too."""
    rows = [
        ("requests", f"{summary['requests_total']} total: {summary['requests_completed']} completed, "
                     f"{summary['requests_rejected']} rejected, {summary['requests_failed']} failed, "
                     f"{summary['requests_in_flight']} in flight"),
    ]
    lat = [("TTFT (s)", "ttft"), ("TPOT (s)", "tpot"), ("E2E (s)", "e2e")]
    print(title)
    for k, v in rows:
        print(f"  {k:<22} {v}")
    print(f"  {'':<22} {'mean':>10} {'p50':>10} {'p90':>10} {'p99':>10}")
    for label, key in lat:
        vals = [summary.get(f"{key}_{s}_s") for s in ("mean", "p50", "p90", "p99")]
        print(f"  {label:<22} " + " ".join(f"{_fmt(v):>10}" for v in vals))
    pi = summary.get("prediction_interval") or {}
    if pi.get("ttft_mean_s"):
        b = summary.get("prediction_interval_basis", {})
        rng = lambda k: f"{_fmt(pi[k][0])}-{_fmt(pi[k][1])}" if pi.get(k) else "-"  # noqa: E731
        print(f"  {'90% interval':<22} TTFT mean {rng('ttft_mean_s')}, p99 {rng('ttft_p99_s')}; TPOT mean "
              f"{rng('tpot_mean_s')}; E2E mean {rng('e2e_mean_s')}, p99 {rng('e2e_p99_s')} s "
              f"({b.get('hardware_status', '')} constants)")
    for label, key in [("queue mean (s)", "queue_mean_s"), ("throughput (tok/s)", "throughput_output_tok_per_s"),
                       ("throughput (req/s)", "throughput_req_per_s"), ("KV used (mean)", "kv_used_mean"),
                       ("batch fill (mean)", "batch_fill_mean"), ("queue share of E2E", "queue_share_of_latency"),
                       ("busy (share of time)", "utilization_mean"), ("drain after (s)", "drain_s"),
                       ("preemptions", "preemptions_total"), ("simulated time (s)", "sim_time_s"),
                       ("wall time (s)", "wall_time_s")]:
        print(f"  {label:<22} {_fmt(summary.get(key))}")
    if summary.get("slo_attainment") is not None:
        print(f"  {'SLO attainment':<22} {summary['slo_attainment']:.1%} (TTFT <= {_fmt(summary.get('slo_ttft_s'))} s, "
              f"TPOT <= {_fmt(summary.get('slo_tpot_s'))} s)")
        print(f"  {'goodput (req/s)':<22} {_fmt(summary.get('goodput_req_per_s'))}")
        if summary.get("slo_attainment_pessimistic") is not None:
            print(f"  {'SLO attainment, worst':<22} {summary['slo_attainment_pessimistic']:.1%} (latencies at the "
                  "intervals' upper end)")
    money = scenario is not None and (scenario.facility is not None or scenario.cost is not None)
    if money and summary.get("energy_j") is not None:
        print(f"  {'energy (kWh)':<22} {_fmt(summary['energy_j'] / 3.6e6)}  "
              f"({_fmt(summary.get('energy_per_output_tok_j'))} J per output token)")
        print(
            f"  {'cost ($/Mtoken)':<22} {_fmt(summary.get('cost_per_mtok_usd'))}  "
            f"(${_fmt(summary.get('cost_usd'))} in all)"
        )
    if summary.get("autoscaler"):
        for pool, a in summary["autoscaler"].items():
            print(f"  {'replica-hours':<22} {_fmt(summary['replica_hours'][pool])} in pool {pool} "
                  f"({a['cold_starts']} cold starts, {a['drains']} drains)")
    if scenario is not None and scenario.facility is not None and scenario.facility.sources:
        print(f"  {'over the supply (s)':<22} {_fmt(summary.get('power_limit_exceeded_s'))}  "
              f"(peak {_fmt(summary.get('facility_power_peak_w', 0) / 1e6)} MW)")
    if summary.get("stable") is not None:
        print(f"  {'steady state':<22} " + ("yes" if summary["stable"] else f"NO: {summary['instability']}"))
    if "engine" in summary:
        print(f"  {'engine':<22} {summary['engine']}")
    for st in summary.get("stages", []):
        print(f"  stage {st['stage']} ({st['start_s']:g}-{st['end_s']:g} s, {st['offered_rate_per_s']:.3g} req/s): "
              f"{st['completed']}/{st['requests']} completed, TTFT mean {_fmt(st['ttft_mean_s'])} s, "
              f"TPOT mean {_fmt(st['tpot_mean_s'])} s, E2E mean {_fmt(st['e2e_mean_s'])} s")
    hours = summary.get("hourly") or []
    if hours and summary.get("autoscaler"):
        print(f"  {'hour':>6} {'requests':>9} {'SLO met':>8} {'TTFT p90':>9} {'replicas':>9} {'$/Mtok':>8}")
        for h in hours:
            slo = "-" if h["slo_attainment"] is None else f"{h['slo_attainment']:.1%}"
            print(f"  {h['hour']:>6} {h['requests']:>9} {slo:>8} {_fmt(h['ttft_p90_s']):>9} "
                  f"{h['replicas_mean']:>9.2f} {_fmt(h['accelerator_usd_per_mtok']):>8}")
    if summary.get("reasons"):
        print(f"  {'reasons':<22} " + ", ".join(f"{k}: {v}" for k, v in summary["reasons"].items()))


def _calibration_notes(hardware: list[Any]) -> None:
    """One line on stderr per part whose numbers rest on borrowed or assumed constants."""
    for hid in dict.fromkeys(h.id for h in hardware):
        h = next(h for h in hardware if h.id == hid)
        note = h.calibration_note()
        if note:
            print(f"dcsim: note: {note}", file=sys.stderr)
        elif h.calibration.startswith("dcsim calibrate"):  # a user's profile: say what it rests on
            print(f"dcsim: note: {hid}: constants measured ({h.calibration})", file=sys.stderr)


def status_notes(status: dict[str, str]) -> None:
    """The calibration notes of a study's parts, from its results' calibration_status."""
    from sim.analysis.report_html import calibration_warnings

    for line in calibration_warnings(status):
        print(f"dcsim: note: {line}", file=sys.stderr)


WARNED: list[str] = []  # this command's dcsim warnings, saved with its results (warnings.json) for the report


def _report(out: str | Path, no_report: bool = False) -> Path | None:
    """warnings.json and report.html in a results folder."""
    d = Path(out)
    (d / "warnings.json").write_text(json.dumps(list(dict.fromkeys(WARNED)), indent=1) + "\n")
    if no_report:
        return None
    from sim.analysis.report import write_report

    return write_report(d)


def cmd_run(args: argparse.Namespace) -> int:
    from sim.scenario import config
    from sim.analysis.metrics import summarize

    raw = config.read_toml(Path(args.scenario))
    if "fleet" in raw:
        from sim.studies.fleet import run_fleet, table_fleet
        sets = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
        if args.workers is not None and args.workers < 1:
            raise ScenarioError("--workers", f"must be >= 1, got {args.workers}")
        if args.resume:
            from sim.studies.cells import fleet_config

            if fleet_config(config.apply_overrides(raw, sets)).power_bus == "shared":
                raise ScenarioError("--resume", "a coupled site (power_bus = \"shared\") does not resume from a "
                                    "checkpoint yet (a lost worker is replayed within the run)",
                                    "run it again without --resume")
        with _out(args, "run", in_place=True) as out:  # (its cells' results kept under OUT/runs: --resume)
            rep = run_fleet(args.scenario, sets, workers=args.workers, quiet=args.quiet or args.json,
                            executor=args.executor, out_dir=out, cache_dir=_cache_dir(args))
            if out:
                (out / "fleet.json").write_text(json.dumps(rep, indent=1) + "\n")
                _report(out, args.no_report)
        print(json.dumps(rep, indent=1) if args.json else table_fleet(rep))
        status_notes(rep.get("calibration_status") or {})
        return 0
    if args.resume:
        raise ScenarioError("--resume", "a single run has nothing to resume (fleets, compare and sweep do)",
                            "remove --resume")
    sc = config.load(args.scenario, args.set, args.seed)
    from sim import api

    with _out(args, "run") as out:
        res = api.run(sc, quiet=args.quiet, bar=not args.json)
        _calibration_notes([p.hardware for p in sc.pools if p.service is None])
        summary = summarize(res)
        if out:
            from sim.analysis.output import write_run  # (pyarrow: only when writing)

            write_run(res, summary, out)
            if not args.no_plots:
                from sim.analysis.plots import plot_dir
                plot_dir(out)
            _report(out, args.no_report)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary, f"dcsim run: {sc.name} (seed {sc.seed})", sc)
        if args.out:
            print(f"  results in {args.out}/ (report.html, requests.parquet, timeseries.parquet, summary.json, "
                  "scenario.toml, PNG plots)")
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    from sim.perf.point import PerfQuery, perf_point

    q = PerfQuery(**{f: getattr(args, f) for f in PerfQuery.__dataclass_fields__})
    out = perf_point(q)
    from sim.perf.catalog import builtin_catalog, load_catalog_file

    cat = builtin_catalog()
    if args.catalog:
        load_catalog_file(cat, Path(args.catalog))
    _calibration_notes([cat.get_hardware(args.hardware, "--hardware")])  # once the input is known good
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(
                f"{k:<22} {_fmt(v) if not isinstance(v, dict) else ', '.join(f'{a}={_fmt(b)}' for a, b in v.items())}"
            )
    return 0


def cmd_policies(args: argparse.Namespace) -> int:
    from sim.registry import KINDS, markdown_table

    if args.json:
        print(json.dumps({kind: [{"name": e.name, "class": e.target, "compiled": e.code is not None, "doc": e.doc}
                                 for e in reg.entries()] for kind, reg in KINDS.items()}, indent=1))
    else:
        print(markdown_table(), end="")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from sim.studies.reference import markdown

    print(markdown(), end="")
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from sim.perf.catalog import builtin_catalog

    cat = builtin_catalog()
    if args.json:
        print(json.dumps({
            "hardware": {k: {"name": h.name, "memory_gb": h.memory_gb, "mem_bw_tbps": h.mem_bw_tbps,
                             "tflops": dict(h.tflops), "tdp_w": h.tdp_w, "idle_w": h.idle_w,
                             "scaleup_gbps_bidir": h.scaleup_gbps_bidir, "sources": h.sources,
                             "calibration_status": h.calibration_status, "calibration": h.calibration}
                         for k, h in cat.hardware.items()},
            "models": {k: {"params_total": m.total_params, "params_active": m.active_params,
                           "layers": m.layers, "hidden": m.hidden, "heads": m.heads, "kv_heads": m.kv_heads,
                           "head_dim": m.head_dim, "ffn": m.ffn, "vocab": m.vocab, "experts": m.experts,
                           "active_experts": m.active_experts, "kv_bytes_per_token_bf16": m.kv_bytes_per_token("bf16"),
                           "source": m.source} for k, m in cat.models.items()},
        }, indent=2))
        return 0
    print("hardware:")
    for k, h in cat.hardware.items():
        print(f"  {k:<18} {h.memory_gb:>5g} GB  {h.mem_bw_tbps:>6g} TB/s  {h.tflops.get('bf16', 0):>7g} TFLOP/s bf16  "
              f"{h.tdp_w:>5g} W  constants {h.calibration_status}")
    print("models:")
    for k, m in cat.models.items():
        moe = f"  MoE {m.experts}x top-{m.active_experts}" if m.is_moe else ""
        print(f"  {k:<24} {m.total_params / 1e9:7.1f} B params ({m.active_params / 1e9:.1f} B active){moe}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from sim.validation.validate import DEFAULT_DATA, format_table, validate

    if args.profile:
        from sim.observe.commands import validate_profile

        return validate_profile(args.profile, args.data, args.json)
    if args.power:
        from sim.validation.power import DATA as POWER_DATA, format_power, validate_power

        prep = validate_power(Path(args.data) / "power_calibration.csv" if args.data else POWER_DATA)
        print(json.dumps(prep, indent=1) if args.json else format_power(prep))
        return 0

    if args.hardware:
        from sim.validation import argonne, hardware, inferencex

        if args.source == "argonne":
            default, name, check, fmt = argonne.ARGONNE, "argonne_llm_inference_bench.csv", argonne.check, \
                argonne.format_check
        elif args.source == "inferencex":
            default, name, check, fmt = inferencex.INFERENCEX, "inferencex_dsr1.csv", inferencex.check, \
                inferencex.format_check
        else:
            default, name, check, fmt = hardware.TRTLLM, "trtllm_perf_overview.csv", hardware.check, \
                hardware.format_check
        path = Path(args.data) / name if args.data else default
        if not path.is_file():
            raise ScenarioError("--data", f"no {name} in {args.data}", f"give a folder holding {name}")
        hrep = check(path)
        print(json.dumps(hrep, indent=1) if args.json else fmt(hrep))
        return 0

    rep = validate(Path(args.data) if args.data else DEFAULT_DATA, cv=args.cv, workers=args.workers,
                   out_dir=Path(args.out) if args.out else None, variability=args.variability)
    if args.out:
        (Path(args.out) / "report.json").write_text(json.dumps(rep, indent=1) + "\n")
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        print(format_table(rep))
        if args.out:
            print(f"scenarios and report.json in {args.out}/")
    return 0


def _out(args: argparse.Namespace, command: str, in_place: bool = False) -> Any:
    """The --out folder as a context: checked and locked before any work, written whole or not at
    all (sim/analysis/outdir.py); nothing without --out."""
    import contextlib

    if not getattr(args, "out", None):
        return contextlib.nullcontext(None)
    from sim.analysis.outdir import OutDir

    return OutDir(args.out, getattr(args, "force", False), command, getattr(args, "scenario", None), in_place,
                  resume=bool(getattr(args, "resume", False)))


def _cache_dir(args: argparse.Namespace) -> Path | None:
    """Per-run results under OUT/runs/: kept as they finish, reused with --resume."""
    if args.resume and not args.out:
        raise ScenarioError("--resume", "needs --out (the folder whose saved runs to reuse)", "add --out DIR")
    if not args.out:
        return None
    d = Path(args.out) / "runs"
    if not args.resume and d.exists():
        import shutil
        shutil.rmtree(d)
    return d


def cmd_compare(args: argparse.Namespace) -> int:
    from sim.studies.study import compare, save, strip_latencies, table_compare

    with _out(args, "compare", in_place=True) as out:
        rep = compare(args.scenario, args.vary, args.replications, args.baseline, args.workers, args.set,
                      args.quiet or args.json, executor=args.executor, cache_dir=_cache_dir(args),
                      named=args.variant)
        if out:
            save(rep, out / "compare.json")
            from sim.analysis.plots import plot_dir
            plot_dir(out)
            _report(out, args.no_report)
    if args.json:
        print(json.dumps(strip_latencies(rep), indent=1))
    else:
        print(table_compare(rep))
        if args.out:
            print(f"\nreport.html, compare.json, comparison.png and latency_cdf.png in {args.out}/")
    status_notes(rep.get("calibration_status") or {})
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from sim.studies.study import save, sweep, table_sweep

    with _out(args, "sweep", in_place=True) as out:
        rep = sweep(args.scenario, args.range, args.vary, args.replications, args.workers, args.set,
                    args.quiet or args.json, args.attainment, executor=args.executor, cache_dir=_cache_dir(args),
                    named=args.variant)
        if out:
            save(rep, out / "sweep.json")
            from sim.analysis.plots import plot_dir
            plot_dir(out)
            _report(out, args.no_report)
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        print(table_sweep(rep))
        if args.out:
            print(
                "\nreport.html, sweep.json, latency_vs_load.png, throughput_vs_latency.png (and goodput_vs_load.png) "
                f"in {args.out}/"
            )
    status_notes(rep.get("calibration_status") or {})
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from sim.studies.plan import plan, table

    slo = None
    if args.slo:
        slo = {}
        for part in args.slo.split(","):
            if "=" not in part:
                raise ScenarioError("--slo", f"{part!r} is not KEY=SECONDS", "write e.g. --slo ttft_s=0.5,tpot_s=0.05")
            k, v = part.split("=", 1)
            k = k.strip()
            k = {"ttft": "ttft_s", "tpot": "tpot_s"}.get(k, k)
            if k not in ("ttft_s", "tpot_s"):
                raise ScenarioError("--slo", f"unknown SLO {k!r}", "use ttft_s and/or tpot_s")
            try:
                slo[k] = float(v)
            except ValueError:
                raise ScenarioError("--slo", f"{v!r} is not a number of seconds") from None
    split = lambda x: [y.strip() for y in x.split(",") if y.strip()] if x else []  # noqa: E731
    with _out(args, "plan") as out:
        rep = plan(args.scenario, args.target_rate, slo, split(args.hardware), split(args.tp),
                   split(args.schedulers), args.attainment, args.max_replicas, args.set,
                   headroom=args.headroom, replications=args.replications)
        if out:
            (out / "plan.json").write_text(json.dumps(rep, indent=1) + "\n")
            _report(out, args.no_report)
    print(json.dumps(rep, indent=1) if args.json else table(rep))
    if args.out and not args.json:
        print(f"\nreport.html and plan.json in {args.out}/")
    _plan_notes(args.scenario, args.set, split(args.hardware))
    return 0 if rep["plan"] else 1


def _plan_notes(scenario: str, sets: list[str], ids: list[str]) -> None:
    """The calibration notes of the parts a plan considered (the scenario's, a profile's, --hardware's)."""
    from sim.perf.catalog import builtin_catalog
    from sim.scenario import config

    try:
        sc = config.load(scenario, sets, None)
    except ScenarioError:  # the base need not run itself (plan validates its candidates)
        return
    known = {p.hardware.id: p.hardware for p in sc.pools if p.service is None}
    cat = builtin_catalog()
    _calibration_notes(list(known.values()) + [cat.hardware[i] for i in ids if i not in known and i in cat.hardware])


def _read_folder(d: str, fn: Any) -> Any:
    """fn(d) on a results folder, with one that is being written, unfinished or damaged (a file
    cut short, a JSON that does not parse) one line instead of a traceback."""
    from sim.analysis.outdir import check_readable

    check_readable(Path(d))
    try:
        return fn(d)
    except ScenarioError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ScenarioError("RUN_DIR", f"{d} is incomplete or damaged ({type(exc).__name__}: {str(exc)[:160]})",
                            "rerun the command that wrote it") from None


def cmd_report(args: argparse.Namespace) -> int:
    from sim.analysis.report import write_report

    print(_read_folder(args.run_dir, write_report))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from sim.analysis.plots import plot_dir

    for f in _read_folder(args.run_dir, plot_dir):
        print(f)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dcsim", description="Discrete-event simulator of LLM-inference datacenters.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run a scenario file")
    r.add_argument("scenario")
    r.add_argument("--out", help="write requests.parquet, timeseries.parquet, summary.json, scenario.toml here")
    r.add_argument("--seed", type=int, help="override the scenario's seed")
    r.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a scenario value, e.g. --set workload.rate_per_s=20 (repeatable)")
    r.add_argument("--json", action="store_true", help="print only the summary JSON")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--no-plots", dest="no_plots", action="store_true", help="with --out: skip the PNG plots")
    r.add_argument("--force", action="store_true", help="with --out: replace the results already there")
    r.add_argument("--resume", action="store_true", help="fleets: reuse the cells already saved under --out")
    r.add_argument("--no-report", dest="no_report", action="store_true", help="with --out: skip report.html")
    r.add_argument("--executor", default="local",
                   help="fleets of cells: local, dask or tcp://HOST:PORT (cells run as tasks there)")
    r.add_argument("--workers", type=int, help="fleets of cells: processes (local) or Dask workers (dask); "
                   "default: every core")
    r.set_defaults(fn=cmd_run)
    for name, hlp in (("compare", "run policy variants on common random numbers and compare"),
                      ("sweep", "latency against offered load for each variant")):
        c = sub.add_parser(name, help=hlp)
        c.add_argument("scenario")
        if name == "sweep":
            c.add_argument("--range", required=True, metavar="KEY=START:STOP:STEP",
                           help="the swept key, e.g. workload.rate_per_s=2:20:2")
            c.add_argument("--attainment", type=float, default=0.9,
                           help="SLO attainment that a load must reach to count as meeting the SLO (default 0.9)")
        c.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                       help="a key and its values (repeatable: variants are the product)")
        c.add_argument("--variant", action="append", default=[], metavar="NAME[:KEY=V;KEY=V]",
                       help="a named variant setting several keys (none: the scenario as it is), e.g. "
                       "--variant colocated:pools.role=mixed --variant disaggregated (repeatable)")
        c.add_argument("--replications", type=int, default=3 if name == "compare" else 1,
                       help="runs per variant, on seeds seed, seed+1, ... (the same for every variant)")
        if name == "compare":
            c.add_argument("--baseline", help="the variant differences are taken against (default: the first)")
        c.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
        c.add_argument("--workers", type=int, default=None, help="processes (default: all cores; results identical)")
        c.add_argument("--executor", default="local",
                       help="local (process pool), dask (a Dask LocalCluster) or tcp://HOST:PORT (a Dask scheduler)")
        c.add_argument("--resume", action="store_true",
                       help="reuse the runs already saved under --out (after an interruption)")
        c.add_argument("--out", help="write report.html, the report JSON and PNG plots here")
        c.add_argument("--force", action="store_true", help="with --out: replace the results already there")
        c.add_argument("--no-report", dest="no_report", action="store_true", help="with --out: skip report.html")
        c.add_argument("--quiet", action="store_true", help="no progress bar")
        c.add_argument("--json", action="store_true")
        c.set_defaults(fn=cmd_compare if name == "compare" else cmd_sweep)
    pn = sub.add_parser("plan", help="cheapest configuration meeting an SLO at a target rate")
    pn.add_argument("scenario")
    pn.add_argument("--target-rate", dest="target_rate", type=float, required=True, help="requests/s to serve")
    pn.add_argument("--slo", help="e.g. ttft_s=0.5,tpot_s=0.05 (default: the scenario's [slo])")
    pn.add_argument("--hardware", help="comma-separated hardware ids to consider (default: the scenario's)")
    pn.add_argument("--tp", help="comma-separated TP degrees (default: the scenario's)")
    pn.add_argument("--schedulers", help="comma-separated scheduler policies (default: the scenario's)")
    pn.add_argument("--attainment", type=float, default=0.9)
    pn.add_argument("--max-replicas", dest="max_replicas", type=int, default=512)
    pn.add_argument("--headroom", action="store_true",
                    help="the SLO must hold at the prediction intervals' pessimistic end (slo_attainment_pessimistic)")
    pn.add_argument("--replications", type=int, default=1,
                    help="the SLO must hold on this many seeds (the scenario's seed and the next ones)")
    pn.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    pn.add_argument("--json", action="store_true")
    pn.add_argument("--out", help="write plan.json and report.html here")
    pn.add_argument("--force", action="store_true", help="with --out: replace the results already there")
    pn.add_argument("--no-report", dest="no_report", action="store_true", help="with --out: skip report.html")
    pn.set_defaults(fn=cmd_plan)
    rp = sub.add_parser("report", help="write report.html for a run, compare, sweep, plan or fleet folder "
                                       "(self-contained: opens offline)")
    rp.add_argument("run_dir")
    rp.set_defaults(fn=cmd_report)
    pl = sub.add_parser("plot", help="(re)draw the plots of a run, compare or sweep folder")
    pl.add_argument("run_dir")
    pl.set_defaults(fn=cmd_plot)
    f = sub.add_parser("perf", help="roofline step-time calculator")
    f.add_argument("--hardware", required=True)
    f.add_argument("--model", required=True)
    f.add_argument("--tp", type=int, default=1)
    f.add_argument("--batch", type=int, default=1)
    f.add_argument("--context", type=int, default=1024, help="tokens in KV per sequence")
    f.add_argument("--prompt", type=int, help="prompt tokens: adds prefill_s")
    f.add_argument("--dtype", default="bf16")
    f.add_argument("--kv-dtype", dest="kv_dtype", default=None)
    f.add_argument("--kv-memory-fraction", dest="kv_memory_fraction", type=float, default=0.9)
    f.add_argument("--engine", default="vllm",
                   help="whose step constants are added to the part's: vllm (default), sglang, trtllm "
                        "(docs/engines.md)")
    f.add_argument("--block-size", dest="block_size", type=int, default=16)
    f.add_argument("--catalog", help="extra TOML file with [hardware.<id>] / [models.<id>] tables")
    f.add_argument("--clock-lock", dest="clock_lock", type=float, default=1.0,
                   help="SM clock locked at this fraction of the part's maximum (default 1: not locked)")
    f.add_argument("--power-cap-w", dest="power_cap_w", type=float, default=None,
                   help="per-accelerator power cap: adds clock_factor and power_w, and caps the step times")
    f.add_argument("--json", action="store_true")
    f.set_defaults(fn=cmd_perf)
    v = sub.add_parser("validate", help="rerun measured vLLM experiments and compare")
    v.add_argument("--data", help="folder with experiments.csv (default: data/validation/vllm-measured)")
    v.add_argument("--cv", action="store_true",
                   help="leave-one-model-out: refit the constants without each model before simulating it")
    v.add_argument("--power", action="store_true",
                   help="per-GPU serving power instead: measured (data/validation/power, ML.ENERGY v3) against the "
                        "power model, per row with the median error (--data: a folder with power_calibration.csv)")
    v.add_argument("--hardware", action="store_true",
                   help="offline maximum throughput across hardware and precision instead: TensorRT-LLM's measured "
                        "tables (data/validation/hardware) against dcsim, per accelerator and precision (--data: "
                        "a folder with trtllm_perf_overview.csv)")
    v.add_argument("--source", choices=("trtllm", "argonne", "inferencex"), default="trtllm",
                   help="with --hardware: trtllm (TensorRT-LLM's offline max-throughput tables), argonne (Argonne "
                        "LLM-Inference-Bench static batches on A100, H100, GH200, MI300X; offline closed-loop clients) "
                        "or inferencex (SemiAnalysis InferenceX DeepSeek-R1 serving at fixed concurrency on H200, "
                        "B200, MI300X, MI355X; closed-loop clients; throughput and TPOT); --data: a folder with the "
                        "source's file")
    v.add_argument("--profile", help="a PROFILE.toml from dcsim calibrate: --data is then an observed run (a dcsim "
                                     "observe folder or a vLLM bench serve JSON) it is checked against")
    v.add_argument("--variability", action="store_true",
                   help="run each experiment with the fitted step-time variability (a cold start's warm-up and "
                        "jitter, sim/data/variability.toml; with --cv the values chosen without its model)")
    v.add_argument("--out", help="write one scenario TOML per experiment and report.json here")
    v.add_argument("--workers", type=int, default=None, help="processes (default: all cores; results identical)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(fn=cmd_validate)
    from sim.observe import commands as observe_commands

    observe_commands.add(sub)
    po = sub.add_parser("policies", help="list the registered routers, schedulers, queues and power managers")
    po.add_argument("--json", action="store_true")
    po.set_defaults(fn=cmd_policies)
    k = sub.add_parser("keys", help="every scenario key: its default, values and meaning (docs/scenario.md)")
    k.set_defaults(fn=cmd_keys)
    c = sub.add_parser("catalog", help="list hardware and model ids")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_catalog)
    return p


def _one_line_warnings() -> None:
    """dcsim's own warnings as one line each on stderr, once per message."""
    import warnings

    from sim.errors import DcsimWarning

    shown = warnings.showwarning
    if getattr(shown, "dcsim", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, DcsimWarning):
            print(f"dcsim: warning: {message}", file=sys.stderr)
            WARNED.append(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    show.dcsim = True  # type: ignore[attr-defined]
    warnings.showwarning = show


# what a failed write means, and its fix (one line, exit 2: no traceback after the work is done)
OUTPUT_ERRNOS = {28: "free some disk space or write --out elsewhere", 122: "free some quota or write --out elsewhere",
                 13: "give an --out folder you can write to", 30: "give an --out folder on a writable disk",
                 20: "a path in --out is a file, not a folder: give another --out",
                 21: "give a file path, not a folder", 17: "give another --out"}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    WARNED.clear()
    _one_line_warnings()
    try:
        return args.fn(args)
    except ScenarioError as exc:
        print(f"dcsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dcsim: interrupted (Ctrl-C); what finished is kept: a run folder is only written complete, and "
              "compare/sweep with --out continue with --resume", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in OUTPUT_ERRNOS:
            raise
        print(f"dcsim: error: {exc.filename or 'output'}: {exc.strerror} (fix: {OUTPUT_ERRNOS[exc.errno]})",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0


def exit_now(code: int) -> None:
    """End the process with `code` once output is flushed and the exit handlers have run, without
    the interpreter's teardown: freeing the compiled engine's code and numba's type objects takes
    about 0.25 s (measured), longer than a small run. Only when no other thread is alive (one
    could still be writing); otherwise a normal exit."""
    import atexit
    import os
    import threading

    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):  # pragma: no cover - a closed pipe
            pass
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):  # pragma: no cover
            pass
    os._exit(code)


def entry() -> None:  # pragma: no cover - the console script
    """`dcsim` and `python -m sim`: main, then exit_now."""
    exit_now(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
