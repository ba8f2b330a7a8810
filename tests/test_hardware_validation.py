"""Per-precision step constants and the validation across hardware (sim/validation/hardware.py,
scripts/fit_hardware.py, docs/validation_hardware.md)."""

from __future__ import annotations

import dataclasses
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from sim.errors import ScenarioError
from sim.perf.catalog import builtin_catalog
from sim.perf.roofline import PerfModel
from sim.validation.hardware import MODELS, check, offline_rows, table

ROOT = Path(__file__).resolve().parents[1]


def test_a_precisions_own_gemm_efficiency_sets_its_compute_time():
    cat = builtin_catalog()
    h100, model = cat.hardware["h100-sxm"], cat.models["llama-3.1-70b"]
    assert h100.flops_efficiency_for("bf16") == h100.flops_efficiency  # the vLLM fit stands
    assert h100.flops_efficiency_for("fp8") < h100.flops_efficiency  # the tables: FP8 reaches less of its peak
    bf16, fp8 = (PerfModel(h100, model, tp=8, dtype=d) for d in ("bf16", "fp8"))
    # a compute-bound prefill: FP8's GEMMs are faster than BF16's, by less than its 2x peak
    c_bf16, c_fp8 = (p.prefill_cost(8192) for p in (bf16, fp8))
    assert c_bf16.t_comp_s > c_bf16.t_mem_s
    ratio = c_bf16.t_comp_s / c_fp8.t_comp_s
    want = 2.0 * h100.flops_efficiency_for("fp8") / h100.flops_efficiency
    assert 1.0 < ratio < 2.0
    assert ratio == pytest.approx(want, rel=0.15)


@pytest.mark.parametrize("table_, fix", [
    ({"fp9": 0.5}, "unknown dtype"),
    ({"fp8": 1.5}, "must be in (0, 1]"),
    ({"fp8": True}, "must be in (0, 1]"),
])
def test_a_bad_precision_table_is_one_line_naming_it(table_, fix):
    cat = builtin_catalog()
    with pytest.raises(ScenarioError) as e:
        cat.add_hardware({"h100-sxm": {"flops_efficiency_dtype": table_}}, "hardware")
    assert "flops_efficiency_dtype" in str(e.value) and fix in str(e.value)


def test_the_offline_rows_map_onto_the_catalog_and_say_what_they_leave_out():
    rows, skipped = offline_rows()
    assert len(rows) > 700
    cat = builtin_catalog()
    assert all(r.hardware in cat.hardware and r.model in cat.models for r in rows)
    assert set(MODELS.values()) <= set(cat.models)
    assert skipped["attention DP / EP"] > 0 and sum(skipped.values()) < len(rows)
    assert {r.hardware for r in rows} >= {"h100-sxm", "h200", "b200", "gb200", "a100-80g", "l40s"}


def test_a_few_rows_predict_within_a_factor_of_two_and_group():
    rows, _ = offline_rows()
    pick = [r for r in rows if (r.isl, r.osl) == (128, 128) and r.tp == 1][:4]
    from sim.validation.hardware import errors

    errs = errors(pick, n=400)
    assert len(errs) == 4 and all(math.isfinite(e["error"]) and abs(e["error"]) < 1.0 for e in errs)
    groups = table(errs)
    assert sum(g["rows"] for g in groups) == 4
    assert all(g["median_abs_error"] >= abs(g["median_signed_error"]) - 1e-12 for g in groups)


@pytest.mark.slow
def test_validate_hardware_reports_every_accelerator_with_data():
    rep = check()
    by = {g["hardware"] for g in rep["by_accelerator"]}
    assert by >= {"h100-sxm", "h200", "b200", "gb200", "a100-80g", "l40s"}
    # the errors docs/validation_hardware.md states (a change to the step model updates both)
    assert rep["overall_median_abs_error"] < 0.25
    out = subprocess.run([sys.executable, "-m", "sim", "validate", "--hardware"], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0 and "b200" in out.stdout and "median |error|" in out.stdout


def test_the_fitted_constants_are_what_the_script_derives():
    """sim/data/hardware.toml holds what scripts/fit_hardware.py derives from the shipped tables."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import fit_hardware

    cat = builtin_catalog()
    for part, row in fit_hardware.derive(cat).items():
        hw = cat.hardware[part]
        assert dict(hw.flops_efficiency_dtype) == row["flops_efficiency_dtype"], part
        assert dict(hw.allreduce_busbw_gbps) == row["allreduce_busbw_gbps"], part
        if "bw_efficiency" in row:
            assert hw.bw_efficiency == row["bw_efficiency"], part


def test_a_tp_ring_runs_at_the_measured_bus_bandwidth():
    cat = builtin_catalog()
    h100 = cat.hardware["h100-sxm"]
    assert h100.allreduce_bytes_per_s(8) == 351.7e9 and h100.allreduce_bytes_per_s(2) == 310.6e9
    assert h100.allreduce_bytes_per_s(16) == 351.7e9  # the largest measured group not above 16
    assert cat.hardware["mi300x"].allreduce_bytes_per_s(8) == cat.hardware["mi300x"].link_bytes_per_s  # none measured
    model = cat.models["llama-3.1-70b"]
    measured, peak = (PerfModel(h, model, tp=8) for h in (h100, dataclasses.replace(h100, allreduce_busbw_gbps={})))

    def per_token(p):  # the ring's bandwidth term: the comm time above one token's
        return (p.cost(513, 1024.0).t_comm_s - p.cost(1, 1024.0).t_comm_s) / 512

    assert per_token(measured) / per_token(peak) == pytest.approx(450 / 351.7, rel=1e-6)


def test_a_bad_bus_bandwidth_table_is_one_line():
    cat = builtin_catalog()
    with pytest.raises(ScenarioError) as e:
        cat.add_hardware({"h100-sxm": {"allreduce_busbw_gbps": {"one": 300}}}, "hardware")
    assert "allreduce_busbw_gbps" in str(e.value) and "group sizes" in str(e.value)


def test_ratios_match_rows_across_parts_and_compare_the_ratio():
    from sim.validation.hardware import ratios

    def row(hw, prec, pred, meas):
        return {"source": "s", "model": "m", "isl": 1, "osl": 1, "tp": 1, "hardware": hw, "precision": prec,
                "predicted_tok_s_per_accel": pred, "measured_tok_s_per_accel": meas, "error": pred / meas - 1}

    errs = [row("b200", "FP4", 300.0, 290.0), row("h200", "FP8", 100.0, 100.0),
            dict(row("h100-sxm", "FP8", 50.0, 40.0), isl=2)]  # (other lengths: not matched)
    (g,) = ratios(errs)
    assert g["parts"] == "b200 FP4 / h200 FP8" and g["rows"] == 1
    assert g["median_signed_error"] == pytest.approx(3.0 / 2.9 - 1)


def test_argonne_static_batches_map_onto_the_catalog():
    from sim.validation.argonne import batch_rows

    rows, skipped = batch_rows()
    parts = {r.hardware for r in rows}
    assert parts == {"a100-40g", "h100-sxm", "gh200", "mi300x"}
    assert {r.engine for r in rows} == {"vllm", "trtllm"}
    assert skipped["other part"] > 0 and skipped["model not in the catalog"] > 0
    cat = builtin_catalog()
    assert all(r.model in cat.models and r.hardware in cat.hardware for r in rows)


def test_an_argonne_batch_runs_as_offline_closed_loop_clients():
    """A static batch: every request sent at 0 by its own client, the batch's output rate over
    its last completion; on GH200 with TensorRT-LLM (H100 constants, the same die) within 10%
    of the measured batches (median over the bench's 60 rows)."""
    from sim.validation import argonne

    rows = [r for r in argonne.batch_rows()[0] if r.hardware == "gh200" and r.engine == "trtllm"]
    assert len(rows) == 60
    raw = argonne.scenario(rows[0])
    assert raw["workload"]["concurrency"] == raw["workload"]["num_requests"] == rows[0].batch
    errs = [argonne.predict(r) / r.measured_tok_s - 1 for r in rows]
    assert statistics.median(abs(e) for e in errs) < 0.10


def test_validate_hardware_source_argonne_from_the_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sim", "validate", "--hardware", "--source", "argonne", "--data",
                          str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--data" in out.stderr


def test_inferencex_rows_run_as_closed_loop_clients():
    """InferenceX's single-node rows without MTP: CONC clients, 10 x CONC requests, lengths in
    [0.8, 1] x nominal; dp_attention maps to attention data-parallel (tp 1 with ep 8)."""
    from sim.validation import inferencex

    rows, skipped = inferencex.serving_rows()
    assert len(rows) > 400 and skipped["speculative decoding"] > 0 and skipped["disaggregated or multi-node"] > 0
    assert {r.hardware for r in rows} == {"h200", "b200", "mi300x", "mi355x"}
    assert any(r.tp == 1 and r.ep == 8 for r in rows) and any(r.tp == 8 and r.ep == 1 for r in rows)
    row = next(r for r in rows if r.hardware == "h200" and r.engine == "trtllm" and r.conc == 64)
    wl = inferencex.scenario(row)["workload"]
    assert wl["concurrency"] == 64 and wl["num_requests"] == 640
    assert wl["output_tokens"] == {"dist": "uniform", "min": int(0.8 * row.osl), "max": row.osl}
    thr, tpot = inferencex.predict(row)
    assert 0.5 < thr / row.measured_out_tok_s_per_gpu < 2.0 and 0.5 < tpot / row.measured_tpot_s < 2.0


def test_the_mi300x_fit_is_what_the_script_derives():
    """scripts/fit_amd.py's grid point on AMD's static batches is the catalog's (the script's
    leave-one-model-out error is quoted in the calibration note)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import fit_amd

    rows = fit_amd.static_rows()
    assert len(rows) == 32
    mi = builtin_catalog().hardware["mi300x"]
    shipped = fit_amd.errors(rows, mi.bw_efficiency, mi.seq_overhead_s)
    borrowed = fit_amd.errors(rows, 0.78, 0.0)
    med = statistics.median(abs(e) for e in shipped)
    assert med < 0.05 < statistics.median(abs(e) for e in borrowed)
    assert "fit_amd.py" in mi.calibration and builtin_catalog().hardware["mi325x"].bw_efficiency == mi.bw_efficiency


def test_the_moe_layer_term_is_the_engines_and_only_moe_models_pay_it():
    from sim.perf.engines import engine_constants

    cat = builtin_catalog()
    h200 = cat.hardware["h200"]
    per_layer = engine_constants("sglang").moe_layer_overhead_s
    assert per_layer == engine_constants("trtllm").moe_layer_overhead_s > 0.0
    assert engine_constants("vllm").moe_layer_overhead_s == 0.0
    r1 = cat.models["deepseek-r1"]
    step = {e: PerfModel(h200, r1, tp=8, dtype="fp8", engine=e).decode_cost(4, 4096.0).t_s for e in ("vllm", "sglang")}
    assert step["sglang"] - step["vllm"] == pytest.approx(per_layer * r1.moe_layers, rel=1e-6)
    dense = cat.models["llama-3.1-70b"]
    d = {e: PerfModel(h200, dense, tp=8, dtype="fp8", engine=e).decode_cost(4, 4096.0).t_s for e in ("vllm", "sglang")}
    assert d["sglang"] == d["vllm"]
