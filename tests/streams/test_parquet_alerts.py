"""Parquet exports of alerts (nested, as Fink and Rubin store them) are read by ingest and replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client

from nightjar import paths
from nightjar.lake.read import datasets
from nightjar.pipelines.run import ingest
from nightjar.settings import Settings
from nightjar.streams import wire
from nightjar.streams.decode import ROW, RawBatch, decode_batch
from nightjar.streams.files import AlertFileError, read_payloads
from nightjar.streams.replay import alert_files

LSSTCAM = "alerts/lsst/lsstcam-2025-v9.0"


def lsstcam_records(data_dir: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    files = sorted((data_dir / LSSTCAM).glob("*.avro"))
    records: list[dict[str, Any]] = []
    for path in files:
        with path.open("rb") as f:
            records.extend(r for r in fastavro.reader(f) if isinstance(r, dict))
    return files, records


def to_parquet(records: list[dict[str, Any]], out: Path, ids_as_doubles: bool) -> Path:
    """The alerts as one nested Parquet file, pyarrow inferring the types as an exporter would (ints as int64,
    floats as double); with ``ids_as_doubles``, the nested ids are doubles, as some exports store them."""
    rows = []
    for record in records:
        row = dict(record)
        if ids_as_doubles:
            row["diaSource"] = {**row["diaSource"], "diaObjectId": float(row["diaSource"]["diaObjectId"])}
            row["prvDiaSources"] = [{**p, "diaSourceId": float(p["diaSourceId"])} for p in row["prvDiaSources"] or []]
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out


def test_ingest_reads_nested_parquet_as_it_reads_avro(data_dir: Path, tmp_path: Path) -> None:
    files, records = lsstcam_records(data_dir)
    path = to_parquet(records, tmp_path / "alerts.parquet", ids_as_doubles=False)
    (payload,) = read_payloads(path, wire_format=False)
    from_parquet = decode_batch(RawBatch.from_payloads([payload]), max_message_bytes=10**8)
    from_avro = decode_batch(RawBatch.from_payloads([p for f in files for p in read_payloads(f, wire_format=False)]))
    assert from_parquet.rejects == [] and from_parquet.accepted == len(records) == 100
    for name in ("sources", "objects", "prv_sources", "forced_sources", "cutouts"):
        mine, theirs = getattr(from_parquet, name), getattr(from_avro, name)
        assert mine.schema.remove_metadata() == theirs.schema.remove_metadata(), name
        # Equal but for provenance (one file is one message here, 100 there) and the digest of the message's
        # encoding (a Parquet file's bytes there, Avro records here); repr: NaN equals NaN.
        drop = [ROW, paths.KAFKA_TOPIC, paths.KAFKA_PARTITION, paths.KAFKA_OFFSET]
        drop += [paths.ALERT_DIGEST] if name == "cutouts" else []
        assert repr(mine.drop_columns(drop).to_pylist()) == repr(theirs.drop_columns(drop).to_pylist()), name


def test_ids_stored_as_doubles_and_replay(data_dir: Path, tmp_path: Path) -> None:
    _, records = lsstcam_records(data_dir)
    path = to_parquet(records, tmp_path / "alerts.parquet", ids_as_doubles=True)
    (payload,) = read_payloads(path, wire_format=False)
    out = decode_batch(RawBatch.from_payloads([payload]), max_message_bytes=10**8)
    assert out.rejects == []
    assert out.sources["diaObjectId"].type == pa.int64()
    # A double holds these ids (~1.7e17 > 2**53) only to within its precision: they arrive as the export stored them.
    assert out.sources["diaObjectId"].to_pylist() == [int(float(r["diaSource"]["diaObjectId"])) for r in records]
    payloads = read_payloads(path)  # replay: one wire-format message per alert, official schema of the version
    assert len(payloads) == 100 and {wire.unframe(p)[0] for p in payloads} == {900}
    replayed = decode_batch(RawBatch.from_payloads(payloads))
    assert replayed.rejects == []
    assert replayed.sources["diaSourceId"].to_pylist() == [r["diaSource"]["diaSourceId"] for r in records]


def test_a_parquet_file_without_alerts_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    with pytest.raises(AlertFileError, match="no diaSource column"):
        read_payloads(path, wire_format=False)
    with pytest.raises(AlertFileError, match="no diaSource column"):
        read_payloads(path)


@pytest.mark.slow
@pytest.mark.timeout(180)  # an ingest on the Dask cluster
def test_ingest_command_path_into_the_lake(data_dir: Path, tmp_path: Path, dask_client: Client) -> None:
    _, records = lsstcam_records(data_dir)
    folder = tmp_path / "dump"
    folder.mkdir()
    to_parquet(records[:50], folder / "part-0.parquet", ids_as_doubles=True)
    to_parquet(records[50:], folder / "part-1.parquet", ids_as_doubles=False)
    home = tmp_path / "home"
    home.mkdir()
    report = ingest(Settings(home=home, batch_size=500), dask_client, alert_files([folder]))
    assert report.file_errors == [] and report.accepted == 100
    # sources holds triggers and packet history, one row per diaSourceId; part-0's history ids went through doubles.
    ids = {r["diaSource"]["diaSourceId"] for r in records}
    ids |= {int(float(p["diaSourceId"])) for r in records[:50] for p in r["prvDiaSources"] or []}
    ids |= {p["diaSourceId"] for r in records[50:] for p in r["prvDiaSources"] or []}
    assert datasets(home)["sources"].count_rows() == len(ids)
