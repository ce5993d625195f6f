"""Offset commits the broker does not answer: waited for in slices, reported as an outage, and never backwards.

librdkafka gives a synchronous commit no timeout: a broker that stops answering (frozen, killed, overloaded) kept
``nightjar run`` waiting in its commit for minutes without a word (a flaky ``test_broker_outage``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from nightjar.settings import Settings
from nightjar.streams import broker, kafka, simulate

WAIT_S = 2.0


@pytest.fixture
def frozen_settings(tmp_path: Path) -> Iterator[tuple[Settings, broker.BrokerState]]:
    """Settings for a broker of the test's own (it is frozen); the group's session outlasts the freeze."""
    home = tmp_path / "broker-home"
    state = broker.start(home, broker.free_port(), timeout_s=30)
    try:
        yield Settings(home=tmp_path, kafka=state.bootstrap, kafka_session_timeout_ms=20_000), state
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGCONT)
        broker.stop(home)


def _committed(settings: Settings, group: str, tp: TopicPartition) -> int:
    reader = Consumer(kafka.consumer_config(settings, group))
    try:
        [found] = reader.committed([tp], timeout=30)
    finally:
        reader.close()
    return int(found.offset)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_commit_the_broker_does_not_answer_times_out_and_lands_in_order_once_it_answers(
    frozen_settings: tuple[Settings, broker.BrokerState],
) -> None:
    settings, state = frozen_settings
    topic, group = f"commits-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [topic], partitions=1)
    assert simulate.produce(settings, topic, 20, seed=5) == 20
    consumer = Consumer(kafka.consumer_config(settings, group))
    assigned: list[TopicPartition] = []
    consumer.subscribe([topic], on_assign=lambda c, parts: assigned.extend(parts))
    deadline = time.monotonic() + 60
    while not assigned and time.monotonic() < deadline:
        consumer.consume(num_messages=100, timeout=0.5)
    assert assigned, "the group never assigned the partition"
    committer = kafka.Committer(consumer, wait_s=WAIT_S)
    try:
        committer.commit([TopicPartition(topic, 0, 5)])
        assert _committed(settings, group, TopicPartition(topic, 0)) == 5

        os.kill(state.pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            with pytest.raises(KafkaException) as caught:
                committer.commit([TopicPartition(topic, 0, 10)])
            # Reported as an outage after the wait, not after librdkafka's minutes of retries.
            assert caught.value.args[0].code() == KafkaError._TIMED_OUT
            assert time.monotonic() - began < WAIT_S + 10  # librdkafka alone: no answer for minutes
            # A later commit waits for the one under way: it cannot overtake it.
            with pytest.raises(KafkaException) as caught:
                committer.commit([TopicPartition(topic, 0, 15)])
            assert caught.value.args[0].code() == KafkaError._TIMED_OUT
        finally:
            os.kill(state.pid, signal.SIGCONT)
        # The broker answers again: the commit goes through, after the earlier one, and the group's offset is the
        # later one (the earlier commit did not land after it: never backwards).
        kafka.retrying(lambda: committer.commit([TopicPartition(topic, 0, 15)]), "commit offsets", 60)
        assert _committed(settings, group, TopicPartition(topic, 0)) == 15
    finally:
        assert committer.settle(30)
        consumer.close()
