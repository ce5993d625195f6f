"""``nightjar bench objects``: what one batch's ``objects`` upsert costs as the table grows.

A batch replaces the rows of the objects it saw (``lake.commit.upsert``: Delta's replaceWhere ``diaObjectId IN
(...)``). Delta files cannot be edited in place and delta-rs writes no deletion vectors, so every file holding one of
those objects is rewritten whole. Objects first seen in the batch touch no stored file; objects seen before
(variable stars, the bulk of Rubin's alerts) are spread over the whole table, so their upsert rewrites about all
of it. This benchmark builds tables of each ``--sizes`` objects (the objects view's columns, random values) and
times upserts of ``--batch`` stored objects and of as many new ones.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import Console

from nightjar import paths
from nightjar.lake import commit
from nightjar.settings import Settings
from nightjar.sql import views


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        default="25000,250000,1000000",
        help="objects in the table before the timed upserts, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--batch", type=int, default=1500, help="objects per upsert (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="timed upserts of each kind per size")
    parser.add_argument("--files", type=int, default=20, help="commits that build each table (default: %(default)s)")


def _rows(schema: pa.Schema, ids: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """Rows of the objects view's schema for ``ids``, random values of each column's type."""
    n = len(ids)
    columns: dict[str, pa.Array] = {}
    for field in schema:
        if field.name == "diaObjectId":
            columns[field.name] = pa.array(ids, pa.int64())
        elif field.name == paths.HPX29:
            columns[field.name] = pa.array(rng.integers(0, 12 * 4**29, n), pa.int64())
        elif pa.types.is_floating(field.type):
            columns[field.name] = pa.array(rng.random(n), pa.float64()).cast(field.type)
        elif pa.types.is_integer(field.type):
            columns[field.name] = pa.array(rng.integers(0, 2**31 - 1, n), pa.int64()).cast(field.type)
        elif pa.types.is_string(field.type):
            columns[field.name] = pa.array(np.char.mod("v%d", rng.integers(0, 1000, n)).tolist(), pa.string())
        else:
            columns[field.name] = pa.nulls(n, field.type)
    return pa.table(columns)


def _timed_upsert(home: Path, rows: pa.Table, version: int) -> float:
    started = time.perf_counter()
    if not commit.upsert(home, paths.OBJECTS, rows, {"nightjar:bench:0": version}, order=None):
        raise RuntimeError("the upsert was skipped as already committed")
    return time.perf_counter() - started


def run(settings: Settings, args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    if not sizes or min(sizes) < args.batch:
        raise ValueError(f"--sizes: each size must be at least --batch ({args.batch})")
    schema = views.placeholder_schemas()[views.OBJECTS]
    rng = np.random.default_rng(7)
    settings.home.mkdir(parents=True, exist_ok=True)
    figures: dict[int, tuple[float, float]] = {}
    for size in sizes:
        home = Path(tempfile.mkdtemp(prefix="nightjar-bench-objects-", dir=settings.home))
        try:
            ids = np.arange(1, size + 1, dtype=np.int64)
            version = 0
            for part in np.array_split(ids, args.files):
                version += 1
                commit.upsert(home, paths.OBJECTS, _rows(schema, part, rng), {"nightjar:bench:0": version}, order=None)
            stored, new = [], []
            for i in range(args.repeat):
                version += 1
                stored.append(
                    _timed_upsert(home, _rows(schema, rng.choice(ids, args.batch, replace=False), rng), version)
                )
                fresh = np.arange(size + 1 + i * args.batch, size + 1 + (i + 1) * args.batch, dtype=np.int64)
                version += 1
                new.append(_timed_upsert(home, _rows(schema, fresh, rng), version))
            figures[size] = (float(np.median(stored)), float(np.median(new)))
            console.log(
                f"{size} objects: upsert of {args.batch} stored {figures[size][0]:.2f} s, new {figures[size][1]:.2f} s"
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)
    for size, (stored_s, new_s) in figures.items():
        print(f"objects={size} upsert_stored_s={stored_s:.3f} upsert_new_s={new_s:.3f}")
    small, large = figures[min(sizes)], figures[max(sizes)]
    print(f"upsert_stored_largest_over_smallest={large[0] / small[0]:.2f}")
    print(f"upsert_new_largest_over_smallest={large[1] / small[1]:.2f}")
    return 0
