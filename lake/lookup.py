"""Point reads of the lake: the cutouts of one alert by diaSourceId, and cone searches by position.

Cutout files are sorted by diaSourceId in row groups of a few dozen alerts, so a lookup opens one file and
reads one row group, chosen from the Delta log's per-file statistics and the Parquet row-group statistics.
Source files are sorted by the order-29 HEALPix index, so a cone search reads the row groups whose index range
meets the cone's pixels.
"""

from __future__ import annotations

import functools

import healpy as hp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from nightjar import paths
from nightjar.geometry import separation_arcsec
from nightjar.lake import object_states, tables
from nightjar.lake.read import arrow_dataset
from nightjar.storage import Home, lake_root

CUTOUT_COLUMNS = ["diaSourceId", "cutoutDifference", "cutoutScience", "cutoutTemplate"]


def _data_files(home: Home, table: str, version: int | None) -> tuple[pafs.FileSystem, list[str]]:
    """The file system of ``home``'s lake and the paths on it of ``table``'s data files (latest, or at ``version``)."""
    root = lake_root(home)
    folder = root.fs_path(root.table_uri(table))
    actions = pa.table(tables.load(home, table, version).get_add_actions(flatten=True))
    return root.filesystem(), [f"{folder}/{p}" for p in actions["path"].to_pylist()]


class RowGroupIndex:
    """The min/max of one column in every row group of a table's current files, to read only what a lookup
    needs. Built once from the Parquet footers (one read per file); make a new index to see new commits."""

    def __init__(self, home: Home, table: str, column: str, version: int | None = None) -> None:
        self._fs, self.files = _data_files(home, table, version)
        file_index, groups, lo, hi = [], [], [], []
        self.schema = pa.schema([])
        for f, path in enumerate(self.files):
            meta = pq.read_metadata(path, filesystem=self._fs)
            self.schema = meta.schema.to_arrow_schema()
            position = meta.schema.to_arrow_schema().get_field_index(column)
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(position).statistics
                file_index.append(f)
                groups.append(g)
                lo.append(stats.min if stats is not None and stats.has_min_max else np.iinfo(np.int64).min)
                hi.append(stats.max if stats is not None and stats.has_min_max else np.iinfo(np.int64).max)
        self.file_index = np.asarray(file_index, dtype=np.int64)
        self.group = np.asarray(groups, dtype=np.int64)
        self.lo = np.asarray(lo, dtype=np.int64)
        self.hi = np.asarray(hi, dtype=np.int64)
        self._open = functools.lru_cache(maxsize=512)(functools.partial(pq.ParquetFile, filesystem=self._fs))

    def read(self, ranges: np.ndarray, columns: list[str] | None) -> pa.Table:
        """Rows of the row groups whose [min, max] meets any [lo, hi) range (rows outside are not removed)."""
        hit = np.zeros(len(self.lo), dtype=bool)
        for lo, hi in ranges.tolist():
            hit |= (self.lo < hi) & (self.hi >= lo)
        parts = []
        for f in np.unique(self.file_index[hit]).tolist():
            groups = self.group[hit & (self.file_index == f)].tolist()
            parts.append(self._open(self.files[f]).read_row_groups(groups, columns=columns))
        if not parts:
            empty = self.schema.empty_table()
            return empty.select([c for c in columns if c in empty.column_names]) if columns is not None else empty
        return pa.concat_tables(parts, promote_options="permissive")


class CutoutStore:
    """Cutouts by diaSourceId, for one version of the cutouts table (make a new store to see new alerts)."""

    def __init__(self, home: Home, version: int | None = None) -> None:
        self._index = RowGroupIndex(home, paths.CUTOUTS, "diaSourceId", version)

    def get(self, dia_source_id: int) -> dict[str, bytes | None] | None:
        """The three cutouts of an alert, or None if the lake has no such diaSourceId."""
        rows = self._index.read(np.array([[dia_source_id, dia_source_id + 1]]), CUTOUT_COLUMNS)
        found = rows.filter(pc.equal(rows["diaSourceId"], dia_source_id)) if rows.num_rows else rows
        if found.num_rows == 0:
            return None
        return {k: v for k, v in found.to_pylist()[0].items() if k != "diaSourceId"}


def cone_order(radius_arcsec: float) -> int:
    """The HEALPix order whose pixels are about the cone's size (few pixels, little excess area)."""
    order = int(np.clip(np.floor(np.log2(np.degrees(np.sqrt(np.pi / 3)) * 3600 / max(radius_arcsec, 1e-3))), 0, 20))
    return order


def cone_ranges(ra: float, dec: float, radius_arcsec: float) -> np.ndarray:
    """Order-29 index ranges covering a cone."""
    order = cone_order(radius_arcsec)
    vec = hp.ang2vec(ra, dec, lonlat=True)
    disc = hp.query_disc(1 << order, vec, np.radians(radius_arcsec / 3600), inclusive=True, nest=True)
    # The centre's own pixel always: query_disc finds nothing for a tiny cone at a pole.
    centre = hp.vec2pix(1 << order, *vec, nest=True)
    pixels = np.unique(np.append(disc, centre))
    shift = 2 * (paths.HPX_ORDER_MAX - order)
    breaks = np.flatnonzero(np.diff(pixels) != 1)
    starts = np.concatenate([[pixels[0]], pixels[breaks + 1]])
    ends = np.concatenate([pixels[breaks], [pixels[-1]]]) + 1
    return np.stack([starts << shift, ends << shift], axis=1).astype(np.int64)


class ConeSearch:
    """Cone searches over one version of a table whose files are sorted by ``hpx29``.

    ``states``: for ``objects`` (merge-on-read), which rows are current at that version (``lake.object_states``);
    superseded states are left out. None for ``objects``: worked out here.
    """

    def __init__(
        self,
        home: Home,
        table: str = paths.SOURCES,
        version: int | None = None,
        states: object_states.States | None = None,
    ) -> None:
        self._index = RowGroupIndex(home, table, paths.HPX29, version)
        self._states = states
        if states is None and table == paths.OBJECTS and object_states.has_states(self._index.schema):
            dt = tables.load(home, table, version)
            self._states = object_states.states(dt, arrow_dataset(dt))

    def __call__(self, ra: float, dec: float, radius_arcsec: float, columns: list[str] | None = None) -> pa.Table:
        """Rows within ``radius_arcsec`` of (ra, dec), with their separation ``sep_arcsec``."""
        wanted = None if columns is None else list(dict.fromkeys([*columns, "ra", "dec"]))
        states = self._states if self._states is not None and not self._states.folded_only else None
        extra: list[str] = []
        if states is not None and wanted is not None:
            extra = [c for c in (object_states.KEY, object_states.SEQ) if c not in wanted]
            wanted = [*wanted, *extra]
        rows = self._index.read(cone_ranges(ra, dec, radius_arcsec), wanted)
        if states is not None and rows.num_rows:
            rows = rows.filter(states.mask(rows)).drop_columns(extra)
        if rows.num_rows == 0:
            return rows.append_column("sep_arcsec", pa.array([], pa.float64()))
        sep = separation_arcsec(rows["ra"].to_numpy(), rows["dec"].to_numpy(), ra, dec)
        inside = sep <= radius_arcsec
        return rows.filter(pa.array(inside)).append_column("sep_arcsec", pa.array(sep[inside]))


def cone(
    home: Home,
    ra: float,
    dec: float,
    radius_arcsec: float,
    table: str = paths.SOURCES,
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows of ``table`` within ``radius_arcsec`` of (ra, dec), with their separation ``sep_arcsec``.

    For many searches over the same lake version, keep a ``ConeSearch``: it reads the file footers once.
    """
    return ConeSearch(home, table)(ra, dec, radius_arcsec, columns)


class KeyIndex:
    """Where each key of a table lives (file, row group), for point reads by a column the files are not sorted
    by (objects by diaObjectId: the files are sorted by position). Built once per table version by reading the
    key column (8 bytes a row: 2 MB for 250,000 objects); make a new index to see new commits."""

    def __init__(self, home: Home, table: str, column: str, version: int | None = None) -> None:
        self._fs, self.files = _data_files(home, table, version)
        self.column = column
        keys, seqs, files, groups = [], [], [], []
        self.schema = pa.schema([])
        for f, path in enumerate(self.files):
            parquet = pq.ParquetFile(path, filesystem=self._fs)
            self.schema = parquet.schema_arrow
            sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.metadata.num_row_groups)]
            has_seq = object_states.SEQ in parquet.schema_arrow.names
            read = parquet.read(columns=[column, object_states.SEQ] if has_seq else [column])
            values = read[column].to_numpy(zero_copy_only=False)
            keys.append(np.asarray(values, dtype=np.int64))
            seq = pc.fill_null(read[object_states.SEQ], -1).to_numpy() if has_seq else np.full(len(values), -1)
            seqs.append(np.asarray(seq, dtype=np.int64))
            files.append(np.full(len(values), f, dtype=np.int32))
            groups.append(np.repeat(np.arange(len(sizes), dtype=np.int32), sizes))
        all_keys = np.concatenate(keys) if keys else np.empty(0, np.int64)
        all_seqs = np.concatenate(seqs) if seqs else np.empty(0, np.int64)
        # Merge-on-read tables (objects) hold several states of a key: index the newest (largest stateSeq) only.
        order = np.lexsort((-all_seqs, all_keys))
        first = np.ones(len(order), dtype=bool)
        first[1:] = all_keys[order][1:] != all_keys[order][:-1]
        order = order[first]
        self.keys = all_keys[order]
        self.seqs = all_seqs[order]
        self.states = bool(len(all_seqs)) and bool((all_seqs >= 0).any())
        self.file_index = (np.concatenate(files) if files else np.empty(0, np.int32))[order]
        self.group = (np.concatenate(groups) if groups else np.empty(0, np.int32))[order]
        self._open = functools.lru_cache(maxsize=512)(functools.partial(pq.ParquetFile, filesystem=self._fs))

    def read(self, keys: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """The rows of these keys (unknown keys are absent)."""
        keys = np.unique(np.asarray(keys, dtype=np.int64))
        at = np.clip(np.searchsorted(self.keys, keys), 0, max(len(self.keys) - 1, 0))
        hit = at[(len(self.keys) > 0) & (self.keys[at] == keys)] if len(self.keys) else at[:0]
        extra = []
        if self.states and columns is not None:
            extra = [c for c in (self.column, object_states.SEQ) if c not in columns]
        wanted = None if columns is None else [*columns, *extra]
        parts = []
        for f in np.unique(self.file_index[hit]).tolist():
            groups = sorted(set(self.group[hit][self.file_index[hit] == f].tolist()))
            parts.append(self._open(self.files[f]).read_row_groups(groups, columns=wanted))
        if not parts:
            empty = self.schema.empty_table()
            return empty.select([c for c in columns if c in empty.column_names]) if columns is not None else empty
        rows = pa.concat_tables(parts, promote_options="permissive")
        rows = rows.filter(pc.is_in(rows[self.column], pa.array(keys, pa.int64())))
        if self.states and object_states.SEQ in rows.column_names:
            # A row group holding one key's newest state may hold an older state of another key asked for.
            rows = object_states.newest(rows)
        return rows.drop_columns(extra)
