"""User-facing errors: each names the offending field and how to fix it."""

from __future__ import annotations


class ScenarioError(ValueError):
    """Bad input in a scenario, catalog or command line.

    The CLI prints ``str(err)`` on one line and exits with code 2; no traceback.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{field}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)
