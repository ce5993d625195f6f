"""The newest messages of a filter's topic, read from a real broker and decoded (JSON and Avro)."""

from __future__ import annotations

import io
import json

import fastavro
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.api.users import add_user_token
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.streams import kafka, wire

BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 50000"


def _produce(settings: Settings, topic: str, messages: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    kafka.ensure_topics(settings, [topic])
    producer = Producer(kafka.producer_config(settings))
    for value, headers in messages:
        producer.produce(topic, value=value, headers=headers)
        producer.flush(10)  # one message per batch: Tansu's watermark is right then, and the order is known
    assert producer.flush(10) == 0


def test_json_messages_newest_last_and_visibility(kafka_settings: Settings) -> None:
    alice = {"Authorization": f"Token {add_user_token(kafka_settings, 'alice')}"}
    bob = {"Authorization": f"Token {add_user_token(kafka_settings, 'bob')}"}
    with TestClient(create_app(kafka_settings)) as client:
        made = client.post("/api/v1/filters", json={"name": "bright", "sql": BRIGHT}, headers=alice).json()
        empty = client.get(f"/api/v1/filters/{made['id']}/messages", headers=alice)
        assert empty.status_code == 200 and empty.json()["messages"] == []  # nothing published yet
        rows = [
            {"diaObjectId": str(10**17 + i), "psfFlux": 60000.0 + i, "UTC": "2025-09-05 06:00:00"} for i in range(7)
        ]
        _produce(
            kafka_settings,
            made["outputs"]["topic"],
            [
                (json.dumps(r).encode(), [("nightjar.format", b"json"), ("nightjar.key", f"1:{i}".encode())])
                for i, r in enumerate(rows)
            ],
        )
        response = client.get(f"/api/v1/filters/{made['id']}/messages?limit=3", headers=alice)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["topic"] == f"nightjar.filter.{made['id']}" and body["count"] == 3
        assert [m["value"] for m in body["messages"]] == rows[-3:]
        assert [m["key"] for m in body["messages"]] == ["1:4", "1:5", "1:6"]
        assert {m["format"] for m in body["messages"]} == {"json"}
        everything = client.get(f"/api/v1/filters/{made['id']}/messages?limit=100", headers=alice).json()
        assert [m["value"] for m in everything["messages"]] == rows
        # Private: someone else gets the same 404 as for a filter that does not exist.
        assert client.get(f"/api/v1/filters/{made['id']}/messages", headers=bob).status_code == 404
        assert client.get(f"/api/v1/filters/{made['id']}/messages").status_code == 404
        assert client.get(f"/api/v1/filters/{made['id']}/messages?limit=0", headers=alice).status_code == 422


def test_avro_messages_are_decoded_with_the_published_schema(kafka_settings: Settings) -> None:
    db = registry.engine(kafka_settings.metadata_url)
    flt = registry.add_filter(db, "avro", BRIGHT, owner="alice", visibility="public", format="avro")
    schema = {
        "type": "record",
        "name": f"filter_{flt.id}_v1",
        "namespace": "nightjar",
        "fields": [
            {"name": "diaObjectId", "type": ["null", "long"], "default": None},
            {"name": "psfFlux", "type": ["null", "float"], "default": None},
            {"name": "UTC", "type": "string"},
        ],
    }
    sid = registry.publish_avro_schema(db, flt.id, 1, json.dumps(schema), "fingerprint-1")
    db.dispose()
    parsed = fastavro.parse_schema(schema)
    record = {"diaObjectId": 2**62 + 12345, "psfFlux": 61000.0, "UTC": "2025-09-05 06:00:00"}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record)
    headers = [("nightjar.format", b"avro"), ("nightjar.schema.id", str(sid).encode())]
    _produce(kafka_settings, flt.topic, [(wire.frame(sid, buf.getvalue()), headers), (b"\x00\x00", headers)])
    with TestClient(create_app(kafka_settings)) as client:
        body = client.get(f"/api/v1/filters/{flt.id}/messages").json()  # public: anonymous callers read it too
    good, broken = body["messages"]
    assert good["format"] == "avro"
    assert good["value"] == {"diaObjectId": str(2**62 + 12345), "psfFlux": 61000.0, "UTC": "2025-09-05 06:00:00"}
    assert broken["format"] == "raw" and broken["value"] == "AAA=" and "cannot decode as avro" in broken["error"]


def test_the_newest_are_found_when_one_batch_held_many_messages(kafka_settings: Settings) -> None:
    # Tansu's high watermark lags when the last batch held several messages: the tail must still be the newest.
    db = registry.engine(kafka_settings.metadata_url)
    flt = registry.add_filter(db, "many", BRIGHT, owner="alice", visibility="public")
    db.dispose()
    kafka.ensure_topics(kafka_settings, [flt.topic], partitions=1)
    producer = Producer(kafka.producer_config(kafka_settings, **{"linger.ms": 200}))
    for i in range(12):
        producer.produce(flt.topic, value=json.dumps({"n": i}).encode())
    assert producer.flush(10) == 0
    with TestClient(create_app(kafka_settings)) as client:
        body = client.get(f"/api/v1/filters/{flt.id}/messages?limit=4").json()
    assert [m["value"]["n"] for m in body["messages"]] == [8, 9, 10, 11]
