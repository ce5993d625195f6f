"""The Dask client: a LocalCluster by default, or the scheduler named by NIGHTJAR_SCHEDULER."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from nightjar.settings import Settings


@contextmanager
def dask_client(settings: Settings) -> Iterator[Client]:
    """A connected client, closed (with its LocalCluster, if one was started) on exit."""
    if settings.scheduler:
        with Client(settings.scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=settings.workers,
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.worker_memory_limit,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
