"""The pipeline's stages around the lake commit: decode and locate before it, the filters after it, functions over
Arrow tables run as Dask tasks by ``pipelines.graph``. The stages that write the lake are ``pipelines.lake_write``'s."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.lake import read
from nightjar.pipelines.context import BatchContext
from nightjar.pipelines.healpix import add_healpix, add_night
from nightjar.pipelines.lake_write import batch_objects, lake_forced
from nightjar.pipelines.solar_system import sso_rows
from nightjar.pipelines.watch import BatchHits, stored_hits
from nightjar.sql import sandbox, views
from nightjar.sql.parse import tables_read
from nightjar.sql.registry import Filter
from nightjar.sql.streaming import run_filters
from nightjar.storage import Home
from nightjar.streams.decode import ROW, DecodedBatch, RawBatch, Reject, decode_batch
from nightjar.streams.kafka_ranges import KafkaSlice

# One fetch and one decode at a time in a worker process. Its task threads then overlap one batch's fetch (mostly
# waiting on the broker) with another's decode or commit, and batches finish oldest first; unchecked, the batches
# of a burst all fetched at once from a broker serving them in turn, then all decoded at once sharing the GIL,
# and the first lake commit of a 10,000-alert burst started only after ~10 s (Dask task stream, bench pipeline).
_FETCHING = threading.Lock()
_DECODING = threading.Lock()


def decode(chunk: RawBatch | KafkaSlice, max_message_bytes: int, registry_url: str | None = None) -> DecodedBatch:
    """Decode a batch (a slice of Kafka offsets is fetched here first, on the worker). Rejects carry their
    message, for the dead-letter topic."""
    started = time.perf_counter()
    if isinstance(chunk, KafkaSlice):
        with _FETCHING:
            started = time.perf_counter()
            raw = chunk.fetch()
    else:
        raw = chunk
    fetched = time.perf_counter()
    with _DECODING:
        fetched = time.perf_counter()
        out = decode_batch(raw, max_message_bytes, registry_url)
    out.rejects = [
        replace(
            r,
            topic=raw.topics[r.index],
            partition=raw.partitions[r.index],
            offset=raw.offsets[r.index],
            payload=raw.payloads[r.index],
        )
        for r in out.rejects
    ]
    out.timings["decode"] = time.perf_counter() - fetched
    if isinstance(chunk, KafkaSlice):
        out.timings["fetch"] = fetched - started
    return out


def locate(batch: DecodedBatch, partition_order: int) -> DecodedBatch:
    """A new batch with HEALPix indices, the night and the month on every positioned table; cutouts take their
    alert's night and index."""
    started = time.perf_counter()
    tables = batch.tables()
    for name in ("sources", "prv_sources", "forced_sources"):
        if "ra" in tables[name].column_names:
            tables[name] = add_night(add_healpix(tables[name], partition_order))
    tables["objects"] = add_healpix(tables["objects"], partition_order)
    if tables["cutouts"].num_rows:
        where = pc.index_in(tables["cutouts"]["diaSourceId"], tables["sources"]["diaSourceId"])
        for column in (paths.NIGHT, paths.HPX29):
            tables["cutouts"] = tables["cutouts"].append_column(column, tables["sources"][column].take(where))
    timings = {**batch.timings, "locate": time.perf_counter() - started}
    return DecodedBatch(**tables, rejects=list(batch.rejects), timings=timings)


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
    """What a batch left once committed and filtered: alerts stored, dead letters, duplicates, filter outputs, and the
    seconds per stage."""

    accepted: int  # alerts stored
    rejects: list[Reject]  # messages for the dead-letter topic
    stored: int = 0  # messages whose alerts are in the lake
    duplicates: int = 0  # messages re-sending alerts the lake holds, identical
    outputs: list[FilterOutput] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over the batch's tasks


def batch_tables(
    batch: DecodedBatch,
    context: BatchContext | None = None,
    annotations: pa.Table | None = None,
    columns: Mapping[str, pa.Schema] | None = None,
    read: Collection[str] | None = None,
    hits: BatchHits | None = None,
) -> dict[str, pa.Table]:
    """The streaming views of a decoded batch, shaped like the lake's: ``sources`` holds the alerts and their
    packet history (``fromPacketHistory``), ``objects`` each object's newest state, ``forced_sources`` the
    packets' forced photometry (each measurement once, with its ``forcedKey``), ``context`` each object's
    classification, ``annotations`` the stored annotations of the batch's objects (when a filter reads them);
    other views are empty until a stage provides them. ``columns``: the views' columns
    (``views.view_schemas``), which the batch's views are given where they lack them. ``read``: the views the
    filters read, when known (``forced_sources`` is built only if it is one: a heavy batch holds ~10^5 forced
    measurements)."""
    flag = paths.FROM_HISTORY
    sources = batch.sources.drop_columns([ROW])
    sources = sources.append_column(flag, pa.array(np.zeros(sources.num_rows, bool)))
    objects = batch_objects(batch)
    history = None
    if batch.prv_sources.num_rows:
        history = batch.prv_sources.drop_columns([ROW])
        history = history.append_column(flag, pa.array(np.ones(history.num_rows, bool)))
    extra = {}
    # As the lake has them: with their key, each once (packets repeat them).
    forced = lake_forced(batch) if read is None or paths.FORCED_SOURCES in read else None
    if forced is not None:
        extra[paths.FORCED_SOURCES] = forced
    if context is not None:
        extra[paths.CONTEXT] = context.view
    if annotations is not None:
        extra[paths.ANNOTATIONS] = annotations
    extra.update(sso_rows(batch))
    if hits is not None:  # of the alerts stored: re-sent alerts were set aside at the commit
        kept = stored_hits(hits, batch.sources["diaSourceId"])
        extra[paths.WATCHLIST_HITS], extra[paths.AREA_HITS] = kept.watchlist_hits, kept.area_hits
        extra[paths.MMA_AREA_HITS] = kept.mma_hits
    return views.batch_views(sources=sources, objects=objects, history=history, extra=extra, columns=columns)


def apply_filters(
    batch: DecodedBatch,
    filters: list[Filter],
    limits: sandbox.Limits,
    context: BatchContext | None = None,
    home: Home | None = None,
    hits: BatchHits | None = None,
) -> BatchOutcome:
    """Run every filter over the batch's views, in as few DuckDB passes as possible.

    Filters that failed in recent batches run on their own, so that they cannot hold up a shared pass. With
    ``home``, filters that read ``annotations`` see the stored annotations of the batch's objects. ``hits``: the
    batch's watchlist and watchmap hits, its ``watchlist_hits`` and ``area_hits`` views.
    """
    started = time.perf_counter()
    outputs = []
    if filters:
        isolate = frozenset(f.id for f in filters if f.failures)
        notes = None
        if home is not None and any(views.ANNOTATIONS in tables_read(f.sql) for f in filters):
            ids = pc.unique(pc.drop_null(batch.objects["diaObjectId"])).to_numpy() if batch.objects.num_rows else []
            notes = read.rows_of_objects(home, paths.ANNOTATIONS, np.asarray(ids, np.int64))
        # Likewise the TNS matches of the batch's objects (``crossmatch_tns``, replaced by each TNS import).
        tns = None
        if home is not None and any(views.CROSSMATCH_TNS in tables_read(f.sql) for f in filters):
            ids = pc.unique(pc.drop_null(batch.objects["diaObjectId"])).to_numpy() if batch.objects.num_rows else []
            tns = read.rows_of_objects(home, paths.CROSSMATCH_TNS, np.asarray(ids, np.int64))
        # The views get the lake's columns, so that a filter bound to them at registration runs on every batch
        # (ZTF's ``magpsf`` over a batch of LSST alerts is null, as on LSST rows in the lake).
        read_views = set().union(*(tables_read(f.sql) for f in filters)) & set(views.VIEW_NAMES)
        columns = views.view_schemas(home, read_views) if home is not None else None
        tables = batch_tables(batch, context, notes, columns, read_views, hits)
        if tns is not None:
            tables[views.CROSSMATCH_TNS] = views.conform(tns, tables[views.CROSSMATCH_TNS].schema)
        results = run_filters(tables, [f.spec for f in filters], limits, isolate)
        outputs = [
            FilterOutput(f, r.matches, r.keys, r.error, r.timed_out) for f, r in zip(filters, results, strict=True)
        ]
    timings = {**batch.timings, "filters": time.perf_counter() - started}
    if hits is not None:
        timings["watch"] = hits.seconds
    return BatchOutcome(
        batch.accepted, batch.rejects, batch.stored_messages, batch.duplicates, outputs=outputs, timings=timings
    )
