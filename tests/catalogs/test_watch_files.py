"""Reading watchlist cones: Lasair's CSV layout (comma or |, header optional, sexagesimal), Parquet and imported
catalogues; malformed files give an error naming each bad line, and the commands create nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from nightjar import paths
from nightjar.catalogs.watch_files import WatchFileError, read_cones, read_csv_text
from nightjar.cli import main
from nightjar.settings import Settings
from nightjar.sql import registry, watch_registry


def test_lasair_layouts_read_alike() -> None:
    layouts = [
        "10.5,-40.25,a\n187.5,-5.1019444444,b,3\n",
        "ra, dec, name, radius\n10.5, -40.25, a\n187.5, -5.1019444444, b, 3\n",
        "# my stars\n\n10.5|-40.25|a|\n12:30:00|-05:06:07|b|3\n",
        "| ra | dec | id | r |\n| 10.5 | -40.25 | a | |\n| 12 30 00.0 | -05 06 07 | b | 3 |\n",
        "RA,Dec,ID\n00:42:00,-40:15:00,a\n12h30m00s,-5d06m07s,b,3\n",
    ]
    for text in layouts:
        cones = read_csv_text(text)
        assert cones["name"].to_pylist() == ["a", "b"], text
        assert cones["coneId"].to_pylist() == [1, 2]
        assert cones["ra"].to_pylist() == pytest.approx([10.5, 187.5]), text
        assert cones["dec"].to_pylist() == pytest.approx([-40.25, -5.1019444444]), text
        assert cones["radius"].to_pylist() == [None, 3.0], text


def test_plain_files_read_fast_as_line_by_line(tmp_path: Path) -> None:
    from nightjar.catalogs.watch_files import _fast_csv, read_lines

    rng = np.random.default_rng(2)
    lines = [f"{rng.uniform(0, 360):.7f},{rng.uniform(-90, 90):.7f},c{i},{'' if i % 3 else 2.5}" for i in range(5000)]
    for text in ("RA,Dec,ID,radius\n" + "\n".join(lines) + "\n", "\n".join(lines), "\r\n".join(lines) + "\r\n"):
        fast = _fast_csv(text.encode())
        assert fast is not None and fast.equals(read_lines(text)) and fast.num_rows == 5000
    # Anything else goes line by line: a first cone in sexagesimal is a cone, not a header.
    assert _fast_csv(b"12:30:00,-05:06:07,a\n10,20,b\n") is None
    assert read_csv_text("12:30:00,-05:06:07,a\n10,20,b\n")["name"].to_pylist() == ["a", "b"]
    assert _fast_csv(b"10,20,a\n10,95,b\n") is None  # a bad line: named by the line-by-line reader
    path = tmp_path / "plain.csv"
    path.write_text("\n".join(lines) + "\n")
    assert read_cones(path).equals(read_lines("\n".join(lines)))


def test_bad_lines_are_named_with_their_problem() -> None:
    text = (
        "ra,dec,id,radius\n"  # 1: header
        "10,20,fine\n"  # 2
        "-1,20,west\n"  # 3
        "10,91,north\n"  # 4
        "10,20\n"  # 5
        "10,20,wide,1801\n"  # 6
        "ten,20,words\n"  # 7
        "10,20,,\n"  # 8
        "10,20,zero,0\n"  # 9
        "1,2,3,4,5\n"  # 10
    )
    with pytest.raises(WatchFileError) as raised:
        read_csv_text(text, "stars.csv")
    assert str(raised.value) == (
        "stars.csv: 8 bad line(s), nothing was created:\n"
        "line 3: RA -1 is outside 0..360 degrees\n"
        "line 4: Dec 91 is outside -90..90 degrees\n"
        "line 5: expected 3 or 4 fields (RA, Dec, ID[, radius]), found 2\n"
        "line 6: radius 1801 arcsec is outside (0, 1800]\n"
        "line 7: RA 'ten' is not a number of degrees or a sexagesimal angle\n"
        "line 8: the cone has no ID (the third field)\n"
        "line 9: radius 0 arcsec is outside (0, 1800]\n"
        "line 10: expected 3 or 4 fields (RA, Dec, ID[, radius]), found 5"
    )
    with pytest.raises(WatchFileError, match="no cones"):
        read_csv_text("# nothing\n\n")


def test_parquet_rows_and_catalogues(tmp_path: Path, data_dir: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"RA": [1.0, 2.0], "Dec": [3.0, 4.0], "objectId": ["x", "y"], "radius": [None, 9.0]}), good)
    cones = read_cones(good)
    assert cones["name"].to_pylist() == ["x", "y"] and cones["radius"].to_pylist() == [None, 9.0]
    gcvs = read_cones(data_dir / "catalogs" / "gcvs" / "gcvs.parquet")  # no ID column: named by row
    assert gcvs.num_rows == 59_099 and gcvs["name"][0].as_py() == "1"
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"ra": [1.0, 400.0, None], "dec": [3.0, 4.0, 5.0]}), bad)
    with pytest.raises(WatchFileError) as raised:
        read_cones(bad)
    assert str(raised.value).splitlines()[1:] == [
        "row 2: RA 400 is outside 0..360 degrees",
        "row 3: RA is missing",
    ]
    with pytest.raises(WatchFileError, match="no column for dec"):
        pq.write_table(pa.table({"ra": [1.0]}), tmp_path / "nodec.parquet")
        read_cones(tmp_path / "nodec.parquet")
    with pytest.raises(WatchFileError, match="no catalogue 'absent'"):
        read_cones("catalog:absent", tmp_path)


def test_malformed_files_create_nothing_from_the_command_line(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIGHTJAR_HOME", str(settings.home))
    bad = tmp_path / "bad.csv"
    bad.write_text("10,20,a\n10,200,b\n")
    assert main(["watchlist", "add", "mine", str(bad)]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "1 bad line(s), nothing was created" in err and "line 2: Dec 200 is outside -90..90 degrees" in err
    not_moc = tmp_path / "not.fits"
    fits.BinTableHDU.from_columns([fits.Column(name="flux", format="D", array=np.ones(3))]).writeto(not_moc)
    assert main(["watchmap", "add", "area", str(not_moc)]) == 2
    assert "not a MOC" in " ".join(capsys.readouterr().err.split())
    db = registry.engine(settings.metadata_url)
    assert watch_registry.list_watchlists(db) == [] and watch_registry.list_watchmaps(db) == []
    stored = settings.catalogs.path / paths.WATCH_DIR / paths.WATCHLISTS_DIR
    assert not stored.exists() or not any(stored.iterdir())
    # A good file makes the list; an edit with a bad file changes nothing.
    good = tmp_path / "good.csv"
    good.write_text("10,20,a\n11,21,b,4\n")
    assert main(["watchlist", "add", "mine", str(good), "--radius", "3", "--public"]) == 0
    made = int(capsys.readouterr().out.strip())
    assert main(["watchlist", "edit", str(made), "--add", str(bad)]) == 2
    kept = watch_registry.get_watchlist(db, made)
    assert (kept.version, kept.cones, kept.visibility, kept.radius_arcsec) == (1, 2, "public", 3.0)
    folder = (settings.catalogs.path / paths.watchlist_key(made, 1)).parent
    assert sorted(p.name for p in folder.iterdir()) == ["v1.parquet"]
    assert main(["watchlist", "show", str(made), "--cones", "5"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "1\ta\t10.0000000\t20.0000000\t",
        "2\tb\t11.0000000\t21.0000000\t4.0",
    ]
    db.dispose()


def test_an_imported_catalogue_as_a_watchlist(catalog_home: Path, data_dir: Path) -> None:
    cones = read_cones("catalog:gcvs", catalog_home)
    source = pq.read_table(data_dir / "catalogs" / "gcvs" / "gcvs.parquet")
    assert cones.num_rows == source.num_rows == 59_099
    assert sorted(zip(cones["ra"].to_pylist(), cones["dec"].to_pylist(), strict=True)) == sorted(
        zip(source["ra"].to_pylist(), source["dec"].to_pylist(), strict=True)
    )
    assert cones["radius"].null_count == cones.num_rows  # the list's default radius
    named = read_cones("catalog:3hsp", catalog_home)
    assert named.num_rows == 2013 and {n.strip() for n in named["name"].to_pylist()} >= {"3HSPJ000116.4+293534"}
