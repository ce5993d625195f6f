"""Streaming filters over a batch's hits, each seeing only the hits its owner may see: the hits of a private (or
group) watchlist or watchmap are its owner's alone, as its cones are.

Filters that read neither ``watchlist_hits`` nor ``area_hits``, and all filters when no private list has hits in
the batch, share the passes of ``stages.apply_filters`` as usual; otherwise the filters that read the hits run in
one group per view of them (the owners of the private lists with hits, and everyone else).
"""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.pipelines import stages
from nightjar.pipelines.context import BatchContext
from nightjar.pipelines.watch import BatchHits, WatchSet
from nightjar.sql import sandbox
from nightjar.sql.parse import tables_read
from nightjar.sql.registry import Filter
from nightjar.storage import Home
from nightjar.streams.decode import DecodedBatch

HIT_VIEWS = frozenset({paths.WATCHLIST_HITS, paths.AREA_HITS})
EVERYONE = ""  # the view of the hits that owners of none of the batch's private lists get


def _without(table: pa.Table, column: str, hidden: list[int]) -> pa.Table:
    if not hidden or table.num_rows == 0:
        return table
    return table.filter(pc.invert(pc.is_in(table[column], value_set=pa.array(hidden, pa.int64()))))


def visible_to(hits: BatchHits, watch: WatchSet, owner: str) -> BatchHits:
    """The hits ``owner`` may see: those of public lists and of the owner's own."""
    lists = [s.id for s in watch.watchlists if not s.public and s.owner != owner]
    maps = [s.id for s in watch.watchmaps if not s.public and s.owner != owner]
    return BatchHits(
        _without(hits.watchlist_hits, "watchlistId", lists),
        _without(hits.area_hits, "watchmapId", maps),
        hits.seconds,
        hits.mma_hits,  # skymaps are everyone's
    )


def _private_owners(hits: BatchHits, watch: WatchSet) -> set[str]:
    """The owners of the private lists that have hits in the batch."""
    with_hits = set(hits.watchlist_hits["watchlistId"].to_pylist()) if hits.watchlist_hits.num_rows else set()
    in_areas = set(hits.area_hits["watchmapId"].to_pylist()) if hits.area_hits.num_rows else set()
    return {s.owner for s in watch.watchlists if not s.public and s.id in with_hits} | {
        s.owner for s in watch.watchmaps if not s.public and s.id in in_areas
    }


def apply_filters(
    batch: DecodedBatch,
    filters: list[Filter],
    limits: sandbox.Limits,
    context: BatchContext | None = None,
    home: Home | None = None,
    hits: BatchHits | None = None,
    watch: WatchSet | None = None,
) -> stages.BatchOutcome:
    """``stages.apply_filters``, each filter given the hits its owner may see."""
    owners = _private_owners(hits, watch) if hits is not None and watch is not None else set()
    if not owners or not filters:
        return stages.apply_filters(batch, filters, limits, context, home, hits)
    assert hits is not None and watch is not None
    groups: dict[str | None, list[int]] = {}
    for i, flt in enumerate(filters):
        reads_hits = bool(tables_read(flt.sql) & HIT_VIEWS)
        key = None if not reads_hits else (flt.owner if flt.owner in owners else EVERYONE)
        groups.setdefault(key, []).append(i)
    outputs: list[stages.FilterOutput | None] = [None] * len(filters)
    first: stages.BatchOutcome | None = None
    seconds = 0.0
    for key, members in groups.items():
        seen = hits if key is None else visible_to(hits, watch, key)
        outcome = stages.apply_filters(batch, [filters[i] for i in members], limits, context, home, seen)
        for i, output in zip(members, outcome.outputs, strict=True):
            outputs[i] = output
        seconds += outcome.timings.get("filters", 0.0)
        first = first or outcome
    assert first is not None and all(o is not None for o in outputs)
    return replace(first, outputs=[o for o in outputs if o is not None], timings={**first.timings, "filters": seconds})
