"""Filters over HTTP: who may read, list, change, delete and copy which filter; validation messages; versions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.settings import Settings

BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 50000"


@dataclass
class World:
    client: TestClient
    headers: dict[str, dict[str, str]]  # caller -> request headers
    ids: dict[str, str]  # "private" / "public" -> alice's filter id


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    tokens = {
        "owner": add_user_token(settings, "alice"),
        "other": add_user_token(settings, "bob"),
        "power": add_user_token(settings, "pat", role="power"),
        "annotator": add_user_token(settings, "ann", role="annotator", topics=("ml",)),
        "admin": add_user_token(settings, "root", role="admin"),
    }
    headers = {"anonymous": {}} | {k: {"Authorization": f"Token {t}"} for k, t in tokens.items()}
    with TestClient(create_app(settings)) as client:
        ids = {}
        for visibility in ("private", "public"):
            made = client.post(
                "/api/v1/filters",
                json={
                    "name": visibility,
                    "sql": BRIGHT,
                    "visibility": visibility,
                    "emails": ["alice@example.org"],
                    "webhooks": ["https://example.org/hook"],
                },
                headers=headers["owner"],
            )
            assert made.status_code == 201, made.text
            ids[visibility] = made.json()["id"]
        yield World(client, headers, ids)


CALLERS = ("anonymous", "owner", "other", "power", "annotator", "admin")


def _expect(private: tuple[int, ...], public: tuple[int, ...]) -> list[tuple[str, str, int]]:
    return [(c, "private", s) for c, s in zip(CALLERS, private, strict=True)] + [
        (c, "public", s) for c, s in zip(CALLERS, public, strict=True)
    ]


#                      anonymous owner other power annotator admin
READ = _expect(private=(404, 200, 404, 404, 404, 200), public=(200, 200, 200, 200, 200, 200))
UPDATE = _expect(private=(401, 200, 404, 404, 404, 403), public=(401, 200, 403, 403, 403, 403))
DELETE = _expect(private=(401, 200, 404, 404, 404, 200), public=(401, 200, 403, 403, 403, 200))
COPY = _expect(private=(401, 201, 404, 404, 404, 403), public=(401, 201, 201, 201, 201, 201))


@pytest.mark.parametrize(("caller", "which", "expected"), READ)
def test_read(world: World, caller: str, which: str, expected: int) -> None:
    response = world.client.get(f"/api/v1/filters/{world.ids[which]}", headers=world.headers[caller])
    assert response.status_code == expected, response.text
    if expected == 404:
        assert response.json()["detail"] == f"no filter {world.ids[which]}"  # the same as for a missing filter
    else:
        body = response.json()
        assert body["sql"] == BRIGHT and body["outputs"]["topic"] == f"nightjar.filter.{world.ids[which]}"
        # E-mail addresses and webhooks are the owner's business only.
        shown = caller == "owner"
        assert (body["outputs"]["emails"] == ["alice@example.org"]) is shown
        assert (body["outputs"]["webhooks"] == ["https://example.org/hook"]) is shown


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
@pytest.mark.parametrize("caller", CALLERS)
def test_list_shows_own_and_public_filters(world: World, caller: str) -> None:
    add = world.client.post("/api/v1/filters", json={"name": "x", "sql": BRIGHT}, headers=world.headers[caller])
    response = world.client.get("/api/v1/filters", headers=world.headers[caller])
    assert response.status_code == 200
    names = {(f["owner"], f["name"]) for f in response.json()}
    assert ("alice", "public") in names
    assert (("alice", "private") in names) is (caller in ("owner", "admin"))
    if caller != "anonymous":
        assert add.status_code == 201 and (add.json()["owner"], "x") in names
    else:
        assert add.status_code == 401


@pytest.mark.parametrize(("caller", "which", "expected"), UPDATE)
def test_update(world: World, caller: str, which: str, expected: int) -> None:
    fid = world.ids[which]
    new_sql = BRIGHT.replace("50000", "90000")
    response = world.client.patch(f"/api/v1/filters/{fid}", json={"sql": new_sql}, headers=world.headers[caller])
    assert response.status_code == expected, response.text
    stored = world.client.get(f"/api/v1/filters/{fid}", headers=world.headers["owner"]).json()
    if expected == 200:
        assert stored["version"] == 2 and stored["sql"] == new_sql
        assert [v["version"] for v in stored["versions"]] == [1, 2] and stored["versions"][0]["sql"] == BRIGHT
    else:
        assert stored["version"] == 1 and stored["sql"] == BRIGHT
    if expected == 403:
        assert "only its owner (alice)" in response.json()["detail"]


@pytest.mark.parametrize(("caller", "which", "expected"), DELETE)
def test_delete(world: World, caller: str, which: str, expected: int) -> None:
    fid = world.ids[which]
    response = world.client.delete(f"/api/v1/filters/{fid}", headers=world.headers[caller])
    assert response.status_code == expected, response.text
    after = world.client.get(f"/api/v1/filters/{fid}", headers=world.headers["owner"]).status_code
    assert after == (404 if expected == 200 else 200)


@pytest.mark.parametrize(("caller", "which", "expected"), COPY)
def test_copy(world: World, caller: str, which: str, expected: int) -> None:
    fid = world.ids[which]
    response = world.client.post(f"/api/v1/filters/{fid}/copy", json={}, headers=world.headers[caller])
    assert response.status_code == expected, response.text
    if expected == 201:
        copy = response.json()
        assert copy["copied_from"] == fid and copy["id"] != fid and copy["visibility"] == "private"
        assert copy["sql"] == BRIGHT and copy["outputs"]["topic"] == f"nightjar.filter.{copy['id']}"
        assert copy["outputs"]["emails"] == []  # outputs are not copied


def test_bad_tokens_are_401_even_for_public_reads(world: World) -> None:
    for header in ("Token nj_nobody", "Basic abc", "Bearer "):
        response = world.client.get(f"/api/v1/filters/{world.ids['public']}", headers={"Authorization": header})
        assert response.status_code == 401, header


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_bad_sql_and_bad_options_are_400_or_422_with_the_reason(world: World) -> None:
    owner = world.headers["owner"]
    post = world.client.post
    bad_column = post("/api/v1/filters", json={"name": "b", "sql": "SELECT nosuch FROM sources"}, headers=owner)
    assert bad_column.status_code == 400 and "nosuch" in bad_column.json()["detail"]
    not_select = post("/api/v1/filters", json={"name": "b", "sql": "DROP TABLE sources"}, headers=owner)
    assert not_select.status_code == 400 and "SELECT" in not_select.json()["detail"]
    bad_mail = post("/api/v1/filters", json={"name": "b", "sql": BRIGHT, "emails": ["nope"]}, headers=owner)
    assert bad_mail.status_code == 400 and "not an e-mail address" in bad_mail.json()["detail"]
    bad_hook = post("/api/v1/filters", json={"name": "b", "sql": BRIGHT, "webhooks": ["ftp://x"]}, headers=owner)
    assert bad_hook.status_code == 400 and "http:// or https://" in bad_hook.json()["detail"]
    bad_vis = post("/api/v1/filters", json={"name": "b", "sql": BRIGHT, "visibility": "world"}, headers=owner)
    assert bad_vis.status_code == 422 and "visibility" in bad_vis.text
    again = post("/api/v1/filters", json={"name": "private", "sql": BRIGHT}, headers=owner)
    assert again.status_code == 409 and f"PATCH /api/v1/filters/{world.ids['private']}" in again.json()["detail"]
    edit = world.client.patch(f"/api/v1/filters/{world.ids['private']}", json={"sql": "SELECT"}, headers=owner)
    assert edit.status_code == 400
    assert world.client.get("/api/v1/filters/999999", headers=owner).status_code == 404


WATCHED = "SELECT o.diaObjectId, w.coneName FROM objects o JOIN watchlist_hits w USING (diaObjectId)"
IN_AREA = "SELECT a.diaObjectId, a.watchmapId FROM area_hits a"


def test_filters_reading_the_watch_views_are_saved_without_warnings(world: World) -> None:
    owner = world.headers["owner"]
    made = world.client.post("/api/v1/filters", json={"name": "watched", "sql": WATCHED}, headers=owner)
    assert made.status_code == 201, made.text
    assert made.json()["warnings"] == []
    edited = world.client.patch(f"/api/v1/filters/{made.json()['id']}", json={"sql": IN_AREA}, headers=owner)
    assert edited.status_code == 200 and edited.json()["version"] == 2
    assert edited.json()["warnings"] == []


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_copies_get_free_names_and_renames_keep_the_topic(world: World) -> None:
    bob = world.headers["other"]
    first = world.client.post(f"/api/v1/filters/{world.ids['public']}/copy", headers=bob).json()
    second = world.client.post(f"/api/v1/filters/{world.ids['public']}/copy", headers=bob).json()
    assert (first["name"], second["name"]) == ("public (copy)", "public (copy) (2)")
    renamed = world.client.patch(f"/api/v1/filters/{first['id']}", json={"name": "mine", "mode": "new"}, headers=bob)
    body = renamed.json()
    assert body["name"] == "mine" and body["mode"] == "new" and body["version"] == 2
    assert body["outputs"]["topic"] == first["outputs"]["topic"]
    assert body["health"] == {"active": True, "failures": 0, "last_error": None}
