"""Alert files on disk as Kafka-style payloads: raw wire-format messages, Avro container files or Parquet files of
LSST alerts."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import fastavro

from nightjar.errors import UserError
from nightjar.streams import container, lsst_model, parquet_alerts, schemas, wire, ztf_model

_VERSION = re.compile(r"v(\d+)_(\d+)")


class AlertFileError(UserError):
    """A file that holds no alerts Nightjar can read."""


def lsst_schema_id(writer_schema: dict[str, Any], first: dict[str, Any] | None = None) -> int:
    """The Rubin schema id of an LSST container's writer schema (``lsst.vM_m.alert``, or a record's
    ``lsst_schema_version`` in files re-serialised by other brokers)."""
    for text in (writer_schema.get("name", ""), writer_schema.get("namespace", "")):
        if found := _VERSION.search(str(text)):
            return schemas.schema_id(int(found[1]), int(found[2]))
    if first is not None and (found := _VERSION.search(str(first.get("lsst_schema_version", "")))):
        return schemas.schema_id(int(found[1]), int(found[2]))
    raise AlertFileError(f"cannot tell the LSST schema version of record {writer_schema.get('name')!r}")


def read_payloads(path: Path, wire_format: bool = True) -> list[bytes]:
    """The alerts of ``path`` as payloads the decoder reads: the one reader of ``ingest``, ``replay`` and
    ``alerts inspect``, which differ only in how an LSST container is framed.

    A wire-format file is one payload. A ZTF container file is one payload, as ZTF sends it on Kafka. An LSST
    container file is, with ``wire_format``, one payload per alert (as Rubin's Kafka sends them, for replays):
    wire format under the official schema of its version, or, when a file re-serialised by another broker does
    not say its version or does not fit the official schema, a one-alert container under the file's own writer
    schema (the decoder reads both); without ``wire_format`` it is the container itself (for ingestion, decoded in
    one pass).
    """
    data = path.read_bytes()
    if parquet_alerts.is_parquet(data):
        return _parquet_payloads(path, data, wire_format)
    if data[:1] == b"\x00":
        wire.unframe(data)
        return [data]
    if not container.is_container(data):
        raise AlertFileError(f"{path}: neither a wire-format message, an Avro container nor a Parquet file")
    try:
        found = container.read_container(data)
    except container.ContainerError as exc:
        raise AlertFileError(f"{path}: {exc}") from None
    if ztf_model.is_ztf(found.schema) or not wire_format:
        if not (ztf_model.is_ztf(found.schema) or lsst_model.is_lsst(found.schema)):
            raise AlertFileError(f"{path}: record {found.schema.get('name')!r} is not an LSST or ZTF alert")
        return [data]
    if not lsst_model.is_lsst(found.schema):
        raise AlertFileError(f"{path}: record {found.schema.get('name')!r} is not an LSST or ZTF alert")
    records = [r for r in fastavro.reader(io.BytesIO(data)) if isinstance(r, dict)]
    try:
        return _framed(lsst_schema_id(found.schema, records[0] if records else None), records)
    except (AlertFileError, schemas.UnknownSchema, ValueError, TypeError, KeyError):
        return _one_alert_containers(found.schema, records)


def _framed(sid: int, records: list[dict[str, Any]]) -> list[bytes]:
    """Each record in wire format under the official LSST schema ``sid``."""
    writer = schemas.lsst_schema(sid)
    payloads = []
    for record in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, record)
        payloads.append(wire.frame(sid, buf.getvalue()))
    return payloads


def _one_alert_containers(writer_schema: dict[str, Any], records: list[dict[str, Any]]) -> list[bytes]:
    """Each record as a container of one record under the file's own writer schema."""
    parsed = fastavro.parse_schema(writer_schema)
    payloads = []
    for record in records:
        buf = io.BytesIO()
        fastavro.writer(buf, parsed, [record], codec="null")
        payloads.append(buf.getvalue())
    return payloads


def _parquet_payloads(path: Path, data: bytes, wire_format: bool) -> list[bytes]:
    """A Parquet file of LSST alerts: itself for ingestion (decoded column by column), or one wire-format payload
    per alert under the official schema of its version, for replays."""
    try:
        if not wire_format:
            parquet_alerts.check(data)  # refuse a file that holds no alerts now, not in the pipeline
            return [data]
        return _framed(*parquet_alerts.avro_records(data))
    except (ValueError, TypeError, KeyError, schemas.UnknownSchema) as exc:
        raise AlertFileError(f"{path}: {exc}") from None
