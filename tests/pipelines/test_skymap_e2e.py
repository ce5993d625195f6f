"""Skymaps on the real broker and Dask cluster: simulated alerts placed inside and outside the real BAYESTAR map's
credible regions, before, during and after its active window; a streaming filter joining ``mma_area_hits``
delivers exactly the alerts mocpy says are in the 90 % region within the window, the lake holds those hits, and a
map added afterwards is matched over the history with the same answer."""

from __future__ import annotations

import json
import uuid
from datetime import UTC
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy.time import Time
from distributed import Client
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.catalogs.skymap import read_skymap
from nightjar.catalogs.skymap_store import add_skymap
from nightjar.pipelines.run import run
from nightjar.pipelines.skymap_history import ingest_skymap
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.streams import kafka, simulate
from nightjar.streams.decode import RawBatch, decode_batch

from ..skymap_reference import BAYESTAR, bayestar

ALERTS = 600
SEED = 31
CONFIG = simulate.SimConfig(history_days=0, hosts=False)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_streaming_filter_on_mma_area_hits(kafka_settings: Settings, dask_client: Client, data_dir: Path) -> None:
    settings = kafka_settings.model_copy(update={"batch_size": 200})
    home = Path(settings.home)
    ref = bayestar(data_dir)
    sim = simulate.Simulation(ALERTS, SEED, CONFIG)
    n = len(sim.objects)
    rng = np.random.default_rng(5)
    parts = [ref.sample(50, n // 4, rng), ref.sample(90, n // 4, rng), ref.sample(None, n - 2 * (n // 4), rng)]
    sim.place(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    payloads = [a.payload for a in sim.alerts()]
    sources = decode_batch(RawBatch.from_payloads(payloads)).sources
    mjd = sources["midpointMjdTai"].to_numpy()
    # The event 3 nights into the simulated 10, a 4-day window: alerts before and after it do not count.
    event_mjd = simulate.START_MJD + 3.0
    event = Time(event_mjd, format="mjd").to_datetime(timezone=UTC)
    live = add_skymap(home, read_skymap(data_dir / BAYESTAR), event_id="S-live", event_time=event, window_days=4.0)
    flt = registry.add_filter(
        registry.engine(settings.metadata_url),
        "in the GW region",
        "SELECT h.diaObjectId, h.diaSourceId, h.contour, h.probdens2 FROM mma_area_hits h "
        f"JOIN sources s USING (diaSourceId) WHERE h.skymapId = {live.id} AND h.contour <= 90",
    )

    topic = f"skymap-{uuid.uuid4().hex[:8]}"
    sent = simulate.produce_simulation(settings, topic, sim)
    assert sent == len(payloads)
    report = run(settings, dask_client, topic, max_alerts=sent, idle_exit_s=30)
    assert report.accepted == sent and report.batches >= 3 and not report.filter_errors

    # Expected, by mocpy and healpy alone.
    ra, dec = sources["ra"].to_numpy(), sources["dec"].to_numpy()
    in90 = ref.inside(90, ra, dec)
    timely = (mjd >= event_mjd) & (mjd <= event_mjd + 4.0)
    want = in90 & timely
    assert want.sum() > 20 and np.any(in90 & ~timely) and np.any(timely & ~in90)
    ids = sources["diaSourceId"].to_numpy()
    expected = sorted(str(i) for i in ids[want])
    messages = kafka.read_messages(settings, flt.topic, len(expected) + 1, timeout_s=30)
    got = {m["diaSourceId"]: m for m in (json.loads(x.value) for x in messages)}
    assert sorted(got) == expected
    density = dict(zip(ids[want].tolist(), ref.density_at(ra[want], dec[want]).tolist(), strict=True))
    assert all(got[str(k)]["probdens2"] == v for k, v in density.items())
    in50 = dict(zip(ids.tolist(), ref.inside(50, ra, dec).tolist(), strict=True))
    assert all(m["contour"] == (50 if in50[int(k)] else 90) for k, m in got.items())

    stored = query_lake(settings, f"SELECT diaSourceId FROM mma_area_hits WHERE skymapId = {live.id}")
    assert sorted(stored["diaSourceId"].to_pylist()) == sorted(ids[want].tolist())
    with TestClient(create_app(settings)) as api:  # Lasair's query builder names the table and its map id
        form = {"selected": "DISTINCT objects.diaObjectId", "tables": "objects, mma_area_hits"}
        got_lasair = api.post("/lasair/api/query/", data={**form, "conditions": f"mma_area_hits.mw_id = {live.id}"})
        assert got_lasair.status_code == 200, got_lasair.text
        owners = sources["diaObjectId"].to_pylist()  # null for solar-system alerts
        objects_hit = {str(o) for o, w in zip(owners, want, strict=True) if w and o is not None}
        assert {r["diaObjectId"] for r in got_lasair.json()} == objects_hit

    # A map added now (the default 21-day window from the first night) is matched over the history.
    first = Time(simulate.START_MJD, format="mjd").to_datetime(timezone=UTC)
    later, result = ingest_skymap(home, read_skymap(data_dir / BAYESTAR), event_id="S-later", event_time=first)
    after = mjd >= simulate.START_MJD  # a few simulated detections precede the first night
    assert result is not None and result.alerts == int(after.sum()) and not after.all()
    history = query_lake(
        settings, f"SELECT diaSourceId, probdens2 FROM mma_area_hits WHERE skymapId = {later.id} ORDER BY 1"
    )
    hit = in90 & after
    assert history["diaSourceId"].to_pylist() == sorted(ids[hit].tolist())
    order = np.argsort(ids[hit])
    assert np.array_equal(history["probdens2"].to_numpy(), ref.density_at(ra[hit], dec[hit])[order])
    assert result.stored == int(hit.sum())
    # Nothing of the live map changed.
    again = query_lake(settings, f"SELECT count(*) AS n FROM mma_area_hits WHERE skymapId = {live.id}")
    assert again["n"].to_pylist() == [int(want.sum())]
    assert isinstance(stored, pa.Table)
