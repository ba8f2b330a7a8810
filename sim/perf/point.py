"""`dcsim perf` (and `sim.api.perf`): one decode step (and a prefill) of a model on a part, from
the one step formula (sim/perf/roofline.py), refused in one line where it could not run
(sim/perf/refusals.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError, warn
from sim.perf.catalog import builtin_catalog, load_catalog_file
from sim.perf.engines import engine_names
from sim.perf.refusals import odd_step, refuse_step
from sim.perf.roofline import PerfModel


@dataclass(frozen=True)
class PerfQuery:
    """What `dcsim perf` is asked (its flags, by the same names)."""

    hardware: str
    model: str
    tp: int = 1
    batch: int = 1
    context: int = 1024  # tokens in KV per sequence
    prompt: int | None = None  # prompt tokens: adds prefill_s
    dtype: str = "bf16"
    kv_dtype: str | None = None
    kv_memory_fraction: float = 0.9
    engine: str = "vllm"
    block_size: int = 16
    catalog: str | None = None  # extra TOML file with [hardware.<id>] / [models.<id>] tables
    clock_lock: float = 1.0
    power_cap_w: float | None = None


def perf_point(q: PerfQuery) -> dict[str, Any]:
    """The step's figures (the keys `dcsim perf --json` prints); ScenarioError naming the flag for
    what cannot run."""
    cat = builtin_catalog()
    if q.catalog:
        load_catalog_file(cat, Path(q.catalog))
    hw = cat.get_hardware(q.hardware, "--hardware")
    model = cat.get_model(q.model, "--model")
    for name in ("tp", "batch", "context"):
        if getattr(q, name) < 1:
            raise ScenarioError(f"--{name}", f"must be >= 1, got {getattr(q, name)}")
    model.check_tp(q.tp, "--tp")
    if not 0 < q.clock_lock <= 1:
        raise ScenarioError("--clock-lock", f"must be in (0, 1] (a fraction of the part's maximum clock), "
                            f"got {q.clock_lock}")
    engines = sorted(engine_names())
    if q.engine not in engines:
        raise ScenarioError("--engine", f"unknown engine {q.engine!r}", f"use one of {', '.join(engines)}")
    pm = PerfModel(hw, model, q.tp, q.dtype, q.kv_dtype, q.clock_lock, engine=q.engine)
    blocks = pm.kv_blocks(q.kv_memory_fraction, q.block_size)
    per_seq = math.ceil(q.context / q.block_size)
    refuse_step(hw, model, pm, q.tp, q.context, q.batch, q.kv_memory_fraction, q.power_cap_w,
                max(0, blocks // per_seq))
    for flag, what, fix in odd_step(hw, q.tp, q.batch, q.kv_memory_fraction, q.clock_lock):
        warn(flag, what, fix)
    dec = pm.decode_cost(q.batch, q.context)
    out: dict[str, Any] = {
        "hardware": hw.id, "model": model.id, "tp": q.tp, "dtype": pm.dtype, "kv_dtype": pm.kv_dtype,
        "engine": q.engine,
        "batch": q.batch, "context": q.context,
        "decode_step_s": dec.t_s,
        "decode_tokens_per_s": q.batch / dec.t_s,
        "bound": dec.bound,
        "decode_breakdown_s": {"memory": dec.t_mem_s, "compute": dec.t_comp_s, "comm": dec.t_comm_s,
                               "overhead": dec.t_overhead_s},
        "weights_bytes": pm.weight_bytes,
        "kv_bytes_per_token": pm.kv_bytes_per_token,
        "kv_capacity_tokens": max(0, blocks) * q.block_size,
        "max_sequences_in_kv": max(0, blocks // per_seq),
        "fits": True,  # refuse_step refused a model that does not fit
        "params_total": model.total_params,
        "params_active": model.active_params,
    }
    if q.clock_lock < 1:
        out["clock_lock"] = q.clock_lock
    cap = q.power_cap_w
    if cap is not None and not (0 < cap):
        raise ScenarioError("--power-cap-w", f"must be > 0, got {cap}")
    dp = pm.step_power(q.batch, float(q.batch) * q.context, n_seq=q.batch, cap_w=cap)
    out["power_w"] = dp.power_w
    # wall power of the replica: its accelerators in this step and their hosts' share (the catalog's
    # node figures; sim/perf/power.py host_power_w: assumed shares of a system spec)
    out["host_w_per_accel"] = hw.host_w_per_accel
    out["node_power_w"] = q.tp * (dp.power_w + hw.host_w_per_accel)
    out["node_idle_w"] = q.tp * (hw.idle_w + hw.host_idle_w_per_accel)
    out["decode_tokens_per_s_per_node_kw"] = q.batch / dp.t_s / (out["node_power_w"] / 1000.0)
    if cap is not None and dp.power_w > cap * (1 + 1e-9):
        raise ScenarioError("--power-cap-w", f"{cap:g} W is below what {hw.id} draws in this decode step even at its "
                            f"lowest clock ({dp.power_w:.1f} W)", f"give at least {math.ceil(dp.power_w)} W")
    if cap is not None:
        out["power_cap_w"] = cap
        out["clock_factor"] = dp.clock
        out["decode_step_uncapped_s"] = dec.t_s
        out["decode_step_s"] = dp.t_s
        out["decode_tokens_per_s"] = q.batch / dp.t_s
        out["decode_tokens_per_s_per_node_kw"] = q.batch / dp.t_s / (out["node_power_w"] / 1000.0)
    if q.prompt is not None:
        if q.prompt < 1:
            raise ScenarioError("--prompt", f"must be >= 1, got {q.prompt}")
        pre = pm.prefill_cost(q.prompt)
        pairs = q.prompt * (q.prompt + 1) / 2.0
        pp = pm.step_power(0, 0.0, q.prompt, 0.0, pairs, 1, cap)
        out["prefill_s"] = pp.t_s
        out["prefill_bound"] = pre.bound
        out["prefill_power_w"] = pp.power_w
        if cap is not None:
            out["prefill_clock_factor"] = pp.clock
            out["prefill_uncapped_s"] = pre.t_s
        bpairs = q.batch * pairs
        out["prefill_batch_s"] = pm.step_power(0, 0.0, q.batch * q.prompt, 0.0, bpairs, q.batch, cap).t_s
    out["calibration_status"] = hw.calibration_status  # a profile from dcsim calibrate: "measured"
    return out
