"""What `dcsim perf` refuses: a step that could not run on the part (one line naming the flag and
the fix, exit 2), rather than numbers for it."""

from __future__ import annotations

from typing import Any

from sim.errors import ScenarioError


def refuse_step(hw: Any, model: Any, pm: Any, tp: int, context: int, batch: int, kv_memory_fraction: float,
                power_cap_w: float | None, seqs: int) -> None:
    """Raise for weights that do not fit, a precision the part has no tensor cores for, a context
    beyond the model's or the KV cache's, a batch beyond the KV cache (`seqs` sequences of
    `context` fit), a power cap outside (0, TDP]."""
    if not 0 < kv_memory_fraction <= 1:
        raise ScenarioError("--kv-memory-fraction", f"must be in (0, 1], got {kv_memory_fraction}")
    mem = hw.memory_bytes * tp * kv_memory_fraction
    if pm.weight_bytes >= mem:
        raise ScenarioError("--tp", f"{model.id} weights ({pm.weight_bytes / 1e9:.1f} GB in {pm.dtype}) do not fit in "
                            f"{tp} x {hw.id} ({mem / 1e9:.1f} GB usable at --kv-memory-fraction "
                            f"{kv_memory_fraction:g})", "raise --tp, use a narrower --dtype, or another part")
    if pm.dtype in ("fp8", "fp4") and pm.dtype not in hw.tflops:
        raise ScenarioError("--dtype", f"{hw.id} has no {pm.dtype} tensor cores (its peaks: "
                            f"{', '.join(sorted(hw.tflops))})", "use a dtype it has, or a part with it")
    if context > model.max_context_tokens:
        raise ScenarioError("--context", f"{model.id} serves at most {model.max_context_tokens} tokens, got {context}",
                            f"give --context <= {model.max_context_tokens}")
    if seqs < 1:
        raise ScenarioError("--context", f"one sequence of {context} tokens needs "
                            f"{context * pm.group_kv_bytes_per_token / 1e9:.1f} GB of KV; {tp} x {hw.id} has room "
                            "for none after the weights", "shorten --context or raise --tp")
    if batch > seqs:
        raise ScenarioError("--batch", f"only {seqs} sequences of {context} tokens fit in the KV cache of {tp} x "
                            f"{hw.id}, got {batch}", f"give --batch <= {seqs} or raise --tp")
    if power_cap_w is not None and not 0 < power_cap_w <= hw.tdp_w:
        raise ScenarioError("--power-cap-w", f"must be in (0, {hw.tdp_w:g}] ({hw.id}'s TDP), got {power_cap_w:g}",
                            "give a cap at or below the TDP, or none")


# Legal but odd: numbers a user may not have meant, each said in one warning line (and run).
LARGEST_ENGINE_BATCH = 1024  # vLLM's max_num_seqs tops out around here in published configurations
NODE_GPUS = 8  # one NVLink/xGMI domain on the parts in the catalog (GB200 NVL72 aside)


Oddity = tuple[str, str, str]  # (flag, what is odd, the fix)


def odd_step(hw: Any, tp: int, batch: int, kv_memory_fraction: float, clock_lock: float) -> list[Oddity]:
    """(flag, what is odd, the fix) for a step that can run but is unusual enough to check."""
    out: list[Oddity] = []
    if kv_memory_fraction > 0.95:
        out.append(("--kv-memory-fraction", f"{kv_memory_fraction:g} leaves little room for activations and the "
                    "CUDA graphs (vLLM's default: 0.9)", "give 0.9 unless you measured more"))
    if batch > LARGEST_ENGINE_BATCH:
        out.append(("--batch", f"{batch} sequences per step is beyond what serving engines run "
                    f"(max_num_seqs up to about {LARGEST_ENGINE_BATCH})", "check the engine can schedule it"))
    if clock_lock < 0.5:
        out.append(("--clock-lock", f"{clock_lock:g} of the maximum clock is below the range the power model was "
                    "fitted on (extrapolated)", "give 0.5 or more"))
    if tp > NODE_GPUS and "nvl" not in hw.name.lower() and not hw.id.startswith("gb"):
        out.append(("--tp", f"TP{tp} spans more than one {NODE_GPUS}-GPU node: its all-reduce would cross the "
                    "network, which the step formula does not model (it uses the scale-up link)",
                    f"use tp <= {NODE_GPUS} (pipeline or expert parallelism across nodes)"))
    return out
