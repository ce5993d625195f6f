"""Read back what a topic holds: the delivery keys of messages already published (after a crash).

Uses assigned partitions (no consumer group, so no wait to join one), starting at the offsets of a time a little
before the first attempt; reads until the topic stays quiet, since Tansu's high watermark cannot be trusted.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from nightjar.settings import Settings
from nightjar.streams import kafka

KEY_HEADER = "nightjar.key"


def published_keys(
    settings: Settings, topic: str, since_ms: int, wanted: set[str], quiet_s: float = 2.0, timeout_s: float = 60.0
) -> set[str]:
    """The keys among ``wanted`` that messages of ``topic`` published since ``since_ms`` carry."""
    if not wanted:
        return set()
    consumer = Consumer(kafka.consumer_config(settings, f"nightjar-readback-{uuid.uuid4().hex}", kafka.OUTPUT))
    found: set[str] = set()
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            return found
        starts = consumer.offsets_for_times(
            [TopicPartition(topic, p, max(0, since_ms)) for p in info.partitions], timeout=10
        )
        # A partition with nothing after that time answers -1 (or, on Tansu, 0): both read from a safe place.
        consumer.assign([TopicPartition(topic, s.partition, s.offset if s.offset >= 0 else 0) for s in starts])
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s and found != wanted:
            messages = [m for m in consumer.consume(num_messages=10_000, timeout=0.5) if not m.error()]
            if messages:
                quiet_since = time.monotonic()
            for message in messages:
                headers = message.headers() or []
                pairs = headers.items() if isinstance(headers, dict) else headers
                for name, value in pairs:
                    if name == KEY_HEADER and value is not None:
                        key = value.decode() if isinstance(value, bytes) else value
                        if key in wanted:
                            found.add(key)
    finally:
        consumer.close()
    return found
