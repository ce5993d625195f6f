"""``nightjar bench skymap``: the live matching cost of a 10,000-alert batch against 10 active skymaps.

Ten maps are stored in a temporary home: the real multi-order map given with ``--skymap`` (e.g. the BAYESTAR map
of ``../shared/data/skymaps``) ten times under different events, or by default ten synthetic flat maps (nside
128, a 2° Gaussian each at a random position). The batch is uniform on the sky with ``--inside`` of its alerts
placed in the maps' 90 % regions, all inside the maps' windows. The first match reads the maps (cold); the next
``--repeat`` are timed warm, as the watch stage runs on every batch. The same batch with no map (the alerts'
preparation alone) is the baseline. Key=value lines; the last one is the figure (``skymap_live_ms``, median).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import healpy as hp
import numpy as np
import pyarrow as pa
from astropy.time import Time

from nightjar.catalogs.skymap import Skymap, read_skymap
from nightjar.catalogs.skymap_store import active_specs, add_skymap, cached_index, load_index
from nightjar.pipelines.watch import WatchSet, alerts_of, hits_of
from nightjar.settings import Settings

EVENT = datetime(2026, 1, 1, tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the skymap benchmark's options: maps, alerts, repeats, share of alerts inside, a real skymap, seed."""
    parser.add_argument("--maps", type=int, default=10, help="active skymaps (default: %(default)s)")
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts of the batch (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=10, help="warm batches timed (default: %(default)s)")
    parser.add_argument("--inside", type=float, default=0.05, help="share of alerts inside a 90 %% region")
    parser.add_argument("--skymap", type=Path, help="a real skymap FITS used for every map (default: synthetic)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")


def synthetic_map(rng: np.random.Generator, nside: int = 128, sigma_deg: float = 2.0) -> Skymap:
    """A flat NESTED Gaussian localisation at a random position, as multi-order cells."""
    ra0, dec0 = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-1, 1)))
    xyz = np.array(hp.pix2vec(nside, np.arange(hp.nside2npix(nside)), nest=True))
    angle = np.degrees(np.arccos(np.clip(hp.ang2vec(ra0, dec0, lonlat=True) @ xyz, -1, 1)))
    prob = np.exp(-0.5 * (angle / sigma_deg) ** 2)
    prob /= prob.sum()
    order = int(np.log2(nside))
    uniq = 4 * 4**order + np.arange(prob.size, dtype=np.int64)
    skymap = Skymap(uniq, prob / hp.nside2pixarea(nside), event_time=EVENT)
    skymap.ordering = "NESTED"
    return skymap


def batch(rng: np.random.Generator, n: int, inside: float, home: Path) -> pa.Table:
    """``n`` alerts, uniform on the sky but for ``inside`` of them at the centres of the maps' 90 % cells."""
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    k = int(n * inside)
    if k:
        specs = active_specs(home)
        picks = rng.integers(0, len(specs), k)
        for j, spec in enumerate(specs):
            region = cached_index(spec, 1 << 30).regions[90]
            starts = region.starts[rng.integers(0, region.starts.size, int((picks == j).sum()))]
            theta, phi = hp.pix2ang(2**29, starts, nest=True)
            ra[:k][picks == j], dec[:k][picks == j] = np.degrees(phi), 90 - np.degrees(theta)
    mjd = float(Time(EVENT).mjd) + rng.uniform(0.1, 20.0, n)
    return alerts_of(
        pa.table(
            {
                "diaObjectId": pa.array(np.arange(n, dtype=np.int64) + 1),
                "diaSourceId": pa.array(np.arange(n, dtype=np.int64) + 10**12),
                "ra": pa.array(ra),
                "dec": pa.array(dec),
                "midpointMjdTai": pa.array(mjd),
            }
        )
    )


def _timed(alerts: pa.Table, watch: WatchSet, repeat: int) -> tuple[float, int]:
    times, hits = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        hits = hits_of(alerts, watch).mma_hits.num_rows
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), hits


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Store the skymaps in a temporary home and time a batch's matching against none, against maps out of their window
    and against the active maps; the live matching time per batch is printed last."""
    home = Path(tempfile.mkdtemp(prefix="nightjar-bench-skymap-"))
    try:
        rng = np.random.default_rng(args.seed)
        real = read_skymap(args.skymap) if args.skymap else None
        for i in range(args.maps):
            skymap = real if real is not None else synthetic_map(rng)
            add_skymap(home, skymap, event_id=f"S{i:03d}", event_time=EVENT)
        specs = active_specs(home)
        alerts = batch(rng, args.alerts, args.inside, home)
        watch = WatchSet(skymaps=specs)
        print(f"maps={len(specs)}")
        print(f"alerts={alerts.num_rows}")
        started = time.perf_counter()
        load_index(specs[0])
        print(f"skymap_index_load_ms={(time.perf_counter() - started) * 1000:.4g}")  # cold, once per map and worker
        print(f"source={'file:' + str(args.skymap) if args.skymap else 'synthetic nside-128 flat maps'}")
        started = time.perf_counter()
        alerts_of(alerts.drop_columns(["hpx29"]))
        print(f"alerts_prepare_ms={(time.perf_counter() - started) * 1000:.4g}")
        baseline, _ = _timed(alerts, WatchSet(), args.repeat)
        print(f"baseline_no_maps_ms={baseline:.4g}")
        later = WatchSet(skymaps=tuple(type(s)(s.id, s.folder, s.event_mjd + 100, s.window_days) for s in specs))
        outside, _ = _timed(alerts, later, args.repeat)
        print(f"skymap_outside_window_ms={outside:.4g}")
        warm, hits = _timed(alerts, watch, args.repeat)
        print(f"hits_per_batch={hits}")
        print(f"skymap_per_map_ms={warm / max(len(specs), 1):.4g}")
        print(f"skymap_live_ms={warm:.4g}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0
