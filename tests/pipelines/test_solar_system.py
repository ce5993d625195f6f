"""Solar-system records of real LSSTCam alerts (schema 9.0) round-trip through the lake, the API and filters."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import fastavro
import pytest
from distributed import Client
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.pipelines.run import ingest
from nightjar.pipelines.stages import batch_tables
from nightjar.settings import Settings
from nightjar.sql.compile import FilterSpec
from nightjar.sql.engine import limits, query_lake
from nightjar.sql.streaming import run_filters
from nightjar.streams.decode import RawBatch, decode_batch

FOLDER = "alerts/lsst/lsstcam-2025-v9.0"


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-6) or (math.isnan(got) and math.isnan(want))
    return bool(got == want)


@pytest.fixture
def lake(settings: Settings, dask_client: Client, data_dir: Path) -> tuple[Settings, list[dict[str, Any]]]:
    files = sorted((data_dir / FOLDER).glob("*.avro"))
    alerts = [a for f in files for a in fastavro.reader(io.BytesIO(f.read_bytes())) if isinstance(a, dict)]
    ingest(settings, dask_client, files)
    return settings, [a for a in alerts if a.get("ssSource")]


def test_sso_records_round_trip_through_the_lake_api_and_filters(lake: tuple[Settings, list[dict]]) -> None:
    settings, carriers = lake
    assert len(carriers) == 4  # of the 100 real alerts, these are of known minor planets
    stored = {r["diaSourceId"]: r for r in query_lake(settings, "SELECT * FROM ss_sources").to_pylist()}
    assert set(stored) == {a["diaSource"]["diaSourceId"] for a in carriers}
    for alert in carriers:
        row = stored[alert["diaSource"]["diaSourceId"]]
        for name, value in alert["ssSource"].items():
            if name == "diaSourceId":
                continue  # null in these alerts: the alert's own diaSourceId is the key
            assert _same(row[name], value), name
        assert row["midpointMjdTai"] == pytest.approx(alert["diaSource"]["midpointMjdTai"])
        assert row["ra"] == pytest.approx(alert["diaSource"]["ra"])
        assert row["band"] == alert["diaSource"]["band"]
    orbits = {r["ssObjectId"]: r for r in query_lake(settings, "SELECT * FROM ss_objects").to_pylist()}
    assert set(orbits) == {a["ssSource"]["ssObjectId"] for a in carriers}
    for alert in carriers:
        orbit = orbits[alert["ssSource"]["ssObjectId"]]
        for name, value in alert["MPCORB"].items():
            if name != "ssObjectId" or value is not None:
                assert _same(orbit[name], value), name

    # the API serves them
    alert = carriers[0]
    ss_id = alert["ssSource"]["ssObjectId"]
    with TestClient(create_app(settings)) as api:
        body = api.get(f"/api/v1/sso/{ss_id}").json()
        assert body["ssObjectId"] == str(ss_id)
        assert body["orbit"]["mpcDesignation"] == alert["MPCORB"]["mpcDesignation"]
        # every alert of the object, by time (two of the four real alerts are of the same minor planet)
        mine = sorted(
            (a for a in carriers if a["ssSource"]["ssObjectId"] == ss_id),
            key=lambda a: a["diaSource"]["midpointMjdTai"],
        )
        assert [s["diaSourceId"] for s in body["sources"]] == [str(a["diaSource"]["diaSourceId"]) for a in mine]
        assert [s["phaseAngle"] for s in body["sources"]] == pytest.approx([a["ssSource"]["phaseAngle"] for a in mine])
        assert api.get("/api/v1/sso/12345").status_code == 404

    # and a filter joins them to the detections
    joined = query_lake(
        settings,
        """SELECT s.diaSourceId, o.mpcDesignation, ss.heliocentricDist
           FROM sources s JOIN ss_sources ss USING (diaSourceId) JOIN ss_objects o ON o.ssObjectId = ss.ssObjectId
           WHERE ss.heliocentricDist > 1 ORDER BY s.diaSourceId""",
    ).to_pylist()
    want = sorted(
        (a["diaSource"]["diaSourceId"], a["MPCORB"]["mpcDesignation"])
        for a in carriers
        if a["ssSource"]["heliocentricDist"] > 1
    )
    assert [(r["diaSourceId"], r["mpcDesignation"]) for r in joined] == want and want


def test_a_streaming_filter_joins_the_batchs_solar_system_rows(settings: Settings, data_dir: Path) -> None:
    files = sorted((data_dir / FOLDER).glob("*.avro"))
    batch = decode_batch(RawBatch.from_payloads([f.read_bytes() for f in files]))
    sql = (
        "SELECT s.diaObjectId, s.diaSourceId, ss.ssObjectId, o.mpcDesignation FROM sources s "
        "JOIN ss_sources ss USING (diaSourceId) JOIN ss_objects o ON o.ssObjectId = ss.ssObjectId"
    )
    (result,) = run_filters(batch_tables(batch), [FilterSpec(1, 1, sql)], limits(settings))
    assert result.error is None and result.matches is not None
    carriers = [
        a
        for f in files
        for a in fastavro.reader(io.BytesIO(f.read_bytes()))
        if isinstance(a, dict) and a.get("ssSource")
    ]
    rows = result.matches.drop_columns(["diaObjectId"]).to_pylist()
    assert sorted(rows, key=lambda r: r["diaSourceId"]) == sorted(
        (
            {
                "diaSourceId": a["diaSource"]["diaSourceId"],
                "ssObjectId": a["ssSource"]["ssObjectId"],
                "mpcDesignation": a["MPCORB"]["mpcDesignation"],
            }
            for a in carriers
        ),
        key=lambda r: r["diaSourceId"],
    )
