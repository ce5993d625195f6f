"""``nightjar bench objects``: what one batch's ``objects`` write costs as the table grows, and what reads pay.

The table is append-only (merge-on-read, ``lake.object_states``): a batch appends the states of the objects it saw
(``lake.commit.append_states``) and rewrites no stored file, whether its objects are new or seen before (variable
stars, the bulk of Rubin's alerts). Readers keep each object's newest state; ``lake.fold`` removes the others when
the pending states reach ``lake.fold.FOLD_FRACTION`` of the table. This benchmark builds tables of each ``--sizes``
objects (the objects view's columns, random values; folded), times appends of ``--batch`` stored objects and of as
many new ones, then appends stored objects until a fold is due and times ``SELECT count(*) FROM objects`` (DuckDB
over the current-state dataset) with those states pending, the fold itself, and the count again once folded.
``--upsert`` also times the former write path (``lake.commit.upsert``: replaceWhere, rewriting every file that
holds one of the batch's objects) on the same table, as the baseline.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from rich.console import Console

from nightjar import paths
from nightjar.lake import commit, fold, read
from nightjar.lake import tables as lake_tables
from nightjar.settings import Settings
from nightjar.sql import views


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the objects benchmark's options: table sizes, batch size, repeats, commits per table, and the former upsert
    as a baseline."""
    parser.add_argument(
        "--sizes",
        default="25000,250000,1000000",
        help="objects in the table before the timed upserts, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--batch", type=int, default=1500, help="objects per upsert (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="timed upserts of each kind per size")
    parser.add_argument("--files", type=int, default=20, help="commits that build each table (default: %(default)s)")
    parser.add_argument(
        "--upsert", action="store_true", help="also time the former upsert (replaceWhere) of stored objects (baseline)"
    )


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


def _timed_append(home: Path, rows: pa.Table, version: int) -> float:
    started = time.perf_counter()
    with commit.lake_lock(home):
        if commit.append_states(home, paths.OBJECTS, rows, {"nightjar:bench:0": version}) is None:
            raise RuntimeError("the append was skipped as already committed")
    return time.perf_counter() - started


def _timed_upsert(home: Path, rows: pa.Table, version: int) -> float:
    started = time.perf_counter()
    if not commit.upsert(home, paths.OBJECTS, rows, {"nightjar:bench:0": version}, order=None):
        raise RuntimeError("the upsert was skipped as already committed")
    return time.perf_counter() - started


def _timed_count(home: Path, repeat: int) -> tuple[float, int]:
    """Median seconds of ``SELECT count(*) FROM objects`` (opening the snapshot included), and the count."""
    seconds, count = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        con = duckdb.connect(":memory:")
        con.register("objects", read.datasets(home)[paths.OBJECTS])
        row = con.execute("SELECT count(*) FROM objects").fetchone()
        count = int(row[0]) if row is not None else 0
        con.close()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), count


@dataclass
class Figures:
    """The figures of one table size, in seconds: appending the states of stored and of new objects, counting the
    objects with the most states pending and once folded, the fold, and (with ``--upsert``) the former upsert."""

    stored_s: float
    new_s: float
    count_pending_s: float = 0.0
    count_folded_s: float = 0.0
    fold_s: float = 0.0
    pending_rows: int = 0
    upsert_s: float | None = None


def run(settings: Settings, args: argparse.Namespace) -> int:
    """For each table size, build an objects table and time the append of a batch of stored and of new objects, the
    count of objects before and after a fold, and the fold; print the figures of each size."""
    console = Console(stderr=True)
    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    if not sizes or min(sizes) < args.batch:
        raise ValueError(f"--sizes: each size must be at least --batch ({args.batch})")
    schema = views.placeholder_schemas()[views.OBJECTS]
    rng = np.random.default_rng(7)
    settings.home.mkdir(parents=True, exist_ok=True)
    figures: dict[int, Figures] = {}
    for size in sizes:
        home = Path(tempfile.mkdtemp(prefix="nightjar-bench-objects-", dir=settings.home))
        try:
            ids = np.arange(1, size + 1, dtype=np.int64)
            version = 0
            for part in np.array_split(ids, args.files):
                version += 1
                with commit.lake_lock(home):
                    commit.append_states(home, paths.OBJECTS, _rows(schema, part, rng), {"nightjar:bench:0": version})
            fold.fold(home, force=True)
            stored, new = [], []
            for i in range(args.repeat):
                version += 1
                stored.append(
                    _timed_append(home, _rows(schema, rng.choice(ids, args.batch, replace=False), rng), version)
                )
                fresh = np.arange(size + 1 + i * args.batch, size + 1 + (i + 1) * args.batch, dtype=np.int64)
                version += 1
                new.append(_timed_append(home, _rows(schema, fresh, rng), version))
            got = Figures(float(np.median(stored)), float(np.median(new)))
            # Reads with the most pending states the background fold lets through, then folded.
            while fold.due(lake_tables.load(home, paths.OBJECTS)) is False:
                version += 1
                _timed_append(home, _rows(schema, rng.choice(ids, args.batch, replace=False), rng), version)
            got.pending_rows = fold.counts(lake_tables.load(home, paths.OBJECTS))[0]
            got.count_pending_s, pending_count = _timed_count(home, args.repeat)
            started = time.perf_counter()
            fold.fold(home)
            got.fold_s = time.perf_counter() - started
            got.count_folded_s, folded_count = _timed_count(home, args.repeat)
            if pending_count != folded_count:
                raise RuntimeError(f"objects counted {pending_count} with states pending, {folded_count} folded")
            if args.upsert:
                upserts = []
                for _ in range(args.repeat):
                    version += 1
                    rows = _rows(schema, rng.choice(ids, args.batch, replace=False), rng)
                    upserts.append(_timed_upsert(home, rows, version))
                got.upsert_s = float(np.median(upserts))
            figures[size] = got
            console.log(
                f"{size} objects: append of {args.batch} stored {got.stored_s:.3f} s, new {got.new_s:.3f} s; "
                f"count(*) with {got.pending_rows} pending states {got.count_pending_s:.3f} s, "
                f"folded {got.count_folded_s:.3f} s; fold {got.fold_s:.1f} s"
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)
    for size, f in figures.items():
        baseline = f" upsert_stored_s={f.upsert_s:.3f}" if f.upsert_s is not None else ""
        print(
            f"objects={size} append_stored_s={f.stored_s:.3f} append_new_s={f.new_s:.3f} "
            f"count_pending_s={f.count_pending_s:.3f} pending_rows={f.pending_rows} "
            f"count_folded_s={f.count_folded_s:.3f} fold_s={f.fold_s:.2f}{baseline}"
        )
    small, large = figures[min(sizes)], figures[max(sizes)]
    if large.upsert_s is not None:
        print(f"upsert_over_append_stored_largest={large.upsert_s / large.stored_s:.1f}")
    print(f"append_new_largest_over_smallest={large.new_s / small.new_s:.2f}")
    print(f"append_stored_largest_over_smallest={large.stored_s / small.stored_s:.2f}")
    return 0
