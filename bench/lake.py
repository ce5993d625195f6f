"""``nightjar bench lake``: cutout retrieval and cone-search times on a synthetic lake of N alerts.

The lake is written through the same commit functions as the pipeline, with the production layout (sources by
night sorted by HEALPix index, cutouts by night sorted by diaSourceId in small row groups). Rows carry a reduced
set of source columns and random (incompressible) cutouts of ``--cutout-bytes`` each.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import Console

from nightjar import paths
from nightjar.geometry import separation_arcsec
from nightjar.lake import commit
from nightjar.lake import tables as lake_tables
from nightjar.lake.lookup import ConeSearch, CutoutStore
from nightjar.settings import Settings

ID_BASE = 170_000_000_000_000_000
NIGHTS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the lake benchmark's options: lake size, cutout size, batch size, lookups and cones timed, cone radius,
    rebuild."""
    parser.add_argument(
        "--alerts",
        type=int,
        default=1_000_000,
        help="alerts in the synthetic lake built under NIGHTJAR_HOME/bench-lake when it is missing or with "
        "--rebuild (default: %(default)s)",
    )
    parser.add_argument("--cutout-bytes", type=int, default=1024, help="size of each of the three cutouts")
    parser.add_argument("--batch", type=int, default=50_000, help="alerts per commit")
    parser.add_argument(
        "--lookups", type=int, default=200, help="cutout lookups timed, random diaSourceIds (default: %(default)s)"
    )
    parser.add_argument(
        "--cones", type=int, default=50, help="cone searches timed, centred on random sources (default: %(default)s)"
    )
    parser.add_argument("--radius-arcsec", type=float, default=5.0, help="cone radius, arcsec")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the synthetic lake even if present")


def build(home: Path, n: int, cutout_bytes: int, batch: int, console: Console, with_objects: bool = False) -> None:
    """Write ``n`` synthetic alerts (four per diaObject) in commits of ``batch``.

    ``with_objects``: an object's four detections lie within an arcsecond of its position, an ``objects`` row
    per object is upserted as the pipeline does, and each batch is logged as a lake snapshot.
    """
    import healpy as hp

    rng = np.random.default_rng(1)
    for start in range(0, n, batch):
        m = min(batch, n - start)
        ids = np.arange(ID_BASE + start, ID_BASE + start + m, dtype=np.int64)
        ra = rng.uniform(0, 360, m)
        dec = np.degrees(np.arcsin(rng.uniform(-1, np.sin(np.radians(10)), m)))
        if with_objects:
            first = np.r_[True, np.diff(ids // 4) != 0]
            owner = np.cumsum(first) - 1
            jitter = rng.normal(0, 0.3 / 3600, (2, m))
            dec = np.clip(dec[first][owner] + jitter[1], -90, 90)
            ra = (ra[first][owner] + jitter[0] / np.cos(np.radians(dec))) % 360
        hpx = hp.ang2pix(1 << paths.HPX_ORDER_MAX, ra, dec, nest=True, lonlat=True).astype(np.int64)
        night = (60950 + (start * NIGHTS) // n) * np.ones(m, dtype=np.int32)
        sources = pa.table(
            {
                "diaSourceId": ids,
                "diaObjectId": ids // 4,
                "ra": ra,
                "dec": dec,
                "midpointMjdTai": night + rng.uniform(0, 0.4, m),
                "band": pa.array(np.array(list("ugrizy"))[rng.integers(0, 6, m)]),
                "psfFlux": rng.lognormal(9, 1, m).astype(np.float32),
                paths.HPX29: hpx,
                paths.NIGHT: night,
            }
        )
        txns = {"bench": start // batch}
        commit.append(home, paths.SOURCES, sources, txns)
        stamps = {}
        for name in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
            raw = np.frombuffer(rng.bytes(m * cutout_bytes), dtype=np.uint8).reshape(m, cutout_bytes).copy()
            raw[:, :8] = ids.view(np.uint8).reshape(m, 8)  # each stamp starts with its diaSourceId
            offsets = pa.array(np.arange(m + 1, dtype=np.int32) * cutout_bytes)
            stamps[name] = pa.BinaryArray.from_buffers(pa.binary(), m, [None, offsets.buffers()[1], pa.py_buffer(raw)])
        cutouts = pa.table({"diaSourceId": ids, **stamps, paths.NIGHT: night, paths.HPX29: hpx})
        commit.append(home, paths.CUTOUTS, cutouts, txns)
        if with_objects:
            commit.append_states(home, paths.OBJECTS, _objects(sources), txns)
            commit.log_batch(home, txns)
        console.log(f"{start + m:,} alerts written")


def _objects(sources: pa.Table) -> pa.Table:
    """One row per object of a batch: its position, its HEALPix index, counts and its latest source."""
    import healpy as hp

    # The first detection's position (a mean of RAs breaks at 0/360).
    groups = sources.group_by("diaObjectId", use_threads=False).aggregate(
        [
            ("ra", "first"),
            ("dec", "first"),
            ("diaSourceId", "max"),
            ("diaSourceId", "count"),
            ("midpointMjdTai", "min"),
            ("midpointMjdTai", "max"),
        ]
    )
    ra, dec = groups["ra_first"].to_numpy(), groups["dec_first"].to_numpy()
    return pa.table(
        {
            "diaObjectId": groups["diaObjectId"],
            "ra": ra,
            "dec": dec,
            "nDiaSources": groups["diaSourceId_count"],
            "lastDiaSourceId": groups["diaSourceId_max"],
            "firstDiaSourceMjdTai": groups["midpointMjdTai_min"],
            "lastDiaSourceMjdTai": groups["midpointMjdTai_max"],
            paths.HPX29: hp.ang2pix(1 << paths.HPX_ORDER_MAX, ra, dec, nest=True, lonlat=True).astype(np.int64),
        }
    )


def _ms(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50) * 1000), float(np.percentile(samples, 95) * 1000)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Build the synthetic lake if missing, then time cutout lookups by diaSourceId and cone searches over the sources
    (against a scan of every row for the first cones), printing their percentiles."""
    console = Console(stderr=True)
    home = Path(settings.home) / "bench-lake"
    if args.rebuild and home.exists():
        shutil.rmtree(home)
    if not lake_tables.exists(home, paths.CUTOUTS):
        build(home, args.alerts, args.cutout_bytes, args.batch, console)
    n = lake_tables.load(home, paths.CUTOUTS).count()
    print(f"lake_alerts={n} cutout_bytes={args.cutout_bytes}")
    rng = np.random.default_rng(2)

    started = time.perf_counter()
    store = CutoutStore(home)
    print(f"cutout_store_open_ms={(time.perf_counter() - started) * 1000:.1f}")
    times = []
    for dia_source_id in rng.integers(ID_BASE, ID_BASE + n, args.lookups).tolist():
        started = time.perf_counter()
        found = store.get(dia_source_id)
        times.append(time.perf_counter() - started)
        assert found is not None and found["cutoutScience"] is not None
        assert int(np.frombuffer(found["cutoutScience"][:8], dtype=np.int64)[0]) == dia_source_id
    p50, p95 = _ms(times)
    print(f"cutout_p50_ms={p50:.1f} cutout_p95_ms={p95:.1f}")

    started = time.perf_counter()
    search = ConeSearch(home)
    print(f"cone_index_open_ms={(time.perf_counter() - started) * 1000:.1f}")
    dataset = lake_tables.load(home, paths.SOURCES).to_pyarrow_dataset()
    centres = dataset.take(pa.array(rng.integers(0, n, args.cones)), columns=["ra", "dec"]).to_pylist()
    times, full = [], []
    for i, c in enumerate(centres):
        started = time.perf_counter()
        hits = search(c["ra"], c["dec"], args.radius_arcsec, columns=["diaSourceId"])
        times.append(time.perf_counter() - started)
        assert hits.num_rows >= 1
        if i < 3:  # the same cone by scanning every row, as a baseline
            started = time.perf_counter()
            everything = dataset.to_table(columns=["diaSourceId", "ra", "dec"])
            sep = separation_arcsec(everything["ra"].to_numpy(), everything["dec"].to_numpy(), c["ra"], c["dec"])
            scanned = everything.filter(pa.array(sep <= args.radius_arcsec))
            full.append(time.perf_counter() - started)
            assert sorted(scanned["diaSourceId"].to_pylist()) == sorted(hits["diaSourceId"].to_pylist())
    p50, p95 = _ms(times)
    scan = float(np.median(full) * 1000)
    print(f"cone_p50_ms={p50:.1f} cone_p95_ms={p95:.1f} cone_full_scan_ms={scan:.1f}")
    print(f"cone_speedup={scan / p50:.1f}")
    return 0
