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
