"""Delivery to Kafka: filter matches to their topics and rejected alerts to the dead-letter topic."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from confluent_kafka import KafkaError, Message, Producer

from nightjar import paths
from nightjar.streams import kafka

log = logging.getLogger(__name__)
Headers = list[tuple[str, str | bytes | None]]
FLUSH_SLICE_S = 10.0  # a flush that waits longer says so, once per slice


# Delivery errors of a broker that is away or restarting (not of a message it refused): worth another attempt.
OUTAGE_ERRORS = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


class FilterTopic(Protocol):
    """What the headers of a filter's matches name (``sql.registry.Filter`` is one)."""

    @property
    def id(self) -> int:
        """The filter's id."""
        ...

    @property
    def name(self) -> str:
        """The filter's name."""
        ...

    @property
    def version(self) -> int:
        """The filter's version."""
        ...

    @property
    def topic(self) -> str:
        """The Kafka topic of the filter's matches."""
        ...


class DeliveryError(RuntimeError):
    """Messages the broker did not acknowledge. ``outage``: only because it was away (no answer, a lost
    connection): another attempt may succeed."""

    def __init__(self, message: str, outage: bool = False) -> None:
        super().__init__(message)
        self.outage = outage


class Publisher:
    """A producer that counts failed deliveries, so the caller commits offsets only after a clean flush."""

    def __init__(self, config: dict[str, object]) -> None:
        self._producer = Producer(config)
        self._errors: list[tuple[str, KafkaError]] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append((f"{msg.topic()}: {err}", err))

    def _produce(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        kafka.produce_one(self._producer, topic, value, key, headers=headers, on_delivery=self._on_delivery)

    def dead_letter(self, topic: str, partition: int, offset: int, payload: bytes, reason: str) -> None:
        """Send an alert that could not be accepted to ``<topic>.dlq`` with the reason and its origin."""
        headers: Headers = [
            ("nightjar.reason", reason.encode()),
            ("nightjar.source.topic", topic.encode()),
            ("nightjar.source.partition", str(partition).encode()),
            ("nightjar.source.offset", str(offset).encode()),
        ]
        self._produce(paths.dead_letter_topic(topic), payload, None, headers)

    def filter_matches(
        self,
        flt: FilterTopic,
        payloads: list[bytes],
        keys: list[str] | None = None,
        object_ids: list[int] | None = None,
        extra: Headers | None = None,
    ) -> None:
        """Send a filter's matches to its topic; the filter's name and version travel in the headers.

        ``keys`` (the delivery key of each match) go in the ``nightjar.key`` header, so that what reached the
        topic can be read back after a crash; ``object_ids`` become the message keys (one object, one partition).
        """
        headers: Headers = [
            ("nightjar.filter.id", str(flt.id).encode()),
            ("nightjar.filter.name", flt.name.encode()),
            ("nightjar.filter.version", str(flt.version).encode()),
            *(extra or []),
        ]
        for i, payload in enumerate(payloads):
            own = headers if keys is None else [*headers, ("nightjar.key", keys[i].encode())]
            key = None if object_ids is None else str(object_ids[i]).encode()
            self._produce(flt.topic, payload, key, own)

    def raw(self, topic: str, payload: bytes, key: bytes | None = None) -> None:
        """Send an unmodified message (replays)."""
        self._produce(topic, payload, key, [])

    def close(self) -> None:
        """Send what is queued and release the connection."""
        self._producer.flush(10)
        self._producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every message; DeliveryError if any was not acknowledged within ``timeout_s``.

        A broker that does not answer is waited for (queued messages wait up to the producer's
        ``message.timeout.ms``), with a warning every ``FLUSH_SLICE_S`` while messages are unacknowledged. Once
        one failed, the others are still waited for: an attempt that follows must not overtake messages of this
        one still queued.
        """
        deadline = time.monotonic() + timeout_s
        remaining = self._producer.flush(min(timeout_s, FLUSH_SLICE_S))
        while remaining and (left := deadline - time.monotonic()) > 0:
            log.warning(
                "kafka unavailable (delivery): %d messages not acknowledged yet; waiting up to %.0f s more",
                remaining,
                left,
            )
            remaining = self._producer.flush(min(left, FLUSH_SLICE_S))
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            outage = all(err.code() in OUTAGE_ERRORS or err.retriable() for _, err in errors)
            raise DeliveryError(
                f"{remaining} messages unsent, {len(errors)} failed: {[text for text, _ in errors[:3]]}", outage
            )
