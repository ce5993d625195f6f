from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from nightjar.streams import broker


def test_start_status_stop(tmp_path: Path) -> None:
    port = broker.free_port()
    state = broker.start(tmp_path, port)
    try:
        assert state.port == port
        assert broker.is_ready(state.bootstrap)
        # Starting again for the same home returns the running broker instead of a second one.
        assert broker.start(tmp_path, port) == state
        assert broker.read_state(tmp_path) == state
    finally:
        assert broker.stop(tmp_path)
    assert broker.read_state(tmp_path) is None
    assert not broker.stop(tmp_path)
    assert broker.port_is_free(port)


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(broker.BrokerError, match=f"port {port} .* is taken"):
            broker.start(tmp_path, port)


def test_start_right_after_stop_on_the_same_port(tmp_path: Path) -> None:
    """A broker stopped while clients were connected leaves their connections in TIME_WAIT; starting it again at
    once must not say the port is taken (issue 12 item 13)."""
    from confluent_kafka import Producer

    port = broker.free_port()
    state = broker.start(tmp_path, port)
    producer = Producer({"bootstrap.servers": state.bootstrap, "log_level": 0})
    try:
        producer.produce("restart-probe", b"x")
        assert producer.flush(20) == 0  # a live connection to the broker
        assert broker.stop(tmp_path)
        again = broker.start(tmp_path, port)
        assert again.port == port and broker.is_ready(again.bootstrap)
    finally:
        broker.stop(tmp_path)
        del producer


def _topic_with_messages(bootstrap: str, topic: str, producers: int, each: int) -> None:
    """``producers`` producers writing ``each`` messages to one partition at the same time."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(10)
    errors: list[object] = []

    def produce(i: int) -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "log_level": 0})
        for j in range(each):
            producer.produce(topic, f"{i}-{j}".encode(), on_delivery=lambda e, m: e and errors.append(e))
            producer.poll(0)
        assert producer.flush(60) == 0

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def _read(bootstrap: str, topic: str, start: int, expected: int) -> list[tuple[int, bytes]]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, start)])
    found: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 60
    try:
        while len(found) < expected and time.monotonic() < deadline:
            found += [(m.offset() or 0, m.value() or b"") for m in consumer.consume(1000, 0.5) if not m.error()]
    finally:
        consumer.close()
    return found


def _committed(bootstrap: str, topic: str, group: str, offset: int | None = None) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        if offset is not None:
            consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    return int(tp.offset)


def _wait_until_dead(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while broker._alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive {timeout_s:.0f} s after SIGKILL"
        time.sleep(0.02)


def test_disk_storage_survives_a_restart(tmp_path: Path) -> None:
    """Topics, messages and committed offsets are found again after `broker stop` and `start`, and after the
    broker was killed and started again (issue 12 item 13: dev and demo survive a broker restart)."""
    port = broker.free_port()
    state = broker.start(tmp_path, port, storage="disk")
    try:
        assert state.storage == "disk" and state.store_pid is not None
        _topic_with_messages(state.bootstrap, "kept", producers=1, each=500)
        assert _committed(state.bootstrap, "kept", "g", offset=321) == 321
        assert broker.stop(tmp_path)
        assert broker.read_state(tmp_path) is None

        again = broker.start(tmp_path, port, storage="disk")
        assert "kept" in AdminClient({"bootstrap.servers": again.bootstrap}).list_topics(timeout=10).topics
        assert _committed(again.bootstrap, "kept", "g") == 321
        assert [o for o, _ in _read(again.bootstrap, "kept", 490, 10)] == list(range(490, 500))

        # Killed, not stopped: its storage server is left behind; the next start replaces it and finds everything.
        os.kill(again.pid, signal.SIGKILL)
        _wait_until_dead(again.pid)  # SIGKILL is delivered when the process is next scheduled, not at once
        assert broker.read_state(tmp_path) is None
        third = broker.start(tmp_path, port, storage="disk")
        assert third.store_pid != again.store_pid
        assert again.store_pid is not None and not broker._alive(again.store_pid)
        assert _committed(third.bootstrap, "kept", "g") == 321
        assert len(_read(third.bootstrap, "kept", 0, 500)) == 500
    finally:
        broker.stop(tmp_path)
    assert state.store_pid is not None and not broker._alive(state.store_pid)


def test_disk_storage_gives_concurrent_producers_distinct_offsets(tmp_path: Path) -> None:
    """Tansu hands out offsets with conditional writes: with four producers on one partition at once, every
    message gets its own offset, none is lost (a storage server ignoring If-Match gave thousands of clashes)."""
    state = broker.start(tmp_path, broker.free_port(), storage="disk")
    try:
        _topic_with_messages(state.bootstrap, "busy", producers=4, each=1000)
        found = _read(state.bootstrap, "busy", 0, 4000)
    finally:
        broker.stop(tmp_path)
    assert [o for o, _ in found] == list(range(4000))
    assert len({v for _, v in found}) == 4000
