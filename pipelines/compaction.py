"""The lake's background compaction while ``nightjar run`` ingests: one run at a time, each in a process of its
own at a lower CPU priority.

``lake.maintain.optimize`` rewrites only partitions with small or overlapping files, and folds ``objects`` to each
object's newest state when enough states are pending (``lake.fold``: geometric, so its cost per batch stays flat);
appends never conflict with either, so ingestion does not wait for it.

It used to run on a Dask worker, in the worker's bulk slot. That slot is also where the worker fetches and decodes
its next batch, and batches commit in order, so every batch behind waited for the compaction to end: after 40,000
heavy alerts the last batches of a 60 s latency run stalled ~17 s (latency p99 21.7 s). Niced in a process of its
own, it takes the CPU the batches leave, and the memory it needs (a partition being z-ordered) goes back to the
system when it ends instead of staying in a worker's heap. It runs where ``nightjar run`` runs, which reads and
writes the lake already (the ledger, the lake's log).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor

from nightjar.lake import maintain
from nightjar.storage import Home

log = logging.getLogger(__name__)

# How much lower than ``nightjar run`` a compaction runs (``nice``): a weight of ~1/10 of the batches' under
# Linux's scheduler, so it slows them little when the cores are busy and takes them whole when they are idle.
NICENESS = 10
# Files it rewrites at once: one. On the lake of a default ``nightjar bench pipeline`` (40,000 heavy alerts, not
# compacted), one at a time peaked at 1.8 GB of RSS and took 12.5 s; one per core, 3.0 GB and 11.0 s.
CONCURRENCY = 1


def compact_niced(home: Home, niceness: int) -> tuple[list[maintain.OptimizeReport], int]:
    """Lower this process's priority by ``niceness``, then compact the lake one file at a time; the reports and the
    niceness it ran at."""
    ran_at = os.nice(niceness)
    return maintain.optimize(home, concurrency=CONCURRENCY), ran_at


class BackgroundCompaction:
    """Compacts the lake under ``home`` in the background, one run at a time, each in a new niced process."""

    def __init__(self, home: Home, niceness: int = NICENESS) -> None:
        self.home = home
        self.niceness = niceness
        self.future: Future[tuple[list[maintain.OptimizeReport], int]] | None = None
        self.runs = 0
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start a compaction unless one is still running (reporting the previous one's failure)."""
        if self.future is not None and not self.future.done():
            return  # the previous compaction is still running
        self.wait()
        # A process per run (spawned: the driver has threads and a Kafka client, which a fork would copy).
        self._executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self.future = self._executor.submit(compact_niced, self.home, self.niceness)
        self.runs += 1

    def poll(self) -> None:
        """End a compaction that finished (its process exits), without waiting for one under way."""
        if self.future is not None and self.future.done():
            self.wait()

    def wait(self) -> None:
        """Wait for the running compaction, if any; a failure is logged, not raised."""
        if self.future is None:
            return
        try:
            reports, _ = self.future.result()
            log.debug("background compaction: %s", reports)
        except Exception as exc:  # compaction is an optimisation: the lake is intact, say so and go on
            log.warning("background compaction failed: %s", exc)
        finally:
            self.future = None
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None
