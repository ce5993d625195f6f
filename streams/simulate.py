"""A simulator of LSST alerts in the current schema version, produced in Confluent wire format.

Objects of several classes (``streams.lightcurves``) are placed in a southern footprint denser towards the
Galactic plane; with host galaxies, supernovae sit at known offsets from real OpenNGC galaxies and nuclear
transients at their cores. Each object has a forced-photometry and detection history before the window
(``history_days``, up to a year) and is detected on visits in the window; every alert carries the object's
detections (prvDiaSources) and forced photometry (prvDiaForcedSources) of the previous 365 days, the
diaObject summary and three FITS cutouts. The same seed gives the same alerts and the same truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Producer

from nightjar.settings import Settings
from nightjar.streams import avro_encode, kafka, lightcurves, schemas, sky
from nightjar.streams.sim_packets import PacketHistory, PacketLayout

BANDS = ("u", "g", "r", "i", "z", "y")
START_MJD = 60950.0
VISIT_SECONDS = 39.0
ID_BASE = 170_000_000_000_000_000  # Rubin-like 64-bit ids, beyond 2**53
SEED_ID_STRIDE = 100_000_000_000  # each seed's ids in a range of their own: two simulations never share an id


def id_base(seed: int) -> int:
    """The first id of a simulation: different seeds make different alerts, objects and sources."""
    return ID_BASE + (seed % 10_000) * SEED_ID_STRIDE


HISTORY_WINDOW_DAYS = 365.0
CADENCE_DAYS = 3.0
DETECTION_SNR = 5.0
HOSTED = ("SNIa", "SNII", "NT")
HOST_FRACTION = 0.8
BLOCK = 256  # alerts drawn together (changing it changes what a seed gives)
NOISE_POOL = 1 << 21  # Gaussian noise values that cutouts take their noise from
BAND_NAMES = np.array(BANDS)
COLOUR = np.array([lightcurves.BAND_COLOUR[b] for b in BANDS])


@dataclass(frozen=True)
class SimConfig:
    """What the simulated survey looks like."""

    nights: int = 10
    history_days: float = 30.0  # history before the window: 365 for a year of packet history
    cutout_size: int = 16  # pixels; ~90 gives Rubin-sized (~37 KB) cutouts
    hosts: bool = True  # place supernovae and nuclear transients on OpenNGC galaxies


@dataclass
class SimObject:
    """A simulated object: its light-curve model, position, and host galaxy if any."""

    index: int
    model: lightcurves.Model
    ra: float
    dec: float
    host: str | None = None
    host_sep_arcsec: float | None = None
    host_z: float | None = None
    base: int = ID_BASE  # the simulation's first id (``id_base``)

    @property
    def dia_object_id(self) -> int | None:
        """The object's diaObjectId; None for a solar-system object."""
        return None if self.model.cls == "SSO" else self.base + 1_000_000 + self.index

    @property
    def ss_object_id(self) -> int | None:
        """The object's ssObjectId; None unless it is a solar-system object."""
        return self.base + 9_000_000 + self.index if self.model.cls == "SSO" else None


@dataclass(frozen=True)
class SimAlert:
    """One simulated alert: its Kafka key and payload, and the IDs and visit it carries."""

    key: bytes
    payload: bytes
    dia_object_id: int | None
    dia_source_id: int
    visit: int


def _visits(mjd: np.ndarray) -> np.ndarray:
    return ((mjd - 60000.0) * 86400 / VISIT_SECONDS).astype(np.int64)


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
    """``n_alerts`` alerts of a simulated survey; iterate ``alerts()``, then read ``truth()``.

    Alerts are made a block of ``BLOCK`` at a time with vectorised draws, and every history record is encoded
    once, when it is measured (``streams.avro_encode``), then spliced into each alert that carries it. Cutout
    noise is read at random offsets from one pool of Gaussian noise drawn at the start.
    """

    def __init__(self, n_alerts: int, seed: int = 42, config: SimConfig | None = None, sid: int | None = None):
        self.n_alerts = n_alerts
        self.seed = seed
        self.config = config or SimConfig()
        self.sid = sid or schemas.latest_schema_id()
        rng = np.random.default_rng(seed)
        self.base = id_base(seed)
        self.objects = _objects(max(1, n_alerts // 4), self.config, rng)
        for obj in self.objects:
            obj.base = self.base
        self.events = _schedule(self.objects, n_alerts, self.config, rng)
        self._dia = np.array([o.dia_object_id or 0 for o in self.objects], dtype=np.int64)  # 0: none
        self._ss = np.array([o.ss_object_id or 0 for o in self.objects], dtype=np.int64)
        self._ra = np.array([o.ra for o in self.objects])
        self._dec = np.array([o.dec for o in self.objects])
        alert = schemas.lsst_schema(self.sid)
        self._encoders = {
            name: avro_encode.RecordEncoder(schemas.record_schema(alert, name))
            for name in ("diaSource", "diaObject", "prvDiaForcedSources")
        }

    def place(self, ra: np.ndarray, dec: np.ndarray) -> None:
        """Move the objects to the given positions (degrees, one per object, in ``objects`` order): tests place
        alerts inside and outside a sky region (a skymap's credible region, a watchmap)."""
        ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
        if ra.shape != (len(self.objects),) or dec.shape != ra.shape:
            raise ValueError(f"give one position per object ({len(self.objects)})")
        for obj, r, d in zip(self.objects, ra, dec, strict=True):
            obj.ra, obj.dec = float(r), float(d)
        self._ra, self._dec = ra.copy(), dec.copy()

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

    def alerts(self) -> Iterator[SimAlert]:
        """The alerts in time order, each with the object's history of the previous 365 days."""
        layout = PacketLayout(self.sid, self.config.cutout_size)
        noise = np.random.default_rng([self.seed, 3]).normal(0.0, 50.0, NOISE_POOL).astype(">f4")
        tail = np.tile(layout.tail, (BLOCK, 1))
        last = {i: k for k, (_, i) in enumerate(self.events)}
        histories: dict[int, PacketHistory] = {}
        for block, first in enumerate(range(0, len(self.events), BLOCK)):
            events = self.events[first : first + BLOCK]
            rng = np.random.default_rng([self.seed, 2, block])
            new = [i for i in dict.fromkeys(i for _, i in events) if i not in histories]
            histories.update((i, PacketHistory()) for i in new)
            self._start(new, histories, rng)
            yield from self._block(first, events, histories, last, rng, layout, tail, noise)

    def _measure(self, which: np.ndarray, mjd: np.ndarray, band: np.ndarray, rng: np.random.Generator) -> tuple:
        """Measured fluxes and errors (nJy) of objects ``which`` at ``mjd`` in bands ``band`` (indices)."""
        distinct, row = np.unique(which, return_inverse=True)
        true = lightcurves.fluxes([self.objects[i].model for i in distinct], row, mjd, COLOUR[band])
        err = np.sqrt(np.abs(true) * 2.0 + 200.0**2)
        return true + rng.normal(0.0, err), err

    def _sources(self, which: np.ndarray, ids: np.ndarray, mjd: np.ndarray, band: np.ndarray, flux: np.ndarray,
                 err: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:  # fmt: skip
        """Encoded diaSources of objects ``which``."""
        n = len(which)
        ra, dec, dia, ss = self._ra[which], self._dec[which], self._dia[which], self._ss[which]
        cos_dec = np.maximum(np.cos(np.radians(dec)), 1e-3)
        columns = {
            "diaSourceId": ids,
            "visit": _visits(mjd),
            "detector": rng.integers(0, 189, n),
            "diaObjectId": dia,
            "ssObjectId": ss,
            "midpointMjdTai": mjd,
            "ra": (ra + rng.normal(0, 0.05 / 3600, n) / cos_dec) % 360,
            "dec": np.clip(dec + rng.normal(0, 0.05 / 3600, n), -90, 90),
            "raErr": 0.05 / 3600,
            "decErr": 0.05 / 3600,
            "x": rng.uniform(0, 4000, n),
            "y": rng.uniform(0, 4000, n),
            "psfFlux": flux,
            "psfFluxErr": err,
            "snr": np.abs(flux) / err,
            "scienceFlux": flux + 1000.0,
            "scienceFluxErr": err,
            "reliability": np.clip(rng.beta(8, 2, n), 0, 1),
            "band": BAND_NAMES[band],
            "isNegative": flux < 0,
            "extendedness": rng.uniform(0, 1, n),
            "timeProcessedMjdTai": mjd + 60.0 / 86400,
            "psfNdata": self.config.cutout_size**2,
            "bboxSize": self.config.cutout_size,
        }
        return self._encoders["diaSource"].encode(columns, n, nulls={"diaObjectId": dia == 0, "ssObjectId": ss == 0})

    def _forced(self, which: np.ndarray, ids: np.ndarray, mjd: np.ndarray, band: np.ndarray, flux: np.ndarray,
                err: np.ndarray) -> tuple[bytes, np.ndarray]:  # fmt: skip
        """Encoded forced photometry of objects ``which``."""
        columns = {
            "diaForcedSourceId": ids,
            "diaObjectId": self._dia[which],
            "ra": self._ra[which],
            "dec": self._dec[which],
            "visit": _visits(mjd),
            "detector": 0,
            "psfFlux": flux,
            "psfFluxErr": err,
            "midpointMjdTai": mjd,
            "band": BAND_NAMES[band],
            "timeProcessedMjdTai": mjd + 60.0 / 86400,
        }
        return self._encoders["prvDiaForcedSources"].encode(columns, len(which))

    def _start(self, new: list[int], histories: dict[int, PacketHistory], rng: np.random.Generator) -> None:
        """The history of objects ``new`` before the window: forced photometry every few days, detections
        where bright."""
        objs = [i for i in new if self.objects[i].model.cls != "SSO"]
        if self.config.history_days <= 0 or not objs:
            return
        # Epochs end before the window opens, so that histories stay in time order.
        base = np.arange(START_MJD - self.config.history_days, START_MJD - CADENCE_DAYS / 2, CADENCE_DAYS)
        n_epochs = len(base)
        if not n_epochs:
            return
        mjd = (base[None, :] + rng.uniform(0, CADENCE_DAYS / 2, len(objs))[:, None]).ravel()
        which = np.repeat(objs, n_epochs)
        epoch = np.tile(np.arange(n_epochs), len(objs))
        band = rng.integers(0, len(BANDS), len(mjd))
        flux, err = self._measure(which, mjd, band, rng)
        forced, forced_at = self._forced(
            which, self.base + 20_000_000_000 + which * 10_000 + epoch, mjd, band, flux, err
        )
        detected = np.flatnonzero(np.abs(flux) / err >= DETECTION_SNR)
        ids = self.base + 30_000_000_000 + which[detected] * 10_000 + epoch[detected]
        det, det_at = self._sources(
            which[detected], ids, mjd[detected], band[detected], flux[detected], err[detected], rng
        )
        # Records are grouped by object: cut each object's run out of the block's encodings.
        det_bounds = np.searchsorted(detected, np.arange(len(objs) + 1) * n_epochs)
        mjd_list, flux_list, band_list = mjd.tolist(), flux.tolist(), band.tolist()
        for o, i in enumerate(objs):
            h = histories[i]
            lo, hi = o * n_epochs, (o + 1) * n_epochs
            h.add_forced(forced[forced_at[lo] : forced_at[hi]], forced_at[lo : hi + 1], mjd_list[lo:hi])
            a, b = det_bounds[o], det_bounds[o + 1]
            rows = detected[a:b].tolist()
            h.add_detections(
                det[det_at[a] : det_at[b]],
                det_at[a : b + 1],
                [mjd_list[r] for r in rows],
                [band_list[r] for r in rows],
                [flux_list[r] for r in rows],
            )

    def _block(self, first: int, events: list[tuple[float, int]], histories: dict[int, PacketHistory],
               last: dict[int, int], rng: np.random.Generator, layout: PacketLayout, tail: np.ndarray,
               noise: np.ndarray) -> Iterator[SimAlert]:  # fmt: skip
        n = len(events)
        which = np.array([i for _, i in events], dtype=np.int64)
        mjd = np.array([t for t, _ in events])
        visit = _visits(mjd)
        band = visit % len(BANDS)
        flux, err = self._measure(which, mjd, band, rng)
        source_ids = self.base + 10_000_000_000 + first + np.arange(n, dtype=np.int64)
        sources, source_at = self._sources(which, source_ids, mjd, band, flux, err, rng)
        which_list = which.tolist()
        ordinal = []
        for i in which_list:
            ordinal.append(histories[i].alerts)
            histories[i].alerts += 1
        forced_ids = self.base + 20_000_000_000 + which * 10_000 + 5_000 + np.asarray(ordinal, dtype=np.int64)
        forced, forced_at = self._forced(which, forced_ids, mjd, band, flux, err)
        self._cutouts(tail[:n], layout, flux, rng, noise)

        windows: list[tuple[int, bytes, int, bytes]] = []
        first_mjd: list[float] = []
        in_window: list[int] = []  # detections in each alert's window, its own included
        bands: list[int] = []
        fluxes: list[float] = []
        mjd_list, flux_list, band_list = mjd.tolist(), flux.tolist(), band.tolist()
        for j, i in enumerate(which_list):
            h = histories[i]
            n_det, det, n_forced, prv_forced, d = h.window(mjd_list[j] - HISTORY_WINDOW_DAYS)
            windows.append((n_det, det, n_forced, prv_forced))
            first_mjd.append(h.detection_mjd[d] if n_det else mjd_list[j])
            h.add_detections(sources[source_at[j] : source_at[j + 1]], source_at[j : j + 2], [mjd_list[j]],
                             [band_list[j]], [flux_list[j]])  # fmt: skip
            h.add_forced(forced[forced_at[j] : forced_at[j + 1]], forced_at[j : j + 2], [mjd_list[j]])
            in_window.append(n_det + 1)
            bands.extend(h.detection_band[d:])
            fluxes.extend(h.detection_flux[d:])
            if last[i] == first + j:
                del histories[i]
        has_object = self._dia[which] != 0
        objects, object_at = self._dia_objects(
            which, mjd, np.array(first_mjd), np.array(in_window), np.array(bands), np.array(fluxes), has_object
        )
        object_row = np.cumsum(has_object) - 1

        for j, i in enumerate(which_list):
            n_det, det, n_forced, prv_forced = windows[j]
            pieces: list[bytes | memoryview] = [layout.header]
            for slot in layout.head:
                if isinstance(slot, bytes):
                    pieces.append(slot)
                elif slot == "diaSourceId":
                    pieces.append(avro_encode.varint(int(source_ids[j])))
                elif slot == "diaSource":
                    pieces.append(sources[source_at[j] : source_at[j + 1]])
                elif slot == "prvDiaSources":
                    pieces.append(layout.branch[slot] + avro_encode.array(n_det, det) if n_det else layout.null[slot])
                elif slot == "prvDiaForcedSources":
                    pieces.append(
                        layout.branch[slot] + avro_encode.array(n_forced, prv_forced) if n_forced else layout.null[slot]
                    )
                elif has_object[j]:
                    r = object_row[j]
                    pieces.append(layout.branch[slot] + objects[object_at[r] : object_at[r + 1]])
                else:
                    pieces.append(layout.null[slot])
            pieces.append(memoryview(tail[j]))
            dia, ss = int(self._dia[i]), int(self._ss[i])
            yield SimAlert(str(dia or ss).encode(), b"".join(pieces), dia or None, int(source_ids[j]), int(visit[j]))

    def _dia_objects(
        self,
        which: np.ndarray,
        mjd: np.ndarray,
        first_mjd: np.ndarray,
        in_window: np.ndarray,
        bands: np.ndarray,
        fluxes: np.ndarray,
        has_object: np.ndarray,
    ) -> tuple[bytes, np.ndarray]:
        """Encoded diaObjects of the alerts with one: summaries of the detections in each alert's window,
        given as ``in_window`` (count per alert) runs of ``bands`` and ``fluxes``."""
        n = len(which)
        alert = np.repeat(np.arange(n), in_window)
        key = alert * len(BANDS) + bands
        order = np.argsort(key, kind="stable")
        key, values = key[order], fluxes[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
        shape = (n, len(BANDS))
        count, total = np.zeros(shape), np.zeros(shape)
        low, high = np.zeros(shape), np.zeros(shape)
        cells = key[starts]
        count.flat[cells] = np.diff(np.r_[starts, len(key)])
        if len(key):
            total.flat[cells] = np.add.reduceat(values, starts)
            low.flat[cells] = np.minimum.reduceat(values, starts)
            high.flat[cells] = np.maximum.reduceat(values, starts)
        rows = np.flatnonzero(has_object)
        columns: dict[str, Any] = {
            "diaObjectId": self._dia[which[rows]],
            "validityStartMjdTai": mjd[rows],
            "ra": self._ra[which[rows]],
            "dec": self._dec[which[rows]],
            "nDiaSources": in_window[rows],
            "firstDiaSourceMjdTai": first_mjd[rows],
            "lastDiaSourceMjdTai": mjd[rows],
        }
        nulls: dict[str, np.ndarray] = {}
        for k, b in enumerate(BANDS):
            c = count[rows, k]
            columns[f"{b}_psfFluxNdata"] = c.astype(np.int64)
            columns[f"{b}_psfFluxMean"] = total[rows, k] / np.maximum(c, 1)
            columns[f"{b}_psfFluxMin"] = low[rows, k]
            columns[f"{b}_psfFluxMax"] = high[rows, k]
            for stat in ("Mean", "Min", "Max"):
                nulls[f"{b}_psfFlux{stat}"] = c == 0
        return self._encoders["diaObject"].encode(columns, len(rows), nulls)

    def _cutouts(self, tail: np.ndarray, layout: PacketLayout, flux: np.ndarray, rng: np.random.Generator,
                 noise: np.ndarray) -> None:  # fmt: skip
        """Write the block's difference, science and template images into the FITS files laid out in ``tail``:
        a Gaussian point source on noise, as big-endian float32. The noise is a window of the pool at a random
        offset; the source is added within 10 pixels of the centre (beyond, it is below 1e-9 of its peak)."""
        size = self.config.cutout_size
        pixels = size * size
        centre = (size - 1) / 2
        lo, hi = max(0, int(np.floor(centre)) - 10), min(size, int(np.ceil(centre)) + 11)
        y, x = np.mgrid[lo:hi, lo:hi] - centre
        psf = np.exp(-(x**2 + y**2) / 4.0) / 20.0
        pool = noise.view(np.uint8)
        n = len(flux)
        for at, level in zip(layout.cutout_at, (flux, flux + 1000.0, np.full(n, 1000.0)), strict=True):
            offsets = (4 * rng.integers(0, len(noise) - pixels, n)).tolist()
            for j, o in enumerate(offsets):
                tail[j, at : at + 4 * pixels] = pool[o : o + 4 * pixels]
            image = tail[:, at : at + 4 * pixels].view(">f4").reshape(n, size, size)
            image[:, lo:hi, lo:hi] += (level[:, None, None] * psf[None]).astype(np.float32)


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
    sent = produce_simulation(settings, topic, simulation, rate)
    if truth is not None:
        pq.write_table(simulation.truth(), truth)
    return sent


def produce_simulation(settings: Settings, topic: str, simulation: Simulation, rate: float | None = None) -> int:
    """Produce every alert of a prepared ``Simulation`` (objects placed with ``Simulation.place``) to ``topic``;
    with ``rate`` (alerts/s) each visit is sent as one burst."""
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
        kafka.produce_one(producer, topic, alert.payload, alert.key)
        sent += 1
    remaining = producer.flush(60)
    producer.close()
    if remaining:
        raise RuntimeError(f"{remaining} simulated alerts were not delivered to {topic}")
    return sent
