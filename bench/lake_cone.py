"""``nightjar bench lake-cone``: HEALPix cone queries on a lake as ingested, then after ``lake optimize``.

A throw-away lake of synthetic sources (uniform over the sky, appended in many micro-batches as ingestion does)
is queried for random order-``k`` pixels as ``hpx29`` ranges through :meth:`Lake.to_arrow`; then hpx29 statistics
are enabled, the lake optimized, and the same queries run again. Both runs must return the same rows. The last
line gives the median query time after optimize against the baseline measured before it, in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from nightjar import paths
from nightjar.lake import access, commit, maintain
from nightjar.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the lake-cone benchmark's options: rows, batches, queries, pixel order, target file size, seed."""
    parser.add_argument("--rows", type=int, default=2_000_000, help="sources in the throw-away lake")
    parser.add_argument("--batches", type=int, default=100, help="micro-batches (files per night before optimize)")
    parser.add_argument(
        "--queries",
        type=int,
        default=30,
        help="pixels queried before and after optimize, each around a source (default: %(default)s)",
    )
    parser.add_argument("--order", type=int, default=10, help="HEALPix order of the queried pixels")
    parser.add_argument("--target-mb", type=int, default=8, help="optimize's target file size")
    parser.add_argument("--seed", type=int, default=7, help="seed of the rows and the queried pixels")


def _batch(rng: np.random.Generator, first: int, rows: int) -> pa.Table:
    ids = np.arange(first, first + rows, dtype=np.int64)
    return pa.table(
        {
            "diaSourceId": ids,
            "diaObjectId": ids // 3,
            "midpointMjdTai": 60950.0 + rng.random(rows) * 2,
            "psfFlux": rng.normal(2000.0, 300.0, rows).astype(np.float32),
            "band": rng.choice(np.array(["g", "r", "i"]), rows),
            paths.HPX29: rng.integers(0, 12 << 58, rows, dtype=np.int64),
            paths.NIGHT: np.where(ids % 2 == 0, 60950, 60951).astype(np.int32),
        }
    )


def _queries(home: Path, cones: list[list[tuple[str, str, int]]]) -> tuple[list[float], list[int], list[int]]:
    """Seconds per query, rows per query, files each query touches (after the log's pruning)."""
    lake = access.open(home)
    dt = lake.delta(paths.SOURCES)
    seconds, rows, files = [], [], []
    for cone in cones:
        started = time.perf_counter()
        rows.append(lake.to_arrow(paths.SOURCES, ["diaSourceId", "psfFlux"], cone).num_rows)
        seconds.append(time.perf_counter() - started)
        files.append(len(dt.file_uris(file_pruning_predicate=cone)))
    return seconds, rows, files


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Time HEALPix pixel queries on a throw-away lake as appended, then after ``optimize``; print the files read and
    the median times, and last their ratio. Exit code 1 if the optimized lake returns other rows."""
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="nightjar-bench-") as tmp:
        home = Path(tmp)
        per_batch = max(1, args.rows // args.batches)
        started = time.perf_counter()
        centres: list[int] = []  # cones around detected sources, as a light-curve or crossmatch query would be
        for b in range(args.batches):
            batch = _batch(rng, b * per_batch, per_batch)
            commit.append(home, paths.SOURCES, batch, {"bench:0": b})
            centres.append(int(batch[paths.HPX29][0].as_py()))
        print(f"lake: {args.batches * per_batch} rows in {args.batches} appends, {time.perf_counter() - started:.1f} s")
        shift = 2 * (paths.HPX_ORDER_MAX - args.order)
        pixels = [c >> shift for c in rng.choice(np.array(centres), args.queries)]
        cones = [[(paths.HPX29, ">=", int(p) << shift), (paths.HPX29, "<", (int(p) + 1) << shift)] for p in pixels]

        before, rows_before, files_before = _queries(home, cones)
        info = maintain.table_info(home, paths.SOURCES)
        print(
            f"as ingested: {info.files} files; per query {np.mean(files_before):.0f} files, "
            f"median {statistics.median(before) * 1e3:.1f} ms"
        )

        started = time.perf_counter()
        maintain.enable_hpx29_stats(home, paths.SOURCES)
        maintain.optimize(home, paths.SOURCES, target_size=args.target_mb * 2**20)
        info = maintain.table_info(home, paths.SOURCES)
        print(f"optimize: {time.perf_counter() - started:.1f} s, {info.files} files")

        after, rows_after, files_after = _queries(home, cones)
        if rows_after != rows_before:
            print("error: the optimized lake returned other rows")
            return 1
        print(
            f"optimized: per query {np.mean(files_after):.1f} files, median {statistics.median(after) * 1e3:.1f} ms "
            f"({sum(rows_after)} rows over {args.queries} order-{args.order} pixels)"
        )
        ratio = statistics.median(before) / statistics.median(after)
        print(
            f"cone query median {statistics.median(after) * 1e3:.1f} ms optimized vs "
            f"{statistics.median(before) * 1e3:.1f} ms as ingested: {ratio:.1f}x"
        )
    return 0
