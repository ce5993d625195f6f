"""A micro-batch of Kafka payloads to Arrow tables, with every alert that cannot be accepted set aside.

Payloads are LSST Confluent wire-format messages (magic byte, schema id, schemaless Avro), Avro container
files (ZTF's Kafka format, archives) or Parquet files of LSST alerts (brokers' exports, read column by column by
``streams.parquet_alerts``). Avro payloads are grouped by writer schema and each group is decoded in one pass of
the columnar decoder (``streams.avro_columnar``), then mapped to the model tables: ``sources`` (the triggering
detection), ``prv_sources`` (packet history), ``forced_sources``, ``objects`` and ``cutouts``. Every message ends
either as rows or as a ``Reject`` with its reason: nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Message

from nightjar import paths
from nightjar.streams import container, lsst_model, parquet_alerts, schemas, validate, wire, ztf_model
from nightjar.streams.avro_columnar import UnsupportedSchema, joined, program_for

ROW = "_row"  # position of the message in its batch, dropped before the lake
MODEL_TABLES = ("sources", "prv_sources", "forced_sources", "objects", "cutouts", "ss_sources", "ss_objects")


@dataclass
class RawBatch:
    """A micro-batch of Kafka messages, as plain lists so that it pickles cheaply to Dask workers."""

    payloads: list[bytes]
    topics: list[str]
    partitions: list[int]
    offsets: list[int]

    def __len__(self) -> int:
        return len(self.payloads)

    def __sizeof__(self) -> int:
        """The payloads' bytes: what Dask weighs when it decides whether moving the batch is worth it."""
        return sum(len(p) for p in self.payloads) + 64 * len(self.payloads)

    def add(self, msg: Message) -> None:
        """Append a message read from Kafka."""
        self.payloads.append(msg.value() or b"")
        self.topics.append(msg.topic() or "")
        self.partitions.append(msg.partition() or 0)
        self.offsets.append(msg.offset() or 0)

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
    """A message that could not be accepted, and why; the pipeline adds where it came from and its bytes, for
    the dead-letter topic (the driver does not keep the payloads of a batch)."""

    index: int
    reason: str
    topic: str = ""
    partition: int = 0
    offset: int = -1
    payload: bytes = b""
    read_back: bool = False  # found at the lake commit, where the payload is gone: read it again from its source


@dataclass
class DecodedBatch:
    """The model tables of a batch (each row with ``_row``, its message) and the rejected messages."""

    sources: pa.Table
    objects: pa.Table
    prv_sources: pa.Table = field(default_factory=lambda: _empty())
    forced_sources: pa.Table = field(default_factory=lambda: _empty())
    cutouts: pa.Table = field(default_factory=lambda: _empty())
    ss_sources: pa.Table = field(default_factory=lambda: _empty())  # solar-system associations (streams.sso)
    ss_objects: pa.Table = field(default_factory=lambda: _empty())  # their MPC orbits
    rejects: list[Reject] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent in each pipeline stage
    duplicates: int = 0  # messages whose every alert the lake held already, identical (set by the lake commit)

    @property
    def accepted(self) -> int:
        """The alerts decoded (rows of ``sources``)."""
        return self.sources.num_rows

    @property
    def stored_messages(self) -> int:
        """Messages with at least one alert in the batch (after the lake commit: in the lake)."""
        return len(pc.unique(self.sources[ROW])) if self.sources.num_rows else 0

    def tables(self) -> dict[str, pa.Table]:
        """The model tables by name."""
        return {name: getattr(self, name) for name in MODEL_TABLES}

    def __sizeof__(self) -> int:
        """The tables' bytes (a heavy batch of 2,000 alerts holds ~300 MB): Dask's scheduler weighs a result by
        ``sys.getsizeof``, and a batch it took for a few dozen bytes would be moved to an idle worker at will."""
        return sum(t.nbytes for t in self.tables().values()) + sum(len(r.payload) for r in self.rejects)


def _empty() -> pa.Table:
    return pa.table({ROW: pa.array([], pa.int64())})


@dataclass
class _Group:
    """Segments of one writer schema: message index, bytes and record count of each."""

    schema: dict[str, Any]
    survey: str
    messages: list[int] = field(default_factory=list)
    chunks: list[bytes | memoryview] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def add(self, message: int, data: bytes | memoryview, count: int) -> None:
        self.messages.append(message)
        self.chunks.append(data)
        self.counts.append(count)


def _survey(schema: dict[str, Any]) -> str | None:
    if lsst_model.is_lsst(schema):
        return "lsst"
    if ztf_model.is_ztf(schema):
        return "ztf"
    return None


def _digest(*parts: bytes | memoryview) -> int:
    """A 63-bit digest of a message's records: equal for a re-sent copy, different for any other content."""
    h = hashlib.sha1(usedforsecurity=False)
    for part in parts:
        h.update(part)
    return int.from_bytes(h.digest()[:8], "little") >> 1


def _group(
    batch: RawBatch, max_message_bytes: int, registry_url: str | None
) -> tuple[dict[str, _Group], list[int], list[Reject], np.ndarray]:
    """Avro payloads grouped by writer schema, the indices of Parquet payloads, the rejects, and the digest of
    each message's records (a container's sync marker and header are left out: a copy of the same alerts
    written to a new container is the same content)."""
    groups: dict[str, _Group] = {}
    parquet: list[int] = []
    rejects: list[Reject] = []
    digests = np.zeros(len(batch), dtype=np.int64)
    for i, payload in enumerate(batch.payloads):
        if len(payload) > max_message_bytes:
            rejects.append(Reject(i, f"oversize: {len(payload)} bytes > limit {max_message_bytes}"))
            continue
        try:
            if parquet_alerts.is_parquet(payload):
                parquet.append(i)
                digests[i] = _digest(payload)
            elif container.is_container(payload):
                found = container.read_container(payload)
                survey = _survey(found.schema)
                if survey is None:
                    raise container.ContainerError(f"record {found.schema.get('name')!r} is not an LSST or ZTF alert")
                if found.records == 0:
                    raise container.ContainerError("empty Avro container: it holds no alert")
                group = groups.setdefault(found.schema_text, _Group(found.schema, survey))
                for block in found.blocks:
                    group.add(i, block.data, block.count)
                digests[i] = _digest(*(block.data for block in found.blocks))
            else:
                sid, body = wire.unframe(payload)
                key = f"lsst:{sid}"
                if key not in groups:
                    groups[key] = _Group(schemas.writer_schema(sid, registry_url), "lsst")
                groups[key].add(i, body, 1)
                digests[i] = _digest(body)
        except (wire.WireFormatError, schemas.UnknownSchema, container.ContainerError) as exc:
            rejects.append(Reject(i, str(exc)))
        except (ValueError, UnicodeDecodeError) as exc:
            rejects.append(Reject(i, f"unreadable message: {exc}"))
    return groups, parquet, rejects, digests


def _decode_group(group: _Group) -> tuple[dict[str, pa.Table], list[Reject]]:
    try:
        program = program_for(group.schema)
    except UnsupportedSchema as exc:
        return {}, [Reject(m, f"unsupported schema: {exc}") for m in sorted(set(group.messages))]
    counts = np.asarray(group.counts, dtype=np.int64)
    messages = np.asarray(group.messages, dtype=np.int64)
    try:
        with joined(group.chunks) as (buf, starts, ends):
            decoded = program.decode(buf, starts, ends, counts)
        ok = decoded.segment_status == 0
        rejects = [Reject(int(messages[s]), reason) for s, reason in decoded.errors().items()]
        record_row = np.repeat(messages[ok], counts[ok])
        if group.survey == "lsst":
            tables = lsst_model.model_tables(decoded, record_row)
        else:
            tables, malformed = ztf_model.model_tables(decoded, record_row)
            rejects += [Reject(int(record_row[r]), "malformed ZTF objectId") for r in np.flatnonzero(malformed)]
    except (KeyError, ValueError, IndexError, pa.ArrowException) as exc:
        # A writer schema the model cannot map (no diaObjectId, a null ZTF candidate, an enum index past its
        # symbols...): its messages are refused, the rest of the batch goes on.
        return {}, [Reject(m, f"unusable alert: {type(exc).__name__}: {exc}") for m in sorted(set(group.messages))]
    wrong = validate.bad_flux_types(tables)
    if wrong is not None:  # the whole writer schema: its tables would not merge with the others
        return {}, [*rejects, *(Reject(m, f"unusable alert: {wrong}") for m in sorted(set(group.messages)))]
    return _with_survey(tables, group.survey), rejects


def _decode_parquet(index: int, payload: bytes) -> tuple[dict[str, pa.Table], list[Reject]]:
    """A Parquet file of LSST alerts (one message) as model tables; a file that is not one is a reject."""
    try:
        decoded = parquet_alerts.decoded_tables(payload)
        record_row = np.full(decoded.tables["diaSource"].num_rows, index, dtype=np.int64)
        tables = lsst_model.model_tables(decoded, record_row)
    except (ValueError, KeyError, schemas.UnknownSchema) as exc:
        return {}, [Reject(index, f"Parquet alerts: {exc}")]
    return _with_survey(tables, "lsst"), []


def _with_survey(tables: dict[str, pa.Table], name: str) -> dict[str, pa.Table]:
    survey = pa.scalar(name, pa.string())
    return {table: t.append_column(paths.SURVEY, pa.repeat(survey, t.num_rows)) for table, t in tables.items()}


def decode_batch(batch: RawBatch, max_message_bytes: int = 4_000_000, registry_url: str | None = None) -> DecodedBatch:
    """Decode a micro-batch into the model tables; every message is accepted or rejected with its reason.

    Wire-format schema ids are looked up in the schema registry at ``registry_url`` when given, else in the
    schemas shipped with lsst-alert-packet.
    """
    groups, parquet, rejects, digests = _group(batch, max_message_bytes, registry_url)
    decoded = [_decode_group(group) for group in groups.values()]
    decoded += [_decode_parquet(i, batch.payloads[i]) for i in parquet]
    merged = _merge(decoded, rejects)
    rejects.extend(_invalid_positions(merged["sources"]))
    rejects.extend(Reject(i, reason) for i, reason in validate.missing_ids(merged["sources"], ROW).items())
    for name in ("sources", "prv_sources", "forced_sources"):  # a NaN time in history would file a row at night -2**31
        for i, reason in validate.invalid_times(merged[name], ROW).items():
            rejects.append(Reject(i, reason if name == "sources" else f"{reason} in {name}"))
    rejects.extend(Reject(i, reason) for i, reason in validate.invalid_utf8(merged, ROW).items())
    # One reason per message; a rejected message leaves no row in any table.
    by_message: dict[int, str] = {}
    for r in rejects:
        by_message.setdefault(r.index, r.reason)
    # A message that yielded no alert and no reason (a Parquet file without rows...) is not dropped silently.
    yielded = np.zeros(len(batch), dtype=bool)
    yielded[merged["sources"][ROW].to_numpy()] = True
    yielded[list(by_message)] = True
    for i in np.flatnonzero(~yielded).tolist():
        by_message[i] = "the message holds no alert"
    if by_message:
        bad_rows = pa.array(sorted(by_message), pa.int64())
        merged = {n: t.filter(pc.invert(pc.is_in(t[ROW], bad_rows))) for n, t in merged.items()}
    merged["cutouts"] = _with_digest(merged["cutouts"], digests)
    merged = {n: _with_provenance(t, batch) for n, t in merged.items()}
    return DecodedBatch(**merged, rejects=[Reject(i, reason) for i, reason in sorted(by_message.items())])


def _merge(decoded: list[tuple[dict[str, pa.Table], list[Reject]]], rejects: list[Reject]) -> dict[str, pa.Table]:
    """The model tables of every writer schema's group, concatenated; a group whose tables do not merge with
    those of the larger groups (a column of another type) is refused whole, with the reason (in ``rejects``)."""
    for _, bad in decoded:
        rejects.extend(bad)
    parts: dict[str, list[pa.Table]] = {name: [] for name in MODEL_TABLES}
    schemas_so_far: dict[str, pa.Schema] = {}
    for tables, _ in sorted(decoded, key=lambda d: -max((t.num_rows for t in d[0].values()), default=0)):
        try:
            unified = {
                name: pa.unify_schemas([schemas_so_far[name], t.schema], promote_options="permissive")
                if name in schemas_so_far
                else t.schema
                for name, t in tables.items()
            }
        except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            messages = sorted({int(r) for t in tables.values() if t.num_rows for r in t[ROW].to_numpy()})
            rejects.extend(Reject(m, f"unusable alert: {exc}") for m in messages)
            continue
        schemas_so_far.update(unified)
        for name, table in tables.items():
            parts[name].append(table)
    return {name: pa.concat_tables(p, promote_options="permissive") if p else _empty() for name, p in parts.items()}


def _invalid_positions(sources: pa.Table) -> list[Reject]:
    """Alerts whose triggering position is missing, NaN or out of range."""
    if sources.num_rows == 0:
        return []
    ra = np.asarray(pc.fill_null(sources["ra"], np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    dec = np.asarray(pc.fill_null(sources["dec"], np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra < 360) & (np.abs(dec) <= 90)
    rows = sources[ROW].to_numpy()
    return [
        Reject(int(rows[j]), f"invalid position ra={float(ra[j])} dec={float(dec[j])}") for j in np.flatnonzero(~good)
    ]


def _with_digest(cutouts: pa.Table, digests: np.ndarray) -> pa.Table:
    """Add each alert's content digest to its cutouts row (one row per alert, the lake's record of the alerts it
    holds): its message's digest, mixed with its place in the message when the message holds several alerts."""
    rows = cutouts[ROW].to_numpy() if cutouts.num_rows else np.array([], dtype=np.int64)
    # The rows of one message are contiguous and in record order: number them within their message.
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.array([], dtype=np.int64)
    place = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    with np.errstate(over="ignore"):
        mixed = digests[rows].astype(np.uint64) ^ (place.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return cutouts.append_column(paths.ALERT_DIGEST, pa.array((mixed >> np.uint64(1)).astype(np.int64), pa.int64()))


def _with_provenance(table: pa.Table, batch: RawBatch) -> pa.Table:
    """Add the Kafka topic, partition and offset of each row's message."""
    rows = pa.array(table[ROW].to_numpy() if table.num_rows else np.array([], dtype=np.int64))
    table = table.append_column(paths.KAFKA_TOPIC, pa.array(batch.topics, pa.string()).take(rows))
    table = table.append_column(paths.KAFKA_PARTITION, pa.array(batch.partitions, pa.int32()).take(rows))
    return table.append_column(paths.KAFKA_OFFSET, pa.array(batch.offsets, pa.int64()).take(rows))
