"""Malformed and abusive Kafka messages, one named kind each (issue 12, "alerts that break the lake").

Each kind is a function of a ``Donors`` (fresh simulated alerts no other message uses, the good alerts already
on the stream, and the real alerts of ``../shared/data``) returning the bytes of one message. ``KINDS`` lists
them with what the pipeline must do with each: dead-letter it (``DEAD``), store it (``STORED``: the schema allows
it, or it is a well-formed alert in an unusual wrapping) or count it as a duplicate (``DUPLICATE``).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nightjar.streams import container, schemas, wire
from nightjar.streams.simulate import SimConfig, generate_alerts

DEAD, STORED, DUPLICATE = "dead", "stored", "duplicate"
BAD_UTF8 = b"\xff\xfe\xc3\x28"
SID = schemas.latest_schema_id()


def record_of(payload: bytes) -> dict[str, Any]:
    sid, body = wire.unframe(payload)
    record = fastavro.schemaless_reader(io.BytesIO(body), schemas.lsst_schema(sid), None)
    assert isinstance(record, dict)
    return record


def encode(record: dict[str, Any], schema: dict[str, Any] | None = None) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema or schemas.lsst_schema(SID)), record)
    return buf.getvalue()


def zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long."""
    u = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = u & 0x7F
        u >>= 7
        if u:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@dataclass
class Donors:
    """Where the kinds take their alerts from."""

    data_dir: Path
    good: list[bytes]  # alerts already produced to the topic, earlier in the stream
    pool: Iterator[bytes] = field(init=False)
    with_history: Iterator[bytes] = field(init=False)

    def __post_init__(self) -> None:
        # Another seed: other ids than the good alerts'; history so that packets carry prvDiaSources.
        self.pool = (a.payload for a in generate_alerts(400, seed=91, config=SimConfig(history_days=30)))
        self.with_history = (p for p in self.pool if _has_history(p))

    def fresh(self) -> bytes:
        return next(self.pool)

    def historic(self) -> bytes:
        return next(self.with_history)

    def record(self) -> dict[str, Any]:
        return record_of(self.fresh())

    def ztf(self) -> bytes:
        return (self.data_dir / "alerts/ztf/boom-2024-v4.02/2695378462115010012.avro").read_bytes()


def _has_history(payload: bytes) -> bool:
    record = record_of(payload)
    return bool(record["prvDiaSources"]) and bool(record["prvDiaForcedSources"]) and record["diaObject"] is not None


def rewritten(d: Donors, change: Callable[[dict[str, Any]], None], historic: bool = False) -> bytes:
    record = record_of(d.historic() if historic else d.fresh())
    change(record)
    return wire.frame(SID, encode(record))


def bad_string(d: Donors, change: Callable[[dict[str, Any], str], None], bad: bytes = BAD_UTF8) -> bytes:
    """An alert with ``bad`` bytes in a string that ``change`` marks (fastavro writes only valid strings)."""
    record = record_of(d.historic())
    change(record, "QQQQ")
    payload = wire.frame(SID, encode(record))
    assert payload.count(b"QQQQ") == 1
    return payload.replace(b"\x08QQQQ", zigzag(len(bad)) + bad)


def _head(d: Donors) -> bytes:
    """The body of an alert up to the end of its diaSource: what follows is prvDiaSources' union branch."""
    record = d.record()
    for name in ("prvDiaSources", "prvDiaForcedSources", "diaObject", "ssSource", "mpc_orbits"):
        record[name] = None
    for name in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
        record[name] = None
    body = encode(record)
    assert body.endswith(b"\x00" * 8)
    return body[:-8]


def in_container(
    records: list[dict[str, Any]], schema: dict[str, Any] | None = None, codec: str = "null", **meta: Any
) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema or schemas.lsst_schema(SID)), records, codec=codec, **meta)
    return buf.getvalue()


def variant(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The LSST schema with ``change`` applied to (a deep copy of) its triggering diaSource record."""
    schema = json.loads(json.dumps(schemas.lsst_schema(SID)))
    source = next(f for f in schema["fields"] if f["name"] == "diaSource")["type"]
    change(source)
    # A name of its own: fastavro would otherwise resolve the history's reference to the official record.
    old, source["name"] = source["name"], source["name"] + "Variant"
    return json.loads(json.dumps(schema).replace(f'"{old}"', f'"{source["name"]}"'))


def flat(d: Donors) -> dict[str, Any]:
    """An alert without packet history, for the writer schemas of ``variant`` (fastavro does not read back the
    history rows it writes under a renamed record)."""
    record = d.record()
    record["prvDiaSources"] = None
    return record


def retyped(name: str, avro_type: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        next(f for f in record["fields"] if f["name"] == name)["type"] = avro_type

    return change


def _set(path: tuple[str | int, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        target: Any = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _container_of_one(d: Donors) -> bytes:
    return in_container([d.record()])


# --- byte level ---------------------------------------------------------------------------------------------


def empty_payload(d: Donors) -> bytes:  # no bytes at all
    return b""


def one_zero_byte(d: Donors) -> bytes:  # shorter than the 5-byte wire header
    return b"\x00"


def header_only(d: Donors) -> bytes:  # a valid header and no Avro body
    return wire.frame(SID, b"")


def truncated_after_header(d: Donors) -> bytes:  # cut one byte into the body
    return d.fresh()[:6]


def truncated_quarter(d: Donors) -> bytes:  # cut inside the diaSource
    p = d.fresh()
    return p[: len(p) // 4]


def truncated_half(d: Donors) -> bytes:  # cut inside the history or cutouts
    p = d.fresh()
    return p[: len(p) // 2]


def truncated_last_byte(d: Donors) -> bytes:  # the last cutout one byte short
    return d.fresh()[:-1]


def wrong_magic_one(d: Donors) -> bytes:  # magic byte 1
    return b"\x01" + d.fresh()[1:]


def wrong_magic_ff(d: Donors) -> bytes:  # magic byte 0xff (a signed -1)
    return b"\xff" + d.fresh()[1:]


def unknown_schema_id(d: Donors) -> bytes:  # id 4242 is in no registry
    return wire.frame(4242, d.fresh()[5:])


def negative_schema_id(d: Donors) -> bytes:  # id bytes ff ff ff ff: -1 as a signed int
    return b"\x00" + struct.pack(">i", -1) + d.fresh()[5:]


def schema_id_zero(d: Donors) -> bytes:  # id 0
    return wire.frame(0, d.fresh()[5:])


def all_zeros(d: Donors) -> bytes:  # a kilobyte of zero bytes (schema id 0)
    return b"\x00" * 1024


def text(d: Donors) -> bytes:  # plain text
    return b"not an alert"


def json_alert(d: Donors) -> bytes:  # the alert as JSON, not Avro
    record = d.record()
    for name in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
        record[name] = None
    return json.dumps(record).encode()


def random_body(d: Donors) -> bytes:  # a valid header before 2 KB of random bytes
    return wire.frame(SID, np.random.default_rng(5).bytes(2048))


def unterminated_id_varint(d: Donors) -> bytes:  # diaSourceId's varint never ends (11 continuation bytes)
    return wire.frame(SID, b"\xff" * 11 + d.fresh()[16:])


def bitflip_in_id_varint(d: Donors) -> bytes:  # the continuation bit of diaSourceId's first byte cleared
    p = bytearray(d.fresh())
    p[5] &= 0x7F  # the id ends after one byte: every later field is read from the wrong place
    return bytes(p)


def huge_string_length(d: Donors) -> bytes:  # observation_reason declares 2**60 bytes
    return wire.frame(SID, zigzag(1) + b"\x02" + zigzag(1 << 60) + b"abc")


def negative_string_length(d: Donors) -> bytes:  # observation_reason declares -5 bytes
    return wire.frame(SID, zigzag(1) + b"\x02" + zigzag(-5) + b"abc")


def huge_array_count(d: Donors) -> bytes:  # prvDiaSources declares 10**12 items
    return wire.frame(SID, _head(d) + b"\x02" + zigzag(10**12) + b"\x00" * 7)


def negative_array_count_bad_size(d: Donors) -> bytes:  # a block of -3 items with a negative byte size
    return wire.frame(SID, _head(d) + b"\x02" + zigzag(-3) + zigzag(-100) + b"\x00" * 7)


def union_branch_out_of_range(d: Donors) -> bytes:  # prvDiaSources' union has 2 branches, not 6
    return wire.frame(SID, _head(d) + zigzag(5) + b"\x00" * 7)


def union_branch_negative(d: Donors) -> bytes:  # union branch -1
    return wire.frame(SID, _head(d) + zigzag(-1) + b"\x00" * 7)


def trailing_garbage(d: Donors) -> bytes:  # 64 bytes after the record
    return d.fresh() + b"\x07" * 64


def oversize(d: Donors) -> bytes:  # larger than the run's max_message_bytes (see OVERSIZE)
    return d.fresh() + b"\x00" * OVERSIZE


# --- Avro level: other writer schemas ------------------------------------------------------------------------


def ra_as_numeric_string(d: Donors) -> bytes:  # ra written as the string "150.5" by its writer schema
    record = flat(d)
    record["diaSource"]["ra"] = "150.5"
    return in_container([record], variant(retyped("ra", "string")))


def ra_as_word(d: Donors) -> bytes:  # ra written as the string "north"
    record = flat(d)
    record["diaSource"]["ra"] = "north"
    return in_container([record], variant(retyped("ra", "string")))


def flux_as_string(d: Donors) -> bytes:  # psfFlux written as a string
    record = flat(d)
    record["diaSource"]["psfFlux"] = "bright"
    return in_container([record], variant(retyped("psfFlux", ["null", "string"])))


def time_as_string(d: Donors) -> bytes:  # midpointMjdTai written as a string
    record = flat(d)
    record["diaSource"]["midpointMjdTai"] = "yesterday"
    return in_container([record], variant(retyped("midpointMjdTai", "string")))


def id_as_string(d: Donors) -> bytes:  # diaSourceId written as a string
    record = flat(d)
    record["diaSource"]["diaSourceId"] = "one"
    return in_container([record], variant(retyped("diaSourceId", "string")))


def null_ra(d: Donors) -> bytes:  # ra null (a writer schema that allows it)
    record = flat(d)
    record["diaSource"]["ra"] = None
    return in_container([record], variant(retyped("ra", ["null", "double"])))


def null_time(d: Donors) -> bytes:  # midpointMjdTai null
    record = flat(d)
    record["diaSource"]["midpointMjdTai"] = None
    return in_container([record], variant(retyped("midpointMjdTai", ["null", "double"])))


def null_source_id(d: Donors) -> bytes:  # diaSourceId null
    record = flat(d)
    record["diaSource"]["diaSourceId"] = None
    return in_container([record], variant(retyped("diaSourceId", ["null", "long"])))


def band_enum_out_of_range(d: Donors) -> bytes:  # band an enum of 6 symbols, written with index 63
    def enum_band(source: dict[str, Any]) -> None:
        fields = [f for f in source["fields"] if f["name"] != "band"]
        fields.append({"name": "band", "type": {"type": "enum", "name": "Band", "symbols": list("ugrizy")}})
        source["fields"] = fields

    schema = variant(enum_band)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "diaSource"] + [
        next(f for f in schema["fields"] if f["name"] == "diaSource")
    ]
    record = flat(d)
    record["diaSource"]["band"] = "r"
    data = bytearray(in_container([record], schema))
    assert data[-17] == 4  # the last byte of the record: r, index 2
    data[-17] = 126  # index 63
    return bytes(data)


def minimal_lsst_schema(d: Donors) -> bytes:  # a diaSource of 4 fields, no diaObjectId, band, fluxes or cutouts
    schema = {
        "type": "record",
        "name": "alert",
        "fields": [
            {
                "name": "diaSource",
                "type": {
                    "type": "record",
                    "name": "diaSource",
                    "fields": [
                        {"name": n, "type": t}
                        for n, t in (
                            ("diaSourceId", "long"),
                            ("ra", "double"),
                            ("dec", "double"),
                            ("midpointMjdTai", "double"),
                        )
                    ],
                },
            }
        ],
    }
    source = flat(d)["diaSource"]
    return in_container([{"diaSource": {k: source[k] for k in ("diaSourceId", "ra", "dec", "midpointMjdTai")}}], schema)


# --- value level --------------------------------------------------------------------------------------------


def ra_nan(d: Donors) -> bytes:  # ra NaN
    return rewritten(d, _set(("diaSource", "ra"), float("nan")))


def dec_inf(d: Donors) -> bytes:  # dec +inf
    return rewritten(d, _set(("diaSource", "dec"), float("inf")))


def dec_minus_inf(d: Donors) -> bytes:  # dec -inf
    return rewritten(d, _set(("diaSource", "dec"), float("-inf")))


def ra_360(d: Donors) -> bytes:  # ra 360 (outside [0, 360))
    return rewritten(d, _set(("diaSource", "ra"), 360.0))


def ra_negative(d: Donors) -> bytes:  # ra -0.5
    return rewritten(d, _set(("diaSource", "ra"), -0.5))


def dec_91(d: Donors) -> bytes:  # dec 91
    return rewritten(d, _set(("diaSource", "dec"), 91.0))


def time_nan(d: Donors) -> bytes:  # midpointMjdTai NaN
    return rewritten(d, _set(("diaSource", "midpointMjdTai"), float("nan")))


def time_inf(d: Donors) -> bytes:  # midpointMjdTai +inf
    return rewritten(d, _set(("diaSource", "midpointMjdTai"), float("inf")))


def time_before_1858(d: Donors) -> bytes:  # midpointMjdTai -1e9
    return rewritten(d, _set(("diaSource", "midpointMjdTai"), -1e9))


def time_far_future(d: Donors) -> bytes:  # midpointMjdTai 1e7 (year ~29000)
    return rewritten(d, _set(("diaSource", "midpointMjdTai"), 1e7))


def flux_nan(d: Donors) -> bytes:  # psfFlux NaN: a float the schema allows (a failed measurement): stored
    return rewritten(d, _set(("diaSource", "psfFlux"), float("nan")))


def flux_inf(d: Donors) -> bytes:  # psfFlux -inf: allowed by the schema, stored
    return rewritten(d, _set(("diaSource", "psfFlux"), float("-inf")))


def history_ra_nan(d: Donors) -> bytes:  # an earlier detection's ra NaN: history is not validated, stored
    return rewritten(d, _set(("prvDiaSources", 0, "ra"), float("nan")), historic=True)


def history_time_nan(d: Donors) -> bytes:  # an earlier detection's midpointMjdTai NaN
    return rewritten(d, _set(("prvDiaSources", 0, "midpointMjdTai"), float("nan")), historic=True)


def forced_time_inf(d: Donors) -> bytes:  # a forced measurement's midpointMjdTai +inf
    return rewritten(d, _set(("prvDiaForcedSources", 0, "midpointMjdTai"), float("inf")), historic=True)


def band_bad_utf8(d: Donors) -> bytes:  # diaSource.band not UTF-8
    return bad_string(d, lambda r, m: r["diaSource"].__setitem__("band", m))


def history_band_bad_utf8(d: Donors) -> bytes:  # prvDiaSources[0].band not UTF-8
    return bad_string(d, lambda r, m: r["prvDiaSources"][0].__setitem__("band", m))


def forced_band_bad_utf8(d: Donors) -> bytes:  # prvDiaForcedSources[0].band not UTF-8
    return bad_string(d, lambda r, m: r["prvDiaForcedSources"][0].__setitem__("band", m))


def reason_bad_utf8(d: Donors) -> bytes:  # observation_reason not UTF-8: no table keeps it, so stored
    return bad_string(d, lambda r, m: r.__setitem__("observation_reason", m))


def target_bad_utf8(d: Donors) -> bytes:  # target_name not UTF-8: no table keeps it, so stored
    return bad_string(d, lambda r, m: r.__setitem__("target_name", m))


def band_overlong_utf8(d: Donors) -> bytes:  # band as an overlong encoding of '/'
    return bad_string(d, lambda r, m: r["diaSource"].__setitem__("band", m), b"\xc0\xaf")


def band_surrogate_utf8(d: Donors) -> bytes:  # band as an encoded UTF-16 surrogate
    return bad_string(d, lambda r, m: r["diaSource"].__setitem__("band", m), b"\xed\xa0\x80")


def band_with_nul(d: Donors) -> bytes:  # band "r\0": valid UTF-8, stored
    return rewritten(d, _set(("diaSource", "band"), "r\x00"))


def duplicate_history_rows(d: Donors) -> bytes:  # prvDiaSources holds its first detection twice: stored once
    def twice(record: dict[str, Any]) -> None:
        record["prvDiaSources"] = [record["prvDiaSources"][0], *record["prvDiaSources"]]

    return rewritten(d, twice, historic=True)


def history_repeats_trigger(d: Donors) -> bytes:  # prvDiaSources holds the triggering diaSource itself: stored once
    def itself(record: dict[str, Any]) -> None:
        record["prvDiaSources"] = [*record["prvDiaSources"], dict(record["diaSource"])]

    return rewritten(d, itself, historic=True)


def objectless_with_object_id(d: Donors) -> bytes:  # diaObjectId set, diaObject record missing: stored
    return rewritten(d, _set(("diaObject",), None), historic=True)


def no_object_at_all(d: Donors) -> bytes:  # neither diaObjectId nor ssObjectId nor diaObject: stored
    def orphan(record: dict[str, Any]) -> None:
        record["diaSource"]["diaObjectId"] = None
        record["diaSource"]["ssObjectId"] = None
        record["diaObject"] = None
        record["prvDiaSources"] = None
        record["prvDiaForcedSources"] = None

    return rewritten(d, orphan)


def negative_source_id(d: Donors) -> bytes:  # diaSourceId -7: a long the schema allows, stored
    return rewritten(d, _set(("diaSource", "diaSourceId"), -7))


def cutout_not_fits(d: Donors) -> bytes:  # cutouts of 100 KB random bytes, not FITS: bytes are bytes, stored
    return rewritten(d, _set(("cutoutScience",), np.random.default_rng(6).bytes(100_000)))


# --- container level -----------------------------------------------------------------------------------------


def empty_container(d: Donors) -> bytes:  # a container of the LSST schema with no record
    return in_container([])


def non_alert_container(d: Donors) -> bytes:  # a container of some other record
    schema = {"type": "record", "name": "Weather", "fields": [{"name": "t", "type": "double"}]}
    return in_container([{"t": 1.5}], schema)


def corrupt_sync_marker(d: Donors) -> bytes:  # the sync marker after the block differs from the header's
    data = bytearray(_container_of_one(d))
    data[-1] ^= 0xFF
    return bytes(data)


def snappy_codec(d: Donors) -> bytes:  # a codec the decoder does not read
    data = _container_of_one(d)
    assert data.count(b"avro.codec\x08null") == 1
    return data.replace(b"avro.codec\x08null", b"avro.codec\x0csnappy", 1)


def deflate_codec_garbage(d: Donors) -> bytes:  # deflate declared, the block is not deflate data
    data = _container_of_one(d)
    return data.replace(b"avro.codec\x08null", b"avro.codec\x0edeflate", 1)


def container_truncated(d: Donors) -> bytes:  # cut in the middle of its block
    data = _container_of_one(d)
    return data[: len(data) // 2]


def container_no_schema(d: Donors) -> bytes:  # magic, an empty metadata map, a sync marker and nothing else
    return container.MAGIC + b"\x00" + b"s" * 16


def container_schema_not_json(d: Donors) -> bytes:  # avro.schema is not JSON
    meta = zigzag(1) + zigzag(11) + b"avro.schema" + zigzag(5) + b"{oops" + b"\x00"
    return container.MAGIC + meta + b"s" * 16


def container_schema_not_utf8(d: Donors) -> bytes:  # avro.schema is not UTF-8
    meta = zigzag(1) + zigzag(11) + b"avro.schema" + zigzag(4) + BAD_UTF8 + b"\x00"
    return container.MAGIC + meta + b"s" * 16


def container_negative_block_length(d: Donors) -> bytes:  # a block declaring -9 bytes
    header = in_container([])
    return header + zigzag(1) + zigzag(-9) + b"\x00" * 32


def container_one_bad_of_two(d: Donors) -> bytes:  # two alerts, the second with NaN ra: the message is refused
    good, bad = d.record(), d.record()
    bad["diaSource"]["ra"] = float("nan")
    return in_container([good, bad])


def container_same_alert_twice(d: Donors) -> bytes:  # one diaSourceId twice in one message: dead-lettered
    record = d.record()
    return in_container([record, record])


def deflate_container(d: Donors) -> bytes:  # a valid alert in a deflate container: stored
    return in_container([d.record()], codec="deflate")


def lsstcam_real_container(d: Donors) -> bytes:  # a real LSSTCam alert as Fink re-serialised it: stored
    return sorted((d.data_dir / "alerts/lsst/lsstcam-2025-v9.0").glob("*.avro"))[0].read_bytes()


# --- Parquet level -------------------------------------------------------------------------------------------


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def parquet_not_alerts(d: Donors) -> bytes:  # a Parquet file of something else
    return _parquet(pa.table({"temperature": [1.0, 2.0]}))


def parquet_truncated(d: Donors) -> bytes:  # a Parquet file of alerts cut in the middle, PAR1 at both ends
    data = _parquet(pa.table({"diaSource": [{"diaSourceId": 5, "ra": 1.0, "dec": 2.0, "midpointMjdTai": 6e4}]}))
    return data[: len(data) // 2] + b"PAR1"


def parquet_no_rows(d: Donors) -> bytes:  # an alert table with no row
    source = pa.struct([("diaSourceId", pa.int64()), ("ra", pa.float64()), ("dec", pa.float64())])
    return _parquet(pa.table({"diaSource": pa.array([], source)}))


def parquet_garbage_footer(d: Donors) -> bytes:  # PAR1 + random bytes + PAR1
    return b"PAR1" + np.random.default_rng(7).bytes(300) + b"PAR1"


# --- ZTF level -----------------------------------------------------------------------------------------------


def _ztf_rewritten(d: Donors, change: Callable[[dict[str, Any], dict[str, Any]], None]) -> bytes:
    reader = fastavro.reader(io.BytesIO(d.ztf()))
    schema = json.loads(json.dumps(reader.writer_schema))
    records = list(reader)
    for record in records:
        change(record, schema)
    return in_container(records, schema)


def ztf_malformed_object_id(d: Donors) -> bytes:  # objectId "ZTF!!not-an-id"
    return _ztf_rewritten(d, lambda r, s: r.__setitem__("objectId", "ZTF!!not-an-id"))


def ztf_missing_candidate(d: Donors) -> bytes:  # candidate null (a writer schema that allows it)
    def drop(record: dict[str, Any], schema: dict[str, Any]) -> None:
        field = next(f for f in schema["fields"] if f["name"] == "candidate")
        if not isinstance(field["type"], list):
            field["type"] = ["null", field["type"]]
        record["candidate"] = None

    return _ztf_rewritten(d, drop)


def ztf_object_id_bad_utf8(d: Donors) -> bytes:  # objectId bytes not UTF-8
    data = d.ztf()
    name = fastavro.reader(io.BytesIO(data)).__next__()["objectId"].encode()
    assert data.count(name) >= 1
    return data.replace(name, b"ZTF" + b"\xff" * (len(name) - 3))


def ztf_corrupt_real_file(d: Donors) -> bytes:  # a real ZTF file corrupt upstream (sync marker)
    return sorted((d.data_dir / "alerts/ztf/corrupt").glob("*.avro"))[0].read_bytes()


def ztf_real_alert(d: Donors) -> bytes:  # a real ZTF v4.02 alert: stored
    return d.ztf()


# --- re-sends ------------------------------------------------------------------------------------------------


def resend_identical(d: Donors) -> bytes:  # an alert of the stream, byte for byte: a counted duplicate
    return d.good[0]


def resend_in_container(d: Donors) -> bytes:  # the same alert's record in a container: a counted duplicate
    sid, _ = wire.unframe(d.good[1])
    return in_container([record_of(d.good[1])], schemas.lsst_schema(sid))


def resend_conflicting(d: Donors) -> bytes:  # the same diaSourceId with another psfFlux: dead-lettered
    record = record_of(d.good[2])
    record["diaSource"]["psfFlux"] = 4242.0
    return wire.frame(SID, encode(record))


def resend_conflicting_history(d: Donors) -> bytes:  # the same alert with its history cut: dead-lettered
    record = record_of(d.good[3])
    record["prvDiaForcedSources"] = None
    record["prvDiaSources"] = None
    return wire.frame(SID, encode(record))


OVERSIZE = 600_000  # bytes added to the oversize kind; the test's max_message_bytes is below that

KINDS: list[tuple[Callable[[Donors], bytes], str]] = [
    (empty_payload, DEAD),
    (one_zero_byte, DEAD),
    (header_only, DEAD),
    (truncated_after_header, DEAD),
    (truncated_quarter, DEAD),
    (truncated_half, DEAD),
    (truncated_last_byte, DEAD),
    (wrong_magic_one, DEAD),
    (wrong_magic_ff, DEAD),
    (unknown_schema_id, DEAD),
    (negative_schema_id, DEAD),
    (schema_id_zero, DEAD),
    (all_zeros, DEAD),
    (text, DEAD),
    (json_alert, DEAD),
    (random_body, DEAD),
    (unterminated_id_varint, DEAD),
    (bitflip_in_id_varint, DEAD),
    (huge_string_length, DEAD),
    (negative_string_length, DEAD),
    (huge_array_count, DEAD),
    (negative_array_count_bad_size, DEAD),
    (union_branch_out_of_range, DEAD),
    (union_branch_negative, DEAD),
    (trailing_garbage, DEAD),
    (oversize, DEAD),
    (ra_as_numeric_string, DEAD),
    (ra_as_word, DEAD),
    (flux_as_string, DEAD),
    (time_as_string, DEAD),
    (id_as_string, DEAD),
    (null_ra, DEAD),
    (null_time, DEAD),
    (null_source_id, DEAD),
    (band_enum_out_of_range, DEAD),
    (minimal_lsst_schema, DEAD),
    (ra_nan, DEAD),
    (dec_inf, DEAD),
    (dec_minus_inf, DEAD),
    (ra_360, DEAD),
    (ra_negative, DEAD),
    (dec_91, DEAD),
    (time_nan, DEAD),
    (time_inf, DEAD),
    (time_before_1858, DEAD),
    (time_far_future, DEAD),
    (flux_nan, STORED),
    (flux_inf, STORED),
    (history_ra_nan, STORED),
    (history_time_nan, DEAD),
    (forced_time_inf, DEAD),
    (band_bad_utf8, DEAD),
    (history_band_bad_utf8, DEAD),
    (forced_band_bad_utf8, DEAD),
    (reason_bad_utf8, STORED),
    (target_bad_utf8, STORED),
    (band_overlong_utf8, DEAD),
    (band_surrogate_utf8, DEAD),
    (band_with_nul, STORED),
    (duplicate_history_rows, STORED),
    (history_repeats_trigger, STORED),
    (objectless_with_object_id, STORED),
    (no_object_at_all, STORED),
    (negative_source_id, STORED),
    (cutout_not_fits, STORED),
    (empty_container, DEAD),
    (non_alert_container, DEAD),
    (corrupt_sync_marker, DEAD),
    (snappy_codec, DEAD),
    (deflate_codec_garbage, DEAD),
    (container_truncated, DEAD),
    (container_no_schema, DEAD),
    (container_schema_not_json, DEAD),
    (container_schema_not_utf8, DEAD),
    (container_negative_block_length, DEAD),
    (container_one_bad_of_two, DEAD),
    (container_same_alert_twice, DEAD),
    (deflate_container, STORED),
    (lsstcam_real_container, STORED),
    (parquet_not_alerts, DEAD),
    (parquet_truncated, DEAD),
    (parquet_no_rows, DEAD),
    (parquet_garbage_footer, DEAD),
    (ztf_malformed_object_id, DEAD),
    (ztf_missing_candidate, DEAD),
    (ztf_object_id_bad_utf8, DEAD),
    (ztf_corrupt_real_file, DEAD),
    (ztf_real_alert, STORED),
    (resend_identical, DUPLICATE),
    (resend_in_container, DUPLICATE),
    (resend_conflicting, DEAD),
    (resend_conflicting_history, DEAD),
]


def corpus(donors: Donors) -> list[tuple[str, bytes, str]]:
    """Every kind's name, message and expected outcome, in ``KINDS`` order."""
    return [(kind.__name__, kind(donors), expected) for kind, expected in KINDS]
