"""A worker runs one bulk task at a time (a batch's fetch and decode: ``bulk_slots_per_worker``), leaving its other
threads to the batches ahead in the commit order."""

from __future__ import annotations

import time

from distributed import Client

from nightjar.cluster import BULK_SLOT, bulk_slots, local_cluster
from nightjar.settings import Settings


def _overlap(client: Client, **resources: dict[str, int]) -> bool:
    """Whether two tasks of half a second each, on one worker, ran at the same time."""

    def span(seconds: float) -> tuple[float, float]:  # defined here: pickled by value (workers cannot import tests)
        started = time.monotonic()
        time.sleep(seconds)
        return started, time.monotonic()

    worker = sorted(client.scheduler_info()["workers"])[0]
    futures = [
        client.submit(span, 0.5, key=f"span-{k}-{time.monotonic_ns()}", workers=[worker], **resources) for k in range(2)
    ]
    (a0, a1), (b0, b1) = client.gather(futures)
    return a0 < b1 and b0 < a1


def test_the_local_cluster_runs_one_bulk_task_at_a_time_per_worker(dask_client: Client) -> None:
    workers = dask_client.scheduler_info()["workers"].values()
    assert [w["resources"] for w in workers] == [{BULK_SLOT: 1}] * 2
    assert bulk_slots(dask_client)
    assert not _overlap(dask_client, resources={BULK_SLOT: 1})
    assert _overlap(dask_client)  # the worker's two threads: other tasks still run side by side


def test_workers_without_a_bulk_slot_are_not_asked_for_one() -> None:
    settings = Settings(workers=1, bulk_slots_per_worker=0)
    with local_cluster(settings) as cluster, Client(cluster) as client:
        assert client.scheduler_info()["workers"].popitem()[1]["resources"] == {}
        assert not bulk_slots(client)
