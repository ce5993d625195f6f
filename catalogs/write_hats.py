"""Writing a catalogue in the HATS layout: the map and reduce steps (Dask tasks) and the metadata files.

The map step standardises one chunk of input, sorts it by ``_healpix_29`` and writes it to a temporary shard with
small row groups, returning a coarse histogram. The driver turns the summed histogram into adaptive-order
partitions with hats' ``generate_alignment``. The reduce step reads, from every shard, only the row groups whose
index range overlaps its partition, and writes ``Norder=/Dir=/Npix=`` sorted by ``_healpix_29``. Finally the
driver writes the Parquet ``_metadata``/``_common_metadata`` files from the partitions' footers, and hats writes
``partition_info.csv``, the properties and the sky maps (into a local folder, copied to the catalogue's place).

Every file is read and written through the catalogues' pyarrow file system (``root``: a
:class:`~nightjar.storage.StorageRoot`, None for the local file system), so the tasks run on Dask workers that
share nothing but ``NIGHTJAR_CATALOGS_URI``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from nightjar import __version__
from nightjar.catalogs import layout
from nightjar.catalogs.standardize import Recipe, standardize
from nightjar.storage import StorageRoot, filesystem_of, make_parent

HIST_ORDER = 8  # histogram resolution for the partition plan (cells of ~14')
SHARD_ROW_GROUP = 32_768
BUILDER = f"nightjar v{__version__}"

Chunk: TypeAlias = pa.Table | pd.DataFrame | Callable[[], pa.Table | pd.DataFrame]


@dataclass(frozen=True)
class ShardResult:
    """What a map task reports back to the driver."""

    path: str
    rows: int
    dropped: int
    hist_pixels: np.ndarray
    hist_counts: np.ndarray
    schema: pa.Schema
    max_reach: float


def write_parquet(table: pa.Table, path: str | PurePath, fs: pafs.FileSystem, **options: Any) -> None:
    """Write ``table`` as the Parquet file ``path`` on ``fs`` (folders created as needed)."""
    make_parent(fs, path)
    pq.write_table(table, str(path), filesystem=fs, **options)


def read_parquet(path: str | PurePath, fs: pafs.FileSystem) -> pa.Table:
    """A whole Parquet file read from ``fs``."""
    with fs.open_input_file(str(path)) as source:
        return pq.ParquetFile(source).read()


def shard_chunk(
    chunk: Chunk, recipe: Recipe | None, chunk_index: int, shard_path: str, root: StorageRoot | None = None
) -> ShardResult:
    """Map step: standardise a chunk (``recipe`` None: already standard), sort it and write a shard."""
    data = chunk() if callable(chunk) else chunk
    if recipe is not None:
        table, dropped = standardize(data, recipe, chunk_index)
    else:
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        dropped = 0
    table = table.sort_by(layout.SPATIAL_INDEX)
    write_parquet(table, shard_path, filesystem_of(root), row_group_size=SHARD_ROW_GROUP)
    cells = table[layout.SPATIAL_INDEX].to_numpy() >> (2 * (layout.SPATIAL_INDEX_ORDER - HIST_ORDER))
    pixels, counts = np.unique(cells, return_counts=True)
    reach = table[layout.REACH].to_numpy()
    return ShardResult(
        path=shard_path,
        rows=table.num_rows,
        dropped=dropped,
        hist_pixels=pixels.astype(np.int64),
        hist_counts=counts.astype(np.int64),
        schema=table.schema,
        max_reach=float(reach.max()) if reach.size else 0.0,
    )


def histogram(results: list[ShardResult]) -> np.ndarray:
    """The dense order-``HIST_ORDER`` row-count histogram of all shards."""
    hist = np.zeros(12 * 4**HIST_ORDER, dtype=np.int64)
    for r in results:
        np.add.at(hist, r.hist_pixels, r.hist_counts)
    return hist


def alignment_order(rows: int, max_rows: int) -> int:
    """The finest partition order worth considering: two orders below where average cells hold ``max_rows``.

    hats' alignment walks every cell of every order in Python, so a small catalogue is planned on a coarser
    histogram (order 3 at least, ``HIST_ORDER`` at most).
    """
    cells_needed = max(12.0 * rows / max(max_rows, 1), 1.0)
    return int(min(HIST_ORDER, max(3, np.ceil(np.log(cells_needed) / np.log(4)) + 2)))


def plan_partitions(hist: np.ndarray, max_rows: int) -> list[tuple[int, int, int]]:
    """Adaptive-order partitions ``(order, pixel, rows)`` holding at most ``max_rows`` each (where possible)."""
    from hats.pixel_math.partition_stats import generate_alignment

    order = alignment_order(int(hist.sum()), max_rows)
    coarse = hist.reshape(12 * 4**order, -1).sum(axis=1)
    threshold = max(int(max_rows), int(coarse.max()))
    alignment = generate_alignment(coarse, highest_order=order, threshold=threshold, drop_empty_siblings=True)
    plan = {(int(a[0]), int(a[1])): int(a[2]) for a in alignment if a is not None}
    return sorted((o, p, n) for (o, p), n in plan.items())


def unify_schemas(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for every partition file: the chunks' schemas merged, all-null columns typed."""
    merged = pa.unify_schemas(schemas, promote_options="permissive")
    fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in merged]
    return pa.schema(fields, metadata=None)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly the columns and types of ``schema`` (missing columns are null)."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            columns.append(table[f.name].cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def index_range(order: int, pixel: int) -> tuple[int, int]:
    """The ``_healpix_29`` values ``[start, end)`` of a HEALPix cell."""
    shift = 2 * (layout.SPATIAL_INDEX_ORDER - order)
    return pixel << shift, (pixel + 1) << shift


def read_range(path: str, start: int, end: int, fs: pafs.FileSystem | None = None) -> pa.Table:
    """Rows of a sorted shard with ``start <= _healpix_29 < end``, reading only overlapping row groups."""
    with (fs or pafs.LocalFileSystem()).open_input_file(path) as source:
        return _read_range(pq.ParquetFile(source), start, end)


def _read_range(pf: pq.ParquetFile, start: int, end: int) -> pa.Table:
    meta = pf.metadata
    col = pf.schema_arrow.get_field_index(layout.SPATIAL_INDEX)
    groups = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max or (stats.max >= start and stats.min < end):
            groups.append(i)
    if not groups:
        return pf.schema_arrow.empty_table()
    table = pf.read_row_groups(groups)
    index = table[layout.SPATIAL_INDEX].to_numpy()
    lo, hi = np.searchsorted(index, [start, end])
    return table.slice(int(lo), int(hi - lo))


def write_partition(
    shards: list[str],
    order: int,
    pixel: int,
    catalog_dir: str,
    schema: pa.Schema,
    root: StorageRoot | None = None,
) -> int:
    """Reduce step: gather one partition's rows from every shard and write its sorted Parquet file."""
    fs = filesystem_of(root)
    start, end = index_range(order, pixel)
    parts = [conform(read_range(s, start, end, fs), schema) for s in shards]
    table = pa.concat_tables(parts).sort_by(layout.SPATIAL_INDEX)
    write_parquet(table, layout.partition_file(PurePosixPath(catalog_dir), order, pixel), fs)
    return table.num_rows


def write_table_file(
    table: pa.Table, catalog_dir: str, order: int, pixel: int, schema: pa.Schema, root: StorageRoot | None = None
) -> int:
    """Write rows (any order) as the partition file of ``(order, pixel)``; used for margins."""
    table = conform(table, schema).sort_by(layout.SPATIAL_INDEX)
    write_parquet(table, layout.partition_file(PurePosixPath(catalog_dir), order, pixel), filesystem_of(root))
    return table.num_rows


def write_dataset_metadata(
    catalog_dir: PurePath, pixels: list[tuple[int, int]], schema: pa.Schema, fs: pafs.FileSystem
) -> int:
    """Write ``dataset/_metadata`` (every partition's footer, in hats' pixel order) and ``dataset/_common_metadata``
    from the partition files on ``fs``, as hats' ``write_parquet_metadata`` does; the files' total size in bytes."""
    from hats.pixel_math import HealpixPixel
    from hats.pixel_math.healpix_pixel_function import get_pixel_argsort

    dataset = catalog_dir / layout.DATASET_DIR
    footers, size = [], 0
    for order, pixel in pixels:
        path = layout.partition_file(catalog_dir, order, pixel)
        with fs.open_input_file(str(path)) as source:
            size += source.size()
            footer = pq.ParquetFile(source).metadata
        footer.set_file_path(str(path.relative_to(dataset)))
        footers.append(footer)
    ordered = [footers[i] for i in get_pixel_argsort([HealpixPixel(o, p) for o, p in pixels])]
    pq.write_metadata(schema, str(dataset / layout.PARQUET_METADATA), metadata_collector=ordered, filesystem=fs)
    pq.write_metadata(schema, str(dataset / layout.PARQUET_COMMON_METADATA), filesystem=fs)
    return size


def upload(local: Path, target: PurePath, fs: pafs.FileSystem) -> None:
    """Copy every file under the local folder ``local`` to the folder ``target`` on ``fs``."""
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        destination = PurePosixPath(str(target)) / file.relative_to(local).as_posix()
        make_parent(fs, destination)
        pafs.copy_files(str(file), str(destination), pafs.LocalFileSystem(), fs)


def write_catalog_metadata(
    catalog_dir: PurePath,
    name: str,
    pixels: list[tuple[int, int]],
    total_rows: int,
    max_rows: int,
    extra: dict[str, Any] | None = None,
    margin_of: str | None = None,
    margin_threshold: float | None = None,
    hist: np.ndarray | None = None,
    schema: pa.Schema | None = None,
    root: StorageRoot | None = None,
) -> None:
    """Write ``partition_info.csv``, the properties files, the Parquet metadata and the sky maps of a catalogue
    whose partition files (of ``schema``, default: the first file's) are in place under ``catalog_dir``."""
    fs = filesystem_of(root)
    if schema is None:
        with fs.open_input_file(str(layout.partition_file(catalog_dir, *pixels[0]))) as source:
            schema = pq.ParquetFile(source).schema_arrow
    size = write_dataset_metadata(catalog_dir, pixels, schema, fs)
    with tempfile.TemporaryDirectory(prefix="nightjar-hats-") as scratch:
        _write_hats_files(
            Path(scratch), name, pixels, total_rows, max_rows, extra, margin_of, margin_threshold, hist, size
        )
        upload(Path(scratch), catalog_dir, fs)


def _write_hats_files(
    local: Path,
    name: str,
    pixels: list[tuple[int, int]],
    total_rows: int,
    max_rows: int,
    extra: dict[str, Any] | None,
    margin_of: str | None,
    margin_threshold: float | None,
    hist: np.ndarray | None,
    size_bytes: int,
) -> None:
    """hats' own files of a catalogue (partition list, sky maps, properties), written into the local folder
    ``local`` (hats writes through fsspec, which reaches no object store here; the caller copies them)."""
    from hats.catalog import PartitionInfo, TableProperties
    from hats.io import file_io
    from hats.io import paths as hats_paths
    from hats.io.skymap import write_skymap
    from hats.pixel_math import HealpixPixel

    healpix = [HealpixPixel(o, p) for o, p in pixels]
    PartitionInfo.from_healpix(healpix).write_to_file(catalog_path=local)
    if hist is not None:
        write_skymap(hist, local)
        file_io.write_fits_image(hist, hats_paths.get_point_map_file_pointer(local))
    fields: dict[str, Any] = {
        "catalog_name": name,
        "catalog_type": "margin" if margin_of else "object",
        "total_rows": total_rows,
        "ra_column": layout.RA,
        "dec_column": layout.DEC,
        "healpix_column": layout.SPATIAL_INDEX,
        "healpix_order": layout.SPATIAL_INDEX_ORDER,
        "hats_max_rows": max_rows,
        "default_columns": [layout.RA, layout.DEC, layout.OBJECT_ID, layout.OBJECT_TYPE],
    }
    if margin_of:
        fields["primary_catalog"] = margin_of
        fields["margin_threshold"] = margin_threshold
    provenance = TableProperties.new_provenance_dict(local, builder=BUILDER, **(extra or {}))
    provenance["hats_estsize"] = int(size_bytes // 1024)  # the partition files' (the scratch folder holds none)
    TableProperties(**fields, **provenance).to_properties_file(local)


def write_collection_properties(
    collection: PurePath, name: str, margin: str | None, root: StorageRoot | None = None
) -> None:
    """The ``collection.properties`` tying the primary catalogue to its margin cache."""
    from hats.catalog.dataset.collection_properties import CollectionProperties

    fields: dict[str, Any] = {"name": name, "hats_primary_table_url": name}
    if margin is not None:
        fields["all_margins"] = [margin]
        fields["default_margin"] = margin
    with tempfile.TemporaryDirectory(prefix="nightjar-hats-") as scratch:
        CollectionProperties(**fields).to_properties_file(scratch)
        upload(Path(scratch), collection, filesystem_of(root))
