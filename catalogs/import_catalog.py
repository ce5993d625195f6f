"""``nightjar catalog import``: read a catalogue from CSV, FITS or Parquet files into the HATS store, with Dask.

The sources are cut into chunks of roughly ``chunk_rows`` rows: Parquet by row groups, FITS by row ranges of the
table HDU (memory-mapped), CSV by byte blocks through ``dask.dataframe.read_csv``. Each chunk is one Dask task.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, Future
from rich.console import Console

from nightjar.catalogs.build import BuildSpec, build_catalog
from nightjar.catalogs.catalog import CatalogInfo
from nightjar.catalogs.standardize import check_columns
from nightjar.storage import CatalogsHome

FORMATS = ("csv", "fits", "parquet")
DEFAULT_CHUNK_ROWS = 2_000_000
CSV_BLOCK_BYTES = 128 << 20


def detect_format(path: Path) -> str:
    """The format of a source file from its name (``.csv``, ``.tsv``, ``.fits``, ``.parquet``…)."""
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    if path.is_dir() or name.endswith((".parquet", ".pq", ".parq")):
        return "parquet"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if name.endswith((".fits", ".fit", ".fts")):
        return "fits"
    raise ValueError(f"cannot tell the format of {path}: name it .csv, .fits or .parquet, or pass --format")


@dataclass(frozen=True)
class ParquetChunk:
    """Some row groups of a Parquet file."""

    path: str
    row_groups: tuple[int, ...]

    def __call__(self) -> pa.Table:
        """Read the chunk's row groups."""
        return pq.ParquetFile(self.path).read_row_groups(list(self.row_groups))


@dataclass(frozen=True)
class FitsChunk:
    """Rows ``[start, stop)`` of a FITS binary-table HDU, read through a memory map."""

    path: str
    hdu: int
    start: int
    stop: int

    def __call__(self) -> pa.Table:
        """Read the chunk's rows, keeping the scalar columns (byte strings decoded as ASCII, numbers in native byte
        order)."""
        from astropy.io import fits

        with fits.open(self.path, memmap=True) as hdul:
            data = hdul[self.hdu].data[self.start : self.stop]
            columns = {}
            for name in data.columns.names:
                values = np.asarray(data[name])
                if values.ndim != 1:
                    continue  # vector cells have no place among catalogue columns
                if values.dtype.kind == "S":
                    columns[name] = pa.array(np.char.decode(values, "ascii", errors="replace"))
                elif values.dtype.kind == "U":
                    columns[name] = pa.array(values)
                else:
                    columns[name] = pa.array(values.astype(values.dtype.newbyteorder("=")))
        return pa.table(columns)


def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith(("_", ".")))
        if not files:
            raise FileNotFoundError(f"no .parquet files under {path}")
        return files
    return [path]


def parquet_chunks(paths: list[Path], chunk_rows: int) -> tuple[list[ParquetChunk], list[str]]:
    """Row-group chunks of Parquet files, and the files' column names."""
    chunks: list[ParquetChunk] = []
    names: list[str] = []
    for path in [f for p in paths for f in _parquet_files(p)]:
        meta = pq.ParquetFile(path).metadata
        names = names or meta.schema.to_arrow_schema().names
        group: list[int] = []
        rows = 0
        for i in range(meta.num_row_groups):
            group.append(i)
            rows += meta.row_group(i).num_rows
            if rows >= chunk_rows:
                chunks.append(ParquetChunk(str(path), tuple(group)))
                group, rows = [], 0
        if group:
            chunks.append(ParquetChunk(str(path), tuple(group)))
    return chunks, names


def fits_chunks(paths: list[Path], chunk_rows: int, hdu: int | None) -> tuple[list[FitsChunk], list[str]]:
    """Row-range chunks of the binary table HDU (the first one, unless ``hdu`` is given) of FITS files."""
    from astropy.io import fits

    chunks: list[FitsChunk] = []
    names: list[str] = []
    for path in paths:
        with fits.open(path, memmap=True) as hdul:
            index = hdu
            if index is None:
                tables = [i for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU | fits.TableHDU)]
                if not tables:
                    raise ValueError(f"{path}: no table HDU")
                index = tables[0]
            table_hdu = hdul[index]
            if not isinstance(table_hdu, fits.BinTableHDU | fits.TableHDU):
                raise ValueError(f"{path}: HDU {index} is not a table")
            nrows = int(table_hdu.header["NAXIS2"])
            names = names or list(table_hdu.columns.names)
        chunks.extend(FitsChunk(str(path), index, a, min(a + chunk_rows, nrows)) for a in range(0, nrows, chunk_rows))
    return chunks, names


def csv_chunks(client: Client, paths: list[Path], delimiter: str | None) -> tuple[list[Future], list[str]]:
    """Futures of pandas blocks of CSV files (``dask.dataframe.read_csv``), and the column names."""
    import dask.dataframe as dd

    sep = delimiter or ("\t" if any(p.name.lower().split(".")[-1] == "tsv" for p in paths) else ",")
    frame = dd.read_csv([str(p) for p in paths], sep=sep, blocksize=CSV_BLOCK_BYTES, assume_missing=True)
    names = [str(c) for c in frame.columns]
    return list(client.compute(frame.to_delayed())), names


def import_catalog(
    client: Client,
    home: CatalogsHome,
    spec: BuildSpec,
    paths: list[Path],
    fmt: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    hdu: int | None = None,
    delimiter: str | None = None,
    console: Console | None = None,
) -> CatalogInfo:
    """Import source files into the catalogue ``spec.name`` (replacing any previous version).

    Parameters
    ----------
    client
        Dask client; its workers read the sources and write the partitions.
    home
        The Nightjar home, or where the catalogues live (``Settings.catalogs``).
    spec
        Name, kind, column mapping and rules.
    paths
        Source files (all in one format), or folders of Parquet files.
    fmt
        ``csv``, ``fits`` or ``parquet``; default: from the first file name.
    chunk_rows
        Rows per task for Parquet and FITS sources.
    hdu
        FITS HDU of the table (default: the first table HDU).
    delimiter
        CSV field separator (default ``,``; tab for ``.tsv``).
    console
        Where progress bars go.
    """
    if not paths:
        raise ValueError("no input files")
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
    fmt = fmt or detect_format(paths[0])
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    chunks: list[ParquetChunk] | list[FitsChunk] | list[Future]
    if fmt == "parquet":
        chunks, names = parquet_chunks(paths, chunk_rows)
    elif fmt == "fits":
        chunks, names = fits_chunks(paths, chunk_rows, hdu)
    else:
        chunks, names = csv_chunks(client, paths, delimiter)
    check_columns(names, spec.columns, ", ".join(str(p) for p in paths))
    return build_catalog(client, chunks, spec, home, standardise=True, console=console)
