"""A minimal progress bar on stderr, shown only on a terminal and never with --quiet."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "", enabled: bool | None = None) -> None:
        self.total = max(1, total)
        self.label = label
        self.done = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._t0 = time.monotonic()
        self._last = 0.0

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + n)
        self.set(self.done, note)

    def set(self, done: int, note: str = "") -> None:
        self.done = min(self.total, done)
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        frac = self.done / self.total
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        el = now - self._t0
        eta = el / frac - el if frac > 0 else 0.0
        sys.stderr.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {el:5.1f}s eta {eta:5.1f}s {note[:30]:<30}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


class Reporter:
    """How a long operation tells its caller what it is doing (the engine takes one; the default
    says nothing). Subclass it to route notices and progress elsewhere (a GUI, a log)."""

    def notice(self, text: str) -> None:
        """One line about a wait (compiling the engine, a plug-in on the slow driver)."""

    def progress(self, done: int, total: int, note: str = "") -> None:
        """Work done so far."""

    def close(self) -> None:
        """The operation ended."""


class ConsoleReporter(Reporter):
    """Notices on stderr; a progress bar too, on a terminal, when `bar`."""

    def __init__(self, label: str = "run", bar: bool = True) -> None:
        self.label = label
        self._bar: Progress | None = None
        self._want_bar = bar

    def notice(self, text: str) -> None:
        sys.stderr.write(f"dcsim: {text}\n")
        sys.stderr.flush()

    def progress(self, done: int, total: int, note: str = "") -> None:
        if not self._want_bar:
            return
        if self._bar is None:
            self._bar = Progress(total, self.label)
        self._bar.set(done, note)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
