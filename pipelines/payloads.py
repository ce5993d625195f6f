"""Filter matches as messages: JSON records in the shape of Lasair's filter topics, or Avro with a published schema.

JSON: one object per match with the selected columns and ``UTC`` (when the broker sent it), 64-bit IDs as
strings. Avro: the same fields in Confluent wire format (a zero byte, the 4-byte id of the schema published in the
metadata database, then the record); IDs stay ``long``, exact.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import fastavro
import pyarrow as pa

from nightjar import records
from nightjar.sql.avro_results import UTC_FIELD, AvroSchemaError, avro_schema
from nightjar.streams import wire

__all__ = [
    "OBJECT_URL_FIELD",
    "UTC_FIELD",
    "AvroSchemaError",
    "avro_payloads",
    "avro_schema",
    "json_payloads",
    "object_url",
    "schema_fingerprint",
    "with_links",
]

OBJECT_URL_FIELD = "objectUrl"  # e-mails and webhooks: the portal's page of the match's object


def object_url(public_url: str, object_id: object) -> str:
    """The portal's page of an object (``NIGHTJAR_PUBLIC_URL`` + ``/objects/<id>``).

    Examples
    --------
    >>> object_url("https://broker.example.org/", "170000000001000096")
    'https://broker.example.org/objects/170000000001000096'
    """
    return f"{public_url.rstrip('/')}/objects/{object_id}"


def with_links(recs: list[dict[str, Any]], public_url: str | None) -> list[dict[str, Any]]:
    """The records, each with ``objectUrl`` when it has a ``diaObjectId`` and the portal's address is known."""
    if not public_url:
        return recs
    return [
        {**r, OBJECT_URL_FIELD: object_url(public_url, r["diaObjectId"])} if r.get("diaObjectId") is not None else r
        for r in recs
    ]


def linked_records(matches: pa.Table, stamp: str, public_url: str | None) -> list[dict[str, Any]]:
    """The rows as records (IDs as strings) for e-mails and webhooks: each with the UTC time of sending and, when
    the portal's address is known, a link to its object's page."""
    return with_links([{**r, UTC_FIELD: stamp} for r in records.to_records(matches)], public_url)


def json_payloads(matches: pa.Table, stamp: str) -> list[bytes]:
    """One JSON message per row: the row's columns (IDs as strings) and the UTC time of sending."""
    return [json.dumps({**rec, UTC_FIELD: stamp}, default=str).encode() for rec in records.to_records(matches)]


def schema_fingerprint(schema: dict[str, Any]) -> str:
    """A stable fingerprint of an Avro schema (the SHA-256 of its canonical JSON), to find it in the schema registry."""
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


def avro_payloads(matches: pa.Table, schema: dict[str, Any], schema_id: int, stamp: str) -> list[bytes]:
    """One Confluent-framed Avro message per row."""
    parsed = fastavro.parse_schema(schema)
    out = []
    for row in matches.to_pylist():
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, {**row, UTC_FIELD: stamp})
        out.append(wire.frame(schema_id, buf.getvalue()))
    return out
