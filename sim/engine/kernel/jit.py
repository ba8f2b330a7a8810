"""How the kernel is compiled: numba's `njit` (or, without numba, the functions as they are),
and the rule that drops numba's cached machine code when any source the kernel compiles has
changed (numba keys its cache on a function's own file, but the kernel's functions inline each
other across this package and compile the step formula, the ramp model and the ledger from
sim/perf and sim/facility)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

try:
    from numba import njit as _njit

    NUMBA_ERROR: str | None = None
except ImportError as exc:  # no numba: the kernel runs as plain Python (the per-step driver only)
    NUMBA_ERROR = str(exc)
    _njit = None

PACKAGE = Path(__file__).resolve().parent
SIM = PACKAGE.parents[1]
# what the kernel compiles besides its own package
SOURCES = (SIM / "perf" / "roofline.py", SIM / "perf" / "power.py", SIM / "facility" / "ramp.py",
           SIM / "facility" / "ledger.py", SIM / "columns.py")


def njit(*args: Any, **kw: Any) -> Any:
    """numba.njit, or the identity without numba."""
    if _njit is not None:
        return _njit(*args, **kw)
    if len(args) == 1 and callable(args[0]) and not kw:
        return args[0]
    return lambda f: f


def kernel(f: Callable | None = None, *, inline: bool = False) -> Any:
    """A kernel function: compiled without reference counting (the kernel's loop allocates
    nothing, and counting references on the ~25 arrays every call passes cost a third of a run)
    and cached on disk; `inline`: numba inlines it into its callers."""
    kw: dict[str, Any] = {"cache": True, "_nrt": False}
    if inline:
        kw["inline"] = "always"
    return njit(**kw)(f) if f is not None else njit(**kw)


def sources_digest() -> str:
    """A digest of every source the compiled kernel depends on."""
    files = sorted(PACKAGE.glob("*.py")) + list(SOURCES)
    return hashlib.sha1(b"".join(p.read_bytes() for p in files)).hexdigest()


def drop_stale_cache() -> None:
    """Drop the kernel's cached machine code when any of its sources changed since it was
    written (a stale kernel was once seen running the old step formula after an edit of
    roofline.py alone)."""
    try:
        digest = sources_digest()
        cache = PACKAGE / "__pycache__"
        stamp = cache / "dcsim-kernel.sources"
        if stamp.exists() and stamp.read_text() == digest:
            return
        for f in cache.glob("*.nb[ic]"):
            f.unlink()
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # a read-only install: numba caches elsewhere, and the files do not change
        pass
