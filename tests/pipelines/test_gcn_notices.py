"""IGWN/GCN JSON notices on the real broker: a PRELIMINARY notice carrying the real BAYESTAR map (base64) is stored
and matched over a lake whose alerts were placed in and out of its 90 % region, exactly as mocpy says; an UPDATE
supersedes it for live matching; a RETRACTION stops the superevent; bad notices are counted and skipped."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.time import Time
from confluent_kafka import Producer

from nightjar.catalogs.skymap_store import active_specs, list_skymaps
from nightjar.lake import mma_hits
from nightjar.pipelines import lake_write, stages
from nightjar.pipelines.gcn_notices import listen
from nightjar.settings import Settings
from nightjar.streams import kafka, simulate
from nightjar.streams.decode import RawBatch, decode_batch

from ..skymap_reference import BAYESTAR, bayestar


def _notice(kind: str, superevent: str, event_time: str, skymap: bytes | None) -> bytes:
    event: dict[str, Any] | None = None
    if kind != "RETRACTION":
        event = {
            "time": event_time,
            "far": 9.1e-14,
            "significant": True,
            "instruments": ["H1", "L1", "V1"],
            "group": "CBC",
            "pipeline": "gstlal",
            "search": "AllSky",
            "properties": {"HasNS": 0.95, "HasRemnant": 0.91},
            "classification": {"BNS": 0.95, "NSBH": 0.01, "BBH": 0.03, "Terrestrial": 0.01},
            "duration": None,
            "central_frequency": None,
            "skymap": base64.b64encode(skymap).decode() if skymap else None,
        }
    body = {
        "alert_type": kind,
        "time_created": "2025-09-10T00:00:00Z",
        "superevent_id": superevent,
        "urls": {"gracedb": f"https://gracedb.ligo.org/superevents/{superevent}/view/"},
        "event": event,
        "external_coinc": None,
    }
    return json.dumps(body).encode()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_notices_store_supersede_and_retract(kafka_settings: Settings, data_dir: Path) -> None:
    settings = kafka_settings
    home = Path(settings.home)
    ref = bayestar(data_dir)
    sim = simulate.Simulation(200, 9, simulate.SimConfig(history_days=0, hosts=False))
    n = len(sim.objects)
    rng = np.random.default_rng(2)
    inside, outside = ref.sample(90, n // 2, rng), ref.sample(None, n - n // 2, rng)
    sim.place(np.concatenate([inside[0], outside[0]]), np.concatenate([inside[1], outside[1]]))
    payloads = [a.payload for a in sim.alerts()]
    raw = RawBatch(payloads, ["sim"] * len(payloads), [0] * len(payloads), list(range(len(payloads))))
    decoded = stages.locate(decode_batch(raw), partition_order=5)
    lake_write.commit_to_lake(decoded, home, {"nightjar:sim:0": len(payloads) - 1})
    sources = decoded.sources
    event_time = Time(simulate.START_MJD - 1.0, format="mjd").isot + "Z"

    fits_bytes = (data_dir / BAYESTAR).read_bytes()
    topic = f"igwn-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [topic], partitions=1)  # as GCN publishes them: in order
    producer = Producer(kafka.producer_config(settings))
    for value in (
        _notice("PRELIMINARY", "S250910a", event_time, fits_bytes),
        b"not json",
        _notice("INITIAL", "S250910a", event_time, b"not a fits file"),
        _notice("UPDATE", "S250910a", event_time, fits_bytes),
        _notice("PRELIMINARY", "S250911b", event_time, fits_bytes),
        _notice("RETRACTION", "S250911b", event_time, None),
    ):
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0
    producer.close()

    report = listen(settings, topic, max_messages=6, idle_exit_s=20)
    assert (report.messages, report.skymaps, report.retractions, report.bad) == (6, 3, 1, 2)
    maps = {m.id: m for m in list_skymaps(home)}
    assert sorted(maps) == [1, 2, 3]
    assert [m.event_id for m in (maps[1], maps[2], maps[3])] == ["S250910a", "S250910a", "S250911b"]
    assert maps[1].classification["BNS"] == 0.95 and maps[1].properties == {"HasNS": 0.95, "HasRemnant": 0.91}
    assert maps[1].event_mjd == pytest.approx(simulate.START_MJD - 1.0, abs=1e-6)
    # The update superseded the preliminary map; the retraction stopped the other superevent.
    assert [s.id for s in active_specs(home)] == [2]

    # Each stored map was matched over the lake: the alerts in the 90 % region, within 21 days of the event.
    ra, dec, mjd = (sources[c].to_numpy() for c in ("ra", "dec", "midpointMjdTai"))
    want = ref.inside(90, ra, dec) & (mjd >= simulate.START_MJD - 1.0) & (mjd <= simulate.START_MJD + 20.0)
    assert 20 < want.sum() < len(payloads)
    expected = sorted(sources["diaSourceId"].to_numpy()[want].tolist())
    for map_id in (1, 2, 3):
        assert sorted(mma_hits.rows_of_map(home, map_id)["diaSourceId"].to_pylist()) == expected
