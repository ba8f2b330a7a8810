"""The test session: the engine compiled once, before the tests (tests/helpers.py holds what the
tests share)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from helpers import ...`


def pytest_sessionstart(session):
    """Compile the engine once, in the foreground, before the tests (a cold cache would otherwise
    run small runs on the interpreted kernel while a background process compiles it: correct, but
    the suite's timing would depend on that race). Its own tests force each kernel."""
    from sim.engine.warmup import warm_up

    warm_up()
