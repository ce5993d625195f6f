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

from nightjar.cluster import local_cluster
from nightjar.settings import Settings
from nightjar.storage import LakeRoot
from nightjar.streams import broker, kafka_ranges

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
        kafka_ranges.close_pooled_consumers()  # this process's fetchers, before their broker goes
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


class PostgresServer:
    """A private PostgreSQL cluster (Debian's ``postgresql`` binaries: ``make postgres``) on a free loopback port,
    for the session; each test that asks gets a database of its own. It runs as the ``postgres`` system user when
    the tests run as root (PostgreSQL refuses root). ``NIGHTJAR_TEST_POSTGRES_URL`` (a superuser's URL on an
    existing server) is used instead when set."""

    def __init__(self, admin_url: str, data_dir: Path | None = None, ctl: list[str] | None = None) -> None:
        self.admin_url = admin_url
        self.data_dir = data_dir
        self.ctl = ctl or []  # pg_ctl on our cluster, as its user
        self.names = iter(f"nightjar_test_{os.getpid()}_{i}" for i in range(1_000_000))

    @staticmethod
    def binaries() -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        if os.environ.get("NIGHTJAR_TEST_PG_BINDIR"):
            found = [Path(os.environ["NIGHTJAR_TEST_PG_BINDIR"]) / "initdb"]
        if not found or not found[-1].is_file():
            pytest.fail("PostgreSQL's server binaries were not found: run `make postgres` (Debian's postgresql)")
        return found[-1].parent

    @classmethod
    def start(cls) -> PostgresServer:
        import shutil
        import tempfile

        bindir = cls.binaries()
        run_as: list[str] = []
        data = Path(tempfile.mkdtemp(prefix="nightjar-pg-"))
        if os.geteuid() == 0:
            run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(data, "postgres", "postgres")
        port = broker.free_port()
        step = [*run_as, str(bindir / "initdb"), "-D", str(data / "db"), "-U", "nightjar", "--auth=trust", "-E", "UTF8"]
        subprocess.run([*step, "--no-sync"], check=True, capture_output=True, timeout=120)
        # Durability is not what these tests check: no fsync makes a database per test cheap.
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        options += " -c synchronous_commit=off -c max_connections=200"
        ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "server.log")]
        started = subprocess.run([*ctl, "-o", options, "-w", "-t", "60", "start"], capture_output=True, text=True)
        if started.returncode != 0:
            log = (data / "server.log").read_text() if (data / "server.log").is_file() else ""
            pytest.fail(f"PostgreSQL did not start: {started.stderr}{log}")
        return cls(f"postgresql+psycopg://nightjar@127.0.0.1:{port}/postgres", data, ctl)

    def stop(self) -> None:
        import shutil

        if self.data_dir is not None:
            subprocess.run([*self.ctl, "stop", "-m", "immediate", "-w"], capture_output=True, timeout=60)
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _admin(self, statement: str) -> None:
        from sqlalchemy import create_engine, text

        eng = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with eng.connect() as con:
                con.execute(text(statement))
        finally:
            eng.dispose()

    def create_database(self) -> str:
        """A new empty database; its URL."""
        from sqlalchemy.engine import make_url

        name = next(self.names)
        self._admin(f'CREATE DATABASE "{name}"')
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self._admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (see ``PostgresServer``)."""
    if os.environ.get("NIGHTJAR_TEST_POSTGRES_URL"):
        yield PostgresServer(os.environ["NIGHTJAR_TEST_POSTGRES_URL"])
        return
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


class S3Server:
    """A real S3-compatible server (moto's, from ``moto[server]``) in its own process on a loopback port.

    Its own process, not moto's threaded server inside the test process: delta-rs blocks the calling thread (and
    the GIL) while it waits for the server, so a server thread in the same interpreter never answers.
    """

    def __init__(self, process: subprocess.Popen[bytes], endpoint: str) -> None:
        self.process = process
        self.endpoint = endpoint
        self.names = (f"lake-{uuid.uuid4().hex[:12]}" for _ in iter(int, 1))

    @classmethod
    def start(cls, timeout_s: float = 60.0) -> S3Server:
        import sys
        import urllib.error
        import urllib.request

        port = broker.free_port()
        server = Path(sys.executable).parent / "moto_server"
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:  # readiness: the server answers HTTP
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    return cls(process, endpoint)
            except (urllib.error.URLError, ConnectionError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail(f"the S3 server did not start on {endpoint}")
                time.sleep(0.1)

    @property
    def options(self) -> dict[str, str]:
        """delta-rs storage options reaching the server (path-style requests over plain HTTP)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "nightjar-test",
            "AWS_SECRET_ACCESS_KEY": "nightjar-test-secret",
            "AWS_ALLOW_HTTP": "true",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        }

    def create_bucket(self) -> str:
        """A new empty bucket; its name."""
        import pyarrow.fs as pafs

        name = next(self.names)
        options = self.options
        pafs.S3FileSystem(
            access_key=options["AWS_ACCESS_KEY_ID"],
            secret_key=options["AWS_SECRET_ACCESS_KEY"],
            region=options["AWS_REGION"],
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        ).create_dir(name)
        return name

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server for the session (see ``S3Server``)."""
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_lake(s3_server: S3Server) -> LakeRoot:
    """A lake in a fresh bucket of the session's S3 server (``s3://<bucket>/lake``)."""
    return LakeRoot(f"s3://{s3_server.create_bucket()}/lake", s3_server.options)


@pytest.fixture
def s3_settings(home: Path, s3_lake: LakeRoot, database_url: str | None) -> Settings:
    """Settings with a local home (metadata, jobs) and the lake on the S3 server."""
    return Settings(home=home, lake_uri=s3_lake.uri, storage_options=dict(s3_lake.options), database_url=database_url)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``) the slow end-to-end tests run one after another in
    one process: two of them side by side (clusters, brokers, ``nightjar run`` processes) would overload two cores."""
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("slow"))


DATABASES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_databases`` run twice: metadata on SQLite, then on PostgreSQL."""
    if "database_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("database_url", DATABASES, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The metadata database of ``settings``: None (SQLite under the home) or a fresh PostgreSQL database's URL.
    ``NIGHTJAR_TEST_METADATA=postgresql`` puts every test's metadata on PostgreSQL."""
    kind = getattr(request, "param", None) or os.environ.get("NIGHTJAR_TEST_METADATA", "sqlite")
    if kind not in DATABASES:
        pytest.fail(f"NIGHTJAR_TEST_METADATA must be one of {', '.join(DATABASES)}, not {kind!r}")
    if kind == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(home: Path, database_url: str | None) -> Settings:
    """Settings on a fresh home, with no broker (tests that need Kafka use ``kafka_settings``); the metadata
    database is SQLite under the home, or a fresh PostgreSQL database (see ``database_url``)."""
    return Settings(home=home, batch_size=500, batch_timeout_s=1.0, database_url=database_url)


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
        if eng.dialect.name == "postgresql":
            statement = "SELECT setval(pg_get_serial_sequence('filters', 'id'), :base)"
        else:
            statement = "INSERT INTO sqlite_sequence (name, seq) VALUES ('filters', :base)"
        con.execute(text(statement), {"base": next(_FILTER_ID_BASES)})
    eng.dispose()


@pytest.fixture
def kafka_settings(home: Path, kafka_bootstrap: str, database_url: str | None) -> Settings:
    # Each test its own annotations topic: every pipeline subscribes to it, and the broker lives for the session.
    settings = Settings(
        home=home,
        kafka=kafka_bootstrap,
        database_url=database_url,
        batch_size=500,
        batch_timeout_s=1.0,
        annotations_topic=f"annotations-{uuid.uuid4().hex[:8]}",
    )
    unique_filter_ids(settings.metadata_url)
    return settings


def build_lake(home: Path, alerts: int, batches: int, seed: int = 7, topic: str = "sim") -> list[bytes]:
    """Commit ``alerts`` simulated alerts to a real lake in ``batches`` commits (one Delta version each)."""
    from nightjar.pipelines import lake_write, stages
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
        lake_write.commit_to_lake(decoded, home, {f"nightjar:{topic}:0": start + len(chunk) - 1})
    return payloads


@pytest.fixture(scope="session")
def lake_builder() -> Any:
    """``build_lake(home, alerts, batches, seed=7, topic="sim")``: a small real lake without Kafka or Dask."""
    return build_lake
