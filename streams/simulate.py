"""A simulator of LSST alerts in the current schema version, produced in Confluent wire format.

Objects of a few light-curve classes are scattered over a southern footprint and detected in successive visits;
each alert carries the object's previous detections in this simulation (prvDiaSources), forced photometry, the
diaObject summary and three small FITS cutouts. Deterministic for a given seed.
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits
from confluent_kafka import Producer

from nightjar.settings import Settings
from nightjar.streams import kafka, schemas, wire

CLASSES = ("SN", "VS", "AGN", "FAST")
BANDS = ("u", "g", "r", "i", "z", "y")
START_MJD = 60950.0
NIGHTS = 10
VISIT_SECONDS = 39.0
ID_BASE = 170_000_000_000_000_000  # Rubin-like 64-bit ids, beyond 2**53
CUTOUT_SIZE = 16
MAX_HISTORY = 30


@dataclass
class SimObject:
    dia_object_id: int
    cls: str
    ra: float
    dec: float
    peak_flux: float  # nJy
    t0: float  # MJD of peak or phase zero
    period: float
    detections: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SimAlert:
    key: bytes
    payload: bytes
    dia_object_id: int
    dia_source_id: int


def _default(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        return None
    return {"long": 0, "int": 0, "float": 0.0, "double": 0.0, "boolean": False, "string": ""}.get(avro_type)


@functools.cache
def _templates(sid: int) -> dict[str, dict[str, Any]]:
    """A record of each alert part with every field at its null or zero default."""
    alert = schemas.lsst_schema(sid)
    return {
        name: {f["name"]: _default(f["type"]) for f in schemas.record_schema(alert, name)["fields"]}
        for name in ("diaSource", "diaObject", "prvDiaForcedSources")
    }


@functools.cache
def _fits_header() -> bytes:
    hdu = fits.PrimaryHDU(np.zeros((CUTOUT_SIZE, CUTOUT_SIZE), dtype=np.float32))
    return hdu.header.tostring().encode()


def fits_cutout(rng: np.random.Generator, flux: float) -> bytes:
    """A small, valid single-HDU FITS image: a Gaussian point source of ``flux`` on noise."""
    y, x = np.mgrid[:CUTOUT_SIZE, :CUTOUT_SIZE] - (CUTOUT_SIZE - 1) / 2
    image = flux / 20.0 * np.exp(-(x**2 + y**2) / 4.0) + rng.normal(0.0, 50.0, (CUTOUT_SIZE, CUTOUT_SIZE))
    data = image.astype(">f4").tobytes()
    data += b"\0" * (-len(data) % 2880)
    return _fits_header() + data


def _light_curve(obj: SimObject, mjd: float, band: str, rng: np.random.Generator) -> float:
    colour = {"u": 0.5, "g": 0.9, "r": 1.0, "i": 0.95, "z": 0.85, "y": 0.8}[band]
    dt = mjd - obj.t0
    if obj.cls == "SN":
        shape = np.exp(-dt / 25.0) if dt > 0 else np.exp(-((dt / 8.0) ** 2))
    elif obj.cls == "VS":
        shape = 0.6 + 0.4 * np.sin(2 * np.pi * dt / obj.period)
    elif obj.cls == "AGN":
        shape = 0.7 + 0.3 * np.sin(dt / 17.0) + rng.normal(0, 0.05)
    else:  # FAST: hours-long flare
        shape = np.exp(-abs(dt) / 0.3)
    return float(obj.peak_flux * colour * shape)


def _make_objects(n: int, rng: np.random.Generator) -> list[SimObject]:
    # Footprint: dec in [-75, +5], denser towards the Galactic plane through a second, clustered population.
    ra = rng.uniform(0, 360, n)
    sin_dec = rng.uniform(np.sin(np.radians(-75)), np.sin(np.radians(5)), n)
    dec = np.degrees(np.arcsin(sin_dec))
    plane = rng.random(n) < 0.3
    ra[plane] = rng.normal(265, 20, plane.sum()) % 360
    dec[plane] = np.clip(rng.normal(-29, 8, plane.sum()), -75, 5)
    classes = rng.choice(CLASSES, n, p=[0.4, 0.3, 0.2, 0.1])
    return [
        SimObject(
            dia_object_id=ID_BASE + 1_000_000 + i,
            cls=str(classes[i]),
            ra=float(ra[i]),
            dec=float(dec[i]),
            peak_flux=float(10 ** rng.uniform(3.3, 5.0)),
            t0=float(START_MJD + rng.uniform(0, NIGHTS)),
            period=float(rng.uniform(0.2, 5.0)),
        )
        for i in range(n)
    ]


def _schedule(objects: list[SimObject], n_alerts: int, rng: np.random.Generator) -> list[tuple[float, int]]:
    """(MJD, object index) of every detection, in time order, exactly ``n_alerts`` long."""
    counts = rng.poisson(3.0, len(objects)) + 1
    while counts.sum() < n_alerts:
        counts += 1
    events: list[tuple[float, int]] = []
    for i, (obj, c) in enumerate(zip(objects, counts, strict=True)):
        span = 0.5 if obj.cls == "FAST" else NIGHTS
        centre = obj.t0 if obj.cls == "FAST" else START_MJD
        nights = np.floor(rng.uniform(0, span, c)) if span >= 1 else np.zeros(c)
        t = (centre if span < 1 else START_MJD) + nights + rng.uniform(0.05, 0.35, c)
        events.extend((float(x), i) for x in t)
    events.sort()
    return events[:n_alerts]


def generate_alerts(n_alerts: int, seed: int = 42, sid: int | None = None) -> Iterator[SimAlert]:
    """Yield ``n_alerts`` simulated alerts in time order (wire format, schema ``sid``, default the latest)."""
    sid = sid or schemas.latest_schema_id()
    writer = schemas.lsst_schema(sid)
    templates = _templates(sid)
    rng = np.random.default_rng(seed)
    objects = _make_objects(max(1, n_alerts // 4), rng)
    for k, (mjd, i) in enumerate(_schedule(objects, n_alerts, rng)):
        obj = objects[i]
        visit = int((mjd - 60000.0) * 86400 / VISIT_SECONDS)
        band = BANDS[visit % len(BANDS)]
        flux = _light_curve(obj, mjd, band, rng)
        err = float(np.sqrt(max(flux, 0.0) * 2.0 + 200.0**2))
        observed = flux + float(rng.normal(0, err))
        source = dict(templates["diaSource"])
        source.update(
            diaSourceId=ID_BASE + 10_000_000_000 + k,
            visit=visit,
            detector=int(rng.integers(0, 189)),
            diaObjectId=obj.dia_object_id,
            midpointMjdTai=mjd,
            ra=obj.ra + float(rng.normal(0, 0.05 / 3600)) / max(np.cos(np.radians(obj.dec)), 1e-3),
            dec=obj.dec + float(rng.normal(0, 0.05 / 3600)),
            raErr=0.05 / 3600,
            decErr=0.05 / 3600,
            x=float(rng.uniform(0, 4000)),
            y=float(rng.uniform(0, 4000)),
            psfFlux=observed,
            psfFluxErr=err,
            snr=abs(observed) / err,
            scienceFlux=observed + 1000.0,
            scienceFluxErr=err,
            reliability=float(np.clip(rng.beta(8, 2), 0, 1)),
            band=band,
            isNegative=observed < 0,
            extendedness=float(rng.uniform(0, 1)),
            timeProcessedMjdTai=mjd + 60.0 / 86400,
            psfNdata=CUTOUT_SIZE**2,
            bboxSize=CUTOUT_SIZE,
        )
        history = obj.detections[-MAX_HISTORY:]
        forced = []
        for j, prev in enumerate(history[-5:]):
            fs = dict(templates["prvDiaForcedSources"])
            fs.update(
                diaForcedSourceId=prev["diaSourceId"] + 5_000_000_000,
                diaObjectId=obj.dia_object_id,
                ra=obj.ra,
                dec=obj.dec,
                visit=prev["visit"] - 1 - j,
                detector=prev["detector"],
                psfFlux=prev["psfFlux"] * 0.98,
                psfFluxErr=prev["psfFluxErr"],
                midpointMjdTai=prev["midpointMjdTai"] - 0.02,
                band=prev["band"],
                timeProcessedMjdTai=prev["timeProcessedMjdTai"],
            )
            forced.append(fs)
        all_sources = [*history, source]
        dia_object = dict(templates["diaObject"])
        dia_object.update(
            diaObjectId=obj.dia_object_id,
            validityStartMjdTai=mjd,
            ra=obj.ra,
            dec=obj.dec,
            nDiaSources=len(obj.detections) + 1,
            firstDiaSourceMjdTai=(obj.detections[0] if obj.detections else source)["midpointMjdTai"],
            lastDiaSourceMjdTai=mjd,
        )
        for b in BANDS:
            fluxes = [s["psfFlux"] for s in all_sources if s["band"] == b]
            dia_object[f"{b}_psfFluxNdata"] = len(fluxes)
            if fluxes:
                dia_object[f"{b}_psfFluxMean"] = float(np.mean(fluxes))
                dia_object[f"{b}_psfFluxMin"] = float(np.min(fluxes))
                dia_object[f"{b}_psfFluxMax"] = float(np.max(fluxes))
        alert = {
            "diaSourceId": source["diaSourceId"],
            "diaSource": source,
            "prvDiaSources": history or None,
            "prvDiaForcedSources": forced or None,
            "diaObject": dia_object,
            "cutoutDifference": fits_cutout(rng, observed),
            "cutoutScience": fits_cutout(rng, observed + 1000.0),
            "cutoutTemplate": fits_cutout(rng, 1000.0),
        }
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, alert)
        obj.detections.append(source)
        yield SimAlert(
            key=str(obj.dia_object_id).encode(),
            payload=wire.frame(sid, buf.getvalue()),
            dia_object_id=obj.dia_object_id,
            dia_source_id=source["diaSourceId"],
        )


def truth_table(n_alerts: int, seed: int = 42) -> pa.Table:
    """The class of every simulated object (same seed, same objects as ``generate_alerts``)."""
    rng = np.random.default_rng(seed)
    objects = _make_objects(max(1, n_alerts // 4), rng)
    return pa.table(
        {
            "diaObjectId": pa.array([o.dia_object_id for o in objects], pa.int64()),
            "class": [o.cls for o in objects],
            "ra": [o.ra for o in objects],
            "dec": [o.dec for o in objects],
        }
    )


def produce(
    settings: Settings,
    topic: str,
    n_alerts: int,
    seed: int = 42,
    rate: float | None = None,
    truth: Path | None = None,
) -> int:
    """Produce ``n_alerts`` simulated alerts to ``topic``; ``rate`` (alerts/s) paces them in visit-like bursts."""
    kafka.ensure_topics(settings, [topic])
    producer = Producer(kafka.producer_config(settings))
    burst = 1000
    started = time.monotonic()
    sent = 0
    for alert in generate_alerts(n_alerts, seed):
        _produce_one(producer, topic, alert.key, alert.payload)
        sent += 1
        if rate and sent % burst == 0:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                producer.flush()
                time.sleep(ahead)
    remaining = producer.flush(60)
    producer.close()
    if remaining:
        raise RuntimeError(f"{remaining} simulated alerts were not delivered to {topic}")
    if truth is not None:
        pq.write_table(truth_table(n_alerts, seed), truth)
    return sent


def _produce_one(producer: Producer, topic: str, key: bytes, payload: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value=payload, key=key)
            break
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.1)
    producer.poll(0)
