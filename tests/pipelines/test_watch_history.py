"""History matching: a list matched over the lake's history finds exactly the hits live matching stored for the
same alerts (real LSST and ZTF alerts through the pipeline graph on the Dask cluster), and a re-run replaces a
list's hits without duplicating them or losing those of later batches."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client

from nightjar import paths
from nightjar.catalogs import watchmap
from nightjar.catalogs.watch_files import read_cones
from nightjar.lake import watch_hits
from nightjar.lake.schemas import WATCHLIST_HITS_SCHEMA
from nightjar.pipelines.run import ingest
from nightjar.pipelines.watch_history import WatchJobManager, match_history, wait
from nightjar.settings import Settings
from nightjar.sql import registry, watch_registry
from nightjar.sql.engine import query_lake
from nightjar.streams.replay import alert_files

FOLDERS = ("lsst/lsstcam-2025-v9.0", "ztf/fink-2020-v3.3", "ztf/pittgoogle-2021-v3.3", "ztf/ampel-2018-v3.0")


def hit_keys(table: pa.Table, columns: tuple[str, ...]) -> list[tuple]:
    return sorted(zip(*(table[c].to_pylist() for c in columns), strict=True))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_history_finds_what_live_matching_found(
    settings: Settings, dask_client: Client, data_dir: Path, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"batch_size": 40})
    home = Path(settings.home)
    db = registry.engine(settings.metadata_url)
    gcvs = tmp_path / "gcvs.parquet"
    pq.write_table(pq.read_table(data_dir / "catalogs" / "gcvs" / "gcvs.parquet"), gcvs)
    cones = read_cones(gcvs)
    live = watch_registry.add_watchlist(db, home, "live", cones, radius_arcsec=1800.0)
    moc, kind = watchmap.from_file(data_dir / "skymaps" / "bayestar.multiorder.fits", 0.99)
    circle = watchmap.from_circle(7.5, -44.3, 7200)
    live_area = watch_registry.add_watchmap(db, home, "live-area", circle, "circle")
    watch_registry.add_watchmap(db, home, "gw", moc, kind)

    report = ingest(settings, dask_client, alert_files([data_dir / "alerts" / f for f in FOLDERS]))
    assert report.accepted == 230 and not report.file_errors
    stored = watch_hits.rows_of_list(home, paths.WATCHLIST_HITS, live.id)
    assert stored.num_rows >= 100  # the live stage ran in the graph and committed its hits
    stored_area = watch_hits.rows_of_list(home, paths.AREA_HITS, live_area.id)
    alerts = query_lake(settings, "SELECT diaSourceId, ra, dec FROM sources WHERE NOT fromPacketHistory")
    inside = circle.contains_lonlat(alerts["ra"].to_numpy() * u.deg, alerts["dec"].to_numpy() * u.deg)
    assert sorted(stored_area["diaSourceId"].to_pylist()) == sorted(alerts["diaSourceId"].filter(inside).to_pylist())
    assert stored_area.num_rows > 10

    # The same cones and area added after the alerts: only the history job can find their hits.
    later = watch_registry.add_watchlist(db, home, "later", cones, radius_arcsec=1800.0)
    later_area = watch_registry.add_watchmap(db, home, "later-area", circle, "circle")
    jobs = WatchJobManager(settings)
    try:
        done = [
            wait(jobs, jobs.submit(k, i).id, 120) for k, i in (("watchlist", later.id), ("watchmap", later_area.id))
        ]
    finally:
        jobs.close()
    assert [j.status for j in done] == ["done", "done"]
    assert done[0].alerts == 230 and done[0].progress == 100.0 and done[0].hits == stored.num_rows

    columns = ("coneId", "coneName", "diaObjectId", "diaSourceId", "separationArcsec", "midpointMjdTai")
    history = watch_hits.rows_of_list(home, paths.WATCHLIST_HITS, later.id)
    assert hit_keys(history, columns) == hit_keys(stored, columns)
    area_columns = ("diaObjectId", "diaSourceId", "midpointMjdTai")
    history_area = watch_hits.rows_of_list(home, paths.AREA_HITS, later_area.id)
    assert hit_keys(history_area, area_columns) == hit_keys(stored_area, area_columns)

    # A re-run of the live list replaces its hits: the same rows, none twice.
    result = match_history(settings, "watchlist", live.id)
    assert result.alerts == 230 and result.stored == stored.num_rows
    assert hit_keys(watch_hits.rows_of_list(home, paths.WATCHLIST_HITS, live.id), columns) == hit_keys(stored, columns)
    # The hits are SQL, next to everything else.
    counted = query_lake(
        settings,
        "SELECT count(*) AS n FROM watchlist_hits w JOIN sources s USING (diaSourceId) "
        f"WHERE w.watchlistId = {later.id}",
    )
    assert counted["n"].to_pylist() == [stored.num_rows]

    # An edit that removes cones and is matched again keeps only the remaining cones' hits.
    hit_names = sorted(set(stored["coneName"].to_pylist()))
    edited, changed = watch_registry.edit_watchlist(db, home, later.id, remove=hit_names[:3])
    assert changed and edited.version == 2
    match_history(settings, "watchlist", later.id)
    after = watch_hits.rows_of_list(home, paths.WATCHLIST_HITS, later.id)
    assert set(after["coneName"].to_pylist()) == set(hit_names[3:])

    # Deleting a list deletes its hits.
    watch_registry.delete_watchlist(db, home, later.id)
    assert watch_hits.rows_of_list(home, paths.WATCHLIST_HITS, later.id).num_rows == 0
    assert watch_hits.rows_of_list(home, paths.WATCHLIST_HITS, live.id).num_rows == stored.num_rows
    db.dispose()


def test_replace_keeps_hits_committed_after_the_snapshot(settings: Settings) -> None:
    home = Path(settings.home)
    schema = WATCHLIST_HITS_SCHEMA

    def rows(cone: int, sources: list[int]) -> pa.Table:
        n = len(sources)
        return pa.table(
            {
                "watchlistId": [5] * n,
                "coneId": [cone] * n,
                "coneName": [f"c{cone}"] * n,
                "diaObjectId": sources,
                "diaSourceId": sources,
                "separationArcsec": [0.5] * n,
                "midpointMjdTai": [60000.0] * n,
            },
            schema=schema,
        )

    from nightjar.lake import commit

    with commit.lake_lock(home):
        watch_hits.append_batch(home, paths.WATCHLIST_HITS, rows(1, [1, 2]), {"nightjar:t:0": 10})
        commit.log_batch(home, {"nightjar:t:0": 10})
    snapshot = watch_hits.table_version(home, paths.WATCHLIST_HITS)
    with commit.lake_lock(home):  # a live batch after the history job read the lake
        watch_hits.append_batch(home, paths.WATCHLIST_HITS, rows(1, [3]), {"nightjar:t:0": 20})
        commit.log_batch(home, {"nightjar:t:0": 20})
    # The same batch again writes nothing (exactly once).
    with commit.lake_lock(home):
        assert not watch_hits.append_batch(home, paths.WATCHLIST_HITS, rows(1, [3]), {"nightjar:t:0": 20})
    stored = watch_hits.replace_list(home, paths.WATCHLIST_HITS, 5, rows(2, [1, 2]), snapshot)
    assert stored == 3
    got = watch_hits.rows_of_list(home, paths.WATCHLIST_HITS, 5)
    assert hit_keys(got, ("coneId", "diaSourceId")) == [(1, 3), (2, 1), (2, 2)]


def test_annotation_filters_see_the_stored_hits_their_owner_may_see(settings: Settings, lake_builder) -> None:
    from nightjar.catalogs.watch_files import read_csv_text
    from nightjar.lake import read
    from nightjar.lake.annotations import encode_messages, to_table
    from nightjar.pipelines.annotation_filters import run_annotation_filters
    from nightjar.sql.engine import limits
    from nightjar.sql.registry import Filter

    home = Path(settings.home)
    lake_builder(home, alerts=200, batches=1)
    objects = read.datasets(home)[paths.OBJECTS].to_table(columns=["diaObjectId", "ra", "dec"]).slice(0, 2)
    csv = "".join(f"{r['ra']!r},{r['dec']!r},t{i}\n" for i, r in enumerate(objects.to_pylist()))
    db = registry.engine(settings.metadata_url)
    mine = watch_registry.add_watchlist(db, home, "mine", read_csv_text(csv), owner="alice", radius_arcsec=1.0)
    shared = watch_registry.add_watchlist(
        db, home, "shared", read_csv_text(csv), owner="alice", radius_arcsec=1.0, visibility="public"
    )
    db.dispose()
    for made in (mine, shared):
        match_history(settings, "watchlist", made.id)
    ids = objects["diaObjectId"].to_pylist()
    notes = to_table([{"diaObjectId": i, "topic": "t", "annotator": "bot", "classification": "x"} for i in ids])
    payloads = [value for _, value in encode_messages(notes)]
    sql = (
        "SELECT a.diaObjectId, w.watchlistId FROM annotations a JOIN watchlist_hits w USING (diaObjectId) "
        "WHERE a.classification = 'x'"
    )
    filters = [Filter(1, "a", sql, 1, owner="alice"), Filter(2, "b", sql, 1, owner="bob")]
    outputs, bad = run_annotation_filters(home, payloads, filters, limits(settings), settings.metadata_url)
    assert not bad and [o.error for o in outputs] == [None, None]
    assert sorted(set(outputs[0].matches["watchlistId"].to_pylist())) == sorted([mine.id, shared.id])
    assert sorted(set(outputs[1].matches["watchlistId"].to_pylist())) == [shared.id]
    assert sorted(set(outputs[1].matches["diaObjectId"].to_pylist())) == sorted(ids)
