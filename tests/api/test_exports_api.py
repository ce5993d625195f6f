"""Bulk exports over HTTP: submitted, followed, downloaded; the files hold exactly the selected rows."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.settings import Settings
from nightjar.sql.engine import query_lake


@dataclass
class Setup:
    client: TestClient
    settings: Settings
    alice: dict[str, str]
    bob: dict[str, str]


@pytest.fixture
def setup(settings: Settings, lake_builder) -> Iterator[Setup]:
    lake_builder(settings.home, alerts=400, batches=2)
    alice = {"Authorization": f"Token {add_user_token(settings, 'alice')}"}
    bob = {"Authorization": f"Token {add_user_token(settings, 'bob')}"}
    with TestClient(create_app(settings)) as client:
        yield Setup(client, settings, alice, bob)


def _finished(setup: Setup, export_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = setup.client.get(f"/api/v1/exports/{export_id}", headers=setup.alice).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"export {export_id} still {job['status']}")


def _download(setup: Setup, job: dict[str, Any]) -> tuple[dict[str, Any], pa.Table]:
    manifest = setup.client.get(job["links"]["files"]["manifest.json"], headers=setup.alice).json()
    tables = []
    for entry in manifest["files"]:
        got = setup.client.get(job["links"]["files"][entry["name"]], headers=setup.alice)
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == entry["sha256"]
        tables.append(pq.read_table(io.BytesIO(got.content)))
    return manifest, pa.concat_tables(tables)


def _ids(table: pa.Table) -> list[int]:
    return sorted(table["diaSourceId"].to_pylist())


def test_cone_export_round_trip_is_exact(setup: Setup) -> None:
    centre = query_lake(setup.settings, "SELECT ra, dec FROM sources ORDER BY diaSourceId LIMIT 1")
    ra, dec = centre["ra"][0].as_py(), centre["dec"][0].as_py()
    cone = {"ra": ra, "dec": dec, "radius_arcsec": 3600.0}
    submitted = setup.client.post("/api/v1/exports", json={"table": "sources", "cone": cone}, headers=setup.alice)
    assert submitted.status_code == 202, submitted.text
    job = _finished(setup, submitted.json()["id"])
    assert job["status"] == "done", job
    manifest, table = _download(setup, job)
    expected = query_lake(
        setup.settings, f"SELECT * FROM sources WHERE in_cone(ra, dec, {ra!r}, {dec!r}, 3600.0) ORDER BY diaSourceId"
    )
    assert 0 < expected.num_rows < 400 and manifest["rows"] == job["rows"] == expected.num_rows
    assert table.sort_by("diaSourceId").equals(expected)


def test_healpix_night_and_mjd_exports_select_what_sql_selects(setup: Setup) -> None:
    first = query_lake(setup.settings, "SELECT night, hpx29, midpointMjdTai FROM sources ORDER BY diaSourceId LIMIT 1")
    night, hpx29, mjd = (first[c][0].as_py() for c in ("night", "hpx29", "midpointMjdTai"))
    cases = [
        ({"night": night}, f"night = {night}"),
        ({"healpix": f"3/{hpx29 >> 52}"}, f"hpx29 >> 52 = {hpx29 >> 52}"),
        (
            {"mjd": {"start": mjd - 0.5, "end": mjd + 0.5}},
            f"midpointMjdTai >= {mjd - 0.5} AND midpointMjdTai < {mjd + 0.5}",
        ),
    ]
    for selection, where in cases:
        submitted = setup.client.post("/api/v1/exports", json={"table": "sources", **selection}, headers=setup.alice)
        job = _finished(setup, submitted.json()["id"])
        assert job["status"] == "done", job
        _, table = _download(setup, job)
        assert _ids(table) == _ids(query_lake(setup.settings, f"SELECT diaSourceId FROM sources WHERE {where}"))


def test_exports_are_private_and_bad_selections_say_why(setup: Setup) -> None:
    sql = "SELECT diaObjectId, ra, dec FROM objects ORDER BY diaObjectId LIMIT 10"
    submitted = setup.client.post("/api/v1/exports", json={"table": "objects", "sql": sql}, headers=setup.alice)
    job = _finished(setup, submitted.json()["id"])
    assert job["status"] == "done" and job["rows"] == 10
    for path in (f"/api/v1/exports/{job['id']}", f"/api/v1/exports/{job['id']}/files/manifest.json"):
        assert setup.client.get(path, headers=setup.bob).status_code == 404
        assert setup.client.get(path).status_code == 401
    missing = setup.client.get(f"/api/v1/exports/{job['id']}/files/..%2Fsecret", headers=setup.alice)
    assert missing.status_code == 404
    assert setup.client.post("/api/v1/exports", json={"table": "sources", "night": 1}).status_code == 401
    cases = [
        ({"table": "nosuch", "night": 1}, "unknown table 'nosuch'"),
        ({"table": "sources"}, "select exactly one of"),
        ({"table": "sources", "night": 1, "healpix": "3/1"}, "select exactly one of"),
        ({"table": "sources", "healpix": "3/99999"}, "does not exist at order 3"),
        ({"table": "sources", "sql": "SELECT nosuch FROM sources"}, "nosuch"),
        ({"table": "context", "mjd": {"start": 1, "end": 2}}, "has no time column"),
        ({"table": "sources", "mjd": {"start": 2, "end": 1}}, "must end after it starts"),
    ]
    for body, message in cases:
        refused = setup.client.post("/api/v1/exports", json=body, headers=setup.alice)
        assert refused.status_code == 400, (body, refused.text)
        assert message in refused.json()["detail"]
    # The cone's radius is radius_arcsec, as on /api/v1/cone: another name is refused, never dropped.
    for body, field in (
        ({"table": "sources", "cone": {"ra": 1.0, "dec": 2.0, "radius": 5.0}}, ["body", "cone", "radius"]),
        ({"table": "sources", "night": 1, "radius_arcsec": 5.0}, ["body", "radius_arcsec"]),
    ):
        refused = setup.client.post("/api/v1/exports", json=body, headers=setup.alice)
        assert refused.status_code == 422, (body, refused.text)
        extra = [e for e in refused.json()["detail"] if e["type"] == "extra_forbidden"]
        assert [e["loc"] for e in extra] == [field] and extra[0]["msg"] == "Extra inputs are not permitted"
    empty = setup.client.post("/api/v1/exports", json={"table": "sources", "night": 1}, headers=setup.alice)
    failed = _finished(setup, empty.json()["id"])
    assert failed["status"] == "failed" and "selects no rows" in failed["error"]
    assert (
        setup.client.get(f"/api/v1/exports/{failed['id']}/files/manifest.json", headers=setup.alice).status_code == 409
    )
