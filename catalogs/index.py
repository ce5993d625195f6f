"""The in-memory index of one catalogue partition and its margin, as the crossmatch kernel searches it.

Rows are split into *tiers* by their reach (how far an alert may lie and still match them): most rows of a
catalogue reach a few arcseconds, a few large galaxies reach arcminutes, and each tier is searched at the
HEALPix order its own radius needs, so the rare large radii do not widen every search. Within a tier, rows are
sorted by ``_healpix_29`` (the file order); a dense *directory* of row offsets per cell, at an order giving about
one row per cell, turns each neighbour-cell lookup into two array reads instead of binary searches. Positions are
not kept: the order-29 index locates a row to 0.4 milliarcseconds, and the kernel decodes candidates' positions
from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nightjar.catalogs import healpix, layout

TIER_BOUNDS = np.array([4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, healpix.MAX_RADIUS_ARCSEC])
DIRECTORY_MIN_ROWS = 2048
FLOAT_ATTRIBUTES = (layout.Z, layout.PHOTO_Z, layout.SEMI_MAJOR, layout.MAG, layout.DISTANCE)


@dataclass
class Tier:
    """Rows whose reach is at most ``bound`` arcsec: primary rows, then margin rows, each sorted."""

    bound: float
    order: int  # search order of the tier's radius
    index: np.ndarray  # sorted _healpix_29 of the partition's rows
    first: int  # position of the tier's first primary row in the attribute table
    margin_index: np.ndarray  # sorted _healpix_29 of the margin rows
    margin_first: int
    directory_order: int = -1  # -1: no directory, binary search instead
    directory: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        extra = self.directory.nbytes if self.directory is not None else 0
        return int(self.index.nbytes + self.margin_index.nbytes + extra)


@dataclass
class PartitionIndex:
    """One partition (with its margin) ready for searching."""

    order: int
    pixel: int
    tiers: list[Tier]
    attributes: pa.Table  # one row per indexed row, in tier order (primary, then margin, per tier)
    reach: np.ndarray  # float32 reach of each attribute row

    @property
    def nbytes(self) -> int:
        return int(sum(t.nbytes for t in self.tiers) + self.attributes.nbytes + self.reach.nbytes)


def _read(path: Path, wanted: tuple[str, ...]) -> pa.Table | None:
    if not path.is_file():
        return None
    names = pq.ParquetFile(path).schema_arrow.names
    return pq.read_table(path, columns=[c for c in (layout.SPATIAL_INDEX, *wanted) if c in names])


def _compact(table: pa.Table) -> pa.Table:
    """Attributes in little memory: floats as float32, strings dictionary-encoded, all-null columns dropped."""
    columns, names = [], []
    for name in table.column_names:
        col = table[name]
        if name == layout.SPATIAL_INDEX or col.null_count == len(col):
            continue
        if name in FLOAT_ATTRIBUTES:
            col = pc.cast(col, pa.float32())
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.dictionary_encode(pc.cast(col, pa.string()))
        columns.append(col)
        names.append(name)
    return pa.Table.from_arrays(columns, names=names) if names else pa.table({"_": pa.nulls(table.num_rows)})


def _directory(index: np.ndarray, order: int, pixel: int) -> tuple[int, np.ndarray | None]:
    """A dense offset directory over the partition's cells at an order with about one row per cell."""
    if index.size < DIRECTORY_MIN_ROWS:
        return -1, None
    depth = int(np.floor(np.log(index.size) / np.log(4)))
    dir_order = min(order + depth, layout.SPATIAL_INDEX_ORDER)
    cells = (index >> (2 * (layout.SPATIAL_INDEX_ORDER - dir_order))) - (pixel << (2 * (dir_order - order)))
    counts = np.bincount(cells, minlength=1 << (2 * (dir_order - order)))
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    dtype = np.int32 if index.size < 2**31 else np.int64
    return dir_order, offsets.astype(dtype)


def tier_of(reach: np.ndarray) -> np.ndarray:
    """The tier number of each reach value."""
    return np.minimum(np.searchsorted(TIER_BOUNDS, reach, side="left"), TIER_BOUNDS.size - 1)


def build_index(primary_file: Path, margin_file: Path | None, order: int, pixel: int) -> PartitionIndex:
    """Read a partition file (and its margin file, if any) into a :class:`PartitionIndex`."""
    primary = _read(primary_file, layout.ATTRIBUTE_COLUMNS)
    if primary is None:
        raise FileNotFoundError(f"catalogue partition missing: {primary_file}")
    margin = _read(margin_file, layout.ATTRIBUTE_COLUMNS) if margin_file is not None else None
    if margin is None:
        margin = primary.schema.empty_table()
    margin = margin.select(primary.column_names).cast(primary.schema)
    p_index = primary[layout.SPATIAL_INDEX].to_numpy()
    m_index = margin[layout.SPATIAL_INDEX].to_numpy()
    p_tier = tier_of(primary[layout.REACH].to_numpy())
    m_tier = tier_of(margin[layout.REACH].to_numpy())
    # Stable sorts keep the files' _healpix_29 order inside each tier.
    p_order = np.argsort(p_tier, kind="stable")
    m_order = np.argsort(m_tier, kind="stable")
    p_bounds = np.searchsorted(p_tier[p_order], np.arange(TIER_BOUNDS.size + 1))
    m_bounds = np.searchsorted(m_tier[m_order], np.arange(TIER_BOUNDS.size + 1))
    pieces: list[pa.Table] = []
    tiers: list[Tier] = []
    position = 0
    for t, bound in enumerate(TIER_BOUNDS):
        p_rows = p_order[p_bounds[t] : p_bounds[t + 1]]
        m_rows = m_order[m_bounds[t] : m_bounds[t + 1]]
        if p_rows.size == 0 and m_rows.size == 0:
            continue
        pieces.append(primary.take(pa.array(p_rows)))
        pieces.append(margin.take(pa.array(m_rows)))
        index = p_index[p_rows]
        dir_order, directory = _directory(index, order, pixel)
        tiers.append(
            Tier(
                bound=float(bound),
                order=healpix.search_order(float(bound)),
                index=index,
                first=position,
                margin_index=m_index[m_rows],
                margin_first=position + p_rows.size,
                directory_order=dir_order,
                directory=directory,
            )
        )
        position += p_rows.size + m_rows.size
    table = pa.concat_tables(pieces) if pieces else primary.schema.empty_table()
    reach = table[layout.REACH].to_numpy().astype(np.float32)
    return PartitionIndex(order, pixel, tiers, _compact(table.drop_columns([layout.REACH])), reach)
