from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import Client

from nightjar.cli import main
from nightjar.pipelines.run import ingest
from nightjar.settings import Settings, load_settings


def test_settings_from_environment_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "nightjar.toml"
    config.write_text(f'home = "{tmp_path / "from-toml"}"\nbatch_size = 123\nkafka = "kafka:9092"\n')
    monkeypatch.setenv("NIGHTJAR_KAFKA", "env-kafka:9092")
    settings = load_settings(config)
    assert settings.home == tmp_path / "from-toml"
    assert settings.batch_size == 123
    assert settings.kafka == "env-kafka:9092"  # the environment wins over the file
    assert settings.metadata_url == f"sqlite:///{tmp_path / 'from-toml' / 'metadata.sqlite'}"
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("batch_sise = 3\n")
    with pytest.raises(ValueError, match="batch_sise"):
        load_settings(config)


def test_query_formats(
    settings: Settings,
    dask_client: Client,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    ingest(settings, dask_client, [data_dir / "alerts/lsst/hsc-cosmos-v7.1-slim/schema_701.avro"])
    monkeypatch.setenv("NIGHTJAR_HOME", str(settings.home))
    sql = "SELECT diaSourceId, band FROM sources WHERE NOT fromPacketHistory ORDER BY diaSourceId"

    assert main(["query", sql, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 10 and all(isinstance(r["diaSourceId"], str) for r in rows)

    assert main(["query", sql, "--format", "csv"]) == 0
    assert len(list(csv.DictReader(io.StringIO(capsys.readouterr().out)))) == 10

    out = tmp_path / "result.parquet"
    assert main(["query", sql, "--format", "parquet", "--out", str(out)]) == 0
    assert pq.read_table(out)["diaSourceId"].to_pylist() == [int(r["diaSourceId"]) for r in rows]

    assert main(["query", "SELECT count(*) AS n FROM sources WHERE NOT fromPacketHistory"]) == 0
    assert "10" in capsys.readouterr().out

    assert main(["query", "DELETE FROM sources"]) == 2
    assert "only SELECT" in capsys.readouterr().err


def test_commands_without_kafka_say_what_to_do(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIGHTJAR_HOME", str(settings.home))
    monkeypatch.delenv("NIGHTJAR_KAFKA", raising=False)
    assert main(["simulate", "--topic", "t", "--alerts", "1"]) == 2
    assert "nightjar broker start" in capsys.readouterr().err
