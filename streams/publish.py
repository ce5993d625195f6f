"""Delivery to Kafka: filter matches to their topics and rejected alerts to the dead-letter topic."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message, Producer

from nightjar import paths
from nightjar.sql.registry import Filter

Headers = list[tuple[str, str | bytes | None]]


class DeliveryError(RuntimeError):
    """Messages the broker did not acknowledge."""


class Publisher:
    """A producer that counts failed deliveries, so the caller commits offsets only after a clean flush."""

    def __init__(self, config: dict[str, object]) -> None:
        self._producer = Producer(config)
        self._errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err}")

    def _produce(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

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
        flt: Filter,
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
        """Wait for every message; DeliveryError if any was not acknowledged."""
        remaining = self._producer.flush(timeout_s)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(f"{remaining} messages unsent, {len(errors)} failed: {errors[:3]}")
