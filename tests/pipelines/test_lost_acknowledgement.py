"""A broker that stored filter matches but whose answer never came back (a broker killed between the two, a cut
connection) does not get them twice: the run reads back what reached the topic and sends only the rest (issue 12
item 13; with the producer resending on its own, each such match was on the topic twice)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from nightjar import records
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.streams import broker, kafka, simulate

N = 300
BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 5000"
PRODUCE = 0  # Kafka API key


def _frames(sock: socket.socket) -> Iterator[bytes]:
    """Kafka frames (4-byte length, then the message) read from ``sock`` until it closes."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= 4 and len(buffer) >= 4 + (size := struct.unpack(">i", buffer[:4])[0]):
            yield buffer[: 4 + size]
            buffer = buffer[4 + size :]


class AnswerLosingProxy:
    """Forwards Kafka connections to a broker; once ``lose_answer_to(topic)`` is armed, the broker's answer to
    the next Produce request naming ``topic`` is dropped and that client connection cut (the request stored, its
    acknowledgement lost)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.armed: bytes | None = None
        self.lost = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_answer_to(self, topic: str) -> None:
        with self.lock:
            self.armed = topic.encode()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:  # the broker is not listening yet
                client.close()
                continue
            doomed: set[bytes] = set()  # correlation ids whose answers are to be lost
            threading.Thread(target=self._requests, args=(client, server, doomed), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client, doomed), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, doomed: set[bytes]) -> None:
        for frame in _frames(client):
            api_key = struct.unpack(">h", frame[4:6])[0]
            with self.lock:
                if self.armed is not None and api_key == PRODUCE and self.armed in frame:
                    doomed.add(frame[8:12])
                    self.armed = None
            try:
                server.sendall(frame)
            except OSError:
                break
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)

    def _answers(self, server: socket.socket, client: socket.socket, doomed: set[bytes]) -> None:
        for frame in _frames(server):
            if frame[4:8] in doomed:  # the request was stored; its answer never arrives
                self.lost.set()
                break
            try:
                client.sendall(frame)
            except OSError:
                break
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def proxied_broker(tmp_path: Path) -> Iterator[AnswerLosingProxy]:
    """A broker that tells its clients to reach it through the proxy (its advertised address)."""
    port = broker.free_port()
    proxy = AnswerLosingProxy(port)
    with open(tmp_path / "tansu.log", "wb") as log:
        tansu = subprocess.Popen(
            [
                str(broker.tansu_binary()),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{proxy.port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            assert any(broker.is_ready(f"127.0.0.1:{proxy.port}") for _ in range(30)), "the broker did not start"
            yield proxy
        finally:
            tansu.terminate()
            tansu.wait(10)
            proxy.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_matches_whose_acknowledgement_was_lost_are_not_sent_twice(
    home: Path, proxied_broker: AnswerLosingProxy, dask_client: Client
) -> None:
    settings = Settings(
        home=home,
        kafka=f"127.0.0.1:{proxied_broker.port}",
        batch_size=100,
        batch_timeout_s=1.0,
        annotations_topic=f"annotations-{uuid.uuid4().hex[:8]}",
        kafka_outage_s=120,
    )
    topic = f"lost-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [topic], partitions=1)
    assert simulate.produce(settings, topic, N, seed=41) == N
    db = registry.engine(settings.metadata_url)
    bright = registry.add_filter(db, "bright", BRIGHT)
    db.dispose()
    proxied_broker.lose_answer_to(bright.topic)

    report = run(settings, dask_client, topic, idle_exit_s=10)

    assert proxied_broker.lost.is_set(), "no answer was lost: the test did not test anything"
    assert report.balanced and not report.filter_errors
    rows = records.to_records(query_lake(settings, BRIGHT))
    static = Counter(json.dumps(r, sort_keys=True, default=str) for r in rows)
    assert static, "the test needs matches"
    delivered = kafka.read_messages(settings, bright.topic, sum(static.values()) + 1, timeout_s=60)
    streamed = Counter(
        json.dumps({k: v for k, v in json.loads(m.value).items() if k != "UTC"}, sort_keys=True) for m in delivered
    )
    assert streamed == static
