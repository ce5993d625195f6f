"""Long static queries as jobs: submitted, run in the background, followed, and fetched as Parquet.

A job's SQL is checked when it is submitted (a bad query is refused at once); it then runs in a worker thread
with the job limits (longer time, more rows), streaming its result into ``NIGHTJAR_HOME/jobs/<id>.parquet``.
Each job's state is also a small JSON file beside it, so finished jobs outlive the process that ran them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from nightjar import paths
from nightjar.settings import Settings
from nightjar.sql import engine, sandbox
from nightjar.sql.job_store import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobStore
from nightjar.sql.parse import QueryError, QueryTimeout, clean_message

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A query job: its SQL and lake version or time, owner, status, progress, rows, error and times."""

    id: str
    sql: str
    as_of: str | None
    owner: str = "local"
    status: str = QUEUED
    progress: float = 0.0  # percent, as DuckDB estimates it
    rows: int = 0
    error: str | None = None
    submitted: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    started: str | None = None
    finished: str | None = None


class JobManager:
    """Runs submitted queries ``settings.job_workers`` at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JobStore(Path(settings.home) / paths.JOBS_DIR, Job, "job")
        self.pool = ThreadPoolExecutor(settings.job_workers, thread_name_prefix="nightjar-job")
        self.running: dict[str, sandbox.Sandbox] = {}
        self.lock = self.store.lock

    def result_path(self, job_id: str) -> Path:
        """The Parquet file of a job's result."""
        return self.store.folder / f"{job_id}.parquet"

    def _save(self, job: Job) -> None:
        self.store.save(job)

    def submit(self, sql: str, as_of: str | None = None, owner: str = "local", viewer: str | None = None) -> Job:
        """Check ``sql`` and queue it for ``owner``; a QueryError now if it cannot run. ``viewer``: the hits of
        watchlists it may not see are hidden (``engine.lake_views``)."""
        when = engine.parse_as_of(as_of)
        box = sandbox.connect(engine.lake_views(self.settings, when), engine.limits(self.settings))
        try:
            checked = sandbox.check(box, sql).sql
            sandbox.confine(box, checked)  # the plan wall too, so that a refused query is refused now
        finally:
            box.close()
        job = Job(uuid.uuid4().hex[:16], checked, as_of, owner)
        self.store.add(job)
        self.pool.submit(self._run, job, viewer)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id; None when there is none."""
        return self.store.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (interrupting its query); the job as it is now, or None when there is none."""
        job = self.get(job_id)
        if job is None or job.status not in (QUEUED, RUNNING):
            return job
        job.status = CANCELLED
        with self.lock:
            box = self.running.get(job_id)
        if box is not None:
            box.con.interrupt()
        self._save(job)
        return job

    def _run(self, job: Job, viewer: str | None = None) -> None:
        if job.status == CANCELLED:
            return
        lim = engine.limits(self.settings, timeout_s=self.settings.job_timeout_s, max_rows=self.settings.job_max_rows)
        job.status, job.started = RUNNING, datetime.now(UTC).isoformat()
        self._save(job)
        partial = self.result_path(job.id).with_suffix(".partial")
        try:
            box = sandbox.connect(engine.lake_views(self.settings, engine.parse_as_of(job.as_of), viewer), lim)
        except Exception as exc:  # the lake changed under the job (a version no longer readable…)
            self._finish(job, FAILED, f"cannot open the lake: {exc}")
            return
        with self.lock:
            self.running[job.id] = box
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(job, box, stop), daemon=True)
        watcher.start()
        try:
            with sandbox.watchdog(box.con, lim.timeout_s) as fired:
                try:
                    # confined again: this run's views (the viewer's, at the job's version) are not the check's
                    reader = box.con.sql(box.runnable(job.sql)).to_arrow_reader(100_000)
                    with pq.ParquetWriter(partial, reader.schema) as writer:
                        for batch in reader:
                            job.rows += batch.num_rows
                            if job.rows > lim.max_rows:
                                raise QueryError(f"the result has more than {lim.max_rows} rows: narrow the query")
                            writer.write_batch(batch)
                except duckdb.Error as exc:
                    if job.status == CANCELLED:
                        raise QueryError("cancelled") from None
                    if fired.is_set():
                        raise QueryTimeout(lim.timeout_s) from None
                    raise QueryError(clean_message(str(exc))) from None
            partial.replace(self.result_path(job.id))
            self._finish(job, DONE, None)
        except QueryError as exc:
            partial.unlink(missing_ok=True)
            self._finish(job, CANCELLED if job.status == CANCELLED else FAILED, str(exc))
        finally:
            stop.set()
            with self.lock:
                self.running.pop(job.id, None)
            box.close()

    def _watch(self, job: Job, box: sandbox.Sandbox, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            if job.status == CANCELLED:  # again and again: a cancel may come before the query has started
                box.con.interrupt()
                continue
            try:
                progress = box.con.query_progress()
            except duckdb.Error:
                continue
            if progress >= 0:
                job.progress = round(float(progress), 1)

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        job.status, job.error = status, error
        job.finished = datetime.now(UTC).isoformat()
        if status == DONE:
            job.progress = 100.0
        self._save(job)
        log.info("job %s %s: %d rows%s", job.id, status, job.rows, f" ({error})" if error else "")

    def close(self) -> None:
        """Cancel the running jobs and stop the job threads, cancelling the jobs not started."""
        for job_id in list(self.running):
            self.cancel(job_id)
        self.pool.shutdown(wait=True, cancel_futures=True)


def wait(manager: JobManager, job_id: str, timeout_s: float = 60.0) -> Job:
    """Poll until a job ends (for tests and the command line)."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = manager.get(job_id)
        if job is None or job.status in (DONE, FAILED, CANCELLED) or time.monotonic() > deadline:
            assert job is not None
            return job
        time.sleep(0.1)
