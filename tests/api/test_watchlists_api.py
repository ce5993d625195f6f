"""Watchlists and watchmaps over HTTP: who may read, list, change, re-match and delete which list; malformed cones
and areas are 400s naming the problem, and create nothing."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nightjar import paths
from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.settings import Settings

CONES = "RA, Dec, ID, radius\n10.5, -40.2, star-a\n12:30:00 | -05:06:07 | star-b | 3\n359.9999, 89.999, pole\n"


@dataclass
class World:
    client: TestClient
    headers: dict[str, dict[str, str]]
    lists: dict[str, str]  # "private" / "public" -> alice's watchlist id
    maps: dict[str, str]  # "private" / "public" -> alice's watchmap id
    home: Path


def poll_history(client: TestClient, url: str, headers: dict[str, str], timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(url, headers=headers).json()
        if job["status"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    tokens = {
        "owner": add_user_token(settings, "alice"),
        "other": add_user_token(settings, "bob"),
        "admin": add_user_token(settings, "root", role="admin"),
    }
    headers = {"anonymous": {}} | {k: {"Authorization": f"Token {t}"} for k, t in tokens.items()}
    with TestClient(create_app(settings)) as client:
        lists, maps = {}, {}
        for visibility in ("private", "public"):
            made = client.post(
                "/api/v1/watchlists",
                json={"name": visibility, "cones_csv": CONES, "visibility": visibility, "radius_arcsec": 5},
                headers=headers["owner"],
            )
            assert made.status_code == 201, made.text
            lists[visibility] = made.json()["id"]
            area = client.post(
                "/api/v1/watchmaps",
                json={
                    "name": visibility,
                    "circle": {"ra": 10, "dec": -40, "radius_arcsec": 600},
                    "visibility": visibility,
                },
                headers=headers["owner"],
            )
            assert area.status_code == 201, area.text
            maps[visibility] = area.json()["id"]
        yield World(client, headers, lists, maps, Path(settings.home))


CALLERS = ("anonymous", "owner", "other", "admin")


def _expect(private: tuple[int, ...], public: tuple[int, ...]) -> list[tuple[str, str, str, int]]:
    return [
        (kind, c, which, s)
        for kind in ("watchlists", "watchmaps")
        for which, codes in (("private", private), ("public", public))
        for c, s in zip(CALLERS, codes, strict=True)
    ]


#                      anonymous owner other admin
READ = _expect(private=(404, 200, 404, 200), public=(200, 200, 200, 200))
UPDATE = _expect(private=(401, 200, 404, 403), public=(401, 200, 403, 403))
DELETE = _expect(private=(401, 200, 404, 200), public=(401, 200, 403, 200))


def _id(world: World, kind: str, which: str) -> str:
    return (world.lists if kind == "watchlists" else world.maps)[which]


@pytest.mark.parametrize(("kind", "caller", "which", "expected"), READ)
def test_read(world: World, kind: str, caller: str, which: str, expected: int) -> None:
    got = world.client.get(f"/api/v1/{kind}/{_id(world, kind, which)}", headers=world.headers[caller])
    assert got.status_code == expected
    if kind == "watchlists":
        cones = world.client.get(f"/api/v1/{kind}/{_id(world, kind, which)}/cones", headers=world.headers[caller])
        assert cones.status_code == expected
        if expected == 200:
            body = cones.json()
            assert body["total"] == 3 and [c["name"] for c in body["cones"]] == ["star-a", "star-b", "pole"]
            assert [c["radius"] for c in body["cones"]] == [None, 3.0, None]
            assert body["cones"][1]["ra"] == pytest.approx(187.5) and body["cones"][1]["dec"] == pytest.approx(
                -(5 + 6 / 60 + 7 / 3600)
            )


@pytest.mark.parametrize("kind", ["watchlists", "watchmaps"])
@pytest.mark.parametrize("caller", CALLERS)
def test_list_shows_own_and_public(world: World, kind: str, caller: str) -> None:
    listed = world.client.get(f"/api/v1/{kind}", headers=world.headers[caller]).json()
    names = sorted(item["name"] for item in listed)
    assert names == (["private", "public"] if caller in ("owner", "admin") else ["public"])


@pytest.mark.parametrize(("kind", "caller", "which", "expected"), UPDATE)
def test_update_and_rerun(world: World, kind: str, caller: str, which: str, expected: int) -> None:
    url = f"/api/v1/{kind}/{_id(world, kind, which)}"
    got = world.client.patch(url, json={"description": "changed"}, headers=world.headers[caller])
    assert got.status_code == expected
    rerun = world.client.post(f"{url}/rerun", headers=world.headers[caller])
    assert rerun.status_code == (202 if expected == 200 else expected)


@pytest.mark.parametrize(("kind", "caller", "which", "expected"), DELETE)
def test_delete(world: World, kind: str, caller: str, which: str, expected: int) -> None:
    url = f"/api/v1/{kind}/{_id(world, kind, which)}"
    assert world.client.delete(url, headers=world.headers[caller]).status_code == expected
    after = world.client.get(url, headers=world.headers["owner"]).status_code
    assert after == (404 if expected == 200 else 200)


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_history_jobs_report_progress_and_finish(world: World) -> None:
    owner = world.headers["owner"]
    for kind, ids in (("watchlists", world.lists), ("watchmaps", world.maps)):
        job = poll_history(world.client, f"/api/v1/{kind}/{ids['public']}/history", owner)
        assert job["status"] == "done" and job["progress"] == 100.0 and job["hits"] == 0
    edited = world.client.patch(
        f"/api/v1/watchlists/{world.lists['private']}",
        json={"add_csv": "1, 2, extra\n", "remove": ["star-a"], "radius_arcsec": 7},
        headers=owner,
    ).json()
    assert edited["version"] == 2 and edited["cones"] == 3 and edited["radius_arcsec"] == 7
    assert edited["history"]["status"] in ("queued", "running", "done")
    cones = world.client.get(f"/api/v1/watchlists/{world.lists['private']}/cones", headers=owner).json()["cones"]
    assert [(c["coneId"], c["name"]) for c in cones] == [("2", "star-b"), ("3", "pole"), ("4", "extra")]


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_malformed_cones_are_400_naming_each_line_and_create_nothing(world: World) -> None:
    owner = world.headers["owner"]
    bad = "ra,dec,id\n10,20,ok\n400,20,far\n10,-91,low\n10,20\n10,20,wide,5000\n"
    made = world.client.post("/api/v1/watchlists", json={"name": "bad", "cones_csv": bad}, headers=owner)
    assert made.status_code == 400
    assert made.json()["detail"] == (
        "cones_csv: 4 bad line(s), nothing was created:\n"
        "line 3: RA 400 is outside 0..360 degrees\n"
        "line 4: Dec -91 is outside -90..90 degrees\n"
        "line 5: expected 3 or 4 fields (RA, Dec, ID[, radius]), found 2\n"
        "line 6: radius 5000 arcsec is outside (0, 1800]"
    )
    listed = world.client.get("/api/v1/watchlists", headers=owner).json()
    assert sorted(w["name"] for w in listed) == ["private", "public"]
    edit = world.client.patch(
        f"/api/v1/watchlists/{world.lists['private']}", json={"add_csv": "1,2,x\n1,zz,y\n"}, headers=owner
    )
    assert edit.status_code == 400 and "line 2: Dec 'zz' is not a number" in edit.json()["detail"]
    unchanged = world.client.get(f"/api/v1/watchlists/{world.lists['private']}", headers=owner).json()
    assert unchanged["version"] == 1 and unchanged["cones"] == 3
    stored = paths.catalogs_dir(world.home) / paths.WATCH_DIR / paths.WATCHLISTS_DIR
    folders = sorted(p.name for p in stored.iterdir())
    assert folders == sorted([world.lists["private"], world.lists["public"]])


def test_watchmaps_from_real_mocs_and_bad_areas(world: World, data_dir: Path) -> None:
    owner = world.headers["owner"]
    for name, kind in (("mocs/polygon_moc.fits", "moc"), ("skymaps/bayestar.multiorder.fits", "skymap")):
        content = base64.b64encode((data_dir / name).read_bytes()).decode()
        made = world.client.post("/api/v1/watchmaps", json={"name": name, "moc_fits_base64": content}, headers=owner)
        assert made.status_code == 201, made.text
        assert made.json()["kind"] == kind and made.json()["area_sq_deg"] > 0
    not_moc = base64.b64encode((data_dir / "PROVENANCE.md").read_bytes()).decode()
    bad = [
        ({"moc_fits_base64": not_moc}, "not a FITS file"),
        ({"polygon": [[10, 20], [11, 20]]}, "a polygon needs at least 3 vertices"),
        ({}, "give an area"),
        ({"circle": {"ra": 1, "dec": 2, "radius_arcsec": 3}, "polygon": [[1, 2], [2, 3], [3, 1]]}, "give one area"),
    ]
    for body, message in bad:
        got = world.client.post("/api/v1/watchmaps", json={"name": "bad", **body}, headers=owner)
        assert got.status_code == 400 and message in got.json()["detail"], got.text
    assert "bad" not in [m["name"] for m in world.client.get("/api/v1/watchmaps", headers=owner).json()]


def test_lasair_query_reads_watchlist_and_area_hits(settings: Settings, lake_builder) -> None:
    from nightjar.catalogs.watch_files import read_csv_text
    from nightjar.lake import read
    from nightjar.pipelines.watch_history import match_history
    from nightjar.sql import registry, watch_registry

    lake_builder(settings.home, alerts=300, batches=2)
    objects = read.datasets(settings.home)[paths.OBJECTS].to_table(columns=["diaObjectId", "ra", "dec"])
    objects = objects.sort_by("diaObjectId").slice(0, 5)
    csv = "".join(f"{r['ra']!r},{r['dec']!r},target-{i}\n" for i, r in enumerate(objects.to_pylist()))
    db = registry.engine(settings.metadata_url)
    home = Path(settings.home)
    listed = watch_registry.add_watchlist(db, home, "five", read_csv_text(csv), radius_arcsec=1.0, visibility="public")
    from nightjar.catalogs import watchmap

    first = objects.to_pylist()[0]
    spot = watchmap.from_circle(first["ra"], first["dec"], 5.0)
    area = watch_registry.add_watchmap(db, home, "spot", spot, "circle", visibility="public")
    db.dispose()
    match_history(settings, "watchlist", listed.id)
    match_history(settings, "watchmap", area.id)
    with TestClient(create_app(settings)) as client:
        form = {
            "selected": "objects.diaObjectId, watchlist_hits.name, watchlist_hits.arcsec, watchlist_hits.wl_id",
            "tables": f"objects, watchlist:{listed.id}",
            "conditions": "ORDER BY objects.diaObjectId",
            "limit": 1000,
        }
        got = client.post("/lasair/api/query/", data=form)
        assert got.status_code == 200, got.text
        rows = got.json()
        assert {r["diaObjectId"] for r in rows} == {str(i) for i in objects["diaObjectId"].to_pylist()}
        assert {r["name"] for r in rows} == {f"target-{i}" for i in range(5)}
        assert all(r["arcsec"] <= 1.0 and str(r["wl_id"]) == str(listed.id) for r in rows)
        inside = client.post(
            "/lasair/api/query/",
            data={"selected": "DISTINCT objects.diaObjectId", "tables": f"objects, area:{area.id}", "limit": 10},
        ).json()
        assert [r["diaObjectId"] for r in inside] == [str(first["diaObjectId"])]
        other = client.post(
            "/lasair/api/query/", data={"selected": "objects.diaObjectId", "tables": "objects, watchlist:12345"}
        ).json()
        assert other == []
        bad = client.post("/lasair/api/query/", data={"selected": "*", "tables": "objects, watchlist:x"})
        assert bad.status_code == 400 and "watchlist:ID" in bad.text


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_hits_of_private_lists_are_their_owners_alone(settings: Settings, lake_builder) -> None:
    from nightjar.catalogs.watch_files import read_csv_text
    from nightjar.lake import read
    from nightjar.pipelines.watch_history import match_history
    from nightjar.sql import registry, watch_registry

    tokens = {name: add_user_token(settings, name) for name in ("alice", "bob")}
    tokens["root"] = add_user_token(settings, "root", role="admin")
    lake_builder(settings.home, alerts=200, batches=1)
    objects = read.datasets(settings.home)[paths.OBJECTS].to_table(columns=["ra", "dec"]).slice(0, 3)
    csv = "".join(f"{r['ra']!r},{r['dec']!r},t{i}\n" for i, r in enumerate(objects.to_pylist()))
    db = registry.engine(settings.metadata_url)
    home = Path(settings.home)
    ids = {}
    for visibility in ("private", "public", "group"):
        made = watch_registry.add_watchlist(
            db, home, visibility, read_csv_text(csv), owner="alice", radius_arcsec=1.0, visibility=visibility
        )
        match_history(settings, "watchlist", made.id)
        ids[visibility] = made.id
    db.dispose()
    sql = "SELECT DISTINCT watchlistId FROM watchlist_hits ORDER BY watchlistId"
    expect = {
        "alice": sorted(ids.values()),
        "root": sorted(ids.values()),
        "bob": [ids["public"]],
        None: [ids["public"]],
    }
    with TestClient(create_app(settings)) as client:
        for who, seen in expect.items():
            headers = {"Authorization": f"Token {tokens[who]}"} if who else {}
            got = client.post("/api/v1/query", json={"sql": sql}, headers=headers)
            assert got.status_code == 200, got.text
            assert [int(r["watchlistId"]) for r in got.json()["rows"]] == seen, who
            lasair = client.post(
                "/lasair/api/query/",
                data={"selected": "DISTINCT objects.diaObjectId", "tables": f"objects, watchlist:{ids['private']}"},
                headers=headers,
            ).json()
            assert len(lasair) == (3 if who in ("alice", "root") else 0), who
        job = client.post("/api/v1/jobs", json={"sql": sql}, headers={"Authorization": f"Token {tokens['bob']}"})
        assert job.status_code == 202
        url = f"/api/v1/jobs/{job.json()['id']}"
        bob = {"Authorization": f"Token {tokens['bob']}"}
        state = poll_history(client, url, bob)
        assert state["status"] == "done" and state["rows"] == 1
