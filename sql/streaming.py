"""Run many filters over one set of views (a micro-batch, or a night of the lake in a backtest).

Simple filters share DuckDB passes (``compile``); a pass that fails or runs out of time is split so that each of
its filters runs alone, and only the guilty one is reported. Every result carries the keys of its rows: the
object and the alert (diaSource) each match is about, which the delivery ledger uses.
"""

from __future__ import annotations

import functools
import logging
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.paths import OBJECT_KEY, SOURCE_KEY
from nightjar.sql import batch_engine, sandbox, views
from nightjar.sql.compile import PREFIX, FilterSpec, Group, Member, Plan, compile_filters, schemas_key
from nightjar.sql.parse import QueryError, QueryTimeout, tables_read

log = logging.getLogger(__name__)

KEYS_SCHEMA = pa.schema([pa.field(OBJECT_KEY, pa.int64()), pa.field(SOURCE_KEY, pa.int64())])


@dataclass
class FilterResult:
    """One filter's matches in one batch, or why it has none.

    ``keys`` has one row per match: ``diaObjectId`` and ``diaSourceId`` of the alert the match is about.
    """

    spec: FilterSpec
    matches: pa.Table | None
    keys: pa.Table | None
    error: str | None = None
    timed_out: bool = False
    shared_pass: bool = False

    @property
    def count(self) -> int:
        """The filter's matches in this batch."""
        return 0 if self.matches is None else self.matches.num_rows


def run_filters(
    tables: Mapping[str, Any],
    specs: Sequence[FilterSpec],
    limits: sandbox.Limits,
    isolate: frozenset[int] = frozenset(),
    workers: int | None = None,
) -> list[FilterResult]:
    """Every filter's matches over ``tables`` (the views, by name), in the order of ``specs``.

    Parameters
    ----------
    tables
        The views of the batch; names it lacks are empty placeholders.
    specs
        The filters.
    limits
        Sandbox limits; ``timeout_s`` is each pass's (and each filter's) time limit, ``max_rows`` the most
        matches one filter may have in one batch.
    isolate
        Filter ids that run in a query of their own even when they could share a pass (they failed recently).
    workers
        Queries run side by side (default: ``limits.threads``).
    """
    if not specs:
        return []
    full = views.with_placeholders(tables)
    schemas = views.schemas_of(full)
    plan = compile_filters(specs, schemas)
    engine = batch_engine.engine_for(schemas, schemas_key(schemas), limits, workers or limits.threads)
    engine.load(full, needed=frozenset().union(*(tables_read(s.sql) for s in specs)))
    try:
        return _Runner(engine, full, specs, limits).run(plan, isolate)
    finally:
        engine.clear()


class _Runner:
    def __init__(
        self,
        engine: batch_engine.BatchEngine,
        tables: Mapping[str, Any],
        specs: Sequence[FilterSpec],
        limits: sandbox.Limits,
    ) -> None:
        self.boxes: queue.SimpleQueue[sandbox.Sandbox] = queue.SimpleQueue()
        for box in engine.boxes:
            self.boxes.put(box)
        self.workers = len(engine.boxes)
        self.tables = tables
        self.specs = specs
        self.limits = limits
        self.results: dict[int, FilterResult] = {}

    def run(self, plan: Plan, isolate: frozenset[int]) -> list[FilterResult]:
        for index, message in plan.errors.items():
            self.results[index] = FilterResult(self.specs[index], None, None, error=message)
        tasks: list[Callable[[sandbox.Sandbox], None]] = []
        for group in plan.groups:
            shared = [m for m in group.members if self.specs[m.index].id not in isolate]
            alone = [m for m in group.members if self.specs[m.index].id in isolate]
            if len(shared) > 1:
                tasks.append(functools.partial(self._run_shared, group, shared))
            else:
                alone = shared + alone
            tasks.extend(functools.partial(self._run_member, group, m) for m in alone)
        tasks.extend(functools.partial(self._run_solo, index) for index in plan.solos)
        if self.workers == 1 or len(tasks) == 1:
            for task in tasks:
                self._with_box(task)
        else:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="nightjar-filters") as pool:
                for future in [pool.submit(self._with_box, task) for task in tasks]:
                    future.result()
        return [self.results[i] for i in range(len(self.specs))]

    def _with_box(self, task: Callable[[sandbox.Sandbox], None]) -> None:
        box = self.boxes.get()
        try:
            task(box)
        finally:
            self.boxes.put(box)

    def _run_shared(self, group: Group, members: list[Member], box: sandbox.Sandbox) -> None:
        started = time.monotonic()
        try:
            table = sandbox.execute(box, group.sql(members), self._pass_limits())
        except QueryError as exc:
            log.warning(
                "shared pass over %s (%d filters) failed, running them one by one: %s", group.view, len(members), exc
            )
            for member in members:
                self._run_member(group, member, box)
            return
        log.debug("pass over %s: %d filters in %.3f s", group.view, len(members), time.monotonic() - started)
        self._split(table, group, members, shared=True)

    def _pass_limits(self) -> sandbox.Limits:
        # A pass returns one row per view row, whatever the filters match: the per-filter cap applies later.
        return sandbox.Limits(
            memory=self.limits.memory,
            threads=self.limits.threads,
            timeout_s=self.limits.timeout_s,
            max_rows=2**62,
            temp_dir=self.limits.temp_dir,
            temp_dir_limit=self.limits.temp_dir_limit,
        )

    def _run_member(self, group: Group, member: Member, box: sandbox.Sandbox) -> None:
        try:
            table = sandbox.execute(box, group.member_sql(member), self._pass_limits())
        except QueryTimeout as exc:
            self.results[member.index] = FilterResult(
                self.specs[member.index], None, None, error=str(exc), timed_out=True
            )
            return
        except QueryError:
            # Run the user's own text, for an error message about their SQL.
            self._run_solo(member.index, box)
            return
        self._split(table, group, [replace(member, conjuncts=())], shared=False)

    def _split(self, table: pa.Table, group: Group, members: list[Member], shared: bool) -> None:
        """Each member's rows of a pass: where all of its conjuncts hold."""
        table = table.combine_chunks()
        conj_ids = sorted({c for m in members for c in m.conjuncts})
        truth = {c: table[f"{PREFIX}c{c}"].combine_chunks().to_numpy(zero_copy_only=False) for c in conj_ids}
        everything = np.ones(table.num_rows, dtype=bool)
        keys = self._complete_keys(
            pa.table({OBJECT_KEY: table[f"{PREFIX}object"], SOURCE_KEY: table[f"{PREFIX}source"]}, schema=KEYS_SCHEMA)
        ).combine_chunks()
        for member in members:
            mask = everything
            for c in member.conjuncts:
                mask = mask & truth[c]
            rows = np.flatnonzero(mask)
            spec = self.specs[member.index]
            if len(rows) > self.limits.max_rows:
                self.results[member.index] = FilterResult(spec, None, None, error=self._too_many(len(rows)))
                continue
            columns = [table[f"{PREFIX}e{e}"] for e in member.expressions]
            matches = pa.Table.from_arrays(columns, names=list(member.names))
            if len(rows) == 0:
                found, found_keys = matches.slice(0, 0), keys.slice(0, 0)
            else:
                where = pa.array(rows)
                found, found_keys = matches.take(where), keys.take(where)
            self.results[member.index] = FilterResult(spec, found, found_keys, shared_pass=shared)

    def _too_many(self, n: int) -> str:
        return f"{n} matches in one batch, more than the limit of {self.limits.max_rows}: narrow the filter"

    def _run_solo(self, index: int, box: sandbox.Sandbox) -> None:
        spec = self.specs[index]
        try:
            matches = sandbox.run(box, spec.sql, self.limits)
        except QueryError as exc:
            self.results[index] = FilterResult(
                spec, None, None, error=str(exc), timed_out=isinstance(exc, QueryTimeout)
            )
            return
        try:
            keys = self._output_keys(matches)
        except QueryError as exc:
            self.results[index] = FilterResult(spec, None, None, error=str(exc))
            return
        self.results[index] = FilterResult(spec, matches, keys)

    def _output_keys(self, matches: pa.Table) -> pa.Table:
        """Keys of a filter that ran as its own query: from its ``diaObjectId`` (and ``diaSourceId``) columns."""
        lower = {name.lower(): name for name in matches.column_names}
        if OBJECT_KEY.lower() not in lower or not pa.types.is_integer(matches[lower[OBJECT_KEY.lower()]].type):
            raise QueryError(
                "this filter must select diaObjectId: a filter with joins, grouping, window functions or "
                "DISTINCT/LIMIT runs as its own query, and each row it returns is delivered as a match on an object"
            )
        objects = pc.cast(matches[lower[OBJECT_KEY.lower()]], pa.int64())
        if SOURCE_KEY.lower() in lower and pa.types.is_integer(matches[lower[SOURCE_KEY.lower()]].type):
            sources = pc.cast(matches[lower[SOURCE_KEY.lower()]], pa.int64())
        else:
            sources = pa.nulls(matches.num_rows, pa.int64())
        return self._complete_keys(pa.table({OBJECT_KEY: objects, SOURCE_KEY: sources}, schema=KEYS_SCHEMA))

    def _complete_keys(self, keys: pa.Table) -> pa.Table:
        """Fill a missing diaSourceId with the object's newest alert in the batch (the alert that triggered)."""
        if keys.num_rows == 0 or keys[SOURCE_KEY].null_count == 0:
            return keys
        return complete_keys(keys, self.tables.get(views.OBJECTS))


def complete_keys(keys: pa.Table, objects: Any) -> pa.Table:
    """``keys`` with null diaSourceIds replaced by the object's ``lastDiaSourceId`` in ``objects``."""
    if objects is None or keys[SOURCE_KEY].null_count == 0:
        return keys
    if not isinstance(objects, pa.Table):
        objects = objects.to_table(columns=[OBJECT_KEY, "lastDiaSourceId"])
    if "lastDiaSourceId" not in objects.column_names:
        return keys
    where = pc.index_in(keys[OBJECT_KEY], value_set=pc.cast(objects[OBJECT_KEY], pa.int64()).combine_chunks())
    last = pc.cast(objects["lastDiaSourceId"], pa.int64()).combine_chunks().take(where)
    filled = pc.coalesce(keys[SOURCE_KEY], last)
    return keys.set_column(1, SOURCE_KEY, filled)
