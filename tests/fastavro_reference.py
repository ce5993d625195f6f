"""fastavro's reading of LSST alerts: the independent view the columnar decoder's output is checked against."""

from __future__ import annotations

import io
import math

import fastavro

from nightjar.streams import schemas, wire
from nightjar.streams.decode import DecodedBatch

CUTOUTS = ("cutoutDifference", "cutoutScience", "cutoutTemplate")


def fastavro_record(payload: bytes) -> dict:
    """The alert of one wire-format message (magic byte, schema id, Avro body), as fastavro reads it."""
    sid, body = wire.unframe(payload)
    record = fastavro.schemaless_reader(io.BytesIO(body), schemas.lsst_schema(sid), None)
    assert isinstance(record, dict)
    return record


def assert_same_row(row: dict, expected: dict, where: str) -> None:
    """Every field of ``expected`` has the same value in ``row`` (NaN equals NaN)."""
    for name, value in expected.items():
        got = row[name]
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(got, float) and math.isnan(got), f"{where}.{name}"
        else:
            assert got == value, f"{where}.{name}: {got!r} != {value!r}"


def assert_decoded_as_fastavro(out: DecodedBatch, refs: list[dict], where: str = "") -> None:
    """The decoded batch ``out`` holds the alerts ``refs`` (fastavro's records, in order) row for row: sources,
    packet history, forced photometry, objects and cutouts, and nothing more."""
    prv, forced, objects = (
        iter(out.prv_sources.to_pylist()),
        iter(out.forced_sources.to_pylist()),
        iter(out.objects.to_pylist()),
    )
    cutouts = out.cutouts.to_pylist()
    for i, (source, ref) in enumerate(zip(out.sources.to_pylist(), refs, strict=True)):
        assert_same_row(source, ref["diaSource"], f"{where}[{i}].diaSource")
        for item in ref["prvDiaSources"] or []:
            assert_same_row(next(prv), item, f"{where}[{i}].prvDiaSources")
        for item in ref["prvDiaForcedSources"] or []:
            assert_same_row(next(forced), item, f"{where}[{i}].prvDiaForcedSources")
        if ref["diaObject"] is not None:
            assert_same_row(next(objects), ref["diaObject"], f"{where}[{i}].diaObject")
        for name in CUTOUTS:
            assert cutouts[i][name] == ref[name]
    for rest in (prv, forced, objects):
        assert next(rest, None) is None, where
