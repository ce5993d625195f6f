"""The context stage: Sherlock-style classification of each object when first seen, or when catalogues change.

In the graph (``pipelines.graph``): ``pending`` reads the stored context of the batch's objects and names those
to classify; ``catalogs.dispatch.submit_context`` classifies them on the workers that cache their part of the
sky; ``combine`` joins stored and new rows into the batch's ``context`` view (for streaming filters), and
``commit_context`` upserts the new rows into the lake's ``context`` and ``context_matches`` tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from distributed import Client

from nightjar import paths
from nightjar.catalogs.catalog import CatalogSet
from nightjar.catalogs.context import (
    CATALOGS_VERSION,
    CLASSIFIED_AT,
    LAKE_CONTEXT_SCHEMA,
    LAKE_MATCHES_SCHEMA,
    MATCH_KEY,
    STAMP,
    ContextResult,
    needs_context,
)
from nightjar.catalogs.dispatch import submit_context
from nightjar.lake import commit, keys, read, tables
from nightjar.storage import Home
from nightjar.streams.decode import DecodedBatch


@dataclass
class Pending:
    """The batch's objects still to classify, and the stored context rows that are current."""

    todo: pa.Table
    current: pa.Table


@dataclass
class BatchContext:
    """The context of every object of a batch (``view``) and what this batch computed (to store)."""

    view: pa.Table
    new: ContextResult


def batch_objects(batch: DecodedBatch) -> pa.Table:
    """One row per object of the batch: diaObjectId, ra, dec (its newest position)."""
    objects = batch.objects
    if objects.num_rows == 0:
        return pa.table(
            {
                "diaObjectId": pa.array([], pa.int64()),
                "ra": pa.array([], pa.float64()),
                "dec": pa.array([], pa.float64()),
            }
        )
    objects = objects.filter(pc.is_valid(objects["diaObjectId"]))
    order = "lastAlertMjdTai" if "lastAlertMjdTai" in objects.column_names else None
    if order is not None:
        objects = keys.latest_per_key(objects, "diaObjectId", order)
    return objects.select(["diaObjectId", "ra", "dec"])


def pending(batch: DecodedBatch, home: Home, catalogs_version: str) -> Pending:
    """Which of the batch's objects need a classification: first seen, or classified under other catalogues."""
    objects = batch_objects(batch)
    stored = read.rows_of_objects(home, paths.CONTEXT, objects["diaObjectId"].to_numpy())
    if stored is None or stored.num_rows == 0:
        return Pending(objects, LAKE_CONTEXT_SCHEMA.empty_table())
    stored = keys.latest_per_key(stored, "diaObjectId", CLASSIFIED_AT)
    todo = needs_context(objects, stored, catalogs_version)
    current = stored.filter(pc.equal(stored[CATALOGS_VERSION], catalogs_version))
    return Pending(todo, current.select(LAKE_CONTEXT_SCHEMA.names).cast(LAKE_CONTEXT_SCHEMA))


def todo_objects(p: Pending) -> pa.Table:
    """The objects a pending classification still has to classify (submitted as a task on the batch's worker)."""
    return p.todo


def stamp(result: ContextResult, when: datetime | None = None) -> ContextResult:
    """The lake's form of a classification: a time on each row; the catalogue version and a key on each match."""
    when = when or datetime.now(UTC)
    context = result.context.append_column(CLASSIFIED_AT, pa.repeat(pa.scalar(when, STAMP), result.context.num_rows))
    matches = result.matches
    owner = pc.index_in(matches["diaObjectId"], result.context["diaObjectId"])
    version = pc.take(result.context[CATALOGS_VERSION], owner)
    key = match_keys(matches["diaObjectId"].to_numpy(), matches["rank"].to_numpy(), version)
    matches = (
        matches.append_column(CATALOGS_VERSION, version)
        .append_column(MATCH_KEY, pa.array(key, pa.int64()))
        .append_column(CLASSIFIED_AT, pa.repeat(pa.scalar(when, STAMP), matches.num_rows))
    )
    return ContextResult(context.cast(LAKE_CONTEXT_SCHEMA), matches.cast(LAKE_MATCHES_SCHEMA))


def match_keys(object_ids: np.ndarray, ranks: np.ndarray, versions: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 63-bit key per (object, rank, catalogue version): the same classification always lands on the same rows."""
    encoded = pc.dictionary_encode(pc.fill_null(versions, "0"))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    # A few distinct versions (hex digests): their bits are computed once each, then spread by index.
    bits = np.array([int(v, 16) & 0xFFFF for v in encoded.dictionary.to_pylist()], dtype=np.uint64)
    version_bits = bits[encoded.indices.to_numpy(zero_copy_only=False)] if len(bits) else np.zeros(0, np.uint64)
    with np.errstate(over="ignore"):
        mixed = object_ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        mixed ^= (ranks.astype(np.uint64) << np.uint64(48)) ^ version_bits
    return (mixed >> np.uint64(1)).astype(np.int64)


def combine(p: Pending, result: ContextResult) -> BatchContext:
    """The batch's context view: stored current rows plus the new ones."""
    new = stamp(result)
    view = pa.concat_tables([p.current, new.context])
    return BatchContext(view=view, new=new)


def commit_context(home: Home, context: BatchContext, txns: dict[str, int]) -> None:
    """Store a batch's new classifications (call under the lake lock, before ``log_batch``)."""
    if context.new.context.num_rows:
        commit.upsert(home, paths.CONTEXT, context.new.context, txns, order=CLASSIFIED_AT)
    if context.new.matches.num_rows:
        commit.upsert(home, paths.CONTEXT_MATCHES, context.new.matches, txns, order=CLASSIFIED_AT)


def empty_view() -> pa.Table:
    """An empty context view, in the lake's context schema."""
    return LAKE_CONTEXT_SCHEMA.empty_table()


@dataclass
class RefreshReport:
    """What a context refresh did: the lake's objects, those classified now, and the stale matches removed."""

    objects: int  # objects in the lake
    classified: int  # classified now (never classified, or under other catalogues)
    stale_matches_removed: int


def refresh(home: Home, client: Client, catalogs: CatalogSet, chunk_rows: int = 200_000) -> RefreshReport:
    """Classify every lake object whose context is missing or was computed under other catalogues, then drop the
    matches of superseded catalogue sets. Run after installing or removing a catalogue.

    Objects are read and classified ``chunk_rows`` at a time on the cluster; each chunk is stored under the lake
    lock as its own lake version, so an interrupted refresh keeps what it finished and a rerun does the rest.
    """
    if not tables.exists(home, paths.OBJECTS):
        return RefreshReport(0, 0, 0)
    objects = read.table_dataset(tables.load(home, paths.OBJECTS), paths.OBJECTS).to_table(
        columns=["diaObjectId", "ra", "dec"]
    )
    objects = objects.filter(pc.is_valid(objects["diaObjectId"]))
    stored = tables.open_table(home, paths.CONTEXT)
    if stored is not None:
        current = read.arrow_dataset(stored).to_table(
            columns=["diaObjectId"], filter=ds.field(CATALOGS_VERSION) == catalogs.version
        )
        objects = objects.filter(pc.invert(pc.is_in(objects["diaObjectId"], value_set=current["diaObjectId"])))
    classified = 0
    for start in range(0, objects.num_rows, chunk_rows):
        piece = objects.slice(start, chunk_rows)
        result = submit_context(client, piece, catalogs).result()
        with commit.lake_lock(home):
            commit_context(home, BatchContext(view=empty_view(), new=stamp(result)), {})
            commit.log_batch(home, {})
        classified += piece.num_rows
    removed = 0
    if tables.exists(home, paths.CONTEXT_MATCHES):
        with commit.lake_lock(home):
            metrics = tables.load(home, paths.CONTEXT_MATCHES).delete(f"{CATALOGS_VERSION} != '{catalogs.version}'")
            # delete() rewrites files with string_view columns, which pyarrow cannot filter: compact them back.
            tables.load(home, paths.CONTEXT_MATCHES).optimize.compact()
            commit.log_batch(home, {})
        removed = int(metrics.get("num_deleted_rows", 0))
    total = read.table_dataset(tables.load(home, paths.OBJECTS), paths.OBJECTS).count_rows()
    return RefreshReport(objects=total, classified=classified, stale_matches_removed=removed)
