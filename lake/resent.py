"""Re-sent alerts: an alert whose ``diaSourceId`` the lake, or an earlier message of the same batch, holds already.

The ``cutouts`` table has one row per alert the lake holds, with the digest of its content (``alertDigest``, see
``streams.decode``) and the Kafka message it came in. A re-send whose content is the same is a *duplicate*: it is
counted and writes nothing. One whose content differs is *conflicting*: the first version stays and the re-send is
dead-lettered with the reason, so that it is never lost silently. The message that stored an alert is not a
re-send of it: a batch read again after a crash finds its own alerts there and completes its commit.

Decisions are per Kafka message: a message with a conflicting alert is set aside whole; a message whose alerts are
all identical re-sends is a duplicate; any other message is stored, without the rows of its re-sent alerts.

The lookup reads one night partition of ``cutouts`` per night of the batch (an alert's night never changes),
pruned by the batch's ``diaSourceId`` range, and only the key, digest and provenance columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from nightjar import paths
from nightjar.lake import tables
from nightjar.lake.keys import first_per_key
from nightjar.lake.read import arrow_dataset
from nightjar.storage import Home

ROW = "_row"  # the message of a row in its batch
KEY = "diaSourceId"
PROVENANCE = (paths.KAFKA_TOPIC, paths.KAFKA_PARTITION, paths.KAFKA_OFFSET)
COLUMNS = [KEY, paths.ALERT_DIGEST, *PROVENANCE]


@dataclass
class Resent:
    """What a batch re-sends: the tables without it, the duplicate messages, and the conflicting ones (``_row``,
    ``diaSourceId``, ``reason`` and the message's provenance)."""

    tables: dict[str, pa.Table]
    duplicates: int = 0
    conflicts: pa.Table = field(
        default_factory=lambda: pa.table(
            {
                ROW: pa.array([], pa.int64()),
                KEY: pa.array([], pa.int64()),
                "reason": pa.array([], pa.string()),
                paths.KAFKA_TOPIC: pa.array([], pa.string()),
                paths.KAFKA_PARTITION: pa.array([], pa.int32()),
                paths.KAFKA_OFFSET: pa.array([], pa.int64()),
            }
        )
    )


def stored_alerts(home: Home, alerts: pa.Table) -> pa.Table:
    """The ``cutouts`` rows (key, digest, provenance) of the alerts with the ``diaSourceId``s of ``alerts``."""
    ids = pc.drop_null(alerts[KEY]) if alerts.num_rows else pa.array([], pa.int64())
    dt = tables.open_table(home, paths.CUTOUTS) if len(ids) else None
    if dt is None:
        return _empty_stored()
    dataset = arrow_dataset(dt)
    nights = pc.unique(pc.drop_null(alerts[paths.NIGHT])) if paths.NIGHT in alerts.column_names else None
    bounds = pc.min_max(ids)
    where = (ds.field(KEY) >= bounds["min"].as_py()) & (ds.field(KEY) <= bounds["max"].as_py())
    where &= ds.field(KEY).isin(ids)
    if nights is not None and len(nights) == len(pc.unique(alerts[paths.NIGHT])):  # every alert has a night
        where &= ds.field(paths.NIGHT).isin(nights)
    columns = [c for c in COLUMNS if c in dataset.schema.names]
    found = dataset.to_table(columns=columns, filter=where)
    if paths.ALERT_DIGEST not in found.column_names:  # a lake written before digests: content unknown
        found = found.append_column(paths.ALERT_DIGEST, pa.nulls(found.num_rows, pa.int64()))
    return found.select(COLUMNS)


def _empty_stored() -> pa.Table:
    types = [pa.int64(), pa.int64(), pa.string(), pa.int32(), pa.int64()]
    return pa.table({c: pa.array([], t) for c, t in zip(COLUMNS, types, strict=True)})


def set_aside(tables: dict[str, pa.Table], stored: pa.Table) -> Resent:
    """Classify the batch's alerts (``tables["cutouts"]``: one row per alert, with ``_row``, digest and provenance)
    against ``stored`` (``stored_alerts``) and the batch's own earlier messages; return the batch without the
    re-sent rows (``sources``: their triggering detections; the other tables: the rows of the messages set aside,
    as packet history and objects are one row per key in the lake anyway)."""
    alerts = tables[paths.CUTOUTS]
    if alerts.num_rows == 0:
        return Resent(tables)
    n = alerts.num_rows
    keys = alerts[KEY]
    digest = alerts[paths.ALERT_DIGEST]
    position = pa.array(np.arange(n), pa.int64())
    # The lake's version of each key, unless the lake holds it from this very message (a batch read again).
    stored = stored.filter(pc.is_valid(stored[KEY]))
    mine = alerts.select([KEY, *PROVENANCE]).join(
        stored.select([KEY, *PROVENANCE]), keys=[KEY, *PROVENANCE], join_type="inner"
    )
    earlier = first_per_key(stored.filter(pc.invert(pc.is_in(stored[KEY], mine[KEY]))), KEY)
    in_lake = pc.index_in(keys, earlier[KEY])
    # Else the batch's first version of each key.
    first = pa.table({KEY: keys, "pos": position}).group_by(KEY, use_threads=False).aggregate([("pos", "min")])
    first_pos = pc.take(first["pos_min"], pc.index_in(keys, first[KEY]))
    lake_version = pc.is_valid(in_lake)
    resend = pc.fill_null(pc.or_(lake_version, pc.not_equal(position, first_pos)), False)
    reference = pc.if_else(lake_version, pc.take(earlier[paths.ALERT_DIGEST], in_lake), pc.take(digest, first_pos))
    # An unknown digest (a lake written before digests) cannot prove a difference: an identical re-send.
    differs = pc.fill_null(pc.not_equal(digest, reference), False)
    conflict = pc.and_(resend, differs).to_numpy(zero_copy_only=False)
    duplicate = pc.and_(resend, pc.invert(differs)).to_numpy(zero_copy_only=False)
    if not (conflict.any() or duplicate.any()):
        return Resent(tables)

    rows = alerts[ROW].to_numpy()
    conflicting = np.unique(rows[conflict])
    whole = np.setdiff1d(np.unique(rows[duplicate]), np.unique(rows[~duplicate]))  # every alert an identical re-send
    gone = pa.array(np.union1d(conflicting, whole), pa.int64())
    keep_alert = ~duplicate & ~np.isin(rows, conflicting)
    out = {}
    for name, table in tables.items():
        if name == paths.CUTOUTS:
            out[name] = table.filter(pa.array(keep_alert))
        elif name == paths.SOURCES:
            out[name] = _without(table, alerts.filter(pa.array(~keep_alert)).select([ROW, KEY]))
        else:
            out[name] = table.filter(pc.invert(pc.is_in(table[ROW], gone))) if table.num_rows else table
    return Resent(out, duplicates=len(whole), conflicts=_conflicts(alerts, conflict, lake_version, earlier, in_lake))


def _without(table: pa.Table, pairs: pa.Table) -> pa.Table:
    """``table`` without the rows whose (``_row``, ``diaSourceId``) is in ``pairs``, in its order."""
    if table.num_rows == 0 or pairs.num_rows == 0:
        return table
    marked = pairs.append_column("_drop", pa.array(np.ones(pairs.num_rows, bool)))
    probe = table.select([ROW, KEY]).append_column("_pos", pa.array(np.arange(table.num_rows), pa.int64()))
    joined = probe.join(marked, keys=[ROW, KEY], join_type="left outer")
    keep = joined.filter(pc.is_null(joined["_drop"]))["_pos"].to_numpy()
    return table.take(np.sort(keep))


def _conflicts(
    alerts: pa.Table, conflict: np.ndarray, lake_version: pa.Array, earlier: pa.Table, in_lake: pa.Array
) -> pa.Table:
    """One row per conflicting message (its first conflicting alert), with the reason."""
    picked = alerts.filter(pa.array(conflict))
    from_lake = pc.filter(lake_version, pa.array(conflict)).to_pylist()
    where = pc.filter(in_lake, pa.array(conflict))
    topics = pc.take(earlier[paths.KAFKA_TOPIC], where).to_pylist()
    parts = pc.take(earlier[paths.KAFKA_PARTITION], where).to_pylist()
    offsets = pc.take(earlier[paths.KAFKA_OFFSET], where).to_pylist()
    reasons = [
        f"conflicting re-send: diaSourceId {key} is already stored "
        + (f"(from {t}[{p}] offset {o})" if lake else "(from an earlier message of the batch)")
        + " with different content"
        for key, lake, t, p, o in zip(picked[KEY].to_pylist(), from_lake, topics, parts, offsets, strict=True)
    ]
    table = pa.table(
        {
            ROW: picked[ROW],
            KEY: picked[KEY],
            "reason": pa.array(reasons, pa.string()),
            paths.KAFKA_TOPIC: picked[paths.KAFKA_TOPIC],
            paths.KAFKA_PARTITION: picked[paths.KAFKA_PARTITION],
            paths.KAFKA_OFFSET: picked[paths.KAFKA_OFFSET],
        }
    )
    return first_per_key(table, ROW)
