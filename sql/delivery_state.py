"""Delivery state: the latest status of each (filter, delivery key, channel), keyed in the metadata database.

The lake's filter ledger (``nightjar.lake.ledger``) is the journal: every status a match ever had, for reports.
Delivery decides from this table instead, because reading the journal for a batch's keys reads every ledger file
(a batch's objects are spread over the whole id range, so no file or row group can be skipped), a cost that grows
with every match ever delivered. Here a batch costs an index look-up per key.

Each status goes to the journal first, then here (``Deliverer.record``), so this table is never ahead of the
journal. A crash between the two leaves it one step behind, which is safe: a key still *pending* here is looked
for on its topic before it is sent again (Kafka), or sent again with the same Message-ID or Idempotency-Key
(e-mail, webhooks), as after any crash under way; a key missing here had not been sent, since nothing is sent
before its pending status is stored here.

A database without state (new, or upgraded from a Nightjar that kept only the journal) adopts the journal once:
:func:`adopt` fills this table from the ledger's latest statuses when the table is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import ColumnElement, Table, and_, bindparam, case, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from nightjar.lake import ledger
from nightjar.sql.registry_models import DeliveryStateRow
from nightjar.storage import Home

log = logging.getLogger(__name__)

TABLE = cast(Table, DeliveryStateRow.__table__)
# Keys per look-up statement: well under SQLite's bound-parameter limit, and PostgreSQL's.
_CHUNK = 500

_RANK = (ledger.PENDING, ledger.FAILED, ledger.DELIVERED)  # which of two statuses stored at once is the later

State = dict[tuple[int, str, str], tuple[str, datetime]]  # (filter id, key, channel) -> (status, recorded at)


def lookup(eng: Engine, keys: Mapping[int, Sequence[str]]) -> State:
    """The stored status and time of these delivery keys (per filter id), on every channel; keys never recorded
    are absent."""
    found: State = {}
    query = select(TABLE).where(TABLE.c.filter_id == bindparam("f"), TABLE.c.key.in_(bindparam("k", expanding=True)))
    with eng.connect() as con:
        for filter_id, wanted in keys.items():
            unique = sorted(set(wanted))
            for start in range(0, len(unique), _CHUNK):
                for row in con.execute(query, {"f": filter_id, "k": unique[start : start + _CHUNK]}):
                    found[(row.filter_id, row.key, row.channel)] = (row.status, _utc(row.recorded_at))
    return found


def record(eng: Engine, rows: pa.Table) -> None:
    """Store the statuses of ledger rows (``FILTER_LEDGER_SCHEMA``): for each (filter, key, channel) the latest by
    ``recordedAt`` wins, here and against what is stored (an older status never replaces a newer one)."""
    latest = _latest(rows)
    if not latest:
        return
    insert = postgresql.insert(TABLE) if eng.dialect.name == "postgresql" else sqlite.insert(TABLE)
    new, stored = insert.excluded, TABLE.c
    later = or_(
        new.recorded_at > stored.recorded_at,
        and_(new.recorded_at == stored.recorded_at, _rank(new.status) >= _rank(stored.status)),
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[stored.filter_id, stored.key, stored.channel],
        set_={"status": new.status, "recorded_at": new.recorded_at},
        where=later,
    )
    with eng.begin() as con:
        con.execute(upsert, latest)


def _rank(status: ColumnElement[str]) -> ColumnElement[int]:
    """The place of a status in ``_RANK``, in SQL."""
    return case(*((status == name, k) for k, name in enumerate(_RANK)), else_=-1)


def adopt(eng: Engine, home: Home) -> int:
    """Fill an empty state table from the lake's ledger (its latest statuses); the number of keys adopted. Does
    nothing when the table holds any state: from then on every status is stored in both places."""
    with eng.connect() as con:
        if con.execute(select(exists().select_from(TABLE))).scalar():
            return 0
    journal = ledger.read(home)
    if journal.num_rows == 0:
        return 0
    record(eng, journal)
    adopted = len(_latest(journal))
    log.info("delivery state: %d keys adopted from the filter ledger", adopted)
    return adopted


def _latest(rows: pa.Table) -> list[dict[str, object]]:
    """One row per (filter, key, channel): its latest status and time. Statuses stored at the same instant are
    ranked pending < failed < delivered, so the answer does not depend on the rows' order."""
    if rows.num_rows == 0:
        return []
    rank = pc.index_in(rows["status"], pa.array(_RANK))
    ordered = rows.select(["filterId", "key", "channel", "status", "recordedAt"]).append_column("rank", rank)
    ordered = ordered.sort_by([("recordedAt", "ascending"), ("rank", "ascending")])
    # Ordered aggregation (one thread): the last row of each group is its latest.
    latest = ordered.group_by(["filterId", "key", "channel"], use_threads=False).aggregate(
        [("status", "last"), ("recordedAt", "last")]
    )
    return [
        {"filter_id": f, "key": k, "channel": c, "status": s, "recorded_at": _utc(at)}
        for f, k, c, s, at in zip(
            *(latest[n].to_pylist() for n in ("filterId", "key", "channel", "status_last", "recordedAt_last")),
            strict=True,
        )
    ]


def _utc(moment: datetime) -> datetime:
    """A stored time as UTC (SQLite returns the UTC wall time without its zone)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def pending_since(state: State, wanted: Iterable[tuple[int, str, str]]) -> dict[tuple[int, str], datetime]:
    """When each (filter, channel) first stored one of ``wanted`` as pending: the start of an interrupted attempt."""
    firsts: dict[tuple[int, str], datetime] = {}
    for f, k, c in wanted:
        stored = state.get((f, k, c))
        if stored is not None and stored[0] == ledger.PENDING:
            firsts[(f, c)] = min(stored[1], firsts.get((f, c), stored[1]))
    return firsts
