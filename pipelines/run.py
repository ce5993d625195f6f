"""``nightjar run``: consume a topic in micro-batches through the graph, deliver, then commit Kafka offsets.

Offsets are committed only after the lake commit and every publish of the batch were acknowledged, so a crash
re-delivers the batch; the lake's transaction ids make the re-delivery write nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from distributed import Client
from sqlalchemy.engine import Engine

from nightjar import paths
from nightjar.catalogs.catalog import load_catalog_set
from nightjar.cluster import cap_worker_memory, uncap_worker_memory
from nightjar.lake import ledger
from nightjar.pipelines.annotation_filters import run_annotation_filters
from nightjar.pipelines.channels import DeliveryReport
from nightjar.pipelines.classifiers import chosen as chosen_classifiers
from nightjar.pipelines.compaction import BackgroundCompaction
from nightjar.pipelines.delivery import Deliverer
from nightjar.pipelines.stages import BatchOutcome, FilterOutput
from nightjar.pipelines.watch import active_watch
from nightjar.progress import Progress
from nightjar.settings import Settings
from nightjar.sql import engine as sql_engine
from nightjar.sql import registry
from nightjar.streams import kafka
from nightjar.streams.decode import RawBatch
from nightjar.streams.files import AlertFileError, read_payloads
from nightjar.streams.kafka_ranges import FETCH_TIMEOUT_S, KafkaSlice, RangeReader, read_back
from nightjar.streams.publish import DeliveryError, Publisher

from . import graph

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What a run did. Every message consumed is accounted for: ``consumed == stored + dead_lettered +
    duplicates`` (``balanced``)."""

    consumed: int = 0  # alert messages handed to the pipeline
    fetched_by_workers: int = 0  # alerts the workers fetched from Kafka themselves (offset ranges)
    read_by_driver: int = 0  # alerts the driver read (the end of a stream beyond a lagging watermark)
    accepted: int = 0  # alerts stored (a message can hold several)
    stored: int = 0  # messages whose alerts are in the lake
    dead_lettered: int = 0  # messages sent to the dead-letter topic with their reason
    duplicates: int = 0  # messages re-sending alerts the lake holds, identical: counted, not stored again
    conflicting: int = 0  # re-sends of stored alerts with different content (dead-lettered, within dead_lettered)
    batches: int = 0
    matches: Counter[str] = field(default_factory=Counter)  # matches delivered, by filter name
    already_delivered: Counter[str] = field(default_factory=Counter)  # matches an earlier batch delivered
    filter_errors: Counter[str] = field(default_factory=Counter)
    filters_stopped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    annotations: int = 0  # annotation messages that ran the annotation filters
    file_errors: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # seconds per stage (workers: summed over tasks)

    def add_timings(self, timings: dict[str, float]) -> None:
        """Add a batch's seconds per stage to the run's."""
        for stage, seconds in timings.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    @property
    def alerts_per_s(self) -> float:
        """Alerts consumed per second of the run."""
        return self.consumed / self.seconds if self.seconds else 0.0

    @property
    def balanced(self) -> bool:
        """Every message consumed is in the lake, on the dead-letter topic or a counted duplicate."""
        return self.consumed == self.stored + self.dead_lettered + self.duplicates

    def add_outcome(self, outcome: BatchOutcome) -> None:
        """Count a delivered batch's outcome into the report."""
        self.accepted += outcome.accepted
        self.stored += outcome.stored
        self.dead_lettered += len(outcome.rejects)
        self.duplicates += outcome.duplicates
        self.conflicting += sum(1 for r in outcome.rejects if r.read_back)
        self.add_timings(outcome.timings)
        self.batches += 1


def _graph_config(settings: Settings, run_filters: bool = True) -> graph.GraphConfig:
    return graph.GraphConfig(
        home=settings.lake,
        partition_order=settings.partition_order,
        max_message_bytes=settings.max_message_bytes,
        registry_url=settings.schema_registry_url,
        limits=sql_engine.limits(settings, timeout_s=settings.filter_timeout_s),
        run_filters=run_filters,
        catalogs=load_catalog_set(settings.catalogs, cache_mb=settings.catalog_cache_mb),
        classifiers=tuple(c.name for c in chosen_classifiers(settings.classifiers)),  # unknown names fail here
    )


@dataclass
class Collected:
    """What one collection round found: annotation messages and the alerts to process, as offset ranges for
    the workers to fetch and as payloads the driver read at the end of the stream (``RangeReader``)."""

    notes: RawBatch
    alerts: list[graph.Source]


TAIL_AFTER_S = 0.5
COMMIT_SETTLE_S = 10.0  # how long a run that ends waits for an offset commit still under way
LOST_MEMBERSHIP = (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS)


def _collect(
    consumer: Consumer,
    reader: RangeReader,
    settings: Settings,
    want: int,
    idle: Callable[[], None] | None = None,
    on_retry: Callable[[], None] | None = None,
    notes_consumer: Consumer | None = None,
) -> Collected:
    """Wait up to the batch window for ``want`` alerts; meanwhile read annotation messages (and the alerts of
    tailed partitions: the others are paused, the workers fetch them) and run ``idle`` (to deliver the
    batches in flight that finished). While the broker does not answer, wait for it (``on_retry`` hears it)."""
    notes = RawBatch([], [], [], [])
    tail = RawBatch([], [], [], [])
    deadline = time.monotonic() + settings.batch_timeout_s
    while True:
        if idle is not None:
            idle()
        available = kafka.retrying(
            lambda: reader.available(enough=want - len(tail)), "watermarks", settings.kafka_outage_s, on_retry
        )
        full = available + len(tail) >= want
        # With a full batch waiting, take only what the driver's consumer holds already (annotations, tails).
        for msg in consumer.consume(num_messages=max(1, want - len(tail)), timeout=0 if full else 0.1):
            if msg.error():
                log.warning("kafka: %s", msg.error())
            elif msg.topic() == settings.annotations_topic:
                notes.add(msg)
            elif reader.accept(msg):
                tail.add(msg)
        if notes_consumer is not None:  # annotations on an output cluster of their own
            for msg in notes_consumer.consume(num_messages=10_000, timeout=0):
                if msg.error():
                    log.warning("kafka (output cluster): %s", msg.error())
                else:
                    notes.add(msg)
        if full or time.monotonic() >= deadline:
            break
    alerts: list[graph.Source] = [tail] if len(tail) else []
    if available and len(tail) < want:
        # Empty when the group took the partitions away meanwhile (a rebalance, as after an outage): the
        # partitions assigned again start from the committed offsets.
        ranges = reader.take(want - len(tail))
        if len(ranges):
            alerts.append(ranges)
    return Collected(notes, alerts)


def batch_label(source: graph.Source) -> str:
    """A batch's name in the ledger: the last offset of each (topic, partition) it holds."""
    return ",".join(f"{t}:{p}:{o}" for (t, p), o in sorted(source.end_offsets().items()))


def _note_health(
    settings: Settings,
    db: Engine,
    deliverer: Deliverer,
    outputs: list[FilterOutput],
    delivered: DeliveryReport,
    report: RunReport,
) -> None:
    """Count matches, record each filter's errors in the registry and tell owners of failing filters."""
    errors: dict[int, str | None] = {}
    for output in outputs:
        name = output.filter.name
        report.matches[name] += delivered.delivered.get(name, 0)
        report.already_delivered[name] += delivered.already.get(name, 0)
        message = output.error or delivered.channel_errors.get(output.filter.id)
        errors[output.filter.id] = message
        if message:
            report.filter_errors[name] += 1
            log.warning("filter %s (%s): %s", output.filter.id, name, message)
            if output.filter.failures == 0:
                deliverer.notify_owner(output.filter, f"Your filter failed on a batch of alerts:\n\n{message}")
    for flt in registry.record_health(db, errors, settings.filter_max_failures):
        report.filters_stopped.append(flt.name)
        deliverer.notify_owner(
            flt,
            f"Your filter was switched off after {settings.filter_max_failures} failing batches in a row.\n"
            f"The last error:\n\n{flt.last_error}\n\n"
            f"Fix it and switch it on with `nightjar filter edit {flt.id} --active`.",
        )


def run(
    settings: Settings,
    client: Client,
    topic: str,
    max_alerts: int | None = None,
    idle_exit_s: float | None = None,
) -> RunReport:
    """Process ``topic`` until ``max_alerts`` were consumed or nothing arrived for ``idle_exit_s`` seconds."""
    report = RunReport()
    db = registry.engine(settings.metadata_url)
    patience = settings.kafka_outage_s

    outage = [False]  # whether the broker stopped answering during the current round

    def broker_away() -> None:
        outage[0] = True

    def ensure_topics(topics: list[str], cluster: kafka.Cluster = kafka.OUTPUT) -> None:
        kafka.retrying(
            lambda: kafka.ensure_topics(settings, topics, cluster=cluster), "create topics", patience, broker_away
        )

    ensure_topics([topic], kafka.INPUT)
    ensure_topics([paths.dead_letter_topic(topic), settings.annotations_topic])
    cap_worker_memory(client, settings)
    # A message waits for the broker as long as the run does (librdkafka's default gives up after 5 minutes).
    waits = {"message.timeout.ms": int(patience * 1000)}
    publisher = Publisher(kafka.producer_config(settings, kafka.OUTPUT, **waits))  # dead letters
    # Filter matches have a producer that never sends a request twice: a broker killed after it stored one and
    # before it answered would get those matches twice. A failed attempt leaves them pending in the ledger, and
    # the next attempt reads back what reached the topic and sends only the rest (``deliver_matches``).
    matches_publisher = Publisher(kafka.producer_config(settings, kafka.OUTPUT, retries=0, **waits))
    deliverer = Deliverer(settings, matches_publisher, db)
    consumer = Consumer(kafka.consumer_config(settings, settings.consumer_group))
    # The workers fetch the alerts themselves (offset ranges); the driver reads only annotations, which arrive
    # beside the alerts and trigger the filters that read them.
    # A partition whose watermark stood still this long is read by the driver (the embedded broker's watermark
    # lags its last record batch): the end of a burst waits half a second, not a whole batch window.
    still_s = min(settings.batch_timeout_s, TAIL_AFTER_S)
    reader = RangeReader(
        consumer, topic, kafka.consumer_config(settings, "nightjar-fetch"), still_s, max(FETCH_TIMEOUT_S, patience)
    )
    # Annotations come from the output cluster: beside the alerts when it is the input cluster, else through a
    # consumer of their own there (same group; its offsets are committed with the batches they trigger).
    notes_consumer: Consumer | None = None
    subscribed = [topic, settings.annotations_topic]
    if kafka.separate_output(settings):
        notes_consumer = Consumer(kafka.consumer_config(settings, settings.consumer_group, kafka.OUTPUT))
        notes_consumer.subscribe([settings.annotations_topic])
        subscribed = [topic]
    consumer.subscribe(subscribed, on_assign=reader.on_assign, on_revoke=reader.on_revoke)
    # A synchronous commit has no timeout of librdkafka's: one the broker does not answer (gone, frozen, overloaded)
    # is waited for in slices, so that the run says the broker is away and waits for it as for any other call.
    committer = kafka.Committer(consumer)
    notes_committer = kafka.Committer(notes_consumer) if notes_consumer is not None else committer
    limits = sql_engine.limits(settings, timeout_s=settings.filter_timeout_s)

    committed: dict[tuple[str, int], int] = {}  # the highest offset this run committed, per partition

    def commit_offsets(source: graph.Source) -> None:
        # Only now is the batch safe in the lake, the ledger and on every topic: commit the next offsets to read.
        # Never backwards: after the group dropped the consumer, batches read again behind one already committed
        # write nothing, and committing their offsets would only make a restart read more again.
        commits = [
            TopicPartition(t, p, o + 1)
            for (t, p), o in source.end_offsets().items()
            if o + 1 > committed.get((t, p), -1)
        ]
        if not commits:
            return

        def commit() -> None:
            try:
                if notes_consumer is not None:
                    notes = [tp for tp in commits if tp.topic == settings.annotations_topic]
                    if notes:
                        notes_committer.commit(notes)
                    alerts = [tp for tp in commits if tp.topic != settings.annotations_topic]
                    if alerts:
                        committer.commit(alerts)
                else:
                    committer.commit(commits)
            except KafkaException as exc:
                if exc.args[0].code() not in LOST_MEMBERSHIP:
                    raise
                # The group dropped this consumer (after an outage): it rejoins as it polls, its partitions start
                # again from the last committed offsets, and this batch, read again, writes nothing twice.
                log.warning("offsets of batch %s not committed: %s", batch_label(source), exc)
                return
            for tp in commits:
                committed[(tp.topic, tp.partition)] = tp.offset

        kafka.retrying(commit, "commit offsets", patience, broker_away)

    def deliver_matches(outputs: list[FilterOutput], label: str) -> DeliveryReport:
        return kafka.retrying(
            lambda: deliverer.deliver(outputs, label), "delivery", patience, broker_away, (DeliveryError,)
        )

    def annotated(raw: RawBatch, filters: list[registry.Filter]) -> None:
        outputs, bad = run_annotation_filters(settings.lake, raw.payloads, filters, limits, settings.metadata_url)
        for i, reason in bad:
            publisher.dead_letter(raw.topics[i], raw.partitions[i], raw.offsets[i], raw.payloads[i], reason)
        delivered = deliver_matches(outputs, batch_label(raw))
        publisher.flush(max(60.0, patience))
        _note_health(settings, db, deliverer, outputs, delivered, report)
        commit_offsets(raw)
        report.annotations += len(raw) - len(bad)

    def deliver(job: graph.Job) -> None:
        delivering = time.monotonic()
        outcome = job.outcome
        assert outcome is not None
        # Conflicting re-sends are found at the lake commit, where the payloads are gone: read them back.
        again = read_back(job.source, [(r.topic, r.partition, r.offset) for r in outcome.rejects if r.read_back])
        for r in outcome.rejects:
            payload = again.get((r.topic, r.partition, r.offset), r.payload) if r.read_back else r.payload
            publisher.dead_letter(r.topic, r.partition, r.offset, payload, r.reason)
        # Matches new to the ledger go to their channels and are recorded; the broker acknowledged them.
        delivered = deliver_matches(outcome.outputs, batch_label(job.source))
        publisher.flush(max(60.0, patience))
        _note_health(settings, db, deliverer, outcome.outputs, delivered, report)
        commit_offsets(job.source)
        report.add_outcome(outcome)
        report.add_timings({"deliver": time.monotonic() - delivering})
        log.debug("batch %s: seconds per stage %s", batch_label(job.source), outcome.timings)
        busy[0] = time.monotonic()
        if report.batches % settings.ledger_compact_every == 0:
            ledger.compact(settings.lake)
        compaction.poll()
        if settings.lake_compact_every and report.batches % settings.lake_compact_every == 0:
            compaction.start()

    compaction = BackgroundCompaction(settings.lake)

    def check_broker() -> None:
        """The oldest batch is slow: its worker may be waiting on Kafka. Say so here, and wait with it."""
        kafka.retrying(lambda: consumer.list_topics(topic, timeout=5), "awaiting a batch", patience, broker_away)

    pipeline = graph.build(client, _graph_config(settings), deliver, settings.batches_in_flight, check_broker)
    started = time.monotonic()
    last_data = started
    busy = [started]  # when the run last received or delivered a batch: its time excludes the idle wait

    def idle_for() -> float:
        """How long nothing arrived and nothing was delivered. A run whose group has not given it the topic's
        partitions (yet, or again after an outage) is not idle: they may come, and what waits there with them."""
        now = time.monotonic()
        if reader.unassigned_since is not None and now - reader.unassigned_since < patience:
            return 0.0
        return now - max(last_data, busy[0])

    try:
        while max_alerts is None or report.consumed < max_alerts:
            want = settings.batch_size if max_alerts is None else min(settings.batch_size, max_alerts - report.consumed)
            collected = _collect(consumer, reader, settings, want, pipeline.poll, broker_away, notes_consumer)
            if outage[0]:  # the broker was away, not the stream idle: the idle clock starts again
                outage[0] = False
                last_data = time.monotonic()
            notes = collected.notes
            if len(notes):
                filters = registry.list_filters(db, active_only=True)
                ensure_topics([f.topic for f in filters])
                annotated(notes, filters)
                last_data = time.monotonic()
            if not collected.alerts:
                if idle_exit_s is not None and idle_for() >= idle_exit_s and not pipeline.in_flight:
                    break
                continue
            last_data = busy[0] = time.monotonic()
            if not report.consumed:  # the clock starts with the first alert, not with joining the group
                started = last_data
            filters = registry.list_filters(db, active_only=True)
            ensure_topics([f.topic for f in filters])
            watching = active_watch(settings, db)
            for alerts in collected.alerts:
                report.consumed += len(alerts)
                if isinstance(alerts, KafkaSlice):
                    report.fetched_by_workers += len(alerts)
                else:
                    report.read_by_driver += len(alerts)
                pipeline.emit(graph.Job(source=alerts, filters=tuple(filters), watch=watching))
                log.info(
                    "batch %s: %d messages on the cluster (%d batches delivered so far: %d stored, %d dead-lettered,"
                    " %d duplicates)",
                    batch_label(alerts),
                    len(alerts),
                    report.batches,
                    report.stored,
                    report.dead_lettered,
                    report.duplicates,
                )
        pipeline.drain()
        compaction.wait()
    finally:
        pipeline.close()
        uncap_worker_memory(client)
        committer.settle(COMMIT_SETTLE_S)  # a commit still under way uses the consumer: let it end first
        notes_committer.settle(COMMIT_SETTLE_S)
        consumer.close()
        if notes_consumer is not None:
            notes_consumer.close()
        publisher.close()
        matches_publisher.close()
        db.dispose()
    report.seconds = busy[0] - started
    return report


def ingest(settings: Settings, client: Client, files: list[Path], progress: Progress | None = None) -> RunReport:
    """Decode alert files straight into the lake (no Kafka, no filters); bad files are reported and skipped.

    ``progress`` hears the messages done (stored, rejected or counted duplicates) out of those read so far."""
    report = RunReport()
    outcomes: list[graph.Job] = []
    done = 0

    def finished(job: graph.Job) -> None:
        nonlocal done
        outcomes.append(job)
        if job.outcome is not None:
            done += job.outcome.stored + len(job.outcome.rejects) + job.outcome.duplicates
        if progress is not None:
            progress(done, report.consumed)

    pipeline = graph.build(client, _graph_config(settings, run_filters=False), finished)
    db = registry.engine(settings.metadata_url)
    watching = active_watch(settings, db)
    db.dispose()
    started = time.monotonic()
    pending = RawBatch([], [], [], [])
    try:
        for path in files:
            try:
                payloads = read_payloads(path, wire_format=False)
            except (AlertFileError, ValueError, OSError) as exc:
                report.file_errors.append(f"{path}: {exc}")
                continue
            # The file's resolved path is its "topic": re-ingesting the same file writes nothing again.
            one = RawBatch.from_payloads(payloads, topic=f"file:{path.resolve()}")
            pending = RawBatch(
                pending.payloads + one.payloads,
                pending.topics + one.topics,
                pending.partitions + one.partitions,
                pending.offsets + one.offsets,
            )
            report.consumed += len(one)
            if progress is not None:
                progress(done, report.consumed)
            if len(pending) >= settings.batch_size:
                pipeline.emit(graph.Job(source=pending, watch=watching))
                pending = RawBatch([], [], [], [])
        if len(pending):
            pipeline.emit(graph.Job(source=pending, watch=watching))
        pipeline.drain()
    finally:
        pipeline.close()
    for job in outcomes:
        assert job.outcome is not None
        report.add_outcome(job.outcome)
        report.file_errors.extend(
            f"{r.topic.removeprefix('file:')} alert {r.offset}: {r.reason}" for r in job.outcome.rejects
        )
    report.seconds = time.monotonic() - started
    return report
