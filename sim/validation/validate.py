"""`dcsim validate`: rerun real vLLM serving experiments in the simulator and compare.

Each experiment of `experiments.csv` (vllm-measured layout) becomes a scenario with the same
model, GPU, TP, data-parallel replicas, vLLM settings (max_num_seqs, max_num_batched_tokens,
gpu_memory_utilization, block size, prefix caching), constant-rate load stages, shared-prefix
prompts and fixed output lengths (the runs used ignore_eos). The client timeout is 300 s
(aiohttp's default total timeout, which inference-perf leaves in place; the longest measured
E2E is 297 s). Measured and predicted TTFT, E2E and per-token decode time are compared per
experiment and stage.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from sim.validation.experiments import DEFAULT_DATA, METRICS, Experiment, load_experiments, measured

def _simulate(args: tuple[dict[str, Any], dict[str, Any] | None]) -> dict[str, Any]:
    from sim.scenario.config import parse
    from sim.analysis.metrics import summarize
    from sim.engine.simulation import Simulation

    raw, hw_override = args
    raw = dict(raw)
    if hw_override:
        raw["hardware"] = hw_override
    res = Simulation(parse(raw)).run()
    return summarize(res)


def predicted_saturated(st: dict[str, Any]) -> bool:
    """A stage is saturated when the engine cannot keep up: clients time out, or requests
    wait seconds for their first token."""
    failed = st["failed"] / max(1, st["requests"])
    return failed > 0.01 or (st["ttft_mean_s"] or 0.0) > 5.0


def compare(exps: list[Experiment], summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for e in exps:
        if e.exp_id not in summaries:
            continue
        s = summaries[e.exp_id]
        stages = s.get("stages") or [dict(s, stage=0, requests=s["requests_total"], failed=s["requests_failed"])]
        for r, st in zip(e.stages, stages, strict=False):
            meas = measured(r)
            assert e.scenario is not None  # (experiments without one were not run)
            pred = {k: st.get(f"{k}_s") for k in METRICS}
            err = {k: ((pred[k] - meas[k]) / meas[k] if (pred[k] is not None and meas[k]) else None) for k in METRICS}
            rows.append({
                "exp_id": e.exp_id, "stage": int(r["stage_index"]), "hardware": e.scenario["pools"][0]["hardware"],
                "model": e.scenario["pools"][0]["model"], "tp": e.scenario["pools"][0]["tp"],
                "rate_per_s": e.scenario["workload"]["stages"][int(r["stage_index"])]["rate_per_s"],
                "measured": meas, "predicted": pred, "rel_err": err,
                "saturated_measured": r["saturation_hint"] == "True",
                "saturated_predicted": predicted_saturated(st),
                "completed": st.get("completed"), "failed": st.get("failed"),
            })
    return rows


def error_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    ok = [r for r in rows if not r["saturated_measured"]]
    med, p90 = {}, {}
    for k in METRICS:
        a = sorted(abs(r["rel_err"][k]) for r in ok if r["rel_err"][k] is not None)
        med[k] = (a[len(a) // 2] if len(a) % 2 else (a[len(a) // 2 - 1] + a[len(a) // 2]) / 2) if a else None
        p90[k] = a[min(len(a) - 1, int(math.ceil(0.9 * len(a))) - 1)] if a else None
    return {"median_abs_err": med, "p90_abs_err": p90}


def _scenario_of(e: Any, seed: int | None) -> dict[str, Any]:
    """An experiment's scenario (it has one), with `seed` instead of its own when given."""
    assert e.scenario is not None
    return e.scenario if seed is None else dict(e.scenario, seed=seed)


def with_variability(sc: dict[str, Any], v: dict[str, float] | None) -> dict[str, Any]:
    """The scenario with its pool's [variability] set to `v` (None: the scenario's own)."""
    if v is None:
        return sc
    return dict(sc, pools=[dict(sc["pools"][0], variability=dict(v))])


def run_validation(data_dir: Path = DEFAULT_DATA, workers: int | None = None,
                   hw_overrides: dict[str, dict[str, Any]] | None = None,
                   only: set[str] | None = None,
                   variability: dict[str, dict[str, float]] | None = None, seed: int | None = None,
                   ) -> tuple[list[Experiment], dict[str, dict[str, Any]]]:
    """Simulate every experiment that can be simulated; returns (experiments, summaries by id).

    `hw_overrides[exp_id]` replaces hardware entries for that experiment (cross-validation);
    `variability[exp_id]` its pool's [variability] (else none); `seed` replaces the scenarios' seed."""
    exps = load_experiments(data_dir)
    todo = [e for e in exps if e.scenario is not None and (only is None or e.exp_id in only)]
    jobs = [(with_variability(_scenario_of(e, seed), (variability or {}).get(e.exp_id)),
             (hw_overrides or {}).get(e.exp_id)) for e in todo]
    workers = workers or os.cpu_count() or 1
    from sim.engine.warmup import warm_up
    from sim.progress import ConsoleReporter

    warm_up(ConsoleReporter("validate"))  # once here, not in every worker
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            outs = list(pool.map(_simulate, jobs))
    else:
        outs = [_simulate(j) for j in jobs]
    return exps, {e.exp_id: o for e, o in zip(todo, outs, strict=False)}


def cross_validated_overrides(exps: list[Experiment], data_dir: Path,
                              variability: dict[str, dict[str, Any]] | None = None,
                              ) -> tuple[dict[str, dict], dict[str, dict]]:
    """Leave-one-model-out: for each model, fit the constants on every other model's rows and
    return hardware overrides for that model's experiments (and the fitted values per model).

    `variability[model]` (by kind: "dense"/"moe" -> Variability) is the warm-up chosen without
    that model; its fold's constants are fitted with it divided out (calibrate.serving_rows)."""
    from sim.validation.calibrate import fit, overrides_for, serving_rows

    plain = serving_rows(data_dir)
    models = sorted({e.scenario["pools"][0]["model"] for e in exps if e.scenario is not None})
    over: dict[str, dict] = {}
    folds: dict[str, dict] = {}
    for m in models:
        rows = serving_rows(data_dir, variability[m]) if variability and m in variability else plain
        fitted = fit([r for r in rows if r.model != m])
        folds[m] = {h: fitted[h] for h in sorted({e.scenario["pools"][0]["hardware"] for e in exps
                                                  if e.scenario is not None})}
        for e in exps:
            if e.scenario is not None and e.scenario["pools"][0]["model"] == m:
                over[e.exp_id] = overrides_for(fitted, [e.scenario["pools"][0]["hardware"]])
    return over, folds


def tails_variability(exps: list[Experiment], cv: bool,
                      ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]] | None]:
    """The step-time variability each experiment runs with (a measured server starts cold and
    jitters): the fitted defaults of its model kind, or with `cv` the values chosen without its
    model (sim/data/variability.toml). Returns (values by exp_id, the per-model choices by kind
    for the folds' calibration, None without cv)."""
    from sim.perf.catalog import builtin_catalog
    from sim.perf.variability import defaults, left_out
    from sim.schema import effective

    cat = builtin_catalog()
    var: dict[str, dict[str, float]] = {}
    per_model: dict[str, dict[str, Any]] = {}
    for e in exps:
        if e.scenario is None:
            continue
        m = e.scenario["pools"][0]["model"]
        kind = "moe" if cat.models[m].is_moe else "dense"
        choice = left_out(m) if cv else None
        if cv and choice is None:
            raise ValueError(
                f"sim/data/variability.toml has no [cv.\"{m}\"] table: run scripts/fit_variability.py --write"
            )
        if choice is not None:
            per_model[m] = choice
        var[e.exp_id] = effective(choice[kind] if choice is not None else defaults(kind))
    return var, (per_model if cv else None)


def validate(data_dir: Path = DEFAULT_DATA, cv: bool = False, workers: int | None = None,
             out_dir: Path | None = None, variability: bool = False) -> dict[str, Any]:
    """Run the validation; returns the JSON-able report (see `dcsim validate --help`).

    With `variability` each experiment runs with the fitted step-time variability
    (tails_variability: the measured servers were started cold), and with `cv` each fold's
    constants are fitted with that model's warm-up divided out."""
    exps = load_experiments(data_dir)
    var, per_model = tails_variability(exps, cv) if variability else ({}, None)
    over, folds = (cross_validated_overrides(exps, data_dir, per_model) if cv else ({}, {}))
    _, sums = run_validation(data_dir, workers, over, variability=var)
    rows = compare(exps, sums)
    if out_dir is not None:
        write_scenarios(exps, Path(out_dir), over, var)
    rep: dict[str, Any] = {
        "mode": "leave-one-model-out cross-validation" if cv else "catalog constants",
        "variability": ("the values chosen without each model" if cv else "the fitted defaults per model kind")
        if variability else "off",
        "experiments": rows,
        **error_summary(rows),
        "saturated": [{"exp_id": r["exp_id"], "stage": r["stage"], "predicted_saturated": r["saturated_predicted"]}
                      for r in rows if r["saturated_measured"]],
        "false_saturation": [{"exp_id": r["exp_id"], "stage": r["stage"]} for r in rows
                             if r["saturated_predicted"] and not r["saturated_measured"]],
        "skipped": [{"exp_id": e.exp_id, "why": e.why_not} for e in exps if e.scenario is None],
    }
    if cv:
        rep["folds"] = folds
    return rep


def write_scenarios(exps: list[Experiment], out_dir: Path, over: dict[str, dict] | None = None,
                    var: dict[str, dict[str, float]] | None = None) -> None:
    import tomli_w

    out_dir.mkdir(parents=True, exist_ok=True)
    for e in exps:
        if e.scenario is None:
            continue
        sc = with_variability(dict(e.scenario), (var or {}).get(e.exp_id))
        if over and e.exp_id in over:
            sc["hardware"] = over[e.exp_id]
        head = (f"# vLLM experiment {e.exp_id} as a dcsim scenario (written by `dcsim validate`).\n"
                f"# Run: dcsim run {out_dir / (e.exp_id + '.toml')}\n")
        (out_dir / f"{e.exp_id}.toml").write_text(head + tomli_w.dumps(sc))


def format_table(rep: dict[str, Any]) -> str:
    """The human-readable report."""
    def pct(x):
        return "      -" if x is None else f"{x * 100:+6.1f}%"

    def ms(x):
        return "       -" if x is None else (f"{x * 1e3:8.1f}" if x < 100 else f"{x:7.0f}s")

    lines = [
        f"dcsim validate ({rep['mode']}; step-time variability: {rep.get('variability', 'off')})",
        "",
        f"{'experiment':<44} {'st':>2} {'rate':>5}  {'TTFT meas':>9} {'pred':>8} {'err':>7}  "
        f"{'E2E err':>7} {'TPOT meas':>9} {'pred':>8} {'err':>7}  {'p90 TTFT':>8} {'p99 TTFT':>8} "
        f"{'p90 E2E':>7} {'p99 E2E':>7}  sat",
    ]
    for r in rep["experiments"]:
        m, p, e = r["measured"], r["predicted"], r["rel_err"]
        sat = ("yes" if r["saturated_measured"] else "no") + "/" + ("yes" if r["saturated_predicted"] else "no")
        lines.append(
            f"{r['exp_id'][:44]:<44} {r['stage']:>2} {r['rate_per_s']:>5g}  {ms(m['ttft_mean'])} {ms(p['ttft_mean'])} "
            f"{pct(e['ttft_mean'])}  {pct(e['e2e_mean'])} {ms(m['tpot_mean'])} {ms(p['tpot_mean'])} "
            f"{pct(e['tpot_mean'])}  {pct(e['ttft_p90']):>8} {pct(e['ttft_p99']):>8} {pct(e['e2e_p90']):>7} "
            f"{pct(e['e2e_p99']):>7}  {sat}"
        )
    lines += ["", "times in ms; sat = saturated measured/predicted; errors = (predicted - measured) / measured", "",
              "abs error over non-saturated stages:  " + "  ".join(
                  f"{k}: median {rep['median_abs_err'][k] * 100:.1f}% p90 {rep['p90_abs_err'][k] * 100:.1f}%"
                  for k in ("ttft_mean", "e2e_mean", "tpot_mean", "ttft_p99", "e2e_p99")
                  if rep["median_abs_err"][k] is not None)]
    sat = rep["saturated"]
    if sat:
        lines.append(
            f"saturated stages predicted to saturate: {sum(s['predicted_saturated'] for s in sat)} of {len(sat)}"
        )
    if rep["false_saturation"]:
        lines.append("predicted to saturate but did not: " + ", ".join(f"{x['exp_id']} stage {x['stage']}"
                                                                       for x in rep["false_saturation"]))
    for s in rep["skipped"]:
        lines.append(f"not simulated: {s['exp_id']} ({s['why']})")
    return "\n".join(lines)
