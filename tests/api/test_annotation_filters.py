"""Annotations feed the stream: an annotation written through the API runs the filters that read annotations,
on a real broker, and their matches reach the filter topics exactly once."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from distributed import Client
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.lake.annotations import append_annotations
from nightjar.pipelines import stages
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import engine, registry
from nightjar.sql.engine import query_lake
from nightjar.sql.registry import Filter
from nightjar.streams import kafka, simulate
from nightjar.streams.decode import RawBatch, decode_batch

CLASSIFIED = (
    "SELECT o.diaObjectId, a.classification, a.topic, a.annotator FROM objects o "
    "JOIN annotations a USING (diaObjectId) WHERE a.topic = 'fastclass' AND a.classification = 'SN Ia'"
)
BRIGHT = "SELECT diaObjectId, diaSourceId FROM sources WHERE psfFlux > 1e9"  # matches no simulated alert


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_annotations_trigger_the_filters_that_read_them(kafka_settings: Settings, dask_client: Client) -> None:
    settings = kafka_settings
    topic = f"ann-{uuid.uuid4().hex[:8]}"
    assert simulate.produce(settings, topic, 300, seed=3) == 300
    assert run(settings, dask_client, topic, max_alerts=300, idle_exit_s=20).accepted == 300

    db = registry.engine(settings.metadata_url)
    classified = registry.add_filter(db, "classified", CLASSIFIED)
    bright = registry.add_filter(db, "bright", BRIGHT)
    objects = query_lake(settings, "SELECT diaObjectId FROM objects ORDER BY diaObjectId LIMIT 3")
    first, second, third = (str(i) for i in objects["diaObjectId"].to_pylist())

    fast = add_user_token(settings, "fastclass-bot", role="annotator", topics=("fastclass",))
    other = add_user_token(settings, "other-bot", role="annotator", topics=("other",))
    with TestClient(create_app(settings)) as api:

        def annotate(token: str, obj: str, topic: str, cls: str) -> str:
            response = api.post(
                "/api/v1/annotations",
                json={"diaObjectId": obj, "topic": topic, "classification": cls, "classdict": {"p": 0.9}},
                headers={"Authorization": f"Token {token}"},
            )
            assert response.status_code == 201, response.text
            return str(response.json()["annotationId"])

        annotate(fast, first, "fastclass", "SN Ia")
        annotate(fast, second, "fastclass", "SN Ia")
        annotate(fast, third, "fastclass", "AGN")
        annotate(other, third, "other", "SN Ia")

        report = run(settings, dask_client, topic, idle_exit_s=8)
        assert report.consumed == 0 and report.annotations == 4
        got = kafka.read_messages(settings, classified.topic, 3, timeout_s=20)
        assert sorted(json.loads(m.value)["diaObjectId"] for m in got) == sorted([first, second])
        assert {json.loads(m.value)["annotator"] for m in got} == {"fastclass-bot"}
        assert report.matches["classified"] == 2 and report.matches["bright"] == 0
        assert kafka.read_messages(settings, bright.topic, 1, timeout_s=3) == []

        # Nothing is delivered twice: the annotations' offsets were committed after delivery.
        again = run(settings, dask_client, topic, idle_exit_s=8)
        assert again.annotations == 0 and again.matches["classified"] == 0

        # A new annotation of an object matches again (it is a new event), through Lasair's endpoint too.
        lasair = api.post(
            "/lasair/api/annotate/",
            data={
                "topic": "fastclass",
                "objectId": first,
                "classification": "SN Ia",
                "version": "2",
                "classdict": "{}",
            },
            headers={"Authorization": f"Token {fast}"},
        )
        assert lasair.status_code == 200 and lasair.json()["status"] == "success", lasair.text
        third_run = run(settings, dask_client, topic, idle_exit_s=8)
        assert third_run.matches["classified"] == 1
        got = kafka.read_messages(settings, classified.topic, 4, timeout_s=20)
        assert [json.loads(m.value)["diaObjectId"] for m in got].count(first) == 2
    db.dispose()


def test_alert_batches_see_the_stored_annotations_of_their_objects(settings: Settings, lake_builder: Any) -> None:
    payloads = lake_builder(settings.home, alerts=200, batches=2)
    batch = stages.locate(decode_batch(RawBatch.from_payloads(payloads[-50:], topic="again")), 5)
    ids = sorted(set(batch.objects["diaObjectId"].to_pylist()))
    annotated = ids[:2]
    append_annotations(
        settings.home,
        [{"diaObjectId": i, "topic": "fastclass", "annotator": "bot", "classification": "SN Ia"} for i in annotated]
        + [{"diaObjectId": ids[2], "topic": "fastclass", "annotator": "bot", "classification": "AGN"}],
    )
    flt = Filter(id=1, name="classified", sql=CLASSIFIED, version=1)
    limits = engine.limits(settings, timeout_s=30)
    outcome = stages.apply_filters(batch, [flt], limits, None, settings.home)
    (output,) = outcome.outputs
    assert output.error is None and output.matches is not None
    assert sorted(set(output.matches["diaObjectId"].to_pylist())) == annotated
    # Without the lake (ingest-only runs) the view is empty and nothing matches.
    (bare,) = stages.apply_filters(batch, [flt], limits).outputs
    assert bare.matches is not None and bare.matches.num_rows == 0
