"""``nightjar catalog``, ``nightjar context`` and ``nightjar bench xmatch`` through ``main(argv)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distributed import Client

from nightjar.cli import main


@pytest.fixture
def cli_env(home: Path, dask_client: Client, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI on a fresh home, using the session's cluster instead of starting one per command."""
    monkeypatch.setenv("NIGHTJAR_HOME", str(home))
    monkeypatch.setenv("NIGHTJAR_SCHEDULER", dask_client.scheduler.address)
    return home


def test_import_list_and_context(cli_env: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = data_dir / "catalogs/3hsp/3hsp.parquet"
    argv = ["catalog", "import", "blazars", str(source), "--ra", "ra_deg", "--dec", "dec_deg", "--kind", "agn"]
    assert main([*argv, "--id", "3HSP Source name", "--description", "3HSP blazars"]) == 0
    assert "blazars (agn): 2013 rows" in capsys.readouterr().err

    assert main(["catalog", "list", "--format", "json"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["name"] == "blazars" and listed["rows"] == 2013 and listed["kind"] == "agn"
    assert Path(listed["path"]) == cli_env / "catalogs" / "blazars"

    # 3HSPJ174357.8+193509 at 265.99083, 19.58583 (the real ZTF18aaqzpsv lies 0.13″ away).
    assert main(["context", "265.99083", "19.58583", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classification"] == "AGN"
    assert report["catalogues"] == ["blazars"]
    (match,) = report["matches"]
    assert match["catalogue_object_id"] == "3HSPJ174357.8+193509" and match["rank"] == 1
    assert match["separationArcsec"] < 1.0

    assert main(["context", "17:43:57.8", "+19:35:09", "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("classification: AGN")
    assert "3HSPJ174357.8+193509" in text

    assert main(["context", "120.0", "-60.0", "--format", "json"]) == 0
    empty = json.loads(capsys.readouterr().out)
    assert empty["classification"] == "ORPHAN" and empty["matches"] == []


def test_bad_positions_and_names_are_user_errors(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["context", "10", "95"]) == 2
    assert "Dec must be within [-90, 90]" in capsys.readouterr().err
    assert main(["context", "ten", "5"]) == 2
    assert "degrees or sexagesimal" in capsys.readouterr().err
    assert main(["context", "10", "5", "--catalog", "nope"]) == 2
    assert "no such catalogue: nope" in capsys.readouterr().err
    assert main(["catalog", "remove", "nope"]) == 2


def test_synth_and_bench_xmatch(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "synth", "gals", "--rows", "20000", "--chunk-rows", "8000"]) == 0
    assert "gals: 20000 synthetic galaxy rows" in capsys.readouterr().err
    argv = ["bench", "xmatch", "--catalog", "gals", "--alerts", "6000", "--batch", "2000", "--passes", "1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("xmatch_alerts_per_s=")
    assert float(lines[-1].split("=")[1]) > 0
    assert any(line.startswith("warm/cold per core:") for line in lines)
    assert main(["catalog", "remove", "gals"]) == 0
    assert main(["catalog", "list", "--format", "json"]) == 0
    assert capsys.readouterr().out == ""
