"""Per-part step-model constants from measured operator tables, anchored on the H100's vLLM fit.

    python scripts/fit_hardware.py            # print the derived constants
    python scripts/fit_hardware.py --write    # and write them into sim/data/hardware.toml

Reads data/validation/hardware/aiconfigurator_op_efficiency.csv (NVIDIA Dynamo AIConfigurator's
measured GEMM and GEMV tables, summarised; provenance in that folder's README) and derives, for
each part with tables, RELATIVE to the H100 (whose constants scripts/calibrate.py fits on the
measured vLLM runs):
- flops_efficiency_dtype[d] = H100's flops_efficiency x (the part's achieved GEMM peak in d / its
  spec peak in d) / (the H100's achieved bf16 GEMM peak / its spec peak): GEMMs in FP8 and FP4
  reach a smaller share of their peaks than BF16 (H100: 0.74 against 0.85), Blackwell's a smaller
  share than Hopper's;
- bw_efficiency = H100's bw_efficiency x (the part's bf16 GEMV weight bandwidth / its nominal
  bandwidth) / (the same for the H100), except where the part's own serving runs fitted it (the
  A100's: 0.94 on one vLLM run, which the tables' 0.63 would move 32% off);
Not derived: a weight-read penalty for FP8/FP4 weights from the GEMV tables (m = 1): applied to
every step it made the measured vLLM FP8 runs on the H100 35% too slow, so batch-1 GEMVs do not
stand for serving steps. Each figure is the median over the tables' frameworks and versions (rows flagged do_not_use
left out). The H100's own bf16 constants are not changed, so its vLLM validation is not either.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TABLES = ROOT / "data" / "validation" / "hardware" / "aiconfigurator_op_efficiency.csv"
HW_TOML = ROOT / "sim" / "data" / "hardware.toml"
PARTS = {"a100_sxm": "a100-80g", "h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200",
         "gb200": "gb200", "b300_sxm": "b300", "gb300": "gb300", "l40s": "l40s"}
DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "nvfp4": "fp4"}
ANCHOR = "h100-sxm"


def medians(path: Path = TABLES) -> dict[tuple[str, str, str], float]:
    """(part, 'gemm' | 'gemv', dtype) -> the median measured figure (TFLOP/s, GB/s)."""
    vals: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["qa_flag"] or r["device_dir"] not in PARTS:
                continue
            m = re.fullmatch(r"(gemm_peak_tflops|gemv_weight_bw)_(\w+)", r["metric"])
            if m and m.group(2) in DTYPES:
                kind = "gemm" if m.group(1).startswith("gemm") else "gemv"
                vals[(PARTS[r["device_dir"]], kind, DTYPES[m.group(2)])].append(float(r["value"]))
    return {k: statistics.median(v) for k, v in vals.items()}


def busbw(path: Path = TABLES) -> dict[str, dict[str, float]]:
    """part -> {group size: the median measured NCCL all-reduce bus bandwidth, GB/s (largest message)}."""
    vals: dict[tuple[str, str], list[float]] = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["qa_flag"] or r["device_dir"] not in PARTS or r["metric"] != "nccl_allreduce_busbw":
                continue
            n = re.match(r"(\d+) GPUs", r["shape"])
            if n:
                vals[(PARTS[r["device_dir"]], n.group(1))].append(float(r["value"]))
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (part, n), v in sorted(vals.items(), key=lambda kv: (kv[0][0], int(kv[0][1]))):
        out[part][n] = round(statistics.median(v), 1)
    # a ring's bus bandwidth does not fall with the group's size; where the tables' does (L40S over
    # PCIe: 20, 5.6, 1.3 GB/s at 2, 4, 8 GPUs) their semantics are not ours: not used
    return {p: d for p, d in out.items() if list(d.values()) == sorted(d.values())}


def derive(cat) -> dict[str, dict]:
    """part -> {flops_efficiency_dtype, bw_efficiency, weight_bw_dtype} (only what the tables give)."""
    med = medians()
    ar = busbw()
    h = cat.hardware[ANCHOR]
    mu0 = med[(ANCHOR, "gemm", "bf16")] * 1e12 / h.peak_flops("bf16")
    nu0 = med[(ANCHOR, "gemv", "bf16")] * 1e9 / h.mem_bw_bytes_per_s
    out = {}
    for part in sorted({k[0] for k in med}):
        if part not in cat.hardware:
            continue
        hw = cat.hardware[part]
        eff, wbw = {}, {}
        for d in ("bf16", "fp8", "fp4"):
            if (part, "gemm", d) in med and d in hw.tflops:
                mu = med[(part, "gemm", d)] * 1e12 / hw.peak_flops(d)
                eff[d] = round(min(1.0, h.flops_efficiency * mu / mu0), 3)
        row: dict = {"flops_efficiency_dtype": eff, "weight_bw_dtype": wbw, "allreduce_busbw_gbps": ar.get(part, {})}
        if (part, "gemv", "bf16") in med:
            nu = med[(part, "gemv", "bf16")] * 1e9 / hw.mem_bw_bytes_per_s
            row["bw_efficiency"] = round(min(1.0, h.bw_efficiency * nu / nu0), 3)
        if part == ANCHOR:  # its own bf16 constants are the vLLM fit
            row["flops_efficiency_dtype"].pop("bf16", None)
        if "bw_efficiency fitted" in hw.calibration or "all constants fitted" in hw.calibration:
            row.pop("bw_efficiency", None)  # fitted on measured serving runs: that fit stands
        out[part] = row
    return out


def _toml_table(d: dict[str, float]) -> str:
    return "{ " + ", ".join(f"{k} = {v}" for k, v in d.items()) + " }"


def write(derived: dict[str, dict], path: Path = HW_TOML) -> None:
    """Set the derived keys in each part's table of hardware.toml (other lines kept)."""
    text = path.read_text()
    for part, row in derived.items():
        m = re.search(rf"^\[{re.escape(part)}\]\n(.*?)(?=^\[|\Z)", text, flags=re.S | re.M)
        if not m:
            continue
        body = m.group(1)
        for key in ("flops_efficiency_dtype", "weight_bw_dtype", "allreduce_busbw_gbps"):
            body = re.sub(rf"^{key} = .*\n", "", body, flags=re.M)
        add = ""
        if "bw_efficiency" in row:  # in place (a part keeps its other constants where they are)
            body = re.sub(r"^bw_efficiency = .*$", f"bw_efficiency = {row['bw_efficiency']}", body, flags=re.M)
        if row["flops_efficiency_dtype"]:
            add += f"flops_efficiency_dtype = {_toml_table(row['flops_efficiency_dtype'])}\n"
        if row.get("allreduce_busbw_gbps"):
            add += f"allreduce_busbw_gbps = {_toml_table(row['allreduce_busbw_gbps'])}\n"
        if row["weight_bw_dtype"]:
            add += f"weight_bw_dtype = {_toml_table(row['weight_bw_dtype'])}\n"
        if part != ANCHOR and "bw_efficiency" in row:  # what its constants now rest on
            note = ("scripts/fit_hardware.py: bw_efficiency and flops_efficiency_dtype from measured operator "
                    "tables (AIConfigurator) relative to h100-sxm's vLLM fit; the rest borrowed from h100-sxm")
            body = re.sub(r'^calibration = ".*"$', f'calibration = "{note}"', body, flags=re.M)
        elif part != ANCHOR:
            note = ("scripts/calibrate.py: bw_efficiency fitted on 1 stage row(s); flops_efficiency_dtype from "
                    "measured operator tables (scripts/fit_hardware.py); the rest from h100-sxm")
            body = re.sub(r'^calibration = ".*"$', f'calibration = "{note}"', body, flags=re.M)
        body = body.rstrip("\n") + "\n" + add + "\n"
        text = text[:m.start(1)] + body + text[m.end(1):]
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="write the constants into sim/data/hardware.toml")
    args = ap.parse_args()
    from sim.perf.catalog import builtin_catalog

    derived = derive(builtin_catalog())
    for part, row in derived.items():
        print(part, row)
    if args.write:
        write(derived)
        print(f"written into {HW_TOML}")


if __name__ == "__main__":
    main()
