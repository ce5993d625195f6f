"""The pipeline's stages: pure functions over Arrow tables, run as Dask tasks by ``pipelines.graph``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from nightjar import paths
from nightjar.lake import commit
from nightjar.pipelines.healpix import add_healpix, add_night
from nightjar.sql import sandbox, views
from nightjar.sql.registry import Filter
from nightjar.sql.streaming import run_filters
from nightjar.streams.decode import ROW, DecodedBatch, RawBatch, Reject, decode_batch

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


def decode(chunk: RawBatch, offset: int, max_message_bytes: int) -> DecodedBatch:
    """Decode one chunk; ``offset`` is its first message's position in the whole batch."""
    out = decode_batch(chunk, max_message_bytes)
    if offset:
        out.sources = out.sources.set_column(
            out.sources.schema.get_field_index(ROW), ROW, pa.array(out.sources[ROW].to_numpy() + offset)
        )
        out.rejects = [Reject(r.index + offset, r.reason) for r in out.rejects]
    return out


def merge(parts: list[DecodedBatch]) -> DecodedBatch:
    """The decoded chunks of one batch as one."""
    return DecodedBatch(
        sources=pa.concat_tables([p.sources for p in parts], promote_options="permissive"),
        objects=pa.concat_tables([p.objects for p in parts], promote_options="permissive"),
        rejects=[r for p in parts for r in p.rejects],
    )


def locate(batch: DecodedBatch, partition_order: int) -> DecodedBatch:
    """Add HEALPix indices to sources and objects, and the night to sources."""
    batch.sources = add_night(add_healpix(batch.sources, partition_order))
    batch.objects = add_healpix(batch.objects, partition_order)
    return batch


def commit_to_lake(batch: DecodedBatch, home: Path, txns: dict[str, int]) -> DecodedBatch:
    """Append sources and upsert objects; a batch whose offsets are already in the lake writes nothing."""
    if batch.sources.num_rows:
        commit.append(home, paths.SOURCES, batch.sources.drop_columns([ROW]), txns)
    if batch.objects.num_rows:
        commit.upsert(home, paths.OBJECTS, batch.objects.drop_columns([ROW]), txns, order=OBJECT_ORDER)
    return batch


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


def batch_tables(batch: DecodedBatch) -> dict[str, pa.Table]:
    """The streaming views of a decoded batch: its alerts (with their packet history when decode provides it as
    ``history``) and each object's newest state; other views are empty until a stage provides them."""
    history = getattr(batch, "history", None)
    return views.batch_views(
        sources=batch.sources.drop_columns([ROW]),
        objects=batch.objects.drop_columns([ROW]),
        history=history.drop_columns([c for c in (ROW,) if c in history.column_names]) if history is not None else None,
    )


def apply_filters(batch: DecodedBatch, filters: list[Filter], limits: sandbox.Limits) -> BatchOutcome:
    """Run every filter over the batch's views, in as few DuckDB passes as possible.

    Filters that failed in recent batches run on their own, so that they cannot hold up a shared pass.
    """
    outputs = []
    if filters:
        isolate = frozenset(f.id for f in filters if f.failures)
        results = run_filters(batch_tables(batch), [f.spec for f in filters], limits, isolate)
        outputs = [
            FilterOutput(f, r.matches, r.keys, r.error, r.timed_out) for f, r in zip(filters, results, strict=True)
        ]
    return BatchOutcome(accepted=batch.accepted, rejects=batch.rejects, outputs=outputs)
