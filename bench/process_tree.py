"""The process tree a benchmark measures: its summed RSS, sampled in a thread, and its CPU time."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import psutil


class TreeSampler:
    """Samples the summed RSS of a process and all its descendants (and of extra pids) in a thread; reads their
    summed CPU time on demand.

    Finding the descendants walks all of ``/proc`` (tens of milliseconds of CPU, taken from the pipeline being
    measured on a small machine), so the tree is refreshed every ``tree_every_s``; each sample between refreshes
    reads only the known processes' memory.
    """

    def __init__(self, interval_s: float = 0.5, tree_every_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.tree_every_s = tree_every_s
        self.extra: set[int] = set()  # the embedded broker: sampled, and also left out of ``peak_own_bytes``
        self.peak_bytes = 0
        self.peak_own_bytes = 0  # without the extra processes
        self._extras: set[int] = set()
        self._procs: dict[int, psutil.Process] = {}
        self._tree_at = -float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _tree(self) -> dict[int, psutil.Process]:
        me = psutil.Process()
        procs = {me.pid: me}
        for p in me.children(recursive=True):
            procs[p.pid] = p
        self._extras = set()
        for pid in self.extra:
            try:
                p = psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
            procs[pid] = p
            self._extras.add(pid)
            for child in p.children(recursive=True):
                procs[child.pid] = child
                self._extras.add(child.pid)
        return procs

    def sample(self, refresh: bool = True) -> int:
        """The tree's RSS now (``refresh``: find the processes again first)."""
        if refresh or time.monotonic() - self._tree_at >= self.tree_every_s:
            self._procs = self._tree()
            self._tree_at = time.monotonic()
        own, extras = self._summed(lambda p: p.memory_info().rss)
        self.peak_bytes = max(self.peak_bytes, int(own + extras))
        self.peak_own_bytes = max(self.peak_own_bytes, int(own))
        return int(own + extras)

    def cpu_seconds(self) -> tuple[float, float]:
        """User + system CPU seconds used so far by the tree, then by the extra processes (found again first)."""
        self._procs = self._tree()
        self._tree_at = time.monotonic()
        return self._summed(_cpu_seconds)

    def _summed(self, measure: Callable[[psutil.Process], float]) -> tuple[float, float]:
        """``measure`` summed over the known processes but the extra ones, then over the extra ones (a process gone
        meanwhile counts nothing)."""
        own = extras = 0.0
        for pid, p in self._procs.items():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if pid in self._extras:
                    extras += measure(p)
                else:
                    own += measure(p)
        return own, extras

    def reset_peak(self) -> int:
        """Start a new peak from the tree's RSS now; returns the peak so far."""
        before = self.peak_bytes
        self.peak_bytes = self.peak_own_bytes = 0
        self.sample()
        return before

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample(refresh=False)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system
