"""Stored values do not depend on the order in which a light curve's alerts arrive.

A real ZTF light curve (ZTF18abaqwse, 44 detections over a month in ``ampel-2018-v3.0``) is cut into one alert
per detection, each carrying only the previous 10 days as ``prv_candidates`` (so no single packet holds the whole
light curve, as ZTF's 30-day packets do not over a season). Ingested in time order, newest first, and shuffled, in
batches of a few alerts, the lake must hold the same detections and the same object row.

Two real alerts of one object (ZTF21abvawaj in ``pittgoogle-2021-v3.3``), the second carrying the first's
detection in its ``prv_candidates``, as ZTF sends them: the history copy of a detection is not the candidate (ZTF
rounds its floats to 6 digits, writes ``isdiffpos`` as ``1`` for ``t``, gives no ``drb``), so the lake keeps the
alert's own candidate for every detection whose alert it received, whichever copy came first.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake import read
from nightjar.pipelines import lake_write, stages
from nightjar.settings import Settings
from nightjar.streams.decode import RawBatch, decode_batch

SOURCE = "alerts/ztf/ampel-2018-v3.0/595213712915010008.avro"
WINDOW_DAYS = 10.0
PROVENANCE = {paths.KAFKA_TOPIC, paths.KAFKA_PARTITION, paths.KAFKA_OFFSET}


def split_into_alerts(path: Path) -> list[bytes]:
    """One Avro container per detection of the alert's light curve, oldest first."""
    reader = fastavro.reader(io.BytesIO(path.read_bytes()))
    schema = reader.writer_schema
    alert: Any = next(iter(reader))
    template = alert["candidate"]
    detections = [c for c in [*(alert["prv_candidates"] or []), template] if c["candid"] is not None]
    detections.sort(key=lambda c: c["jd"])
    limits = [c for c in alert["prv_candidates"] or [] if c["candid"] is None]
    out = []
    for det in detections:
        candidate = {**template, **{k: v for k, v in det.items() if k in template}}
        earlier = [c for c in [*detections, *limits] if det["jd"] - WINDOW_DAYS <= c["jd"] < det["jd"]]
        one = {**alert, "candid": det["candid"], "candidate": candidate, "prv_candidates": earlier or None}
        buf = io.BytesIO()
        fastavro.writer(buf, schema, [one])
        out.append(buf.getvalue())
    return out


def ingest_in_order(settings: Settings, alerts: list[bytes], order: np.ndarray, batch: int = 4) -> None:
    for start in range(0, len(order), batch):
        picked = [alerts[i] for i in order[start : start + batch]]
        raw = RawBatch(picked, ["ztf"] * len(picked), [0] * len(picked), [int(i) for i in order[start : start + batch]])
        decoded = stages.locate(decode_batch(raw), settings.partition_order)
        assert not decoded.rejects
        lake_write.commit_to_lake(decoded, settings.home, {f"test:{start}": start})


def stored(home: Path, table: str, key: str) -> list[dict[str, Any]]:
    """The table as readers see it (``objects``: each object's newest state), without the columns that record how
    it was written (Kafka provenance; ``stateSeq``, the write that stored an object's state)."""
    dt = DeltaTable(str(paths.table_dir(home, table)))
    rows = read.table_dataset(dt, table).to_table().sort_by(key).to_pylist()
    return [{k: v for k, v in r.items() if k not in PROVENANCE | {paths.STATE_SEQ}} for r in rows]


def packet_detections(alerts: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Every detection (with a ``candid``) of the packets, by candid: the alert's own candidate where one of the
    alerts is that detection's, else a packet history copy."""
    found: dict[int, dict[str, Any]] = {}
    for alert in alerts:
        for c in alert["prv_candidates"] or []:
            if c["candid"] is not None:
                found.setdefault(c["candid"], c)
    for alert in alerts:
        found[alert["candidate"]["candid"]] = alert["candidate"]
    return found


@pytest.mark.slow
@pytest.mark.timeout(120)  # three ingests of the same alerts: ~20 s on a quiet 2-core machine
def test_features_and_rows_do_not_depend_on_arrival_order(settings: Settings, data_dir: Path, tmp_path: Path) -> None:
    alerts = split_into_alerts(data_dir / SOURCE)
    assert len(alerts) == 44
    orders = {
        "oldest first": np.arange(len(alerts)),
        "newest first": np.arange(len(alerts))[::-1],
        "shuffled": np.random.default_rng(7).permutation(len(alerts)),
    }
    results = {}
    for name, order in orders.items():
        run_settings = settings.model_copy(update={"home": tmp_path / name.replace(" ", "-")})
        ingest_in_order(run_settings, alerts, order)
        results[name] = {
            "objects": stored(run_settings.home, paths.OBJECTS, "diaObjectId"),
            "sources": stored(run_settings.home, paths.SOURCES, "diaSourceId"),
            "forced": stored(run_settings.home, paths.FORCED_SOURCES, paths.FORCED_KEY),
        }
    reference = results["oldest first"]
    (obj,) = reference["objects"]
    assert obj["objectId"] == "ZTF18abaqwse"
    # nDiaSources counts the stored light curve, as nSources does, not the newest packet's window.
    assert obj["nDiaSources"] == obj["nSources"] == obj["ncand"] == len(reference["sources"]) == 44
    # Every detection here arrived as an alert of its own: each row is that alert's candidate.
    assert not any(r[paths.FROM_HISTORY] for r in reference["sources"])
    # The newest alert's packet state, whatever arrived last.
    newest = max(r["midpointMjdTai"] for r in reference["sources"])
    assert obj["lastAlertMjdTai"] == pytest.approx(newest)
    for band in ("g", "r"):
        fluxes = [r["psfFlux"] for r in reference["sources"] if r["band"] == band]
        assert obj[f"{band}_nSources"] == len(fluxes) > 0
        assert obj[f"{band}_maxFlux"] == pytest.approx(max(fluxes), rel=1e-6)
    # Both mean magnitudes, from the raw packet. Every detection of this variable is a negative subtraction
    # (isdiffpos 'f'): the mean of magpsf is defined, the magnitude of the (negative) mean flux is not.
    packet = packet_detections([next(iter(fastavro.reader(io.BytesIO((data_dir / SOURCE).read_bytes()))))])
    assert len(packet) == 44 and {c["isdiffpos"] for c in packet.values()} == {"f"}
    for fid, band in ((1, "g"), (2, "r")):
        assert (obj[f"{band}_meanPsfMag"], obj[f"{band}_meanMag"]) == mean_magnitudes(packet, fid)
    assert (round(obj["g_meanPsfMag"], 4), round(obj["r_meanPsfMag"], 4)) == (17.3062, 13.9907)
    for name in ("newest first", "shuffled"):
        assert results[name] == reference, name


def mean_magnitudes(detections: dict[int, dict[str, Any]], fid: int) -> tuple[Any, Any]:
    """The mean of magpsf and the magnitude of the mean flux (None when not positive) of one band's detections,
    from the packets with numpy, each to within float32 rounding of the stored fluxes."""
    dets = [c for c in detections.values() if c["fid"] == fid]
    mags = np.array([c["magpsf"] for c in dets], dtype=np.float64)
    sign = np.array([-1.0 if c["isdiffpos"] in ("f", "0") else 1.0 for c in dets])
    mean_flux = float(np.mean(sign * 10 ** ((31.4 - mags) / 2.5)))
    mean_mag = pytest.approx(31.4 - 2.5 * np.log10(mean_flux), abs=1e-5) if mean_flux > 0 else None
    return pytest.approx(float(np.mean(mags)), abs=1e-5), mean_mag


TWO_ALERTS = "alerts/ztf/pittgoogle-2021-v3.3"
TWO_ALERTS_OBJECT = "ZTF21abvawaj"


def test_a_detection_is_stored_as_its_own_alert_whichever_copy_arrives_first(
    settings: Settings, data_dir: Path, tmp_path: Path
) -> None:
    alerts: list[bytes] = []
    packets: list[dict[str, Any]] = []
    for path in sorted((data_dir / TWO_ALERTS).glob("*.avro")):
        for record in fastavro.reader(io.BytesIO(path.read_bytes())):
            if record["objectId"] == TWO_ALERTS_OBJECT:  # type: ignore[call-overload, index]
                alerts.append(path.read_bytes())
                packets.append(record)  # type: ignore[arg-type]
    order = np.argsort([p["candidate"]["jd"] for p in packets])
    first, second = (packets[i] for i in order)
    assert first["candidate"]["candid"] in {c["candid"] for c in second["prv_candidates"]}
    copy = next(c for c in second["prv_candidates"] if c["candid"] == first["candidate"]["candid"])
    assert copy["rb"] != first["candidate"]["rb"] and "drb" not in copy  # the packets do differ
    results = {}
    for name, picked in (("in time order", order), ("newest first", order[::-1])):
        run_settings = settings.model_copy(update={"home": tmp_path / name.replace(" ", "-")})
        ingest_in_order(run_settings, alerts, picked, batch=1)
        results[name] = {
            "objects": stored(run_settings.home, paths.OBJECTS, "diaObjectId"),
            "sources": stored(run_settings.home, paths.SOURCES, "diaSourceId"),
        }
    assert results["newest first"] == results["in time order"]
    sources = {r["diaSourceId"]: r for r in results["in time order"]["sources"]}
    expected = packet_detections([first, second])
    assert sorted(sources) == sorted(expected) and len(sources) == 15
    for candid, det in expected.items():
        row = sources[candid]
        # reliability is rb, the score every packet carries for every detection; drb describes the alert.
        assert row["reliability"] == row["rb"] == pytest.approx(det["rb"], rel=1e-7), candid
        assert "drb" not in row
        assert row[paths.FROM_HISTORY] == (candid not in {first["candid"], second["candid"]})
    own = sources[first["candidate"]["candid"]]
    assert (own["rb"], own["magpsf"], own["isdiffpos"]) == (
        pytest.approx(first["candidate"]["rb"], rel=1e-7),
        pytest.approx(first["candidate"]["magpsf"], rel=1e-7),
        first["candidate"]["isdiffpos"],
    )
    (obj,) = results["in time order"]["objects"]
    assert obj["nDiaSources"] == obj["nSources"] == 15
    for fid, band in ((1, "g"), (2, "r")):
        assert (obj[f"{band}_meanPsfMag"], obj[f"{band}_meanMag"]) == mean_magnitudes(expected, fid)
    assert obj["drb"] == pytest.approx(second["candidate"]["drb"], rel=1e-7)
