"""Notebook access to the lake: each Delta table as pyarrow, Dask or DuckDB, at one pinned snapshot.

``open(home)`` loads every existing table once and keeps its version: everything read through the returned
:class:`Lake` sees that snapshot, however much ingestion commits meanwhile. ``as_of`` reads the lake as it was at
a moment (the same moment for every table); ``versions`` pins exact table versions, such as those an export's
manifest records.

Filters are pyarrow/DNF tuples, ``[("night", "=", 60950), ("band", "in", ["g", "r"])]`` (a list of such lists is an
OR of ANDs). They select whole files first, from the Delta log (partition values and per-file min/max statistics,
so a sorted ``hpx29`` range touches few files), then rows.

Examples
--------
>>> import nightjar.lake
>>> lake = nightjar.lake.open("nightjar-data")  # doctest: +SKIP
>>> lake.to_arrow("sources", columns=["midpointMjdTai", "band", "psfFlux"],
...               filters=[("diaObjectId", "=", 170000000001000003)])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable

from nightjar import paths
from nightjar.errors import UserError
from nightjar.lake import object_states, tables
from nightjar.lake.read import arrow_dataset, log_time, version_at
from nightjar.storage import Home, LakeRoot, lake_root

if TYPE_CHECKING:
    import dask.dataframe as dd
    import duckdb

Filters = Sequence[tuple[str, str, Any]] | Sequence[Sequence[tuple[str, str, Any]]]
"""Filters in pyarrow's disjunctive normal form: a list of (column, op, value), or a list of such lists (OR)."""

DASK_PARTITION_BYTES = 128 * 2**20
"""Parquet bytes per Dask partition: small lake files are grouped so each task carries real work."""


class LakeError(UserError):
    """A lake request the user can fix: an unknown table, a moment before the lake existed, a bad filter."""


def check_table_name(table: str) -> None:
    """Raise :class:`LakeError` unless ``table`` is one of the lake's tables (``paths.TABLES``)."""
    if table not in paths.TABLES:
        raise LakeError(f"unknown table {table!r}; the lake's tables are: {', '.join(paths.TABLES)}")


def delta_table(home: Home, table: str, version: int | None = None) -> DeltaTable:
    """The Delta table ``table`` under ``home`` (latest, or at ``version``); a LakeError if it has no data."""
    check_table_name(table)
    if not tables.exists(home, table):
        raise LakeError(f"table {table!r} has no data yet in {lake_root(home).uri}")
    if version is None:
        return tables.load(home, table)
    try:
        return tables.load(home, table, version)
    except Exception as exc:  # deltalake raises its generic error for a version it does not have
        raise LakeError(f"table {table!r} has no version {version}: {exc}") from None


def parse_as_of(value: datetime | str) -> datetime:
    """A timezone-aware moment from a datetime or an ISO 8601 string (naive means UTC).

    Examples
    --------
    >>> parse_as_of("2025-09-05T06:00:00").isoformat()
    '2025-09-05T06:00:00+00:00'
    """
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def commit_time(dt: DeltaTable) -> datetime | None:
    """When the loaded version of ``dt`` was committed, from its commit file; None if the log no longer has it.

    (``DeltaTable.history`` cannot say: on a table loaded at an older version it lists the newest commits.)
    """
    return log_time(dt, dt.version())


def _as_of(home: Home, table: str, moment: datetime) -> DeltaTable | None:
    """The table as it was at ``moment``; None if it did not exist yet."""
    dt = delta_table(home, table)
    version = version_at(dt, moment)
    if version is None:
        return None
    if version != dt.version():
        dt.load_as_version(version)
    return dt


def _file_filter(filters: Filters | None) -> list[list[tuple[str, str, Any]]] | None:
    """Filters as a list of AND-groups (DNF), checked enough to give a clear message."""
    if not filters:
        return None
    groups: Sequence[Any] = [filters] if isinstance(filters[0], tuple) else filters
    out: list[list[tuple[str, str, Any]]] = []
    for group in groups:
        terms: list[tuple[str, str, Any]] = []
        for term in group:
            if not isinstance(term, tuple) or len(term) != 3:
                raise LakeError(f"a filter is (column, op, value), not {term!r}")
            terms.append((str(term[0]), str(term[1]), term[2]))
        out.append(terms)
    return out


class Lake:
    """The lake's tables at one snapshot, as pyarrow, Dask or DuckDB objects.

    Built by :func:`open`. ``tables`` lists the tables present in the snapshot and ``versions`` their versions.
    """

    def __init__(self, home: Home, snapshots: Mapping[str, DeltaTable], as_of: datetime | None = None) -> None:
        self.home = home
        self.as_of = as_of
        self._snapshots = dict(snapshots)
        self._states: object_states.States | None = None

    def __repr__(self) -> str:
        moment = f", as_of={self.as_of.isoformat()}" if self.as_of else ""
        return f"Lake({str(self.home)!r}, versions={self.versions}{moment})"

    @property
    def tables(self) -> list[str]:
        """The tables in this snapshot, in ``paths.TABLES`` order."""
        return [t for t in paths.TABLES if t in self._snapshots]

    @property
    def versions(self) -> dict[str, int]:
        """Each table's Delta version in this snapshot."""
        return {t: self._snapshots[t].version() for t in self.tables}

    def delta(self, table: str) -> DeltaTable:
        """The pinned ``deltalake.DeltaTable`` of ``table``."""
        check_table_name(table)
        if table not in self._snapshots:
            when = f" at {self.as_of.isoformat()}" if self.as_of else ""
            raise LakeError(f"table {table!r} has no data in this snapshot{when}")
        return self._snapshots[table]

    def schema(self, table: str) -> pa.Schema:
        """The Arrow schema of ``table``, partition columns included."""
        return self.dataset(table).schema

    def dataset(self, table: str, filters: Filters | None = None) -> ds.Dataset:
        """A pyarrow dataset over the files of ``table`` that may hold rows matching ``filters``.

        Files are pruned on partition values and Delta file statistics; rows are not filtered here, except that
        ``objects`` holds each object's newest state only (``lake.object_states``: superseded states are left out).
        """
        dataset = self._files(table, filters)
        states = self.current_states() if table == paths.OBJECTS else None
        return dataset if states is None else object_states.apply(states, dataset)

    def _files(self, table: str, filters: Filters | None = None) -> ds.Dataset:
        """The pruned files of ``table`` as a dataset, every row of them."""
        dt = self.delta(table)
        try:
            return arrow_dataset(dt, file_pruning_predicate=_file_filter(filters))
        except LakeError:
            raise
        except Exception as exc:  # a value that does not parse as its column's type, an unknown column
            raise LakeError(f"{table}: bad filter {filters!r}: {exc}") from None

    def current_states(self) -> object_states.States:
        """Which ``objects`` rows of this snapshot are current (from the whole table: pruned reads keep it)."""
        if self._states is None:
            dt = self.delta(paths.OBJECTS)
            self._states = object_states.states(dt, arrow_dataset(dt))
        return self._states

    def to_arrow(self, table: str, columns: Sequence[str] | None = None, filters: Filters | None = None) -> pa.Table:
        """Read ``table`` (the given ``columns``, the rows matching ``filters``) into one Arrow table.

        Examples
        --------
        >>> lake.to_arrow("sources", ["diaSourceId", "psfFlux"], [("night", "=", 60950)])  # doctest: +SKIP
        """
        dataset = self.dataset(table, filters)
        expression = pq.filters_to_expression(_file_filter(filters)) if filters else None
        return dataset.to_table(columns=list(columns) if columns is not None else None, filter=expression)

    def to_dask(
        self,
        table: str,
        columns: Sequence[str] | None = None,
        filters: Filters | None = None,
        partition_bytes: int = DASK_PARTITION_BYTES,
    ) -> dd.DataFrame:
        """A lazy Dask DataFrame over the pruned files of ``table``, one partition per ~``partition_bytes``.

        Columns are pyarrow-backed pandas dtypes, so nullable integers (64-bit ids) stay exact. Nothing is
        computed here: compute with the Dask client of your choice (``client.compute(df)`` or ``df.compute()``).

        Examples
        --------
        >>> df = lake.to_dask("sources", ["night", "band"])  # doctest: +SKIP
        >>> df.groupby(["night", "band"]).size().compute()  # doctest: +SKIP
        """
        from nightjar.lake.to_dask import dask_frame

        dataset = self._files(table, filters)
        rows = self.current_states().expression() if table == paths.OBJECTS else None
        return dask_frame(dataset, self.delta(table), columns, _file_filter(filters), partition_bytes, rows)

    def duckdb(self, threads: int | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one read-only view per table of this snapshot.

        This is your own connection (not the sandbox that runs untrusted filter SQL): the views read the
        snapshot's Parquet files through Arrow datasets, with projections and filters pushed down.

        Examples
        --------
        >>> con = lake.duckdb()  # doctest: +SKIP
        >>> con.sql("SELECT band, count(*) FROM sources GROUP BY band").fetchall()  # doctest: +SKIP
        """
        import duckdb

        con = duckdb.connect(":memory:")
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        for table in self.tables:
            con.register(table, self.dataset(table))
        return con


def open(
    home: str | os.PathLike[str] | LakeRoot,
    *,
    as_of: datetime | str | None = None,
    versions: Mapping[str, int] | None = None,
) -> Lake:
    """Open the lake under ``home`` at its latest state, at a past moment, or at given table versions.

    Parameters
    ----------
    home
        The Nightjar home (``NIGHTJAR_HOME``): the lake is its ``lake/`` folder; or the lake's location on
        object storage, as ``LakeRoot(uri, storage_options)`` or ``Settings().lake``.
    as_of
        A moment (datetime, or ISO 8601 string; naive means UTC): every table as it was then. Tables created
        later are absent.
    versions
        Exact versions by table (for instance an export manifest's ``versions``); only these tables are opened.

    Examples
    --------
    >>> lake = open("nightjar-data")  # doctest: +SKIP
    >>> lake.versions  # doctest: +SKIP
    {'sources': 12, 'objects': 12}
    >>> old = open("nightjar-data", as_of="2025-09-05T06:00:00Z")  # doctest: +SKIP
    """
    root: Home = home if isinstance(home, LakeRoot) else Path(home).expanduser().resolve()
    if as_of is not None and versions is not None:
        raise LakeError("give as_of or versions, not both")
    if not tables.is_lake(root):
        raise LakeError(f"no lake under {root} (expected {lake_root(root).uri})")
    snapshots: dict[str, DeltaTable] = {}
    moment = parse_as_of(as_of) if as_of is not None else None
    if versions is not None:
        for table, version in versions.items():
            snapshots[table] = delta_table(root, table, int(version))
    else:
        for table in paths.TABLES:
            if not tables.exists(root, table):
                continue
            dt = _as_of(root, table, moment) if moment is not None else delta_table(root, table)
            if dt is not None:
                snapshots[table] = dt
    return Lake(root, snapshots, moment)
