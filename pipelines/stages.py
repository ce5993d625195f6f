"""The pipeline's stages: pure functions over Arrow tables, run as Dask tasks by ``pipelines.graph``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from nightjar import paths
from nightjar.lake import commit
from nightjar.pipelines.healpix import add_healpix, add_night
from nightjar.sql import records, sandbox
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
    """A filter's matches in one batch, as ready-to-send JSON payloads."""

    filter: Filter
    payloads: list[bytes]
    error: str | None = None


@dataclass
class BatchOutcome:
    accepted: int
    rejects: list[Reject]
    outputs: list[FilterOutput] = field(default_factory=list)


def apply_filters(batch: DecodedBatch, filters: list[Filter], limits: sandbox.Limits) -> BatchOutcome:
    """Run every filter over the batch's views; matches become Lasair-style JSON records with a UTC stamp."""
    views = {
        paths.SOURCES: batch.sources.drop_columns([ROW]),
        # One row per object: its state after the batch's latest alert.
        paths.OBJECTS: commit.latest_per_key(batch.objects.drop_columns([ROW]), "diaObjectId", OBJECT_ORDER),
    }
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    outputs = []
    for result in run_filters(views, filters, limits):
        payloads = []
        if result.matches is not None:
            payloads = [
                json.dumps({**rec, "UTC": stamp}, default=str).encode() for rec in records.to_records(result.matches)
            ]
        outputs.append(FilterOutput(result.filter, payloads, result.error))
    return BatchOutcome(accepted=batch.accepted, rejects=batch.rejects, outputs=outputs)
