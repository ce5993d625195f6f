"""Kafka batches as offset ranges: the driver hands out ranges, the Dask workers fetch the messages themselves.

The driver's consumer belongs to the consumer group (it is assigned the partitions and commits their offsets)
but keeps the alert partitions paused: it never fetches an alert. ``RangeReader.take`` cuts the next ranges from
each partition's position up to its high watermark, and a worker fetches a ``KafkaSlice`` (a few ranges) with
a consumer of its own, with no group, and decodes it where it landed. So the payloads travel from the broker to
the worker that decodes them, and the driver only sees offsets.

A broker's high watermark may stay behind the last messages (Tansu, the embedded broker, reports the start of
the newest record batch): when a partition's watermark has not moved for a batch window, the driver's consumer
reads what lies beyond it (the partition is *tailed*), so that the last alerts of a stream are not left waiting
for the next ones. Those few messages reach the workers as payloads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, Message, TopicPartition

from nightjar.streams.decode import RawBatch

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 120.0
"""How long a worker waits for the messages of its ranges before it gives up (the batch fails, nothing is
committed, and the restarted run reads the ranges again)."""


PROBE_EVERY_S = 2.0
"""How often a driver with no partition assigned asks the broker for its topic (``RangeReader.available``)."""
PROBE_TIMEOUT_S = 5.0


class FetchError(RuntimeError):
    """A worker could not read every message of its ranges."""


@dataclass(frozen=True)
class OffsetRange:
    """The messages of one partition with offsets in ``[start, stop)``."""

    topic: str
    partition: int
    start: int
    stop: int

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


@dataclass(frozen=True)
class KafkaSlice:
    """Ranges of messages for one worker to fetch, and how to reach the broker."""

    ranges: tuple[OffsetRange, ...]
    config: tuple[tuple[str, Any], ...]  # consumer settings (bootstrap servers, fetch sizes), hashable
    patience_s: float = FETCH_TIMEOUT_S  # how long the worker waits for the messages (a broker outage included)

    def __len__(self) -> int:
        return sum(len(r) for r in self.ranges)

    def end_offsets(self) -> dict[tuple[str, int], int]:
        """The last offset of each (topic, partition) the slice covers."""
        ends: dict[tuple[str, int], int] = {}
        for r in self.ranges:
            if len(r):
                key = (r.topic, r.partition)
                ends[key] = max(r.stop - 1, ends.get(key, -1))
        return ends

    def fetch(self, timeout_s: float | None = None) -> RawBatch:
        """The slice's messages, in range order, read by this process's own consumer; ``FetchError`` when they
        did not all come within ``timeout_s`` (default: the slice's patience)."""
        with _consumer(self.config) as consumer:
            return _fetch(consumer, self.ranges, self.patience_s if timeout_s is None else timeout_s)


def read_back(source: RawBatch | KafkaSlice, places: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], bytes]:
    """The payloads of a few messages of a batch, by (topic, partition, offset): from the batch when it holds its
    payloads, else read again from Kafka (the dead letters found at the lake commit, after the payloads are gone)."""
    wanted = set(places)
    if not wanted:  # the usual batch: nothing to read back
        return {}
    if isinstance(source, RawBatch):
        return {
            (t, p, o): payload
            for t, p, o, payload in zip(source.topics, source.partitions, source.offsets, source.payloads, strict=True)
            if (t, p, o) in wanted
        }
    found: dict[tuple[str, int, int], bytes] = {}
    for t, p, o in sorted(wanted):
        raw = KafkaSlice((OffsetRange(t, p, o, o + 1),), source.config, source.patience_s).fetch()
        found.update(((t, p, o), payload) for payload in raw.payloads)
    return found


# A fetching consumer reads ahead of its range in the background until its queue is full, and what it reads
# beyond the range is thrown away: bound the read-ahead to 16 MB, under a tenth of a heavy batch. Fetching a heavy
# batch (2,000 alerts, 198 MB, two partitions) from the embedded broker, 7 fetches each, means per setting in
# turn: 16 MB 0.59, 0.59, 0.58 and 0.59 s; 32 MB 0.89, 0.61 and 0.84 s; 8 MB 0.61, 0.59 s; 4 MB 1.62 s (smaller
# fetches are slower from the embedded broker); the broker's CPU was 0.44-0.49 s whichever the size. Once the
# queue is full, librdkafka puts the next fetch off by up to a second (``fetch.queue.backoff.ms``); the ranges are
# on the broker already, so ask again after 10 ms. Lowering ``fetch.wait.max.ms`` too made a fetch after a broker
# restart never complete (tests/pipelines/test_broker_outage.py).
BOUNDED_PREFETCH = {
    "queued.max.messages.kbytes": 16 * 1024,
    "fetch.max.bytes": 16 * 1024 * 1024,
    "max.partition.fetch.bytes": 16 * 1024 * 1024,
    "fetch.queue.backoff.ms": 10,
}


class _Consumers:
    """One group-less consumer per process and broker configuration, reused from fetch to fetch."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: dict[tuple[tuple[str, Any], ...], list[Consumer]] = {}

    def acquire(self, config: tuple[tuple[str, Any], ...]) -> Consumer:
        with self.lock:
            free = self.idle.get(config)
            if free:
                return free.pop()
        return Consumer({**dict(config), **BOUNDED_PREFETCH})

    def release(self, config: tuple[tuple[str, Any], ...], consumer: Consumer) -> None:
        consumer.unassign()
        with self.lock:
            self.idle.setdefault(config, []).append(consumer)

    def close_idle(self) -> int:
        with self.lock:
            idle = [c for consumers in self.idle.values() for c in consumers]
            self.idle.clear()
        for consumer in idle:
            consumer.close()
        return len(idle)


_CONSUMERS = _Consumers()


def close_pooled_consumers() -> int:
    """Close this process's idle fetching consumers (they would otherwise keep reconnecting to a broker that is
    gone, until the process exits); the next fetch opens a new one. Returns how many were closed."""
    return _CONSUMERS.close_idle()


@contextlib.contextmanager
def _consumer(config: tuple[tuple[str, Any], ...]) -> Iterator[Consumer]:
    consumer = _CONSUMERS.acquire(config)
    try:
        yield consumer
    except BaseException:
        consumer.close()  # its state is unknown: do not hand it to the next fetch
        raise
    _CONSUMERS.release(config, consumer)


def _fetch(consumer: Consumer, ranges: tuple[OffsetRange, ...], timeout_s: float) -> RawBatch:
    wanted = {(r.topic, r.partition): r for r in ranges if len(r)}
    if len(wanted) != sum(1 for r in ranges if len(r)):
        raise ValueError("a slice holds at most one range per partition")
    got: dict[tuple[str, int], list[Message]] = {key: [] for key in wanted}
    pending = set(wanted)
    consumer.assign([TopicPartition(r.topic, r.partition, r.start) for r in wanted.values()])
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            missing = ", ".join(f"{t}[{p}] {wanted[(t, p)].start}-{wanted[(t, p)].stop - 1}" for t, p in pending)
            raise FetchError(f"could not read offsets {missing} within {timeout_s:.0f} s")
        for msg in consumer.consume(num_messages=10_000, timeout=0.5):
            if msg.error():
                log.warning("kafka fetch: %s", msg.error())
                continue
            key = (msg.topic() or "", msg.partition() or 0)
            r = wanted.get(key)
            offset = msg.offset() or 0
            if r is None or not r.start <= offset < r.stop:
                continue
            got[key].append(msg)
            if offset == r.stop - 1:
                pending.discard(key)
        if pending:  # offsets with no message (transaction markers, compaction) end a range early
            for tp in consumer.position([TopicPartition(t, p) for t, p in pending]):
                if tp.offset >= wanted[(tp.topic, tp.partition)].stop:
                    pending.discard((tp.topic, tp.partition))
    batch = RawBatch([], [], [], [])
    for messages in got.values():
        for msg in messages:
            batch.add(msg)
    return batch


class RangeReader:
    """The driver's view of the alert partitions it is assigned: where each stands, and what is there to read.

    Pass ``on_assign``/``on_revoke`` to ``Consumer.subscribe``. The alert partitions are paused as they are
    assigned; their next offsets start at the group's committed offsets and move forward as ranges are taken.

    A partition whose high watermark has stood at its next offset for ``still_s`` is *tailed*: resumed at that
    offset, so that the driver's consumer reads what lies beyond a lagging watermark (``accept`` keeps those
    messages); it is paused again as soon as its watermark moves (new messages arrived: the workers fetch them).
    """

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        fetch_config: dict[str, Any],
        still_s: float,
        patience_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.config = tuple(sorted(fetch_config.items()))
        self.still_s = still_s
        self.patience_s = patience_s
        self.unassigned_since: float | None = time.monotonic()  # since when no partition of the topic is assigned
        self.next: dict[int, int | None] = {}  # partition -> next offset to hand out (None: not looked up yet)
        self.tailing: dict[int, float] = {}  # partition -> when it was tailed
        self._high: dict[int, tuple[int, float]] = {}  # partition -> (high watermark, when it last moved)
        self._probed = 0.0  # when the broker last answered a probe (``_probe``)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take newly assigned partitions: assign them paused, their next offsets to be looked up."""
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "no partition")
        consumer.assign(partitions)
        mine = [tp for tp in partitions if tp.topic == self.topic]
        if mine:
            consumer.pause(mine)
            self.unassigned_since = None
        for tp in mine:
            self.next[tp.partition] = None

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Forget revoked partitions, and note when the topic was left with none."""
        log.info("revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "no partition")
        for tp in partitions:
            if tp.topic == self.topic:
                self.next.pop(tp.partition, None)
                self._high.pop(tp.partition, None)
                self.tailing.pop(tp.partition, None)
        if not self.next and self.unassigned_since is None:
            self.unassigned_since = time.monotonic()

    def _resolve(self) -> None:
        unknown = [TopicPartition(self.topic, p) for p, o in self.next.items() if o is None]
        if not unknown:
            return
        for tp in self.consumer.committed(unknown, timeout=10):
            if tp.offset == OFFSET_INVALID or tp.offset < 0:
                low, _ = self.consumer.get_watermark_offsets(TopicPartition(self.topic, tp.partition), timeout=10)
                self.next[tp.partition] = low
            else:
                self.next[tp.partition] = tp.offset

    def accept(self, msg: Message) -> bool:
        """Whether a message the driver's consumer returned is an alert of a tailed partition to process now
        (and not one fetched before a pause or a seek, which a range hands to a worker)."""
        partition, offset = msg.partition() or 0, msg.offset() or 0
        if msg.topic() != self.topic or partition not in self.tailing or offset < (self.next.get(partition) or 0):
            return False
        self.next[partition] = offset + 1
        return True

    def available(self, enough: int | None = None) -> int:
        """Messages up to the high watermarks not handed out yet, in the partitions not tailed; tails the
        partitions whose watermark stands still, and stops tailing those whose watermark moved since.

        With ``enough``: when the watermarks last seen already leave that many messages to hand out, says so
        without asking the broker again (a busy broker answers watermark requests in up to a second each).
        Raises the ``KafkaException`` when no partition's watermark could be had (the broker is away).
        """
        if not self.next:
            self._probe()
            return 0
        self._resolve()
        if enough is not None:
            known = sum(
                max(0, self._high[p][0] - (start or 0))
                for p, start in self.next.items()
                if p in self._high and p not in self.tailing
            )
            if known >= enough:
                return known
        total = 0
        now = time.monotonic()
        failed: KafkaException | None = None
        answered = False
        for partition, start in self.next.items():
            tp = TopicPartition(self.topic, partition)
            try:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=10)
            except KafkaException as exc:
                log.warning("kafka watermarks of %s[%d]: %s", self.topic, partition, exc)
                failed = exc
                continue
            answered = True
            seen = self._high.get(partition)
            if seen is None or seen[0] != high:
                self._high[partition] = seen = (high, now)
            ahead = high - (start or 0)
            if partition in self.tailing:
                if seen[1] <= self.tailing[partition]:
                    continue  # the watermark still stands: keep reading beyond it here
                # New messages moved the watermark: back to ranges, so that a stream that resumes after a pause
                # goes to the workers again (the driver keeps only what lay beyond the old watermark).
                self.consumer.pause([tp])
                del self.tailing[partition]
            elif ahead <= 0 and now - seen[1] >= self.still_s:
                self.consumer.resume([tp])
                self.consumer.seek(TopicPartition(self.topic, partition, start or 0))
                self.tailing[partition] = now
                continue
            total += max(0, ahead)
        if failed is not None and not answered:
            raise failed  # the broker is away, not the stream idle: the caller waits for it
        return total

    def _probe(self) -> None:
        """With no partition assigned nothing else asks the broker anything: ask it for the topic's metadata every
        ``PROBE_EVERY_S``, so that a broker gone away (which also takes the partitions away) raises the
        ``KafkaException`` and is waited for as an outage, not taken for a group still forming."""
        if time.monotonic() - self._probed < PROBE_EVERY_S:
            return
        self.consumer.list_topics(self.topic, timeout=PROBE_TIMEOUT_S)
        self._probed = time.monotonic()

    def take(self, want: int) -> KafkaSlice:
        """Ranges of up to ``want`` messages in all, shared among the partitions not tailed, below their
        watermarks. Partitions with the least to read come first and what they cannot give goes to the others,
        so a backlog is cut into full batches (not, say, 1,955 messages and then 45)."""
        ranges: list[OffsetRange] = []
        left = want

        def backlog(partition: int) -> int:
            start = self.next[partition]
            return 0 if start is None else self._high.get(partition, (start, 0.0))[0] - start

        partitions = sorted((p for p in self.next if p not in self.tailing), key=lambda p: (backlog(p), p))
        for i, partition in enumerate(partitions):
            start = self.next[partition]
            if start is None or backlog(partition) <= 0 or left <= 0:
                continue
            share = max(1, -(-left // (len(partitions) - i)))
            stop = start + min(backlog(partition), share)
            ranges.append(OffsetRange(self.topic, partition, start, stop))
            self.next[partition] = stop
            left -= stop - start
        return KafkaSlice(tuple(sorted(ranges, key=lambda r: r.partition)), self.config, self.patience_s)
