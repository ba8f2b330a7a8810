"""Fit the serving engines' fixed cost per MoE layer on InferenceX, leave one accelerator out.

    python scripts/fit_moe_overhead.py            # print the fit and the held-out errors
    python scripts/fit_moe_overhead.py --write    # and store it in sim/data/engines.toml

Data: the InferenceX DeepSeek-R1 rows of `dcsim validate --hardware --source inferencex`
(data/validation/hardware/inferencex_dsr1.csv: SGLang and TensorRT-LLM at fixed concurrency on
H200, B200, MI300X, MI355X), each run as the benchmark ran it (sim/validation/inferencex.py).
Without this term dcsim's step is 2-6 ms short at every concurrency on H200 and B200 (conc 1 to
128, TP 8 or attention data-parallel with EP 8): a fixed time per step that does not shrink with
the batch, as the routing, dispatch, grouped-GEMM and combine kernels of 58 MoE layers give.
One number, `moe_layer_overhead_s`, for both engines (sglang, trtllm), chosen by a grid to
minimise the median |error| of output tokens/s per GPU. Cross-validation: for each accelerator,
the value fitted on the other accelerators' rows, scored on its own. vllm's stays 0 (its parts'
constants are fitted on vLLM runs that include MoE models).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID_S = [x * 1e-6 for x in range(0, 130, 10)]
ENGINES_TOML = ROOT / "sim" / "data" / "engines.toml"
FITTED = ("sglang", "trtllm")


def _errors_at(x: float) -> list[dict]:
    """Every InferenceX row's errors with `x` s per MoE layer in both engines."""
    from sim.perf import engines
    from sim.validation.inferencex import check

    for e in FITTED:
        base = engines._table()[e]
        engines.OVERRIDES[e] = engines.EngineConstants(base.seq_overhead_s, base.step_overhead_s, x)
    try:
        return check()["rows"]
    finally:
        engines.OVERRIDES.clear()


def _median_abs(errs: list[dict], key: str = "error") -> float:
    v = [abs(e[key]) for e in errs if e[key] == e[key]]
    return statistics.median(v) if v else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    by_x = {x: _errors_at(x) for x in GRID_S}
    parts = sorted({e["hardware"] for e in by_x[0.0]})
    best = min(GRID_S, key=lambda x: _median_abs(by_x[x]))
    print(f"{len(by_x[0.0])} rows; without the term: throughput median |error| {_median_abs(by_x[0.0]):.1%}, "
          f"TPOT {_median_abs(by_x[0.0], 'tpot_error'):.1%}")
    print(f"fit on all rows: {best * 1e6:g} us per MoE layer: throughput {_median_abs(by_x[best]):.1%}, "
          f"TPOT {_median_abs(by_x[best], 'tpot_error'):.1%}")
    held = []
    for p in parts:
        x_p = min(GRID_S, key=lambda x: _median_abs([e for e in by_x[x] if e["hardware"] != p]))
        test = [e for e in by_x[x_p] if e["hardware"] == p]
        held += test
        print(f"  held out {p:<7} ({len(test)} rows): fit on the others {x_p * 1e6:g} us -> throughput "
              f"{_median_abs(test):.1%} (before {_median_abs([e for e in by_x[0.0] if e['hardware'] == p]):.1%}), "
              f"TPOT {_median_abs(test, 'tpot_error'):.1%}")
    print(f"leave-one-accelerator-out: throughput {_median_abs(held):.1%}, TPOT {_median_abs(held, 'tpot_error'):.1%}")
    if args.write:
        text = ENGINES_TOML.read_text()
        for e in FITTED:
            block = re.search(rf"^\[{e}\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
            assert block is not None
            body = re.sub(r"^moe_layer_overhead_s = .*\n", "", block.group(1), flags=re.M)
            body = body.replace("step_overhead_s =", f"moe_layer_overhead_s = {best:g}\nstep_overhead_s =", 1)
            text = text[:block.start(1)] + body + text[block.end(1):]
        text = re.sub(r"^#   moe_layer_overhead_s.*\n(#  .*\n)*", "", text, flags=re.M)
        text = text.replace("#   step_overhead_s  extra seconds per step\n",
                            "#   step_overhead_s  extra seconds per step\n"
                            "#   moe_layer_overhead_s  seconds per MoE layer per step (routing, dispatch, combine:\n"
                            f"#                    scripts/fit_moe_overhead.py on InferenceX, leave-one-accelerator-"
                            f"out\n#                    median |error| {_median_abs(held):.1%})\n", 1)
        ENGINES_TOML.write_text(text)
        print(f"wrote {ENGINES_TOML}")


if __name__ == "__main__":
    main()
