"""User-facing errors: each names the offending field and how to fix it."""

from __future__ import annotations

import warnings


class ScenarioError(ValueError):
    """Bad input in a scenario, catalog or command line.

    The CLI prints ``str(err)`` on one line and exits with code 2; no traceback.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(field, problem, fix)  # args rebuild it (SimPy re-raises a copy; pickling)

    def __str__(self) -> str:
        msg = f"{self.field}: {self.problem}"
        if self.fix:
            msg += f" (fix: {self.fix})"
        return msg


class DcsimWarning(UserWarning):
    """Legal but suspicious input (a key with no effect, a truncated trace). The CLI prints each
    as one line on stderr; scripts see Python warnings."""


def warn(field: str, problem: str, fix: str = "") -> None:
    """Warn once about `field`, in the same shape as a ScenarioError."""
    warnings.warn(str(ScenarioError(field, problem, fix)), DcsimWarning, stacklevel=3)
