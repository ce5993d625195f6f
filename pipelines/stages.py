"""The pipeline's stages: pure functions over Arrow tables, run as Dask tasks by ``pipelines.graph``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.lake import commit, read
from nightjar.pipelines.context import BatchContext, commit_context
from nightjar.pipelines.features import object_features
from nightjar.pipelines.healpix import add_healpix, add_night
from nightjar.sql import sandbox, views
from nightjar.sql.parse import tables_read
from nightjar.sql.registry import Filter
from nightjar.sql.streaming import run_filters
from nightjar.streams.decode import MODEL_TABLES, ROW, DecodedBatch, RawBatch, Reject, decode_batch

OBJECT_ORDER = "lastAlertMjdTai"  # the newest alert's state of an object wins


def split(batch: RawBatch, parts: int) -> list[RawBatch]:
    """Cut a batch into at most ``parts`` contiguous chunks, one per Dask task."""
    n = len(batch)
    size = max(1, -(-n // max(parts, 1)))
    return [
        RawBatch(
            batch.payloads[i : i + size],
            batch.topics[i : i + size],
            batch.partitions[i : i + size],
            batch.offsets[i : i + size],
        )
        for i in range(0, n, size)
    ]


def decode(chunk: RawBatch, offset: int, max_message_bytes: int, registry_url: str | None = None) -> DecodedBatch:
    """Decode one chunk; ``offset`` is its first message's position in the whole batch."""
    out = decode_batch(chunk, max_message_bytes, registry_url)
    if offset:
        for name, table in out.tables().items():
            shifted = pa.array(table[ROW].to_numpy() + offset, pa.int64())
            setattr(out, name, table.set_column(table.schema.get_field_index(ROW), ROW, shifted))
        out.rejects = [Reject(r.index + offset, r.reason) for r in out.rejects]
    return out


def merge(parts: list[DecodedBatch]) -> DecodedBatch:
    """The decoded chunks of one batch as one."""
    tables = {
        name: pa.concat_tables([p.tables()[name] for p in parts], promote_options="permissive") for name in MODEL_TABLES
    }
    return DecodedBatch(**tables, rejects=[r for p in parts for r in p.rejects])


def locate(batch: DecodedBatch, partition_order: int) -> DecodedBatch:
    """Add HEALPix indices and the night to every positioned table; cutouts take their alert's."""
    for name in ("sources", "prv_sources", "forced_sources"):
        table = getattr(batch, name)
        if "ra" in table.column_names:
            setattr(batch, name, add_night(add_healpix(table, partition_order)))
    batch.objects = add_healpix(batch.objects, partition_order)
    if batch.cutouts.num_rows:
        where = pc.index_in(batch.cutouts["diaSourceId"], batch.sources["diaSourceId"])
        for column in (paths.NIGHT, paths.HPX29):
            batch.cutouts = batch.cutouts.append_column(column, batch.sources[column].take(where))
    return batch


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


def lake_sources(batch: DecodedBatch) -> pa.Table:
    """Triggering detections, then packet history, flagged; the first row of a diaSourceId wins."""
    triggers = batch.sources.append_column(paths.FROM_HISTORY, pa.array(np.zeros(batch.sources.num_rows, bool)))
    parts = [triggers]
    if batch.prv_sources.num_rows:
        history = batch.prv_sources
        parts.append(history.append_column(paths.FROM_HISTORY, pa.array(np.ones(history.num_rows, bool))))
    return pa.concat_tables(parts, promote_options="permissive").drop_columns([ROW])


def with_features(objects: pa.Table, home: Path) -> pa.Table:
    """The batch's objects with features from their whole history in the lake (this batch's sources included)."""
    objects = commit.latest_per_key(objects, "diaObjectId", OBJECT_ORDER)
    detections = read.detections_of(home, objects["diaObjectId"].to_numpy(), objects[paths.HPX29].to_numpy())
    if detections.num_rows == 0:
        return objects
    features = object_features(detections)
    return objects.join(features, keys="diaObjectId", join_type="left outer", coalesce_keys=True)


def commit_to_lake(
    batch: DecodedBatch, home: Path, txns: dict[str, int], context: BatchContext | None = None
) -> DecodedBatch:
    """Write the batch to every lake table; a batch whose offsets a table already holds writes nothing there.

    Sources and forced photometry get only the keys they do not hold yet (packet history repeats itself from
    alert to alert); objects are upserted to their latest state; cutouts are appended; new classifications are
    upserted into ``context`` and ``context_matches``.
    """
    with commit.lake_lock(home):
        _commit(batch, home, txns, context)
    return batch


def _commit(batch: DecodedBatch, home: Path, txns: dict[str, int], context: BatchContext | None) -> None:
    if batch.sources.num_rows:
        commit.append_new(home, paths.SOURCES, lake_sources(batch), txns)
    if batch.forced_sources.num_rows and "ra" in batch.forced_sources.column_names:
        forced = batch.forced_sources.drop_columns([ROW])
        commit.append_new(home, paths.FORCED_SOURCES, forced.append_column(paths.FORCED_KEY, forced_keys(forced)), txns)
    if batch.objects.num_rows:
        commit.upsert(
            home, paths.OBJECTS, with_features(batch.objects.drop_columns([ROW]), home), txns, order=OBJECT_ORDER
        )
    if batch.cutouts.num_rows:
        commit.append(home, paths.CUTOUTS, batch.cutouts.drop_columns([ROW]), txns)
    if context is not None:
        commit_context(home, context, txns)
    commit.log_batch(home, txns)


@dataclass
class FilterOutput:
    """A filter's matches in one batch and the keys of their alerts (diaObjectId, diaSourceId), or its error."""

    filter: Filter
    matches: pa.Table | None
    keys: pa.Table | None
    error: str | None = None
    timed_out: bool = False


@dataclass
class BatchOutcome:
    accepted: int
    rejects: list[Reject]
    outputs: list[FilterOutput] = field(default_factory=list)


def batch_tables(
    batch: DecodedBatch, context: BatchContext | None = None, annotations: pa.Table | None = None
) -> dict[str, pa.Table]:
    """The streaming views of a decoded batch, shaped like the lake's: ``sources`` holds the alerts and their
    packet history (``fromPacketHistory``), ``objects`` each object's newest state, ``forced_sources`` the
    packets' forced photometry, ``context`` each object's classification, ``annotations`` the stored annotations
    of the batch's objects (when a filter reads them); other views are empty until a stage provides them."""
    flag = paths.FROM_HISTORY
    sources = batch.sources.drop_columns([ROW])
    sources = sources.append_column(flag, pa.array(np.zeros(sources.num_rows, bool)))
    history = None
    if batch.prv_sources.num_rows:
        history = batch.prv_sources.drop_columns([ROW])
        history = history.append_column(flag, pa.array(np.ones(history.num_rows, bool)))
    extra = {}
    if batch.forced_sources.num_rows:
        extra[paths.FORCED_SOURCES] = batch.forced_sources.drop_columns([ROW])
    if context is not None:
        extra[paths.CONTEXT] = context.view
    if annotations is not None:
        extra[paths.ANNOTATIONS] = annotations
    return views.batch_views(sources=sources, objects=batch.objects.drop_columns([ROW]), history=history, extra=extra)


def apply_filters(
    batch: DecodedBatch,
    filters: list[Filter],
    limits: sandbox.Limits,
    context: BatchContext | None = None,
    home: Path | None = None,
) -> BatchOutcome:
    """Run every filter over the batch's views, in as few DuckDB passes as possible.

    Filters that failed in recent batches run on their own, so that they cannot hold up a shared pass. With
    ``home``, filters that read ``annotations`` see the stored annotations of the batch's objects.
    """
    outputs = []
    if filters:
        isolate = frozenset(f.id for f in filters if f.failures)
        notes = None
        if home is not None and any(views.ANNOTATIONS in tables_read(f.sql) for f in filters):
            ids = pc.unique(pc.drop_null(batch.objects["diaObjectId"])).to_numpy() if batch.objects.num_rows else []
            notes = read.rows_of_objects(home, paths.ANNOTATIONS, np.asarray(ids, np.int64))
        tables = batch_tables(batch, context, notes)
        results = run_filters(tables, [f.spec for f in filters], limits, isolate)
        outputs = [
            FilterOutput(f, r.matches, r.keys, r.error, r.timed_out) for f, r in zip(filters, results, strict=True)
        ]
    return BatchOutcome(accepted=batch.accepted, rejects=batch.rejects, outputs=outputs)
