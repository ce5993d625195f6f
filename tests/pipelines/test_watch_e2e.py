"""Watchlists and watchmaps on the real broker and Dask cluster: a streaming filter joining ``watchlist_hits``
(and one reading ``area_hits``) delivers exactly the alerts an independent astropy/mocpy computation says are in
the cones and the area, and the lake's hit tables hold exactly those."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import astropy.units as u
import numpy as np
import pyarrow as pa
import pytest
from astropy.coordinates import SkyCoord
from distributed import Client

from nightjar.catalogs import watch_index, watchmap
from nightjar.catalogs.watch_files import read_csv_text
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import registry, watch_registry
from nightjar.sql.engine import query_lake
from nightjar.streams import kafka, simulate
from nightjar.streams.decode import RawBatch, decode_batch

ALERTS = 900
SEED = 23
CONFIG = simulate.SimConfig(history_days=0)


def simulated_alerts() -> pa.Table:
    """The alerts ``simulate.produce`` sends with the same seed: diaObjectId, diaSourceId, ra, dec."""
    payloads = [a.payload for a in simulate.generate_alerts(ALERTS, seed=SEED, config=CONFIG)]
    sources = decode_batch(RawBatch.from_payloads(payloads)).sources
    return sources.select(["diaObjectId", "diaSourceId", "ra", "dec"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_streaming_filters_on_watch_hits_deliver_exactly_the_matches(
    kafka_settings: Settings, dask_client: Client
) -> None:
    settings = kafka_settings.model_copy(update={"batch_size": 300})
    home = Path(settings.home)
    alerts = simulated_alerts()
    objects = alerts.group_by("diaObjectId", use_threads=False).aggregate([("ra", "first"), ("dec", "first")])
    rng = np.random.default_rng(4)
    chosen = rng.choice(objects.num_rows, 40, replace=False)
    # Cones north of 40 objects' first positions: 0.8″ with the default radius 2″, 0.3″ with their own radius 0.5″
    # for ten of them (alerts of those objects scattered further fall outside); and 200 cones at random positions.
    lines = ["RA | Dec | ID | radius"]
    for k, i in enumerate(chosen):
        offset = 0.3 if k < 10 else 0.8
        ra, dec = objects["ra_first"][i].as_py(), objects["dec_first"][i].as_py() + offset / 3600
        lines.append(f"{ra!r} | {dec!r} | target-{k} | {'0.5' if k < 10 else ''}")
    for k in range(200):
        lines.append(f"{rng.uniform(0, 360):.9f} | {np.degrees(np.arcsin(rng.uniform(-1, 1))):.9f} | random-{k} |")
    cones = read_csv_text("\n".join(lines) + "\n")
    db = registry.engine(settings.metadata_url)
    watched = watch_registry.add_watchlist(db, home, "targets", cones, radius_arcsec=2.0)
    decoy = watch_registry.add_watchlist(db, home, "decoy", cones, radius_arcsec=2.0, active=False)
    # A 10° circle around the first alert.
    area = watchmap.from_circle(alerts["ra"][0].as_py(), alerts["dec"][0].as_py(), 10 * 3600.0)
    field = watch_registry.add_watchmap(db, home, "field", area, "circle")
    on_list = registry.add_filter(
        db,
        "on my watchlist",
        "SELECT o.diaObjectId, watchlist_hits.diaSourceId, watchlist_hits.coneName, watchlist_hits.separationArcsec "
        f"FROM objects o JOIN watchlist_hits USING (diaObjectId) WHERE watchlist_hits.watchlistId = {watched.id}",
    )
    in_field = registry.add_filter(
        db, "in my field", f"SELECT diaObjectId, diaSourceId FROM area_hits WHERE watchmapId = {field.id}"
    )

    dask_client.run(watch_index.clear_cache)
    topic = f"watch-{uuid.uuid4().hex[:8]}"
    n = simulate.produce(settings, topic, ALERTS, seed=SEED, config=CONFIG)
    report = run(settings, dask_client, topic, max_alerts=n, idle_exit_s=30)
    assert report.accepted == n and report.batches >= 3 and not report.filter_errors
    # Each worker built the list's index once and reused it for every later batch.
    stats = dask_client.run(watch_index.cache_stats).values()
    assert sum(s.hits + s.misses for s in stats) == report.batches
    assert all(s.misses <= 1 for s in stats) and sum(s.hits for s in stats) >= report.batches - len(stats)

    # Expected, by astropy and mocpy alone.
    radius = np.nan_to_num(cones["radius"].to_numpy(zero_copy_only=False).astype(float), nan=2.0)
    at = SkyCoord(alerts["ra"].to_numpy() * u.deg, alerts["dec"].to_numpy() * u.deg)
    cone_at = SkyCoord(cones["ra"].to_numpy() * u.deg, cones["dec"].to_numpy() * u.deg)
    i_cone, i_alert, sep, _ = at.search_around_sky(cone_at, 2.0 * u.arcsec)
    keep = sep.to_value(u.arcsec) <= radius[i_cone]
    names = cones["name"].to_pylist()
    expected = sorted(
        (str(alerts["diaObjectId"][a].as_py()), str(alerts["diaSourceId"][a].as_py()), names[c])
        for a, c in zip(i_alert[keep], i_cone[keep], strict=True)
    )
    assert len(expected) >= 40 and len({e[2] for e in expected}) >= 30
    assert any(int(r) < 10 for r in (e[2].removeprefix("target-") for e in expected if e[2].startswith("target-")))

    messages = kafka.read_messages(settings, on_list.topic, len(expected) + 1, timeout_s=30)
    delivered = sorted(
        (m["diaObjectId"], m["diaSourceId"], m["coneName"]) for m in (json.loads(x.value) for x in messages)
    )
    assert delivered == expected
    assert report.matches["on my watchlist"] == len(expected)

    inside = area.contains_lonlat(alerts["ra"].to_numpy() * u.deg, alerts["dec"].to_numpy() * u.deg)
    expected_area = sorted(str(s) for s in alerts["diaSourceId"].filter(pa.array(inside)).to_pylist())
    assert 10 < len(expected_area) < ALERTS
    area_messages = kafka.read_messages(settings, in_field.topic, len(expected_area) + 1, timeout_s=30)
    assert sorted(json.loads(m.value)["diaSourceId"] for m in area_messages) == expected_area

    # The lake holds the same hits, once each; the inactive list matched nothing.
    stored = query_lake(
        settings,
        "SELECT diaObjectId, diaSourceId, coneName, watchlistId FROM watchlist_hits ORDER BY diaSourceId",
    )
    assert set(stored["watchlistId"].to_pylist()) == {watched.id} and decoy.id != watched.id
    assert (
        sorted(
            zip(
                map(str, stored["diaObjectId"].to_pylist()),
                map(str, stored["diaSourceId"].to_pylist()),
                stored["coneName"].to_pylist(),
                strict=True,
            )
        )
        == expected
    )
    db.dispose()
