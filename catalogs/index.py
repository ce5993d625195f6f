"""The in-memory index of one catalogue partition and its margin, as the crossmatch kernel searches it.

Rows are split into *tiers* by their reach (how far an alert may lie and still match them): most rows of a
catalogue reach a few arcseconds, a few large galaxies reach arcminutes, and each tier is searched at the
HEALPix order its own radius needs, so the rare large radii do not widen every search. Within a tier, rows are
sorted by ``_healpix_29`` (the file order), so the rows of any HEALPix cell are one contiguous range found by
binary search (the arrays of one partition fit the CPU caches). Positions are not kept: the order-29 index
locates a row to 0.4 milliarcseconds, and the kernel decodes candidates' positions from it. Memory: 8 bytes of
index per row plus the compacted attributes (float32 numbers, dictionary-encoded strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from nightjar.catalogs import healpix, layout

# Reach tiers double: a row is searched at most twice as far as it reaches (4× the area). With coarser tiers, the
# ~1 % of galaxies of a deep catalogue reaching 30″-250″ were searched at 256″ and made 30× more candidates.
TIER_BOUNDS = np.array([4.0 * 2**k for k in range(11)] + [healpix.MAX_RADIUS_ARCSEC])
TIER_MIN_ROWS = 512
FLOAT_ATTRIBUTES = (layout.Z, layout.PHOTO_Z, layout.SEMI_MAJOR, layout.MAG, layout.DISTANCE)


@dataclass
class Tier:
    """Rows whose reach is at most ``bound`` arcsec: primary rows, then margin rows, each sorted.

    ``index`` and ``margin_index`` are views into the partition's ``keys``, starting at ``first`` and
    ``margin_first``: a position in ``keys`` is also the row's position in the attribute table.
    """

    bound: float
    order: int  # search order of the tier's radius (quadrant_order)
    index: np.ndarray
    first: int
    margin_index: np.ndarray
    margin_first: int


@dataclass
class PartitionIndex:
    """One partition (with its margin) ready for searching."""

    order: int
    pixel: int
    tiers: list[Tier]
    keys: np.ndarray  # _healpix_29 of every row, in tier order (primary then margin rows, per tier)
    attributes: pa.Table  # one row per key
    reach: np.ndarray  # float32 reach of each row

    @property
    def nbytes(self) -> int:
        """The bytes of the index's arrays, counted against the cache budget."""
        return int(self.keys.nbytes + self.attributes.nbytes + self.reach.nbytes)


def _read(fs: pafs.FileSystem, path: PurePath, wanted: tuple[str, ...]) -> pa.Table | None:
    # An unreachable store raises here (OSError), so a worker that cannot reach the catalogues fails its task.
    if fs.get_file_info(str(path)).type != pafs.FileType.File:
        return None
    with fs.open_input_file(str(path)) as source:
        parquet = pq.ParquetFile(source)
        names = parquet.schema_arrow.names
        return parquet.read(columns=[c for c in (layout.SPATIAL_INDEX, *wanted) if c in names])


def _compact(table: pa.Table) -> pa.Table:
    """Attributes in little memory: floats as float32, types dictionary-encoded, all-null columns dropped."""
    columns, names = [], []
    for name in table.column_names:
        col = table[name]
        if name == layout.SPATIAL_INDEX or col.null_count == len(col):
            continue
        if name in FLOAT_ATTRIBUTES:
            col = pc.cast(col, pa.float32())
        elif name == layout.OBJECT_TYPE:
            col = pc.dictionary_encode(pc.cast(col, pa.string()))  # a few distinct types
        columns.append(col.combine_chunks())
        names.append(name)
    return pa.Table.from_arrays(columns, names=names) if names else pa.table({"_": pa.nulls(table.num_rows)})


def tier_of(reach: np.ndarray) -> np.ndarray:
    """The tier number of each reach value."""
    return np.minimum(np.searchsorted(TIER_BOUNDS, reach, side="left"), TIER_BOUNDS.size - 1)


def merge_small_tiers(tier: np.ndarray, min_rows: int | None = None) -> np.ndarray:
    """Move the rows of sparse tiers up into the next tier (a wider search is always correct).

    Every tier costs a pass over the batch, so a tier of a handful of large galaxies is not worth its own:
    consecutive populated tiers are pooled until they hold ``min_rows`` rows, into the widest of them; the
    widest populated tier takes whatever is left.

    Examples
    --------
    >>> merge_small_tiers(np.array([0] * 5000 + [2] * 10 + [4] * 3)).tolist()[-4:]
    [4, 4, 4, 4]
    """
    min_rows = TIER_MIN_ROWS if min_rows is None else min_rows
    counts = np.bincount(tier, minlength=TIER_BOUNDS.size)
    populated = np.flatnonzero(counts)
    mapping = np.arange(TIER_BOUNDS.size)
    pending: list[int] = []
    total = 0
    for t in populated:
        pending.append(int(t))
        total += int(counts[t])
        if total >= min_rows or t == populated[-1]:
            mapping[pending] = t
            pending, total = [], 0
    return mapping[tier]


def build_index(
    primary_file: PurePath,
    margin_file: PurePath | None,
    order: int,
    pixel: int,
    fs: pafs.FileSystem | None = None,
) -> PartitionIndex:
    """Read a partition file (and its margin file, if any) on ``fs`` (default: the local file system) into a
    :class:`PartitionIndex`."""
    fs = fs if fs is not None else pafs.LocalFileSystem()
    primary = _read(fs, primary_file, layout.ATTRIBUTE_COLUMNS)
    if primary is None:
        raise FileNotFoundError(
            f"catalogue partition missing: {primary_file} (is NIGHTJAR_CATALOGS_URI reachable from this process?)"
        )
    margin = _read(fs, margin_file, layout.ATTRIBUTE_COLUMNS) if margin_file is not None else None
    if margin is None:
        margin = primary.schema.empty_table()
    margin = margin.select(primary.column_names).cast(primary.schema)
    table = pa.concat_tables([primary, margin])
    keys_all = table[layout.SPATIAL_INDEX].to_numpy()
    tier_all = merge_small_tiers(tier_of(table[layout.REACH].to_numpy()))
    is_margin = np.arange(table.num_rows) >= primary.num_rows
    # Rows by tier; within a tier the primary rows, then the margin rows, each in file (_healpix_29) order.
    arrangement = np.lexsort((np.arange(table.num_rows), is_margin, tier_all))
    keys = keys_all[arrangement]
    tier_col = tier_all[arrangement]
    margin_col = is_margin[arrangement]
    tiers: list[Tier] = []
    for t, bound in enumerate(TIER_BOUNDS):
        start, stop = (int(x) for x in np.searchsorted(tier_col, [t, t + 1]))
        if start == stop:
            continue
        split = start + int(np.searchsorted(margin_col[start:stop], True))
        tiers.append(
            Tier(
                bound=float(bound),
                order=healpix.quadrant_order(float(bound)),
                index=keys[start:split],
                first=start,
                margin_index=keys[split:stop],
                margin_first=split,
            )
        )
    ordered = table.take(pa.array(arrangement))
    reach = ordered[layout.REACH].to_numpy().astype(np.float32)
    return PartitionIndex(order, pixel, tiers, keys, _compact(ordered.drop_columns([layout.REACH])), reach)
