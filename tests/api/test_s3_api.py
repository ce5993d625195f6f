"""The HTTP API over a lake on a real S3-compatible server: queries, object pages and annotations written there."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from nightjar import paths
from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.lake import read
from nightjar.settings import Settings


def test_the_api_reads_and_writes_the_s3_lake(s3_settings: Settings, lake_builder) -> None:
    lake = s3_settings.lake
    lake_builder(lake, alerts=60, batches=2)
    token = add_user_token(s3_settings, "classifier", role="annotator", topics=("ml",))
    with TestClient(create_app(s3_settings.model_copy(update={"query_isolation": False}))) as client:
        counted = client.post("/api/v1/query", json={"sql": "SELECT count(*) AS n FROM sources"})
        assert counted.status_code == 200, counted.text
        assert int(counted.json()["rows"][0]["n"]) == 60
        oid = client.post("/api/v1/query", json={"sql": "SELECT min(diaObjectId) AS o FROM objects"}).json()
        object_id = oid["rows"][0]["o"]
        page = client.get(f"/api/v1/objects/{object_id}")
        assert page.status_code == 200, page.text
        before = read.lake_version(lake)
        made = client.post(
            "/api/v1/annotations",
            json={"diaObjectId": str(object_id), "topic": "ml", "classification": "SN Ia", "version": "1"},
            headers={"Authorization": f"Token {token}"},
        )
        assert made.status_code == 201, made.text
        assert read.lake_version(lake) == (before or 0) + 1  # the annotation is a new snapshot of the S3 lake
        assert read.rows_of_objects(lake, paths.ANNOTATIONS, [int(object_id)]).num_rows == 1
    assert not (Path(s3_settings.home) / paths.LAKE_DIR).exists()  # nothing written to the local home's lake
