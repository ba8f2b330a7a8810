"""Which kernel a run uses: the package sim/engine/kernel compiled by numba (cached on disk), or,
while that cache is cold, the same package loaded a second time with the JIT off (the very same
functions run as plain Python: the same results bit for bit) for small runs, while a detached
process compiles it in the background. Also the warm-up that compiles every entry point."""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import sim.engine.kernel as _pkg
from sim.engine.kernel.jit import NUMBA_ERROR, PACKAGE

MODULES = ("layout", "heap", "cache_index", "step", "queues", "kv", "lifecycle", "plan", "advance", "route", "handoff",
           "loop", "clients", "shared", "tally", "verify")
# the entry points each driver calls from Python (module, function): what must be compiled
ENTRY_POINTS = (("loop", "run_until"), ("clients", "run_closed"), ("clients", "pop_client"),
                ("shared", "run_shared"), ("shared", "to_shared"), ("tally", "in_system"),
                ("tally", "ledger_walk"), ("step", "bin_energy"), ("lifecycle", "evacuate"),
                ("lifecycle", "enqueue"), ("lifecycle", "set_rest"), ("lifecycle", "wake"),  # the fast driver's
                ("lifecycle", "commit"), ("plan", "plan"), ("lifecycle", "sleep"), ("step", "idle_until"),
                ("lifecycle", "cancel"), ("route", "route_current"), ("route", "arrival_check"),
                ("handoff", "handoff_route"), ("handoff", "handoff_arrive"), ("handoff", "begin_transfer"),
                ("handoff", "prefilled"), ("handoff", "fail"), ("loop", "reject"),  # the per-step driver's
                ("plan", "plan_limited"), ("plan", "launch"), ("queues", "q_head"), ("kv", "peek_hits"),
                ("plan", "admit"), ("kv", "grow"),  # a plug-in scheduler's
                ("loop", "row_floor"), ("cache_index", "kc_rehash"),  # buffers, the prefix index
                ("verify", "verify_chunk"))  # speculative decoding's draws

COMPILE_NOTICE = "compiling the simulation engine for this machine (once; a minute or two)..."
INTERPRET_NOTICE = ("the simulation engine is not compiled for this machine yet: this small run interprets it "
                    "(the same results), while a background process compiles it (a minute or two) for the next runs")
INTERPRET_MAX_REQUESTS = 20_000  # a cold cache: runs up to this size interpret the kernel


def _namespace(prefix: str) -> SimpleNamespace:
    """Every name of the kernel's modules in one namespace (what the drivers call `m`)."""
    ns = SimpleNamespace()
    for name in MODULES:
        mod = sys.modules[f"{prefix}.{name}"]
        for k, v in vars(mod).items():
            if not k.startswith("__"):
                setattr(ns, k, v)
    ns.__file__ = str(PACKAGE)
    return ns


def compiled() -> Any:
    """The kernel, compiled (numba), as one namespace of its functions and names."""
    global _COMPILED
    if _COMPILED is None:
        for name in MODULES:
            importlib.import_module(f"sim.engine.kernel.{name}")
        _COMPILED = _namespace("sim.engine.kernel")
        _COMPILED.interpreted = NUMBA_ERROR is not None
    return _COMPILED


_COMPILED: Any = None
_PLAIN: Any = None


def plain() -> Any:
    """The kernel package loaded a second time with numba's JIT off: the kernel as plain Python.
    Its modules import each other by absolute name, so they are loaded while the compiled
    package's entries are out of sys.modules, then put back."""
    global _PLAIN
    if NUMBA_ERROR is not None:
        return compiled()  # already plain Python
    if _PLAIN is None:
        import numba

        compiled()  # (the compiled package loaded first: its modules are the ones put back)
        pre = "sim.engine.kernel"
        saved = {k: v for k, v in sys.modules.items() if k == pre or k.startswith(pre + ".")}
        for k in saved:
            del sys.modules[k]
        config: Any = numba.config  # (its settings are set at import: mypy cannot see them)
        old = config.DISABLE_JIT
        config.DISABLE_JIT = True
        try:
            for name in MODULES:
                importlib.import_module(f"{pre}.{name}")
            ns = _namespace(pre)
        finally:
            config.DISABLE_JIT = old
            for k in [k for k in sys.modules if k == pre or k.startswith(pre + ".")]:
                del sys.modules[k]
            sys.modules.update(saved)
            sys.modules["sim.engine"].kernel = _pkg  # type: ignore[attr-defined]
        ns.interpreted = True
        _PLAIN = ns
    return _PLAIN


_FOUND = False  # the cache was found complete in this process (it stays so: no need to look again)


def cached() -> bool:
    """Whether numba has every entry point of the kernel compiled on disk for this source (next
    to the package, or in the user cache where the package folder is read-only)."""
    global _FOUND
    if _FOUND or NUMBA_ERROR is not None:
        return True  # (without numba there is nothing to compile)
    try:
        for mod, fn in ENTRY_POINTS:
            f = getattr(importlib.import_module(f"sim.engine.kernel.{mod}"), fn)
            if len(f._cache._cache_file._load_index()) == 0:  # numba internals
                return False
        _FOUND = True
    except AttributeError:  # another numba: look for the index files
        _FOUND = any((PACKAGE / "__pycache__").glob("loop.run_until-*.nbi"))
    return _FOUND


def build_in_background() -> bool:
    """Start a detached process that compiles the engine into numba's cache (once: a lock file
    that is less than 10 minutes old means one is running). True if one was started."""
    import subprocess

    try:
        from sim.engine.kernel.loop import run_until

        where = Path(run_until._cache._cache_path)
    except AttributeError:
        where = PACKAGE / "__pycache__"
    lock = where / "dcsim-build.lock"
    try:
        where.mkdir(parents=True, exist_ok=True)
        if lock.exists() and time.time() - lock.stat().st_mtime < 600:
            return False
        lock.write_text(str(os.getpid()))
        code = ("import pathlib\n"
                "from sim.engine.warmup import build_compiled\n"
                f"try:\n    build_compiled()\nfinally:\n    pathlib.Path({str(lock)!r}).unlink(missing_ok=True)\n")
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(os.environ, DCSIM_KERNEL="compiled"),
        )
        return True
    except OSError:
        return False


def kernel_mode(n_requests: int) -> str:
    """"compiled" or "interpreted" for a run of n requests: DCSIM_KERNEL forces one; otherwise
    the compiled kernel if it is on disk or the run is large, else the interpreted one."""
    forced = os.environ.get("DCSIM_KERNEL", "")
    if forced in ("compiled", "interpreted"):
        return forced
    return "compiled" if (n_requests > INTERPRET_MAX_REQUESTS or cached()) else "interpreted"


def kernel_for(n_requests: int, report: Any) -> Any:
    """The kernel a run of n requests uses: compiled, or interpreted on a cold cache for a small
    run (saying so through the run's reporter, and starting the background build)."""
    was_cached = cached()
    if kernel_mode(n_requests) == "interpreted":
        if not was_cached:  # (not when DCSIM_KERNEL forces the interpreter on a warm cache)
            report.notice(INTERPRET_NOTICE)
            build_in_background()
        return plain()
    if not was_cached:
        report.notice(COMPILE_NOTICE)
    return compiled()
