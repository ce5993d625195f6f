r"""Avro object container files (``Obj\x01``): header, writer schema and data blocks, without decoding records.

ZTF sends each alert as a whole container file on Kafka; brokers and archives store LSST alerts the same way.
The blocks are handed to the columnar decoder as segments of many records each.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from nightjar.errors import UserError

MAGIC = b"Obj\x01"
SYNC_SIZE = 16


class ContainerError(UserError):
    """Bytes that are not a readable Avro container."""


@dataclass(frozen=True)
class Block:
    """One data block of a container file: its record count and its records' bytes (decompressed)."""

    count: int
    data: bytes


@dataclass(frozen=True)
class Container:
    """A container file's writer schema (parsed and as text), its codec and its data blocks."""

    schema: dict[str, Any]
    schema_text: str
    codec: str
    blocks: list[Block]

    @property
    def records(self) -> int:
        """The records in all the blocks."""
        return sum(b.count for b in self.blocks)


def _long(data: bytes, pos: int) -> tuple[int, int]:
    shift = acc = 0
    while True:
        if pos >= len(data):
            raise ContainerError("truncated container: read past the end")
        b = data[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if b < 0x80:
            return (acc >> 1) ^ -(acc & 1), pos
        shift += 7
        if shift > 63:
            raise ContainerError("corrupt container: varint too long")


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _long(data, pos)
    if n < 0 or pos + n > len(data):
        raise ContainerError("corrupt container: bad length")
    return data[pos : pos + n], pos + n


def is_container(payload: bytes) -> bool:
    """True if the payload starts with the container files' magic bytes."""
    return payload[:4] == MAGIC


def read_header(data: bytes) -> tuple[dict[str, Any], str, str, bytes, int]:
    """The writer schema (parsed and as text), codec, sync marker and the position of the first block."""
    if not is_container(data):
        raise ContainerError("not an Avro container (no Obj\\x01 magic)")
    pos = 4
    meta: dict[str, bytes] = {}
    while True:
        count, pos = _long(data, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            _, pos = _long(data, pos)
        for _ in range(count):
            key, pos = _bytes(data, pos)
            value, pos = _bytes(data, pos)
            meta[key.decode()] = value
    sync = data[pos : pos + SYNC_SIZE]
    pos += SYNC_SIZE
    if "avro.schema" not in meta:
        raise ContainerError("container without avro.schema")
    schema_text = meta["avro.schema"].decode()
    codec = meta.get("avro.codec", b"null").decode() or "null"
    return json.loads(schema_text), schema_text, codec, sync, pos


def schema_name(schema: dict[str, Any]) -> str:
    """The full name of a record schema (``namespace.name``)."""
    name = str(schema.get("name", "?"))
    space = schema.get("namespace")
    return f"{space}.{name}" if space and "." not in name else name


def read_container(data: bytes) -> Container:
    """Parse a whole container; ContainerError says what is wrong with a corrupt or truncated one."""
    schema, schema_text, codec, sync, pos = read_header(data)
    if codec not in ("null", "deflate"):
        raise ContainerError(f"container codec {codec!r} is not supported (null, deflate)")
    blocks = []
    while pos < len(data):
        count, pos = _long(data, pos)
        raw, pos = _bytes(data, pos)
        if data[pos : pos + SYNC_SIZE] != sync:
            raise ContainerError(f"corrupt container: expected sync marker not found at byte {pos}")
        pos += SYNC_SIZE
        if codec == "deflate":
            try:
                raw = zlib.decompress(raw, -15)
            except zlib.error as exc:
                raise ContainerError(f"corrupt container: deflate block: {exc}") from None
        blocks.append(Block(count, raw))
    return Container(schema, schema_text, codec, blocks)
