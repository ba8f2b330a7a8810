"""Fit the step-time variability (sim/perf/variability.py) on data/validation/vllm-measured, per
model kind (dense, moe), by grid search over the simulator itself; with --write, store the fitted
defaults and the leave-one-model-out folds in sim/data/variability.toml.

Every experiment is simulated with its cross-validated perf constants (the ones `dcsim validate
--cv` uses) at every grid point. The defaults (one point per kind) minimise, over the
non-saturated stages, the sum of the median absolute errors of p99 TTFT and p99 E2E, among the
pairs whose mean TTFT, E2E and TPOT median errors are no worse than without variability. The figure to trust is nested: each model's errors at the point chosen without it.

Usage: python scripts/fit_variability.py [--data DIR] [--folds-cache FILE] [--seeds N] [--rows FILE] [--write]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from sim.perf.catalog import builtin_catalog
from sim.perf.variability import DATA, KEYS
from sim.validation.experiments import DEFAULT_DATA, load_experiments
from sim.validation.validate import compare, cross_validated_overrides, error_summary, run_validation

GRID_WARMUP = [(0.0, 10.0), (1.0, 2.0), (1.0, 4.0), (2.0, 2.0), (2.0, 4.0), (4.0, 2.0), (8.0, 4.0)]
GRID_JITTER = [(0.0, 0.05), (0.02, 0.01), (0.02, 0.03), (0.05, 0.1), (0.05, 0.3)]
GRID_EPISODES = [(0.0, 0.05, 0.0)] + [(w, q, f) for w in (3.0, 10.0) for q in (0.02, 0.05) for f in (0.3, 0.6, 1.0)]
TAILS = ("ttft_p99", "e2e_p99")
MEANS = ("ttft_mean", "e2e_mean", "tpot_mean")
TOP = 25  # candidates per kind for the joint choice


def mean_rows(runs: list[list[dict]]) -> list[dict]:
    """compare() rows with each prediction averaged over the runs (seeds), errors recomputed."""
    out = []
    for same in zip(*runs):
        r = dict(same[0])
        pred = {k: (sum(x["predicted"][k] for x in same) / len(same)
                    if all(x["predicted"][k] is not None for x in same) else None) for k in r["predicted"]}
        r["predicted"] = pred
        r["rel_err"] = {k: ((pred[k] - r["measured"][k]) / r["measured"][k] if pred[k] is not None and r["measured"][k]
                            else None) for k in pred}
        out.append(r)
    return out


def medians(rows: list[dict]) -> dict[str, float]:
    return error_summary(rows)["median_abs_err"]


def choose(rows_at: list[list[dict]], kind_of: dict[str, str], leave_out: str | None) -> dict[str, int]:
    """The grid point per kind (dense, moe) that minimises the sum of the p99 TTFT and p99 E2E
    median errors over every model but `leave_out`, among the pairs whose mean TTFT, E2E and TPOT
    median errors are no worse than without variability (grid point 0)."""
    def rows(i: int, kind: str) -> list[dict]:
        return [r for r in rows_at[i] if kind_of[r["exp_id"]] == kind and r["model"] != leave_out]

    top = {k: sorted(range(len(rows_at)), key=lambda i: (sum(medians(rows(i, k))[t] for t in TAILS), i))[:TOP] + [0]
           for k in ("dense", "moe")}
    ref = medians(rows(0, "dense") + rows(0, "moe"))
    best, pick = None, {"dense": 0, "moe": 0}
    for i in top["dense"]:
        for j in top["moe"]:
            med = medians(rows(i, "dense") + rows(j, "moe"))
            if any(med[k] > ref[k] + 1e-12 for k in MEANS):
                continue
            v = (sum(med[t] for t in TAILS), i, j)
            if best is None or v < best:
                best, pick = v, {"dense": i, "moe": j}
    return pick


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--folds-cache", help="read (or write) the cross-validated constants here (they take minutes)")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--rows", help="save every grid point's per-stage errors (JSON) here")
    ap.add_argument("--from-rows", help="choose from errors saved with --rows instead of simulating")
    ap.add_argument("--seeds", type=int, default=1,
                    help="simulate each point on this many seeds and compare their mean prediction (a p99 rests "
                         "on rare draws: one seed makes the choice noisy)")
    args = ap.parse_args()
    data = Path(args.data)
    exps = [e for e in load_experiments(data) if e.scenario is not None]
    cache = Path(args.folds_cache) if args.folds_cache else None
    if args.from_rows:
        over = {}
    elif cache and cache.exists():
        over = json.loads(cache.read_text())["over"]
    else:
        over, _ = cross_validated_overrides(load_experiments(data), data)
        if cache:
            cache.write_text(json.dumps({"over": over}))
    cat = builtin_catalog()
    model_of = {e.exp_id: e.scenario["pools"][0]["model"] for e in exps}
    kind_of = {x: ("moe" if cat.models[m].is_moe else "dense") for x, m in model_of.items()}
    points = [dict(zip(KEYS, w + j + e)) for w, j, e in itertools.product(GRID_WARMUP, GRID_JITTER, GRID_EPISODES)]
    rows_at: list[list[dict]] = []
    t0 = time.time()
    if args.from_rows:
        saved = json.loads(Path(args.from_rows).read_text())
        points, rows_at = saved["points"], saved["rows"]
    for i, pt in enumerate(points if not args.from_rows else []):
        runs = [compare(exps, run_validation(data, None, over, variability={x: pt for x in model_of},
                                             seed=None if args.seeds == 1 else 1 + k)[1]) for k in range(args.seeds)]
        rows_at.append(mean_rows(runs))
        print(f"\r{i + 1}/{len(points)} points, {time.time() - t0:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    if args.rows:
        Path(args.rows).write_text(json.dumps({"points": points, "rows": rows_at}))

    default = choose(rows_at, kind_of, None)
    cv = {m: choose(rows_at, kind_of, m)["moe" if cat.models[m].is_moe else "dense"] for m in sorted(set(model_of.values()))}
    nested = [r for m, i in cv.items() for r in rows_at[i] if r["model"] == m]
    none = rows_at[0]  # warm-up 0, jitter 0: deterministic steps
    report = {
        "defaults": {k: points[i] for k, i in default.items()},
        "cv": {m: points[i] for m, i in cv.items()},
        "nested_cv_median_abs_err": error_summary(nested)["median_abs_err"],
        "without_variability_median_abs_err": error_summary(none)["median_abs_err"],
        "in_sample_median_abs_err": error_summary(
            [r for k, i in default.items() for r in rows_at[i] if kind_of[r["exp_id"]] == k])["median_abs_err"],
        "grid_points": len(points), "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(report, indent=1))
    if args.write:
        write(report)
    return 0


def write(report: dict) -> None:
    head = [ln for ln in DATA.read_text().splitlines() if ln.startswith("#") and not ln.startswith("# Leave-one")]
    out = head + [""]
    for k in ("dense", "moe"):
        out += [f"[{k}]"] + [f"{key} = {report['defaults'][k][key]!r}" for key in KEYS] + [""]
    DATA.write_text("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
