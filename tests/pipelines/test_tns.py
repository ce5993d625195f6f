"""The Transient Name Server: a TNS CSV (as the TNS publishes it, built from the real sample's columns) imported
over a real lake gives ``crossmatch_tns`` exactly the objects astropy puts within 1.5″ of an entry; a refresh that
renames and reclassifies entries replaces it atomically and re-triggers a filter reading ``crossmatch_tns`` on the
real broker, for the changed matches only; the object API and Lasair's ``lasairData.TNS`` show the match; a file
with a missing column is refused with nothing written."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from distributed import Client
from fastapi.testclient import TestClient

from nightjar import paths
from nightjar.api.app import create_app
from nightjar.catalogs.tns import TnsFileError, read_tns, write_csv
from nightjar.cli import main
from nightjar.lake import tns as tns_tables
from nightjar.pipelines.run import run
from nightjar.pipelines.tns_refresh import import_tns
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.streams import kafka

SAMPLE = Path("catalogs") / "tns-sample" / "tns_raw.parquet"
SN_IA = (
    "SELECT o.diaObjectId, t.tns_name, t.type FROM objects o JOIN crossmatch_tns t USING (diaObjectId) "
    "WHERE t.type = 'SN Ia'"
)


def _entries(data_dir: Path, objects: pa.Table, offsets: list[float], types: list[str | None]) -> pa.Table:
    """TNS rows in the sample's exact columns: the three real entries, then one per object, ``offsets`` arcsec
    north of it, named 2026aaa, 2026aab… with the given types."""
    sample = pq.read_table(data_dir / SAMPLE).drop_columns(["__index_level_0__", "fullname", "internalname"])
    template = sample.slice(1, 1).to_pylist()[0]  # a classified SN of the sample
    rows = sample.to_pylist()
    for k, (offset, kind) in enumerate(zip(offsets, types, strict=True)):
        ra, dec = objects["ra"][k].as_py(), objects["dec"][k].as_py() + offset / 3600
        name = "2026a" + chr(ord("a") + k // 26) + chr(ord("a") + k % 26)
        prefix = "SN" if kind else "AT"
        rows.append({**template, "objid": 300_000 + k, "name": name, "name_prefix": prefix, "ra": ra})
        rows[-1].update({"declination": dec, "type": kind, "typeid": 3.0 if kind else None})
    return pa.Table.from_pylist(rows, schema=sample.schema)


def _expected(objects: pa.Table, entries: pa.Table, radius: float = 1.5) -> dict[int, tuple[str, Any, float]]:
    at = SkyCoord(objects["ra"].to_numpy() * u.deg, objects["dec"].to_numpy() * u.deg)
    tns = SkyCoord(entries["ra"].to_numpy() * u.deg, entries["declination"].to_numpy() * u.deg)
    idx, sep, _ = at.match_to_catalog_sky(tns)
    out = {}
    for i, (j, s) in enumerate(zip(idx, sep.to_value(u.arcsec), strict=True)):
        if s <= radius:
            row = entries.slice(int(j), 1).to_pylist()[0]
            out[objects["diaObjectId"][i].as_py()] = (f"{row['name_prefix']} {row['name']}", row["type"], s)
    return out


def _stored(settings: Settings) -> dict[int, tuple[str, Any, float]]:
    rows = query_lake(settings, "SELECT diaObjectId, tns_name, type, separationArcsec FROM crossmatch_tns")
    return {r["diaObjectId"]: (r["tns_name"], r["type"], r["separationArcsec"]) for r in rows.to_pylist()}


def _same(got: dict[int, tuple[str, Any, float]], want: dict[int, tuple[str, Any, float]]) -> None:
    assert sorted(got) == sorted(want)
    for k, (name, kind, sep) in want.items():
        assert got[k][:2] == (name, kind) and got[k][2] == pytest.approx(sep, abs=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tns_import_refresh_and_filter(
    kafka_settings: Settings, dask_client: Client, data_dir: Path, tmp_path: Path, lake_builder: Any
) -> None:
    settings = kafka_settings
    lake_builder(settings.home, alerts=200, batches=2)
    objects = query_lake(settings, "SELECT diaObjectId, ra, dec FROM objects ORDER BY diaObjectId LIMIT 8")
    db = registry.engine(settings.metadata_url)
    flt = registry.add_filter(db, "TNS Ia", SN_IA)

    # Import 1: six entries within 1.5″ (0.2″ to 1.4″), one at 1.6″ (outside), one on no object.
    offsets = [0.2, 0.5, 0.8, 1.0, 1.2, 1.4, 1.6]
    types: list[str | None] = ["SN Ia", "SN II", None, "SN Ia", None, "TDE", "SN Ia"]
    first = _entries(data_dir, objects, offsets, types)
    csv1 = tmp_path / "tns_public_objects.csv"
    write_csv(first, csv1, "2026-02-10 00:00:00")
    assert csv1.read_text().splitlines()[0] == '"2026-02-10 00:00:00"'
    result = import_tns(settings, csv1)
    assert result.exported == "2026-02-10 00:00:00" and result.entries == first.num_rows and result.announced
    want1 = _expected(objects, first)
    assert len(want1) == 6
    _same(_stored(settings), want1)
    assert result.changed.num_rows == 6  # every match is new

    topic = f"tns-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [topic])
    report = run(settings, dask_client, topic, idle_exit_s=8)
    assert report.annotations == 6 and report.matches["TNS Ia"] == 2
    got = kafka.read_messages(settings, flt.topic, 3, timeout_s=20)
    ids = [str(objects["diaObjectId"][k].as_py()) for k in range(8)]
    assert sorted(json.loads(m.value)["diaObjectId"] for m in got) == sorted([ids[0], ids[3]])

    # Refresh (a Parquet export this time): object 2 classified SN Ia, object 1 renamed, object 5 gone,
    # the others unchanged. Only 2 and 1 are new or changed; only 2 becomes an SN Ia.
    second = first.to_pylist()
    second[3 + 2].update({"type": "SN Ia", "name_prefix": "SN", "typeid": 3.0})
    second[3 + 1].update({"name": "2026zzz"})
    del second[3 + 5]
    refreshed = pa.Table.from_pylist(second, schema=first.schema)
    pq.write_table(refreshed, tmp_path / "tns.parquet")
    before = tns_tables.read_table(settings.home, paths.TNS)
    assert before is not None and before.num_rows == first.num_rows
    result = import_tns(settings, tmp_path / "tns.parquet")
    want2 = _expected(objects, refreshed)
    _same(_stored(settings), want2)
    assert sorted(result.changed["diaObjectId"].to_pylist()) == sorted([int(ids[1]), int(ids[2])])
    after = tns_tables.read_table(settings.home, paths.TNS)
    assert after is not None and after.num_rows == first.num_rows - 1

    report = run(settings, dask_client, topic, idle_exit_s=8)
    assert report.annotations == 2 and report.matches["TNS Ia"] == 1
    got = kafka.read_messages(settings, flt.topic, 4, timeout_s=20)
    assert sorted(json.loads(m.value)["diaObjectId"] for m in got) == sorted([ids[0], ids[3], ids[2]])

    # The object API and Lasair's object show the match.
    with TestClient(create_app(settings)) as api:
        body = api.get(f"/api/v1/objects/{ids[2]}").json()
        assert body["tns"]["tns_name"] == "SN 2026aac" and body["tns"]["type"] == "SN Ia"
        lasair = api.get("/lasair/api/object/", params={"objectId": ids[2], "lasair_added": "true"}).json()
        tns = lasair["lasairData"]["TNS"]
        assert (tns["tns_prefix"], tns["tns_name"], tns["type"]) == ("SN", "2026aac", "SN Ia")
        assert api.get(f"/api/v1/objects/{ids[6]}").json()["tns"] is None
        lasair_rows = api.post(
            "/lasair/api/query/",
            data={
                "selected": "objects.diaObjectId, crossmatch_tns.tns_name",
                "tables": "objects, crossmatch_tns",
                "conditions": "crossmatch_tns.type = 'SN Ia'",
            },
        )
        assert lasair_rows.status_code == 200, lasair_rows.text
        assert sorted(r["diaObjectId"] for r in lasair_rows.json()) == sorted([ids[0], ids[2], ids[3]])
        page = api.get(f"/objects/{ids[2]}")
        assert page.status_code == 200 and "SN 2026aac</a>, <strong>SN Ia</strong>" in page.text
    db.dispose()


def test_missing_column_is_refused_with_nothing_written(
    settings: Settings, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lake_builder: Any
) -> None:
    lake_builder(settings.home, alerts=40, batches=1)
    sample = pq.read_table(data_dir / SAMPLE)
    broken = sample.drop_columns(["declination"])
    write_csv(broken, tmp_path / "broken.csv", "2026-02-10 00:00:00")
    with pytest.raises(TnsFileError, match="missing column"):
        read_tns(tmp_path / "broken.csv")
    monkeypatch.setenv("NIGHTJAR_HOME", str(settings.home))
    assert main(["tns", "import", str(tmp_path / "broken.csv")]) == 2
    assert tns_tables.read_table(settings.home, paths.TNS) is None
    assert tns_tables.read_table(settings.home, paths.CROSSMATCH_TNS) is None
    # The real sample (Parquet) imports: three entries, none near the simulated objects.
    assert main(["tns", "import", str(data_dir / SAMPLE), "--no-notify"]) == 0
    stored = tns_tables.read_table(settings.home, paths.TNS)
    assert stored is not None
    assert sorted(stored["tns_name"].to_pylist()) == ["AT 2026cqa", "SN 2018lzf", "SN 2022and"]
    assert pc.sum(pc.is_null(stored["discoverydate"])).as_py() == 0
    assert np.isclose(stored.sort_by("objid")["dec"][0].as_py(), -9.6884991)


def test_crossmatch_keeps_the_nearest_entry_within_the_radius(data_dir: Path) -> None:
    from nightjar.catalogs.tns import normalise
    from nightjar.pipelines.tns_refresh import crossmatch

    objects = pa.table(
        {
            "diaObjectId": pa.array([1, 2, 3, 4], pa.int64()),
            "ra": pa.array([10.0, 200.0, 359.99999, None]),
            "dec": pa.array([-20.0, 45.0, 0.0, 1.0]),
        }
    )
    sample = pq.read_table(data_dir / SAMPLE)
    rows = sample.slice(0, 1).to_pylist()[0]
    entries = []
    # Object 1: entries 1.0″ and 0.5″ away (the nearer wins); object 2: one at 1.6″ (outside 1.5″);
    # object 3: one across RA = 0 at 0.7″.
    for k, (ra, dec) in enumerate([(10.0, -20.0 + 1.0 / 3600), (10.0, -20.0 - 0.5 / 3600), (200.0, 45.0 + 1.6 / 3600)]):
        entries.append({**rows, "objid": k, "name": f"2026x{k}", "ra": ra, "declination": dec})
    entries.append({**rows, "objid": 9, "name": "2026x9", "ra": 0.7 / 3600, "declination": 0.0})
    tns = normalise(pa.Table.from_pylist(entries, schema=sample.schema), "test")
    found = crossmatch(objects, tns, 1.5).sort_by("diaObjectId")
    assert found["diaObjectId"].to_pylist() == [1, 3]
    assert found["tns_objid"].to_pylist() == [1, 9]
    assert np.allclose(found["separationArcsec"].to_numpy(), [0.5, 0.7 + 0.00001 * 3600], atol=1e-6)
