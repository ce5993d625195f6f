"""Kafka payloads to Arrow tables, with every undecodable or invalid alert set aside with its reason.

This is the reference path: fastavro per record, then Arrow per schema version. Its output defines the
tables ``sources`` (the triggering diaSource of each alert) and ``objects`` (the diaObject of each alert).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.streams import schemas, wire

ROW = "_row"  # position of the message in its batch, dropped before the lake


@dataclass
class RawBatch:
    """A micro-batch of Kafka messages, as plain lists so that it pickles cheaply to Dask workers."""

    payloads: list[bytes]
    topics: list[str]
    partitions: list[int]
    offsets: list[int]

    def __len__(self) -> int:
        return len(self.payloads)

    @classmethod
    def from_payloads(cls, payloads: list[bytes], topic: str = "", partition: int = 0) -> RawBatch:
        """A batch of payloads that did not come from Kafka (files, tests): offsets are their positions."""
        n = len(payloads)
        return cls(list(payloads), [topic] * n, [partition] * n, list(range(n)))

    def end_offsets(self) -> dict[tuple[str, int], int]:
        """The last offset of each (topic, partition) in the batch."""
        ends: dict[tuple[str, int], int] = {}
        for topic, part, offset in zip(self.topics, self.partitions, self.offsets, strict=True):
            key = (topic, part)
            ends[key] = max(offset, ends.get(key, -1))
        return ends


@dataclass(frozen=True)
class Reject:
    """An alert that could not be accepted, and why."""

    index: int
    reason: str


@dataclass
class DecodedBatch:
    sources: pa.Table
    objects: pa.Table
    rejects: list[Reject] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.sources.num_rows


def decode_batch(batch: RawBatch, max_message_bytes: int = 4_000_000) -> DecodedBatch:
    """Decode a micro-batch of LSST wire-format alerts into ``sources`` and ``objects`` tables.

    Every message ends either as one ``sources`` row or as one ``Reject``: nothing is dropped silently.
    """
    rejects: list[Reject] = []
    by_schema: dict[int, tuple[list[dict], list[dict], list[int]]] = {}
    for i, payload in enumerate(batch.payloads):
        if len(payload) > max_message_bytes:
            rejects.append(Reject(i, f"oversize: {len(payload)} bytes > limit {max_message_bytes}"))
            continue
        try:
            sid, body = wire.unframe(payload)
            writer = schemas.lsst_schema(sid)
            alert = fastavro.schemaless_reader(io.BytesIO(body), writer, None)
        except (wire.WireFormatError, schemas.UnknownSchema) as exc:
            rejects.append(Reject(i, str(exc)))
            continue
        except Exception as exc:  # fastavro raises many types on corrupt or truncated bytes
            rejects.append(Reject(i, f"undecodable Avro: {type(exc).__name__}: {exc}"))
            continue
        assert isinstance(alert, dict)
        sources, objects, rows = by_schema.setdefault(sid, ([], [], []))
        source = alert["diaSource"]
        sources.append(source)
        rows.append(i)
        obj = alert.get("diaObject")
        if obj is not None:
            objects.append(
                {
                    **obj,
                    ROW: i,
                    "lastDiaSourceId": source["diaSourceId"],
                    "lastAlertMjdTai": source["midpointMjdTai"],
                }
            )
    source_parts, object_parts = [], []
    for sid, (sources, objects, rows) in by_schema.items():
        table = pa.Table.from_pylist(sources, schema=schemas.arrow_record_schema(sid, "diaSource"))
        source_parts.append(table.append_column(ROW, pa.array(rows, pa.int64())))
        obj_schema = (
            schemas.arrow_record_schema(sid, "diaObject")
            .append(pa.field(ROW, pa.int64()))
            .append(pa.field("lastDiaSourceId", pa.int64()))
            .append(pa.field("lastAlertMjdTai", pa.float64()))
        )
        object_parts.append(pa.Table.from_pylist(objects, schema=obj_schema))
    sources_table = _concat(source_parts)
    objects_table = _concat(object_parts)

    sources_table, bad = _validate_positions(sources_table)
    rejects.extend(bad)
    if bad:
        bad_rows = pa.array([r.index for r in bad], pa.int64())
        objects_table = objects_table.filter(pc.invert(pc.is_in(objects_table[ROW], bad_rows)))

    sources_table = _with_metadata(sources_table, batch)
    objects_table = _with_metadata(objects_table, batch)
    return DecodedBatch(sources_table, objects_table, sorted(rejects, key=lambda r: r.index))


def _concat(parts: list[pa.Table]) -> pa.Table:
    if not parts:
        return pa.table({ROW: pa.array([], pa.int64())})
    return pa.concat_tables(parts, promote_options="permissive")


def _validate_positions(sources: pa.Table) -> tuple[pa.Table, list[Reject]]:
    """Reject alerts whose triggering position is missing, NaN or out of range."""
    if sources.num_rows == 0:
        return sources, []
    ra = sources["ra"].to_numpy(zero_copy_only=False)
    dec = sources["dec"].to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra < 360) & (np.abs(dec) <= 90)
    if good.all():
        return sources, []
    rows = sources[ROW].to_numpy()
    bad = [
        Reject(int(rows[j]), f"invalid position ra={float(ra[j])} dec={float(dec[j])}") for j in np.flatnonzero(~good)
    ]
    return sources.filter(pa.array(good)), bad


def _with_metadata(table: pa.Table, batch: RawBatch) -> pa.Table:
    """Add survey and Kafka provenance columns, taken from each row's message."""
    rows = table[ROW].to_numpy() if table.num_rows else np.array([], dtype=np.int64)
    n = table.num_rows
    table = table.append_column(paths.SURVEY, pa.array(["lsst"] * n, pa.string()))
    table = table.append_column(paths.KAFKA_TOPIC, pa.array(batch.topics, pa.string()).take(pa.array(rows)))
    table = table.append_column(
        paths.KAFKA_PARTITION,
        pa.array(np.asarray(batch.partitions, dtype=np.int32)[rows] if n else [], pa.int32()),
    )
    table = table.append_column(
        paths.KAFKA_OFFSET, pa.array(np.asarray(batch.offsets, dtype=np.int64)[rows] if n else [], pa.int64())
    )
    return table
