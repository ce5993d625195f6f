"""A DuckDB database that serves one micro-batch at a time, for running the same filters on batch after batch.

Each batch's Arrow tables are registered as the views' names on every cursor, not copied: DuckDB reads only the
columns and rows a filter's plan needs from them (the views are wide: copying a heavy batch's 50,000 sources of
111 columns into native tables cost more than all three demo filters' passes, docs/lake.md). Passes are prepared
once (a new registration only rebinds them), and several cursors let independent passes run side by side. An
engine lives as long as its worker process and the views' schemas stay the same.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any

import duckdb
import pyarrow as pa

from nightjar.sql import functions, sandbox


class BatchEngine:
    """Locked connections serving views of the given schemas, ``workers`` sandboxes (cursors) over them."""

    def __init__(self, schemas: Mapping[str, pa.Schema], limits: sandbox.Limits, workers: int) -> None:
        self.schemas = dict(schemas)
        self._empty = {name: schema.empty_table() for name, schema in self.schemas.items()}
        self._serving: dict[str, Any] = {}  # what each name serves now
        self.con = duckdb.connect(":memory:")
        try:
            functions.install(self.con)
            self.cursors = [self.con.cursor() for _ in range(max(1, workers))]
            self._register(self._empty)
            sandbox.harden(self.con, limits, self.cursors)
        except BaseException:
            self.con.close()
            raise
        names = tuple(self.schemas)
        self.boxes = [sandbox.Sandbox(c, names, statements={}) for c in self.cursors]

    def _register(self, tables: Mapping[str, Any]) -> None:
        # A registered view belongs to the connection that registered it: each cursor gets its own. A name that
        # serves its empty table already is left as it is (a registration costs ~0.5 ms a cursor).
        changed = {n: d for n, d in tables.items() if not (d is self._empty[n] and self._serving.get(n) is d)}
        for cursor in self.cursors:
            for name, data in changed.items():
                cursor.register(name, data)
        self._serving.update(changed)

    def load(self, tables: Mapping[str, Any], needed: Collection[str] | None = None) -> None:
        """Serve the batch's tables; only the ``needed`` ones (default: all), the others read as empty."""
        self._register(
            {name: tables[name] if needed is None or name in needed else self._empty[name] for name in self.schemas}
        )

    def clear(self) -> None:
        """Serve empty views again, so that the engine does not keep the last batch's tables alive."""
        self._register(self._empty)

    def close(self) -> None:
        """Close the sandboxes and the connection."""
        for box in self.boxes:
            box.close()
        self.con.close()


_LOCAL = threading.local()  # each thread keeps its own engines: a connection never serves two threads at once
MAX_ENGINES = 3


def engine_for(schemas: Mapping[str, pa.Schema], key: Any, limits: sandbox.Limits, workers: int) -> BatchEngine:
    """This thread's engine for these schemas and resources (made on first use, kept for the next batch)."""
    engines: OrderedDict[tuple[Any, ...], BatchEngine] = getattr(_LOCAL, "engines", None) or OrderedDict()
    _LOCAL.engines = engines
    full_key = (key, limits.memory, limits.threads, str(limits.temp_dir), limits.temp_dir_limit, workers)
    found = engines.get(full_key)
    if found is not None:
        engines.move_to_end(full_key)
        return found
    made = BatchEngine(schemas, limits, workers)
    engines[full_key] = made
    while len(engines) > MAX_ENGINES:
        _, old = engines.popitem(last=False)
        old.close()
    return made
