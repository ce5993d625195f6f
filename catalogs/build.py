"""Build a catalogue collection on a Dask cluster: shards, partitions, margins, metadata, then swap it in.

Used by both ``import`` (source files) and ``synth`` (generated rows): they differ only in their chunks. The new
collection is built in a staging folder and renamed into place, so readers never see half a catalogue, and a
re-import gives the catalogue a new version (cached indexes and stored context are then recomputed).

The catalogues may live on object storage (``NIGHTJAR_CATALOGS_URI=s3://...``): the workers then write shards and
partitions there, and need nothing else. An object store cannot rename a folder: the staged files are copied into
place (server-side) after the old catalogue's ``nightjar.json`` is deleted, and the new ``nightjar.json`` is copied
last, so a catalogue is listed only when whole (it is absent, not half there, during the copy).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import numpy as np
import pyarrow.fs as pafs
from distributed import Client, Future, as_completed
from rich.console import Console

from nightjar import storage
from nightjar.catalogs import layout
from nightjar.catalogs.catalog import CatalogInfo, ColumnMap, write_info
from nightjar.catalogs.margins import margin_map, margin_reduce
from nightjar.catalogs.rules import ContextRules, Kind
from nightjar.catalogs.standardize import Recipe
from nightjar.catalogs.write_hats import (
    Chunk,
    ShardResult,
    histogram,
    index_range,
    plan_partitions,
    shard_chunk,
    unify_schemas,
    write_catalog_metadata,
    write_collection_properties,
    write_partition,
)
from nightjar.progress import bar
from nightjar.storage import CatalogsHome, CatalogsRoot, catalogs_root

DEFAULT_PARTITION_ROWS = 1_000_000
DEFAULT_MARGIN_ARCSEC = 5.0


@dataclass(frozen=True)
class BuildSpec:
    """Everything about a catalogue except its rows."""

    name: str
    kind: Kind
    columns: ColumnMap
    description: str = ""
    sources: tuple[str, ...] = ()
    radius_arcsec: float | None = None
    mag_filter: str | None = None
    rules: ContextRules = field(default_factory=ContextRules)
    partition_rows: int = DEFAULT_PARTITION_ROWS
    margin_arcsec: float = DEFAULT_MARGIN_ARCSEC


def run_tasks(futures: Sequence[Future], description: str, console: Console | None) -> list[Any]:
    """Wait for ``futures`` with a progress bar on ``console``; results in submission order."""
    if console is not None and futures:
        with bar(console, description, len(futures)) as progress:
            for done, _ in enumerate(as_completed(futures), 1):
                progress(done, len(futures))
    return [f.result() for f in futures]


def build_catalog(
    client: Client,
    chunks: Sequence[Chunk | Future],
    spec: BuildSpec,
    home: CatalogsHome,
    standardise: bool = True,
    console: Console | None = None,
) -> CatalogInfo:
    """Write ``chunks`` as the catalogue ``spec.name`` under ``home`` and return its ``nightjar.json``.

    Parameters
    ----------
    client
        The Dask client whose workers do the work; every worker must reach the catalogues' location.
    chunks
        Pieces of the source (tables, data frames, callables returning them, or futures of those).
    spec
        Name, kind, column mapping and rules.
    home
        The Nightjar home (its ``catalogs/`` folder), or where the catalogues live (``Settings.catalogs``).
    standardise
        False when the chunks already hold the standard columns (synthetic catalogues).
    console
        Where progress bars go (None: quiet).
    """
    layout.check_name(spec.name)
    where = catalogs_root(home)
    fs = where.filesystem()
    base = layout.root(where)
    staging = base / f"{layout.STAGING_PREFIX}{spec.name}-{uuid.uuid4().hex[:8]}"
    collection = staging / spec.name
    shards = staging / "_shards"
    try:
        info = _build(client, chunks, spec, collection, shards, standardise, console, where)
        storage.remove_tree(fs, shards)
        target = layout.collection_dir(where, spec.name)
        if where.is_local:
            _swap_in(Path(collection), Path(target))
        else:
            _copy_in(fs, collection, target)
        return info
    finally:
        with contextlib.suppress(OSError):  # the store is gone: the error that brought us here says so
            storage.remove_tree(fs, staging)


def _build(
    client: Client,
    chunks: Sequence[Chunk | Future],
    spec: BuildSpec,
    collection: PurePath,
    shards: PurePath,
    standardise: bool,
    console: Console | None,
    root: CatalogsRoot,
) -> CatalogInfo:
    recipe = (
        Recipe(spec.columns, spec.kind, spec.rules, spec.radius_arcsec, label=", ".join(spec.sources) or spec.name)
        if standardise
        else None
    )
    mapped: list[ShardResult] = run_tasks(
        [
            client.submit(shard_chunk, chunk, recipe, i, str(shards / "map" / f"chunk={i}.parquet"), root, pure=False)
            for i, chunk in enumerate(chunks)
        ],
        f"{spec.name}: reading {len(chunks)} chunks",
        console,
    )
    rows = sum(r.rows for r in mapped)
    dropped = sum(r.dropped for r in mapped)
    if rows == 0:
        raise ValueError(f"{spec.name}: no rows with a position in {', '.join(spec.sources) or 'the input'}")
    schema = unify_schemas([r.schema for r in mapped])
    hist = histogram(mapped)
    plan = sorted(plan_partitions(hist, spec.partition_rows), key=lambda p: index_range(p[0], p[1])[0])
    primary = layout.primary_dir(collection)
    shard_paths = [r.path for r in mapped]
    counts = run_tasks(
        [client.submit(write_partition, shard_paths, o, p, str(primary), schema, root, pure=False) for o, p, _ in plan],
        f"{spec.name}: writing {len(plan)} partitions",
        console,
    )
    if sum(counts) != rows:
        raise RuntimeError(f"{spec.name}: partitions hold {sum(counts)} rows, the input {rows}")

    ranges = np.array([index_range(o, p) for o, p, _ in plan], dtype=np.int64)
    starts, ends = client.scatter([ranges[:, 0], ranges[:, 1]], broadcast=True)
    destinations: list[dict[int, str]] = run_tasks(
        [
            client.submit(
                margin_map,
                str(layout.partition_file(primary, o, p)),
                i,
                starts,
                ends,
                spec.margin_arcsec,
                str(shards / "margin"),
                root,
                pure=False,
            )
            for i, (o, p, _) in enumerate(plan)
        ],
        f"{spec.name}: margin cache",
        console,
    )
    by_destination: dict[int, list[str]] = defaultdict(list)
    for found in destinations:
        for dst, path in found.items():
            by_destination[dst].append(path)
    margin = layout.margin_dir(collection, spec.margin_arcsec)
    margin_counts = run_tasks(
        [
            client.submit(margin_reduce, paths, str(margin), plan[d][0], plan[d][1], schema, root, pure=False)
            for d, paths in sorted(by_destination.items())
        ],
        f"{spec.name}: writing {len(by_destination)} margin files",
        console,
    )
    now = datetime.now(UTC)
    extra = {"obs_title": spec.description} if spec.description else {}
    write_catalog_metadata(
        primary,
        spec.name,
        [(o, p) for o, p, _ in plan],
        rows,
        spec.partition_rows,
        extra,
        hist=hist,
        schema=schema,
        root=root,
    )
    margin_pixels = [(plan[d][0], plan[d][1]) for d in sorted(by_destination)]
    if margin_pixels:
        write_catalog_metadata(
            margin,
            margin.name,
            margin_pixels,
            int(sum(margin_counts)),
            spec.partition_rows,
            margin_of=spec.name,
            margin_threshold=spec.margin_arcsec,
            schema=schema,
            root=root,
        )
    write_collection_properties(collection, spec.name, margin.name if margin_pixels else None, root)
    info = CatalogInfo(
        name=spec.name,
        kind=spec.kind,
        version=f"{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}",
        created=now.isoformat(timespec="seconds"),
        description=spec.description,
        sources=list(spec.sources),
        columns=spec.columns,
        radius_arcsec=spec.radius_arcsec,
        mag_filter=spec.mag_filter,
        rows=rows,
        dropped_rows=dropped,
        partitions=len(plan),
        margin_rows=int(sum(margin_counts)),
        margin_threshold_arcsec=spec.margin_arcsec,
        max_reach_arcsec=max(r.max_reach for r in mapped),
        rules=spec.rules,
    )
    write_info(collection, info, root.filesystem())
    return info


def _swap_in(built: Path, target: Path) -> None:
    """Replace ``target`` by ``built`` with renames, so that the catalogue is never half there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    trash = target.parent / f"{layout.TRASH_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    if target.exists():
        target.rename(trash)
    built.rename(target)
    shutil.rmtree(trash, ignore_errors=True)


def _copy_in(fs: pafs.FileSystem, built: PurePath, target: PurePath) -> None:
    """Replace ``target`` by ``built`` on an object store (no folder renames there): the old catalogue stops being
    one first (its ``nightjar.json`` goes), then its files; the new files are copied, ``nightjar.json`` last."""
    info = target / layout.INFO_FILE
    if storage.file_exists(fs, info):
        fs.delete_file(str(info))
    storage.remove_tree(fs, target)
    files = [f.path for f in fs.get_file_info(pafs.FileSelector(str(built), recursive=True)) if f.is_file]
    last = str(built / layout.INFO_FILE)
    for path in sorted(files, key=lambda p: p == last):
        fs.copy_file(path, str(target / PurePosixPath(path).relative_to(str(built))))
