"""What the lake holds, for the portal's home page: counts, the last batch's time, classes, recent objects.

Row counts come from the Delta logs (``maintain.table_info``); the classes and the recent objects read one or a
few columns of the ``context`` and ``objects`` tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pyarrow.compute as pc
import pyarrow.dataset as ds

from nightjar import paths
from nightjar.lake import maintain
from nightjar.storage import Home

RECENT_COLUMNS = ["diaObjectId", "ra", "dec", "lastAlertMjdTai", "nSources"]
RATE_COMMITS = 20  # the ingest rate is measured over the last appends to ``sources``


@dataclass
class Holdings:
    """The lake at a glance."""

    detections: int = 0  # rows of ``sources`` (alerts and the packet history they brought)
    alerts: int = 0  # rows of ``sources`` that were an alert's triggering detection
    objects: int = 0
    forced: int = 0
    last_batch: datetime | None = None
    rate: float | None = None  # rows per second written to ``sources`` over its last appends (``ingest_rate``)
    classes: dict[str, int] = field(default_factory=dict)  # context class: objects, most common first
    recent: list[dict[str, object]] = field(default_factory=list)  # newest objects first


def ingest_rate(home: Home, commits: int = RATE_COMMITS) -> float | None:
    """Rows per second appended to ``sources`` over its last ``commits`` appends, from the Delta log (None: fewer
    than two appends). Compactions are not appends and do not count."""
    writes = [h for h in maintain.history(home, paths.SOURCES, commits * 2) if h.operation == "WRITE"][:commits]
    if len(writes) < 2:
        return None
    span = (writes[0].timestamp - writes[-1].timestamp).total_seconds()
    rows = sum(int(h.metrics.get("num_added_rows", 0) or 0) for h in writes[:-1])  # written after the oldest
    return rows / span if span > 0 else None


def holdings(home: Home, tables: dict[str, ds.Dataset], recent: int = 10) -> Holdings:
    """:class:`Holdings` of the lake in ``home``, with ``tables`` the datasets of one snapshot."""
    out = Holdings()
    infos = {i.table: i for i in maintain.tables(home)}
    if paths.SOURCES in infos:
        out.detections = infos[paths.SOURCES].rows
        out.last_batch = infos[paths.SOURCES].last_commit
        out.rate = ingest_rate(home)
    if paths.OBJECTS in tables:  # merge-on-read: the log counts every stored state, the dataset each object once
        out.objects = tables[paths.OBJECTS].count_rows()
    elif paths.OBJECTS in infos:
        out.objects = infos[paths.OBJECTS].rows
    if paths.FORCED_SOURCES in infos:
        out.forced = infos[paths.FORCED_SOURCES].rows
    sources = tables.get(paths.SOURCES)
    if sources is not None:
        if paths.FROM_HISTORY in sources.schema.names:
            history = ds.field(paths.FROM_HISTORY)
            out.alerts = sources.count_rows(filter=history.is_null() | ~history)
        else:
            out.alerts = out.detections
    context = tables.get(paths.CONTEXT)
    if context is not None and "classification" in context.schema.names:
        counts = pc.value_counts(context.to_table(columns=["classification"])["classification"])
        pairs = [(str(c["values"]), int(c["counts"])) for c in counts.to_pylist()]
        out.classes = dict(sorted(pairs, key=lambda p: (-p[1], p[0])))
    objects = tables.get(paths.OBJECTS)
    if objects is not None and recent > 0:
        columns = [c for c in RECENT_COLUMNS if c in objects.schema.names]
        if "lastAlertMjdTai" in columns:
            table = objects.to_table(columns=columns)
            newest = pc.select_k_unstable(table, recent, [("lastAlertMjdTai", "descending")])
            rows = table.take(newest).sort_by([("lastAlertMjdTai", "descending")])
            out.recent = [{**r, "diaObjectId": str(r["diaObjectId"])} for r in rows.to_pylist()]
    return out
