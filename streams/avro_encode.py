"""Avro binary encoding of many flat records at once, with numpy: the writer side of the simulator.

fastavro writes a heavy LSST alert (~160 history records of up to 100 fields, most of them nullable unions) in
~30 ms; that capped the simulator at ~25 alerts/s. Here a whole column of a record field is encoded at once
(zig-zag varints, little-endian floats, union branch bytes), the per-field byte matrices are laid side by side and
the valid bytes of each row are read out in row order: the records' encodings, concatenated, with their offsets.
An Avro array is a count, its items' bytes back to back and a zero count, so pre-encoded records are spliced into
alerts without re-encoding (``array``).

Flat records only: fields of the primitive types and unions of ``null`` with one primitive. Missing columns take
the simulator's defaults: null for unions, zero (or the empty string) otherwise.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

Column = Any  # a scalar (the same value in every row), a numpy array, or a list of strings; None is null
_WIDTH = {"float": 4, "double": 8, "boolean": 1}
_DTYPE = {"float": "<f4", "double": "<f8"}
_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)


def varint(value: int) -> bytes:
    """The zig-zag varint of an Avro ``int`` or ``long``."""
    z = (value << 1) ^ (value >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def array(count: int, items: bytes | bytearray | memoryview) -> bytes:
    """An Avro array of ``count`` pre-encoded items (one block, then the zero count)."""
    return varint(count) + bytes(items) + b"\0" if count else b"\0"


def encode_scalar(avro_type: Any, value: Any) -> bytes:
    """One value of a primitive type or a ``["null", T]`` union."""
    if isinstance(avro_type, list):
        if value is None:
            return varint(avro_type.index("null"))
        branch = next(i for i, t in enumerate(avro_type) if t != "null")
        return varint(branch) + encode_scalar(avro_type[branch], value)
    if avro_type in ("int", "long"):
        return varint(int(value))
    if avro_type == "float":
        return struct.pack("<f", value)
    if avro_type == "double":
        return struct.pack("<d", value)
    if avro_type == "boolean":
        return b"\1" if value else b"\0"
    if avro_type in ("string", "bytes"):
        data = value.encode() if isinstance(value, str) else bytes(value)
        return varint(len(data)) + data
    raise TypeError(f"cannot encode Avro type {avro_type!r}")


def _default(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        return None
    return {"long": 0, "int": 0, "float": 0.0, "double": 0.0, "boolean": False, "string": "", "bytes": b""}[avro_type]


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Zig-zag varints of int64 ``values``: an (n, width) byte matrix and each row's length (None: all full)."""
    v = np.asarray(values, dtype=np.int64)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    top = int(z.max()) if len(z) else 0
    width = max(1, -(-top.bit_length() // 7))
    groups = z[:, None] >> _SHIFTS[None, :width]
    if width == 1:
        return groups.astype(np.uint8), None
    lengths = np.maximum((groups != 0).sum(axis=1), 1)
    more = np.arange(width)[None, :] < (lengths - 1)[:, None]
    matrix = ((groups & 0x7F) | (more.astype(np.uint64) << 7)).astype(np.uint8)
    return matrix, None if bool((lengths == width).all()) else lengths


def _strings(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Encoded strings: each distinct value is encoded once (columns such as ``band`` have a handful)."""
    distinct, inverse = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    encoded = [encode_scalar("string", str(s)) for s in distinct]
    width = max(len(b) for b in encoded)
    matrix = np.frombuffer(b"".join(b.ljust(width, b"\0") for b in encoded), dtype=np.uint8).reshape(-1, width)
    return matrix[inverse.ravel()], np.array([len(b) for b in encoded], dtype=np.int64)[inverse.ravel()]


def _column(avro_type: str, values: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The (n, width) byte matrix of a non-null column and its row lengths (None: every row is full width)."""
    if avro_type in ("int", "long"):
        return _varints(np.broadcast_to(np.asarray(values, dtype=np.int64), (n,)))
    if avro_type in _DTYPE:
        data = np.ascontiguousarray(np.broadcast_to(np.asarray(values, dtype=_DTYPE[avro_type]), (n,)))
        return data.view(np.uint8).reshape(n, _WIDTH[avro_type]), None
    if avro_type == "boolean":
        return np.broadcast_to(np.asarray(values, dtype=bool), (n,)).astype(np.uint8).reshape(n, 1), None
    if avro_type == "string":
        return _strings(np.broadcast_to(np.asarray(values, dtype=str), (n,)))
    raise TypeError(f"cannot encode Avro type {avro_type!r} column-wise")


class RecordEncoder:
    r"""Encodes many records of one flat Avro record schema at once.

    Examples
    --------
    >>> schema = {"type": "record", "name": "r", "fields": [{"name": "a", "type": "long"},
    ...           {"name": "b", "type": ["null", "double"]}]}
    >>> data, offsets = RecordEncoder(schema).encode({"a": np.array([1, 300])}, 2)
    >>> data, offsets.tolist()
    (b'\x02\x00\xd8\x04\x00', [0, 2, 5])
    """

    def __init__(self, schema: dict[str, Any]):
        self.fields = [(f["name"], f["type"]) for f in schema["fields"]]
        for name, avro_type in self.fields:
            branches = avro_type if isinstance(avro_type, list) else [avro_type]
            if not all(isinstance(t, str) for t in branches) or len([t for t in branches if t != "null"]) > 1:
                raise TypeError(f"field {name} of {schema.get('name')}: only primitives and [null, T] unions")

    def encode(
        self, columns: dict[str, Column], n: int, nulls: dict[str, np.ndarray] | None = None
    ) -> tuple[bytes, np.ndarray]:
        """The concatenated encodings of ``n`` records and their ``n + 1`` offsets.

        ``columns`` maps field names to a scalar or an array of ``n`` values; ``nulls`` maps nullable fields to a
        boolean array that is true where the row's value is null. Names the schema does not have are ignored.
        """
        nulls = nulls or {}
        if n == 0:
            return b"", np.zeros(1, dtype=np.int64)
        parts: list[tuple[np.ndarray, np.ndarray | None]] = []  # (n, width) bytes, row lengths (None: full)
        constant = bytearray()
        for name, avro_type in self.fields:
            value = columns.get(name, _default(avro_type))
            null = nulls.get(name)
            if not isinstance(value, np.ndarray | list) and null is None:
                constant += encode_scalar(avro_type, value)  # the same bytes in every row
                continue
            if constant:
                parts.append((np.frombuffer(bytes(constant), np.uint8)[None, :], None))
                constant.clear()
            if isinstance(avro_type, list):
                branch = next(i for i, t in enumerate(avro_type) if t != "null")
                matrix, row_len = _column(avro_type[branch], value, n)
                index = np.full((n, 1), varint(branch)[0], dtype=np.uint8)
                if null is not None:
                    index[null, 0] = varint(avro_type.index("null"))[0]
                    row_len = np.where(null, 0, matrix.shape[1] if row_len is None else row_len)
                parts.append((index, None))
            else:
                matrix, row_len = _column(avro_type, value, n)
            parts.append((matrix, row_len))
        if constant:
            parts.append((np.frombuffer(bytes(constant), np.uint8)[None, :], None))
        width = sum(matrix.shape[1] for matrix, _ in parts)
        data = np.empty((n, width), dtype=np.uint8)
        mask = np.ones((n, width), dtype=bool)
        lengths = np.zeros(n, dtype=np.int64)
        at = 0
        for matrix, row_len in parts:
            w = matrix.shape[1]
            data[:, at : at + w] = matrix
            if row_len is None:
                lengths += w
            else:
                mask[:, at : at + w] = np.arange(w)[None, :] < row_len[:, None]
                lengths += row_len
            at += w
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return data[mask].tobytes() if not mask.all() else data.tobytes(), offsets
