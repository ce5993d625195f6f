"""Delivery through the ledger, on a real broker, real Delta, a real SMTP server and a real HTTP receiver."""

from __future__ import annotations

import io
import json
from collections import Counter

import fastavro
import pyarrow as pa
import pytest
from sqlalchemy import delete

from nightjar.lake import ledger
from nightjar.pipelines import stages
from nightjar.pipelines.channels import DeliveryReport
from nightjar.pipelines.delivery import Deliverer
from nightjar.pipelines.kafka_channel import KafkaChannel
from nightjar.settings import Settings
from nightjar.sql import engine, matches, registry
from nightjar.sql.registry_models import DeliveryStateRow
from nightjar.streams import kafka, simulate, wire
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.publish import Publisher

BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux, band FROM sources WHERE psfFlux > 20000"
# Alerts with a diaObject (the simulator's solar-system detections have none; delivery keys them by source).
# No history before the first night, so every packet-history detection is an earlier alert of this set.
ALERTS = [
    a.payload
    for a in simulate.generate_alerts(700, seed=21, config=simulate.SimConfig(history_days=0))
    if a.dia_object_id is not None
][:600]


def batch(start: int, stop: int) -> stages.DecodedBatch:
    chunk = ALERTS[start:stop]
    raw = RawBatch(chunk, ["t"] * len(chunk), [0] * len(chunk), list(range(start, stop)))
    return stages.locate(decode_batch(raw), partition_order=5)


@pytest.fixture
def delivery_settings(kafka_settings: Settings, smtp_server, webhook_receiver) -> Settings:
    return kafka_settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "webhook_allow_private": True,
            "webhook_retries": 2,
            "webhook_timeout_s": 5.0,
            "public_url": "https://broker.example.org",
        }
    )


@pytest.fixture
def db(delivery_settings: Settings):
    eng = registry.engine(delivery_settings.metadata_url)
    yield eng
    eng.dispose()


def run_batch(settings: Settings, db, filters: list[registry.Filter], decoded: stages.DecodedBatch, label: str):
    kafka.ensure_topics(settings, [f.topic for f in filters])
    lim = engine.limits(settings, timeout_s=settings.filter_timeout_s, max_rows=settings.filter_max_rows)
    outcome = stages.apply_filters(decoded, filters, lim)
    with Publisher(kafka.producer_config(settings)) as publisher:
        return Deliverer(settings, publisher, db).deliver(outcome.outputs, label), outcome


def topic_keys(settings: Settings, flt: registry.Filter, expected: int) -> list[str]:
    messages = kafka.read_messages(settings, flt.topic, expected + 1, timeout_s=20)
    return [m.headers["nightjar.key"].decode() for m in messages]


def expected_keys(decoded_batches: list[stages.DecodedBatch], version: int = 1) -> set[str]:
    keys = set()
    for decoded in decoded_batches:
        rows = decoded.sources.filter(pa.compute.greater(decoded.sources["psfFlux"], 20000))
        keys |= {
            f"{version}:{o if o is not None else f'source-{s}'}:{s}"  # solar-system detections: no object
            for o, s in zip(rows["diaObjectId"].to_pylist(), rows["diaSourceId"].to_pylist(), strict=True)
        }
    return keys


def test_each_match_is_delivered_once_across_overlapping_batches(delivery_settings: Settings, db) -> None:
    flt = registry.add_filter(db, "bright", BRIGHT)
    first, second = batch(0, 400), batch(200, 600)  # the second batch repeats half of the first
    report1, outcome1 = run_batch(delivery_settings, db, [flt], first, "b1")
    report2, outcome2 = run_batch(delivery_settings, db, [flt], second, "b2")
    # What each batch matched (its alerts and their packet history), as delivery keys.
    k1, k2 = (set(matches.delivery_keys("all", 1, o.outputs[0].keys).to_pylist()) for o in (outcome1, outcome2))
    want = k1 | k2
    assert expected_keys([first, second]) <= want
    keys = topic_keys(delivery_settings, flt, len(want))
    assert Counter(keys).most_common(1)[0][1] == 1, "a match was published twice"
    assert set(keys) == want
    assert report2.already["bright"] == len(k1 & k2) > 0
    assert report1.delivered["bright"] + report2.delivered["bright"] == len(want)
    rows = ledger.read(delivery_settings.home, flt.id)
    delivered = rows.filter(pa.compute.equal(rows["status"], "delivered"))
    assert sorted(delivered["key"].to_pylist()) == sorted(want)


def test_a_state_lost_or_never_kept_is_taken_from_the_ledger(delivery_settings: Settings, db) -> None:
    """A metadata database without delivery state (upgraded from a Nightjar that kept only the ledger) adopts the
    ledger's statuses: an overlapping batch after the upgrade repeats nothing."""
    flt = registry.add_filter(db, "bright", BRIGHT)
    first, second = batch(0, 400), batch(200, 600)
    _, outcome1 = run_batch(delivery_settings, db, [flt], first, "b1")
    with db.begin() as con:
        assert con.execute(delete(DeliveryStateRow)).rowcount > 0
    report2, outcome2 = run_batch(delivery_settings, db, [flt], second, "b2")
    k1, k2 = (set(matches.delivery_keys("all", 1, o.outputs[0].keys).to_pylist()) for o in (outcome1, outcome2))
    keys = topic_keys(delivery_settings, flt, len(k1 | k2))
    assert Counter(keys).most_common(1)[0][1] == 1 and set(keys) == k1 | k2
    assert report2.already["bright"] == len(k1 & k2) > 0


def test_new_objects_mode_delivers_each_object_once(delivery_settings: Settings, db) -> None:
    flt = registry.add_filter(db, "new bright", BRIGHT, mode="new")
    batches = [batch(0, 300), batch(300, 600)]
    for i, decoded in enumerate(batches):
        run_batch(delivery_settings, db, [flt], decoded, f"b{i}")
    first_match: dict[int, int] = {}
    for decoded in batches:
        rows = decoded.sources.filter(pa.compute.greater(decoded.sources["psfFlux"], 20000))
        for o, s in zip(rows["diaObjectId"].to_pylist(), rows["diaSourceId"].to_pylist(), strict=True):
            first_match[o] = min(first_match.get(o, s), s)
    messages = kafka.read_messages(delivery_settings, flt.topic, len(first_match) + 1, timeout_s=20)
    got = {int(json.loads(m.value)["diaObjectId"]): int(json.loads(m.value)["diaSourceId"]) for m in messages}
    assert len(messages) == len(first_match) and got == first_match


def test_an_interrupted_delivery_is_completed_without_repeats(delivery_settings: Settings, db) -> None:
    """Crash after half the messages reached the broker, before the ledger heard of it; then process again."""
    flt = registry.add_filter(db, "bright", BRIGHT)
    decoded = batch(0, 600)
    kafka.ensure_topics(delivery_settings, [flt.topic])
    lim = engine.limits(delivery_settings, timeout_s=10.0)
    outcome = stages.apply_filters(decoded, [flt], lim)
    with Publisher(kafka.producer_config(delivery_settings)) as publisher:
        crashed = Deliverer(delivery_settings, publisher, db)
        report = DeliveryReport()
        (work,) = crashed.plan(outcome.outputs, report).works
        crashed.record([work], "b1", pending_only=True)
        half = len(work.keys) // 2
        work.matches, work.keys, work.objects = work.matches.slice(0, half), work.keys[:half], work.objects[:half]
        # Acknowledged by the broker; then the process dies.
        KafkaChannel(delivery_settings, publisher, db).send([work], "2025-01-01 00:00:00", "b1", report)
    # Restart: the same batch again, a new deliverer.
    report, _ = run_batch(delivery_settings, db, [flt], decoded, "b1-again")
    want = expected_keys([decoded])
    keys = topic_keys(delivery_settings, flt, len(want))
    assert Counter(keys).most_common(1)[0][1] == 1 and set(keys) == want
    assert report.recovered["bright"] == half
    final = ledger.read(delivery_settings.home, flt.id)
    found = final.filter(pa.compute.match_substring(final["detail"], "found on the topic"))
    assert found.num_rows == half


def test_email_digest_and_webhook_arrive_once(delivery_settings: Settings, db, smtp_server, webhook_receiver) -> None:
    flt = registry.add_filter(
        db, "bright", BRIGHT, emails=["astro@example.org", "team@example.org"], webhooks=[webhook_receiver.url]
    )
    decoded = batch(0, 300)
    want = expected_keys([decoded])
    report, _ = run_batch(delivery_settings, db, [flt], decoded, "b1")
    run_batch(delivery_settings, db, [flt], decoded, "b1-again")  # nothing new: nothing sent
    (mail,) = smtp_server.wait_for(1)
    assert mail.recipients == ["astro@example.org", "team@example.org"]
    assert mail.message["Subject"] == f"Nightjar filter bright: {len(want)} new matches"
    attachment = next(p for p in mail.message.iter_attachments())
    records = json.loads(attachment.get_content())
    assert {f"1:{r['diaObjectId']}:{r['diaSourceId']}" for r in records} == want
    assert all(isinstance(r["diaObjectId"], str) and "UTC" in r for r in records)
    body_lines = mail.message.get_body(("plain",)).get_content()
    assert f"matched {len(want)} alerts" in body_lines
    # NIGHTJAR_PUBLIC_URL: every match links to the portal's page of its object, in the e-mail and the webhook.
    assert all(r["objectUrl"] == f"https://broker.example.org/objects/{r['diaObjectId']}" for r in records)
    assert "Object pages:" in body_lines and "\n  https://broker.example.org/objects/" in body_lines
    (post,) = webhook_receiver.posts
    payload = post.json()
    assert all(m["objectUrl"] == f"https://broker.example.org/objects/{m['diaObjectId']}" for m in payload["matches"])
    assert set(payload["keys"]) == want and payload["count"] == len(want)
    assert payload["filter"] == {"id": flt.id, "name": "bright", "version": 1, "topic": flt.topic}
    assert post.headers["idempotency-key"].startswith(f"{flt.id}-")
    assert post.headers["content-type"] == "application/json"
    rows = ledger.read(delivery_settings.home, flt.id)
    for channel in ("kafka", "email", "webhook"):
        done = rows.filter(
            pa.compute.and_(pa.compute.equal(rows["channel"], channel), pa.compute.equal(rows["status"], "delivered"))
        )
        assert sorted(done["key"].to_pylist()) == sorted(want), channel
    assert report.channel_errors == {}


def test_a_failing_webhook_is_recorded_and_reported_once(delivery_settings: Settings, db, webhook_receiver) -> None:
    webhook_receiver.status = 500
    flt = registry.add_filter(db, "bright", BRIGHT, webhooks=[webhook_receiver.url], kafka=False)
    decoded = batch(0, 200)
    report, _ = run_batch(delivery_settings, db, [flt], decoded, "b1")
    assert "webhook delivery failed" in report.channel_errors[flt.id] and "HTTP 500" in report.channel_errors[flt.id]
    assert len(webhook_receiver.posts) == 2  # two attempts (webhook_retries)
    run_batch(delivery_settings, db, [flt], decoded, "b1-again")
    assert len(webhook_receiver.posts) == 2  # a failed delivery is final: reported, not retried forever


def test_webhooks_to_private_addresses_are_refused_by_default(kafka_settings: Settings, webhook_receiver) -> None:
    db = registry.engine(kafka_settings.metadata_url)
    flt = registry.add_filter(db, "bright", BRIGHT, webhooks=[webhook_receiver.url], kafka=False)
    report, _ = run_batch(kafka_settings, db, [flt], batch(0, 200), "b1")
    assert "non-public address (127.0.0.1)" in report.channel_errors[flt.id]
    assert webhook_receiver.posts == []
    db.dispose()


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_avro_payloads_with_a_published_schema(delivery_settings: Settings, db) -> None:
    flt = registry.add_filter(db, "bright avro", BRIGHT, format="avro")
    decoded = batch(0, 300)
    run_batch(delivery_settings, db, [flt], decoded, "b1")
    want = expected_keys([decoded])
    messages = kafka.read_messages(delivery_settings, flt.topic, len(want) + 1, timeout_s=20)
    assert len(messages) == len(want)
    schema_id = int(messages[0].headers["nightjar.schema.id"])
    schema = fastavro.parse_schema(json.loads(registry.avro_schema(db, schema_id)))
    decoded_records = []
    for message in messages:
        sid, body = wire.unframe(message.value)
        assert sid == schema_id
        decoded_records.append(fastavro.schemaless_reader(io.BytesIO(body), schema, None))
    assert {f"1:{r['diaObjectId']}:{r['diaSourceId']}" for r in decoded_records} == want
    assert all(isinstance(r["diaSourceId"], int) and r["diaSourceId"] > 2**53 for r in decoded_records)


_HOSTILE_IDS = iter(range(20_000_001, 20_100_000))


def _hostile(name: str, sql: str = BRIGHT, **fields: object) -> registry.Filter:
    """A filter as an older registry (or a direct database edit) could hold it: registration refuses these now."""
    return registry.Filter(id=next(_HOSTILE_IDS), name=name, sql=sql, version=1, **fields)  # type: ignore[arg-type]


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_one_users_filter_cannot_stop_delivery_for_everyone(
    delivery_settings: Settings, db, smtp_server, webhook_receiver
) -> None:
    """Each trigger found by the red team fails its own filter, recorded and reported; the others are delivered."""
    good = registry.add_filter(db, "good", BRIGHT, emails=["astro@example.org"], webhooks=[webhook_receiver.url])
    hostile = [
        _hostile("line\u2028sep", emails=("m@example.org",), kafka=False),
        _hostile("bcc", emails=("m@example.org\u2028Bcc: evil@example.com",), kafka=False),
        _hostile("idna", webhooks=("http://a..b/",), kafka=False),
        _hostile("ipv6", webhooks=("http://[::1/",), kafka=False),
        _hostile("avro", "SELECT diaObjectId, diaSourceId, psfFlux * 2 FROM sources WHERE psfFlux > 9", format="avro"),
        _hostile(
            "far date",
            "SELECT diaObjectId, diaSourceId, DATE '294247-01-10' AS d, 'infinity'::TIMESTAMP AS t FROM sources "
            "WHERE psfFlux > 20000",
            emails=("astro@example.org",),
            webhooks=(webhook_receiver.url,),
        ),
    ]
    decoded = batch(0, 300)
    want = expected_keys([decoded])
    report, outcome = run_batch(delivery_settings, db, [good, *hostile], decoded, "b1")
    assert all(o.error is None for o in outcome.outputs)
    # The good filter: every channel delivered.
    assert sorted(topic_keys(delivery_settings, good, len(want))) == sorted(want)
    assert good.id not in report.channel_errors
    rows = ledger.read(delivery_settings.home, good.id).to_pylist()
    for channel in ("kafka", "email", "webhook"):
        assert {r["key"] for r in rows if r["channel"] == channel and r["status"] == "delivered"} == want, channel
    # A name unsafe in a header: the digest goes out, the subject names the filter by id.
    named = hostile[0]
    assert named.id not in report.channel_errors
    assert any(m.message["Subject"].startswith(f"Nightjar filter id {named.id}:") for m in smtp_server.inbox)
    # Each other hostile filter: its failing channel recorded, nothing raised.
    for flt in hostile[1:5]:
        assert flt.id in report.channel_errors, flt.name
        failed = ledger.read(delivery_settings.home, flt.id)
        assert "failed" in failed["status"].to_pylist(), flt.name
    assert "Bcc" not in str([m.message.keys() for m in smtp_server.inbox])
    # Values Python cannot hold are delivered as text, not an OverflowError.
    far = hostile[5]
    assert far.id not in report.channel_errors, report.channel_errors.get(far.id)
    post = next(p for p in webhook_receiver.posts if p.json()["filter"]["id"] == far.id)
    assert "294247" in post.body.decode() or "out of range" in post.body.decode()
    # The owner of a failing filter can be told without the notice failing in turn.
    with Publisher(kafka.producer_config(delivery_settings)) as publisher:
        deliverer = Deliverer(delivery_settings, publisher, db)
        for flt in hostile:
            deliverer.notify_owner(flt, "Your filter failed\u2028Bcc: evil@example.com")
