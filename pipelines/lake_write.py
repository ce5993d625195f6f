"""The pipeline's lake-writing stages: a batch's cutouts staged ahead of its commit (``stage_cutouts``), its rows
(``commit_rows``), then its objects' states with their features (``commit_objects``), run as Dask tasks by
``pipelines.graph``; ``commit_to_lake`` does both commits in one hold of the lake lock."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.lake import commit, history, resent, staged
from nightjar.lake.schemas import OBJECT_HISTORY_SCHEMA
from nightjar.pipelines.classifiers import annotations_of, chosen
from nightjar.pipelines.context import BatchContext, commit_context
from nightjar.pipelines.object_rows import merge_objects
from nightjar.pipelines.solar_system import commit_sso
from nightjar.pipelines.watch import BatchHits, commit_hits
from nightjar.storage import Home
from nightjar.streams.decode import ROW, DecodedBatch, Reject

T = TypeVar("T")


def forced_keys(forced: pa.Table) -> pa.Array:
    """``diaForcedSourceId`` where there is one (LSST), else a 64-bit hash of object, time, band and kind (ZTF)."""
    n = forced.num_rows
    ids = forced["diaForcedSourceId"] if "diaForcedSourceId" in forced.column_names else pa.nulls(n, pa.int64())
    missing = pc.is_null(ids).to_numpy(zero_copy_only=False)
    if not missing.any():
        return pc.cast(ids, pa.int64())
    obj = pc.fill_null(forced["diaObjectId"], 0).to_numpy(zero_copy_only=False).astype(np.uint64)
    mjd = np.asarray(pc.fill_null(forced["midpointMjdTai"], 0.0).to_numpy(zero_copy_only=False), np.float64)
    band = forced["band"] if "band" in forced.column_names else pa.nulls(n, pa.string())
    band_code = pc.fill_null(pc.index_in(band, pa.array(list("ugrizy"))), -1).to_numpy(zero_copy_only=False)
    kind = forced["kind"] if "kind" in forced.column_names else pa.nulls(n, pa.string())
    kind_code = pc.equal(pc.fill_null(kind, ""), "upper_limit").to_numpy(zero_copy_only=False)
    h = _mix(obj) ^ _mix(mjd.view(np.uint64)) ^ _mix(band_code.astype(np.uint64) * np.uint64(3) + kind_code)
    hashed = (h >> np.uint64(1)).astype(np.int64)  # non-negative
    existing = np.asarray(pc.fill_null(ids, 0).to_numpy(zero_copy_only=False), np.int64)
    return pa.array(np.where(missing, hashed, existing), pa.int64())


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, a good 64-bit hash of 64-bit values."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def lake_sources(batch: DecodedBatch, known: pa.Table | None = None) -> pa.Table:
    """Triggering detections, then packet history, flagged; one row per ``diaSourceId`` (the first wins).

    ``known``: index rows of the batch's objects (``lake.history``); detections they hold are left out first,
    so that only the few new rows of the packet history are copied and deduplicated.
    """
    parts = []
    for rows, from_history in ((batch.sources, False), (batch.prv_sources, True)):
        if rows.num_rows:
            rows = rows.filter(pc.is_valid(rows["diaSourceId"]))
            if known is not None:
                rows = history.unseen(rows, "diaSourceId", known, forced=False)
            parts.append(rows.append_column(paths.FROM_HISTORY, pa.array(np.full(rows.num_rows, from_history))))
    rows = pa.concat_tables(parts, promote_options="permissive").drop_columns([ROW])
    return commit.first_per_key(rows, "diaSourceId")


def late_alerts(batch: DecodedBatch, known: pa.Table, stored_alerts: pa.ChunkedArray | pa.Array) -> pa.Table:
    """The batch's triggering detections that the lake holds already as a packet history copy, flagged as
    ``lake_sources`` flags them: each replaces that copy. ``known``: the index rows of the batch's objects;
    ``stored_alerts``: the ``diaSourceId`` of the batch's alerts that the lake holds (``lake.resent``).

    An alert's own record of its detection is the one kept, whichever copy arrived first, so that what the lake
    stores does not depend on arrival order: ZTF's history copies are not the candidate (floats rounded to 6
    digits, ``isdiffpos`` ``1`` for ``t``, another ``magzpscirms``). A detection whose alert the lake holds was
    stored from that alert (a batch read again after a crash finds its own alerts); one the index holds without
    its alert came from packet history (or from a crashed try of this batch, before its alerts were stored:
    replacing it again changes nothing).
    """
    rows = batch.sources
    if rows.num_rows == 0 or known.num_rows == 0:
        return rows.drop_columns([ROW]).slice(0, 0).append_column(paths.FROM_HISTORY, pa.array([], pa.bool_()))
    held = known.filter(pc.invert(known[history.FORCED]))[history.KEY]
    alerts = pc.drop_null(stored_alerts)
    alerts = alerts.combine_chunks() if isinstance(alerts, pa.ChunkedArray) else alerts
    late = pc.and_(
        pc.is_in(rows["diaSourceId"], value_set=held),
        pc.invert(pc.is_in(rows["diaSourceId"], value_set=alerts.cast(pa.int64()))),
    )
    rows = rows.filter(pc.fill_null(late, False)).drop_columns([ROW])
    rows = rows.append_column(paths.FROM_HISTORY, pa.array(np.zeros(rows.num_rows, bool)))
    return commit.first_per_key(rows, "diaSourceId")


def _replace_detections(home: Home, late: pa.Table) -> pa.Table:
    """Replace the stored copies of ``late`` detections in ``sources`` and in the index; the index rows written."""
    keys = ", ".join(str(int(k)) for k in late["diaSourceId"].to_numpy())
    commit.replace_rows(home, paths.SOURCES, late, f"diaSourceId IN ({keys})")
    rows = history.rows_for(late, "diaSourceId", forced=False)
    objects = ", ".join(str(int(k)) for k in np.unique(rows["diaObjectId"].to_numpy()))
    where = f"diaObjectId IN ({objects}) AND {history.KEY} IN ({keys}) AND {history.FORCED} = false"
    commit.replace_rows(home, paths.OBJECT_HISTORY, rows, where)
    return rows


def _without_detections(rows: pa.Table, keys: pa.Array) -> pa.Table:
    """Index rows without the detections of ``keys``."""
    drop = pc.and_(pc.invert(rows[history.FORCED]), pc.is_in(rows[history.KEY], value_set=keys))
    return rows.filter(pc.invert(pc.fill_null(drop, False)))


def lake_forced(batch: DecodedBatch, known: pa.Table | None = None) -> pa.Table | None:
    """The batch's forced photometry with its ``forcedKey``, one row per key; None when it has none.
    ``known``: as for ``lake_sources``."""
    if not batch.forced_sources.num_rows or "ra" not in batch.forced_sources.column_names:
        return None
    forced = batch.forced_sources.drop_columns([ROW])
    forced = forced.append_column(paths.FORCED_KEY, forced_keys(forced))
    if known is not None:
        forced = history.unseen(forced, paths.FORCED_KEY, known, forced=True)
    return commit.first_per_key(forced, paths.FORCED_KEY)


def batch_objects(batch: DecodedBatch) -> pa.Table:
    """The batch's objects as their rows are stored (without the decoder's row number)."""
    return batch.objects.drop_columns([c for c in (ROW,) if c in batch.objects.column_names])


def _object_ids(batch: DecodedBatch) -> np.ndarray:
    """The ``diaObjectId`` of every row of the batch (objects, alerts, packet history and forced photometry)."""
    tables = (batch.objects, batch.sources, batch.prv_sources, batch.forced_sources)
    columns = [t["diaObjectId"] for t in tables if t.num_rows and "diaObjectId" in t.column_names]
    chunks = [chunk.cast(pa.int64()) for column in columns for chunk in column.chunks]
    return pc.unique(pc.drop_null(pa.chunked_array(chunks, pa.int64()))).to_numpy() if chunks else np.array([])


def _detections(index_rows: list[pa.Table]) -> pa.Table:
    """The detections among index rows (``lake.history``), as the features read them."""
    everything = pa.concat_tables(index_rows)
    return everything.filter(pc.invert(everything[history.FORCED])).select(history.DETECTION_COLUMNS)


def stage_cutouts(batch: DecodedBatch, home: Home) -> staged.StagedFiles | None:
    """Write the batch's cutout files into the lake ahead of its commit, without the lake lock: they are in no
    lake version until ``commit_to_lake`` adds them (``lake.staged``). None: the commit writes them itself."""
    started = time.perf_counter()
    files = staged.stage(home, paths.CUTOUTS, commit.laid_out(paths.CUTOUTS, batch.cutouts.drop_columns([ROW])))
    if files is not None:
        files.seconds = time.perf_counter() - started
    return files


@dataclass
class RowsCommitted:
    """A batch whose rows the lake holds (``commit_rows``), its object states still to write (``commit_objects``)."""

    batch: DecodedBatch  # without its re-sent alerts and its cutouts
    detections: pa.Table  # every detection the lake holds of the batch's objects: what their features read


def commit_to_lake(
    batch: DecodedBatch,
    home: Home,
    txns: dict[str, int],
    context: BatchContext | None = None,
    cutouts: staged.StagedFiles | None = None,
    hits: BatchHits | None = None,
    classifiers: Collection[str] = (),
) -> DecodedBatch:
    """Write the batch to every lake table in one hold of the lake lock: its rows (``commit_rows``), then its
    objects' states (``commit_objects``); a batch whose offsets a table already holds writes nothing there. Returns
    the batch with its objects as stored and without its cutouts.

    Batches committed at the same time by independent callers (other Kafka partitions, other workers) each see all
    that the others committed, so what the lake stores does not depend on the order their commits land in. The
    pipeline runs the two steps as separate tasks instead, each chained in batch order (``pipelines.graph``), so
    that a batch's features are computed while the next batch's rows are written.
    """
    started = time.perf_counter()
    with commit.lake_lock(home):
        written = _rows_step(batch, home, txns, context, cutouts, hits, lock_s=time.perf_counter() - started)
        return _objects_step(written, home, txns, context, classifiers, locked=True)


def commit_rows(
    batch: DecodedBatch,
    home: Home,
    txns: dict[str, int],
    context: BatchContext | None = None,
    cutouts: staged.StagedFiles | None = None,
    hits: BatchHits | None = None,
) -> RowsCommitted:
    """Write the batch's rows to the lake, under the lake lock; its objects' states are ``commit_objects``'s.

    The batch's objects' entries in the object history index (``lake.history``) say which detections and forced
    measurements the lake holds: only the others are appended to ``sources`` and ``forced_sources`` (packet
    history repeats itself from alert to alert), and then to the index. Cutouts are appended; new
    classifications are upserted into ``context`` and ``context_matches``. Returns the batch without its re-sent
    alerts and its cutouts, with every detection the lake now holds of its objects.

    Tables that do not depend on each other are written side by side (Delta writes run outside the GIL); the
    index is appended only after the rows it describes. ``cutouts``: the files ``stage_cutouts`` wrote for the
    batch's cutouts, committed here. ``hits``: the batch's watchlist and watchmap hits (``pipelines.watch``),
    committed for the alerts stored.
    """
    started = time.perf_counter()
    with commit.lake_lock(home):
        return _rows_step(batch, home, txns, context, cutouts, hits, lock_s=time.perf_counter() - started)


def commit_objects(
    written: RowsCommitted,
    home: Home,
    txns: dict[str, int],
    context: BatchContext | None = None,
    classifiers: Collection[str] = (),
) -> DecodedBatch:
    """Append each object's newest state, with features over its whole stored light curve, to ``objects``
    (merge-on-read: readers see the newest state of each object, ``lake.object_states``), with the classifier
    plug-ins' annotations (``classifiers``: their names, ``pipelines.classifiers``), then log the lake's new
    version. Returns the batch with its objects as stored.

    The features are computed before taking the lake lock (the next batch's rows may be written meanwhile) from the
    detections ``commit_rows`` saw, and the writes are made under it. So call it for each batch in the order of
    their ``commit_rows``, after the previous batch's ``commit_objects``: then the last state written of an object is
    that of its last batch, computed over every detection the lake holds of it.
    """
    return _objects_step(written, home, txns, context, classifiers, locked=False)


def _rows_step(
    batch: DecodedBatch,
    home: Home,
    txns: dict[str, int],
    context: BatchContext | None,
    cutouts: staged.StagedFiles | None,
    hits: BatchHits | None,
    lock_s: float,
) -> RowsCommitted:
    """``commit_rows`` under the lake lock, taken by the caller in ``lock_s`` seconds."""
    started = time.perf_counter() - lock_s
    seconds = {"commit.cutouts_staged": cutouts.seconds if cutouts is not None else 0.0, "commit.lock": lock_s}
    with ThreadPoolExecutor(4, thread_name_prefix="nightjar-commit") as pool:
        timed = _Timed(pool, seconds)
        stored_alerts = timed("resent", resent.stored_alerts, home, batch.cutouts)
        batch = timed("resent", _set_aside_resent, batch, stored_alerts)
        detections = _commit_rows(batch, home, txns, context, timed, stored_alerts[resent.KEY], cutouts, hits)
    timings = {**batch.timings, **seconds, "commit": time.perf_counter() - started}
    # No later stage reads the cutouts (~170 MB in a heavy batch of 2,000): the worker frees them now, not after
    # the filters.
    batch = replace(batch, cutouts=batch.cutouts.schema.empty_table(), timings=timings)
    return RowsCommitted(batch, detections)


def _objects_step(
    written: RowsCommitted,
    home: Home,
    txns: dict[str, int],
    context: BatchContext | None,
    classifiers: Collection[str],
    locked: bool,
) -> DecodedBatch:
    """``commit_objects``; ``locked``: the caller holds the lake lock already."""
    started = time.perf_counter()
    batch = written.batch
    seconds: dict[str, float] = {}
    with ThreadPoolExecutor(2, thread_name_prefix="nightjar-objects") as pool:
        timed = _Timed(pool, seconds)
        objects = batch_objects(batch)
        notes = None
        if objects.num_rows:
            view = context.view if context is not None else None
            objects = timed("features", merge_objects, objects, written.detections, home, view)
            notes = timed("classifiers", annotations_of, objects, chosen(classifiers)) if classifiers else None
        waited = time.perf_counter()
        with contextlib.nullcontext() if locked else commit.lake_lock(home):
            seconds["commit.objects_lock"] = time.perf_counter() - waited
            writes = []
            if objects.num_rows:
                # Appended, never rewritten (merge-on-read: ``lake.object_states``); ``lake.fold`` removes old states.
                writes.append(timed.submit("objects", commit.append_states, home, paths.OBJECTS, objects, txns))
            if notes is not None and notes.num_rows:
                writes.append(timed.submit("annotations", commit.append, home, paths.ANNOTATIONS, notes, txns))
            for write in writes:
                write.result()
            timed("log", commit.log_batch, home, txns)
    timings = {**batch.timings, **seconds, "commit_objects": time.perf_counter() - started}
    return replace(batch, objects=objects, timings=timings)


def _set_aside_resent(batch: DecodedBatch, stored_alerts: pa.Table) -> DecodedBatch:
    """The batch without its re-sent alerts (``lake.resent``; ``stored_alerts``: the lake's alerts with the batch's
    keys): identical ones counted, conflicting ones rejected."""
    found = resent.set_aside(batch.tables(), stored_alerts)
    conflicts = [
        Reject(row, reason, topic, partition, offset, read_back=True)
        for row, reason, topic, partition, offset in zip(
            *(found.conflicts[c].to_pylist() for c in (ROW, "reason", *resent.PROVENANCE)), strict=True
        )
    ]
    return replace(batch, **found.tables, rejects=[*batch.rejects, *conflicts], duplicates=found.duplicates)


class _Timed:
    """Runs a commit's steps on a thread pool, each step's own seconds recorded as ``commit.<name>``."""

    def __init__(self, pool: ThreadPoolExecutor, seconds: dict[str, float]) -> None:
        self.pool = pool
        self.seconds = seconds

    def __call__(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[f"commit.{name}"] = self.seconds.get(f"commit.{name}", 0.0) + time.perf_counter() - started

    def submit(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        return self.pool.submit(self, name, fn, *args, **kwargs)


def _commit_rows(
    batch: DecodedBatch,
    home: Home,
    txns: dict[str, int],
    context: BatchContext | None,
    timed: _Timed,
    stored_alerts: pa.ChunkedArray | pa.Array,
    cutouts: staged.StagedFiles | None,
    hits: BatchHits | None = None,
) -> pa.Table:
    """Write the batch's rows (``commit_rows``); every detection of its objects the lake holds afterwards."""
    object_ids = _object_ids(batch)
    lagging, covered = timed("history_read", history.unindexed, home, txns)  # rows a crash stored, not indexed
    stored = timed("history_read", history.stored, home, object_ids)
    known = pa.concat_tables([stored, lagging])
    late = late_alerts(batch, known, stored_alerts)
    if late.num_rows:  # rare: an alert arriving after a later alert brought its detection as history
        replaced = timed("sources_replace", _replace_detections, home, late)
        stored = pa.concat_tables([_without_detections(stored, replaced[history.KEY]), replaced])
        lagging = _without_detections(lagging, replaced[history.KEY])
    index = [lagging] if lagging.num_rows else []
    writes: list[Future[Any]] = []
    if batch.sources.num_rows:
        sources = lake_sources(batch, known)
        writes.append(timed.submit("sources", commit.append, home, paths.SOURCES, sources, txns))
        index.append(history.rows_for(sources, "diaSourceId", forced=False))
    forced = lake_forced(batch, known)
    if forced is not None:
        writes.append(timed.submit("forced", commit.append, home, paths.FORCED_SOURCES, forced, txns))
        index.append(history.rows_for(forced, paths.FORCED_KEY, forced=True))
    others: list[Future[Any]] = []
    if batch.cutouts.num_rows:
        rows = batch.cutouts.drop_columns([ROW])
        others.append(timed.submit("cutouts", commit.append, home, paths.CUTOUTS, rows, txns, cutouts))
    elif cutouts is not None:  # every alert was a re-send
        cutouts.discard()
    if context is not None:
        others.append(timed.submit("context", commit_context, home, context, txns))
    if hits is not None:
        others.append(timed.submit("watch", commit_hits, home, hits, txns, batch.sources["diaSourceId"]))
    if batch.ss_sources.num_rows or batch.ss_objects.num_rows:
        others.append(timed.submit("sso", commit_sso, home, batch, txns))
    new_rows = pa.concat_tables(index) if index else OBJECT_HISTORY_SCHEMA.empty_table()
    for write in writes:
        write.result()
    # The index now covers what the tables hold (after a repair, maybe beyond this batch): only now, so that a
    # crash leaves rows without index entries (repaired by ``unindexed``), never index entries without rows.
    covering = {a: max(v, covered.get(a, v)) for a, v in txns.items()}
    timed("history_append", commit.append, home, paths.OBJECT_HISTORY, new_rows, covering)
    for other in others:
        other.result()
    return _detections([stored, new_rows])  # new_rows holds the lagging rows too
