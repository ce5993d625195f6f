"""The Streamz graph that wires the stages on a Dask cluster.

Each element flowing through the graph is a ``Job``: the raw micro-batch (kept by the driver for dead-lettering)
and the Dask future of its latest stage. Stage nodes submit work to the cluster through the client they were
given; the last node gathers the small ``BatchOutcome`` back to the driver, whose sink delivers it::

    raw batch -> decode (one task per worker) -> merge -> locate (HEALPix) -> context (objects first seen,
              crossmatched on the workers that cache their sky) -> lake commit -> filters
              -> gather -> deliver (dead letters, filter topics, then Kafka offsets)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distributed import Client, Future
from streamz import Stream

from nightjar.catalogs.catalog import CatalogSet
from nightjar.catalogs.dispatch import submit_context
from nightjar.lake.commit import app_id
from nightjar.pipelines import context, stages
from nightjar.sql import sandbox
from nightjar.sql.registry import Filter
from nightjar.streams.decode import RawBatch


@dataclass(frozen=True)
class Job:
    raw: RawBatch
    future: Future | None = None
    context: Future | None = None  # the batch's BatchContext, when catalogues are installed
    filters: tuple[Filter, ...] = ()
    outcome: stages.BatchOutcome | None = None


@dataclass(frozen=True)
class GraphConfig:
    home: Path
    partition_order: int
    max_message_bytes: int
    registry_url: str | None
    limits: sandbox.Limits
    run_filters: bool = True
    catalogs: CatalogSet | None = None  # None or empty: no context stage


def transactions(raw: RawBatch) -> dict[str, int]:
    """The Delta application transactions of a batch: its last offset per Kafka partition."""
    return {app_id(topic, part): offset for (topic, part), offset in raw.end_offsets().items()}


@dataclass
class Pipeline:
    """The graph's entry and exit: ``emit`` jobs into ``source``; ``close()`` releases the sink."""

    source: Stream
    sink: Stream

    def emit(self, job: Job) -> None:
        self.source.emit(job)

    def close(self) -> None:
        # Streamz keeps every sink alive in a module-level set until it is destroyed.
        self.sink.destroy()


def build(client: Client, config: GraphConfig, deliver: Callable[[Job], Any]) -> Pipeline:
    """The pipeline graph; emit a ``Job`` into it and ``deliver`` receives the job finished."""
    workers = max(1, len(client.scheduler_info()["workers"]))

    def decode(job: Job) -> Job:
        chunks = stages.split(job.raw, workers)
        starts = [0]
        for chunk in chunks[:-1]:
            starts.append(starts[-1] + len(chunk))
        scattered = client.scatter(chunks)
        parts = [
            client.submit(stages.decode, fut, start, config.max_message_bytes, config.registry_url, pure=False)
            for fut, start in zip(scattered, starts, strict=True)
        ]
        return replace(job, future=client.submit(stages.merge, parts, pure=False))

    def locate(job: Job) -> Job:
        return replace(job, future=client.submit(stages.locate, job.future, config.partition_order, pure=False))

    def contextualize(job: Job) -> Job:
        catalogs = config.catalogs
        if catalogs is None or not catalogs.catalogs:
            return job
        pending = client.submit(context.pending, job.future, config.home, catalogs.version, pure=False)
        todo = client.submit(context.todo_objects, pending, pure=False)
        result = submit_context(client, todo, catalogs)
        return replace(job, context=client.submit(context.combine, pending, result, pure=False))

    def commit(job: Job) -> Job:
        txns = transactions(job.raw)
        fut = client.submit(stages.commit_to_lake, job.future, config.home, txns, job.context, pure=False)
        return replace(job, future=fut)

    def filters(job: Job) -> Job:
        chosen = list(job.filters) if config.run_filters else []
        fut = client.submit(
            stages.apply_filters, job.future, chosen, config.limits, job.context, config.home, pure=False
        )
        return replace(job, future=fut, context=None)

    def gather(job: Job) -> Job:
        assert job.future is not None
        return replace(job, future=None, outcome=client.gather(job.future))

    source = Stream(stream_name="alerts")
    sink = source.map(decode).map(locate).map(contextualize).map(commit).map(filters).map(gather).sink(deliver)
    return Pipeline(source, sink)
