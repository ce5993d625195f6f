"""Synthetic catalogues: exact sizes, deterministic, realistic distributions, readable by hats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from distributed import Client

from nightjar.catalogs import layout
from nightjar.catalogs.rules import Kind
from nightjar.catalogs.synth import SynthChunk, synth_catalog, synth_chunks


def rows_of(home: Path, name: str) -> pa.Table:
    files = sorted((layout.primary_dir(layout.collection_dir(home, name)) / "dataset").rglob("Npix=*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def test_synthetic_galaxies_are_stored_whole_and_read_by_hats(tmp_path: Path, dask_client: Client) -> None:
    import hats

    info = synth_catalog(
        dask_client, tmp_path, "gals", 25_000, Kind.GALAXY, seed=3, chunk_rows=7_000, partition_rows=3000
    )
    assert info.rows == 25_000 and info.partitions >= 8
    assert hats.read_hats(layout.collection_dir(tmp_path, "gals")).main_catalog.catalog_info.total_rows == 25_000
    table = rows_of(tmp_path, "gals")
    assert len(set(table["object_id"].to_pylist())) == 25_000
    photo_z = table["photo_z"].to_numpy()
    assert 0.3 < photo_z.mean() < 0.45
    assert 0.015 < table["z"].is_valid().to_numpy().mean() < 0.025  # 2 % with a spectroscopic redshift
    semi = table["semi_major_arcsec"].to_numpy()
    assert (semi > 0).all() and 0.3 < np.median(semi) < 3.0
    mag = table["mag"].to_numpy()
    assert 18 < np.median(mag) < 23


def test_synthetic_stars_crowd_the_galactic_plane() -> None:
    table = SynthChunk(Kind.STAR, seed=4, index=0, rows=20_000)()
    coords = SkyCoord(table["ra"].to_numpy() * u.deg, table["dec"].to_numpy() * u.deg).galactic
    low = np.abs(coords.b.deg) < 20
    assert low.mean() > 0.7  # an isotropic sky would put 34 % there
    assert table["z"].null_count == 20_000 and table["photo_z"].null_count == 20_000
    mag = table["mag"].to_numpy()
    assert mag.min() >= 10 and mag.max() <= 24 and (mag > 20).mean() > 0.5  # faint stars dominate


def test_chunks_are_deterministic_and_cover_the_rows() -> None:
    chunks = synth_chunks(Kind.GALAXY, 10_500, seed=9, chunk_rows=4_000, rules=SynthChunk(Kind.GALAXY, 0, 0, 1).rules)
    assert [c.rows for c in chunks] == [4000, 4000, 2500]
    assert chunks[1]().equals(chunks[1]())
    assert not chunks[0]()["ra"].equals(chunks[1]()["ra"])
    with pytest.raises(ValueError, match="galaxy or star"):
        synth_chunks(Kind.AGN, 10, seed=1, chunk_rows=5, rules=chunks[0].rules)
    with pytest.raises(ValueError, match="at least 1"):
        synth_chunks(Kind.GALAXY, 0, seed=1, chunk_rows=5, rules=chunks[0].rules)
