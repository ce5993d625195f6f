"""``nightjar bench watchlist``: live matching of a batch against a huge watchlist, and history matching.

Live: a 10^7-cone watchlist (uniform on the sky, radii 1-10″) and a 10,000-alert batch (uniform, 1 % of the
alerts placed inside a cone); the first match builds the worker's cone index (cold), the next ones are timed
warm, as the watch stage runs on every batch (``watchlist_live_ms``, the median). History: a 10^6-cone watchlist
matched by the history job (``pipelines.watch_history``) over a lake whose ``sources`` table holds 10^7 alerts
(``watchlist_history_s``). The index's memory (``watchlist_index_mb``) and this process's resident memory before
and after building it are printed too. Key=value lines; the last ones are the figures.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import write_deltalake

from nightjar import paths
from nightjar.catalogs import watch_index
from nightjar.catalogs.standardize import spatial_index
from nightjar.catalogs.watch_files import CONES_SCHEMA
from nightjar.catalogs.watch_index import WatchlistSpec
from nightjar.pipelines.watch import WatchSet, alerts_of, hits_of
from nightjar.pipelines.watch_history import match_history
from nightjar.settings import Settings
from nightjar.sql import registry, watch_registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the watchlist benchmark's options: live cones and alerts, repeats, history cones and alerts, seed."""
    parser.add_argument(
        "--cones", type=int, default=10_000_000, help="cones of the live watchlist (default: %(default)s)"
    )
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts of the live batch (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=10, help="warm batches timed (default: %(default)s)")
    parser.add_argument(
        "--history-cones", type=int, default=1_000_000, help="cones of the history watchlist (default: %(default)s)"
    )
    parser.add_argument(
        "--history-alerts", type=int, default=10_000_000, help="alerts in the lake (default: %(default)s)"
    )
    parser.add_argument("--no-history", action="store_true", help="only the live benchmark")
    parser.add_argument("--seed", type=int, default=1, help="random seed of cones and alerts (default: %(default)s)")


def _sphere(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def synthetic_cones(n: int, seed: int) -> pa.Table:
    """``n`` cones uniform on the sky, radii 1-10″, named ``c<id>`` (built without a Python object per cone)."""
    rng = np.random.default_rng(seed)
    ra, dec = _sphere(rng, n)
    ids = pa.array(np.arange(1, n + 1, dtype=np.int64))
    return pa.table(
        {
            "coneId": ids,
            "name": pc.binary_join_element_wise("c", pc.cast(ids, pa.string()), ""),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "radius": pa.array(rng.uniform(1.0, 10.0, n)),
        },
        schema=CONES_SCHEMA,
    )


def synthetic_alerts(n: int, cones: pa.Table, seed: int, start: int = 0) -> pa.Table:
    """``n`` alerts uniform on the sky, 1 % of them 0.5″ from a cone."""
    rng = np.random.default_rng(seed + 1)
    ra, dec = _sphere(rng, n)
    near = rng.random(n) < 0.01
    pick = rng.integers(0, cones.num_rows, int(near.sum()))
    ra[near] = cones["ra"].to_numpy()[pick]
    dec[near] = np.clip(cones["dec"].to_numpy()[pick] + 0.5 / 3600, -90, 90)
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "diaObjectId": pa.array(ids + 10**15),
            "diaSourceId": pa.array(ids + 2 * 10**15),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "midpointMjdTai": pa.array(60000.0 + rng.random(n) * 365),
        }
    )


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def live(folder: Path, n_cones: int, n_alerts: int, repeat: int, seed: int) -> dict[str, float]:
    """Time the live matching of a batch of ``n_alerts`` alerts against a watchlist of ``n_cones`` cones, cold and then
    warm (the median of ``repeat`` batches), with the memory the index takes."""
    started = time.perf_counter()
    cones = synthetic_cones(n_cones, seed)
    path = folder / "live.parquet"
    pq.write_table(watch_index.sorted_cones(cones), path, row_group_size=1 << 20)
    made_s = time.perf_counter() - started
    alerts = alerts_of(synthetic_alerts(n_alerts, cones, seed))
    del cones
    spec = WatchlistSpec(1, 1, str(path), 2.0)
    watch = WatchSet((spec,), (), 8 << 30)
    watch_index.clear_cache()
    before = _rss_mb()
    started = time.perf_counter()
    cold = hits_of(alerts, watch)
    cold_s = time.perf_counter() - started
    after = _rss_mb()
    index = watch_index.cached_index(spec, watch.cache_bytes)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        warm = hits_of(alerts, watch)
        times.append(time.perf_counter() - started)
    assert warm.watchlist_hits.num_rows == cold.watchlist_hits.num_rows
    return {
        "watchlist_cones": float(n_cones),
        "watchlist_batch_alerts": float(alerts.num_rows),
        "watchlist_live_hits": float(warm.watchlist_hits.num_rows),
        "watchlist_file_s": made_s,
        "watchlist_cold_s": cold_s,
        "watchlist_rss_before_mb": before,
        "watchlist_rss_after_mb": after,
        "watchlist_index_mb": index.nbytes / 2**20,
        "watchlist_live_ms": float(np.median(times)) * 1000,
    }


def history(folder: Path, n_cones: int, n_alerts: int, seed: int) -> dict[str, float]:
    """A lake of ``n_alerts`` alerts (only the columns matching reads) and a watchlist of ``n_cones``; the job's
    seconds."""
    home = folder / "home"
    settings = Settings(home=home)
    cones = synthetic_cones(n_cones, seed + 7)
    chunk = 1_000_000
    started = time.perf_counter()
    location = str(paths.table_dir(home, paths.SOURCES))
    for start in range(0, n_alerts, chunk):
        rows = synthetic_alerts(min(chunk, n_alerts - start), cones, seed + start, start)
        hpx = spatial_index(rows["ra"].to_numpy(), rows["dec"].to_numpy())
        rows = rows.append_column(paths.HPX29, pa.array(hpx))
        rows = rows.append_column(paths.FROM_HISTORY, pa.array(np.zeros(rows.num_rows, bool)))
        write_deltalake(location, rows.sort_by(paths.HPX29), mode="append")
    lake_s = time.perf_counter() - started
    db = registry.engine(settings.metadata_url)
    made = watch_registry.add_watchlist(db, home, "bench", cones, radius_arcsec=2.0)
    db.dispose()
    del cones
    started = time.perf_counter()
    result = match_history(settings, "watchlist", made.id)
    seconds = time.perf_counter() - started
    return {
        "watchlist_history_cones": float(n_cones),
        "watchlist_history_alerts": float(result.alerts),
        "watchlist_history_hits": float(result.hits),
        "watchlist_history_lake_s": lake_s,
        "watchlist_history_s": seconds,
    }


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the history benchmark (unless ``--no-history``) and the live one, printing every figure and last the index
    size, the history job's seconds and the live milliseconds per batch."""
    folder = Path(tempfile.mkdtemp(prefix="nightjar-bench-watch-"))
    try:
        figures: dict[str, float] = {}
        last = ("watchlist_index_mb", "watchlist_history_s", "watchlist_live_ms")
        if not args.no_history:
            figures |= history(folder, args.history_cones, args.history_alerts, args.seed)
            for key, value in figures.items():
                if key not in last:
                    print(f"{key}={value:.4g}", flush=True)
        shown = set(figures)
        figures |= live(folder, args.cones, args.alerts, args.repeat, args.seed)
        for key, value in figures.items():
            if key not in shown and key not in last:
                print(f"{key}={value:.4g}")
        for key in last:
            if key in figures:
                print(f"{key}={figures[key]:.4g}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0
