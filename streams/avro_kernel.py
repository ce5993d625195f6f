"""The compiled core of the columnar Avro decoder (numba): bytes in, column-major value matrices out. The kernels
release the GIL (``nogil``): a worker fetches or commits one batch while it decodes another.

The schema is compiled by ``streams.avro_columnar`` into a small program: one op per field, grouped in tables.
Table 0 is the top-level record; its record and array fields point at child tables whose fields are primitives
(the shape of every LSST and ZTF alert schema). The kernel walks the bytes once, with no Python objects per
record, and writes each value into ``vals[table][column, row]`` (int64 cells; floating values stored through a
float64 view of the same memory), a validity byte, and start/length pairs for strings, bytes and fixed. A field
of any other shape (map, union of several types, array of primitives, record in a nested record) is stepped over by
``skip_value`` along a skip program (``streams.avro_skip``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numba.typed import List

# Op kinds (K_FIXED: fixed-size bytes, size in O_CHILD; K_SKIP: a value stepped over, skip node in O_CHILD).
K_NULL, K_BOOL, K_INT, K_LONG, K_FLOAT, K_DOUBLE, K_STRING, K_BYTES, K_RECORD, K_ARRAY, K_ENUM = range(11)
K_FIXED, K_SKIP = 11, 12
# Skip node kinds (see streams.avro_skip).
S_NULL, S_BOOL, S_VARINT, S_FLOAT, S_DOUBLE, S_BYTES, S_FIXED, S_RECORD, S_ARRAY, S_MAP, S_UNION = range(11)
SKIP_STACK = 4096  # pending nodes while skipping one value: bounds nesting (and recursive types)
# Op columns.
O_KIND, O_NULL_BRANCH, O_VALUE_BRANCH, O_DEST, O_CHILD, O_VALID, O_ITEM_NULL, O_ITEM_VALUE = range(8)
OP_WIDTH = 8
# Status codes.
OK, E_TRUNCATED, E_UNION, E_LENGTH, E_TRAILING, E_FULL, E_DEPTH = range(7)
ERROR_TEXT = {
    E_TRUNCATED: "truncated or corrupt Avro: read past the end of the record",
    E_UNION: "corrupt Avro: union branch out of range",
    E_LENGTH: "corrupt Avro: negative or oversize length",
    E_TRAILING: "trailing bytes after the record (wrong schema?)",
    E_DEPTH: f"Avro value nested deeper than {SKIP_STACK} levels",
}


@njit(cache=True, inline="always")
def _varint(buf: np.ndarray, pos: int, end: int) -> tuple[Any, int, int]:
    """A zigzag varint at ``pos``: (value, new position, status)."""
    shift = 0
    acc = np.uint64(0)
    while True:
        if pos >= end or shift > 63:
            return 0, pos, E_TRUNCATED
        b = np.uint64(buf[pos])
        pos += 1
        acc |= (b & np.uint64(0x7F)) << np.uint64(shift)
        if b < np.uint64(0x80):
            break
        shift += 7
    value = np.int64(acc >> np.uint64(1)) ^ -np.int64(acc & np.uint64(1))
    return value, pos, OK


@njit(cache=True, nogil=True)
def skip_value(
    buf: np.ndarray,
    pos: int,
    end: int,
    node: int,
    sk_kind: np.ndarray,  # int64[:] per skip node (S_*)
    sk_arg: np.ndarray,  # int64[:] fixed size, or the item/value node of an array/map
    sk_lo: np.ndarray,  # int64[:] first kid of a record/union
    sk_hi: np.ndarray,  # int64[:] one past its last kid
    sk_kids: np.ndarray,  # int64[:] field nodes of records, branch nodes of unions
    stack_node: np.ndarray,  # int64[SKIP_STACK] pending nodes
    stack_left: np.ndarray,  # int64[SKIP_STACK] items left in the current block of a pending array/map
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Step over one value of skip node ``node`` at ``pos``: (new position, status). No recursion: a stack of
    pending nodes, where an array or map stays pending (with its items left) until its 0-count block."""
    cap = stack_node.shape[0]
    stack_node[0] = node
    stack_left[0] = 0
    sp = 1
    while sp > 0:
        sp -= 1
        nd = stack_node[sp]
        left = stack_left[sp]
        kind = sk_kind[nd]
        if kind == S_NULL:
            continue
        if kind == S_BOOL:
            if pos + 1 > end:
                return pos, E_TRUNCATED
            pos += 1
        elif kind == S_VARINT:
            _, pos, st = _varint(buf, pos, end)
            if st != OK:
                return pos, st
        elif kind == S_FLOAT or kind == S_DOUBLE or kind == S_FIXED:
            n = 4 if kind == S_FLOAT else (8 if kind == S_DOUBLE else sk_arg[nd])
            if pos + n > end:
                return pos, E_TRUNCATED
            pos += n
        elif kind == S_BYTES:
            n, pos, st = _varint(buf, pos, end)
            if st == OK and (n < 0 or pos + n > end):
                st = E_LENGTH
            if st != OK:
                return pos, st
            pos += n
        elif kind == S_RECORD:
            if sp + sk_hi[nd] - sk_lo[nd] > cap:
                return pos, E_DEPTH
            for j in range(sk_hi[nd] - 1, sk_lo[nd] - 1, -1):
                stack_node[sp] = sk_kids[j]
                stack_left[sp] = 0
                sp += 1
        elif kind == S_UNION:
            branch, pos, st = _varint(buf, pos, end)
            if st != OK:
                return pos, st
            if branch < 0 or branch >= sk_hi[nd] - sk_lo[nd]:
                return pos, E_UNION
            stack_node[sp] = sk_kids[sk_lo[nd] + branch]
            stack_left[sp] = 0
            sp += 1
        else:  # S_ARRAY, S_MAP: blocks of items, ended by a block of count 0
            if left == 0:
                left, pos, st = _varint(buf, pos, end)
                if st == OK and left < 0:
                    left = -left
                    _, pos, st = _varint(buf, pos, end)  # block size in bytes
                if st != OK:
                    return pos, st
                if left == 0:
                    continue
                if left > max(end - pos, 1 << 20):
                    return pos, E_LENGTH
            if sp + 3 > cap:
                return pos, E_DEPTH
            stack_node[sp] = nd  # the rest of the block (0 left: read the next block count)
            stack_left[sp] = left - 1
            sp += 1
            stack_node[sp] = sk_arg[nd]
            stack_left[sp] = 0
            sp += 1
            if kind == S_MAP:
                stack_node[sp] = 0  # the key, a string, comes first
                stack_left[sp] = 0
                sp += 1
    return pos, OK


@njit(cache=True, nogil=True)
def decode_segments(
    buf: np.ndarray,  # uint8[:] all bytes
    seg_start: np.ndarray,  # int64[:] first byte of each segment
    seg_end: np.ndarray,  # int64[:] one past the last byte
    seg_count: np.ndarray,  # int64[:] records in each segment (1 for a Kafka message, n for an Avro block)
    s0: int,  # first segment to decode
    ops: np.ndarray,  # int64[:, OP_WIDTH] the program
    op_lo: np.ndarray,  # int64[:] first op of each table
    op_hi: np.ndarray,  # int64[:] one past the last op of each table
    vals: Any,  # List[int64[:, :]] per table
    fvals: Any,  # List[float64[:, :]] the same memory as vals
    valid: Any,  # List[uint8[:, :]]
    vstart: Any,  # List[int64[:, :]]
    vlen: Any,  # List[int64[:, :]]
    parent: Any,  # List[int64[:]] the top-level record of each row
    counts: np.ndarray,  # int64[:] rows written per table
    seg_status: np.ndarray,  # int64[:] status per segment
    scratch: np.ndarray,  # uint8[:16] for float reinterpretation
    skips: Any,  # (kind, arg, lo, hi, kids, stack_node, stack_left) int64 arrays: see skip_value
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Decode segments from ``s0``; returns (next segment, full table or -1). Bad segments leave no rows.

    One flat loop walks the ops of the top-level table and, for a record or array field, the ops of its
    child table, switching the current output arrays only when it enters or leaves a child: the per-field
    code runs inline with no function call (a call passing arrays costs more than the decoding itself).
    """
    s_u4 = scratch[:4].view(np.uint32)
    s_f4 = scratch[:4].view(np.float32)
    s_u8 = scratch[8:16].view(np.uint64)
    s_f8 = scratch[8:16].view(np.float64)
    n_tables = op_lo.shape[0]
    sk_kind, sk_arg, sk_lo, sk_hi, sk_kids, stack_node, stack_left = skips
    saved = counts.copy()
    for s in range(s0, seg_start.shape[0]):
        for t in range(n_tables):
            saved[t] = counts[t]
        pos = seg_start[s]
        end = seg_end[s]
        st = OK
        full = -1
        for _ in range(seg_count[s]):
            top_row = counts[0]
            if top_row >= parent[0].shape[0]:
                full = 0
                break
            counts[0] += 1
            parent[0][top_row] = top_row
            t = 0
            row = top_row
            i = op_lo[0]
            hi = op_hi[0]
            resume = 0  # op of table 0 to continue with after a child
            items = 0  # items left in the current array block
            child_kind = 0
            item_null = -1  # union branches of nullable array items
            item_value = -1
            next_item = False
            cvals, cfvals, cvalid, cvstart, cvlen = vals[0], fvals[0], valid[0], vstart[0], vlen[0]
            while st == OK:
                if i == hi:
                    if t == 0:
                        break  # the top-level record is complete
                    items -= 1
                    next_item = True
                if next_item:
                    # Start the child's next item: a new array block, a null item, or back to the top level.
                    next_item = False
                    row = -1
                    while st == OK:
                        if items == 0 and child_kind == K_ARRAY:
                            items, pos, st = _varint(buf, pos, end)
                            if st == OK and items < 0:
                                items = -items
                                _, pos, st = _varint(buf, pos, end)  # block size in bytes, unused
                            if st != OK:
                                break
                        if items == 0:
                            break
                        if item_null >= 0:
                            branch, pos, st = _varint(buf, pos, end)
                            if st != OK:
                                break
                            if branch == item_null:
                                items -= 1
                                continue
                            if branch != item_value:
                                st = E_UNION
                                break
                        row = counts[t]
                        if row >= parent[t].shape[0]:
                            full = t
                        else:
                            counts[t] += 1
                            parent[t][row] = top_row
                            i = op_lo[t]
                        break
                    if st != OK or full >= 0:
                        break
                    if row < 0:
                        # Back to the top-level record.
                        t = 0
                        row = top_row
                        i = resume + 1
                        hi = op_hi[0]
                        cvals, cfvals, cvalid, cvstart, cvlen = vals[0], fvals[0], valid[0], vstart[0], vlen[0]
                    continue
                kind = ops[i, O_KIND]
                if kind == K_SKIP:
                    # A field no column holds (a map, a union of several types...): step over its bytes.
                    pos, st = skip_value(
                        buf, pos, end, ops[i, O_CHILD], sk_kind, sk_arg, sk_lo, sk_hi, sk_kids, stack_node, stack_left
                    )
                    i += 1
                    continue
                null_branch = ops[i, O_NULL_BRANCH]
                vdest = ops[i, O_VALID]
                if null_branch >= 0:
                    branch, pos, st = _varint(buf, pos, end)
                    if st != OK:
                        break
                    if branch == null_branch:
                        cvalid[vdest, row] = 0
                        i += 1
                        continue
                    if branch != ops[i, O_VALUE_BRANCH]:
                        st = E_UNION
                        break
                dest = ops[i, O_DEST]
                if kind == K_LONG or kind == K_INT or kind == K_ENUM:
                    v, pos, st = _varint(buf, pos, end)
                    cvals[dest, row] = v
                elif kind == K_DOUBLE:
                    if pos + 8 > end:
                        st = E_TRUNCATED
                        break
                    acc = np.uint64(0)
                    for b in range(8):
                        acc |= np.uint64(buf[pos + b]) << np.uint64(8 * b)
                    s_u8[0] = acc
                    cfvals[dest, row] = s_f8[0]
                    pos += 8
                elif kind == K_FLOAT:
                    if pos + 4 > end:
                        st = E_TRUNCATED
                        break
                    acc4 = np.uint32(0)
                    for b in range(4):
                        acc4 |= np.uint32(buf[pos + b]) << np.uint32(8 * b)
                    s_u4[0] = acc4
                    cfvals[dest, row] = np.float64(s_f4[0])
                    pos += 4
                elif kind == K_BOOL:
                    if pos + 1 > end:
                        st = E_TRUNCATED
                        break
                    cvals[dest, row] = buf[pos]
                    pos += 1
                elif kind == K_STRING or kind == K_BYTES:
                    n, pos, st = _varint(buf, pos, end)
                    if st == OK and (n < 0 or pos + n > end):
                        st = E_LENGTH
                    if st != OK:
                        break
                    cvstart[dest, row] = pos
                    cvlen[dest, row] = n
                    pos += n
                elif kind == K_FIXED:
                    n = ops[i, O_CHILD]
                    if pos + n > end:
                        st = E_TRUNCATED
                        break
                    cvstart[dest, row] = pos
                    cvlen[dest, row] = n
                    pos += n
                elif kind == K_RECORD or kind == K_ARRAY:
                    # Only the top-level table has these (see Program.compile): enter the child table.
                    cvalid[vdest, row] = 1
                    child = ops[i, O_CHILD]
                    child_kind = kind
                    items = 1 if kind == K_RECORD else 0
                    item_null = ops[i, O_ITEM_NULL]
                    item_value = ops[i, O_ITEM_VALUE]
                    resume = i
                    t = child
                    hi = op_hi[child]
                    cvals, cfvals, cvalid, cvstart, cvlen = (
                        vals[child],
                        fvals[child],
                        valid[child],
                        vstart[child],
                        vlen[child],
                    )
                    next_item = True
                    continue
                if st != OK:
                    break
                cvalid[vdest, row] = 1
                i += 1
            if st != OK or full >= 0:
                break
        if full >= 0:
            for t in range(n_tables):
                counts[t] = saved[t]
            return s, full
        if st == OK and pos != end:
            st = E_TRAILING
        seg_status[s] = st
        if st != OK:
            for t in range(n_tables):
                counts[t] = saved[t]
    return seg_start.shape[0], -1


@njit(cache=True, nogil=True)
def copy_ranges(
    buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Copy ``buf[starts[i]:starts[i]+lengths[i]]`` to ``out[offsets[i]:]`` for every i (Arrow binary data)."""
    for i in range(starts.shape[0]):
        n = lengths[i]
        if n:
            out[offsets[i] : offsets[i] + n] = buf[starts[i] : starts[i] + n]


def typed_list(arrays: list[np.ndarray]) -> List:
    """The arrays as a numba typed list, for the compiled kernels."""
    out = List()
    for a in arrays:
        out.append(a)
    return out
