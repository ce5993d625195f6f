"""Alert files on disk as wire-format payloads: raw Kafka bodies, or LSST Avro container files."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import fastavro

from nightjar.streams import schemas, wire

_VERSION = re.compile(r"v(\d+)_(\d+)")


class AlertFileError(ValueError):
    """A file that holds no alerts Nightjar can read."""


def _container_schema_id(writer_schema: dict[str, Any], first: dict[str, Any] | None) -> int:
    # Rubin names the record lsst.vM_m.alert; re-serialised files (Fink) carry lsst_schema_version instead.
    for text in (writer_schema.get("name", ""), writer_schema.get("namespace", "")):
        if found := _VERSION.search(str(text)):
            return schemas.schema_id(int(found[1]), int(found[2]))
    if first is not None and (found := _VERSION.search(str(first.get("lsst_schema_version", "")))):
        return schemas.schema_id(int(found[1]), int(found[2]))
    raise AlertFileError(f"Avro container with record {writer_schema.get('name')!r} is not an LSST alert")


def read_payloads(path: Path) -> list[bytes]:
    """Every alert of ``path`` as a wire-format payload; AlertFileError if the file cannot be read."""
    data = path.read_bytes()
    if data[:1] == b"\x00":
        wire.unframe(data)
        return [data]
    if data[:4] != b"Obj\x01":
        raise AlertFileError(f"{path}: neither a wire-format message nor an Avro container file")
    try:
        reader = fastavro.reader(io.BytesIO(data))
        records = list(reader)
    except Exception as exc:
        raise AlertFileError(f"{path}: unreadable Avro container: {exc}") from None
    assert isinstance(reader.writer_schema, dict)
    first = records[0] if records and isinstance(records[0], dict) else None
    sid = _container_schema_id(reader.writer_schema, first)
    writer = schemas.lsst_schema(sid)
    payloads = []
    for record in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, record)
        payloads.append(wire.frame(sid, buf.getvalue()))
    return payloads
