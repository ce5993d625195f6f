"""The ``annotations`` lake table: classifications that annotators (classifiers, other brokers, follow-up systems)
write back about objects.

One row per annotation, never updated: an annotator that changes its mind writes a new row, and readers take the
newest per (object, topic) when they want one answer. ``annotationId`` is a 63-bit id, time-ordered (milliseconds
since the epoch in the high bits, random low bits), so ids sort by creation and never collide in practice.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nightjar import paths
from nightjar.lake.commit import append, lake_lock, log_batch
from nightjar.lake.read import rows_of_objects

SCHEMA = pa.schema(
    [
        pa.field("diaObjectId", pa.int64()),
        pa.field("annotationId", pa.int64()),
        pa.field("topic", pa.string()),
        pa.field("annotator", pa.string()),
        pa.field("version", pa.string()),
        pa.field("classification", pa.string()),
        pa.field("explanation", pa.string()),
        pa.field("classdict", pa.string()),  # JSON text
        pa.field("url", pa.string()),
        pa.field("created", pa.timestamp("us", tz="UTC")),
    ]
)
_RANDOM_BITS = 22  # 41 bits of milliseconds last until 2039; 22 random bits below them make 63


def new_annotation_id() -> int:
    """A positive 63-bit id: creation time in milliseconds, then random bits.

    Examples
    --------
    >>> 0 < new_annotation_id() < 2**63
    True
    """
    millis = int(time.time() * 1000) & ((1 << (63 - _RANDOM_BITS)) - 1)
    return (millis << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)


def to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Annotation rows as a table of the lake's schema; ``annotationId`` and ``created`` filled in when absent."""
    now = datetime.now(UTC)
    full = [
        {
            **{f.name: None for f in SCHEMA},
            **row,
            "annotationId": row.get("annotationId") or new_annotation_id(),
            "created": row.get("created") or now,
        }
        for row in rows
    ]
    for row in full:
        if isinstance(row["classdict"], dict | list):
            row["classdict"] = json.dumps(row["classdict"])
    return pa.Table.from_pylist(full, schema=SCHEMA)


def append_annotations(home: Path, rows: Sequence[dict[str, Any]]) -> int:
    """Append annotations to the lake and log a new lake snapshot, so a query right after sees them.

    Runs under the lake's commit lock (one batch commit at a time), then records the tables' versions in the
    lake log. Returns the number of rows written.
    """
    if not rows:
        return 0
    table = to_table(rows)
    with lake_lock(home):
        append(home, paths.ANNOTATIONS, table, {})
        log_batch(home, {})
    return table.num_rows


def read_annotations(home: Path, dia_object_id: int) -> pa.Table:
    """Every annotation of one object in the lake, oldest first (empty when there is none)."""
    data = rows_of_objects(home, paths.ANNOTATIONS, np.array([dia_object_id], np.int64))
    if data is None:
        return SCHEMA.empty_table()
    return data.sort_by([("created", "ascending"), ("annotationId", "ascending")])


def existing_objects(home: Path, object_ids: Sequence[int]) -> set[int]:
    """The ids among ``object_ids`` that the ``objects`` table holds (file statistics prune the read)."""
    if not object_ids:
        return set()
    found = rows_of_objects(home, paths.OBJECTS, np.asarray(object_ids, np.int64), columns=["diaObjectId"])
    return set() if found is None else set(found["diaObjectId"].to_pylist())


def encode_messages(table: pa.Table) -> list[tuple[bytes, bytes]]:
    """Annotations as Kafka messages (key: the diaObjectId; value: the row as JSON, IDs as strings), for the
    ``nightjar.annotations`` topic that triggers annotation filters."""
    out = []
    for row in table.to_pylist():
        row["diaObjectId"], row["annotationId"] = str(row["diaObjectId"]), str(row["annotationId"])
        row["created"] = row["created"].isoformat()
        out.append((row["diaObjectId"].encode(), json.dumps(row).encode()))
    return out


def decode_messages(payloads: Sequence[bytes]) -> tuple[pa.Table, list[tuple[int, str]]]:
    """The annotations in ``nightjar.annotations`` messages, and (index, reason) for each message that is not one."""
    rows, bad = [], []
    for i, payload in enumerate(payloads):
        try:
            row = json.loads(payload)
            row["diaObjectId"], row["annotationId"] = int(row["diaObjectId"]), int(row["annotationId"])
            row["created"] = datetime.fromisoformat(row["created"])
            rows.append({f.name: row.get(f.name) for f in SCHEMA})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            bad.append((i, f"not an annotation message: {exc}"))
    return pa.Table.from_pylist(rows, schema=SCHEMA), bad
