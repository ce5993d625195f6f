from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from nightjar import paths
from nightjar.cli import main
from nightjar.settings import Settings
from nightjar.sql import export as export_module
from nightjar.sql.export import ExportError, Selection, export, hpx29_range, parse_healpix


def delta(home: Path, table: str) -> DeltaTable:
    return DeltaTable(str(paths.table_dir(home, table)))


def read_export(out: Path) -> tuple[dict[str, Any], pa.Table]:
    """The manifest and the exported rows, after checking every file against the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert sorted(p.name for p in out.iterdir()) == sorted([f["name"] for f in manifest["files"]] + ["manifest.json"])
    parts = []
    for entry in manifest["files"]:
        path = out / entry["name"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["bytes"] == path.stat().st_size
        part = pq.read_table(path)
        assert entry["rows"] == part.num_rows
        parts.append(part)
    rows = pa.concat_tables(parts)
    assert manifest["rows"] == rows.num_rows
    return manifest, rows


def no_partial_output(out: Path) -> bool:
    return not out.exists() and not list(out.parent.glob(f".{out.name}.partial-*"))


def test_night_export_round_trip(lake_home: Path, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "night"
    manifest = export(settings, paths.SOURCES, Selection(night=60924), out, rows_per_file=30)
    _, rows = read_export(out)
    expected = delta(lake_home, paths.SOURCES).to_pyarrow_table(filters=[("night", "=", 60924)])
    assert rows.num_rows == expected.num_rows == 101  # the night's 100 alerts and one packet-history detection
    assert pc.sum(pc.invert(rows["fromPacketHistory"])).as_py() == 100
    assert rows.sort_by("diaSourceId").equals(expected.sort_by("diaSourceId"))
    assert [f["rows"] for f in manifest["files"]] == [30, 30, 30, 11]
    assert manifest["table"] == paths.SOURCES
    assert manifest["selection"]["night"] == 60924
    assert manifest["versions"] == {paths.SOURCES: delta(lake_home, paths.SOURCES).version()}
    assert no_partial_output(tmp_path / "elsewhere") and not list(tmp_path.glob(".night.partial-*"))


def test_healpix_export_selects_the_pixel_exactly(
    lake_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    everything = delta(lake_home, paths.SOURCES).to_pyarrow_table()
    order = 3
    parents = everything[paths.HPX29].to_numpy() >> (2 * (29 - order))
    pixel = int(np.bincount(parents).argmax())  # the order-3 pixel holding most rows
    expected = everything.filter(pa.array(parents == pixel))
    assert 0 < expected.num_rows < everything.num_rows

    out = tmp_path / "pixel"
    monkeypatch.setenv("NIGHTJAR_HOME", str(lake_home))
    assert main(["export", paths.SOURCES, "--healpix", f"{order}/{pixel}", "--out", str(out)]) == 0
    assert str(out / "manifest.json") in capsys.readouterr().out
    manifest, rows = read_export(out)
    assert rows.sort_by("diaSourceId").equals(expected.sort_by("diaSourceId"))
    low, high = hpx29_range(order, pixel)
    assert manifest["selection"]["healpix"] == {
        "order": order,
        "pixel": pixel,
        "hpx29_low": low,
        "hpx29_high_exclusive": high,
    }


def test_sql_export_goes_through_the_sandbox(lake_home: Path, settings: Settings, tmp_path: Path) -> None:
    sql = "SELECT diaSourceId, diaObjectId, band, psfFlux FROM sources WHERE survey = 'ztf' ORDER BY diaSourceId"
    out = tmp_path / "ztf"
    manifest = export(settings, paths.SOURCES, Selection(sql=sql), out)
    _, rows = read_export(out)
    expected = delta(lake_home, paths.SOURCES).to_pyarrow_table(
        columns=["diaSourceId", "diaObjectId", "band", "psfFlux"], filters=[("survey", "=", "ztf")]
    )
    assert rows.equals(expected.sort_by("diaSourceId"))
    assert manifest["selection"] == {"sql": sql}
    tables = (*paths.ALERT_TABLES, paths.SS_SOURCES, paths.SS_OBJECTS)  # the lake's minor-planet alerts add the last
    assert manifest["versions"] == {t: delta(lake_home, t).version() for t in tables}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchtable", "--night", "60924"], "unknown table 'nosuchtable'"),
        (["objects", "--night", "60924"], "table 'objects' has no 'night' column"),
        (["sources", "--healpix", "5"], "ORDER/PIXEL"),
        (["sources", "--healpix", "five/3"], "ORDER/PIXEL"),
        (["sources", "--healpix", "30/1"], "above the maximum 29"),
        (["sources", "--healpix", "1/48"], "does not exist at order 1"),
        (["sources", "--night", "61000"], "selects no rows (the table holds nights 58319 to 60924)"),
        (["sources", "--sql", "SELECT nope FROM sources"], "nope"),
        (["sources", "--sql", "DELETE FROM sources"], "only SELECT"),
        (["sources", "--sql", "SELECT * FROM sources WHERE false"], "selects no rows"),
    ],
)
def test_bad_input_exits_2_and_leaves_nothing(
    lake_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("NIGHTJAR_HOME", str(lake_home))
    out = tmp_path / "out"
    assert main(["export", *args, "--out", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long messages
    assert message in err
    assert no_partial_output(out)


def test_an_existing_folder_is_never_overwritten(lake_home: Path, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        export(settings, paths.SOURCES, Selection(night=60924), out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_failure_midway_removes_the_partial_export(
    lake_home: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_module._sha256
    calls = []

    def fail_on_second_file(path: Path) -> str:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path)

    monkeypatch.setattr(export_module, "_sha256", fail_on_second_file)
    out = tmp_path / "broken"
    with pytest.raises(OSError, match="disk full"):
        export(settings, paths.SOURCES, Selection(night=60924), out, rows_per_file=30)
    assert len(calls) == 2
    assert no_partial_output(out)


def test_healpix_parsing() -> None:
    assert parse_healpix("0/11") == (0, 11)
    assert parse_healpix("29/7") == (29, 7)
    assert hpx29_range(0, 11) == (11 << 58, 12 << 58)
    with pytest.raises(ExportError):
        parse_healpix("0/12")
    with pytest.raises(ExportError):
        parse_healpix("-1/0")
    with pytest.raises(ExportError, match="exactly one"):
        Selection(night=1, sql="SELECT 1")
