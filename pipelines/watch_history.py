"""Matching a watchlist or watchmap over the lake's history, as a background job with progress.

Every alert the lake holds (each triggering detection of ``sources``, as the live stage matches them) is read from
one lake snapshot a million rows at a time and matched with the live stage's own code (``pipelines.watch``). The
list's stored hits are then replaced in one commit (``lake.watch_hits.replace_list``), keeping the hits that live
batches committed since the snapshot: the tables end as if the list had been there when each alert arrived.

Jobs run ``settings.job_workers`` at a time in the process that submitted them (the API server, or the command
line, which waits and shows a progress bar); their state is a JSON file under ``NIGHTJAR_HOME/watch-jobs``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from nightjar import paths
from nightjar.lake import read, watch_hits
from nightjar.pipelines.watch import WatchSet, alerts_of, hits_of
from nightjar.settings import Settings
from nightjar.sql import registry, watch_registry
from nightjar.sql.job_store import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobStore

log = logging.getLogger(__name__)

KINDS = ("watchlist", "watchmap")
CHUNK_ROWS = 1_000_000
READ_COLUMNS = ["diaObjectId", "diaSourceId", "ra", "dec", "midpointMjdTai", paths.HPX29]

Progress = Callable[[int, int], None]  # (alerts done, alerts in all)


@dataclass
class HistoryResult:
    """What matching a watch list over the lake's history found."""

    alerts: int  # alerts of the lake matched
    hits: int  # hits found in them
    stored: int  # hits the list has now (with live hits committed meanwhile)


def _watch_set(settings: Settings, kind: str, list_id: int) -> WatchSet:
    db = registry.engine(settings.metadata_url)
    try:
        home = settings.catalogs
        cache = settings.watch_cache_mb << 20
        if kind == "watchlist":
            return WatchSet((watch_registry.get_watchlist(db, list_id).spec(home),), (), cache)
        return WatchSet((), (watch_registry.get_watchmap(db, list_id).spec(home),), cache)
    finally:
        db.dispose()


def match_history(
    settings: Settings,
    kind: str,
    list_id: int,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> HistoryResult:
    """Match one watchlist (``kind`` ``watchlist``) or watchmap over every alert of the lake and store its hits."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    home = settings.lake
    watch = _watch_set(settings, kind, list_id)
    table = paths.LIST_HITS[kind]
    since = read.snapshot(home).get(table)
    lake = read.datasets(home)
    sources = lake.get(paths.SOURCES)
    found: list[pa.Table] = []
    done = total = 0
    if sources is not None:
        alerts = ds.field(paths.FROM_HISTORY) == False  # noqa: E712 - a dataset expression, not a comparison
        total = sources.count_rows(filter=alerts)
        if progress is not None:
            progress(0, total)
        columns = [c for c in READ_COLUMNS if c in sources.schema.names]
        for chunk in sources.to_batches(columns=columns, filter=alerts, batch_size=CHUNK_ROWS):
            if cancelled is not None and cancelled():
                raise InterruptedError("cancelled")
            rows = pa.Table.from_batches([chunk])
            hits = hits_of(alerts_of(rows), watch)
            found.append(hits.watchlist_hits if kind == "watchlist" else hits.area_hits)
            done += chunk.num_rows
            if progress is not None:
                progress(done, total)
    schema = watch_hits.SCHEMAS[table]
    hits = pa.concat_tables(found) if found else schema.empty_table()
    stored = watch_hits.replace_list(home, table, list_id, hits, since)
    return HistoryResult(done, hits.num_rows, stored)


@dataclass
class WatchJob:
    """A background job that matches a watchlist or watchmap over the lake's history: its owner, status, progress and
    counts."""

    id: str
    kind: str  # watchlist or watchmap
    list_id: int
    owner: str = "local"
    status: str = QUEUED
    progress: float = 0.0  # percent of the lake's alerts matched
    alerts: int = 0
    total: int = 0
    hits: int = 0
    error: str | None = None
    submitted: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    started: str | None = None
    finished: str | None = None


class WatchJobManager:
    """Runs history matching jobs in the background, ``settings.job_workers`` at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JobStore(Path(settings.home) / paths.WATCH_JOBS_DIR, WatchJob, "history match")
        self.pool = ThreadPoolExecutor(settings.job_workers, thread_name_prefix="nightjar-watch")

    def submit(self, kind: str, list_id: int, owner: str = "local") -> WatchJob:
        """Queue the matching of a list over the history; its id is recorded on the list."""
        job = WatchJob(uuid.uuid4().hex[:16], kind, list_id, owner)
        self.store.add(job)
        db = registry.engine(self.settings.metadata_url)
        try:
            watch_registry.set_history_job(db, kind, list_id, job.id)
        finally:
            db.dispose()
        self.pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> WatchJob | None:
        """The job with this id; None when there is none."""
        return self.store.get(job_id)

    def cancel(self, job_id: str) -> WatchJob | None:
        """Cancel a queued or running job; the job as it is now, or None when there is none."""
        job = self.get(job_id)
        if job is not None and job.status in (QUEUED, RUNNING):
            job.status = CANCELLED
            self.store.save(job)
        return job

    def _run(self, job: WatchJob) -> None:
        if job.status == CANCELLED:
            return
        job.status, job.started = RUNNING, datetime.now(UTC).isoformat()
        self.store.save(job)
        saved = [time.monotonic()]

        def progress(done: int, total: int) -> None:
            job.alerts, job.total = done, total
            job.progress = round(100.0 * done / total, 1) if total else 0.0
            if time.monotonic() - saved[0] > 1.0:
                self.store.save(job)
                saved[0] = time.monotonic()

        try:
            result = match_history(self.settings, job.kind, job.list_id, progress, lambda: job.status == CANCELLED)
            job.hits, job.alerts, job.status, job.progress = result.hits, result.alerts, DONE, 100.0
        except InterruptedError:
            job.status = CANCELLED
        except Exception as exc:  # a background job records why it stopped
            log.exception("history match %s failed", job.id)
            job.status, job.error = FAILED, f"{type(exc).__name__}: {exc}"
        job.finished = datetime.now(UTC).isoformat()
        self.store.save(job)

    def close(self) -> None:
        """Stop the job threads, cancelling the jobs not started."""
        self.pool.shutdown(wait=True, cancel_futures=True)


def wait(manager: WatchJobManager, job_id: str, timeout_s: float = 600.0) -> WatchJob:
    """Poll until a job ends or the deadline passes (tests and the command line)."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = manager.get(job_id)
        assert job is not None
        if job.status in (DONE, FAILED, CANCELLED) or time.monotonic() > deadline:
            return job
        time.sleep(0.05)
