"""Kafka client configuration and topic administration, shared by every producer and consumer.

Two clusters: the input cluster (``NIGHTJAR_KAFKA``: the alert topics) and the output cluster
(``NIGHTJAR_KAFKA_OUTPUT``: filter topics, dead letters, annotations), the same one unless set. Each has its
librdkafka properties (SASL, SSL) from ``NIGHTJAR_KAFKA_CONFIG`` / ``NIGHTJAR_KAFKA_OUTPUT_CONFIG``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from nightjar.errors import UserError
from nightjar.settings import Settings
from nightjar.streams import broker

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


Cluster = Literal["input", "output"]
INPUT: Cluster = "input"
OUTPUT: Cluster = "output"
# Properties whose values are secrets: never printed (see ``redacted``).
SECRET_WORDS = ("password", "secret", "key", "token", "credential", "jaas")


class KafkaNotConfigured(UserError, RuntimeError):
    """Neither NIGHTJAR_KAFKA nor a running embedded broker."""


class KafkaUnreachable(RuntimeError):
    """A Kafka cluster that does not answer, or refuses the connection (wrong security settings)."""


def separate_output(settings: Settings) -> bool:
    """Whether the output cluster is another cluster than the input one."""
    return bool(settings.kafka_output) and settings.kafka_output != settings.kafka


def bootstrap_servers(settings: Settings, cluster: Cluster = INPUT) -> str:
    """The bootstrap servers of ``cluster``: ``NIGHTJAR_KAFKA_OUTPUT`` for the output cluster when set, else
    ``NIGHTJAR_KAFKA``, else the embedded broker running for ``NIGHTJAR_HOME``."""
    if cluster == OUTPUT and settings.kafka_output:
        return settings.kafka_output
    if settings.kafka:
        return settings.kafka
    state = broker.read_state(Path(settings.home))
    if state is None:
        raise KafkaNotConfigured(
            "no Kafka: start the embedded broker with `nightjar broker start` or set NIGHTJAR_KAFKA"
        )
    return state.bootstrap


def security_config(settings: Settings, cluster: Cluster = INPUT) -> dict[str, Any]:
    """The librdkafka properties of ``cluster`` from the settings, secrets revealed (for the client only)."""
    chosen = settings.kafka_config
    if cluster == OUTPUT and separate_output(settings):
        chosen = settings.kafka_output_config or {}
    elif cluster == OUTPUT and settings.kafka_output_config is not None:
        chosen = settings.kafka_output_config
    return {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in chosen.items()}


def client_config(settings: Settings, cluster: Cluster = INPUT) -> dict[str, Any]:
    """What every client of ``cluster`` needs: its bootstrap servers and security properties."""
    return {"bootstrap.servers": bootstrap_servers(settings, cluster), **security_config(settings, cluster)}


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` fit for a log line: the values of secret properties replaced.

    >>> redacted({"sasl.username": "nightjar", "sasl.password": "hunter2"})
    {'sasl.username': 'nightjar', 'sasl.password': '***'}
    """
    return {k: "***" if any(w in k.lower() for w in SECRET_WORDS) else v for k, v in config.items()}


def producer_config(settings: Settings, cluster: Cluster = INPUT, **extra: Any) -> dict[str, Any]:
    """A producer of ``cluster``: the input cluster for alerts (simulate, replay), the output cluster for
    filter matches, dead letters and annotations."""
    config: dict[str, Any] = {
        **client_config(settings, cluster),
        "linger.ms": 20,
        "message.max.bytes": max(settings.max_message_bytes * 2, 1_000_000),
        "enable.idempotence": False,
    }
    config.update(extra)
    return config


def consumer_config(settings: Settings, group: str, cluster: Cluster = INPUT, **extra: Any) -> dict[str, Any]:
    """A consumer's configuration for ``group`` on ``cluster``: reading from the earliest offset, committing by hand,
    with the session timeout of the settings; ``extra`` overrides any of it."""
    config: dict[str, Any] = {
        **client_config(settings, cluster),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        # Tansu admits a member only after half of the session timeout: keep it short.
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
    }
    config.update(extra)
    return config


def produce_one(producer: Producer, topic: str, value: bytes, key: bytes | None = None, **options: Any) -> None:
    """Queue one message on ``producer`` (``options``: ``produce``'s others, e.g. ``headers``, ``timestamp``),
    letting deliveries drain while its local queue is full; then serve the delivery callbacks due."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, **options)
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)


def ensure_topics(
    settings: Settings, topics: list[str], partitions: int | None = None, cluster: Cluster = INPUT
) -> None:
    """Create the topics of ``cluster`` that do not exist yet, with the configured partitions, replication
    factor and topic configuration."""
    admin = AdminClient(client_config(settings, cluster))
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=partitions or settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                config=dict(settings.topic_config),
            )
            for t in wanted
        ]
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=10)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        del topic


# Errors that no wait cures: a call that is wrong, not a broker that is away.
NOT_AN_OUTAGE = (KafkaError._NO_OFFSET, KafkaError._INVALID_ARG)


def retrying(
    call: Callable[[], T],
    what: str,
    patience_s: float,
    on_retry: Callable[[], None] | None = None,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """``call()``, tried again with exponential back-off (0.5 s doubling up to 30 s) while Kafka does not answer
    (``KafkaException``, or the embedded broker not running), for up to ``patience_s``; then the last error is
    raised. A broker that goes away and comes back (a restart, a network cut) pauses the run instead of ending it.

    Errors no broker coming back can cure (a fatal error, a commit of nothing) are raised at once. ``retry_on``:
    more exception types that mean the broker is away, unless their ``outage`` attribute says otherwise.
    ``on_retry`` is called before each wait (the run restarts its idle clock after an outage).
    """
    deadline = time.monotonic() + patience_s
    delay = RETRY_FIRST_S
    caught: tuple[type[Exception], ...] = (KafkaException, KafkaNotConfigured, *retry_on)
    while True:
        try:
            return call()
        except caught as exc:
            error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
            if isinstance(error, KafkaError) and (error.fatal() or error.code() in NOT_AN_OUTAGE):
                raise
            if not getattr(exc, "outage", True):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning("kafka unavailable (%s): %s; retrying in %.1f s", what, exc, min(delay, left))
            if on_retry is not None:
                on_retry()
            time.sleep(min(delay, left))  # back-off between attempts, not a synchronisation
            delay = min(delay * 2, RETRY_MAX_S)


COMMIT_WAIT_S = 10.0
"""How long an offset commit is waited for before the broker is taken for away (``Committer``)."""


class _Commit:
    """One synchronous commit running on a daemon thread of its own."""

    def __init__(self, key: tuple[tuple[str, int, int], ...], call: Callable[[], object]) -> None:
        self.key = key
        self.done = threading.Event()
        self.error: BaseException | None = None

        def go() -> None:
            try:
                call()
            except BaseException as exc:  # handed to the caller that waits for this commit
                self.error = exc
            finally:
                self.done.set()

        threading.Thread(target=go, name="kafka-commit", daemon=True).start()


class Committer:
    """Synchronous offset commits of one group consumer, each waited for at most ``wait_s`` at a time.

    librdkafka has no timeout for a synchronous commit: while the group coordinator does not answer (a broker
    killed, frozen or overloaded) it sends the commit again every ``socket.timeout.ms`` for as long as that lasts,
    and the caller waits with it, saying nothing. Here the commit runs on a thread of its own; ``commit`` raises a
    ``KafkaException`` (``_TIMED_OUT``) when it did not end within ``wait_s``, so that ``retrying`` reports the
    outage and tries again. Trying again with the same offsets waits for the commit already under way (nothing
    is sent twice), and a commit of other offsets starts only after the previous one ended: commits reach the
    broker in the order they were asked for, so a late one never lands after a later one.
    """

    def __init__(self, consumer: Consumer, wait_s: float = COMMIT_WAIT_S) -> None:
        self.consumer = consumer
        self.wait_s = wait_s
        self._pending: _Commit | None = None

    def _timed_out(self, what: str) -> KafkaException:
        return KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{what} not answered within {self.wait_s:.0f} s"))

    def commit(self, offsets: list[TopicPartition]) -> None:
        """Commit ``offsets`` synchronously, waiting at most ``wait_s`` (a ``_TIMED_OUT`` KafkaException after that); an
        earlier commit of other offsets still under way is waited for first."""
        key = tuple(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))
        if self._pending is not None and self._pending.key != key:
            if not self._pending.done.wait(self.wait_s):  # an earlier commit is still under way: it goes first
                raise self._timed_out("an earlier offset commit")
            self._pending = None
        if self._pending is None:
            self._pending = _Commit(key, lambda: self.consumer.commit(offsets=offsets, asynchronous=False))
        pending = self._pending
        if not pending.done.wait(self.wait_s):
            raise self._timed_out("offset commit")
        self._pending = None
        if pending.error is not None:
            raise pending.error

    def settle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a commit still under way (before the consumer is closed); whether none is."""
        return self._pending is None or self._pending.done.wait(timeout_s)


@dataclass(frozen=True)
class ReadMessage:
    """One message read back from a topic: value, headers, partition, offset and timestamp."""

    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int
    timestamp_ms: int = 0


def read_messages(
    settings: Settings, topic: str, expected: int, timeout_s: float = 30.0, cluster: Cluster = OUTPUT
) -> list[ReadMessage]:
    """The messages of ``topic`` (on the output cluster unless told) from its start, with a throw-away group,
    until ``expected`` arrived.

    Stops early when nothing new came for 5 s after the first message. Tansu's high watermark can be wrong,
    so the count expected is the caller's, not the broker's.
    """
    consumer = Consumer(consumer_config(settings, f"nightjar-read-{uuid.uuid4().hex}", cluster))
    consumer.subscribe([topic])
    found: list[ReadMessage] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline and len(found) < expected:
            batch = [m for m in consumer.consume(num_messages=10_000, timeout=0.5) if not m.error()]
            found.extend(ReadMessage(m.value() or b"", _headers(m), m.partition() or 0, m.offset() or 0) for m in batch)
            if batch:
                quiet_since = time.monotonic()
            elif found and time.monotonic() - quiet_since > 5:
                break
    finally:
        consumer.close()
    return found


def read_last_messages(
    settings: Settings, topic: str, limit: int, quiet_s: float = 1.0, timeout_s: float = 15.0
) -> list[ReadMessage]:
    """The last ``limit`` messages of ``topic`` on the output cluster (all partitions, oldest first); none if the
    topic does not exist.

    Each partition is assigned (no consumer group, so no wait to join one) from ``limit`` before its high
    watermark and read until the topic stays quiet for ``quiet_s``: Tansu's high watermark can lag behind the
    real end, so more than ``limit`` may be read and only the newest kept.
    """
    if limit < 1:
        return []
    consumer = Consumer(
        consumer_config(settings, f"nightjar-tail-{uuid.uuid4().hex}", OUTPUT, **{"allow.auto.create.topics": False})
    )
    found: list[ReadMessage] = []
    try:
        info = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            return []
        starts, expected = [], 0
        for partition in info.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            start = max(low, high - limit, 0)
            expected += max(high - start, 0)
            starts.append(TopicPartition(topic, partition, start))
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(num_messages=10_000, timeout=0.25) if not m.error()]
            found.extend(
                ReadMessage(m.value() or b"", _headers(m), m.partition() or 0, m.offset() or 0, m.timestamp()[1])
                for m in batch
            )
            if batch:
                quiet_since = time.monotonic()
            elif len(found) >= expected or time.monotonic() - quiet_since > quiet_s:
                break
    finally:
        consumer.close()
    found.sort(key=lambda m: (m.timestamp_ms, m.partition, m.offset))
    return found[-limit:]


def _headers(message: Message) -> dict[str, bytes]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v.encode() if isinstance(v, str) else (v or b"") for k, v in pairs}


def check_reachable(settings: Settings, cluster: Cluster = INPUT, timeout_s: float = 10.0) -> None:
    """Raise ``KafkaUnreachable`` with what librdkafka reported when ``cluster`` does not answer within
    ``timeout_s``: a broker that is down, or one that refuses these security settings (a SASL client on a
    plaintext listener, a wrong password, an unknown CA) instead of a run that waits for it for ever."""
    reports: list[str] = []

    def heard(error: KafkaError) -> None:
        reports.append(error.str())

    config = client_config(settings, cluster)
    probe: dict[str, Any] = {**config, "error_cb": heard, "socket.timeout.ms": int(timeout_s * 1000), "log_level": 0}
    admin = AdminClient(probe)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        reports.append(str(exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else exc))
    else:
        return
    shown = {k: v for k, v in redacted(config).items() if k != "bootstrap.servers"}
    where = "NIGHTJAR_KAFKA_OUTPUT" if cluster == OUTPUT and settings.kafka_output else "NIGHTJAR_KAFKA"
    raise KafkaUnreachable(
        f"the Kafka {cluster} cluster at {config['bootstrap.servers']} ({where}) did not answer within "
        f"{timeout_s:.0f} s with the client properties {shown or '{} (plaintext)'}: "
        f"{'; '.join(dict.fromkeys(reports)) or 'no answer'}. Check the address and, for SASL/SSL, "
        "security.protocol, sasl.mechanism and the credentials in NIGHTJAR_KAFKA_CONFIG"
        + (" / NIGHTJAR_KAFKA_OUTPUT_CONFIG" if cluster == OUTPUT else "")
    )
