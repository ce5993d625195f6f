"""The data resources of the HTTP API: cone, objects, light curves, cutouts and context, against direct reads."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from fastapi.testclient import TestClient
from PIL import Image

from nightjar import paths
from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.catalogs.report import context_report
from nightjar.lake import read

from .conftest import HOSTED, DataLake


@pytest.fixture(scope="module")
def client(data_lake: DataLake) -> TestClient:
    return TestClient(create_app(data_lake.settings))


def _table(lake: DataLake, table: str, object_id: int | None = None) -> list[dict]:
    """Rows of a lake table by a full scan (no pruning), optionally of one object."""
    dataset = read.datasets(lake.settings.home)[table]
    where = None if object_id is None else ds.field("diaObjectId") == object_id
    return dataset.to_table(filter=where).to_pylist()


def _separations(lake: DataLake, ra: float, dec: float) -> dict[str, float]:
    """Every object's distance from (ra, dec) in arcsec, with astropy."""
    objects = lake.objects
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    points = SkyCoord(objects["ra"].to_numpy() * u.deg, objects["dec"].to_numpy() * u.deg)
    sep = centre.separation(points).arcsec
    return {str(i): float(s) for i, s in zip(objects["diaObjectId"].to_pylist(), sep, strict=True)}


def test_cone_finds_exactly_the_objects_astropy_finds(data_lake: DataLake, client: TestClient) -> None:
    rng = np.random.default_rng(3)
    ra0, dec0 = data_lake.objects["ra"][10].as_py(), data_lake.objects["dec"][10].as_py()
    # Around an object, at radii that take in none, one or several neighbours, and at random places.
    centres = [(ra0, dec0, r) for r in (0.5, 5.0, 1000.0)] + [
        (float(rng.uniform(0, 360)), float(rng.uniform(-60, 30)), 1000.0) for _ in range(3)
    ]
    for ra, dec, radius in centres:
        expected = {k: v for k, v in _separations(data_lake, ra, dec).items() if v <= radius}
        body = client.get("/api/v1/cone", params={"ra": ra, "dec": dec, "radius_arcsec": radius}).json()
        assert body["radius_arcsec"] == radius
        got = {o["diaObjectId"]: o["separation"] for o in body["objects"]}
        assert got.keys() == expected.keys() and body["count"] == len(expected)
        assert all(abs(got[k] - expected[k]) < 1e-3 for k in got)
        assert [o["separation"] for o in body["objects"]] == sorted(got.values())
        nearest = client.get("/api/v1/cone", params={"ra": ra, "dec": dec, "radius_arcsec": radius, "mode": "nearest"})
        assert nearest.json()["objects"] == body["objects"][:1]
        count = client.get(
            "/api/v1/cone", params={"ra": ra, "dec": dec, "radius_arcsec": radius, "mode": "count"}
        ).json()
        assert (count["count"], count["objects"]) == (len(expected), [])
    assert any(len(_separations(data_lake, ra, dec)) for ra, dec, _ in centres)


def test_cone_parameters_are_checked_with_messages(client: TestClient) -> None:
    cases = [
        ({"ra": 10, "dec": 0, "radius_arcsec": 1001}, "less than or equal to 1000"),
        ({"ra": 10, "dec": 0, "radius_arcsec": 0}, "greater than 0"),
        ({"ra": 400, "dec": 0}, "less than or equal to 360"),
        ({"ra": 10, "dec": -91}, "greater than or equal to -90"),
        ({"dec": 0}, "Field required"),
        ({"ra": "north", "dec": 0}, "valid number"),
        ({"ra": 10, "dec": 0, "mode": "some"}, "'nearest', 'all' or 'count'"),
    ]
    for params, message in cases:
        response = client.get("/api/v1/cone", params=params)
        assert response.status_code == 422, params
        assert message in response.json()["detail"][0]["msg"], (params, response.json())
    # The radius has one name, as in exports and in_cone(); another is refused, not replaced by the default.
    misspelt = client.get("/api/v1/cone", params={"ra": 10, "dec": 0, "radius": 3})
    assert misspelt.status_code == 400
    assert misspelt.json()["detail"] == (
        "unknown query parameter(s): radius; /api/v1/cone takes: dec, mode, ra, radius_arcsec, token"
    )


def test_an_object_with_its_light_curve_context_annotations_and_cutouts(
    data_lake: DataLake, client: TestClient
) -> None:
    object_id = data_lake.annotated
    body = client.get(f"/api/v1/objects/{object_id}").json()
    row = _table(data_lake, paths.OBJECTS, object_id)[0]
    assert body["diaObjectId"] == str(object_id) and body["object"]["diaObjectId"] == str(object_id)
    assert body["object"]["nSources"] == row["nSources"] and body["object"]["ra"] == row["ra"]

    sources = sorted(_table(data_lake, paths.SOURCES, object_id), key=lambda r: r["midpointMjdTai"])
    detections = body["lightcurve"]["detections"]
    assert [d["diaSourceId"] for d in detections] == [str(s["diaSourceId"]) for s in sources]
    assert [d["psfFlux"] for d in detections] == [s["psfFlux"] for s in sources]
    assert [d["band"] for d in detections] == [s["band"] for s in sources]
    forced = sorted(_table(data_lake, paths.FORCED_SOURCES, object_id), key=lambda r: r["midpointMjdTai"])
    assert [f["diaForcedSourceId"] for f in body["lightcurve"]["forced"]] == [
        str(f["diaForcedSourceId"]) for f in forced
    ]

    assert [a["classification"] for a in body["annotations"]] == ["SN", "SN Ia"]  # oldest first
    assert body["annotations"][0]["annotationId"] == "1"
    context = body["context"]
    assert context["classification"] == "ORPHAN" and context["matches"] == []

    latest = str(row["lastDiaSourceId"])
    assert body["cutouts"]["diaSourceId"] == latest
    fits_url = body["cutouts"]["difference"]["fits"]
    assert fits_url.endswith(f"/api/v1/cutouts/{latest}/difference?format=fits")
    stored = _table(data_lake, paths.CUTOUTS)
    difference = next(c["cutoutDifference"] for c in stored if str(c["diaSourceId"]) == latest)
    assert client.get(fits_url).content == difference


def test_unknown_and_malformed_object_ids(client: TestClient) -> None:
    missing = client.get("/api/v1/objects/12345")
    assert missing.status_code == 404 and missing.json()["detail"] == "no object 12345 in the lake"
    for bad in ("abc", "1.5", "-3", str(2**63)):
        assert client.get(f"/api/v1/objects/{bad}").status_code == 422, bad


def test_a_hosted_object_carries_its_ranked_matches(data_lake: DataLake, client: TestClient) -> None:
    object_id = int(data_lake.objects["diaObjectId"][0].as_py())
    body = client.get(f"/api/v1/context/objects/{object_id}").json()
    expected = data_lake.context.context.filter(pc.equal(data_lake.context.context["diaObjectId"], object_id))
    assert body["classification"] == expected["classification"][0].as_py() != "ORPHAN"
    assert body["catalogue_object_id"] == "G0" and body["catalogue_table_name"] == "hosts"
    assert body["separationArcsec"] == pytest.approx(1.5, abs=0.01)
    assert [m["rank"] for m in body["matches"]] == list(range(1, len(body["matches"]) + 1))
    assert body["matches"][0]["catalogue_object_id"] == "G0"
    assert client.get(f"/api/v1/objects/{object_id}").json()["context"] == body
    assert client.get("/api/v1/context/objects/12345").json()["detail"] == "no object 12345 in the lake"


def test_live_context_of_a_position(data_lake: DataLake, client: TestClient) -> None:
    row = data_lake.objects.slice(1, 1).to_pylist()[0]
    body = client.get("/api/v1/context/position", params={"ra": row["ra"], "dec": row["dec"]}).json()
    assert body == context_report(data_lake.settings, row["ra"], row["dec"], None)
    assert body["matches"][0]["catalogue_object_id"] == "G1"
    unknown = client.get("/api/v1/context/position", params={"ra": 1, "dec": 1, "catalog": "nosuch"})
    assert unknown.status_code == 400 and "no such catalogue: nosuch" in unknown.json()["detail"]


def test_light_curves_of_many_objects(data_lake: DataLake, client: TestClient) -> None:
    ids = data_lake.objects["diaObjectId"].to_pylist()[: HOSTED + 4]
    body = client.post("/api/v1/lightcurves", json={"diaObjectIds": [str(i) for i in ids] + ["12345"]}).json()
    assert [c["diaObjectId"] for c in body["lightcurves"]] == [str(i) for i in ids]
    assert body["missing"] == ["12345"]
    for curve in body["lightcurves"]:
        sources = _table(data_lake, paths.SOURCES, int(curve["diaObjectId"]))
        assert sorted(d["diaSourceId"] for d in curve["detections"]) == sorted(str(s["diaSourceId"]) for s in sources)
        assert len(curve["forced"]) == len(_table(data_lake, paths.FORCED_SOURCES, int(curve["diaObjectId"])))
    floats = client.post("/api/v1/lightcurves", json={"diaObjectIds": [float(i) for i in ids[:2]]})
    assert floats.status_code == 422 and "integer or a string of digits" in floats.text
    lean = client.post("/api/v1/lightcurves", json={"diaObjectIds": ids[:2], "forced": False}).json()
    assert all(c["forced"] == [] for c in lean["lightcurves"])
    assert client.post("/api/v1/lightcurves", json={"diaObjectIds": []}).status_code == 422


def test_anonymous_callers_get_fewer_light_curves_per_call(data_lake: DataLake, client: TestClient) -> None:
    many = list(range(1, 1002))
    refused = client.post("/api/v1/lightcurves", json={"diaObjectIds": many})
    assert refused.status_code == 400
    assert refused.json()["detail"] == "at most 1000 objects per call for the anonymous role, not 1001"
    token = add_user_token(data_lake.settings, "curves")
    allowed = client.post(
        "/api/v1/lightcurves", json={"diaObjectIds": many}, headers={"Authorization": f"Token {token}"}
    )
    assert allowed.status_code == 200 and len(allowed.json()["missing"]) == 1001


def test_cutouts_round_trip_as_fits_and_render_as_png(data_lake: DataLake, client: TestClient) -> None:
    stored = _table(data_lake, paths.CUTOUTS)[5]
    source = stored["diaSourceId"]
    for kind, column in (
        ("science", "cutoutScience"),
        ("template", "cutoutTemplate"),
        ("difference", "cutoutDifference"),
    ):
        response = client.get(f"/api/v1/cutouts/{source}/{kind}")
        assert response.headers["content-type"] == "application/fits" and response.content == stored[column]
        with fits.open(io.BytesIO(response.content)) as got, fits.open(io.BytesIO(stored[column])) as want:
            np.testing.assert_array_equal(got[0].data, want[0].data)
        shape = fits.getdata(io.BytesIO(stored[column])).shape
        png = client.get(f"/api/v1/cutouts/{source}/{kind}", params={"format": "png", "scale": 3})
        assert png.headers["content-type"] == "image/png"
        picture = Image.open(io.BytesIO(png.content))
        assert picture.format == "PNG" and picture.size == (shape[1] * 3, shape[0] * 3) and picture.mode == "L"
        assert len(np.unique(np.asarray(picture))) > 10, "a stretched stamp uses many grey levels"
    missing = client.get("/api/v1/cutouts/12345/science")
    assert missing.status_code == 404 and missing.json()["detail"] == "no cutouts for diaSourceId 12345 in the lake"
    assert client.get(f"/api/v1/cutouts/{source}/raw").status_code == 422
    assert client.get(f"/api/v1/cutouts/{source}/science", params={"format": "jpeg"}).status_code == 422


def test_every_data_route_is_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/v1/cone", "/api/v1/objects/{diaObjectId}", "/api/v1/lightcurves", "/lasair/api/cone/"):
        for operation in spec["paths"][path].values():
            assert operation["summary"] and operation["description"], path
    radius = next(p for p in spec["paths"]["/api/v1/cone"]["get"]["parameters"] if p["name"] == "radius_arcsec")
    assert radius["schema"]["maximum"] == 1000 and radius["schema"]["exclusiveMinimum"] == 0
