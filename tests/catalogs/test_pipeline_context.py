"""The context stage inside the pipeline: classified once per object, stored in the lake, joined by filters."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from deltalake import DeltaTable
from distributed import Client

from nightjar import paths
from nightjar.catalogs.catalog import load_catalog_set
from nightjar.catalogs.demo import install_openngc
from nightjar.catalogs.dispatch import submit_context
from nightjar.pipelines import context, lake_write, stages
from nightjar.pipelines.run import ingest, run
from nightjar.settings import Settings
from nightjar.sql import engine, registry
from nightjar.sql.registry import Filter
from nightjar.streams import kafka, simulate
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.files import read_payloads


def ztf_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "alerts/ztf").rglob("*.avro") if "corrupt" not in p.parts)


def near(ra: np.ndarray, dec: np.ndarray, cat_ra: np.ndarray, cat_dec: np.ndarray, arcsec: float) -> np.ndarray:
    """Indexes of the positions within ``arcsec`` of any catalogue row (astropy, independent of our kernel)."""
    idx, _, _, _ = SkyCoord(cat_ra * u.deg, cat_dec * u.deg).search_around_sky(
        SkyCoord(ra * u.deg, dec * u.deg), arcsec * u.arcsec
    )
    return np.unique(idx)


@pytest.fixture
def context_home(settings: Settings, catalog_home: Path) -> Settings:
    shutil.copytree(catalog_home / paths.CATALOGS_DIR, settings.home / paths.CATALOGS_DIR)
    return settings


def test_ingest_classifies_each_object_once_and_stores_its_context(
    context_home: Settings, dask_client: Client, data_dir: Path
) -> None:
    settings = context_home
    files = ztf_files(data_dir)
    first = ingest(settings, dask_client, files[: len(files) // 2])
    second = ingest(settings, dask_client, files[len(files) // 2 :])
    assert first.accepted + second.accepted == len(files) and not first.file_errors + second.file_errors

    objects = engine.query_lake(settings, "SELECT diaObjectId, ra, dec FROM objects ORDER BY diaObjectId")
    ctx = engine.query_lake(
        settings,
        "SELECT diaObjectId, classification, catalogue_table_name, catalogue_object_id, separationArcsec, "
        "catalogs_version, classifiedAt FROM context ORDER BY diaObjectId",
    )
    # One context row per object, under the installed catalogue set.
    assert ctx["diaObjectId"].to_pylist() == objects["diaObjectId"].to_pylist() and ctx.num_rows == 142
    assert set(ctx["catalogs_version"].to_pylist()) == {load_catalog_set(settings.home).version}

    ra, dec = objects["ra"].to_numpy(), objects["dec"].to_numpy()
    gcvs = pq.read_table(data_dir / "catalogs/gcvs/gcvs.parquet")
    hsp = pq.read_table(data_dir / "catalogs/3hsp/3hsp.parquet")
    on_gcvs = near(ra, dec, gcvs["ra"].to_numpy(), gcvs["dec"].to_numpy(), 2.0)
    on_hsp = near(ra, dec, hsp["ra_deg"].to_numpy(), hsp["dec_deg"].to_numpy(), 2.0)
    assert len(on_gcvs) == 6 and len(on_hsp) == 1
    classes = np.asarray(ctx["classification"].to_pylist())
    tables = np.asarray(ctx["catalogue_table_name"].to_pylist(), dtype=object)
    assert set(np.flatnonzero((classes == "VS") & (tables == "gcvs"))) == set(on_gcvs)
    blazar = int(on_hsp[0])
    assert classes[blazar] == "AGN"

    # Every ranked match is stored too, the first one being the context row's.
    matches = engine.query_lake(
        settings,
        "SELECT rank, catalogue_table_name, catalogue_object_id FROM context_matches WHERE diaObjectId = "
        f"{ctx['diaObjectId'][blazar].as_py()} ORDER BY rank",
    ).to_pylist()
    assert matches[0]["catalogue_object_id"] == ctx["catalogue_object_id"][blazar].as_py()
    assert [m["rank"] for m in matches] == list(range(1, len(matches) + 1))
    assert {"catalogue_table_name": "3hsp", "catalogue_object_id": "3HSPJ174357.8+193509"} in [
        {k: m[k] for k in ("catalogue_table_name", "catalogue_object_id")} for m in matches
    ]

    # Objects seen again in the second half were not classified again.
    history = DeltaTable(str(paths.table_dir(settings.home, paths.CONTEXT))).history()
    writes = [h for h in history if h["operation"] in ("WRITE", "MERGE")]
    assert len(writes) >= 2
    stamps = ctx["classifiedAt"].to_pylist()
    assert len(set(stamps)) <= first.batches + second.batches


def test_streaming_filters_see_the_context_of_new_and_known_objects(
    context_home: Settings, dask_client: Client, data_dir: Path
) -> None:
    settings = context_home
    catalogs = load_catalog_set(settings.home)
    files = ztf_files(data_dir)
    payloads = [p for f in files for p in read_payloads(f)]
    sql = (
        "SELECT s.diaObjectId, c.catalogue_object_id FROM sources s JOIN context c USING (diaObjectId) "
        "WHERE NOT s.fromPacketHistory AND c.classification = 'VS'"
    )
    flt = Filter(id=1, name="variables", sql=sql, version=1)
    limits = engine.limits(settings, timeout_s=30)

    def run_batch(raw: RawBatch) -> tuple[set[int], int]:
        batch = stages.locate(decode_batch(raw), settings.partition_order)
        pending = context.pending(batch, settings.home, catalogs.version)
        result = submit_context(dask_client, pending.todo, catalogs).result()
        ctx = context.combine(pending, result)
        lake_write.commit_to_lake(batch, settings.home, {f"test:{len(raw)}": 0}, ctx)
        outcome = stages.apply_filters(batch, [flt], limits, ctx)
        (output,) = outcome.outputs
        assert output.error is None and output.matches is not None
        return set(output.matches["diaObjectId"].to_pylist()), pending.todo.num_rows

    first, classified = run_batch(RawBatch.from_payloads(payloads, topic="a"))
    assert len(first) == 6 and classified == 142
    # The same alerts again: the objects are known, nothing is classified, the filter still sees their context.
    subset = payloads[:40] + payloads[-40:]
    again, classified = run_batch(RawBatch.from_payloads(subset, topic="b"))
    assert classified == 0
    variables = engine.query_lake(settings, "SELECT diaObjectId FROM context WHERE classification = 'VS'")
    in_batch = set(decode_batch(RawBatch.from_payloads(subset)).sources["diaObjectId"].to_pylist())
    assert again == in_batch & set(variables["diaObjectId"].to_pylist()) and again and again <= first


def test_refresh_reclassifies_after_a_catalogue_is_removed(
    context_home: Settings, dask_client: Client, data_dir: Path
) -> None:
    settings = context_home
    ingest(settings, dask_client, ztf_files(data_dir))
    before = load_catalog_set(settings.home).version
    shutil.rmtree(settings.home / paths.CATALOGS_DIR / "gcvs")
    after = load_catalog_set(settings.home)
    assert after.version != before
    report = context.refresh(settings.home, dask_client, after)
    assert (report.objects, report.classified) == (142, 142) and report.stale_matches_removed > 0
    ctx = engine.query_lake(settings, "SELECT classification, catalogue_table_name, catalogs_version FROM context")
    assert ctx.num_rows == 142 and set(ctx["catalogs_version"].to_pylist()) == {after.version}
    assert "gcvs" not in set(ctx["catalogue_table_name"].to_pylist())
    stale = engine.query_lake(
        settings, f"SELECT count(*) AS n FROM context_matches WHERE catalogs_version != '{after.version}'"
    )
    assert stale["n"].to_pylist() == [0]
    # Nothing left to do: a second refresh classifies nothing.
    assert context.refresh(settings.home, dask_client, after).classified == 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_simulated_transients_on_kafka_get_their_hosts_and_reach_a_context_filter(
    kafka_settings: Settings, dask_client: Client, tmp_path: Path
) -> None:
    settings = kafka_settings
    install_openngc(dask_client, settings.home)
    topic = f"ctx-{uuid.uuid4().hex[:8]}"
    truth_file = tmp_path / "truth.parquet"
    n = 800
    assert simulate.produce(settings, topic, n, seed=5, truth=truth_file) == n
    db = registry.engine(settings.metadata_url)
    hosted = registry.add_filter(db, "hosted", HOSTED_SQL)
    report = run(settings, dask_client, topic, max_alerts=n, idle_exit_s=30)
    assert report.accepted == n

    truth = pq.read_table(truth_file).to_pylist()
    ctx = {
        r["diaObjectId"]: r
        for r in engine.query_lake(
            settings, "SELECT diaObjectId, classification, catalogue_object_id, separationArcsec FROM context"
        ).to_pylist()
    }
    with_object = [t for t in truth if t["diaObjectId"] is not None]
    assert set(ctx) == {t["diaObjectId"] for t in with_object}
    # Nuclear transients sit within 0.2" of an OpenNGC core: NT on that galaxy, every one.
    nuclear = [t for t in with_object if t["class"] == "NT" and t["host"] is not None]
    assert nuclear and all(
        (ctx[t["diaObjectId"]]["classification"], ctx[t["diaObjectId"]]["catalogue_object_id"]) == ("NT", t["host"])
        for t in nuclear
    )
    # Supernovae placed 0.2-1.5 galaxy sizes out: SN, and on their own host unless a galaxy nearer ranks first.
    supernovae = [t for t in with_object if t["class"].startswith("SN") and t["host"] is not None]
    assert supernovae and all(ctx[t["diaObjectId"]]["classification"] in ("SN", "NT") for t in supernovae)
    on_host = sum(ctx[t["diaObjectId"]]["catalogue_object_id"] == t["host"] for t in supernovae)
    assert on_host >= 0.9 * len(supernovae)
    # Transients without a host and far from any galaxy are not SN/NT; variables in empty sky are ORPHANs here.
    unhosted = [t for t in with_object if t["host"] is None and t["class"] in ("RRLyr", "Mira", "AGN", "CV")]
    assert all(ctx[t["diaObjectId"]]["classification"] not in ("SN", "NT") for t in unhosted if t in unhosted)

    # The streaming filter delivered exactly the triggering alerts of SN/NT objects, as the lake says.
    expected = engine.query_lake(
        settings,
        "SELECT s.diaSourceId FROM sources s JOIN context c USING (diaObjectId) "
        "WHERE NOT s.fromPacketHistory AND c.classification IN ('SN', 'NT')",
    )
    got = kafka.read_messages(settings, hosted.topic, expected.num_rows + 1, timeout_s=30)
    assert sorted(int(json.loads(m.value)["diaSourceId"]) for m in got) == sorted(expected["diaSourceId"].to_pylist())
    assert expected.num_rows > 0


HOSTED_SQL = (
    "SELECT s.diaObjectId, s.diaSourceId, c.classification, c.catalogue_object_id FROM sources s JOIN context c "
    "USING (diaObjectId) WHERE NOT s.fromPacketHistory AND c.classification IN ('SN', 'NT')"
)
