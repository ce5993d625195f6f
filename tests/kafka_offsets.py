"""What a test reads of a consumer group on the real broker: its committed offsets."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from nightjar.settings import Settings
from nightjar.streams import kafka


def committed(settings: Settings, topic: str) -> list[int]:
    """The run's consumer group's committed offset of each partition of ``topic`` (negative: none)."""
    consumer = Consumer(kafka.consumer_config(settings, settings.consumer_group))
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return [int(tp.offset) for tp in consumer.committed(parts, timeout=30)]
    finally:
        consumer.close()
