"""Columnar Avro decoding: many records of one writer schema become Arrow tables in one compiled pass.

``Program.compile(schema)`` turns an Avro record schema into the op table the kernel (``streams.avro_kernel``)
runs; ``Program.decode`` takes a buffer and the segments holding its records (a Kafka message body holds one,
an Avro container block holds many) and returns one Arrow table per record level: the top-level fields, then
one table per nested record or array-of-records field, each row carrying ``_record``, the index of the
top-level record it belongs to. A segment that cannot be decoded is reported with its reason and adds no rows.

Examples
--------
>>> import fastavro, io
>>> schema = {"type": "record", "name": "r", "fields": [{"name": "x", "type": "long"}]}
>>> buf = io.BytesIO(); fastavro.schemaless_writer(buf, schema, {"x": -3})
>>> program = Program.compile(schema)
>>> out = program.decode_messages([buf.getvalue()])
>>> out.tables[""]["x"].to_pylist()
[-3]
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from nightjar.streams import avro_kernel as k
from nightjar.streams.avro_skip import SkipGraph
from nightjar.streams.schemas import arrow_type, named_types

RECORD = "_record"

_PRIMITIVE_KIND = {
    "null": k.K_NULL,
    "boolean": k.K_BOOL,
    "int": k.K_INT,
    "long": k.K_LONG,
    "float": k.K_FLOAT,
    "double": k.K_DOUBLE,
    "string": k.K_STRING,
    "bytes": k.K_BYTES,
}
_VAR_KINDS = (k.K_STRING, k.K_BYTES, k.K_FIXED)


class UnsupportedSchema(ValueError):
    """A schema shape the columnar decoder does not handle (the reference decoder still does)."""


@dataclass
class _Column:
    name: str
    kind: int
    arrow: pa.DataType
    dest: int  # index among the table's fixed or variable columns
    symbols: list[str] | None = None  # enum symbols


@dataclass
class _Table:
    path: str  # "" for the top level, else the field name
    columns: list[_Column] = field(default_factory=list)
    n_fixed: int = 0
    n_var: int = 0


@dataclass
class Decoded:
    """Tables by path ("" is the top level) and the status of every segment (0 = decoded)."""

    tables: dict[str, pa.Table]
    segment_status: np.ndarray
    segment_records: np.ndarray  # first top-level record index of each segment (-1 if it failed)

    def errors(self) -> dict[int, str]:
        """Failed segments and why."""
        return {int(i): k.ERROR_TEXT[int(s)] for i, s in enumerate(self.segment_status) if s != k.OK}


def _unwrap(avro_type: Any, names: dict[str, Any]) -> tuple[Any, int, int]:
    """The non-null branch of a nullable union, with the null and value branch indices (-1, -1 if no union)."""
    if isinstance(avro_type, list):
        others = [i for i, t in enumerate(avro_type) if t != "null"]
        nulls = [i for i, t in enumerate(avro_type) if t == "null"]
        if len(others) != 1 or len(nulls) != 1:
            raise UnsupportedSchema(f"union {avro_type} is not a nullable single type")
        return avro_type[others[0]], nulls[0], others[0]
    return avro_type, -1, -1


def _resolve(avro_type: Any, names: dict[str, Any]) -> Any:
    if isinstance(avro_type, str) and avro_type in names:
        return names[avro_type]
    if isinstance(avro_type, dict) and isinstance(avro_type.get("type"), dict | list):
        return _resolve(avro_type["type"], names)  # {"type": {...}}
    return avro_type


def _record_of(field_type: Any, names: dict[str, Any]) -> dict[str, Any] | None:
    """The record schema of a field that becomes a child table (a record, or an array of records, either
    possibly nullable), else None."""
    try:
        inner, _, _ = _unwrap(field_type, names)
        inner = _resolve(inner, names)
        if isinstance(inner, dict) and inner.get("type") == "array":
            inner, _, _ = _unwrap(inner["items"], names)
            inner = _resolve(inner, names)
    except UnsupportedSchema:
        return None
    return inner if isinstance(inner, dict) and inner.get("type") == "record" else None


class Program:
    """A compiled Avro record schema.

    ``skipped`` names the fields no column holds (stepped over; see ``streams.avro_skip``).
    """

    def __init__(
        self,
        tables: list[_Table],
        ops: np.ndarray,
        op_lo: np.ndarray,
        op_hi: np.ndarray,
        skips: SkipGraph | None = None,
        skipped: Sequence[str] = (),
    ):
        self.tables = tables
        self.ops = ops
        self.op_lo = op_lo
        self.op_hi = op_hi
        self.rows_per_record = [1.0] + [4.0] * (len(tables) - 1)
        graph = skips or SkipGraph({})
        stack = (np.zeros(k.SKIP_STACK, dtype=np.int64), np.zeros(k.SKIP_STACK, dtype=np.int64))
        self.skips = (*graph.arrays(), *stack)
        self.skipped = list(skipped)

    @classmethod
    def compile(cls, schema: dict[str, Any]) -> Program:
        """Compile a record schema: primitives, enums and fixed (or nullable unions of them) become columns, and
        so do the fields of top-level records and arrays of records (LSST, ZTF); every other field is skipped."""
        names = named_types(schema)
        tables = [_Table("")]
        ops: list[list[int]] = []
        per_table: list[list[list[int]]] = [[]]
        skips = SkipGraph(names)
        skipped: list[str] = []

        def add_skip(table: _Table, name: str, avro_type: Any, t_index: int) -> None:
            """Step over the whole field (union included): no column, no validity."""
            skipped.append(f"{table.path}.{name}" if table.path else name)
            per_table[t_index].append([k.K_SKIP, -1, -1, -1, skips.add(avro_type), 0, -1, -1])

        def add_primitive(table: _Table, name: str, field_type: Any, t_index: int) -> None:
            try:
                avro_type, nb, vb = _unwrap(field_type, names)
            except UnsupportedSchema:
                add_skip(table, name, field_type, t_index)  # a union of several types
                return
            avro_type = _resolve(avro_type, names)
            symbols = None
            size = -1
            base = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
            if base == "enum":
                kind, symbols = k.K_ENUM, list(avro_type["symbols"])
                dtype: pa.DataType = pa.string()
            elif base == "fixed":
                kind, size, dtype = k.K_FIXED, int(avro_type["size"]), pa.binary()
            elif isinstance(base, str) and base in _PRIMITIVE_KIND:
                kind = _PRIMITIVE_KIND[base]
                dtype = arrow_type(base, names)[0] if kind != k.K_NULL else pa.null()
            else:
                add_skip(table, name, field_type, t_index)  # map, array, nested record...
                return
            if kind in _VAR_KINDS:
                dest, table.n_var = table.n_var, table.n_var + 1
            else:
                dest, table.n_fixed = table.n_fixed, table.n_fixed + 1
            table.columns.append(_Column(name, kind, dtype, dest, symbols))
            valid_row = dest if kind not in _VAR_KINDS else -1  # fixed up once the table is complete
            per_table[t_index].append([kind, nb, vb, dest, size, valid_row, -1, -1])

        top = tables[0]
        for fld in schema["fields"]:
            record = _record_of(fld["type"], names)
            if record is not None:
                inner, nb, vb = _unwrap(fld["type"], names)
                kind = _resolve(inner, names).get("type")
                item_null = item_value = -1
                if kind == "array":
                    _, item_null, item_value = _unwrap(_resolve(inner, names)["items"], names)
                child = _Table(fld["name"])
                tables.append(child)
                per_table.append([])
                for sub in record["fields"]:
                    add_primitive(child, sub["name"], sub["type"], len(tables) - 1)
                # A presence flag in the top-level table, so a null record and an empty array differ.
                dest, top.n_fixed = top.n_fixed, top.n_fixed + 1
                top.columns.append(
                    _Column(fld["name"], k.K_RECORD if kind == "record" else k.K_ARRAY, pa.bool_(), dest)
                )
                op_kind = k.K_RECORD if kind == "record" else k.K_ARRAY
                per_table[0].append([op_kind, nb, vb, dest, len(tables) - 1, dest, item_null, item_value])
            else:
                add_primitive(top, fld["name"], fld["type"], 0)
        # Validity rows: fixed columns first, then variable ones.
        for table, t_ops in zip(tables, per_table, strict=True):
            for op in t_ops:
                if op[k.O_VALID] < 0:
                    op[k.O_VALID] = table.n_fixed + op[k.O_DEST]
        lo, hi = [], []
        for t_ops in per_table:
            lo.append(len(ops))
            ops.extend(t_ops)
            hi.append(len(ops))
        return cls(
            tables,
            np.asarray(ops, dtype=np.int64).reshape(-1, k.OP_WIDTH),
            np.asarray(lo, dtype=np.int64),
            np.asarray(hi, dtype=np.int64),
            skips,
            skipped,
        )

    def decode(self, buf: np.ndarray, seg_start: np.ndarray, seg_end: np.ndarray, seg_count: np.ndarray) -> Decoded:
        """Decode every segment of ``buf``; capacity grows as needed."""
        n_records = int(seg_count.sum())
        # Rows per record of each child table, learnt from earlier batches, so the store rarely grows.
        caps = [max(n_records, 1)] + [max(int(n_records * r * 1.25) + 16, 16) for r in self.rows_per_record[1:]]
        store = [_Store(t, cap) for t, cap in zip(self.tables, caps, strict=True)]
        counts = np.zeros(len(self.tables), dtype=np.int64)
        status = np.zeros(len(seg_start), dtype=np.int64)
        scratch = np.zeros(16, dtype=np.uint8)
        s = 0
        while True:
            s, full = k.decode_segments(
                buf, seg_start, seg_end, seg_count, s, self.ops, self.op_lo, self.op_hi,
                k.typed_list([x.vals for x in store]), k.typed_list([x.fvals for x in store]),
                k.typed_list([x.valid for x in store]), k.typed_list([x.vstart for x in store]),
                k.typed_list([x.vlen for x in store]), k.typed_list([x.parent for x in store]),
                counts, status, scratch, self.skips,
            )  # fmt: skip
            if full < 0:
                break
            store[full].grow()
        if n_records:
            self.rows_per_record = [max(r, c / n_records) for r, c in zip(self.rows_per_record, counts, strict=True)]
        first = np.full(len(seg_start), -1, dtype=np.int64)
        ok = status == k.OK
        good_counts = np.where(ok, seg_count, 0)
        first[ok] = (np.cumsum(good_counts) - good_counts)[ok]
        tables = {t.path: x.to_arrow(t, int(c), buf) for t, x, c in zip(self.tables, store, counts, strict=True)}
        return Decoded(tables, status, first)

    def decode_messages(self, bodies: list[bytes]) -> Decoded:
        """Decode schemaless Avro bodies, one record each (Kafka messages without their wire header)."""
        with joined(bodies) as (buf, starts, ends):
            return self.decode(buf, starts, ends, np.ones(len(bodies), dtype=np.int64))


class _Scratch:
    """The buffer a process copies each batch's payloads into, kept from batch to batch.

    A heavy batch's payloads are ~200 MB, and nothing decoded points into their copy (``Program.decode`` copies what
    it keeps out of it), so one buffer serves every batch. Taken new for each batch, it came in as new pages every
    time: 30 % of a Dask worker's page faults (docs/lake.md, "Fresh pages"). A decode that finds the buffer in use
    (another thread decoding at the same time) takes one of its own.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buf = np.empty(0, dtype=np.uint8)

    @contextlib.contextmanager
    def take(self, size: int) -> Iterator[np.ndarray]:
        if not self.lock.acquire(blocking=False):
            yield pool_array(size, np.uint8)
            return
        try:
            if len(self.buf) < size:
                self.buf = np.empty(0, dtype=np.uint8)  # the old one goes before the new one comes
                self.buf = pool_array(size + size // 4, np.uint8)  # room for batches a little larger
            yield self.buf[:size]
        finally:
            self.lock.release()


_SCRATCH = _Scratch()


@contextlib.contextmanager
def joined(chunks: Sequence[bytes | memoryview]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The chunks copied into one buffer, with the start and end of each; the buffer is only valid inside the
    ``with`` block (the next batch is copied into it)."""
    lengths = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    with _SCRATCH.take(int(ends[-1]) if len(ends) else 0) as buf:
        for chunk, start, length in zip(chunks, starts.tolist(), lengths.tolist(), strict=True):
            buf[start : start + length] = np.frombuffer(chunk, dtype=np.uint8)
        yield buf, starts, ends


def pool_array(shape: tuple[int, ...] | int, dtype: type | np.dtype) -> np.ndarray:
    """An uninitialised array in Arrow's memory pool.

    The pool keeps freed memory, so batch after batch reuses pages that are already mapped: fresh
    ``np.empty`` memory of a few hundred MB costs more in page faults than the decoding itself.
    """
    shape = (shape,) if isinstance(shape, int) else shape
    count = int(np.prod(shape))
    buffer = pa.allocate_buffer(max(count * np.dtype(dtype).itemsize, 1))
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


class _Store:
    """Column-major value matrices of one table. Every cell of a written row is set by the kernel (value or
    validity), so the matrices need no zeroing."""

    def __init__(self, table: _Table, cap: int) -> None:
        self.vals = pool_array((table.n_fixed, cap), np.int64)
        self.fvals = self.vals.view(np.float64)
        self.valid = pool_array((table.n_fixed + table.n_var, cap), np.uint8)
        self.vstart = pool_array((table.n_var, cap), np.int64)
        self.vlen = pool_array((table.n_var, cap), np.int64)
        self.parent = pool_array(cap, np.int64)
        self.n_fixed = table.n_fixed

    def grow(self) -> None:
        cap = self.parent.shape[0] * 2

        def wider(a: np.ndarray) -> np.ndarray:
            out = pool_array((a.shape[0], cap), a.dtype)
            out[:, : a.shape[1]] = a
            return out

        self.vals = wider(self.vals)
        self.fvals = self.vals.view(np.float64)
        self.valid = wider(self.valid)
        self.vstart = wider(self.vstart)
        self.vlen = wider(self.vlen)
        parent = pool_array(cap, np.int64)
        parent[: self.parent.shape[0]] = self.parent
        self.parent = parent

    def to_arrow(self, table: _Table, n: int, buf: np.ndarray) -> pa.Table:
        arrays, fields = [], []
        for col in table.columns:
            if col.kind in (k.K_RECORD, k.K_ARRAY):
                continue  # presence flags: the child table's rows say it
            if col.kind in _VAR_KINDS:
                valid = self.valid[self.n_fixed + col.dest, :n].astype(bool)
                lengths = np.where(valid, self.vlen[col.dest, :n], 0)
                offsets = np.zeros(n + 1, dtype=np.int64)
                np.cumsum(lengths, out=offsets[1:])
                data = pool_array(int(offsets[-1]), np.uint8)
                k.copy_ranges(buf, self.vstart[col.dest, :n], lengths, offsets, data)
                array = _var_array(col.arrow, n, offsets, data, valid)
            else:
                valid = self.valid[col.dest, :n].astype(bool)
                array = _fixed_array(col, self.vals[col.dest, :n], self.fvals[col.dest, :n], valid)
            arrays.append(array)
            fields.append(pa.field(col.name, array.type))
        if table.path:
            arrays.append(pa.array(self.parent[:n].copy()))
            fields.append(pa.field(RECORD, pa.int64()))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields)) if arrays else pa.table({RECORD: self.parent[:n]})

    def presence(self, table: _Table, name: str, n: int) -> np.ndarray:
        col = next(c for c in table.columns if c.name == name)
        return self.valid[col.dest, :n].astype(bool)


def _fixed_array(col: _Column, ints: np.ndarray, floats: np.ndarray, valid: np.ndarray) -> pa.Array:
    """An Arrow array of one column; cells of null rows hold leftovers and are masked out."""
    mask = None if valid.all() else ~valid
    with np.errstate(over="ignore", invalid="ignore"):
        return _typed_array(col, ints, floats, mask)


def _typed_array(col: _Column, ints: np.ndarray, floats: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    if col.kind == k.K_NULL:
        return pa.nulls(len(ints))
    if col.kind == k.K_DOUBLE:
        return pa.array(floats, pa.float64(), mask=mask)
    if col.kind == k.K_FLOAT:
        return pa.array(floats.astype(np.float32), pa.float32(), mask=mask)
    if col.kind == k.K_BOOL:
        return pa.array(ints.astype(bool), pa.bool_(), mask=mask)
    if col.kind == k.K_INT:
        return pa.array(ints.astype(np.int32), pa.int32(), mask=mask)
    if col.kind == k.K_ENUM:
        assert col.symbols is not None
        indices = pa.array(ints.astype(np.int32), pa.int32(), mask=mask)
        return pa.DictionaryArray.from_arrays(indices, pa.array(col.symbols)).cast(pa.string())
    return pa.array(ints, pa.int64(), mask=mask)


def _var_array(dtype: pa.DataType, n: int, offsets: np.ndarray, data: np.ndarray, valid: np.ndarray) -> pa.Array:
    bitmap = None if valid.all() else pa.array(valid).buffers()[1]
    nulls = int(n - valid.sum())
    large = offsets[-1] >= 2**31 - 1
    if large:
        dtype = pa.large_string() if dtype == pa.string() else pa.large_binary()
        off = pa.py_buffer(offsets)
    else:
        off = pa.py_buffer(offsets.astype(np.int32))
    return pa.Array.from_buffers(dtype, n, [bitmap, off, pa.py_buffer(data)], null_count=nulls)


@functools.lru_cache(maxsize=64)
def _compiled(schema_text: str) -> Program:
    return Program.compile(json.loads(schema_text))


def program_for(schema: dict[str, Any]) -> Program:
    """A cached program for ``schema`` (keyed by its JSON text)."""
    return _compiled(json.dumps(schema, sort_keys=True, default=str))
