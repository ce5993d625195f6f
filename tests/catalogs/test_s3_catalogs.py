"""Context catalogues on object storage (``NIGHTJAR_CATALOGS_URI=s3://...``), on the real S3-compatible server of
the session: imported there by the Dask workers, crossmatched there by the pipeline's workers and by the API, with
exactly the results of the same catalogues on a local disk."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from distributed import Client
from fastapi.testclient import TestClient

from nightjar import paths
from nightjar.api.app import create_app
from nightjar.catalogs import layout
from nightjar.catalogs.build import BuildSpec, build_catalog
from nightjar.catalogs.catalog import ColumnMap, list_catalogs, load_catalog_set
from nightjar.catalogs.context import classify
from nightjar.catalogs.dispatch import submit_context
from nightjar.catalogs.report import context_report
from nightjar.catalogs.rules import Kind
from nightjar.catalogs.synth import synth_catalog
from nightjar.catalogs.watch_files import WatchFileError, read_cones
from nightjar.pipelines.run import ingest, run
from nightjar.settings import Settings
from nightjar.sql import engine
from nightjar.storage import CatalogsRoot, StorageError
from nightjar.streams import simulate
from nightjar.streams.broker import free_port

from ..conftest import S3Server
from ..kafka_offsets import committed
from .conftest import SOURCES, import_source

IMPORTED = ("gcvs", "3hsp")
# gcvs in partitions of at most 12,000 rows: partition edges, so margins on S3 matter (fewer files than the 4,000 rows
# of the local tests: each costs requests to the test's S3 server)
SOURCES_ON_S3 = {"gcvs": replace(SOURCES["gcvs"], partition_rows=12_000), "3hsp": SOURCES["3hsp"]}
COMPARED = (  # context columns compared (catalogs_version and classifiedAt differ by construction)
    "diaObjectId",
    "classification",
    "catalogue_table_name",
    "catalogue_object_id",
    "separationArcsec",
    "association_type",
)


@dataclass(frozen=True)
class Twins:
    """The same catalogues imported twice: into a bucket of the S3 server and into a local folder."""

    s3: CatalogsRoot
    local: Path  # a Nightjar home whose catalogs/ folder holds them


@pytest.fixture(scope="module")
def twins(s3_server: S3Server, dask_client: Client, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Twins:
    s3 = CatalogsRoot(f"s3://{s3_server.create_bucket()}/context/catalogs", s3_server.options)
    local = tmp_path_factory.mktemp("local-catalogs")
    for name in IMPORTED:
        import_source(dask_client, s3, data_dir, SOURCES_ON_S3[name])
        import_source(dask_client, local, data_dir, SOURCES_ON_S3[name])
    return Twins(s3, local)


def _s3_settings(settings: Settings, twins: Twins) -> Settings:
    return settings.model_copy(update={"catalogs_uri": twins.s3.uri, "storage_options": dict(twins.s3.options)})


def ztf_objects(data_dir: Path) -> tuple[pa.Table, dict[str, list[Path]]]:
    """One row per real ZTF object (its last alert's position), and the alert files of each object."""
    rows: dict[str, tuple[float, float]] = {}
    files: dict[str, list[Path]] = {}
    for path in sorted((data_dir / "alerts" / "ztf").rglob("*.avro")):
        if "corrupt" in path.parts:
            continue
        with path.open("rb") as fh:
            for record in fastavro.reader(fh):
                rows[record["objectId"]] = (record["candidate"]["ra"], record["candidate"]["dec"])
                files.setdefault(record["objectId"], []).append(path)
    names = sorted(rows)
    table = pa.table(
        {
            "diaObjectId": np.arange(len(names), dtype=np.int64),
            "ra": [rows[n][0] for n in names],
            "dec": [rows[n][1] for n in names],
        }
    )
    return table, {n: files[n] for n in names}


def test_an_import_into_s3_writes_the_catalogues_there_and_nothing_locally(
    twins: Twins, settings: Settings, data_dir: Path
) -> None:
    s3 = _s3_settings(settings, twins)
    on_s3 = {i.name: i for i in list_catalogs(s3.catalogs)}
    on_disk = {i.name: i for i in list_catalogs(twins.local)}
    assert sorted(on_s3) == sorted(IMPORTED)
    for name in IMPORTED:
        keep = ("rows", "partitions", "margin_rows", "max_reach_arcsec", "columns", "kind")
        assert {k: getattr(on_s3[name], k) for k in keep} == {k: getattr(on_disk[name], k) for k in keep}
        assert on_s3[name].version != on_disk[name].version
    assert on_s3["gcvs"].partitions > 4 and on_s3["gcvs"].margin_rows > 0

    # The collection is whole in the bucket: the Parquet _metadata of every partition, HATS properties, the margin.
    fs = twins.s3.filesystem()
    collection = layout.collection_dir(twins.s3, "gcvs")
    primary = layout.primary_dir(collection)
    assert pq.read_metadata(str(primary / "dataset" / "_metadata"), filesystem=fs).num_rows == on_s3["gcvs"].rows
    for name in ("collection.properties", f"gcvs/{'hats.properties'}", "gcvs/partition_info.csv"):
        assert fs.get_file_info(str(collection / name)).is_file, name
    margin = layout.margin_dir(collection, on_s3["gcvs"].margin_threshold_arcsec)
    assert pq.read_metadata(str(margin / "dataset" / "_metadata"), filesystem=fs).num_rows == on_s3["gcvs"].margin_rows
    # No staging left behind in the bucket, no catalogue folder under the local home.
    names = [f.base_name for f in fs.get_file_info(pafs.FileSelector(str(layout.root(twins.s3))))]
    assert sorted(names) == sorted(IMPORTED)
    assert not (settings.home / paths.CATALOGS_DIR).exists()


def test_workers_crossmatch_the_s3_catalogues_exactly_as_the_local_ones(
    twins: Twins, dask_client: Client, data_dir: Path
) -> None:
    objects, _ = ztf_objects(data_dir)
    from_s3 = load_catalog_set(twins.s3)
    assert all(h.root == twins.s3 for h in from_s3.catalogs)
    on_cluster = submit_context(dask_client, objects, from_s3).result().context.sort_by("diaObjectId")
    expected = classify(objects, load_catalog_set(twins.local)).context.sort_by("diaObjectId")
    assert on_cluster.select(COMPARED).to_pylist() == expected.select(COMPARED).to_pylist()
    assert set(on_cluster["classification"].to_pylist()) >= {"VS", "AGN"}


def test_the_pipeline_stores_the_context_of_s3_catalogues(
    twins: Twins, settings: Settings, dask_client: Client, data_dir: Path
) -> None:
    """``ingest`` (the whole pipeline on the Dask workers) with the catalogues on S3 stores, for each object, exactly
    the context the same catalogues on a local disk give."""
    s3 = _s3_settings(settings, twins)
    objects, files_of = ztf_objects(data_dir)
    local = load_catalog_set(twins.local)
    found = classify(objects, local).context
    # The alerts of every object with a catalogue match, and of a few without: a small ingest.
    matched = [n for n, c in zip(files_of, found["classification"].to_pylist(), strict=True) if c not in ("ORPHAN",)]
    unmatched = [n for n, c in zip(files_of, found["classification"].to_pylist(), strict=True) if c == "ORPHAN"]
    assert len(matched) >= 7
    files = sorted({f for n in matched + unmatched[:5] for f in files_of[n]})
    report = ingest(s3, dask_client, files)
    assert report.accepted == len(files) and not report.file_errors

    stored = engine.query_lake(
        s3,
        "SELECT o.diaObjectId, o.ra, o.dec, c.* EXCLUDE (diaObjectId) FROM objects o JOIN context c "
        "USING (diaObjectId) ORDER BY o.diaObjectId",
    )
    assert stored.num_rows == len(matched) + 5
    assert set(stored["catalogs_version"].to_pylist()) == {load_catalog_set(s3.catalogs).version}
    expected = classify(stored.select(["diaObjectId", "ra", "dec"]), local).context.sort_by("diaObjectId")
    assert stored.select(COMPARED).to_pylist() == expected.select(COMPARED).to_pylist()
    assert stored["classification"].to_pylist().count("VS") >= 6
    assert not (settings.home / paths.CATALOGS_DIR).exists()


def test_the_api_reports_the_context_of_a_position_from_s3(twins: Twins, settings: Settings, data_dir: Path) -> None:
    s3 = _s3_settings(settings, twins)
    local = settings.model_copy(update={"catalogs_uri": str(twins.local / paths.CATALOGS_DIR)})
    gcvs = SOURCES["gcvs"].read(data_dir).slice(1000, 1).to_pylist()[0]
    ra, dec = gcvs["ra"] + 0.5 / 3600, gcvs["dec"]  # half an arcsecond from a GCVS star
    with TestClient(create_app(s3)) as client:
        body = client.get("/api/v1/context/position", params={"ra": ra, "dec": dec}).json()
        unknown = client.get("/api/v1/context/position", params={"ra": ra, "dec": dec, "catalog": "hipparcos"})
    assert body["catalogues"] == sorted(IMPORTED) and body["classification"] == "VS"
    expected = context_report(local, ra, dec, None)
    assert {k: v for k, v in body.items() if k != "catalogs_version"} == {
        k: v for k, v in expected.items() if k != "catalogs_version"
    }
    assert unknown.status_code == 400 and "installed: 3hsp, gcvs" in unknown.json()["detail"]


def test_a_watchlist_from_a_catalogue_on_s3(twins: Twins) -> None:
    cones = read_cones("catalog:3hsp", twins.s3)
    assert cones.num_rows > 1000 and cones.equals(read_cones("catalog:3hsp", twins.local))
    with pytest.raises(WatchFileError, match="no catalogue 'hipparcos'"):
        read_cones("catalog:hipparcos", twins.s3)


def test_reimport_list_and_remove_on_s3(
    s3_server: S3Server,
    dask_client: Client,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A re-import replaces the catalogue in the bucket (no rename there: copied into place, its description last);
    ``nightjar catalog list`` and ``remove`` work on the bucket."""
    from nightjar.cli import main

    where = CatalogsRoot(f"s3://{s3_server.create_bucket()}/catalogs", s3_server.options)
    fs = where.filesystem()
    collection = layout.collection_dir(where, "sky")

    def partition_files() -> list[str]:
        found = fs.get_file_info(pafs.FileSelector(str(layout.primary_dir(collection) / "dataset"), recursive=True))
        return sorted(f.path for f in found if f.is_file and f.base_name.startswith("Npix="))

    first = synth_catalog(dask_client, where, "sky", 1000, Kind.GALAXY)  # all over the sky
    loaded = load_catalog_set(where)  # as a running pipeline holds it
    patch = pa.table({"ra": [10.0, 10.01, 10.02], "dec": [-30.0, -30.01, -30.02]})  # then one small patch
    spec = BuildSpec(name="sky", kind=Kind.STAR, columns=ColumnMap(ra="ra", dec="dec"))
    second = build_catalog(dask_client, [patch], spec, where)
    assert first.partitions > second.partitions == 1
    assert [(i.name, i.version, i.rows) for i in list_catalogs(where)] == [("sky", second.version, 3)]
    assert len(partition_files()) == second.partitions  # nothing of the first import is left
    # The run that loaded the first version fails loudly rather than mix the new files into the old version's index.
    with pytest.raises(RuntimeError, match=f"catalogue sky was re-imported \\(version {second.version}\\)"):
        classify(pa.table({"diaObjectId": [1], "ra": [10.0], "dec": [-30.0]}), loaded)
    assert [f.base_name for f in fs.get_file_info(pafs.FileSelector(str(layout.root(where))))] == ["sky"]

    monkeypatch.setenv("NIGHTJAR_HOME", str(settings.home))
    monkeypatch.setenv("NIGHTJAR_CATALOGS_URI", where.uri)
    monkeypatch.setenv("NIGHTJAR_STORAGE_OPTIONS", json.dumps(where.options))
    assert main(["catalog", "list", "--format", "json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["name"], r["version"], r["path"]) for r in listed] == [("sky", second.version, f"{where.uri}/sky")]
    assert main(["catalog", "remove", "sky"]) == 0
    assert list_catalogs(where) == [] and fs.get_file_info(str(collection)).type == pafs.FileType.NotFound
    assert not (settings.home / paths.CATALOGS_DIR).exists()


def test_a_bad_catalogs_uri_is_a_clear_error(
    settings: Settings, s3_server: S3Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = settings.model_copy(
        update={"catalogs_uri": "s3://no-such-bucket-here/catalogs", "storage_options": s3_server.options}
    )
    with pytest.raises(StorageError, match="no bucket 'no-such-bucket-here' for s3://no-such-bucket-here/catalogs"):
        load_catalog_set(missing.catalogs)
    from nightjar.cli import main

    monkeypatch.setenv("NIGHTJAR_HOME", str(settings.home))
    monkeypatch.setenv("NIGHTJAR_CATALOGS_URI", "gs://bucket/catalogs")
    assert main(["catalog", "list"]) == 2
    said = capsys.readouterr()
    assert "unsupported storage location 'gs://bucket/catalogs'" in said.out + said.err

    # A store that does not answer (nothing listens on the port): the CLI and the API say so, naming the location.
    closed = {**s3_server.options, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    monkeypatch.setenv("NIGHTJAR_CATALOGS_URI", "s3://catalogs/ctx")
    monkeypatch.setenv("NIGHTJAR_STORAGE_OPTIONS", json.dumps(closed))
    assert main(["context", "10", "-30"]) == 2
    said = capsys.readouterr()
    assert "cannot reach s3://catalogs/ctx" in said.out + said.err
    away = settings.model_copy(update={"catalogs_uri": "s3://catalogs/ctx", "storage_options": closed})
    with TestClient(create_app(away), raise_server_exceptions=False) as client:
        answer = client.get("/api/v1/context/position", params={"ra": 10, "dec": -30})
    assert answer.status_code == 503 and answer.json()["detail"] == "the context catalogues are out of reach"


@pytest.mark.timeout(120)
def test_a_catalogue_the_workers_cannot_read_fails_the_batch_and_commits_no_offset(
    kafka_settings: Settings, s3_server: S3Server, dask_client: Client
) -> None:
    """The driver reads the catalogue's description; the workers find none of its partitions (as a worker that
    cannot reach the store would): the batch fails, naming the partition, and no offset is committed."""
    where = CatalogsRoot(f"s3://{s3_server.create_bucket()}/catalogs", s3_server.options)
    synth_catalog(dask_client, where, "sky", 2000, Kind.GALAXY)  # galaxies all over the sky
    fs = where.filesystem()
    fs.delete_dir(str(layout.primary_dir(layout.collection_dir(where, "sky")) / "dataset"))
    settings = kafka_settings.model_copy(
        update={"catalogs_uri": where.uri, "storage_options": dict(where.options), "batch_size": 100}
    )
    assert [c.name for c in load_catalog_set(settings.catalogs).catalogs] == ["sky"]
    topic = f"no-catalogue-{uuid.uuid4().hex[:8]}"
    simulate.produce(settings, topic, 100, seed=5, config=simulate.SimConfig(history_days=0))
    with pytest.raises(
        FileNotFoundError, match=r"catalogue partition missing: .*/sky/sky/dataset/.*NIGHTJAR_CATALOGS_URI"
    ):
        run(settings, dask_client, topic, max_alerts=100, idle_exit_s=20)
    assert all(o < 0 for o in committed(settings, topic))  # the alerts will be read again
    assert engine.query_lake(settings, "SELECT count(*) AS n FROM sources")["n"].to_pylist() == [0]
