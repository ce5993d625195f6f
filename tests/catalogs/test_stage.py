"""The context stage on real ZTF alerts, on the Dask cluster with worker caches, and joined in SQL."""

from __future__ import annotations

from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from distributed import Client

from nightjar.catalogs.cache import cache_stats, clear_cache
from nightjar.catalogs.catalog import CatalogSet
from nightjar.catalogs.context import classify
from nightjar.catalogs.dispatch import submit_context
from nightjar.sql import sandbox


@pytest.fixture(scope="module")
def ztf_objects(data_dir: Path) -> tuple[pa.Table, list[str]]:
    """One row per real ZTF object (its latest alert's candidate position); ids numbered, names kept aside."""
    names, ra, dec = [], [], []
    for path in sorted((data_dir / "alerts" / "ztf").rglob("*.avro")):
        if "corrupt" in path.parts:
            continue
        with path.open("rb") as fh:
            for record in fastavro.reader(fh):
                names.append(record["objectId"])
                ra.append(record["candidate"]["ra"])
                dec.append(record["candidate"]["dec"])
    unique = {n: i for i, n in enumerate(names)}  # the last alert of each object
    order = sorted(unique.values())
    table = pa.table(
        {
            "diaObjectId": np.arange(len(order), dtype=np.int64),
            "ra": np.asarray(ra)[order],
            "dec": np.asarray(dec)[order],
        }
    )
    return table, [names[i] for i in order]


def within(table: pa.Table, ra: np.ndarray, dec: np.ndarray, arcsec: float) -> set[int]:
    """Objects within ``arcsec`` of any of the positions (astropy)."""
    alerts = SkyCoord(table["ra"].to_numpy() * u.deg, table["dec"].to_numpy() * u.deg)
    idx, _, _, _ = SkyCoord(ra * u.deg, dec * u.deg).search_around_sky(alerts, arcsec * u.arcsec)
    return {int(i) for i in idx}


def test_real_ztf_alerts_find_their_gcvs_and_3hsp_counterparts(
    ztf_objects: tuple[pa.Table, list[str]], real_catalogs: CatalogSet, data_dir: Path
) -> None:
    table, names = ztf_objects
    gcvs = pq.read_table(data_dir / "catalogs/gcvs/gcvs.parquet")
    hsp = pq.read_table(data_dir / "catalogs/3hsp/3hsp.parquet")
    near_gcvs = within(table, gcvs["ra"].to_numpy(), gcvs["dec"].to_numpy(), 2.0)
    near_hsp = within(table, hsp["ra_deg"].to_numpy(), hsp["dec_deg"].to_numpy(), 2.0)
    assert len(table) == 142 and len(near_gcvs) == 6 and len(near_hsp) == 1  # as PROVENANCE.md says

    result = classify(table, real_catalogs)
    ctx = result.context.to_pandas().set_index("diaObjectId")
    variables = set(ctx.index[(ctx.classification == "VS") & (ctx.catalogue_table_name == "gcvs")])
    assert variables == near_gcvs
    blazar = next(iter(near_hsp))
    assert ctx.loc[blazar, "classification"] == "AGN"
    matches = result.matches.to_pandas()
    hsp_names = set(
        matches[(matches.diaObjectId == blazar) & (matches.catalogue_table_name == "3hsp")].catalogue_object_id
    )
    assert hsp_names == {"3HSPJ174357.8+193509"}
    assert names[blazar] == "ZTF18aaqzpsv"
    assert {names[i] for i in near_gcvs} >= {"ZTF18aazvbob", "ZTF17aaajnnn"}
    assert (ctx.loc[sorted(near_gcvs), "separationArcsec"] < 0.6).all()


def test_stage_on_the_cluster_matches_in_process_and_warms_worker_caches(
    dask_client: Client, ztf_objects: tuple[pa.Table, list[str]], real_catalogs: CatalogSet
) -> None:
    table, _ = ztf_objects
    rng = np.random.default_rng(2)
    # The ZTF objects plus transients scattered over the sky, so that both workers get work.
    ra = np.r_[table["ra"].to_numpy(), rng.uniform(0, 360, 2000)]
    dec = np.r_[table["dec"].to_numpy(), np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))]
    batch = pa.table({"diaObjectId": np.arange(ra.size, dtype=np.int64), "ra": ra, "dec": dec})
    dask_client.run(clear_cache)
    expected = classify(batch, real_catalogs).context.sort_by("diaObjectId")
    first = submit_context(dask_client, batch, real_catalogs).result().context.sort_by("diaObjectId")
    cold = dask_client.run(cache_stats)
    second = submit_context(dask_client, batch, real_catalogs).result().context.sort_by("diaObjectId")
    warm = dask_client.run(cache_stats)
    assert first.equals(expected) and second.equals(expected)
    assert all(s.misses > 0 for s in cold.values()), "both workers took part"
    assert {w: s.misses for w, s in warm.items()} == {w: s.misses for w, s in cold.items()}
    assert all(warm[w].hits > cold[w].hits for w in warm)


def test_sql_filters_can_join_context(
    ztf_objects: tuple[pa.Table, list[str]], real_catalogs: CatalogSet, tmp_path: Path
) -> None:
    table, _ = ztf_objects
    context = classify(table, real_catalogs).context
    limits = sandbox.Limits(
        memory="256MB", threads=1, timeout_s=10, max_rows=1000, temp_dir=tmp_path, temp_dir_limit="100MB"
    )
    con = sandbox.connect({"objects": table, "context": context}, limits)
    try:
        out = sandbox.run(
            con,
            "SELECT o.diaObjectId, c.catalogue_object_type FROM objects o JOIN context c USING (diaObjectId) "
            "WHERE c.classification = 'VS' AND c.catalogue_table_name = 'gcvs' ORDER BY o.diaObjectId",
            limits,
        )
    finally:
        con.close()
    assert out.num_rows == 6
    assert sorted(t.strip() for t in out["catalogue_object_type"].to_pylist()) == sorted(
        ["EA", "M", "RRAB", "EW", "RRAB", "M"]
    )
