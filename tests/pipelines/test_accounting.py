"""Every Kafka message a run consumes is accounted for: in the lake, on the dead-letter topic with a reason, or a
counted duplicate (issue 12 item 10). Nothing is dropped silently: not an empty Avro container, not a re-sent
alert whose content differs from the stored one."""

from __future__ import annotations

import io
import uuid

import fastavro
import pytest
from distributed import Client

from nightjar import paths
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql.engine import query_lake
from nightjar.streams import kafka, schemas, simulate, wire
from nightjar.streams.publish import Publisher

from ..fastavro_reference import fastavro_record

GOOD = 300


def _with_flux(payload: bytes, flux: float) -> bytes:
    """The same alert (same diaSourceId) with another psfFlux: a conflicting re-send."""
    record = fastavro_record(payload)
    record["diaSource"]["psfFlux"] = flux
    sid = schemas.latest_schema_id()
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schemas.lsst_schema(sid), record)
    return wire.frame(sid, buf.getvalue())


def _empty_container() -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schemas.lsst_schema(schemas.latest_schema_id())), [])
    return buf.getvalue()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_message_is_stored_dead_lettered_or_a_counted_duplicate(
    kafka_settings: Settings, dask_client: Client
) -> None:
    # Small batches, one partition: re-sends land in later batches than their originals, and beside them.
    settings = kafka_settings.model_copy(update={"batch_size": 100})
    topic = f"accounting-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [topic], partitions=1)
    good = [a.payload for a in simulate.generate_alerts(GOOD, seed=21)]
    assert simulate.produce(settings, topic, GOOD, seed=21) == GOOD
    fresh = next(iter(simulate.generate_alerts(1, seed=22))).payload  # an alert the stream has not seen yet
    conflict_old = _with_flux(good[1], 12345.0)
    conflict_new = _with_flux(fresh, 777.0)
    empty = _empty_container()
    extras = [
        good[0],  # identical re-send of an alert of an earlier batch
        conflict_old,  # the stored alert good[1] again, with another flux
        empty,  # no alert at all
        good[2],  # identical re-send
        b"not an alert",
        fresh,  # new: stored
        fresh,  # identical re-send in the same stretch of the stream
        conflict_new,  # conflicting re-send of the new alert
    ]
    with Publisher(kafka.producer_config(settings)) as publisher:
        for payload in extras:
            publisher.raw(topic, payload)
        publisher.flush()

    report = run(settings, dask_client, topic, max_alerts=GOOD + len(extras), idle_exit_s=30)

    assert report.consumed == GOOD + len(extras)
    assert (report.stored, report.dead_lettered, report.duplicates) == (GOOD + 1, 4, 3)
    assert report.conflicting == 2
    assert report.balanced
    assert report.accepted == GOOD + 1

    # The lake holds each alert once, in its first version.
    counts = query_lake(settings, "SELECT count(*) AS n, count(DISTINCT diaSourceId) AS d FROM cutouts")
    assert (counts["n"][0].as_py(), counts["d"][0].as_py()) == (GOOD + 1, GOOD + 1)
    triggers = query_lake(settings, "SELECT diaSourceId, psfFlux FROM sources WHERE NOT fromPacketHistory")
    flux = dict(zip(triggers["diaSourceId"].to_pylist(), triggers["psfFlux"].to_pylist(), strict=True))
    assert len(flux) == GOOD + 1
    for payload in (good[1], fresh):
        source = fastavro_record(payload)["diaSource"]
        assert flux[source["diaSourceId"]] == pytest.approx(source["psfFlux"], rel=1e-6)

    # The dead-letter topic holds each rejected message as it was sent, with its reason.
    dead = kafka.read_messages(settings, paths.dead_letter_topic(topic), 5, timeout_s=30)
    reasons = {m.value: m.headers["nightjar.reason"].decode() for m in dead}
    assert len(dead) == 4 and set(reasons) == {conflict_old, conflict_new, empty, b"not an alert"}
    assert "conflicting re-send" in reasons[conflict_old] and "offset 1)" in reasons[conflict_old]
    assert "conflicting re-send" in reasons[conflict_new]
    assert "empty Avro container" in reasons[empty]
    offsets = sorted(int(m.headers["nightjar.source.offset"]) for m in dead)
    assert offsets == [GOOD + 1, GOOD + 2, GOOD + 4, GOOD + 7]
