"""The Streamz graph that wires the stages on a Dask cluster.

Each element flowing through the graph is a ``Job``: the micro-batch as the driver knows it (Kafka offset
ranges that the workers fetch themselves, or payloads) and the Dask future of its latest stage. Stage nodes
submit work to the cluster through the client they were given; the last node gathers the small
``BatchOutcome`` back to the driver, whose sink delivers it::

    offset ranges -> fetch and decode (the batch's worker) -> locate (HEALPix)
              -> context (objects first seen, crossmatched on the workers that cache their sky)
              -> watch (alerts matched against the active watchlists and watchmaps, indexes cached per worker)
              -> lake commit of the rows -> lake commit of the object states (features)
              -> filters -> deliver (dead letters, filter topics, then Kafka offsets)

Several batches are in flight at once (``Pipeline``): while one commits, the next is decoded, and a batch's
features are computed while the next batch's rows are written. Each commit step is chained, so the lake sees
batches in the order they were read; deliveries follow the same order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeAlias, TypeVar

from distributed import Client, Future
from streamz import Stream

from nightjar.catalogs.catalog import CatalogSet
from nightjar.catalogs.dispatch import submit_context
from nightjar.cluster import BULK_SLOT, bulk_slots
from nightjar.lake.commit import app_id
from nightjar.pipelines import context, lake_write, stages, watch_filters
from nightjar.pipelines.watch import WatchSet, match_batch
from nightjar.sql import sandbox
from nightjar.sql.registry import Filter
from nightjar.storage import Home
from nightjar.streams.decode import RawBatch
from nightjar.streams.kafka_ranges import KafkaSlice

T = TypeVar("T")

Source: TypeAlias = RawBatch | KafkaSlice
"""A batch as the driver holds it: payloads (files, tests, the tail of a stream) or Kafka offset ranges."""


@dataclass(frozen=True)
class Job:
    """One batch on its way through the graph: where its alerts come from, the futures of its stages, the filters and
    watch lists it runs, the worker it stays on, and its outcome once delivered."""

    source: Source
    future: Future | None = None
    context: Future | None = None  # the batch's BatchContext, when catalogues are installed
    filters: tuple[Filter, ...] = ()
    outcome: stages.BatchOutcome | None = None
    worker: str | None = None  # where the batch stays from fetch to filters
    # Payloads scattered to the worker (a batch the driver read): held until the batch is delivered. Scattered data
    # has no recipe, so once its last holder lets go Dask forgets it, and with it every stage of the batch still
    # to run or to run again ("cancelled: already forgotten").
    payloads: Future | None = None
    watch: WatchSet | None = None  # the active watchlists and watchmaps (None: no watch stage)
    hits: Future | None = None  # the batch's BatchHits


@dataclass(frozen=True)
class GraphConfig:
    """What the graph's stages need: the lake, the partition order, the largest message, the filter registry, the SQL
    limits, and whether to run filters, context catalogues and classifiers."""

    home: Home
    partition_order: int
    max_message_bytes: int
    registry_url: str | None
    limits: sandbox.Limits
    run_filters: bool = True
    catalogs: CatalogSet | None = None  # None or empty: no context stage
    classifiers: tuple[str, ...] = ()  # classifier plug-ins run in the commit (pipelines.classifiers)


def transactions(source: Source) -> dict[str, int]:
    """The Delta application transactions of a batch: its last offset per Kafka partition."""
    return {app_id(topic, part): offset for (topic, part), offset in source.end_offsets().items()}


def _committed(done: object) -> None:
    """A small marker of a finished commit step, for the next batch's same step to wait on."""


# A marker runs before any other task ready on its worker: the batch's next step becomes ready with it, and a worker
# has two threads (one may be decoding), so a marker left in line waited for that whole step (Dask task stream: the
# next batch's rows waited 1.3 s for the previous batch's features).
MARKER_PRIORITY = 100


def _after(step: Callable[..., T], previous: None, *args: Any) -> T:
    """``step(*args)`` once the previous batch's same step finished (``previous``: its marker)."""
    return step(*args)


STALL_S = 10.0  # a job awaited longer than this: the driver checks what it may be waiting on


class Pipeline:
    """The graph's entry and exit, and the batches in flight.

    ``emit`` submits a job's stages to the cluster and returns at once; up to ``max_in_flight`` jobs run
    together (batch N+1 is decoded while batch N commits and runs its filters). Lake commits run in the order
    the jobs were emitted, each after the previous one, and jobs are delivered in that order too: the sink gets
    each job with its outcome, oldest first. ``poll`` delivers the jobs already finished; ``drain`` waits for
    every job and delivers it; ``close`` releases the graph.
    """

    def __init__(
        self,
        source: Stream,
        deliver: Callable[[Job], Any],
        max_in_flight: int,
        on_stall: Callable[[], Any] | None = None,
    ) -> None:
        self.source = source
        self.max_in_flight = max(1, max_in_flight)
        self.on_stall = on_stall  # called every STALL_S while the oldest job is awaited
        self.in_flight: deque[Job] = deque()
        self._deliver = deliver
        self.sink: Stream | None = None  # the graph's last node, set by ``build``
        # the markers of the last batch's commit steps: each batch's steps run after them, in emit order
        self.last_rows: Future | None = None
        self.last_objects: Future | None = None
        self.turn = 0  # batches emitted: picks each batch's worker in turn

    def emit(self, job: Job) -> None:
        """Submit a batch to the graph."""
        self.source.emit(job)

    def _submitted(self, job: Job) -> None:
        self.in_flight.append(job)
        self.poll()
        while len(self.in_flight) > self.max_in_flight:
            self._finish(self.in_flight.popleft())

    def poll(self) -> None:
        """Deliver the oldest jobs that are finished, without waiting."""
        while self.in_flight and self.in_flight[0].future is not None and self.in_flight[0].future.done():
            self._finish(self.in_flight.popleft())

    def _finish(self, job: Job) -> None:
        assert job.future is not None
        while True:
            try:
                outcome = job.future.result(timeout=STALL_S)
                break
            except TimeoutError:
                if self.on_stall is not None:
                    self.on_stall()
        self._deliver(replace(job, future=None, context=None, payloads=None, hits=None, outcome=outcome))

    def drain(self) -> None:
        """Wait for every job in flight and deliver it."""
        while self.in_flight:
            self._finish(self.in_flight.popleft())

    def close(self) -> None:
        """Release the sink (Streamz keeps every sink in a module-level set) and forget the jobs in flight: after
        an error nothing more is delivered, and their Kafka offsets stay uncommitted (call ``drain`` first to
        deliver them)."""
        if self.sink is not None:
            self.sink.destroy()
        self.in_flight.clear()


def _on(worker: str | None) -> dict[str, Any]:
    """Dask placement of a batch's task: on the batch's worker while it lives (Dask would otherwise move a
    task to an idle worker, and the batch's tables with it), anywhere once it is gone."""
    return {"workers": [worker], "allow_other_workers": True} if worker else {}


def build(
    client: Client,
    config: GraphConfig,
    deliver: Callable[[Job], Any],
    max_in_flight: int = 2,
    on_stall: Callable[[], Any] | None = None,
) -> Pipeline:
    """The pipeline graph; emit a ``Job`` into it and ``deliver`` receives the job finished, in emit order.
    ``on_stall`` is called every ``STALL_S`` while the driver waits for a job (its worker may be waiting on Kafka)."""
    workers = sorted(client.scheduler_info()["workers"])
    slots = {"resources": {BULK_SLOT: 1}} if bulk_slots(client) else {}
    source = Stream(stream_name="alerts")
    pipeline = Pipeline(source, deliver, max_in_flight, on_stall)

    def decode(job: Job) -> Job:
        # A batch stays on one worker from fetch to filters (its decoded tables, cutouts included, are never
        # copied between workers); successive batches take turns, so one commits while the next is decoded.
        pipeline.turn += 1
        worker = workers[pipeline.turn % len(workers)] if workers else None
        where = _on(worker)
        # Offset ranges go as they are (the worker fetches its messages); payloads are scattered, with
        # hash=False: Dask would otherwise hash every payload byte to name the data (seconds per batch).
        payloads = None
        if not isinstance(job.source, KafkaSlice):
            payloads = client.scatter(job.source, workers=[worker] if worker else None, hash=False)
        future = client.submit(
            stages.decode,
            payloads if payloads is not None else job.source,
            config.max_message_bytes,
            config.registry_url,
            **where,
            **slots,
            pure=False,
        )
        return replace(job, future=future, worker=worker, payloads=payloads)

    def locate(job: Job) -> Job:
        future = client.submit(stages.locate, job.future, config.partition_order, **_on(job.worker), pure=False)
        return replace(job, future=future)

    def contextualize(job: Job) -> Job:
        catalogs = config.catalogs
        if catalogs is None or not catalogs.catalogs:
            return job
        where = _on(job.worker)
        pending = client.submit(context.pending, job.future, config.home, catalogs.version, **where, pure=False)
        todo = client.submit(context.todo_objects, pending, **where, pure=False)
        result = submit_context(client, todo, catalogs)
        return replace(job, context=client.submit(context.combine, pending, result, **where, pure=False))

    def match_watchlists(job: Job) -> Job:
        if not job.watch:
            return job
        hits = client.submit(match_batch, job.future, job.watch, job.context, **_on(job.worker), pure=False)
        return replace(job, hits=hits)

    def commit(job: Job) -> Job:
        txns = transactions(job.source)
        where = _on(job.worker)
        home = config.home
        # The cutouts' files are written while earlier batches commit; only adding them waits its turn.
        cutouts = client.submit(lake_write.stage_cutouts, job.future, home, **where, pure=False)
        # Two steps, each in batch order: a batch's object states (its features) are computed while the next
        # batch's rows are written.
        rows_args = (job.future, home, txns, job.context, cutouts, job.hits)
        rows = client.submit(_after, lake_write.commit_rows, pipeline.last_rows, *rows_args, **where, pure=False)
        pipeline.last_rows = client.submit(_committed, rows, **where, priority=MARKER_PRIORITY, pure=False)
        objects_args = (rows, home, txns, job.context, config.classifiers)
        fut = client.submit(
            _after, lake_write.commit_objects, pipeline.last_objects, *objects_args, **where, pure=False
        )
        pipeline.last_objects = client.submit(_committed, fut, **where, priority=MARKER_PRIORITY, pure=False)
        return replace(job, future=fut)

    def filters(job: Job) -> Job:
        chosen = list(job.filters) if config.run_filters else []
        fut = client.submit(
            watch_filters.apply_filters,  # stages.apply_filters, with the hits each filter's owner may see
            job.future,
            chosen,
            config.limits,
            job.context,
            config.home,
            job.hits,
            job.watch,
            **_on(job.worker),
            pure=False,
        )
        return replace(job, future=fut, context=None, hits=None)

    staged = source.map(decode).map(locate).map(contextualize).map(match_watchlists).map(commit).map(filters)
    pipeline.sink = staged.sink(pipeline._submitted)
    return pipeline
