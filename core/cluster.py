"""The Dask client built from the Settings: a LocalCluster by default, or the scheduler named by NIGHTJAR_SCHEDULER;
its workers' bulk slots and memory cap.

Library functions take the client as a parameter; only commands (and benchmarks, tests) open one here.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster, Worker, WorkerPlugin

from nightjar import memory_cap
from nightjar.settings import Settings


@contextmanager
def dask_client(settings: Settings) -> Iterator[Client]:
    """A connected client, closed (with its LocalCluster, if one was started) on exit."""
    if settings.scheduler:
        with Client(settings.scheduler) as client:
            yield client
        return
    with local_cluster(settings) as cluster, Client(cluster) as client:
        yield client


# The allocators of a worker process keep the memory a batch freed for the next batch, instead of handing it back
# to the kernel and faulting it in again, zeroed, page by page: a heavy batch of 2,000 alerts allocates ~1.5 GB,
# and with Dask's default (glibc trims anything above 64 KB) and mimalloc's (pyarrow's pool; purges after 10 ms)
# half of a worker's CPU time was the kernel's (nightjar bench pipeline: 8.0 of 16.9 s over 10,000 alerts, 91
# page faults an alert). Memory still goes back when a worker stays idle for a few seconds. Dask sets these before
# it spawns a worker, in the starting process's environment too (as it does its own MALLOC_TRIM_THRESHOLD_). No
# MALLOC_TOP_PAD_: padding every thread's heap made DuckDB fail to even connect under a 1.5 GiB address-space cap.
# No transparent huge pages from mimalloc (it asks for them on its whole arena) nor NumPy (on arrays of 4 MB and
# more): memory that does go back then comes in again 2 MB at a time, each zeroed whole, and that zeroing was 30 %
# of the workers' CPU time (perf, bench pipeline); without them the workers spent ~25 % less CPU per alert.
# One glibc arena: glibc hands a thread's arena heap back to the kernel as soon as it is empty, whatever the trim
# threshold, so the ~200 MB of payload copies a batch makes on a task thread (confluent-kafka's Python bytes) and
# librdkafka's receive buffers came in as new pages batch after batch (perf, page faults of one worker: 31 % in the
# payload copies; 5.5 % with one arena). The main arena keeps up to 1 GiB free before it trims. Peak RSS came out
# lower, not higher (docs/lake.md, "Fresh pages").
WORKER_ALLOCATOR_ENV = {
    "MALLOC_TRIM_THRESHOLD_": str(1024 * 2**20),
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MIMALLOC_PURGE_DELAY": "5000",
    "MIMALLOC_ALLOW_THP": "0",
    "NUMPY_MADVISE_HUGEPAGE": "0",
}


# The Dask worker resource of a worker's bulk tasks: a batch's fetch and decode. A worker declaring ``{BULK_SLOT: 1}``
# runs one of them at a time, so that a thread freed by a decode goes to the oldest batch's next stage (its locate,
# context, commit: the order the lake commits in) instead of the next batch's decode, which would otherwise start
# first and share the cores with it. Workers that do not declare it run as many at once as they have threads. (The
# background compaction took it too, until it held up every batch behind: ``pipelines.compaction``.)
BULK_SLOT = "bulk"


def bulk_slots(client: Client) -> bool:
    """Whether every worker of ``client`` declares a bulk slot (a task asking for a resource that a worker lacks
    never runs there)."""
    workers = client.scheduler_info().get("workers", {})
    return bool(workers) and all(w.get("resources", {}).get(BULK_SLOT, 0) >= 1 for w in workers.values())


@contextmanager
def local_cluster(settings: Settings) -> Iterator[LocalCluster]:
    """The cluster ``nightjar run`` starts when no scheduler is given: worker processes as the settings say."""
    # A batch's tasks are placed on the worker that holds its tables (``pipelines.graph``); work stealing would move
    # them, and ~300 MB of tables with them, to whichever worker looks idle (a paused one's queue, say).
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ALLOCATOR_ENV}
    with (
        dask.config.set({"distributed.scheduler.work-stealing": False, "distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=settings.workers,
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.worker_memory_limit,
            processes=True,
            dashboard_address=None,
            # The scheduler serves its HTTP routes (health, metrics) even without a dashboard, on 8787 by default:
            # a second cluster on the same machine (two drivers, a test's own cluster) would find it taken and
            # warn. A free loopback port instead.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            resources={BULK_SLOT: settings.bulk_slots_per_worker} if settings.bulk_slots_per_worker else None,
        ) as cluster,
    ):
        yield cluster


class MemoryCap(WorkerPlugin):
    """Caps each worker process's memory (user filters run there; see ``nightjar.memory_cap``)."""

    name = "nightjar-memory-cap"

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.before: int | None = None  # the worker's own limit, put back when the run ends

    def setup(self, worker: Worker) -> None:
        """Cap the worker's process, remembering its own limit."""
        self.before = resource.getrlimit(resource.RLIMIT_DATA)[0]
        memory_cap.cap_process_memory(self.limit_bytes)

    def teardown(self, worker: Worker) -> None:
        """Give the worker its own limit back."""
        if self.before is not None:
            memory_cap.restore_process_memory(self.before)


def cap_worker_memory(client: Client, settings: Settings) -> None:
    """Install the memory cap on every worker of ``client``, present and future (until :func:`uncap_worker_memory`)."""
    limit = memory_cap.worker_process_cap(settings)
    if limit is not None:
        client.register_plugin(MemoryCap(limit))


def uncap_worker_memory(client: Client) -> None:
    """Remove the memory cap from the workers, which get their own limit back: a run leaves no process-wide limit
    behind on a cluster it does not own."""
    with contextlib.suppress(ValueError):  # never installed (process_memory_cap "off")
        client.unregister_worker_plugin(MemoryCap.name)
