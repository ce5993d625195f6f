from __future__ import annotations

import io
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import Client
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.pipelines.run import ingest
from nightjar.settings import Settings
from nightjar.sql.engine import query_lake
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


@pytest.fixture
def small_lake(settings: Settings, lake_builder) -> Settings:
    lake_builder(settings.home, alerts=300, batches=3)
    return settings


def test_pages_formats_and_time_travel(small_lake: Settings) -> None:
    client = TestClient(create_app(small_lake))
    sql = "SELECT diaSourceId, psfFlux FROM sources WHERE NOT fromPacketHistory ORDER BY diaSourceId"
    first = client.post("/api/v1/query", json={"sql": sql, "limit": 120}).json()
    assert (first["count"], first["offset"], first["next_offset"]) == (120, 0, 120)
    rest = client.post("/api/v1/query", json={"sql": sql, "limit": 200, "offset": 120}).json()
    assert rest["count"] == 180 and rest["next_offset"] is None
    ids = [r["diaSourceId"] for r in first["rows"] + rest["rows"]]
    assert len(set(ids)) == 300 and all(isinstance(i, str) for i in ids)

    csv_page = client.post("/api/v1/query", json={"sql": sql, "limit": 10, "format": "csv"})
    assert csv_page.headers["content-type"].startswith("text/csv") and csv_page.headers["x-next-offset"] == "10"
    assert csv_page.text.splitlines()[1].split(",")[0] == ids[0]
    parquet = client.post("/api/v1/query", json={"sql": sql, "limit": 10, "format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert [str(i) for i in table["diaSourceId"].to_pylist()] == ids[:10]

    old = client.post("/api/v1/query", json={"sql": "SELECT count(*) AS n FROM cutouts", "as_of": 0}).json()
    assert old["rows"] == [{"n": 100}]
    bad = client.post("/api/v1/query", json={"sql": "SELECT 1", "as_of": "yesterday"})
    assert bad.status_code == 400 and "--as-of takes a lake version" in bad.json()["detail"]


def test_the_anonymous_role_caps_rows(small_lake: Settings) -> None:
    limits = {**small_lake.role_max_rows, "anonymous": 100}
    client = TestClient(create_app(small_lake.model_copy(update={"role_max_rows": limits})))
    response = client.post("/api/v1/query", json={"sql": "SELECT * FROM sources", "limit": 50, "offset": 80})
    assert response.status_code == 400 and "rows beyond 100" in response.json()["detail"]


def test_jobs_run_in_the_background_and_return_parquet(small_lake: Settings) -> None:
    token = add_user_token(small_lake, "jobber")
    with TestClient(create_app(small_lake), headers={"Authorization": f"Token {token}"}) as client:
        submitted = client.post(
            "/api/v1/jobs", json={"sql": "SELECT diaObjectId, count(*) AS n FROM sources GROUP BY ALL ORDER BY 1"}
        )
        assert submitted.status_code == 202
        job = submitted.json()
        deadline = time.monotonic() + 60
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = client.get(f"/api/v1/jobs/{job['id']}").json()
        assert job["status"] == "done" and job["progress"] == 100.0
        result = client.get(job["links"]["result"])
        assert result.headers["content-type"] == "application/vnd.apache.parquet"
        table = pq.read_table(io.BytesIO(result.content))
        direct = query_lake(small_lake, "SELECT diaObjectId, count(*) AS n FROM sources GROUP BY ALL ORDER BY 1")
        assert table.equals(direct) and job["rows"] == direct.num_rows

        refused = client.post("/api/v1/jobs", json={"sql": "SELECT * FROM read_parquet('/etc/passwd')"})
        assert refused.status_code == 400 and "read_parquet() is not available" in refused.json()["detail"]
        assert client.get("/api/v1/jobs/0123456789abcdef").status_code == 404


def test_a_long_job_reports_progress_and_can_be_cancelled(small_lake: Settings) -> None:
    token = add_user_token(small_lake, "canceller")
    with TestClient(create_app(small_lake), headers={"Authorization": f"Token {token}"}) as client:
        job = client.post("/api/v1/jobs", json={"sql": "SELECT count(*) FROM range(1000000000000) a"}).json()
        deadline = time.monotonic() + 30
        while job["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
            job = client.get(f"/api/v1/jobs/{job['id']}").json()
        assert job["status"] == "running"
        assert client.get(f"/api/v1/jobs/{job['id']}/result").status_code == 409
        cancelled = client.delete(f"/api/v1/jobs/{job['id']}").json()
        assert cancelled["status"] == "cancelled"


def test_helper_functions_are_listed(settings: Settings) -> None:
    names = {f["name"] for f in TestClient(create_app(settings)).get("/api/v1/functions").json()}
    assert {"mag", "mjdnow", "angsep", "in_cone", "healpix"} <= names
