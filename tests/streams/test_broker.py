from __future__ import annotations

import socket
from pathlib import Path

import pytest

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
