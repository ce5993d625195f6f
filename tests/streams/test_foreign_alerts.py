"""Alerts as other brokers store them: re-serialised Avro with extra fields of every Avro type (map, fixed, enum,
unions of several types, nested arrays and records, recursive types). ``ingest`` and ``replay`` read them through
one reader, and extra fields are stepped over rather than making the alert unreadable."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import fastavro
import pytest

from nightjar.streams import wire
from nightjar.streams.avro_columnar import Program
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.files import read_payloads

LSSTCAM = "alerts/lsst/lsstcam-2025-v9.0"

# A record type that refers to itself: only a skip program with a stack (no recursion) steps over it.
CHAIN = {"type": "record", "name": "Chain", "fields": [{"name": "next", "type": ["null", "Chain"]}]}
EXTRA_TOP = [
    {"name": "brokerTags", "type": {"type": "map", "values": ["string", "null"]}},
    {"name": "checksum", "type": {"type": "fixed", "name": "Md5", "size": 16}},
    {"name": "stage", "type": {"type": "enum", "name": "Stage", "symbols": ["raw", "scored"]}},
    {"name": "score", "type": ["null", "double", "string", {"type": "array", "items": "float"}]},
    {"name": "history", "type": {"type": "array", "items": {"type": "array", "items": "double"}}},
    {"name": "chain", "type": CHAIN},
]
EXTRA_SOURCE = [
    {"name": "brokerFlags", "type": {"type": "map", "values": "long"}},
    {"name": "nested", "type": ["null", {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}]},
]


def _extra_values(i: int) -> dict[str, Any]:
    return {
        "brokerTags": {"classifier": "snn", "note": None, f"k{i}": str(i)},
        "checksum": bytes(range(i % 16, i % 16 + 16)),
        "stage": "scored" if i % 2 else "raw",
        "score": [0.5, float(i)] if i % 3 == 0 else (None if i % 3 == 1 else "high"),
        "history": [[1.0, 2.0], [], [float(i)]],
        "chain": {"next": {"next": None}} if i % 2 else {"next": None},
    }


def reserialise(data_dir: Path, out: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The real LSSTCam alerts in one container, as another broker might write them: record ``topLevelRecord``,
    no schema version anywhere, extra fields at the top level and inside diaSource."""
    files = sorted((data_dir / LSSTCAM).glob("*.avro"))
    records, writer = [], None
    for path in files:
        with path.open("rb") as f:
            reader = fastavro.reader(f)
            writer = writer or copy.deepcopy(reader.writer_schema)
            records.extend(r for r in reader if isinstance(r, dict))
    assert writer is not None
    writer["fields"] = [f for f in writer["fields"] if f["name"] != "lsst_schema_version"] + EXTRA_TOP
    source = next(f for f in writer["fields"] if f["name"] == "diaSource")
    source_record = (
        source["type"] if isinstance(source["type"], dict) else next(t for t in source["type"] if isinstance(t, dict))
    )
    source_record["fields"] = source_record["fields"] + EXTRA_SOURCE
    for i, record in enumerate(records):
        record.pop("lsst_schema_version", None)
        record.update(_extra_values(i))
        record["diaSource"] = {**record["diaSource"], "brokerFlags": {"a": i}, "nested": {"x": i} if i % 2 else None}
    target = out / "reserialised.avro"
    with target.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema(writer), records, codec="deflate")
    return target, records


def test_extra_fields_of_every_type_are_stepped_over(data_dir: Path, tmp_path: Path) -> None:
    path, records = reserialise(data_dir, tmp_path)
    expected = [r["diaSource"]["diaSourceId"] for r in records]
    ingested = decode_batch(RawBatch.from_payloads(read_payloads(path, wire_format=False)), max_message_bytes=10**8)
    assert ingested.rejects == []
    assert ingested.sources["diaSourceId"].to_pylist() == expected
    assert ingested.sources["ra"].to_pylist() == [r["diaSource"]["ra"] for r in records]
    assert "brokerFlags" not in ingested.sources.column_names  # a map has no column: it stays out of the way
    assert ingested.prv_sources.num_rows == sum(len(r["prvDiaSources"] or []) for r in records)


def test_replay_reads_what_ingest_reads(data_dir: Path, tmp_path: Path) -> None:
    """The file does not say its LSST version: replay sends each alert as a one-alert container (was refused with
    "cannot tell the LSST schema version of record 'topLevelRecord'")."""
    path, records = reserialise(data_dir, tmp_path)
    payloads = read_payloads(path)
    assert len(payloads) == len(records)
    replayed = decode_batch(RawBatch.from_payloads(payloads))
    assert replayed.rejects == []
    assert replayed.sources["diaSourceId"].to_pylist() == [r["diaSource"]["diaSourceId"] for r in records]
    # A file that names its version still replays as Rubin sends alerts: wire format.
    (official,) = read_payloads(sorted((data_dir / LSSTCAM).glob("*.avro"))[0])
    assert wire.unframe(official)[0] == 900


SCHEMA = {
    "type": "record",
    "name": "r",
    "fields": [
        {"name": "a", "type": "long"},
        *EXTRA_TOP,
        {"name": "nf", "type": ["null", "Md5"]},
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "It",
                    "fields": [
                        {"name": "v", "type": "int"},
                        {"name": "tags", "type": {"type": "array", "items": "string"}},
                        {"name": "e", "type": ["null", "Stage"]},
                    ],
                },
            },
        },
        {"name": "z", "type": "string"},
    ],
}


def _bodies(records: list[dict[str, Any]]) -> list[bytes]:
    parsed = fastavro.parse_schema(copy.deepcopy(SCHEMA))
    out = []
    for record in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, record)
        out.append(buf.getvalue())
    return out


def test_fixed_enum_and_nullable_fixed_are_columns_the_rest_is_skipped() -> None:
    records = [
        {"a": i, **_extra_values(i), "nf": None if i % 2 else b"0123456789abcdef", "z": f"end{i}",
         "items": [{"v": j, "tags": ["p"] * j, "e": None if j else "raw"} for j in range(i % 3)]}
        for i in range(7)
    ]  # fmt: skip
    program = Program.compile(SCHEMA)
    assert program.skipped == ["brokerTags", "score", "history", "chain.next", "items.tags"]
    out = program.decode_messages(_bodies(records))
    assert out.errors() == {}
    top = out.tables[""].to_pylist()
    for row, record in zip(top, records, strict=True):
        assert (row["a"], row["checksum"], row["stage"], row["nf"], row["z"]) == (
            record["a"], record["checksum"], record["stage"], record["nf"], record["z"],
        )  # fmt: skip
    items = out.tables["items"].to_pylist()
    assert [(r["_record"], r["v"], r["e"]) for r in items] == [
        (i, item["v"], item["e"]) for i, record in enumerate(records) for item in record["items"]
    ]


@pytest.mark.parametrize("cut", [3, 10, 25])
def test_a_truncated_skipped_value_is_a_reject_not_a_crash(cut: int) -> None:
    (body,) = _bodies([{"a": 1, **_extra_values(3), "nf": None, "items": [], "z": "x"}])
    out = Program.compile(SCHEMA).decode_messages([body[:cut]])
    assert set(out.errors()) == {0}
    assert out.tables[""].num_rows == 0
