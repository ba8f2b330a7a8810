"""The `observe` and `calibrate` subcommands (their arguments and what they print)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError


def add(sub: Any) -> None:
    """Register `dcsim observe` and `dcsim calibrate` on the CLI's subparsers."""
    o = sub.add_parser("observe", help="send a scenario's workload to a live OpenAI-compatible server and "
                                       "record what it measures (docs/calibrate.md)")
    o.add_argument("scenario")
    o.add_argument("--url", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000")
    o.add_argument("--model", help="the served model's name (default: the scenario's pool model id)")
    o.add_argument("--out", required=True, help="folder for requests.parquet, summary.json, report.html")
    o.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a scenario key")
    o.add_argument("--timeout-s", dest="timeout_s", type=float, default=600.0, help="per request (default 600)")
    o.add_argument("--max-inflight", dest="max_inflight", type=int, default=4096,
                   help="open requests at most (open loop; default 4096)")
    o.set_defaults(fn=cmd_observe)
    c = sub.add_parser("calibrate", help="fit a hardware profile on observed runs (docs/calibrate.md)")
    c.add_argument("runs", nargs="+", metavar="DIR",
                   help="dcsim observe folders, vLLM bench serve JSON files, or an InferenceX-format CSV (its rows "
                        "of the --like part, and of --engine if given)")
    c.add_argument("--hardware", required=True, help="the new part's id (NEW_ID)")
    c.add_argument("--like", required=True, help="the catalog part whose specs and constants it starts from")
    c.add_argument("--model", help="the model served (default: each run's scenario's)")
    c.add_argument("--tp", type=int, help="tensor parallelism (default: each run's scenario's)")
    c.add_argument("--engine", choices=("vllm", "sglang", "trtllm"), help="the serving engine (default: the runs')")
    c.add_argument("--dtype", default="bf16", help="weight precision whose GEMM efficiency is fitted (default bf16)")
    c.add_argument("--out", required=True, help="PROFILE.toml to write")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_calibrate)


def cmd_observe(args: argparse.Namespace) -> int:
    from sim.observe import client, record
    from sim.scenario import config
    from sim.workload.generate import build_workload

    sc = config.load(args.scenario, args.set, None)
    if not args.url.startswith(("http://", "https://")):
        raise ScenarioError("--url", f"{args.url!r} is not an http(s) URL", "give e.g. http://127.0.0.1:8000")
    if args.max_inflight < 1:
        raise ScenarioError("--max-inflight", f"must be >= 1, got {args.max_inflight}")
    if not args.timeout_s > 0:
        raise ScenarioError("--timeout-s", f"must be > 0, got {args.timeout_s}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ScenarioError("--out", f"{out} is a file", "give a folder")
    model = args.model or sc.pools[0].model.id
    t = client.Target(args.url, model, args.timeout_s, args.max_inflight)
    import asyncio  # (here: the CLI's other commands need not import it)

    why = asyncio.run(client.probe(t))
    if why is not None:
        raise ScenarioError("--url", f"{t.endpoint} did not answer a streamed completion ({why})",
                            "start an OpenAI-compatible server there, or check --url and --model")
    wl = build_workload(sc.workload, sc.seed, sc.base_dir)
    outs, complete, t0 = client.run(t, wl, sc.seed, sc.workload.duration_s if wl.clients else None)
    if complete and wl.clients:  # closed loop stopped by duration_s: what was sent is the run
        sent = [i for i, o in enumerate(outs) if o.arrival_s == o.arrival_s]
        outs = [outs[i] for i in sent]
        prompt, want = wl.prompt_tokens[sent], wl.output_tokens[sent]
    else:
        prompt, want = wl.prompt_tokens, wl.output_tokens
    cols = record.columns(outs, prompt, want)
    s = record.summary(cols, wl.clients, complete, t.url, model)
    s["clock_origin_perf_counter_s"] = t0  # t = 0 on this machine's monotonic clock (for servers' logs)
    record.write(out, cols, s, dict(sc.raw))
    done = s["requests_completed"]
    print(f"observed {done} of {s['requests_total']} requests completed"
          + ("" if complete else " (interrupted: the rest are recorded as failed)")
          + f"; mean TTFT {s['ttft_mean_s'] or float('nan'):.4f} s, "
          f"mean TPOT {s['tpot_mean_s'] or float('nan'):.4f} s, "
          f"{s['throughput_output_tok_per_s']:.1f} output tok/s -> {out}")
    if done == 0:
        raise ScenarioError("--url", f"no request completed ({', '.join(s['reasons'])})",
                            "check the server's log; what was measured is in --out")
    return 0 if complete else 130


def cmd_calibrate(args: argparse.Namespace) -> int:
    import tomli_w

    from sim.observe import fit, runs
    from sim.perf.catalog import builtin_catalog

    cat = builtin_catalog()
    if args.like not in cat.hardware:
        raise ScenarioError("--like", f"unknown part {args.like!r}", f"use one of {', '.join(sorted(cat.hardware))}")
    if args.model is not None and args.model not in cat.models:
        raise ScenarioError("--model", f"unknown model {args.model!r}", f"use one of {', '.join(sorted(cat.models))}")
    if args.tp is not None and args.tp < 1:
        raise ScenarioError("--tp", f"must be >= 1, got {args.tp}")
    if args.hardware in cat.hardware:
        raise ScenarioError("--hardware", f"{args.hardware!r} is a catalog part", "give your part a new id")
    observed = [r for p in args.runs for r in runs.load_runs(p, args.like, args.engine)]
    setup = fit.Setup(args.hardware, cat.get_hardware(args.like), args.model, args.tp, args.engine, args.dtype)
    try:
        fit.predict(observed[0], setup, fit.table(setup, fit.start(setup)))
    except ScenarioError as exc:
        raise ScenarioError("DIR", f"{observed[0].name} cannot be replayed on {args.hardware} ({exc})",
                            "give --model and --tp as served") from None
    rep = fit.calibrate(observed, setup)
    prof = fit.profile_toml(rep, setup)
    out = Path(args.out)
    with open(out, "wb") as fh:
        tomli_w.dump(prof, fh)
    if args.json:
        print(json.dumps(rep, indent=1))
        return 0
    print(f"{args.hardware}: fitted on {len(observed)} run(s) from {args.like}'s constants -> {out}")
    for k, v in rep["constants"].items():
        print(f"  {k:<20} {v:.6g}")
    print(f"  {'run':<24} {'metric':<28} {'in sample':>10} {'left out':>10}")
    for i, name in enumerate(rep["runs"]):
        for k in rep["in_sample"][i]:
            lo = rep["leave_one_out"][i][k] if rep["leave_one_out"] else float("nan")
            print(f"  {name:<24} {k:<28} {rep['in_sample'][i][k]:>+10.1%} {lo:>+10.1%}")
    if rep.get("leave_one_out_start", "cold") != "cold":
        print(f"  (left out: each fit {rep['leave_one_out_start']}, not afresh: more than {fit.COLD_LOO} runs)")
    print(f"use it: catalog = \"{out.name}\" and hardware = \"{args.hardware}\" in a scenario")
    return 0


def validate_profile(profile: str, data: str | None, as_json: bool) -> int:
    """`dcsim validate --profile P --data RUN`: the profile's predictions against a further run."""
    from sim.observe import fit, runs
    from sim.observe.record import MEASURED_KEYS

    if not data:
        raise ScenarioError("--data", "with --profile, name the observed run to check", "add --data DIR")
    setup, hw = fit.load_profile(profile)
    found = runs.load_runs(data, setup.like.id, setup.engine)
    if len(found) != 1:
        raise ScenarioError("--data", f"{data} holds {len(found)} runs", "name one observed run")
    run = found[0]
    pred = fit.predict(run, setup, hw)
    rows = [{"metric": k, "measured": run.measured[k], "predicted": pred[k], "error": pred[k] / run.measured[k] - 1}
            for k in MEASURED_KEYS if k in run.measured]
    if as_json:
        print(json.dumps({"profile": profile, "hardware": setup.new_id, "run": run.name, "rows": rows}, indent=1))
        return 0
    print(f"{setup.new_id} ({profile}) against {run.name}:")
    for r in rows:
        print(f"  {r['metric']:<28} measured {r['measured']:>10.4g}  predicted {r['predicted']:>10.4g}  "
              f"error {r['error']:+.1%}")
    return 0
