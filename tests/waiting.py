"""Readiness polling for tests: wait for a condition, never for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(check: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    """True as soon as ``check()`` is, asking every ``every_s`` seconds; after ``timeout_s`` seconds, what a last
    ``check()`` says."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return check()
