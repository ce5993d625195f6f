"""The decoder against fastavro's reading of the same bytes, on simulated and real alerts, and on bad input."""

from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fastavro
import pytest

from nightjar.streams import schemas, wire
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.files import AlertFileError, read_payloads
from nightjar.streams.simulate import START_MJD, SimConfig, generate_alerts

from ..fastavro_reference import fastavro_record


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def test_simulated_alerts_decode_field_by_field() -> None:
    alerts = list(generate_alerts(300, seed=3))
    out = decode_batch(RawBatch.from_payloads([a.payload for a in alerts], "t"))
    assert out.rejects == []
    assert out.sources.num_rows == 300
    rows = out.sources.to_pylist()
    for alert, row in zip(alerts, rows, strict=True):
        expected = fastavro_record(alert.payload)["diaSource"]
        for name, value in expected.items():
            assert same(row[name], value), name
    assert out.sources["diaSourceId"].type.bit_width == 64
    # One objects row per alert carrying a diaObject (not solar-system ones), before the per-object upsert.
    with_object = [a for a in alerts if a.dia_object_id is not None]
    assert out.objects.num_rows == len(with_object)
    assert set(out.objects["diaObjectId"].to_pylist()) == {a.dia_object_id for a in with_object}
    # Packet history and forced photometry come out row for row.
    refs = [fastavro_record(a.payload) for a in alerts]
    assert out.prv_sources.num_rows == sum(len(r["prvDiaSources"] or []) for r in refs)
    assert out.forced_sources.num_rows == sum(len(r["prvDiaForcedSources"] or []) for r in refs)


def test_a_decoded_batch_is_unchanged_by_the_batches_decoded_after_it() -> None:
    """The payloads are copied into one buffer that the next batch reuses: nothing decoded may point into it."""
    config = SimConfig(cutout_size=16)
    first = [a.payload for a in generate_alerts(40, seed=5, config=config)]
    later = [[a.payload for a in generate_alerts(60, seed=s, config=config)] for s in (6, 7, 8, 9)]
    kept = decode_batch(RawBatch.from_payloads(first, "t"))
    before = {name: table.to_pylist() for name, table in kept.tables().items()}
    # the next batches, one after the other and two at a time (the second one takes a buffer of its own)
    decode_batch(RawBatch.from_payloads(later[0], "t"))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda p: decode_batch(RawBatch.from_payloads(p, "t")), later[1:]))
    assert {name: table.to_pylist() for name, table in kept.tables().items()} == before
    cutouts = {row["diaSourceId"]: row["cutoutDifference"] for row in before["cutouts"]}
    for payload in first:
        alert = fastavro_record(payload)
        assert cutouts[alert["diaSource"]["diaSourceId"]] == alert["cutoutDifference"]


def test_simulated_alerts_validate_against_the_official_schema() -> None:
    for alert in generate_alerts(50, seed=5):
        sid, _ = wire.unframe(alert.payload)
        assert sid == schemas.latest_schema_id()
        assert fastavro.validate(fastavro_record(alert.payload), schemas.lsst_schema(sid))


def test_history_is_consistent_across_alerts_of_one_object() -> None:
    alerts = list(generate_alerts(400, seed=7))
    seen: dict[int | None, list[int]] = {}
    for alert in alerts:
        record = fastavro_record(alert.payload)
        previous = [s["diaSourceId"] for s in record["prvDiaSources"] or []]
        earlier = seen.get(alert.dia_object_id, [])
        if alert.dia_object_id is None:  # solar-system detections come alone
            assert previous == [] and record["diaObject"] is None
            continue
        # The packet history ends with this object's earlier alerts, after its pre-window detections.
        assert previous[len(previous) - len(earlier) :] == earlier
        assert all(
            s["midpointMjdTai"] < START_MJD for s in (record["prvDiaSources"] or [])[: len(previous) - len(earlier)]
        )
        assert record["diaObject"]["nDiaSources"] == len(previous) + 1
        forced_times = [f["midpointMjdTai"] for f in record["prvDiaForcedSources"] or []]
        assert forced_times == sorted(forced_times)
        assert all(t < record["diaSource"]["midpointMjdTai"] for t in forced_times)
        seen.setdefault(alert.dia_object_id, []).append(alert.dia_source_id)


def test_real_wire_format_alerts_decode(data_dir: Path) -> None:
    files = sorted((data_dir / "alerts/lsst/wire-format").glob("*.avro"))
    assert len(files) == 3
    payloads = [f.read_bytes() for f in files]
    out = decode_batch(RawBatch.from_payloads(payloads, "real"))
    assert out.rejects == []
    assert sorted(out.sources["diaSourceId"].to_pylist()) == sorted(
        fastavro_record(p)["diaSource"]["diaSourceId"] for p in payloads
    )


def test_real_container_files_are_read(data_dir: Path) -> None:
    payloads = read_payloads(data_dir / "alerts/lsst/hsc-cosmos-v7.1-slim/schema_701.avro")
    assert len(payloads) == 10
    assert {wire.unframe(p)[0] for p in payloads} == {701}
    lsstcam = sorted((data_dir / "alerts/lsst/lsstcam-2025-v9.0").glob("*.avro"))[0]
    (payload,) = read_payloads(lsstcam)
    assert wire.unframe(payload)[0] == 900
    out = decode_batch(RawBatch.from_payloads([payload]))
    assert out.rejects == [] and out.sources.num_rows == 1


def test_non_alert_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "notes.avro"
    bad.write_text("hello")
    with pytest.raises(AlertFileError, match="neither a wire-format message"):
        read_payloads(bad)


def test_bad_messages_are_rejected_with_reasons() -> None:
    good = [a.payload for a in generate_alerts(5, seed=1)]
    nan_alert = fastavro_record(good[0])
    nan_alert["diaSource"]["ra"] = float("nan")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schemas.lsst_schema(schemas.latest_schema_id()), nan_alert)
    limit = max(len(p) for p in good) + 100
    bad = [
        good[1][: len(good[1]) // 3],  # truncated
        b"\x01" + good[2][1:],  # wrong magic byte
        wire.frame(4242, b"\x00\x01"),  # unknown schema id
        b"\x00\x00",  # shorter than the header
        wire.frame(schemas.latest_schema_id(), buf.getvalue()),  # NaN position
        good[3] + b"\0" * limit,  # oversize for the limit below
    ]
    batch = RawBatch.from_payloads([good[0], *bad, good[4]], "t")
    out = decode_batch(batch, max_message_bytes=limit)
    assert out.sources.num_rows == 2
    reasons = {r.index: r.reason for r in out.rejects}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6]
    assert reasons[1].startswith(("corrupt Avro", "truncated"))
    assert "wrong magic byte 1" in reasons[2]
    assert "unknown LSST schema id 4242" in reasons[3]
    assert "shorter than the 5-byte wire header" in reasons[4]
    assert "invalid position ra=nan" in reasons[5]
    assert reasons[6].startswith("oversize")
    # The rejected NaN alert leaves no objects row behind.
    assert out.objects.num_rows == 2


def _rewritten(payload: bytes, change) -> bytes:
    """The alert with ``change`` applied to its record, re-encoded with fastavro under the same schema."""
    record = fastavro_record(payload)
    change(record)
    buf = io.BytesIO()
    sid = schemas.latest_schema_id()
    fastavro.schemaless_writer(buf, schemas.lsst_schema(sid), record)
    return wire.frame(sid, buf.getvalue())


def _bad_string(payload: bytes, set_marker) -> bytes:
    """The alert with a string holding bytes that are not UTF-8 (a marker written by fastavro, then replaced)."""
    marked = _rewritten(payload, set_marker)
    assert marked.count(b"QQQQ") == 1
    return marked.replace(b"QQQQ", b"\xff\xfe\xc3\x28")


def _set(path: tuple[str, ...], value: object):
    def change(record: dict) -> None:
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def test_bad_strings_and_times_are_dead_lettered_with_reasons() -> None:
    """Invalid UTF-8 (in the triggering source or in its history) and NaN or infinite times: rejected, named."""
    good = [a.payload for a in generate_alerts(8, seed=3, config=SimConfig(history_days=30))]
    with_history = next(p for p in good if fastavro_record(p)["prvDiaSources"])

    def history_band(record: dict) -> None:
        record["prvDiaSources"][0]["band"] = "QQQQ"

    bad = [
        _bad_string(good[0], _set(("diaSource", "band"), "QQQQ")),
        _bad_string(with_history, history_band),
        _rewritten(good[1], _set(("diaSource", "midpointMjdTai"), float("nan"))),
        _rewritten(good[2], _set(("diaSource", "midpointMjdTai"), float("inf"))),
        _rewritten(good[3], _set(("diaSource", "midpointMjdTai"), -1e9)),
    ]
    batch = RawBatch.from_payloads([good[4], *bad, good[5]], "t")
    out = decode_batch(batch)
    reasons = {r.index: r.reason for r in out.rejects}
    assert sorted(reasons) == [1, 2, 3, 4, 5]
    assert "invalid UTF-8 in sources.band" in reasons[1]
    assert "invalid UTF-8 in" in reasons[2] and reasons[2].endswith(".band")
    assert "invalid midpointMjdTai=nan" in reasons[3]
    assert "invalid midpointMjdTai=inf" in reasons[4]
    assert "invalid midpointMjdTai=-1000000000.0" in reasons[5]
    for table in (out.sources, out.objects, out.forced_sources, out.cutouts):
        for column in table.columns:
            column.validate(full=True)  # what is accepted is valid


def test_an_empty_container_is_rejected_with_its_reason() -> None:
    """An Avro container with no record is a dead letter, not a message that vanishes (issue 12 item 10)."""
    empty = io.BytesIO()
    fastavro.writer(empty, fastavro.parse_schema(schemas.lsst_schema(schemas.latest_schema_id())), [])
    good = next(iter(generate_alerts(1, seed=4))).payload
    out = decode_batch(RawBatch.from_payloads([good, empty.getvalue()], "t"))
    assert out.sources.num_rows == 1
    assert [(r.index, r.reason) for r in out.rejects] == [(1, "empty Avro container: it holds no alert")]
