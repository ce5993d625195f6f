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
