"""``nightjar bench api``: cone and object latency over real HTTP, on a synthetic lake of N alerts.

The lake (``bench lake``'s synthetic alerts, four per object, with an upserted ``objects`` table and a lake log)
is built once under the home and reused. A ``nightjar serve`` process answers on a free loopback port; the
benchmark calls it with an admin token (no rate limit) over one keep-alive connection: 5-arcsec cones at random
positions inside the footprint, the JSON object pages of random objects, then the portal's HTML object pages of the
same objects (signed in by the session cookie).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console

from nightjar import paths
from nightjar.api.users import ADMIN, add_user_token
from nightjar.api.web.session import SESSION_COOKIE
from nightjar.bench import lake as bench_lake
from nightjar.lake import read
from nightjar.lake import tables as lake_tables
from nightjar.settings import Settings
from nightjar.streams.broker import free_port

LAKE_DIR = "bench-api-lake"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the API benchmark's options: lake size, cutout size, calls timed, cone radius, rebuild."""
    parser.add_argument(
        "--alerts",
        type=int,
        default=1_000_000,
        help=f"alerts in the synthetic lake built under NIGHTJAR_HOME/{LAKE_DIR} when it is missing or with "
        "--rebuild (default: %(default)s)",
    )
    parser.add_argument("--batch", type=int, default=50_000, help="alerts per commit")
    parser.add_argument("--cutout-bytes", type=int, default=256, help="size of each of the three cutouts")
    parser.add_argument("--calls", type=int, default=200, help="timed calls of each kind")
    parser.add_argument("--radius-arcsec", type=float, default=5.0, help="cone radius, arcsec")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the synthetic lake even if present")


def _ms(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50) * 1000), float(np.percentile(samples, 95) * 1000)


def _serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NIGHTJAR_HOME": str(home)}
    command = [sys.executable, "-m", "nightjar.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_serving(client: httpx.Client, server: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Return once the ``nightjar serve`` process ``server`` answers ``client``'s health check; a RuntimeError if it
    exits first or does not answer within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API server exited with code {server.returncode}")
        try:
            if client.get("/api/v1/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API server did not answer within {timeout_s:g} s")


def _timed(client: httpx.Client, urls: list[str]) -> tuple[list[float], list[int]]:
    seconds, sizes = [], []
    for url in urls:
        started = time.perf_counter()
        response = client.get(url)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
        sizes.append(len(response.content))
    return seconds, sizes


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Build the synthetic lake if missing, serve the API on it in another process and time cone searches, object reads
    and the portal's object pages over HTTP; the p50 and p95 latencies are printed on the last line."""
    console = Console(stderr=True)
    home = Path(settings.home) / LAKE_DIR
    if args.rebuild and home.exists():
        shutil.rmtree(home)
    if not lake_tables.exists(home, paths.OBJECTS):
        started = time.perf_counter()
        bench_lake.build(home, args.alerts, args.cutout_bytes, args.batch, console, with_objects=True)
        print(f"lake_build_s={time.perf_counter() - started:.1f}")
    objects = read.table_dataset(lake_tables.load(home, paths.OBJECTS), paths.OBJECTS)
    n_objects = objects.count_rows()
    n_sources = lake_tables.load(home, paths.SOURCES).count()
    disk = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
    print(f"lake_sources={n_sources} lake_objects={n_objects} lake_mb={disk / 2**20:.0f}")

    rng = np.random.default_rng(5)
    ids = objects.to_table(columns=["diaObjectId"])["diaObjectId"].to_numpy()
    picks = rng.choice(ids, args.calls, replace=False).tolist()
    ra = rng.uniform(0, 360, args.calls)
    dec = np.degrees(np.arcsin(rng.uniform(-1, np.sin(np.radians(10)), args.calls)))
    cones = [
        f"/api/v1/cone?ra={r:.6f}&dec={d:.6f}&radius_arcsec={args.radius_arcsec}" for r, d in zip(ra, dec, strict=True)
    ]

    token = add_user_token(settings.model_copy(update={"home": home}), f"bench-{os.getpid()}", role=ADMIN)
    port = free_port()
    server = _serve(home, port)
    headers = {"Authorization": f"Token {token}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60.0) as client:
            wait_until_serving(client, server)
            started = time.perf_counter()
            client.get(cones[0]).raise_for_status()  # the first call opens the lake and reads the footers
            client.get(f"/api/v1/objects/{picks[0]}").raise_for_status()
            print(f"api_first_calls_ms={(time.perf_counter() - started) * 1000:.1f}")
            cone_s, _ = _timed(client, cones)
            object_s, sizes = _timed(client, [f"/api/v1/objects/{i}" for i in picks])
            # The portal's object pages, signed in by the session cookie as a browser is.
            client.cookies.set(SESSION_COOKIE, token)
            page_s, _ = _timed(client, [f"/objects/{i}" for i in picks])
    finally:
        server.terminate()
        server.wait(timeout=30)
    cone50, cone95 = _ms(cone_s)
    obj50, obj95 = _ms(object_s)
    print(f"object_page_bytes_median={int(np.median(sizes))}")
    page50, page95 = _ms(page_s)
    print(
        f"api_cone_p50_ms={cone50:.1f} api_cone_p95_ms={cone95:.1f} "
        f"api_object_p50_ms={obj50:.1f} api_object_p95_ms={obj95:.1f} "
        f"portal_object_p50_ms={page50:.1f} portal_object_p95_ms={page95:.1f}"
    )
    return 0
