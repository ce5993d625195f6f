"""Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then schemaless Avro."""

from __future__ import annotations

import struct

MAGIC = 0
HEADER = struct.Struct(">bI")


class WireFormatError(ValueError):
    """Bytes that are not a Confluent wire-format message."""


def frame(sid: int, body: bytes) -> bytes:
    """A message in Confluent wire format: the magic byte and schema id, then the Avro body."""
    return HEADER.pack(MAGIC, sid) + body


def unframe(payload: bytes) -> tuple[int, memoryview]:
    """The schema id and the Avro body of a wire-format payload."""
    if len(payload) < HEADER.size:
        raise WireFormatError(f"message of {len(payload)} bytes is shorter than the 5-byte wire header")
    magic, sid = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise WireFormatError(f"wrong magic byte {magic} (expected 0)")
    return sid, memoryview(payload)[HEADER.size :]
