"""Fit the power model's activity constants (clock_power_frac, memory_power_frac) per accelerator
on data/validation/power (ML.ENERGY v3 per-GPU serving power on H100 and B200) and print them;
with --write, store them in sim/data/hardware.toml. The method is in sim/validation/power.py and
docs/power.md.

Usage: python scripts/fit_power.py [--write] [--doc]   (about 15 s; --doc writes docs/power.md with
the catalog's constants, so run it after --write)
"""

from __future__ import annotations

import argparse
import json
import sys

from calibrate import HW_FILE, set_section  # scripts/calibrate.py: the same section writer
from sim.validation.power import INPUT_TOK, fit, power_rows, validate_power

DOC = HW_FILE.parents[2] / "docs" / "power.md"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--doc", action="store_true", help="write docs/power.md (the catalog's constants)")
    args = ap.parse_args()
    if args.doc:
        write_doc()
        print(f"wrote {DOC}")
        return 0
    fitted = fit(power_rows())
    print(json.dumps(fitted, indent=1))
    if args.write:
        text = HW_FILE.read_text()
        for hid, v in fitted.items():
            text = set_section(text, hid, {k: v[k] for k in ("clock_power_frac", "memory_power_frac",
                                                             "power_calibration")})
        HW_FILE.write_text(text)
        print(f"wrote {HW_FILE}")
    return 0


def write_doc() -> None:
    from sim.perf.catalog import builtin_catalog

    cat = builtin_catalog()
    rep = validate_power()
    hws = sorted(rep["median_abs_err_by_hardware"])
    L = ["<!-- fit_power:begin -->", "### Fit on measured serving power", "",
         "(This part is written by `python scripts/fit_power.py --doc`; the constants by `--write`.)", "",
         "`sim/validation/power.py` reads `data/validation/power/power_calibration.csv` (ML.ENERGY Benchmark",
         "v3, vLLM 0.11.1, per-GPU steady-state power against max_num_seqs; licence Apache-2.0) for the",
         "models the catalog has (Qwen3 8B/14B/32B/30B-A3B, Llama-3.1-8B). Each row is simulated as its",
         "average engine step: B decode sequences at context input + output / 2 carrying B x input /",
         "output prefill tokens. Prompt lengths are not published; assumed: "
         + ", ".join(f"{k} {v}" for k, v in INPUT_TOK.items()) + " tokens.",
         "k and m are chosen on a grid to minimise the median absolute error per accelerator. idle_w:",
         "h100-sxm 122 W is measured (a model loaded, no requests: \"The Model Parking Tax\", arXiv",
         "2605.23918, in the same folder); b200's is assumed. Parts without measurements borrow h100-sxm's k, m.", "",
         "| accelerator | clock_power_frac | memory_power_frac | idle_w | rows | median abs error |",
         "|---|---|---|---|---|---|"]
    for h in hws:
        hw = cat.hardware[h]
        n = sum(1 for x in rep["rows"] if x["hardware"] == h)
        L.append(f"| {h} | {hw.clock_power_frac} | {hw.memory_power_frac} | {hw.idle_w:g} | {n} | "
                 f"{rep['median_abs_err_by_hardware'][h] * 100:.1f}% |")
    L += ["", f"All rows: median absolute error {rep['median_abs_err'] * 100:.1f}% (`dcsim validate --power`).", "",
          "#### Every row", "", "| accelerator | model | task | TP | batch | measured W | predicted W | error |",
          "|---|---|---|---|---|---|---|---|"]
    for x in rep["rows"]:
        L.append(f"| {x['hardware']} | {x['model']} | {x['task']} | {x['tp']} | {x['batch']:.1f} | {x['measured_w']:.1f} | "
                 f"{x['predicted_w']:.1f} | {x['rel_err'] * 100:+.1f}% |")
    L.append("<!-- fit_power:end -->")
    text = DOC.read_text()
    a, b = text.index("<!-- fit_power:begin -->"), text.index("<!-- fit_power:end -->") + len("<!-- fit_power:end -->")
    DOC.write_text(text[:a] + "\n".join(L) + text[b:])


if __name__ == "__main__":
    sys.exit(main())
