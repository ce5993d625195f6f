"""The delivery state: the latest status per (filter, key, channel), kept by key in the metadata database (SQLite and
PostgreSQL), filled from the lake's ledger once, dropped with its filter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from nightjar.lake import ledger
from nightjar.lake.schemas import FILTER_LEDGER_SCHEMA
from nightjar.settings import Settings
from nightjar.sql import delivery_state, registry

pytestmark = pytest.mark.both_databases

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 50000"


def rows(*entries: tuple[int, str, str, str, datetime]) -> pa.Table:
    """Ledger rows: (filter id, key, channel, status, recorded at)."""
    n = len(entries)
    return pa.table(
        {
            "filterId": [e[0] for e in entries],
            "filterVersion": [1] * n,
            "key": [e[1] for e in entries],
            "diaObjectId": [7] * n,
            "diaSourceId": [8] * n,
            "channel": [e[2] for e in entries],
            "status": [e[3] for e in entries],
            "batch": ["b"] * n,
            "detail": [""] * n,
            "recordedAt": [e[4] for e in entries],
        },
        schema=FILTER_LEDGER_SCHEMA,
    )


def test_the_latest_status_wins_whatever_the_order_of_recording(db) -> None:
    history = [
        (1, "1:7:8", "kafka", "pending", T0),
        (1, "1:7:8", "kafka", "delivered", T0 + timedelta(seconds=1)),
        (1, "1:7:8", "email", "pending", T0),
        (1, "1:7:8", "email", "failed", T0 + timedelta(seconds=2)),
        (1, "1:7:9", "kafka", "pending", T0 + timedelta(seconds=3)),
        (2, "new:7", "kafka", "pending", T0),
        (2, "new:7", "kafka", "delivered", T0 + timedelta(seconds=4)),
    ]
    random.Random(5).shuffle(history)
    for entry in history:  # one row at a time, in a shuffled order
        delivery_state.record(db, rows(entry))
    state = delivery_state.lookup(db, {1: ["1:7:8", "1:7:9", "1:7:10"], 2: ["new:7", "new:8"]})
    assert state == {
        (1, "1:7:8", "kafka"): ("delivered", T0 + timedelta(seconds=1)),
        (1, "1:7:8", "email"): ("failed", T0 + timedelta(seconds=2)),
        (1, "1:7:9", "kafka"): ("pending", T0 + timedelta(seconds=3)),
        (2, "new:7", "kafka"): ("delivered", T0 + timedelta(seconds=4)),
    }
    # The same rows at once, in another order: the same state.
    again = rows(*reversed(history))
    delivery_state.record(db, again)
    assert delivery_state.lookup(db, {1: ["1:7:8", "1:7:9"], 2: ["new:7"]}) == state
    assert delivery_state.pending_since(state, [(1, "1:7:9", "kafka"), (1, "1:7:8", "kafka")]) == {
        (1, "kafka"): T0 + timedelta(seconds=3)
    }


@pytest.mark.parametrize("first", ["delivered", "pending"])
def test_statuses_stored_at_one_instant_settle_on_the_outcome(db, first: str) -> None:
    second = "pending" if first == "delivered" else "delivered"
    delivery_state.record(db, rows((1, "new:7", "kafka", first, T0)))
    delivery_state.record(db, rows((1, "new:7", "kafka", second, T0)))
    assert delivery_state.lookup(db, {1: ["new:7"]}) == {(1, "new:7", "kafka"): ("delivered", T0)}


def test_a_lookup_of_many_keys_finds_each_stored_one(db) -> None:
    keys = [f"1:{i}:{i + 1}" for i in range(2_300)]  # more than one statement's worth
    delivery_state.record(db, rows(*[(4, k, "kafka", "delivered", T0) for k in keys[::2]]))
    state = delivery_state.lookup(db, {4: keys, 5: keys[:10]})
    assert sorted(k for _, k, _ in state) == sorted(keys[::2])


def test_an_empty_state_adopts_the_ledger_once(settings: Settings, db) -> None:
    ledger.append(
        settings.lake,
        rows(
            (3, "new:1", "kafka", "pending", T0),
            (3, "new:1", "kafka", "delivered", T0 + timedelta(seconds=1)),
            (3, "new:2", "webhook", "pending", T0),
        ),
    )
    assert delivery_state.adopt(db, settings.lake) == 2
    assert delivery_state.lookup(db, {3: ["new:1", "new:2"]}) == {
        (3, "new:1", "kafka"): ("delivered", T0 + timedelta(seconds=1)),
        (3, "new:2", "webhook"): ("pending", T0),
    }
    # From now on both are written together: the journal is not read again.
    ledger.append(settings.lake, rows((3, "new:3", "kafka", "delivered", T0)))
    assert delivery_state.adopt(db, settings.lake) == 0
    assert (3, "new:3", "kafka") not in delivery_state.lookup(db, {3: ["new:3"]})


def test_a_deleted_filter_leaves_no_state(db) -> None:
    kept, gone = registry.add_filter(db, "kept", BRIGHT), registry.add_filter(db, "gone", BRIGHT)
    delivery_state.record(
        db, rows((kept.id, "new:1", "kafka", "delivered", T0), (gone.id, "new:1", "kafka", "delivered", T0))
    )
    registry.delete_filter(db, gone.id)
    assert list(delivery_state.lookup(db, {kept.id: ["new:1"], gone.id: ["new:1"]})) == [(kept.id, "new:1", "kafka")]
