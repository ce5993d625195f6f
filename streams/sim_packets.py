"""How the simulator (``streams.simulate``) lays out an alert's Avro bytes: each object's packet history kept
encoded between its alerts, and where each part of an alert goes under the writer schema."""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

from nightjar.streams import avro_encode, schemas, wire


@functools.cache
def _fits_header(size: int) -> bytes:
    return fits.PrimaryHDU(np.zeros((size, size), dtype=np.float32)).header.tostring().encode()


@dataclass
class PacketHistory:
    """An object's packet history so far, already encoded: detections and forced photometry in time order."""

    detections: bytearray = field(default_factory=bytearray)
    detection_starts: list[int] = field(default_factory=list)
    detection_mjd: list[float] = field(default_factory=list)
    detection_band: list[int] = field(default_factory=list)
    detection_flux: list[float] = field(default_factory=list)
    forced: bytearray = field(default_factory=bytearray)
    forced_starts: list[int] = field(default_factory=list)
    forced_mjd: list[float] = field(default_factory=list)
    alerts: int = 0

    def add_detections(self, data: bytes, offsets: np.ndarray, mjd: list, band: list, flux: list) -> None:
        """Append encoded detections (``offsets``: where each starts in ``data``, then its end) and their values."""
        self.detection_starts.extend((offsets[:-1] - offsets[0] + len(self.detections)).tolist())
        self.detections += data
        self.detection_mjd.extend(mjd)
        self.detection_band.extend(band)
        self.detection_flux.extend(flux)

    def add_forced(self, data: bytes, offsets: np.ndarray, mjd: list) -> None:
        """Append encoded forced photometry (``offsets`` as for ``add_detections``) and its times."""
        self.forced_starts.extend((offsets[:-1] - offsets[0] + len(self.forced)).tolist())
        self.forced += data
        self.forced_mjd.extend(mjd)

    def window(self, since: float) -> tuple[int, bytes, int, bytes, int]:
        """Detections and forced photometry from ``since`` on: (count, encoded items) of each, and the index
        of the first detection in the window."""
        d = bisect.bisect_left(self.detection_mjd, since)
        f = bisect.bisect_left(self.forced_mjd, since)
        n_det, n_forced = len(self.detection_mjd) - d, len(self.forced_mjd) - f
        det = bytes(self.detections[self.detection_starts[d] :]) if n_det else b""
        forced = bytes(self.forced[self.forced_starts[f] :]) if n_forced else b""
        return n_det, det, n_forced, forced, d


class PacketLayout:
    """Where each part of an alert goes in its Avro encoding, from the writer schema: the head (id, diaSource,
    histories, diaObject) is assembled per alert; the tail (cutouts and the null fields among them) is a
    fixed-size byte row per alert, filled a block at a time."""

    SLOTS = ("diaSourceId", "diaSource", "prvDiaSources", "prvDiaForcedSources", "diaObject")
    CUTOUTS = ("cutoutDifference", "cutoutScience", "cutoutTemplate")

    def __init__(self, sid: int, cutout_size: int):
        schema = schemas.lsst_schema(sid)
        self.header = wire.HEADER.pack(wire.MAGIC, sid)
        self.head: list[str | bytes] = []  # slot names and constant bytes, in order
        self.branch: dict[str, bytes] = {}  # the union branch byte of each nullable slot's value
        self.null: dict[str, bytes] = {}
        self.cutout_bytes = len(_fits_header(cutout_size)) + _padded(4 * cutout_size**2)
        template = bytearray()
        self.cutout_at: list[int] = []  # offsets of each cutout's image data in the tail
        for f in schema["fields"]:
            name, avro_type = f["name"], f["type"]
            nullable = isinstance(avro_type, list) and "null" in avro_type
            if nullable:
                self.null[name] = avro_encode.varint(avro_type.index("null"))
                self.branch[name] = avro_encode.varint(next(i for i, t in enumerate(avro_type) if t != "null"))
            if name in self.CUTOUTS:
                template += self.branch[name] + avro_encode.varint(self.cutout_bytes)
                self.cutout_at.append(len(template) + len(_fits_header(cutout_size)))
                template += _fits_header(cutout_size) + bytes(self.cutout_bytes - len(_fits_header(cutout_size)))
            elif not nullable and name not in self.SLOTS:
                raise NotImplementedError(f"schema {sid}: the simulator does not fill the required field {name}")
            elif self.cutout_at:
                if name in self.SLOTS:
                    raise NotImplementedError(f"schema {sid}: {name} after the cutouts")
                template += self.null[name]
            elif name in self.SLOTS:
                self.head.append(name)
            else:
                self.head.append(self.null[name])
        if len(self.cutout_at) != len(self.CUTOUTS):
            raise NotImplementedError(f"schema {sid}: cutouts are not the last fields")
        self.tail = np.frombuffer(bytes(template), dtype=np.uint8)


def _padded(n: int) -> int:
    return n + (-n % 2880)  # FITS files come in 2880-byte blocks
