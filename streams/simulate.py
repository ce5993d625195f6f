"""A simulator of LSST alerts in the current schema version, produced in Confluent wire format.

Objects of several classes (``streams.lightcurves``) are placed in a southern footprint denser towards the
Galactic plane; with host galaxies, supernovae sit at known offsets from real OpenNGC galaxies and nuclear
transients at their cores. Each object has a forced-photometry and detection history before the window
(``history_days``, up to a year) and is detected on visits in the window; every alert carries the object's
detections (prvDiaSources) and forced photometry (prvDiaForcedSources) of the previous 365 days, the
diaObject summary and three FITS cutouts. The same seed gives the same alerts and the same truth.
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
from nightjar.streams import kafka, lightcurves, schemas, sky, wire

BANDS = ("u", "g", "r", "i", "z", "y")
START_MJD = 60950.0
VISIT_SECONDS = 39.0
ID_BASE = 170_000_000_000_000_000  # Rubin-like 64-bit ids, beyond 2**53
HISTORY_WINDOW_DAYS = 365.0
CADENCE_DAYS = 3.0
DETECTION_SNR = 5.0
HOSTED = ("SNIa", "SNII", "NT")
HOST_FRACTION = 0.8


@dataclass(frozen=True)
class SimConfig:
    """What the simulated survey looks like."""

    nights: int = 10
    history_days: float = 30.0  # history before the window: 365 for a year of packet history
    cutout_size: int = 16  # pixels; ~90 gives Rubin-sized (~37 KB) cutouts
    hosts: bool = True  # place supernovae and nuclear transients on OpenNGC galaxies


@dataclass
class SimObject:
    index: int
    model: lightcurves.Model
    ra: float
    dec: float
    host: str | None = None
    host_sep_arcsec: float | None = None
    host_z: float | None = None
    detections: list[dict[str, Any]] = field(default_factory=list)
    forced: list[dict[str, Any]] = field(default_factory=list)
    started: bool = False

    @property
    def dia_object_id(self) -> int | None:
        return None if self.model.cls == "SSO" else ID_BASE + 1_000_000 + self.index

    @property
    def ss_object_id(self) -> int | None:
        return ID_BASE + 9_000_000 + self.index if self.model.cls == "SSO" else None


@dataclass(frozen=True)
class SimAlert:
    key: bytes
    payload: bytes
    dia_object_id: int | None
    dia_source_id: int
    visit: int


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
def _fits_header(size: int) -> bytes:
    return fits.PrimaryHDU(np.zeros((size, size), dtype=np.float32)).header.tostring().encode()


def fits_cutout(rng: np.random.Generator, flux: float, size: int = 16) -> bytes:
    """A valid single-HDU FITS image: a Gaussian point source of ``flux`` on noise."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    image = flux / 20.0 * np.exp(-(x**2 + y**2) / 4.0) + rng.normal(0.0, 50.0, (size, size))
    data = image.astype(">f4").tobytes()
    return _fits_header(size) + data + b"\0" * (-len(data) % 2880)


def _objects(n: int, config: SimConfig, rng: np.random.Generator) -> list[SimObject]:
    classes = rng.choice(lightcurves.CLASSES, n, p=lightcurves.WEIGHTS)
    ra, dec = sky.footprint(n, rng)
    objects = [
        SimObject(i, lightcurves.draw(str(c), START_MJD, config.nights, rng), float(ra[i]), float(dec[i]))
        for i, c in enumerate(classes)
    ]
    hostable = [o for o in objects if o.model.cls in HOSTED and rng.random() < HOST_FRACTION]
    if config.hosts and hostable:
        galaxies = sky.openngc_galaxies()
        pick = rng.integers(0, galaxies.num_rows, len(hostable))
        size = galaxies["semi_major_arcsec"].to_numpy()[pick]
        # Supernovae within 0.2–1.5 semi-major axes of the centre, nuclear transients within 0.2".
        nuclear = np.array([o.model.cls == "NT" for o in hostable])
        sep = np.where(nuclear, rng.uniform(0.0, 0.2, len(hostable)), size * rng.uniform(0.2, 1.5, len(hostable)))
        new_ra, new_dec = sky.offset_position(
            galaxies["ra"].to_numpy()[pick], galaxies["dec"].to_numpy()[pick], sep, rng.uniform(0, 360, len(hostable))
        )
        names = galaxies["name"].to_pylist()
        redshifts = galaxies["redshift"].to_pylist()
        for j, obj in enumerate(hostable):
            obj.ra, obj.dec = float(new_ra[j]), float(new_dec[j])
            obj.host, obj.host_sep_arcsec, obj.host_z = names[pick[j]], float(sep[j]), redshifts[pick[j]]
    return objects


def _schedule(
    objects: list[SimObject], n_alerts: int, config: SimConfig, rng: np.random.Generator
) -> list[tuple[float, int]]:
    """(visit MJD, object index) of every detection in the window, in time order, ``n_alerts`` long."""
    counts = np.where([o.model.cls == "SSO" for o in objects], 1, rng.poisson(3.0, len(objects)) + 1)
    while counts.sum() < n_alerts:
        counts[[o.model.cls != "SSO" for o in objects]] += 1
    events: list[tuple[float, int]] = []
    for obj, c in zip(objects, counts, strict=True):
        if obj.model.cls == "FAST":
            t = obj.model.t0 + rng.uniform(-0.3, 0.3, c)
        else:
            t = START_MJD + np.floor(rng.uniform(0, config.nights, c)) + rng.uniform(0.05, 0.35, c)
        slot = VISIT_SECONDS / 86400
        events.extend((float(np.floor(x / slot) * slot), obj.index) for x in t)
    events.sort()
    return events[:n_alerts]


class Simulation:
    """``n_alerts`` alerts of a simulated survey; iterate ``alerts()``, then read ``truth()``."""

    def __init__(self, n_alerts: int, seed: int = 42, config: SimConfig | None = None, sid: int | None = None):
        self.n_alerts = n_alerts
        self.seed = seed
        self.config = config or SimConfig()
        self.sid = sid or schemas.latest_schema_id()
        rng = np.random.default_rng(seed)
        self.objects = _objects(max(1, n_alerts // 4), self.config, rng)
        self.events = _schedule(self.objects, n_alerts, self.config, rng)
        self._rng = rng

    def truth(self) -> pa.Table:
        """Class, position and host of every object that has alerts (the simulation's ground truth)."""
        used = sorted({i for _, i in self.events})
        objs = [self.objects[i] for i in used]
        return pa.table(
            {
                "diaObjectId": pa.array([o.dia_object_id for o in objs], pa.int64()),
                "ssObjectId": pa.array([o.ss_object_id for o in objs], pa.int64()),
                "class": pa.array([o.model.cls for o in objs], pa.string()),
                "ra": pa.array([o.ra for o in objs], pa.float64()),
                "dec": pa.array([o.dec for o in objs], pa.float64()),
                "host": pa.array([o.host for o in objs], pa.string()),
                "host_sep_arcsec": pa.array([o.host_sep_arcsec for o in objs], pa.float64()),
                "host_z": pa.array([o.host_z for o in objs], pa.float64()),
            }
        )

    def _measure(self, obj: SimObject, mjd: float, band: str, rng: np.random.Generator) -> tuple[float, float]:
        true = lightcurves.flux(obj.model, mjd, band)
        err = float(np.sqrt(abs(true) * 2.0 + 200.0**2))
        return true + float(rng.normal(0, err)), err

    def _source(self, obj: SimObject, source_id: int, mjd: float, band: str, flux: float, err: float,
                rng: np.random.Generator) -> dict[str, Any]:  # fmt: skip
        visit = int((mjd - 60000.0) * 86400 / VISIT_SECONDS)
        cos_dec = max(np.cos(np.radians(obj.dec)), 1e-3)
        source = dict(_templates(self.sid)["diaSource"])
        source.update(
            diaSourceId=source_id,
            visit=visit,
            detector=int(rng.integers(0, 189)),
            diaObjectId=obj.dia_object_id,
            ssObjectId=obj.ss_object_id,
            midpointMjdTai=mjd,
            ra=(obj.ra + float(rng.normal(0, 0.05 / 3600)) / cos_dec) % 360,
            dec=float(np.clip(obj.dec + float(rng.normal(0, 0.05 / 3600)), -90, 90)),
            raErr=0.05 / 3600,
            decErr=0.05 / 3600,
            x=float(rng.uniform(0, 4000)),
            y=float(rng.uniform(0, 4000)),
            psfFlux=flux,
            psfFluxErr=err,
            snr=abs(flux) / err,
            scienceFlux=flux + 1000.0,
            scienceFluxErr=err,
            reliability=float(np.clip(rng.beta(8, 2), 0, 1)),
            band=band,
            isNegative=flux < 0,
            extendedness=float(rng.uniform(0, 1)),
            timeProcessedMjdTai=mjd + 60.0 / 86400,
            psfNdata=self.config.cutout_size**2,
            bboxSize=self.config.cutout_size,
        )
        return source

    def _forced(self, obj: SimObject, mjd: float, band: str, flux: float, err: float, n: int) -> dict[str, Any]:
        fs = dict(_templates(self.sid)["prvDiaForcedSources"])
        fs.update(
            diaForcedSourceId=ID_BASE + 20_000_000_000 + obj.index * 10_000 + n,
            diaObjectId=obj.dia_object_id or 0,
            ra=obj.ra,
            dec=obj.dec,
            visit=int((mjd - 60000.0) * 86400 / VISIT_SECONDS),
            detector=0,
            psfFlux=flux,
            psfFluxErr=err,
            midpointMjdTai=mjd,
            band=band,
            timeProcessedMjdTai=mjd + 60.0 / 86400,
        )
        return fs

    def _start(self, obj: SimObject) -> None:
        """The object's history before the window: forced photometry every few days, detections where bright."""
        obj.started = True
        if obj.model.cls == "SSO" or self.config.history_days <= 0:
            return
        rng = np.random.default_rng([self.seed, obj.index, 1])
        first = START_MJD - self.config.history_days
        epochs = np.arange(first, START_MJD, CADENCE_DAYS) + rng.uniform(0, CADENCE_DAYS / 2)
        for k, mjd in enumerate(epochs):
            band = BANDS[int(rng.integers(0, len(BANDS)))]
            flux, err = self._measure(obj, float(mjd), band, rng)
            obj.forced.append(self._forced(obj, float(mjd), band, flux, err, k))
            if abs(flux) / err >= DETECTION_SNR:
                source_id = ID_BASE + 30_000_000_000 + obj.index * 10_000 + k
                obj.detections.append(self._source(obj, source_id, float(mjd), band, flux, err, rng))

    def alerts(self) -> Iterator[SimAlert]:
        writer = schemas.lsst_schema(self.sid)
        size = self.config.cutout_size
        for k, (mjd, i) in enumerate(self.events):
            obj = self.objects[i]
            if not obj.started:
                self._start(obj)
            rng = np.random.default_rng([self.seed, i, 2, k])
            visit = int((mjd - 60000.0) * 86400 / VISIT_SECONDS)
            band = BANDS[visit % len(BANDS)]
            flux, err = self._measure(obj, mjd, band, rng)
            source = self._source(obj, ID_BASE + 10_000_000_000 + k, mjd, band, flux, err, rng)
            since = mjd - HISTORY_WINDOW_DAYS
            history = [s for s in obj.detections if s["midpointMjdTai"] >= since]
            forced = [f for f in obj.forced if f["midpointMjdTai"] >= since]
            alert = {
                "diaSourceId": source["diaSourceId"],
                "diaSource": source,
                "prvDiaSources": history or None,
                "prvDiaForcedSources": forced or None,
                "diaObject": self._dia_object(obj, source, history) if obj.dia_object_id is not None else None,
                "cutoutDifference": fits_cutout(rng, flux, size),
                "cutoutScience": fits_cutout(rng, flux + 1000.0, size),
                "cutoutTemplate": fits_cutout(rng, 1000.0, size),
            }
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, writer, alert)
            obj.detections.append(source)
            obj.forced.append(self._forced(obj, mjd, band, flux, err, 5000 + k % 5000))
            key = obj.dia_object_id or obj.ss_object_id or 0
            yield SimAlert(str(key).encode(), wire.frame(self.sid, buf.getvalue()), obj.dia_object_id,
                           source["diaSourceId"], visit)  # fmt: skip

    def _dia_object(self, obj: SimObject, source: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
        everything = [*history, source]
        dia_object = dict(_templates(self.sid)["diaObject"])
        dia_object.update(
            diaObjectId=obj.dia_object_id,
            validityStartMjdTai=source["midpointMjdTai"],
            ra=obj.ra,
            dec=obj.dec,
            nDiaSources=len(everything),
            firstDiaSourceMjdTai=everything[0]["midpointMjdTai"],
            lastDiaSourceMjdTai=source["midpointMjdTai"],
        )
        for b in BANDS:
            fluxes = [s["psfFlux"] for s in everything if s["band"] == b]
            dia_object[f"{b}_psfFluxNdata"] = len(fluxes)
            if fluxes:
                dia_object[f"{b}_psfFluxMean"] = float(np.mean(fluxes))
                dia_object[f"{b}_psfFluxMin"] = float(np.min(fluxes))
                dia_object[f"{b}_psfFluxMax"] = float(np.max(fluxes))
        return dia_object


def generate_alerts(n_alerts: int, seed: int = 42, config: SimConfig | None = None) -> Iterator[SimAlert]:
    """Yield ``n_alerts`` simulated alerts in time order."""
    yield from Simulation(n_alerts, seed, config).alerts()


def produce(
    settings: Settings,
    topic: str,
    n_alerts: int,
    seed: int = 42,
    rate: float | None = None,
    truth: Path | None = None,
    config: SimConfig | None = None,
) -> int:
    """Produce ``n_alerts`` alerts to ``topic``; with ``rate`` (alerts/s) each visit is sent as one burst."""
    simulation = Simulation(n_alerts, seed, config)
    kafka.ensure_topics(settings, [topic])
    producer = Producer(kafka.producer_config(settings))
    started = time.monotonic()
    sent = 0
    visit = None
    for alert in simulation.alerts():
        if rate and alert.visit != visit:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:  # the next visit is not due yet
                producer.flush()
                time.sleep(ahead)
            visit = alert.visit
        _produce_one(producer, topic, alert.key, alert.payload)
        sent += 1
    remaining = producer.flush(60)
    producer.close()
    if remaining:
        raise RuntimeError(f"{remaining} simulated alerts were not delivered to {topic}")
    if truth is not None:
        pq.write_table(simulation.truth(), truth)
    return sent


def _produce_one(producer: Producer, topic: str, key: bytes, payload: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value=payload, key=key)
            break
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.1)
    producer.poll(0)
