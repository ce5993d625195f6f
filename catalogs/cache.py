"""Worker-side cache of partition indexes, so that a warm catalogue costs no I/O per batch.

Building a partition's index means reading Parquet and sorting; a stream of batches touches the same partitions
again and again. Each process (each Dask worker, or the CLI) keeps the indexes it built in one least-recently-used
cache bounded in bytes. This module-level object is *only a cache*: it holds nothing that is not on disk, its
keys carry the catalogue's path and version (a re-imported catalogue is never served stale), and it may be
cleared at any time. Configuration (the byte budget) arrives with each call, from the ``CatalogSet``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from nightjar.catalogs.index import PartitionIndex

Key = tuple[str, str, int, int]  # (collection path, catalogue version, order, pixel)


class Sized(Protocol):
    """What the cache holds: an object that knows its size."""

    @property
    def nbytes(self) -> int:
        """The bytes the object holds, counted against the cache budget."""
        ...


IndexT = TypeVar("IndexT", bound=Sized)
KeyT = TypeVar("KeyT", bound=Hashable)


@dataclass
class CacheStats:
    """A cache's counters: hits, misses and evictions since it was made or cleared, and the entries and bytes it
    holds."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0


class IndexCache(Generic[KeyT, IndexT]):
    """A thread-safe LRU of indexes (:class:`PartitionIndex`, watchlist cone indexes…), bounded by their total
    ``nbytes``."""

    def __init__(self) -> None:
        self._items: OrderedDict[KeyT, IndexT] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def get(self, key: KeyT, build: Callable[[], IndexT], budget_bytes: int) -> IndexT:
        """The cached index for ``key``, built with ``build()`` on a miss; evicts the oldest beyond the budget."""
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self._stats.hits += 1
                return found
        index = build()  # outside the lock: other threads keep using the cache meanwhile
        with self._lock:
            self._stats.misses += 1
            if key not in self._items:
                self._items[key] = index
                self._stats.bytes += index.nbytes
            while self._stats.bytes > budget_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._stats.bytes -= old.nbytes
                self._stats.evictions += 1
            self._stats.entries = len(self._items)
            return self._items.get(key, index)

    def stats(self) -> CacheStats:
        """A copy of the cache's counters."""
        with self._lock:
            return CacheStats(**vars(self._stats))

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._items.clear()
            self._stats = CacheStats()


CACHE: IndexCache[Key, PartitionIndex] = IndexCache()


def cache_stats() -> CacheStats:
    """This process's cache counters (run on a worker with ``client.run(cache_stats)``)."""
    return CACHE.stats()


def clear_cache() -> None:
    """Empty this process's cache."""
    CACHE.clear()
