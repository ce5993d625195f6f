"""Context classes for transients placed at known offsets from real catalogue sources (positions by astropy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.cosmology import FlatLambdaCDM
from distributed import Client

from nightjar.catalogs.build import BuildSpec
from nightjar.catalogs.catalog import CatalogSet, ColumnMap, load_catalog_set
from nightjar.catalogs.context import CONTEXT_SCHEMA, classify
from nightjar.catalogs.describe import ORPHAN_DESCRIPTION
from nightjar.catalogs.import_catalog import import_catalog
from nightjar.catalogs.rules import Kind

COSMO = FlatLambdaCDM(H0=70, Om0=0.3)  # Sherlock's cosmology, computed here directly


@pytest.fixture(scope="module")
def everything(data_dir: Path, catalog_sources: dict[str, Any]) -> SkyCoord:
    """Every row of every real catalogue, to pick isolated sources."""
    coords = []
    for source in catalog_sources.values():
        t = source.read(data_dir)
        ra = np.asarray(t[source.columns.ra].to_numpy(zero_copy_only=False), dtype=float)
        dec = np.asarray(t[source.columns.dec].to_numpy(zero_copy_only=False), dtype=float)
        ok = np.isfinite(ra) & np.isfinite(dec)
        coords.append(SkyCoord(ra[ok] * u.deg, dec[ok] * u.deg))
    return SkyCoord(
        np.concatenate([c.ra.deg for c in coords]) * u.deg, np.concatenate([c.dec.deg for c in coords]) * u.deg
    )


def isolated(coords: SkyCoord, everything: SkyCoord, radius_arcsec: np.ndarray) -> np.ndarray:
    """True where no other catalogue row (of any catalogue) lies within ``radius_arcsec`` (beyond 1″ of itself)."""
    idx, _, sep, _ = everything.search_around_sky(coords, float(np.max(radius_arcsec)) * u.arcsec)
    crowded = np.zeros(len(coords), bool)
    near = (sep.arcsec > 1.0) & (sep.arcsec < np.asarray(radius_arcsec)[idx])
    crowded[idx[near]] = True
    return ~crowded


def place(ra: np.ndarray, dec: np.ndarray, offset_arcsec: np.ndarray, seed: int) -> SkyCoord:
    """Positions ``offset_arcsec`` from (ra, dec) at random position angles."""
    rng = np.random.default_rng(seed)
    return SkyCoord(ra * u.deg, dec * u.deg).directional_offset_by(
        rng.uniform(0, 360, len(ra)) * u.deg, np.asarray(offset_arcsec) * u.arcsec
    )


def objects(coords: SkyCoord) -> pa.Table:
    return pa.table(
        {"diaObjectId": np.arange(len(coords), dtype=np.int64) + 10**17, "ra": coords.ra.deg, "dec": coords.dec.deg}
    )


@pytest.fixture(scope="module")
def galaxies(data_dir: Path, everything: SkyCoord) -> Any:
    """Isolated OpenNGC galaxies with a size and a redshift: nothing else within 3× their association radius."""
    t = pq.read_table(data_dir / "catalogs/openngc/openngc_objects.parquet").to_pandas()
    g = t[t.type.isin(["G"]) & (t.redshift > 0.003) & (t.majax > 0.3) & (t.majax < 4)].reset_index(drop=True)
    radius = 2.4 * g.majax.to_numpy() * 60 / 2
    ok = isolated(SkyCoord(g.ra_deg.to_numpy() * u.deg, g.dec_deg.to_numpy() * u.deg), everything, 3.5 * radius)
    chosen = g[ok].sample(40, random_state=1).reset_index(drop=True)
    assert len(chosen) == 40
    return chosen


def test_sn_beside_galaxies_at_known_offsets(real_catalogs: CatalogSet, galaxies: Any) -> None:
    radius = 2.4 * galaxies.majax.to_numpy() * 30  # 2.4 × semi-major axis, arcsec
    offset = np.maximum(0.6 * radius, 3.0)
    where = place(galaxies.ra_deg.to_numpy(), galaxies.dec_deg.to_numpy(), offset, seed=1)
    ctx = classify(objects(where), real_catalogs).context.to_pandas()
    assert list(ctx.classification) == ["SN"] * 40
    assert list(ctx.catalogue_object_id) == list(galaxies.name)
    assert set(ctx.catalogue_table_name) == {"openngc"}
    assert (ctx.classificationReliability == 2).all()
    np.testing.assert_allclose(ctx.separationArcsec, offset, atol=1e-3)
    centre = SkyCoord(galaxies.ra_deg.to_numpy() * u.deg, galaxies.dec_deg.to_numpy() * u.deg)
    d_east, d_north = centre.spherical_offsets_to(where)
    np.testing.assert_allclose(ctx.northSeparationArcsec, d_north.to_value(u.arcsec), atol=1e-3)
    np.testing.assert_allclose(ctx.eastSeparationArcsec, d_east.to_value(u.arcsec), atol=1e-3)
    z = galaxies.redshift.to_numpy()
    kpc_per_arcsec = COSMO.kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcmin) / 60
    np.testing.assert_allclose(ctx.physical_separation_kpc, offset * kpc_per_arcsec, rtol=1e-4)
    np.testing.assert_allclose(ctx.distance, COSMO.luminosity_distance(z).to_value(u.Mpc), rtol=1e-4)
    np.testing.assert_allclose(ctx.z, z, rtol=1e-6)
    np.testing.assert_allclose(ctx.major_axis_arcsec, galaxies.majax.to_numpy() * 30, rtol=1e-6)
    assert set(ctx.distance_source) == {"spec-z"}
    assert all(ctx.summary == "Possible SN near " + galaxies.name)
    first = ctx.description[0]
    assert first.startswith(f"The transient is possibly associated with {galaxies.name[0]}, a galaxy (G)")
    assert "kpc projected" in first and "Mpc (z " in first


def test_nt_at_galaxy_cores(real_catalogs: CatalogSet, galaxies: Any) -> None:
    where = place(galaxies.ra_deg.to_numpy(), galaxies.dec_deg.to_numpy(), np.full(40, 0.7), seed=2)
    ctx = classify(objects(where), real_catalogs).context.to_pandas()
    assert list(ctx.classification) == ["NT"] * 40
    assert (ctx.classificationReliability == 1).all()
    assert list(ctx.catalogue_object_id) == list(galaxies.name)
    assert ctx.description[0].startswith(f"The transient is synonymous with {galaxies.name[0]}")


def test_beyond_the_galaxy_radius_is_orphan(real_catalogs: CatalogSet, galaxies: Any) -> None:
    radius = 2.4 * galaxies.majax.to_numpy() * 30
    where = place(galaxies.ra_deg.to_numpy(), galaxies.dec_deg.to_numpy(), 1.3 * radius, seed=3)
    ctx = classify(objects(where), real_catalogs).context.to_pandas()
    assert list(ctx.classification) == ["ORPHAN"] * 40
    assert (ctx.n_matches == 0).all()
    assert set(ctx.description) == {ORPHAN_DESCRIPTION}


def test_fifty_kpc_rule_for_galaxies_without_a_size(
    tmp_path: Path, dask_client: Client, data_dir: Path, galaxies: Any
) -> None:
    """The same real galaxies imported without sizes: association within 50 kpc projected at their redshift."""
    spec = BuildSpec(
        "ngc-z",
        Kind.GALAXY,
        ColumnMap(ra="ra_deg", dec="dec_deg", id="name", z="redshift", type="type", keep_types=["G"]),
    )
    import_catalog(dask_client, tmp_path, spec, [data_dir / "catalogs/openngc/openngc_objects.parquet"])
    catalogs = load_catalog_set(tmp_path)
    z = galaxies.redshift.to_numpy()
    kpc_per_arcsec = COSMO.kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcmin) / 60
    # Keep galaxies no other OpenNGC galaxy could claim: a neighbour whose own 50 kpc (at its own redshift)
    # reaches the placed transient would rightly compete (Sherlock ranks by projected kpc).
    ngc = pq.read_table(data_dir / "catalogs/openngc/openngc_objects.parquet").to_pandas()
    ngc = ngc[ngc.type == "G"].reset_index(drop=True)
    z_other = ngc.redshift.to_numpy()
    reach_other = np.full(len(ngc), 10.0)
    positive = np.nan_to_num(z_other) > 0
    reach_other[positive] = 60.0 / (COSMO.kpc_proper_per_arcmin(z_other[positive]).to_value(u.kpc / u.arcmin) / 60)
    centres = SkyCoord(galaxies.ra_deg.to_numpy() * u.deg, galaxies.dec_deg.to_numpy() * u.deg)
    others = SkyCoord(ngc.ra_deg.to_numpy() * u.deg, ngc.dec_deg.to_numpy() * u.deg)
    limit = float(reach_other.max() + (60 / kpc_per_arcsec).max())
    idx, other, sep, _ = others.search_around_sky(centres, limit * u.arcsec)
    competing = (sep.arcsec > 1) & (sep.arcsec < reach_other[other] + 60 / kpc_per_arcsec[idx])
    crowded = np.zeros(len(galaxies), bool)
    crowded[idx[competing]] = True
    alone = galaxies[~crowded].reset_index(drop=True)
    scale = kpc_per_arcsec[~crowded]
    assert len(alone) >= 12
    near = place(alone.ra_deg.to_numpy(), alone.dec_deg.to_numpy(), 45.0 / scale, seed=4)
    far = place(alone.ra_deg.to_numpy(), alone.dec_deg.to_numpy(), 55.0 / scale, seed=5)
    ctx_near = classify(objects(near), catalogs).context.to_pandas()
    ctx_far = classify(objects(far), catalogs).context.to_pandas()
    assert (ctx_near.classification == "SN").all()
    assert list(ctx_near.catalogue_object_id) == list(alone.name)
    np.testing.assert_allclose(ctx_near.physical_separation_kpc, 45.0, rtol=1e-4)
    np.testing.assert_allclose(ctx_near.association_radius_arcsec, 50.0 / scale, rtol=1e-4)
    assert (ctx_far.classification == "ORPHAN").all()


def sources_table(data_dir: Path, path: str) -> Any:
    return pq.read_table(data_dir / "catalogs" / path).to_pandas()


def test_vs_on_gcvs_variables(real_catalogs: CatalogSet, data_dir: Path, everything: SkyCoord) -> None:
    g = sources_table(data_dir, "gcvs/gcvs.parquet")
    g["type"] = g.VarType.str.strip()
    g = g[g.type.isin(["M", "RRAB", "EA", "SR", "EW", "LB"])].reset_index(drop=True)
    coords = SkyCoord(g.ra.to_numpy() * u.deg, g.dec.to_numpy() * u.deg)
    g = g[isolated(coords, everything, np.full(len(g), 30.0))].sample(50, random_state=2).reset_index(drop=True)
    where = place(g.ra.to_numpy(), g.dec.to_numpy(), np.full(50, 0.8), seed=6)
    ctx = classify(objects(where), real_catalogs).context.to_pandas()
    assert list(ctx.classification) == ["VS"] * 50
    assert set(ctx.catalogue_table_name) == {"gcvs"}
    assert list(ctx.catalogue_object_type) == list(g.type)
    np.testing.assert_allclose(ctx.separationArcsec, 0.8, atol=1e-3)


def test_cv_on_gcvs_cataclysmic_variables(real_catalogs: CatalogSet, data_dir: Path, everything: SkyCoord) -> None:
    g = sources_table(data_dir, "gcvs/gcvs.parquet")
    g = g[g.VarType.str.strip().isin(["UG", "UGSU", "NL", "NA"])].reset_index(drop=True)
    coords = SkyCoord(g.ra.to_numpy() * u.deg, g.dec.to_numpy() * u.deg)
    g = g[isolated(coords, everything, np.full(len(g), 30.0))].sample(30, random_state=3).reset_index(drop=True)
    # On the star: a synonym in both GCVS (VS) and the CV subset (CV); Sherlock's merge prefers CV.
    on = classify(objects(place(g.ra.to_numpy(), g.dec.to_numpy(), np.full(30, 0.5), 7)), real_catalogs).context
    assert on["classification"].to_pylist() == ["CV"] * 30
    # 2″ away: only the CV association radius (2.5″) reaches.
    near = classify(objects(place(g.ra.to_numpy(), g.dec.to_numpy(), np.full(30, 2.0), 8)), real_catalogs).context
    assert near["classification"].to_pylist() == ["CV"] * 30
    assert near["classificationReliability"].to_pylist() == [2] * 30
    far = classify(objects(place(g.ra.to_numpy(), g.dec.to_numpy(), np.full(30, 3.0), 9)), real_catalogs).context
    assert far["classification"].to_pylist() == ["ORPHAN"] * 30


def test_bs_near_bright_hipparcos_stars(real_catalogs: CatalogSet, data_dir: Path, everything: SkyCoord) -> None:
    h = sources_table(data_dir, "hipparcos-bright/hipparcos_bright.parquet")
    h = h[(h.Vmag < 6.0) & h.ra_deg.notna() & h.dec_deg.notna()].reset_index(drop=True)
    coords = SkyCoord(h.ra_deg.to_numpy() * u.deg, h.dec_deg.to_numpy() * u.deg)
    h = h[isolated(coords, everything, np.full(len(h), 60.0))].sample(30, random_state=4).reset_index(drop=True)
    ra, dec = h.ra_deg.to_numpy(), h.dec_deg.to_numpy()
    near = classify(objects(place(ra, dec, np.full(30, 12.0), 10)), real_catalogs).context.to_pandas()
    assert list(near.classification) == ["BS"] * 30
    assert list(near.catalogue_object_id) == [str(x) for x in h.HIP]
    np.testing.assert_allclose(near.Mag, h.Vmag, rtol=1e-6)
    assert set(near.MagFilter) == {"V"}
    assert set(near.association_radius_arcsec) == {20.0}  # min(10**(3.7 − 0.2 V), 20″) for V < 8.5
    on = classify(objects(place(ra, dec, np.full(30, 0.5), 11)), real_catalogs).context
    assert on["classification"].to_pylist() == ["VS"] * 30  # a synonym of a star: the star itself varied
    far = classify(objects(place(ra, dec, np.full(30, 25.0), 12)), real_catalogs).context
    assert far["classification"].to_pylist() == ["ORPHAN"] * 30


def test_bright_star_radius_shrinks_with_magnitude(tmp_path: Path, dask_client: Client) -> None:
    """Sherlock's radius min(10**(3.7 − 0.2 m), 20″): 7.9″ at m = 14, 3.2″ at m = 16, none beyond the limit."""
    mags = np.array([10.0, 12.5, 14.0, 16.0, 17.0])
    ra = 30.0 + np.arange(mags.size)  # one star per degree: no two within reach of one transient
    (tmp_path / "stars.csv").write_text(
        "id,ra,dec,V\n" + "".join(f"S{i},{r},-5.0,{m}\n" for i, (r, m) in enumerate(zip(ra, mags, strict=True)))
    )
    spec = BuildSpec("stars", Kind.BRIGHT_STAR, ColumnMap(ra="ra", dec="dec", id="id", mag="V"))
    import_catalog(dask_client, tmp_path, spec, [tmp_path / "stars.csv"])
    catalogs = load_catalog_set(tmp_path)
    radius = np.minimum(10 ** (3.7 - 0.2 * mags), 20.0)
    assert radius[2] == pytest.approx(7.94, abs=0.01)
    dec = np.full(mags.size, -5.0)
    inside = classify(objects(place(ra, dec, 0.9 * radius, 17)), catalogs).context.to_pandas()
    outside = classify(objects(place(ra, dec, 1.1 * radius, 18)), catalogs).context.to_pandas()
    assert list(inside.classification) == ["BS", "BS", "BS", "BS", "ORPHAN"]  # m = 17 is fainter than 16
    np.testing.assert_allclose(inside.association_radius_arcsec[:4], radius[:4], rtol=1e-6)
    assert list(outside.classification) == ["ORPHAN"] * 5


def test_agn_on_blazars(real_catalogs: CatalogSet, data_dir: Path, everything: SkyCoord) -> None:
    b = sources_table(data_dir, "3hsp/3hsp.parquet")
    coords = SkyCoord(b.ra_deg.to_numpy() * u.deg, b.dec_deg.to_numpy() * u.deg)
    b = b[isolated(coords, everything, np.full(len(b), 30.0))].sample(30, random_state=5).reset_index(drop=True)
    ra, dec = b.ra_deg.to_numpy(), b.dec_deg.to_numpy()
    result = classify(objects(place(ra, dec, np.full(30, 0.6), 13)), real_catalogs)
    on = result.context.to_pandas()
    assert list(on.classification) == ["AGN"] * 30
    assert (on.classificationReliability == 1).all()
    # Many 3HSP blazars are also 4LAC sources (same counterpart); either may rank first, both are listed.
    hsp = result.matches.to_pandas().query("catalogue_table_name == '3hsp'")
    assert list(hsp.sort_values("diaObjectId").catalogue_object_id) == list(b["3HSP Source name"].str.strip())
    assert set(on.catalogue_table_name) <= {"3hsp", "4lac"}
    near = classify(objects(place(ra, dec, np.full(30, 2.5), 14)), real_catalogs).context
    assert near["classification"].to_pylist() == ["AGN"] * 30
    assert near["classificationReliability"].to_pylist() == [2] * 30
    far = classify(objects(place(ra, dec, np.full(30, 5.0), 15)), real_catalogs).context  # 4LAC twins: <1″ off
    assert far["classification"].to_pylist() == ["ORPHAN"] * 30


def test_orphans_in_empty_sky(real_catalogs: CatalogSet, everything: SkyCoord) -> None:
    rng = np.random.default_rng(16)
    ra = rng.uniform(0, 360, 3000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    coords = SkyCoord(ra * u.deg, dec * u.deg)
    empty = isolated(coords, everything, np.full(3000, 1900.0))  # nothing within the widest galaxy radius
    assert empty.sum() > 50
    ctx = classify(objects(coords[empty]), real_catalogs).context
    assert set(ctx["classification"].to_pylist()) == {"ORPHAN"}
    assert set(ctx["summary"].to_pylist()) == {"No catalogued match"}
    assert ctx.schema == CONTEXT_SCHEMA


def test_one_row_per_object_and_bad_input(real_catalogs: CatalogSet) -> None:
    batch = pa.table({"diaObjectId": [5, 5, 7], "ra": [10.0, 10.5, 20.0], "dec": [-5.0, -5.5, 30.0]})
    ctx = classify(batch, real_catalogs).context
    assert ctx["diaObjectId"].to_pylist() == [5, 7]
    assert ctx["catalogs_version"].to_pylist() == [real_catalogs.version] * 2
    with pytest.raises(ValueError, match="missing dec"):
        classify(pa.table({"diaObjectId": [1], "ra": [1.0]}), real_catalogs)
    assert classify(batch.slice(0, 0), real_catalogs).context.num_rows == 0


def test_context_is_recomputed_for_new_objects_and_new_catalogues(real_catalogs: CatalogSet) -> None:
    from nightjar.catalogs.context import needs_context
    from nightjar.catalogs.rules import ContextRules

    batch = pa.table({"diaObjectId": [1, 2, 3], "ra": [10.0, 20.0, 30.0], "dec": [1.0, 2.0, 3.0]})
    stored = classify(batch.slice(0, 2), real_catalogs).context
    assert needs_context(batch, stored, real_catalogs.version)["diaObjectId"].to_pylist() == [3]
    assert needs_context(batch, None, real_catalogs.version).num_rows == 3
    changed = CatalogSet(real_catalogs.catalogs, ContextRules(agn_radius_arcsec=4.0))
    assert changed.version != real_catalogs.version
    assert needs_context(batch, stored, changed.version).num_rows == 3
