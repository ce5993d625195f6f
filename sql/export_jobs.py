"""Bulk exports as background jobs: a table and a selection in, Parquet files and a manifest out.

A selection is a night, a HEALPix pixel, a cone, an MJD range or a SQL query. Nights and pixels are table scans
(partition and statistics pruning, :mod:`nightjar.sql.export`); cones and MJD ranges become sandboxed SQL over
the table's view (``in_cone``, the table's time column), checked when the export is submitted, as SQL is. Each
export is written under ``NIGHTJAR_HOME/exports/<id>/`` all or nothing; its state is a JSON file beside it, so
finished exports outlive the process that made them.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from nightjar import paths
from nightjar.lake import access
from nightjar.settings import Settings
from nightjar.sql import engine, sandbox, views
from nightjar.sql.export import MANIFEST, ExportError, Selection, export, parse_healpix
from nightjar.sql.job_store import DONE, FAILED, QUEUED, RUNNING, JobStore
from nightjar.sql.parse import clean_message

log = logging.getLogger(__name__)

# The time column an MJD range selects on, per view.
TIME_COLUMNS = {
    views.SOURCES: "midpointMjdTai",
    views.FORCED_SOURCES: "midpointMjdTai",
    views.OBJECTS: "lastAlertMjdTai",
}


@dataclass(frozen=True)
class ExportSpec:
    """What to export: ``table`` and exactly one selection."""

    table: str
    night: int | None = None
    healpix: str | None = None  # "ORDER/PIXEL"
    cone: tuple[float, float, float] | None = None  # ra, dec (degrees), radius (arcsec)
    mjd: tuple[float, float] | None = None  # [start, end)
    sql: str | None = None

    def selection(self) -> Selection:
        """The lake export's selection; an ExportError that says what is wrong otherwise."""
        given = [k for k in ("night", "healpix", "cone", "mjd", "sql") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ExportError("select exactly one of night, healpix, cone, mjd or sql")
        access.check_table_name(self.table)
        if self.night is not None:
            return Selection(night=self.night)
        if self.healpix is not None:
            return Selection(healpix=parse_healpix(self.healpix))
        if self.sql is not None:
            return Selection(sql=self.sql)
        if self.table not in views.VIEW_NAMES:
            raise ExportError(f"table {self.table!r} has no view to select a cone or time range on")
        if self.cone is not None:
            ra, dec, radius = self.cone
            if not (0 <= ra < 360 and -90 <= dec <= 90 and 0 < radius <= 3600 * 10):
                raise ExportError("a cone needs 0 <= ra < 360, -90 <= dec <= 90 and 0 < radius <= 36000 arcsec")
            return Selection(sql=f"SELECT * FROM {self.table} WHERE in_cone(ra, dec, {ra!r}, {dec!r}, {radius!r})")
        assert self.mjd is not None
        start, end = self.mjd
        column = TIME_COLUMNS.get(self.table)
        if column is None:
            raise ExportError(f"table {self.table!r} has no time column; MJD ranges select {', '.join(TIME_COLUMNS)}")
        if not start < end:
            raise ExportError(f"the MJD range must end after it starts ({start} to {end})")
        return Selection(sql=f"SELECT * FROM {self.table} WHERE {column} >= {start!r} AND {column} < {end!r}")


@dataclass
class ExportJob:
    """An export job: its owner, table and selection, status, rows, the files written (rows, bytes, SHA-256), and
    times."""

    id: str
    owner: str
    table: str
    selection: dict[str, Any]
    status: str = QUEUED
    rows: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    submitted: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished: str | None = None


class ExportManager:
    """Runs submitted exports ``settings.job_workers`` at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JobStore(Path(settings.home) / paths.EXPORTS_DIR, ExportJob, "export")
        self.pool = ThreadPoolExecutor(settings.job_workers, thread_name_prefix="nightjar-export")

    def out_dir(self, job_id: str) -> Path:
        """The folder of an export's files."""
        return self.store.folder / job_id

    def _save(self, job: ExportJob) -> None:
        self.store.save(job)

    def submit(self, spec: ExportSpec, owner: str, viewer: str | None = None) -> ExportJob:
        """Check the selection (SQL in the sandbox, without running it) and queue the export. ``viewer``: the
        hits of watchlists it may not see are hidden from its SQL (``engine.lake_views``)."""
        selection = spec.selection()
        if selection.sql is not None:
            box = sandbox.connect(engine.lake_views(self.settings), engine.limits(self.settings))
            try:
                checked = sandbox.check(box, selection.sql)
                sandbox.confine(box, checked.sql)  # the plan wall: a refused query is refused now, not when run
                try:
                    box.con.sql(checked.sql)  # binds (unknown columns, types) without running the query
                except duckdb.Error as exc:
                    raise sandbox.QueryError(clean_message(str(exc))) from None
            finally:
                box.close()
        described = {k: v for k, v in asdict(spec).items() if v is not None and k != "table"}
        job = ExportJob(uuid.uuid4().hex[:16], owner, spec.table, described)
        self.store.add(job)
        self.pool.submit(self._run, job, selection, viewer)
        return job

    def get(self, job_id: str) -> ExportJob | None:
        """The export with this id; None when there is none."""
        return self.store.get(job_id)

    def file_path(self, job: ExportJob, name: str) -> Path | None:
        """A file of a finished export by name (the manifest or one of its Parquet files), else None."""
        if job.status != DONE or name not in {MANIFEST, *(f["name"] for f in job.files)}:
            return None
        return self.out_dir(job.id) / name

    def _run(self, job: ExportJob, selection: Selection, viewer: str | None = None) -> None:
        job.status = RUNNING
        self._save(job)
        try:
            manifest = export(self.settings, job.table, selection, self.out_dir(job.id), viewer=viewer)
            job.rows, job.files, job.status = manifest["rows"], manifest["files"], DONE
        except (ExportError, access.LakeError, sandbox.QueryError) as exc:
            job.status, job.error = FAILED, str(exc)
        except Exception as exc:  # a background job must record why it stopped
            log.exception("export %s failed", job.id)
            job.status, job.error = FAILED, f"export failed: {exc}"
        job.finished = datetime.now(UTC).isoformat()
        self._save(job)

    def close(self) -> None:
        """Stop the export threads, cancelling the exports not started."""
        self.pool.shutdown(wait=True, cancel_futures=True)
