"""Offset ranges: how a batch is cut among workers, and what a worker fetches from a real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from nightjar.settings import Settings
from nightjar.streams import kafka
from nightjar.streams.kafka_ranges import FetchError, KafkaSlice, OffsetRange, RangeReader, close_pooled_consumers


def test_a_slice_counts_its_messages_and_ends_at_its_last_offset_per_partition() -> None:
    whole = KafkaSlice((OffsetRange("a", 0, 10, 17), OffsetRange("a", 1, 100, 103)), config=())
    assert len(whole) == 10
    assert whole.end_offsets() == {("a", 0): 16, ("a", 1): 102}
    assert KafkaSlice((), config=()).end_offsets() == {}


def test_a_backlog_is_cut_into_full_batches_whatever_its_partitions_hold() -> None:
    """Partitions holding unequal backlogs (keyed messages) still give full batches: what one partition cannot
    give comes from the others, so 10,000 messages make five batches of 2,000 and nothing is handed out twice."""
    reader = RangeReader(Consumer({"group.id": "unused", "bootstrap.servers": "127.0.0.1:9"}), "a", {}, still_s=60)
    backlog = {0: 5045, 1: 3000, 2: 1955}
    reader.next = {p: 100 * p for p in backlog}
    reader._high = {p: (100 * p + n, 0.0) for p, n in backlog.items()}
    batches = [reader.take(2000) for _ in range(6)]
    assert [len(b) for b in batches] == [2000, 2000, 2000, 2000, 2000, 0]
    handed = [(r.partition, o) for b in batches for r in b.ranges for o in range(r.start, r.stop)]
    assert sorted(handed) == [(p, 100 * p + i) for p, n in sorted(backlog.items()) for i in range(n)]
    assert all(list(b.ranges) == sorted(b.ranges, key=lambda r: r.partition) for b in batches)


def test_a_reader_with_no_partition_notices_a_broker_gone_away(kafka_settings: Settings) -> None:
    """A broker that goes away also takes the driver's partitions away; the reader then still asks the broker
    (its topic's metadata), so the run waits for it as an outage instead of taking it for a group still forming."""
    live = RangeReader(Consumer(kafka.consumer_config(kafka_settings, "unassigned")), "a", {}, still_s=60)
    assert live.available() == 0  # the broker answered: nothing assigned yet, nothing to hand out
    gone = RangeReader(Consumer({"group.id": "unused", "bootstrap.servers": "127.0.0.1:9"}), "a", {}, still_s=60)
    with pytest.raises(KafkaException):
        gone.available()


def _produce(settings: Settings, topic: str) -> dict[tuple[int, int], bytes]:
    kafka.ensure_topics(settings, [topic], partitions=2)
    producer = Producer(kafka.producer_config(settings))
    sent: dict[tuple[int, int], bytes] = {}
    for partition in (0, 1):
        for i in range(30):
            producer.produce(topic, f"{partition}:{i}".encode(), partition=partition)
    producer.flush(30)
    for partition in (0, 1):
        for i in range(30):
            sent[(partition, i)] = f"{partition}:{i}".encode()  # one producer, one partition: offsets in order
    return sent


def test_a_worker_fetches_exactly_its_ranges(kafka_settings: Settings) -> None:
    topic = f"ranges-{uuid.uuid4().hex[:8]}"
    sent = _produce(kafka_settings, topic)
    config = tuple(sorted(kafka.consumer_config(kafka_settings, "nightjar-fetch").items()))
    piece = KafkaSlice((OffsetRange(topic, 0, 5, 12), OffsetRange(topic, 1, 0, 3)), config)
    for _ in range(2):  # the second fetch reuses the process's consumer
        got = piece.fetch(timeout_s=30)
        assert list(zip(got.partitions, got.offsets, strict=True)) == [(0, o) for o in range(5, 12)] + [
            (1, o) for o in range(3)
        ]
        assert got.payloads == [sent[(p, o)] for p, o in zip(got.partitions, got.offsets, strict=True)]
        assert set(got.topics) == {topic}
    # The pooled consumer is closed on demand (before its broker goes away); the next fetch opens another.
    assert close_pooled_consumers() >= 1 and close_pooled_consumers() == 0
    assert piece.fetch(timeout_s=30).offsets == list(range(5, 12)) + list(range(3))
    beyond = KafkaSlice((OffsetRange(topic, 0, 25, 40),), config)
    with pytest.raises(FetchError, match=rf"{topic}\[0\] 25-39"):
        beyond.fetch(timeout_s=2)


def test_the_driver_reads_only_beyond_a_standing_watermark(kafka_settings: Settings) -> None:
    """A stream that pauses is tailed by the driver (the broker's watermark may lag its last messages); once new
    messages move the watermark, the partition goes back to ranges for the workers; every offset is handed out
    once, in order."""
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(kafka_settings, [topic], partitions=1)
    producer = Producer(kafka.producer_config(kafka_settings))
    consumer = Consumer(kafka.consumer_config(kafka_settings, f"tail-{uuid.uuid4().hex[:8]}"))
    reader = RangeReader(consumer, topic, kafka.consumer_config(kafka_settings, "nightjar-fetch"), still_s=0.5)
    consumer.subscribe([topic], on_assign=reader.on_assign, on_revoke=reader.on_revoke)
    handed: list[tuple[str, int]] = []  # ("range" or "driver", offset), in the order they were handed out

    def step() -> None:
        handed.extend(("driver", m.offset() or 0) for m in consumer.consume(100, timeout=0.2) if reader.accept(m))
        reader.available()
        handed.extend(("range", o) for r in reader.take(1000).ranges for o in range(r.start, r.stop))

    def until(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not done() and time.monotonic() < deadline:
            step()

    try:
        for _ in range(40):
            producer.produce(topic, b"x", partition=0)
        producer.flush(30)
        until(lambda: len(handed) == 40 and bool(reader.tailing))
        assert reader.tailing  # the watermark stood still: the driver reads beyond it
        # One record batch each (the embedded broker's watermark lags only the last one): when the driver next
        # looks, the watermark has moved by 199 while its consumer hands it at most 100 (``consume(100)``), so the
        # rest goes to the workers however fast the driver's consumer reads.
        for _ in range(200):
            producer.produce(topic, b"x", partition=0)
            producer.flush(30)
        until(lambda: not reader.tailing)
        assert not reader.tailing  # new messages moved the watermark: back to ranges
        until(lambda: len(handed) >= 240)
        assert [o for _, o in handed] == list(range(240))
        assert any(kind == "range" for kind, o in handed if o >= 40)  # the workers fetch the resumed stream
    finally:
        consumer.close()


def test_enough_known_messages_are_handed_out_without_asking_the_broker_again(kafka_settings: Settings) -> None:
    """``available(enough=n)`` answers from the watermarks last seen while they leave n messages to hand out (a
    busy broker answers watermark requests slowly); without ``enough`` it asks the broker."""
    topic = f"known-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(kafka_settings, [topic], partitions=1)
    producer = Producer(kafka.producer_config(kafka_settings))

    def produce(n: int) -> None:
        for _ in range(n):  # one record batch each: the embedded broker's watermark lags only the last one
            producer.produce(topic, b"x", partition=0)
            producer.flush(30)

    consumer = Consumer(kafka.consumer_config(kafka_settings, f"known-{uuid.uuid4().hex[:8]}"))
    reader = RangeReader(consumer, topic, kafka.consumer_config(kafka_settings, "nightjar-fetch"), still_s=60)
    consumer.subscribe([topic], on_assign=reader.on_assign, on_revoke=reader.on_revoke)
    try:
        produce(20)
        deadline = time.monotonic() + 30
        while reader.available() < 19 and time.monotonic() < deadline:
            consumer.consume(10, timeout=0.2)  # joins the group: the partition gets assigned
        seen = reader.available()
        assert seen >= 19
        produce(20)
        assert reader.available(enough=seen) == seen  # the watermark last seen leaves enough: not asked again
        assert reader.available() >= seen + 19  # asked: the new messages count
    finally:
        consumer.close()
