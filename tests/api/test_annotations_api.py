"""Annotations: annotators write to their own topics, rows land in the lake and are queryable at once; Lasair's
annotate call works unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.lake.read import lake_version
from nightjar.lake.serving import LakeReader
from nightjar.settings import Settings
from nightjar.sql.engine import query_lake


@dataclass
class Setup:
    client: TestClient
    settings: Settings
    annotator: dict[str, str]
    objects: list[int]


@pytest.fixture
def setup(settings: Settings, lake_builder) -> Iterator[Setup]:
    lake_builder(settings.home, alerts=60, batches=1)
    objects = query_lake(settings, "SELECT diaObjectId FROM objects ORDER BY diaObjectId")["diaObjectId"].to_pylist()
    token = add_user_token(settings, "classifier", role="annotator", topics=("ml", "fastfinder"))
    with TestClient(create_app(settings)) as client:
        yield Setup(client, settings, {"Authorization": f"Token {token}"}, objects)


def _body(object_id: int, **extra: object) -> dict[str, object]:
    return {
        "diaObjectId": str(object_id),
        "topic": "ml",
        "classification": "SN Ia",
        "version": "1.2",
        "explanation": "light curve fit",
        "classdict": {"SN Ia": 0.83, "SN II": 0.12},
        "url": "https://example.org/ml/1",
        **extra,
    }


def test_an_annotation_is_in_the_lake_and_queryable_at_once(setup: Setup) -> None:
    oid = setup.objects[0]
    before = lake_version(setup.settings.home)
    made = setup.client.post("/api/v1/annotations", json=_body(oid), headers=setup.annotator)
    assert made.status_code == 201, made.text
    row = made.json()
    assert row["diaObjectId"] == str(oid) and row["annotator"] == "classifier" and row["topic"] == "ml"
    assert row["classdict"] == {"SN Ia": 0.83, "SN II": 0.12} and int(row["annotationId"]) > 0
    assert lake_version(setup.settings.home) == (before or 0) + 1  # a new lake snapshot
    query = setup.client.post(
        "/api/v1/query",
        json={"sql": "SELECT diaObjectId, annotationId, classification, classdict, annotator FROM annotations"},
    )
    assert query.status_code == 200, query.text
    assert query.json()["rows"] == [
        {
            "diaObjectId": str(oid),
            "annotationId": row["annotationId"],
            "classification": "SN Ia",
            "classdict": json.dumps({"SN Ia": 0.83, "SN II": 0.12}),
            "annotator": "classifier",
        }
    ]
    setup.client.post("/api/v1/annotations", json=_body(oid, classification="SN II"), headers=setup.annotator)
    listed = setup.client.get(f"/api/v1/objects/{oid}/annotations").json()  # anyone reads
    assert listed["diaObjectId"] == str(oid)
    assert [a["classification"] for a in listed["annotations"]] == ["SN Ia", "SN II"]
    assert setup.client.get(f"/api/v1/objects/{setup.objects[1]}/annotations").json()["annotations"] == []


def test_annotators_are_confined_to_their_topics(setup: Setup) -> None:
    oid = setup.objects[0]
    other = setup.client.post("/api/v1/annotations", json=_body(oid, topic="someone-else"), headers=setup.annotator)
    assert other.status_code == 403
    assert "classifier may not annotate topic 'someone-else' (its topics: ml, fastfinder)" in other.json()["detail"]
    user = {"Authorization": f"Token {add_user_token(setup.settings, 'plain')}"}
    assert setup.client.post("/api/v1/annotations", json=_body(oid), headers=user).status_code == 403
    assert setup.client.post("/api/v1/annotations", json=_body(oid)).status_code == 401
    bad = {"Authorization": "Token nj_unknown"}
    assert setup.client.post("/api/v1/annotations", json=_body(oid), headers=bad).status_code == 401
    admin = {"Authorization": f"Token {add_user_token(setup.settings, 'root', role='admin')}"}
    assert setup.client.post("/api/v1/annotations", json=_body(oid, topic="any"), headers=admin).status_code == 201
    assert query_lake(setup.settings, "SELECT count(*) AS n FROM annotations")["n"].to_pylist() == [1]


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"classification": "x" * 81}, 422, "at most 80 characters"),
        ({"explanation": "x" * 1025}, 422, "at most 1024 characters"),
        ({"classification": ""}, 422, "at least 1 character"),
        ({"classdict": [1, 2]}, 422, "valid dictionary"),
        ({"classdict": {"k": "x" * 5000}}, 400, "classdict is 50"),
        ({"url": "javascript:alert(1)"}, 400, "url must be an http:// or https:// address"),
        ({"diaObjectId": "12345"}, 404, "no object 12345 in the lake"),
        ({"diaObjectId": "-5"}, 422, "greater than 0"),
    ],
)
def test_bad_annotations_are_refused_with_the_reason(setup: Setup, change: dict, status: int, message: str) -> None:
    response = setup.client.post("/api/v1/annotations", json=_body(setup.objects[0], **change), headers=setup.annotator)
    assert response.status_code == status, response.text
    assert message in response.text
    assert query_lake(setup.settings, "SELECT count(*) AS n FROM annotations")["n"].to_pylist() == [0]


def test_lasair_annotate_takes_form_fields_and_answers_like_lasair(setup: Setup) -> None:
    oid = setup.objects[2]
    form = {
        "topic": "fastfinder",
        "objectId": str(oid),
        "classification": "fast",
        "version": "0.1",
        "explanation": "rising 0.5 mag/day",
        "classdict": json.dumps({"rate": 0.5}),
        "url": "",
    }
    done = setup.client.post("/lasair/api/annotate/", data=form, headers=setup.annotator)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "success" and body["n"] == 1
    stored = setup.client.get(f"/api/v1/objects/{oid}/annotations").json()["annotations"]
    assert [(a["annotationId"], a["topic"], a["classdict"], a["url"]) for a in stored] == [
        (body["annotationId"], "fastfinder", {"rate": 0.5}, "")
    ]
    # Lasair's error shape: {"error": message}, with a status that says what went wrong.
    cases = [
        ({**form, "topic": "ml2"}, setup.annotator, 403, "may not annotate topic 'ml2'"),
        ({**form, "classdict": "{not json"}, setup.annotator, 400, "classdict is not JSON"),
        ({**form, "objectId": "ZTF21abc"}, setup.annotator, 400, "objectId must be a diaObjectId"),
        ({k: v for k, v in form.items() if k != "topic"}, setup.annotator, 400, "missing field: topic"),
        (form, {}, 401, "annotating needs an annotator token"),
        (form, {"Authorization": "Token nope"}, 401, "invalid or revoked token"),
    ]
    for data, headers, status, message in cases:
        refused = setup.client.post("/lasair/api/annotate/", data=data, headers=headers)
        assert refused.status_code == status, (data, refused.text)
        assert message in refused.json()["error"]
    as_json = setup.client.post("/lasair/api/annotate/", json={**form, "objectId": oid}, headers=setup.annotator)
    assert as_json.status_code == 200, as_json.text


@pytest.mark.parametrize("kind", ["float", "bool", "exponent", "float string"])
def test_an_id_sent_as_a_float_is_refused_not_rounded(setup: Setup, kind: str) -> None:
    """1.700000000010001e+17 is another object than the one meant: ids are integers or strings of digits."""
    oid = setup.objects[0]
    value = {"float": float(oid), "bool": True, "exponent": f"{float(oid):e}", "float string": "1.5"}[kind]
    response = setup.client.post("/api/v1/annotations", json=_body(oid, diaObjectId=value), headers=setup.annotator)
    assert response.status_code == 422, response.text
    assert "integer or a string of digits" in response.text
    assert query_lake(setup.settings, "SELECT count(*) AS n FROM annotations")["n"].to_pylist() == [0]
    assert (
        setup.client.post("/api/v1/annotations", json=_body(oid, diaObjectId=oid), headers=setup.annotator).status_code
        == 201
    )


def test_a_writer_reads_its_annotation_on_its_next_call(setup: Setup) -> None:
    """The API serves a cached lake snapshot; an annotation just written must not wait for the next refresh. The
    reader here refreshes only once an hour, so only the write's own invalidation can show the annotation."""
    setup.client.app.state.lake = LakeReader(setup.settings.home, check_interval_s=3600)  # type: ignore[attr-defined]
    oid = setup.objects[3]
    params = {"objectId": str(oid)}
    before = setup.client.get("/lasair/api/object/", params=params, headers=setup.annotator).json()
    assert before["lasairData"]["annotations"] == []
    form = {"topic": "ml", "objectId": str(oid), "classification": "SN", "classdict": "{}", "url": ""}
    done = setup.client.post("/lasair/api/annotate/", data=form, headers=setup.annotator)
    assert done.status_code == 200, done.text
    seen = setup.client.get("/lasair/api/object/", params=params, headers=setup.annotator).json()
    seen = seen["lasairData"]["annotations"]
    assert [a["annotationId"] for a in seen] == [done.json()["annotationId"]]
    made = setup.client.post("/api/v1/annotations", json=_body(oid), headers=setup.annotator)
    assert made.status_code == 201, made.text
    mine = setup.client.get(f"/api/v1/objects/{oid}", headers=setup.annotator).json()["annotations"]
    assert made.json()["annotationId"] in [a["annotationId"] for a in mine]
