"""A Dask cluster of separate processes that share nothing but the lake's and the catalogues' URIs: the scheduler and
two workers run in their own temporary folders, without NIGHTJAR_HOME; the lake, the context catalogues and a
watchlist's cones are on a real S3-compatible server."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from distributed import Client

from nightjar import paths
from nightjar.catalogs.catalog import load_catalog_set
from nightjar.catalogs.context import classify
from nightjar.catalogs.rules import Kind
from nightjar.catalogs.synth import synth_catalog
from nightjar.catalogs.watch_files import CONES_SCHEMA
from nightjar.catalogs.watch_migrate import watch_root
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import registry, watch_registry
from nightjar.sql.engine import query_lake
from nightjar.storage import LakeRoot
from nightjar.streams import kafka, simulate

from ..kafka_offsets import committed
from .test_watch import astropy_hits

WORKERS = 2
ALERTS = 600
FILTER_SQL = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 5000"


def _bare_environment() -> dict[str, str]:
    """This process's environment without any Nightjar setting: the workers learn everything from their tasks."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NIGHTJAR_")}


@pytest.fixture
def separate_cluster(tmp_path: Path) -> Iterator[Client]:
    """``dask scheduler`` and two ``dask worker`` processes, each started in its own empty folder."""
    dask = Path(sys.executable).parent / "dask"
    address_file = tmp_path / "scheduler.json"
    processes: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(name: str, *args: str) -> None:
        folder = tmp_path / name
        folder.mkdir()
        log = open(folder / "process.log", "wb")  # noqa: SIM115 (closed below)
        logs.append(log)
        command = [str(dask), *args, "--scheduler-file", str(address_file)]
        processes.append(
            subprocess.Popen(command, cwd=folder, env=_bare_environment(), stdout=log, stderr=subprocess.STDOUT)
        )

    start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard")
    for i in range(WORKERS):
        start(
            f"worker-{i}",
            "worker",
            "--host",
            "127.0.0.1",
            "--nworkers",
            "1",
            "--nthreads",
            "2",
            "--memory-limit",
            "3GiB",
            "--no-dashboard",
            "--local-directory",
            str(tmp_path / f"worker-{i}"),
        )
    try:
        with Client(scheduler_file=str(address_file), timeout=60) as client:
            client.wait_for_workers(WORKERS, timeout=120)
            yield client
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # kafka_settings' metadata database
def test_workers_sharing_only_the_lake_uri_run_the_pipeline(
    kafka_settings: Settings, s3_lake: LakeRoot, separate_cluster: Client, tmp_path: Path
) -> None:
    """The issue's whole deployment in one test: the real broker, the lake and a context catalogue on S3, a
    separate-process Dask cluster without a shared home, and the metadata on a real PostgreSQL server."""
    settings = kafka_settings.model_copy(
        update={
            "lake_uri": s3_lake.uri,
            "catalogs_uri": s3_lake.uri.removesuffix("/lake") + "/catalogs",
            "storage_options": dict(s3_lake.options),
            "batch_size": 200,
        }
    )
    # The catalogue is written by the separate workers, to S3 only.
    synth_catalog(separate_cluster, settings.catalogs, "galaxies", 20_000, Kind.GALAXY)
    assert settings.metadata_url.startswith("postgresql+psycopg://")
    topic = f"nothing-shared-{uuid.uuid4().hex[:8]}"
    simulation = simulate.Simulation(ALERTS, 23, simulate.SimConfig(history_days=0))
    n = simulate.produce_simulation(settings, topic, simulation)
    db = registry.engine(settings.metadata_url)
    flt = registry.add_filter(db, "bright", FILTER_SQL)
    # A watchlist on S3 only: cones on every other simulated object, and as many beside them (a few arcsec off).
    truth = simulation.truth()
    ra, dec = truth["ra"].to_numpy()[::2], truth["dec"].to_numpy()[::2]
    ra, dec = np.concatenate([ra, (ra + 3 / 3600) % 360]), np.concatenate([dec, dec])
    radius = np.concatenate([np.full(ra.size // 2, np.nan), np.full(ra.size // 2, 4.0)])
    cones = pa.table(
        {
            "coneId": pa.array(np.arange(1, ra.size + 1, dtype=np.int64)),
            "name": pa.array([f"cone-{i}" for i in range(ra.size)]),
            "ra": pa.array(ra),
            "dec": pa.array(dec),
            "radius": pa.array(radius, mask=np.isnan(radius)),
        },
        schema=CONES_SCHEMA,
    )
    watched = watch_registry.add_watchlist(db, watch_root(settings), "hosts", cones, radius_arcsec=1.0)
    db.dispose()

    limits = separate_cluster.run(resource.getrlimit, resource.RLIMIT_DATA)
    report = run(settings, separate_cluster, topic, max_alerts=n, idle_exit_s=30)
    assert report.accepted == n and report.stored == n and report.balanced and not report.filter_errors
    # The run capped the workers' memory while it ran, and leaves them as it found them.
    assert separate_cluster.run(resource.getrlimit, resource.RLIMIT_DATA) == limits

    # The lake is on S3 only: nothing under the driver's home, nor in the workers' folders.
    assert not paths.lake_dir(settings.home).exists()
    assert not any(p.name in paths.TABLES for p in tmp_path.rglob("*") if p.is_dir())
    assert not any(p.name == "galaxies" for p in tmp_path.rglob("*") if p.is_dir())
    assert not paths.catalogs_dir(settings.home).exists()  # the watchlist's cones too
    # The workers matched every trigger alert against the watchlist on S3, as astropy does.
    hits = query_lake(settings, "SELECT watchlistId, coneId, diaSourceId, separationArcsec FROM watchlist_hits")
    alerts = query_lake(settings, "SELECT diaSourceId, ra, dec FROM sources WHERE NOT fromPacketHistory")
    expected = astropy_hits(cones, 1.0, alerts)
    assert set(hits["watchlistId"].to_pylist()) == {watched.id} and len(expected) > 50
    columns = (hits[c].to_pylist() for c in ("coneId", "diaSourceId", "separationArcsec"))
    found = {(c, s): d for c, s, d in zip(*columns, strict=True)}
    assert found.keys() == expected.keys() and hits.num_rows == len(expected)
    assert max(abs(found[k] - expected[k]) for k in found) < 1e-6
    # Every object was crossmatched on the workers against the catalogue on S3, as this process classifies it.
    catalogs = load_catalog_set(settings.catalogs)
    stored = query_lake(
        settings,
        "SELECT o.diaObjectId, o.ra, o.dec, c.classification, c.catalogue_object_id, c.catalogs_version "
        "FROM objects o JOIN context c USING (diaObjectId) ORDER BY o.diaObjectId",
    )
    assert stored.num_rows == query_lake(settings, "SELECT count(*) AS n FROM objects")["n"][0].as_py()
    assert set(stored["catalogs_version"].to_pylist()) == {catalogs.version}
    expected = classify(stored.select(["diaObjectId", "ra", "dec"]), catalogs).context.sort_by("diaObjectId")
    columns = ["diaObjectId", "classification", "catalogue_object_id"]
    assert stored.select(columns).to_pylist() == expected.select(columns).to_pylist()
    counts = query_lake(settings, "SELECT count(*) AS n, count(DISTINCT diaSourceId) AS d FROM cutouts").to_pylist()
    assert counts == [{"n": n, "d": n}]
    triggers = query_lake(settings, "SELECT count(*) AS n FROM sources WHERE NOT fromPacketHistory")["n"]
    assert triggers.to_pylist() == [n]
    expected = query_lake(settings, FILTER_SQL).num_rows
    assert expected > 0
    messages = kafka.read_messages(settings, flt.topic, expected + 1, timeout_s=20)
    assert len(messages) == expected == report.matches["bright"]
    assert sum(o for o in committed(settings, topic) if o > 0) == n


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_lake_the_workers_cannot_reach_fails_the_batch_and_commits_no_offset(
    kafka_settings: Settings, s3_lake: LakeRoot, separate_cluster: Client
) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:8]}"  # a bucket that does not exist: every lake request fails
    settings = kafka_settings.model_copy(
        update={"lake_uri": f"s3://{bucket}/lake", "storage_options": dict(s3_lake.options), "batch_size": 100}
    )
    topic = f"no-lake-{uuid.uuid4().hex[:8]}"
    simulate.produce(settings, topic, 200, seed=5, config=simulate.SimConfig(history_days=0))
    with pytest.raises(Exception, match=bucket):
        run(settings, separate_cluster, topic, max_alerts=200, idle_exit_s=30)
    assert all(o < 0 for o in committed(settings, topic))  # no offset committed: the alerts will be read again
