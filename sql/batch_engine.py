"""A DuckDB database that holds one micro-batch at a time, for running the same filters on batch after batch.

Filters read native DuckDB tables (faster to scan than Arrow), their passes are prepared once, and several
cursors let independent passes run side by side. An engine lives as long as its worker process and the views'
schemas stay the same; each batch replaces the tables' rows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any

import duckdb
import pyarrow as pa

from nightjar.sql import functions, sandbox

_STAGING = "__nj_in"


class BatchEngine:
    """Locked tables of the given schemas, ``workers`` sandboxes (cursors) over them."""

    def __init__(self, schemas: Mapping[str, pa.Schema], limits: sandbox.Limits, workers: int) -> None:
        self.schemas = dict(schemas)
        self.con = duckdb.connect(":memory:")
        try:
            for name, schema in self.schemas.items():
                self.con.register(_STAGING, schema.empty_table())
                self.con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM {_STAGING}')
                self.con.unregister(_STAGING)
            functions.install(self.con)
            cursors = [self.con.cursor() for _ in range(max(1, workers))]
            sandbox.harden(self.con, limits, cursors)
        except BaseException:
            self.con.close()
            raise
        names = tuple(self.schemas)
        self.boxes = [sandbox.Sandbox(c, names, statements={}) for c in cursors]
        self._filled: set[str] = set()  # the tables that hold rows now

    def load(self, tables: Mapping[str, Any], needed: Collection[str] | None = None) -> None:
        """Replace every table's rows with the batch's; only the ``needed`` tables (default: all) get rows, the
        others are left empty (copying a view no filter reads would cost as much as the filters)."""
        for name in self.schemas:
            data = tables[name]
            if name in self._filled:
                self.con.execute(f'DELETE FROM "{name}"')
                self._filled.discard(name)
            if needed is not None and name not in needed:
                continue
            if data.num_rows if isinstance(data, pa.Table) else True:
                self._filled.add(name)
                self.con.register(_STAGING, data)
                try:
                    self.con.execute(f'INSERT INTO "{name}" SELECT * FROM {_STAGING}')
                finally:
                    self.con.unregister(_STAGING)

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
