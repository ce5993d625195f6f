"""The Lasair-compatible endpoints, called by Lasair's own Python client against a real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient
from lasair import LasairError, lasair_client

from nightjar import paths
from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.lake import read
from nightjar.pipelines import lake_write, stages
from nightjar.settings import Settings
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.files import read_payloads

from .conftest import DataLake
from .server import serving


@contextmanager
def lasair_endpoint(settings: Settings) -> Iterator[str]:
    """A server of the home of ``settings``; its Lasair endpoint."""
    with serving(settings) as base:
        yield f"{base}/lasair/api"


@pytest.fixture(scope="module")
def endpoint(data_lake: DataLake) -> Iterator[str]:
    """The Lasair endpoint of a server of the data lake."""
    with lasair_endpoint(data_lake.settings) as url:
        yield url


@pytest.fixture(scope="module")
def lasair(data_lake: DataLake, endpoint: str) -> lasair_client:
    return lasair_client(add_user_token(data_lake.settings, "lasair-user"), endpoint=endpoint)


def test_cone_answers_in_lasairs_three_shapes(data_lake: DataLake, lasair: lasair_client) -> None:
    row = data_lake.objects.slice(3, 1).to_pylist()[0]
    everything = lasair.cone(row["ra"], row["dec"], radius=2.0, requestType="all")
    assert everything["count"] == 1 and everything["objects"][0]["object"] == str(row["diaObjectId"])
    assert everything["nearest"] == everything["objects"][0] and everything["nearest"]["separation"] < 1e-6
    assert lasair.cone(row["ra"], row["dec"], radius=2.0, requestType="nearest") == {"nearest": everything["nearest"]}
    assert lasair.cone(row["ra"], row["dec"], radius=2.0, requestType="count") == {"count": 1}
    assert lasair.cone(0.0, -89.0, radius=2.0, requestType="nearest") == {}
    with pytest.raises(LasairError, match="Max radius is 1000 arcsec"):
        lasair.cone(row["ra"], row["dec"], radius=1001)
    with pytest.raises(LasairError, match="dec must be between -90 and 90"):
        lasair.cone(10.0, 95.0)


def test_query_builds_lasairs_select_and_runs_it_in_the_sandbox(data_lake: DataLake, lasair: lasair_client) -> None:
    rows = lasair.query(
        "objects.diaObjectId, objects.nSources, sherlock_classifications.classification",
        "objects, sherlock_classifications",
        "sherlock_classifications.classification != 'ORPHAN' ORDER BY objects.diaObjectId",
        limit=100,
    )
    hosted = data_lake.context.context.filter(pc.not_equal(data_lake.context.context["classification"], "ORPHAN"))
    assert [r["diaObjectId"] for r in rows] == sorted(str(i) for i in hosted["diaObjectId"].to_pylist())
    assert {r["classification"] for r in rows} == set(hosted["classification"].to_pylist())
    everything = read.datasets(data_lake.settings.home)[paths.OBJECTS].count_rows()
    assert len(lasair.query("diaObjectId", "objects", "", limit=10, offset=everything - 3)) == 3
    ordered = lasair.query("diaObjectId", "objects", "ORDER BY diaObjectId DESC", limit=2)
    assert [r["diaObjectId"] for r in ordered] == sorted(map(str, data_lake.objects["diaObjectId"].to_pylist()))[:-3:-1]
    annotated = lasair.query("objects.diaObjectId, fastfinder.classification", "objects, annotator:fastfinder", "")
    assert {r["diaObjectId"] for r in annotated} == {str(data_lake.annotated)} and len(annotated) == 2


def test_hostile_or_broken_queries_are_clear_400s(lasair: lasair_client) -> None:
    cases = [
        (("diaObjectId", "objects", "1=1; DROP TABLE objects"), "Cannot use ; in the WHERE clause"),
        (("diaObjectId", "objects", "nosuch > 1"), "nosuch"),
        (("*", "objects, secrets", ""), "unknown table 'secrets'"),
        (("", "objects", ""), "SELECT expression cannot be blank"),
        (("diaObjectId", "objects", "1=1 LIMIT 5"), "Dont put LIMIT or OFFSET"),
        (("*", "objects", "diaObjectId IN (SELECT 1 FROM read_csv('/etc/passwd'))"), "read_csv() is not available"),
        (("* FROM read_csv('/etc/passwd') --", "objects", ""), "syntax error"),
    ]
    for (selected, tables, conditions), message in cases:
        with pytest.raises(LasairError) as caught:
            lasair.query(selected, tables, conditions)
        assert "Bad Request" in caught.value.message and message in caught.value.message, caught.value.message


def test_lasair_lsst_object_columns_answer_as_nightjars(data_lake: DataLake, lasair: lasair_client) -> None:
    lasair_names = lasair.query(
        "objects.diaObjectId, decl, g_psfFlux, r_latestMJD, ngSources, nrSources, medianR",
        "objects",
        "ngSources > 0 AND objects.decl > -90 ORDER BY decl",
        limit=1000,
    )
    nightjar_names = lasair.query(
        "objects.diaObjectId, dec, g_latestFlux, r_latestMjd, g_nSources, r_nSources, medianReliability",
        "objects",
        "g_nSources > 0 AND objects.dec > -90 ORDER BY dec",
        limit=1000,
    )
    assert lasair_names and [list(r.values()) for r in lasair_names] == [list(r.values()) for r in nightjar_names]
    assert {"decl", "g_psfFlux", "ngSources", "nrSources", "medianR"} <= set(lasair_names[0])
    stored = {r["diaObjectId"]: r for r in data_lake.objects.to_pylist()}
    for row in lasair_names:
        assert row["decl"] == stored[int(row["diaObjectId"])]["dec"]
        assert row["g_psfFlux"] == pytest.approx(stored[int(row["diaObjectId"])]["g_latestFlux"])


def test_lasair_lsst_columns_nightjar_lacks_are_named_in_a_400(lasair: lasair_client) -> None:
    for selected, conditions, named in [
        ("diaObjectId, pmRa", "", "pmRa"),
        ("diaObjectId", "objects.tns_name IS NOT NULL AND nearbyObj1 > 0", "nearbyObj1, tns_name"),
    ]:
        with pytest.raises(LasairError) as caught:
            lasair.query(selected, "objects", conditions)
        message = caught.value.message
        assert "Bad Request" in message
        assert f"Nightjar does not have the Lasair-LSST objects column(s) {named} (yet)" in message


def test_lasair_lsst_feature_columns_answer(data_lake: DataLake, lasair: lasair_client) -> None:
    names = [
        *("nSourcesGood", "nPosDiaSources", "nPosDiaSourcesNights", "glat", "ebv", "jump1", "jump2"),
        *("absMag", "absMagMJD", "latestPairMJD", "latestPairColourMag", "latestPairColourBands"),
        *("latestPairColourTemp", "penultimatePairMJD", "penultimatePairColourMag", "penultimatePairColourBands"),
        *("penultimatePairColourTemp", "BBBRiseRate", "BBBFallRate", "BBBTemp", "BBBPeakFlux", "BBBPeakMJD"),
        "BBBPeakAbsMag",
    ]
    rows = lasair.query(
        "objects.diaObjectId, " + ", ".join(names), "objects", "objects.glat > -90 AND ebv >= 0", limit=1000
    )
    stored = {r["diaObjectId"]: r for r in data_lake.objects.to_pylist()}
    assert len(rows) == len(stored)
    for row in rows:
        mine = stored[int(row["diaObjectId"])]
        for name in names:
            assert row[name] == (pytest.approx(mine[name]) if isinstance(mine[name], float) else mine[name]), name
    assert any(row["nPosDiaSources"] for row in rows)


def test_query_rows_are_capped_by_role(data_lake: DataLake, endpoint: str) -> None:
    limits = {**data_lake.settings.role_max_rows, "anonymous": 5}
    app = create_app(data_lake.settings.model_copy(update={"role_max_rows": limits}))
    client = TestClient(app)
    form = {"selected": "diaObjectId", "tables": "objects", "conditions": "", "limit": 50}
    assert len(client.post("/lasair/api/query/", data=form).json()) == 5
    beyond = client.post("/lasair/api/query/", data={**form, "offset": 5})
    assert beyond.status_code == 400 and "rows beyond 5" in beyond.json()["error"]
    token = add_user_token(data_lake.settings, "capped-user")
    signed = client.post("/lasair/api/query/", data=form, headers={"Authorization": f"Token {token}"})
    assert len(signed.json()) == 50
    # GET with query parameters answers the same.
    assert len(client.get("/lasair/api/query/", params={**form, "limit": 3}).json()) == 3


def test_object_answers_with_lasairs_keys(data_lake: DataLake, lasair: lasair_client) -> None:
    object_id = data_lake.annotated
    full = lasair.object(object_id, lite=False)
    assert set(full) == {"diaObjectId", "diaObject", "lasairData", "diaSourcesList", "diaForcedSourcesList"}
    sources = read.datasets(data_lake.settings.home)[paths.SOURCES].to_table().to_pylist()
    mine = sorted((s for s in sources if s["diaObjectId"] == object_id), key=lambda s: s["midpointMjdTai"])
    assert [s["diaSourceId"] for s in full["diaSourcesList"]] == [str(s["diaSourceId"]) for s in mine]
    assert full["diaSourcesList"][0]["visit"] == mine[0]["visit"]  # the full rows
    assert full["diaObject"]["decl"] == full["diaObject"]["dec"]
    assert [a["classification"] for a in full["lasairData"]["annotations"]] == ["SN", "SN Ia"]
    assert full["lasairData"]["sherlock"]["classification"] == "ORPHAN"
    image = full["lasairData"]["imageUrls"][0]
    assert image["diaSourceId"] == str(mine[0]["diaSourceId"])
    assert httpx.get(image["Science"]).headers["content-type"] == "application/fits"
    lite = lasair.object(object_id, lite=True, lasair_added=False)
    assert set(lite) == {"diaObjectId", "diaSourcesList", "diaForcedSourcesList"}
    assert "visit" not in lite["diaSourcesList"][0]
    with pytest.raises(LasairError, match="404"):
        lasair.object(12345)


def test_sherlock_object_and_position(data_lake: DataLake, lasair: lasair_client) -> None:
    hosted = data_lake.objects.slice(0, 1).to_pylist()[0]
    name = str(hosted["diaObjectId"])
    answer = lasair.sherlock_object(hosted["diaObjectId"], lite=False)
    classification, description = answer["classifications"][name]
    assert classification != "ORPHAN" and "G0" in description
    top = answer["crossmatches"][0]
    assert (top["transient_object_id"], top["rank"], top["catalogue_object_id"]) == (name, 1, "G0")
    assert top["separationArcsec"] == pytest.approx(1.5, abs=0.01)

    position = lasair.sherlock_position(hosted["ra"], hosted["dec"], lite=True)
    assert position["classifications"]["query0"][0] == classification
    assert [m["catalogue_object_id"] for m in position["crossmatches"]] == ["G0"]
    with pytest.raises(LasairError, match="404"):
        lasair.sherlock_object(12345)


def test_a_bad_token_is_unauthorized(endpoint: str) -> None:
    with pytest.raises(LasairError, match="Unauthorized"):
        lasair_client("nj_not-a-token", endpoint=endpoint).cone(10.0, 10.0)


@pytest.mark.parametrize("value", ["object_float", True, "١٢"])
def test_lasair_ids_are_integers_not_floats(data_lake: DataLake, value: object) -> None:
    client = TestClient(create_app(data_lake.settings))
    oid = data_lake.objects["diaObjectId"].to_pylist()[0]
    sent = float(oid) if value == "object_float" else value
    response = client.post("/lasair/api/object/", json={"objectId": sent})
    assert response.status_code == 400, response.text
    assert "A valid integer is required" in response.text


ZTF_FOLDERS = ["ztf-avro-alert-samples", "boom-2024-v4.02", "pittgoogle-2021-v3.3"]


@dataclass
class ZtfLake:
    settings: Settings
    endpoint: str
    objects: pa.Table  # the stored objects
    annotator: lasair_client  # may annotate topic "ztfclass"


@pytest.fixture(scope="module")
def ztf_lake(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[ZtfLake]:
    """A lake of real ZTF alerts, served; an annotator's Lasair client."""
    home = tmp_path_factory.mktemp("ztf-lake")
    unlimited = {"anonymous": 0, "user": 0, "annotator": 0, "power": 0, "admin": 0}
    settings = Settings(home=home, role_requests_per_minute=unlimited)
    files = [f for folder in ZTF_FOLDERS for f in sorted((data_dir / "alerts/ztf" / folder).glob("*.avro"))]
    payloads = [p for f in files for p in read_payloads(f, wire_format=False)]
    raw = RawBatch(payloads, ["ztf"] * len(payloads), [0] * len(payloads), list(range(len(payloads))))
    stored = lake_write.commit_to_lake(stages.locate(decode_batch(raw), 5), home, {"test:ztf:0": len(payloads)}).objects
    token = add_user_token(settings, "ztf-bot", role="annotator", topics=("ztfclass",))
    with lasair_endpoint(settings) as url:
        yield ZtfLake(settings, url, stored, lasair_client(token, endpoint=url))


def test_ztf_object_names_name_the_stored_object(ztf_lake: ZtfLake) -> None:
    """Lasair-ZTF's clients name objects ZTF18abcdefg: object, sherlock/object and annotate take such names."""
    row = ztf_lake.objects.sort_by([("nSources", "descending")]).slice(0, 1).to_pylist()[0]
    name, object_id = row["objectId"], row["diaObjectId"]
    found = ztf_lake.annotator.object(name, lite=False)
    assert found["diaObjectId"] == str(object_id) and found["diaObject"]["objectId"] == name
    times = [s["midpointMjdTai"] for s in found["diaSourcesList"]]
    assert len(times) == row["nSources"] > 1
    # The light curve's interval, which a ZTF packet does not give as LSST's diaObject does.
    assert found["diaObject"]["firstDiaSourceMjdTai"] == min(times)
    assert found["diaObject"]["lastDiaSourceMjdTai"] == max(times)

    context = ztf_lake.annotator.sherlock_object(name)
    assert list(context["classifications"]) == [name]

    done = ztf_lake.annotator.annotate("ztfclass", name, "SN Ia", classdict={"p": 0.9})
    assert done["status"] == "success"
    notes = ztf_lake.annotator.object(name)["lasairData"]["annotations"]
    assert [(a["topic"], a["classification"]) for a in notes] == [("ztfclass", "SN Ia")]

    for missing in ("ZTF99zzzzzzz", "ZTF18ABCDEFG"):
        with pytest.raises(LasairError):
            ztf_lake.annotator.object(missing)


def test_annotate_list_writes_a_batch_or_nothing(ztf_lake: ZtfLake) -> None:
    """Lasair's annotate_list: every annotation of the batch is stored, or none when one is refused."""
    rows = ztf_lake.objects.sort_by("diaObjectId").to_pylist()
    batch = [
        {"objectId": rows[0]["objectId"], "topic": "ztfclass", "classification": "AGN"},
        {"objectId": rows[1]["diaObjectId"], "topic": "ztfclass", "classification": "CV", "classdict": {"p": 1}},
        {"objectId": str(rows[2]["diaObjectId"]), "topic": "ztfclass", "classification": "SN", "url": "https://x.org"},
    ]
    assert ztf_lake.annotator.annotate_list(batch) == {"status": "success", "n": 3}
    for row, sent in zip(rows[:3], batch, strict=True):
        notes = ztf_lake.annotator.object(row["objectId"])["lasairData"]["annotations"]
        assert sent["classification"] in [a["classification"] for a in notes]

    refused = [
        {"objectId": rows[3]["objectId"], "topic": "ztfclass", "classification": "SN II"},
        {"objectId": "ZTF99zzzzzzz", "topic": "ztfclass", "classification": "SN II"},
    ]
    with pytest.raises(LasairError, match="404"):  # an object the lake does not have
        ztf_lake.annotator.annotate_list(refused)
    assert ztf_lake.annotator.object(rows[3]["objectId"])["lasairData"]["annotations"] == []
