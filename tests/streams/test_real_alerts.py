"""Every real alert under ../shared/data decodes, and equals fastavro's reading of the same bytes."""

from __future__ import annotations

import io
import math
from pathlib import Path

import fastavro
import pyarrow.compute as pc
import pytest

from nightjar.streams import wire
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.files import AlertFileError, read_payloads
from nightjar.streams.ztf_model import ZTF_ID_FLAG

from ..fastavro_reference import assert_decoded_as_fastavro, assert_same_row, fastavro_record

ZTF_FOLDERS = [
    "ampel-2018-early",
    "ampel-2018-v3.0",
    "fink-2020-v3.3",
    "pittgoogle-2021-v3.3",
    "boom-2024-v4.02",
    "ztf-avro-alert-samples",
]


def reference_records(path: Path) -> list[dict]:
    data = path.read_bytes()
    if data[:1] == b"\x00":
        return [fastavro_record(data)]
    return [r for r in fastavro.reader(io.BytesIO(data)) if isinstance(r, dict)]


def lsst_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "alerts/lsst").rglob("*.avro"))


def test_every_lsst_alert_equals_fastavro(data_dir: Path) -> None:
    files = lsst_files(data_dir)
    assert len(files) == 104
    for path in files:
        out = decode_batch(RawBatch.from_payloads(read_payloads(path, wire_format=False)))
        assert out.rejects == [], path
        refs = reference_records(path)
        assert out.sources.num_rows == len(refs)
        assert_decoded_as_fastavro(out, refs, path.name)
        assert set(out.sources["survey"].to_pylist()) == {"lsst"}


def test_reserialised_lsst_files_with_extra_fields(data_dir: Path) -> None:
    path = sorted((data_dir / "alerts/lsst/lsstcam-2025-v9.0").glob("*.avro"))[0]
    (payload,) = read_payloads(path)  # as wire format, for replays to Kafka
    assert wire.unframe(payload)[0] == 900
    out = decode_batch(RawBatch.from_payloads([payload]))
    assert out.rejects == [] and out.sources.num_rows == 1
    assert out.sources["diaSourceId"].to_pylist() == [reference_records(path)[0]["diaSource"]["diaSourceId"]]


@pytest.mark.parametrize("folder", ZTF_FOLDERS)
def test_every_ztf_alert_decodes_and_maps(data_dir: Path, folder: str) -> None:
    files = sorted((data_dir / "alerts/ztf" / folder).glob("*.avro"))
    assert files
    payloads = [p for f in files for p in read_payloads(f)]
    out = decode_batch(RawBatch.from_payloads(payloads))
    assert out.rejects == []
    refs = [r for f in files for r in reference_records(f)]
    assert out.sources.num_rows == len(refs)
    sources = out.sources.to_pylist()
    objects = out.objects.to_pylist()
    for row, obj, ref in zip(sources, objects, refs, strict=True):
        cand = ref["candidate"]
        # Fields every packet carries for a detection are on its source row; the alert-only ones on its object.
        history_fields = {k for p in ref["prv_candidates"] or [] for k in p} or set(cand)
        assert not set(row) & (set(cand) - history_fields)
        assert_same_row(
            {**obj, **row}, {k: v for k, v in cand.items() if k not in ("candid", "ra", "dec")}, ref["objectId"]
        )
        assert row["reliability"] == pytest.approx(cand["rb"], rel=1e-6)
        assert row["diaSourceId"] == ref["candid"] == cand["candid"]
        assert row["objectId"] == ref["objectId"]
        assert row["diaObjectId"] >= ZTF_ID_FLAG
        assert row["midpointMjdTai"] == pytest.approx(cand["jd"] - 2400000.5, abs=1e-9)
        assert row["band"] == {1: "g", 2: "r", 3: "i"}[cand["fid"]]
        sign = -1 if cand["isdiffpos"] in ("f", "0") else 1
        flux = sign * 10 ** ((31.4 - cand["magpsf"]) / 2.5)
        assert row["psfFlux"] == pytest.approx(flux, rel=1e-6)
        assert row["survey"] == "ztf"
    detections = sum(1 for r in refs for p in r["prv_candidates"] or [] if p["candid"] is not None)
    limits = sum(1 for r in refs for p in r["prv_candidates"] or [] if p["candid"] is None)
    forced = sum(len(r.get("fp_hists") or []) for r in refs)
    assert out.prv_sources.num_rows == detections
    assert out.forced_sources.num_rows == limits + forced
    cutouts = out.cutouts.to_pylist()
    for row, ref in zip(cutouts, refs, strict=True):
        assert row["cutoutScience"] == (ref["cutoutScience"] or {}).get("stampData")
    # One object per alert, its id the same for alerts of the same ZTF object.
    ids = dict(zip(out.objects["objectId"].to_pylist(), out.objects["diaObjectId"].to_pylist(), strict=True))
    assert len(set(ids.values())) == len(ids)


def test_ztf_forced_photometry_in_njy(data_dir: Path) -> None:
    (path,) = sorted((data_dir / "alerts/ztf/boom-2024-v4.02").glob("*.avro"))
    out = decode_batch(RawBatch.from_payloads(read_payloads(path)))
    forced = out.forced_sources.filter(pc.equal(out.forced_sources["kind"], "forced_phot")).to_pylist()
    ref = reference_records(path)[0]["fp_hists"]
    assert len(forced) == len(ref) == 10
    for row, fp in zip(forced, ref, strict=True):
        if fp["forcediffimflux"] in (None, -99999.0):
            assert row["psfFlux"] is None or math.isnan(row["psfFlux"])
        else:
            expected = fp["forcediffimflux"] * 10 ** ((31.4 - fp["magzpsci"]) / 2.5)
            assert row["psfFlux"] == pytest.approx(expected, rel=1e-6)


def test_corrupt_ztf_files_are_rejected_with_reasons(data_dir: Path) -> None:
    files = sorted((data_dir / "alerts/ztf/corrupt").glob("*.avro"))
    assert len(files) == 5
    payloads = [f.read_bytes() for f in files]
    out = decode_batch(RawBatch.from_payloads(payloads))
    assert out.accepted == 0
    assert [r.index for r in out.rejects] == [0, 1, 2, 3, 4]
    for reject in out.rejects:
        assert "sync marker" in reject.reason or "truncated" in reject.reason or "corrupt" in reject.reason
    for path in files:
        with pytest.raises(AlertFileError):
            read_payloads(path)
