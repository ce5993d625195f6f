from __future__ import annotations

from pathlib import Path

import pytest
from distributed import Client
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.pipelines.run import ingest
from nightjar.settings import Settings
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.files import read_payloads


@pytest.fixture
def lake_settings(settings: Settings, dask_client: Client, data_dir: Path) -> Settings:
    files = sorted((data_dir / "alerts/lsst/lsstcam-2025-v9.0").glob("*.avro"))
    report = ingest(settings, dask_client, files)
    assert report.accepted == len(files) == 100
    return settings


def test_query_returns_rows_with_ids_as_strings(lake_settings: Settings, data_dir: Path) -> None:
    client = TestClient(create_app(lake_settings))
    response = client.post(
        "/api/v1/query", json={"sql": "SELECT diaSourceId, ra, dec FROM sources ORDER BY diaSourceId LIMIT 5"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == ["diaSourceId", "ra", "dec"] and body["count"] == 5
    files = sorted((data_dir / "alerts/lsst/lsstcam-2025-v9.0").glob("*.avro"))
    decoded = decode_batch(RawBatch.from_payloads([p for f in files for p in read_payloads(f)]))
    expected = sorted(decoded.sources["diaSourceId"].to_pylist())[:5]
    assert [row["diaSourceId"] for row in body["rows"]] == [str(i) for i in expected]
    assert all(i > 2**53 for i in expected), "the test needs IDs beyond double precision"


def test_bad_sql_is_a_400_that_points_at_the_problem(lake_settings: Settings) -> None:
    client = TestClient(create_app(lake_settings))
    response = client.post("/api/v1/query", json={"sql": "SELECT nosuchcolumn FROM sources"})
    assert response.status_code == 400
    assert "nosuchcolumn" in response.json()["detail"]
    response = client.post("/api/v1/query", json={"sql": "DROP TABLE sources"})
    assert response.status_code == 400
    assert "only SELECT" in response.json()["detail"]
    assert client.post("/api/v1/query", json={}).status_code == 422


def test_reingesting_the_same_files_adds_nothing(lake_settings: Settings, dask_client: Client, data_dir: Path) -> None:
    files = sorted((data_dir / "alerts/lsst/lsstcam-2025-v9.0").glob("*.avro"))
    client = TestClient(create_app(lake_settings))
    sql = "SELECT count(*) FILTER (WHERE NOT fromPacketHistory) AS alerts, count(*) AS n FROM sources"
    before = client.post("/api/v1/query", json={"sql": sql}).json()["rows"]
    ingest(lake_settings, dask_client, files)
    after = client.post("/api/v1/query", json={"sql": sql}).json()["rows"]
    assert before == after
    assert after[0]["alerts"] == 100
    # One of these alerts carries a packet-history detection that is not itself among the 100.
    assert after[0]["n"] == 101
