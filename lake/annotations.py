"""The ``annotations`` lake table: classifications that annotators (classifiers, other brokers, follow-up systems)
write back about objects.

One row per annotation, never updated: an annotator that changes its mind writes a new row, and readers take the
newest per (object, topic) when they want one answer. ``annotationId`` is a positive 63-bit id, time-ordered:
milliseconds since the epoch in the high 41 bits, then a 10-bit tag drawn once per process (redrawn after a fork),
then a 12-bit per-process sequence. Within one process ids are strictly increasing, so unique by construction
(any number per millisecond, from any thread); two processes collide only if they drew the same tag and issue the
same sequence number in the same millisecond.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from nightjar import paths
from nightjar.lake.commit import append, lake_lock, log_batch
from nightjar.lake.read import rows_of_objects
from nightjar.lake.schemas import ANNOTATIONS_SCHEMA
from nightjar.storage import Home

_SEQUENCE_BITS = 12  # ids per millisecond per process before the clock is borrowed from the next millisecond
_TAG_BITS = 10  # per-process tag: processes writing in the same millisecond rarely share one
_LOW_BITS = _TAG_BITS + _SEQUENCE_BITS  # 41 bits of milliseconds above them last until 2039 and make 63


class _IdClock:
    """Issues (millisecond, sequence) pairs that strictly increase within the process, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._millis = 0
        self._sequence = 0
        self.tag = secrets.randbits(_TAG_BITS)

    def after_fork(self) -> None:
        # A forked child shares the parent's clock state and tag: a different tag keeps their ids apart.
        self._lock = threading.Lock()
        parent = self.tag
        while self.tag == parent:
            self.tag = secrets.randbits(_TAG_BITS)

    def next(self) -> tuple[int, int]:
        with self._lock:
            now = time.time_ns() // 1_000_000
            if now > self._millis:
                self._millis, self._sequence = now, 0
            else:
                # Same millisecond (or the wall clock stepped back): count on; when the sequence is exhausted,
                # run ahead into the next millisecond rather than reuse a value.
                self._sequence += 1
                if self._sequence >> _SEQUENCE_BITS:
                    self._millis, self._sequence = self._millis + 1, 0
            return self._millis, self._sequence


_CLOCK = _IdClock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CLOCK.after_fork)


def new_annotation_id() -> int:
    """A positive 63-bit id: creation time in milliseconds, a per-process tag, then a per-process sequence.

    Ids from one process strictly increase, so they never repeat; ``id >> 22`` is the creation time in ms.

    Examples
    --------
    >>> a, b = new_annotation_id(), new_annotation_id()
    >>> 0 < a < b < 2**63
    True
    """
    millis, sequence = _CLOCK.next()
    millis &= (1 << (63 - _LOW_BITS)) - 1
    return (millis << _LOW_BITS) | (_CLOCK.tag << _SEQUENCE_BITS) | sequence


def to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Annotation rows as a table of the lake's schema; ``annotationId`` and ``created`` filled in when absent."""
    now = datetime.now(UTC)
    full = [
        {
            **{f.name: None for f in ANNOTATIONS_SCHEMA},
            **row,
            "annotationId": row.get("annotationId") or new_annotation_id(),
            "created": row.get("created") or now,
        }
        for row in rows
    ]
    for row in full:
        if isinstance(row["classdict"], dict | list):
            row["classdict"] = json.dumps(row["classdict"])
    return pa.Table.from_pylist(full, schema=ANNOTATIONS_SCHEMA)


def append_annotations(home: Home, rows: Sequence[dict[str, Any]]) -> int:
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


def read_annotations(home: Home, dia_object_id: int) -> pa.Table:
    """Every annotation of one object in the lake, oldest first (empty when there is none)."""
    data = rows_of_objects(home, paths.ANNOTATIONS, np.array([dia_object_id], np.int64))
    if data is None:
        return ANNOTATIONS_SCHEMA.empty_table()
    return data.sort_by([("created", "ascending"), ("annotationId", "ascending")])


def existing_objects(home: Home, object_ids: Sequence[int]) -> set[int]:
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
            rows.append({f.name: row.get(f.name) for f in ANNOTATIONS_SCHEMA})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            bad.append((i, f"not an annotation message: {exc}"))
    return pa.Table.from_pylist(rows, schema=ANNOTATIONS_SCHEMA), bad
