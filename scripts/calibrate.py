"""Fit the per-hardware perf-model constants on measured data; print them (and optionally
write them into sim/data/hardware.toml).

Method (documented in docs/validation.md):
1. Decode (bw_efficiency, step_overhead_s, seq_overhead_s, comm_latency_s): grid search that
   minimises the mean absolute relative error of predicted decode step time against the
   measured per-token decode time of the lowest-load stage of every usable vllm-measured
   experiment on that hardware (vLLM 0.15.1, the stack users run today).
   Hardware with too few rows to fit four constants (A100: one row) fits bw_efficiency only
   and takes the software constants from the H100 fit.
2. Prefill (flops_efficiency): least-squares line through Splitwise's measured prompt times
   against FLOPs at peak, on compute-bound rows (physically impossible rows dropped); the slope
   is 1 / flops_efficiency, the intercept is that older stack's fixed overhead (not used).
Hardware with no usable measurement keeps the H100 values (marked "borrowed").

Usage: python scripts/calibrate.py [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.catalog import builtin_catalog  # noqa: E402
from sim.perfcheck import perf_for, physically_impossible, splitwise_rows, vllm_rows  # noqa: E402

HW_FILE = Path(__file__).resolve().parents[1] / "sim" / "data" / "hardware.toml"


def decode_terms(rows, hw_id):
    """Per row: memory time at 100% bandwidth, compute time, comm bandwidth time, all-reduce
    count, sequences; from the perf model with the constants to fit zeroed."""
    cat = builtin_catalog()
    raw = dataclasses.replace(cat.hardware[hw_id], bw_efficiency=1.0, step_overhead_s=0.0, seq_overhead_s=0.0,
                              comm_latency_s=0.0)
    out = []
    for r in rows:
        pm = perf_for(cat, raw, r.model, r.tp, r.dtype, r.kv_dtype)
        c = pm.cost(r.batch, r.batch * r.context, n_seq=int(round(r.batch)))
        n_ar = 2 * pm.model.layers if r.tp > 1 else 0
        out.append((c.t_mem_s, c.t_comp_s, c.t_comm_s, n_ar, round(r.batch), r.measured_s))
    return np.array(out)


def fit_decode(terms, fixed=None):
    t_mem, t_comp, t_bw, n_ar, n_seq, meas = terms.T
    effs = np.arange(0.50, 1.0001, 0.01)
    if fixed is not None:
        ovh, seq, lat = fixed
        pred = np.maximum(t_mem[None, :] / effs[:, None], t_comp) + t_bw + n_ar * lat + ovh + seq * n_seq
        err = np.mean(np.abs(pred / meas - 1), axis=1)
        i = int(np.argmin(err))
        return (float(effs[i]), ovh, seq, lat), float(err[i])
    ovhs = np.arange(0.0, 0.0061, 0.0001)
    seqs = np.arange(0.0, 0.00005001, 0.000005)
    lats = np.arange(0.0, 0.0000601, 0.000002)
    best = (None, np.inf)
    for e in effs:
        base = np.maximum(t_mem / e, t_comp) + t_bw  # (rows,)
        # broadcast over (ovh, seq, lat, rows)
        pred = (base[None, None, None, :] + ovhs[:, None, None, None] + seqs[None, :, None, None] * n_seq
                + lats[None, None, :, None] * n_ar)
        err = np.mean(np.abs(pred / meas - 1), axis=-1)
        k = np.unravel_index(np.argmin(err), err.shape)
        if err[k] < best[1]:
            best = ((float(e), float(ovhs[k[0]]), float(seqs[k[1]]), float(lats[k[2]])), float(err[k]))
    return best


def fit_flops(hw_id):
    cat = builtin_catalog()
    raw = dataclasses.replace(cat.hardware[hw_id], flops_efficiency=1.0, step_overhead_s=0.0, seq_overhead_s=0.0,
                              comm_latency_s=0.0)
    _, pre = splitwise_rows()
    xs, ys = [], []
    for r in pre:
        if r.hardware != hw_id or physically_impossible(r):
            continue
        pm = perf_for(cat, raw, r.model, r.tp, r.dtype, r.kv_dtype)
        c = pm.prefill_cost(r.prompt, r.batch)
        if c.t_comp_s < 2 * c.t_mem_s:
            continue  # not clearly compute-bound
        xs.append(c.t_comp_s)
        ys.append(r.measured_s - c.t_comm_s)
    if len(xs) < 3:
        return None, 0
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(1.0 / slope), len(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the fitted values into sim/data/hardware.toml")
    args = ap.parse_args()
    dec, _, _ = vllm_rows()
    fits: dict[str, dict[str, float | str]] = {}
    h100 = [r for r in dec if r.hardware == "h100-sxm"]
    (eff, ovh, seq, lat), err = fit_decode(decode_terms(h100, "h100-sxm"))
    feff, n = fit_flops("h100-sxm")
    fits["h100-sxm"] = dict(bw_efficiency=round(eff, 2), flops_efficiency=round(feff, 3), step_overhead_s=round(ovh, 6),
                            seq_overhead_s=round(seq, 7), comm_latency_s=round(lat, 7),
                            calibration=f"fitted by scripts/calibrate.py: decode on {len(h100)} vllm-measured H100 "
                                        f"rows (in-sample MARE {err:.1%}); flops_efficiency from {n} Splitwise "
                                        f"compute-bound prefill rows")
    print(f"h100-sxm: decode rows {len(h100)}, in-sample mean abs rel err {err:.2%}; flops rows {n}")
    a100 = [r for r in dec if r.hardware == "a100-80g"]
    feff_a, n_a = fit_flops("a100-80g")
    if a100:
        (eff_a, _, _, _), err_a = fit_decode(decode_terms(a100, "a100-80g"), fixed=(ovh, seq, lat))
        fits["a100-80g"] = dict(bw_efficiency=round(eff_a, 2), flops_efficiency=round(feff_a or feff, 3), step_overhead_s=round(ovh, 6),
                                seq_overhead_s=round(seq, 7), comm_latency_s=round(lat, 7),
                                calibration=f"fitted by scripts/calibrate.py: bw_efficiency on {len(a100)} vllm-measured "
                                            f"A100 row(s) (MARE {err_a:.1%}), flops_efficiency from {n_a} Splitwise "
                                            f"A100 prefill rows; software overheads from the H100 fit")
        print(f"a100-80g: decode rows {len(a100)}, err {err_a:.2%}; flops rows {n_a}")
    for hid, f in fits.items():
        print(hid, {k: v for k, v in f.items() if k != "calibration"})
    if args.write:
        text = HW_FILE.read_text()
        h = fits["h100-sxm"]
        cat = builtin_catalog()
        for hid in cat.hardware:
            vals = fits.get(hid, {**h, "calibration": "borrowed from h100-sxm (no usable measurement for this part)"})
            text = _set_section(text, hid, vals)
        HW_FILE.write_text(text)
        print(f"wrote {HW_FILE}")
    return 0


def _set_section(text: str, hid: str, vals: dict) -> str:
    head = re.search(rf'^\[{re.escape(hid)}\]\s*$', text, re.M)
    if head is None:
        head = re.search(rf'^\["{re.escape(hid)}"\]\s*$', text, re.M)
    assert head, hid
    nxt = re.search(r"^\[", text[head.end():], re.M)
    end = head.end() + (nxt.start() if nxt else len(text) - head.end())
    body = text[head.end():end]
    for k, v in vals.items():
        lit = f'"{v}"' if isinstance(v, str) else repr(v)
        body, n = re.subn(rf"^{k} = .*$", f"{k} = {lit}", body, flags=re.M)
        assert n == 1, (hid, k)
    return text[:head.end()] + body + text[end:]


if __name__ == "__main__":
    sys.exit(main())
