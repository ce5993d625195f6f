"""Two ``nightjar serve`` processes on one lake (S3) and one metadata database (PostgreSQL), as replicas behind a
proxy run: what is written through one is read through the other, and both answer the same query the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nightjar.api.users import add_user_token
from nightjar.bench.api import wait_until_serving
from nightjar.settings import Settings
from nightjar.streams import broker

from ..waiting import eventually

COUNT = "SELECT count(*) AS n FROM sources"
BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 50000"


def _environment(settings: Settings) -> dict[str, str]:
    options = {k: v.get_secret_value() for k, v in settings.storage_options.items()}
    env = {
        **os.environ,
        "NIGHTJAR_HOME": str(settings.home),
        "NIGHTJAR_LAKE_URI": str(settings.lake_uri),
        "NIGHTJAR_STORAGE_OPTIONS": json.dumps(options),
    }
    if settings.database_url:
        env["NIGHTJAR_DATABASE_URL"] = settings.database_url
    return env


@pytest.fixture
def replicas(s3_settings: Settings, tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Two API processes started with the same settings, each on its own port; a client of each."""
    servers: list[subprocess.Popen[bytes]] = []
    clients: list[httpx.Client] = []
    try:
        for i in range(2):
            port = broker.free_port()
            log = tmp_path / f"serve-{i}.log"
            with open(log, "wb") as out:
                command = [sys.executable, "-m", "nightjar.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
                servers.append(
                    subprocess.Popen(command, env=_environment(s3_settings), stdout=out, stderr=subprocess.STDOUT)
                )
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60))
        for client, server, i in zip(clients, servers, range(2), strict=True):
            try:
                wait_until_serving(client, server, timeout_s=120)
            except RuntimeError as exc:
                pytest.fail(f"{exc}: {(tmp_path / f'serve-{i}.log').read_text()[-2000:]}")
        yield clients[0], clients[1]
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(30)


@pytest.mark.slow
@pytest.mark.timeout(180)  # two API processes started and stopped
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_api_processes_share_the_lake_and_the_metadata(
    s3_settings: Settings, lake_builder, replicas: tuple[httpx.Client, httpx.Client]
) -> None:
    lake_builder(s3_settings.lake, alerts=60, batches=2)
    token = add_user_token(s3_settings, "replicated", role="annotator", topics=("ml",))
    signed = {"Authorization": f"Token {token}"}
    one, two = replicas

    # The same query gives the same answer on both.
    counts = [c.post("/api/v1/query", json={"sql": COUNT}, headers=signed) for c in (one, two)]
    assert [r.status_code for r in counts] == [200, 200], [r.text for r in counts]
    assert [int(r.json()["rows"][0]["n"]) for r in counts] == [60, 60]

    # A filter made through one is listed and read through the other (the metadata database is shared).
    made = one.post("/api/v1/filters", json={"name": "bright", "sql": BRIGHT}, headers=signed)
    assert made.status_code == 201, made.text
    listed = two.get("/api/v1/filters", headers=signed)
    assert listed.status_code == 200, listed.text
    assert [f["name"] for f in listed.json()] == ["bright"]
    assert two.get(f"/api/v1/filters/{made.json()['id']}", headers=signed).json()["sql"] == made.json()["sql"]

    # An annotation written through one (a new snapshot of the S3 lake) is read through the other.
    oid = two.post("/api/v1/query", json={"sql": "SELECT min(diaObjectId) AS o FROM objects"}, headers=signed)
    object_id = str(oid.json()["rows"][0]["o"])
    annotated = one.post(
        "/api/v1/annotations",
        json={"diaObjectId": object_id, "topic": "ml", "classification": "SN Ia", "version": "1"},
        headers=signed,
    )
    assert annotated.status_code == 201, annotated.text
    seen = f"SELECT classification FROM annotations WHERE diaObjectId = {object_id}"

    def read_back() -> bool:
        got = two.post("/api/v1/query", json={"sql": seen}, headers=signed)
        return got.status_code == 200 and [r["classification"] for r in got.json()["rows"]] == ["SN Ia"]

    # A replica sees another's lake writes at its next snapshot check (docs/deploy.md: at most a second).
    assert eventually(read_back, 15.0, every_s=0.25), "the other replica never saw the annotation"
    assert not (Path(s3_settings.home) / "lake").exists()  # both wrote and read the S3 lake only
