"""Static queries over the lake: the same views and functions as streaming, time travel, pages and tiers."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from nightjar.settings import Settings
from nightjar.sql import engine
from nightjar.sql.parse import QueryError


@pytest.fixture
def lake(settings: Settings, lake_builder) -> Settings:
    lake_builder(settings.home, alerts=300, batches=3)
    return settings


def test_every_view_exists_even_before_the_lake_has_it(settings: Settings) -> None:
    for view in ("sources", "objects", "forced_sources", "context", "watchlist_hits", "area_hits", "annotations"):
        assert engine.query_lake(settings, f"SELECT count(*) AS n FROM {view}")["n"].to_pylist() == [0]
    described = engine.query_lake(settings, "DESCRIBE watchlist_hits")["column_name"].to_pylist()
    assert {"diaObjectId", "diaSourceId", "watchlistId", "separationArcsec"} <= set(described)


def test_time_travel_by_version_and_by_time(lake: Settings, lake_builder) -> None:
    count = "SELECT count(*) AS n FROM sources"
    assert engine.query_lake(lake, count)["n"].to_pylist() == [300]
    assert engine.query_lake(lake, count, as_of=0)["n"].to_pylist() == [100]
    assert engine.query_lake(lake, count, as_of=1)["n"].to_pylist() == [200]
    with pytest.raises(ValueError, match="the lake has no version as of 7"):
        engine.query_lake(lake, count, as_of=7)
    # A time before the lake existed: the tables are there, empty.
    assert engine.query_lake(lake, count, as_of=datetime(2000, 1, 1, tzinfo=UTC))["n"].to_pylist() == [0]
    moment = datetime.now(UTC)
    time.sleep(0.05)
    lake_builder(lake.home, alerts=30, batches=1, seed=99, topic="later")
    assert engine.query_lake(lake, count)["n"].to_pylist() == [330]
    assert engine.query_lake(lake, count, as_of=moment)["n"].to_pylist() == [300]
    assert engine.parse_as_of(moment.isoformat()) == moment


def test_pages_cover_the_result_once(lake: Settings) -> None:
    sql = "SELECT diaSourceId FROM sources ORDER BY diaSourceId -- a comment cannot swallow the paging"
    everything = engine.query_lake(lake, sql)["diaSourceId"].to_pylist()
    seen, offset = [], 0
    while offset is not None:
        page = engine.query_page(lake, sql, offset=offset, size=70)
        seen += page.table["diaSourceId"].to_pylist()
        offset = page.next_offset
    assert seen == everything and len(seen) == 300


def test_roles_cap_the_rows(lake: Settings) -> None:
    small = lake.model_copy(update={"role_max_rows": {"anonymous": 50, "power": 1000}})
    assert engine.role_rows(small, "anonymous") == 50
    with pytest.raises(QueryError, match="more than 50 rows"):
        engine.query_lake(small, "SELECT * FROM sources", max_rows=engine.role_rows(small, "anonymous"))
    with pytest.raises(ValueError, match="rows beyond 50"):
        engine.query_page(small, "SELECT * FROM sources", offset=40, size=20, max_rows=50)
    with pytest.raises(ValueError, match="unknown role"):
        engine.role_rows(small, "gold")


def test_helpers_and_full_sql_over_the_lake(lake: Settings) -> None:
    sql = """
        SELECT o.diaObjectId, count(*) AS n, min(mag(s.psfFlux)) AS brightest,
               max(angsep(s.ra, s.dec, o.ra, o.dec)) AS spread_arcsec
        FROM sources s JOIN objects o USING (diaObjectId)
        GROUP BY ALL HAVING count(*) > 1 ORDER BY n DESC, o.diaObjectId LIMIT 5
    """
    out = engine.query_lake(lake, sql).to_pylist()
    assert len(out) == 5 and all(r["n"] > 1 for r in out)
    assert all(r["spread_arcsec"] < 1.0 for r in out)  # detections of one object lie within an arcsecond
