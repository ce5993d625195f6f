"""Backtests replay the lake night by night as the stream would have, and publish nothing."""

from __future__ import annotations

import pytest

from nightjar.lake import ledger
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.backtest import backtest, lake_nights, last_nights_since
from nightjar.sql.engine import query_lake
from nightjar.streams.simulate import START_MJD

BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux, band FROM sources WHERE psfFlux > 15000"


@pytest.fixture
def lake(settings: Settings, lake_builder) -> Settings:
    lake_builder(settings.home, alerts=1200, batches=4, seed=51)
    return settings


def keys(rows: list[dict]) -> list[str]:
    # Detections without a diaObject (solar-system) are left out: see the closing note of the lake issue.
    return sorted(f"{r['diaObjectId']}:{r['diaSourceId']}" for r in rows if r["diaObjectId"] is not None)


def test_a_backtest_delivers_what_the_stream_would_have(lake: Settings) -> None:
    nights = lake_nights(lake.home, START_MJD, None)
    assert len(nights) >= 9  # ten simulated nights; the alert count can end the simulation inside the last
    since = nights[4]
    result = backtest(lake, registry.Filter(1, "bright", BRIGHT, 1).spec, "all", since)
    assert [n.night for n in result.nights] == nights[4:]
    # Each night's alerts come with their packet history: earlier detections of the same objects match too.
    static = query_lake(
        lake,
        f"{BRIGHT} AND (night >= {since} OR diaObjectId IN (SELECT diaObjectId FROM sources WHERE night >= {since}))",
    )
    delivered = result.table()
    assert keys(delivered.select(["diaObjectId", "diaSourceId"]).to_pylist()) == keys(static.to_pylist())
    assert delivered.num_rows == len(set(delivered["deliveryKey"].to_pylist()))  # nothing twice
    assert ledger.read(lake.home).num_rows == 0  # nothing was delivered for real


def test_new_objects_mode_backtest(lake: Settings) -> None:
    first = lake_nights(lake.home, START_MJD, None)[0]
    result = backtest(lake, registry.Filter(1, "bright", BRIGHT, 1).spec, "new", first)
    static = query_lake(lake, f"{BRIGHT} QUALIFY row_number() OVER (PARTITION BY diaObjectId ORDER BY diaSourceId) = 1")
    assert keys(result.table().select(["diaObjectId", "diaSourceId"]).to_pylist()) == keys(static.to_pylist())
    assert all(k.startswith("new:") for k in result.table()["deliveryKey"].to_pylist())


def test_the_last_nights_start_where_the_portal_backtest_begins(lake: Settings, tmp_path) -> None:
    nights = lake_nights(lake.home, START_MJD, None)
    assert last_nights_since(lake.home, 3) == nights[-3]
    assert last_nights_since(lake.home, 1000) == nights[0]  # more nights than the lake has: all of them
    assert last_nights_since(lake.home, 0) is None
    assert last_nights_since(tmp_path, 3) is None  # no lake
