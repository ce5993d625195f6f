"""The current objects: each diaObject's newest state in the append-only ``objects`` table (merge-on-read).

Every batch appends the complete state of each object it saw (``pipelines.object_rows.merge_objects``: order-
independent) with one ``stateSeq`` per write, larger than any before it (``lake.commit.append_states``). An object
is the row with its largest ``stateSeq``; older rows are *superseded*. Folding (``lake.fold``) rewrites the table to
its current rows and records, in the table property ``nightjar.foldedStateSeq``, the largest ``stateSeq`` it folded:
rows at or below it hold each object at most once (the *base*); rows above it are the *pending* states appended
since. Rows without a ``stateSeq`` (a lake written before merge-on-read, when ``objects`` was upserted) are base.

A reader therefore needs only the pending rows' keys to tell current rows from superseded ones:

- a base row is current unless its object has a pending state;
- a pending row is current unless a later pending state of its object exists.

That is one pyarrow expression (:meth:`States.expression`), which filters the table's dataset (DuckDB, pyarrow and
Dask readers all scan through it) at a cost that grows with the pending rows, not with the table. Every reader of
``objects`` goes through :func:`current` (or :func:`newest` for reads that fetch every state of their keys).

Examples
--------
>>> import pyarrow as pa
>>> rows = pa.table({"diaObjectId": [1, 2, 1], "stateSeq": [3, 3, 5], "v": ["a", "b", "c"]})
>>> newest(rows).sort_by("diaObjectId")["v"].to_pylist()
['c', 'b']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from nightjar import paths

KEY = paths.KEY_COLUMNS[paths.OBJECTS]
SEQ = paths.STATE_SEQ
FOLDED_PROPERTY = "nightjar.foldedStateSeq"


NOT_FOLDED = -1  # sequences start at 0: before any fold, only rows without a stateSeq are base


def folded_seq(dt: DeltaTable) -> int:
    """The largest ``stateSeq`` of the table's base (rows folded to one per object) at ``dt``'s version."""
    value = dt.metadata().configuration.get(FOLDED_PROPERTY)
    return int(value) if value is not None else NOT_FOLDED


def has_states(schema: pa.Schema) -> bool:
    """True when the table has a ``stateSeq`` column (it was written by merge-on-read)."""
    return SEQ in schema.names


def _pending_filter(folded: int) -> ds.Expression:
    return ds.field(SEQ) > folded


@dataclass(frozen=True)
class States:
    """What a reader needs to keep only current rows: the fold point and the pending rows' keys.

    ``pending_keys``: every object with a pending state. ``superseded``: the pending states that a later pending
    state replaces, each as ``position of its key in pending_keys * span + (stateSeq - folded - 1)``: one integer
    per (key, stateSeq) pair, exact (``span`` exceeds every pending ``stateSeq - folded - 1``), so the filter holds
    two set look-ups however many batches were appended since the fold.
    """

    folded: int
    pending_rows: int
    pending_keys: pa.Array
    superseded: pa.Array
    span: int

    @property
    def folded_only(self) -> bool:
        """True when every row is current (no pending state): nothing to filter."""
        return self.pending_rows == 0

    def expression(self) -> ds.Expression | None:
        """The rows that are current, as a dataset filter; None when every row is.

        A conjunction, true for every row but superseded ones: a folded row whose object has a pending state, a
        pending state whose packed (key, stateSeq) is in ``superseded``.
        """
        if self.folded_only:
            return None
        key = ds.field(KEY)
        seq = pc.Expression._call("coalesce", [ds.field(SEQ), ds.scalar(NOT_FOLDED - 1)])  # no stateSeq: folded
        current = ~(key.isin(self.pending_keys) & (seq <= self.folded))
        if len(self.superseded):
            where = pc.Expression._call("index_in", [key], pc.SetLookupOptions(self.pending_keys))
            packed = where.cast(pa.int64()) * ds.scalar(self.span) + (seq - ds.scalar(self.folded + 1))
            current = current & ~((seq > self.folded) & packed.isin(self.superseded))
        return current

    def mask(self, rows: pa.Table) -> pa.Array:
        """Which of ``rows`` (objects rows with their key and ``stateSeq``) are current."""
        expression = self.expression()
        if expression is None or rows.num_rows == 0:
            return pa.array(np.ones(rows.num_rows, bool))
        if SEQ not in rows.column_names:
            rows = rows.append_column(SEQ, pa.nulls(rows.num_rows, pa.int64()))
        numbered = rows.select([KEY, SEQ]).append_column("_pos", pa.array(np.arange(rows.num_rows), pa.int64()))
        kept = numbered.filter(expression)["_pos"].to_numpy()
        out = np.zeros(rows.num_rows, bool)
        out[kept] = True
        return pa.array(out)


def states(dt: DeltaTable, dataset: ds.Dataset) -> States:
    """The :class:`States` of the objects table at ``dt``'s version (``dataset``: that version's files).

    Reads the key and ``stateSeq`` of the pending rows only: the Delta log's per-file ``stateSeq`` statistics
    leave out the folded files.
    """
    folded = folded_seq(dt)
    none = States(folded, 0, pa.array([], pa.int64()), pa.array([], pa.int64()), 1)
    if not has_states(dataset.schema):
        return none
    pending = dataset.to_table(columns=[KEY, SEQ], filter=_pending_filter(folded))
    if pending.num_rows == 0:
        return none
    latest = pending.group_by(KEY, use_threads=False).aggregate([(SEQ, "max")])
    keys = pa.array(latest[KEY].to_numpy(), pa.int64())
    where = pc.index_in(pending[KEY], keys)
    old = pending.filter(pc.less(pending[SEQ], pc.take(latest[f"{SEQ}_max"], where)))
    span = int(pc.max(pending[SEQ]).as_py()) - folded
    position = pc.index_in(old[KEY], keys).to_numpy().astype(np.int64)
    packed = position * span + (old[SEQ].to_numpy() - (folded + 1))
    return States(folded, pending.num_rows, keys, pa.array(packed, pa.int64()), span)


def current(dt: DeltaTable, dataset: ds.Dataset) -> ds.Dataset:
    """``dataset`` (the objects table at ``dt``'s version) with only each object's newest state.

    The filter travels with the dataset: ``to_table``, ``count_rows``, scanners and DuckDB's Arrow scans all
    apply it (and AND their own filters to it).
    """
    return apply(states(dt, dataset), dataset)


def apply(found: States, dataset: ds.Dataset) -> ds.Dataset:
    """``dataset`` filtered to the current rows ``found`` describes (the same table version)."""
    expression = found.expression()
    return dataset if expression is None else dataset.filter(expression)


def newest(rows: pa.Table) -> pa.Table:
    """One row per object: the one with the largest ``stateSeq`` (rows without one count as oldest).

    For reads that fetch every stored state of the objects they ask for (a filter on ``diaObjectId``): among
    them, the newest is the current one.
    """
    if rows.num_rows == 0 or SEQ not in rows.column_names:
        return rows
    seq = pc.fill_null(rows[SEQ], -1)
    ranked = pa.table({KEY: rows[KEY], "_seq": seq, "_pos": pa.array(np.arange(rows.num_rows), pa.int64())}).sort_by(
        [(KEY, "ascending"), ("_seq", "descending")]
    )
    first = ranked.group_by(KEY, use_threads=False).aggregate([("_pos", "first")])
    return rows.take(np.sort(first["_pos_first"].to_numpy()))
