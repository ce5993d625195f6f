"""Shared fixtures: a real Kafka-protocol broker and a real Dask LocalCluster per session, a fresh home per test."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from nightjar.pipelines.cluster import local_cluster
from nightjar.settings import Settings
from nightjar.streams import broker

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The real alerts and catalogues: ``NIGHTJAR_SHARED_DATA``, else ``../shared/data`` beside the checkout.

    A local clone of a checkout (``git clone . /tmp/x``) also finds the data beside the checkout it came from.
    """
    if "NIGHTJAR_SHARED_DATA" in os.environ:
        return Path(os.environ["NIGHTJAR_SHARED_DATA"])
    candidates = [REPO.parent / "shared" / "data"]
    origin = subprocess.run(
        ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"], capture_output=True, text=True
    ).stdout.strip()
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), candidates[0])


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data()
    if not path.is_dir():
        pytest.fail(f"shared data not found at {path}; set NIGHTJAR_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Tansu broker on a free loopback port, for the whole session."""
    home = tmp_path_factory.mktemp("broker-home")
    state = broker.start(home, broker.free_port(), timeout_s=30)
    try:
        yield state.bootstrap
    finally:
        broker.stop(home)


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A real distributed.LocalCluster started as ``nightjar run`` starts one with the default settings (two
    worker processes of two threads each)."""
    with local_cluster(Settings()) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "nightjar-home"
    path.mkdir()
    return path


@pytest.fixture
def settings(home: Path) -> Settings:
    """Settings on a fresh home, with no broker (tests that need Kafka use ``kafka_settings``)."""
    return Settings(home=home, batch_size=500, batch_timeout_s=1.0)


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpServer:
    """A real SMTP server (aiosmtpd) on loopback; ``inbox`` holds what it received."""

    host: str
    port: int
    inbox: list[Mail] = field(default_factory=list)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Mail]:
        deadline = time.monotonic() + timeout_s
        while len(self.inbox) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.inbox)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller

    server = SmtpServer("127.0.0.1", broker.free_port())

    class Handler:
        async def handle_DATA(self, _server: object, _session: object, envelope: Any) -> str:
            parsed = BytesParser(policy=email_policy.default).parsebytes(envelope.content)
            assert isinstance(parsed, EmailMessage)
            server.inbox.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), parsed))
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname=server.host, port=server.port)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on loopback recording every POST; ``status`` sets its answer, ``hold`` makes it wait."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.status = 200
        self.hold_from: int | None = None  # requests from this number on wait for ``release``
        self.holding = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append(Post(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.hold_from is not None and len(receiver.posts) >= receiver.hold_from:
                    receiver.holding.set()
                    receiver.release.wait(300)
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


_FILTER_ID_BASES = iter(range(1_000, 10_000_000, 1_000))


def unique_filter_ids(url: str) -> None:
    """Start this metadata database's filter ids where no other test's are: the broker (and so the filter topics
    ``nightjar.filter.<id>``) is shared by the whole session, the metadata database is not."""
    from sqlalchemy import text

    from nightjar.sql import registry

    eng = registry.engine(url)
    with eng.begin() as con:
        con.execute(
            text("INSERT INTO sqlite_sequence (name, seq) VALUES ('filters', :base)"), {"base": next(_FILTER_ID_BASES)}
        )
    eng.dispose()


@pytest.fixture
def kafka_settings(home: Path, kafka_bootstrap: str) -> Settings:
    # Each test its own annotations topic: every pipeline subscribes to it, and the broker lives for the session.
    settings = Settings(
        home=home,
        kafka=kafka_bootstrap,
        batch_size=500,
        batch_timeout_s=1.0,
        annotations_topic=f"annotations-{uuid.uuid4().hex[:8]}",
    )
    unique_filter_ids(settings.metadata_url)
    return settings


def build_lake(home: Path, alerts: int, batches: int, seed: int = 7, topic: str = "sim") -> list[bytes]:
    """Commit ``alerts`` simulated alerts to a real lake in ``batches`` commits (one Delta version each)."""
    from nightjar.pipelines import stages
    from nightjar.streams import simulate
    from nightjar.streams.decode import RawBatch, decode_batch

    # No history before the first night: every packet-history detection is then an earlier alert of the same
    # lake, so ``sources`` holds exactly one row per alert and counts stay simple.
    config = simulate.SimConfig(history_days=0)
    payloads = [a.payload for a in simulate.generate_alerts(alerts, seed=seed, config=config)]
    size = -(-alerts // batches)
    for start in range(0, alerts, size):
        chunk = payloads[start : start + size]
        raw = RawBatch(chunk, [topic] * len(chunk), [0] * len(chunk), list(range(start, start + len(chunk))))
        decoded = stages.locate(decode_batch(raw), partition_order=5)
        stages.commit_to_lake(decoded, home, {f"nightjar:{topic}:0": start + len(chunk) - 1})
    return payloads


@pytest.fixture(scope="session")
def lake_builder() -> Any:
    """``build_lake(home, alerts, batches, seed=7, topic="sim")``: a small real lake without Kafka or Dask."""
    return build_lake
