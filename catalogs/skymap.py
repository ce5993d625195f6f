"""HEALPix probability skymaps (gravitational-wave, GRB, neutrino localisations): read, check and index.

A skymap arrives as FITS, either multi-order (``ORDERING = NUNIQ``, LVK's BAYESTAR/Bilby layout: ``UNIQ``,
``PROBDENSITY`` in sr⁻¹ and optionally ``DISTMU``, ``DISTSIGMA``, ``DISTNORM``) or flat (``NESTED`` or ``RING``:
``PROB`` per pixel and the same optional distance layers). Both become the same multi-order cells: a ``UNIQ``
index and a probability density per cell. The 50 % and 90 % credible regions are MOCs made by mocpy from those
cells (densest cells first), as the LVK and Lasair define them.

Matching an alert looks up the cell holding its order-29 HEALPix index (``SkymapIndex.lookup``): sorted ranges and
a binary search over whole Arrow columns, no per-alert Python.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import healpy as hp
import numpy as np
from astropy.io import fits
from astropy.time import Time
from mocpy import MOC

from nightjar.catalogs.watchmap import AreaIndex
from nightjar.errors import UserError

MAX_ORDER = 29
CREDIBLE_LEVELS = (50, 90)  # the contours kept, in percent
SUM_TOLERANCE = 0.01  # a map whose probabilities sum to 1 ± this is accepted
DISTANCE_LAYERS = ("DISTMU", "DISTSIGMA", "DISTNORM")


class SkymapError(UserError):
    """A file that is not a usable HEALPix probability map: said plainly, nothing stored."""


@dataclass
class Skymap:
    """A probability map as multi-order cells, with what its header says about the event."""

    uniq: np.ndarray  # int64 NUNIQ index per cell: 4·4^order + nested pixel
    probdensity: np.ndarray  # float64, per steradian
    distmu: np.ndarray | None = None  # Mpc (location parameter of the distance ansatz per direction)
    distsigma: np.ndarray | None = None  # Mpc
    distnorm: np.ndarray | None = None  # Mpc⁻²
    event_id: str | None = None  # the header's OBJECT (e.g. S200129m, G361581)
    event_time: datetime | None = None  # DATE-OBS or MJD-OBS
    ordering: str = "NUNIQ"  # as read: NUNIQ, NESTED or RING
    header: dict[str, object] = field(default_factory=dict)  # DISTMEAN, DISTSTD, INSTRUME, CREATOR…

    @property
    def orders(self) -> np.ndarray:
        """The HEALPix order of each cell."""
        return (np.log2(self.uniq // 4) // 2).astype(np.int64)

    @property
    def probability(self) -> np.ndarray:
        """The probability in each cell (density × cell area)."""
        return self.probdensity * area_sr(self.orders)

    @property
    def has_distance(self) -> bool:
        """True when the map holds the distance ansatz (distmu, distsigma, distnorm)."""
        return self.distmu is not None and self.distsigma is not None and self.distnorm is not None

    def credible_moc(self, percent: int) -> MOC:
        """The smallest region holding ``percent`` % of the probability (the densest cells first), as a MOC."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return MOC.from_valued_healpix_cells(
                self.uniq.astype(np.uint64),
                self.probability,
                max_depth=int(self.orders.max()),
                cumul_from=0.0,
                cumul_to=percent / 100.0,
            )


def area_sr(order: np.ndarray | int) -> np.ndarray:
    """The area of one HEALPix cell of each ``order``, in steradians."""
    return 4.0 * np.pi / (12.0 * 4.0 ** np.asarray(order, np.float64))


def _time(header: fits.Header) -> datetime | None:
    try:
        if "DATE-OBS" in header:
            return Time(str(header["DATE-OBS"]), format="isot", scale="utc").to_datetime(timezone=UTC)
        if "MJD-OBS" in header:
            return Time(float(header["MJD-OBS"]), format="mjd", scale="utc").to_datetime(timezone=UTC)
    except ValueError:
        return None
    return None


def _healpix_hdu(hdus: fits.HDUList, where: str) -> fits.BinTableHDU:
    for hdu in hdus[1:]:
        if isinstance(hdu, fits.BinTableHDU) and (
            str(hdu.header.get("PIXTYPE", "")).upper() == "HEALPIX" or "ORDERING" in hdu.header
        ):
            return hdu
    raise SkymapError(f"{where}: not a HEALPix map (no table extension with PIXTYPE = 'HEALPIX')")


def _column(hdu: fits.BinTableHDU, names: tuple[str, ...], where: str) -> np.ndarray | None:
    have = {n.upper(): n for n in hdu.columns.names}
    for name in names:
        if name in have:
            return np.asarray(hdu.data[have[name]], np.float64).ravel()
    return None


def read_skymap(path: Path) -> Skymap:
    """Read and check a HEALPix probability map (multi-order NUNIQ, or flat NESTED/RING).

    Raises ``SkymapError`` for a file that is not FITS, not HEALPix, of an unknown ordering, with probabilities
    that are negative, not finite or do not sum to 1.
    """
    where = str(path)
    if not path.is_file():
        raise SkymapError(f"{where}: no such file")
    try:
        with fits.open(path, memmap=False) as hdus:
            hdu = _healpix_hdu(hdus, where)
            header = hdu.header
            ordering = str(header.get("ORDERING", "")).strip().upper()
            if ordering == "NUNIQ":
                skymap = _multi_order(hdu, where)
            elif ordering in ("NESTED", "RING"):
                skymap = _flat(hdu, ordering, where)
            else:
                raise SkymapError(f"{where}: unknown HEALPix ordering {ordering or '(none)'!r}: NUNIQ, NESTED or RING")
            skymap.ordering = ordering
            skymap.event_id = str(header["OBJECT"]).strip() if "OBJECT" in header else None
            skymap.event_time = _time(header)
            skymap.header = {
                k: header[k]
                for k in ("DISTMEAN", "DISTSTD", "INSTRUME", "CREATOR", "ORIGIN", "REFERENC")
                if k in header
            }
    except OSError as exc:
        raise SkymapError(f"{where}: not a FITS file ({exc})") from None
    check(skymap, where)
    return skymap


def _multi_order(hdu: fits.BinTableHDU, where: str) -> Skymap:
    names = {n.upper(): n for n in hdu.columns.names}
    if "UNIQ" not in names:
        raise SkymapError(f"{where}: ORDERING = NUNIQ but no UNIQ column")
    density = _column(hdu, ("PROBDENSITY",), where)
    uniq = np.asarray(hdu.data[names["UNIQ"]], np.int64).ravel()
    if density is None:
        prob = _column(hdu, ("PROB", "PROBABILITY"), where)
        if prob is None:
            raise SkymapError(f"{where}: a multi-order map needs a PROBDENSITY (or PROB) column")
        density = prob / area_sr(_orders(uniq, where))
    layers = {name: _column(hdu, (name,), where) for name in DISTANCE_LAYERS}
    return Skymap(uniq, density, layers["DISTMU"], layers["DISTSIGMA"], layers["DISTNORM"])


def _orders(uniq: np.ndarray, where: str) -> np.ndarray:
    if uniq.size == 0 or np.any(uniq < 4):
        raise SkymapError(f"{where}: UNIQ indices must be >= 4 (4·4^order + pixel)")
    return (np.log2(uniq // 4) // 2).astype(np.int64)


def _flat(hdu: fits.BinTableHDU, ordering: str, where: str) -> Skymap:
    names = [n.upper() for n in hdu.columns.names]
    wanted = [names.index(n) for n in ("PROB", *DISTANCE_LAYERS) if n in names] or [0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the HDU read_skymap has open: healpy leaves a file it opened itself unclosed when it refuses the map
            columns = hp.read_map(hdu, field=wanted, nest=True, dtype=np.float64, verbose=False)
        except TypeError:  # healpy without the ``verbose`` argument
            columns = hp.read_map(hdu, field=wanted, nest=True, dtype=np.float64)
        except Exception as exc:
            raise SkymapError(f"{where}: not a readable {ordering} HEALPix map ({exc})") from None
    columns = np.atleast_2d(columns)
    prob = columns[0]
    npix = prob.size
    try:
        nside = hp.npix2nside(npix)
    except ValueError:
        raise SkymapError(f"{where}: {npix} pixels is not a HEALPix map size (12·nside²)") from None
    order = int(np.log2(nside))
    uniq = 4 * 4**order + np.arange(npix, dtype=np.int64)
    density = np.where(prob == hp.UNSEEN, 0.0, prob) / area_sr(order)
    layers: dict[str, np.ndarray | None] = dict.fromkeys(DISTANCE_LAYERS)
    present = [n for n in ("PROB", *DISTANCE_LAYERS) if n in names]
    for i, name in enumerate(present):
        if name in DISTANCE_LAYERS:
            layers[name] = columns[i]
    return Skymap(uniq, density, layers["DISTMU"], layers["DISTSIGMA"], layers["DISTNORM"])


def check(skymap: Skymap, where: str) -> None:
    """Refuse a map whose cells or probabilities make no sense."""
    orders = _orders(skymap.uniq, where)
    if np.any(orders > MAX_ORDER):
        raise SkymapError(f"{where}: HEALPix order above {MAX_ORDER}")
    if not np.all(np.isfinite(skymap.probdensity)) or np.any(skymap.probdensity < 0):
        raise SkymapError(f"{where}: probabilities must be finite and non-negative")
    total = float(np.sum(skymap.probability))
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise SkymapError(f"{where}: the probabilities sum to {total:.6g}, not 1 (is this a probability map?)")
    starts, ends = ranges29(skymap.uniq)
    order = np.argsort(starts)
    if np.any(starts[order][1:] < ends[order][:-1]):
        raise SkymapError(f"{where}: cells overlap (a UNIQ index repeats or covers another)")


def ranges29(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each NUNIQ cell as a range ``[start, end)`` of nested order-29 indices."""
    uniq = np.asarray(uniq, np.int64)
    orders = (np.log2(uniq // 4) // 2).astype(np.int64)
    pixels = uniq - 4 * (np.int64(1) << (2 * orders))
    shift = 2 * (MAX_ORDER - orders)
    return pixels << shift, (pixels + 1) << shift


@dataclass
class SkymapIndex:
    """A stored skymap ready for matching: its cells as sorted order-29 ranges and its credible regions."""

    starts: np.ndarray
    ends: np.ndarray
    probdensity: np.ndarray
    distmu: np.ndarray | None
    distsigma: np.ndarray | None
    distnorm: np.ndarray | None
    regions: dict[int, AreaIndex]  # credible level (percent) -> its area

    @property
    def nbytes(self) -> int:
        """The bytes of the index's arrays and regions, counted against the cache budget."""
        arrays = [self.starts, self.ends, self.probdensity, self.distmu, self.distsigma, self.distnorm]
        return sum(a.nbytes for a in arrays if a is not None) + sum(r.nbytes for r in self.regions.values())

    @classmethod
    def of(cls, skymap: Skymap, regions: dict[int, MOC]) -> SkymapIndex:
        """The index of a skymap and its credible regions (level in percent to MOC)."""
        starts, ends = ranges29(skymap.uniq)
        order = np.argsort(starts)

        def sort(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.asarray(a, np.float64)[order]

        density = sort(skymap.probdensity)
        assert density is not None
        return cls(
            starts[order],
            ends[order],
            density,
            sort(skymap.distmu),
            sort(skymap.distsigma),
            sort(skymap.distnorm),
            {level: AreaIndex.of(moc) for level, moc in regions.items()},
        )

    def cells(self, hpx29: np.ndarray) -> np.ndarray:
        """The cell (position in the sorted arrays) holding each order-29 index; -1 outside the map."""
        hpx29 = np.asarray(hpx29, np.int64)
        at = np.searchsorted(self.starts, hpx29, side="right") - 1
        inside = (at >= 0) & (hpx29 < self.ends[np.maximum(at, 0)])
        return np.where(inside, at, -1)

    def contour(self, hpx29: np.ndarray) -> np.ndarray:
        """The smallest credible level (50 or 90) whose region holds each position; 0 outside them all."""
        out = np.zeros(np.asarray(hpx29).size, np.int16)
        for level in sorted(self.regions, reverse=True):
            out[self.regions[level].contains(hpx29)] = level
        return out

    def density3d(self, cells: np.ndarray, distance_mpc: np.ndarray) -> np.ndarray:
        """The 3D probability density (Mpc⁻³ sr⁻¹) at a distance in each cell, as ligo.skymap defines it:
        probdensity · distnorm · N(distance; distmu, distsigma); NaN without distance layers or distance."""
        out = np.full(cells.size, np.nan)
        if self.distmu is None or self.distsigma is None or self.distnorm is None:
            return out
        ok = (cells >= 0) & np.isfinite(distance_mpc)
        c, r = cells[ok], distance_mpc[ok]
        mu, sigma = self.distmu[c], self.distsigma[c]
        with np.errstate(divide="ignore", invalid="ignore"):
            gauss = np.exp(-0.5 * ((r - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
            out[ok] = self.probdensity[c] * self.distnorm[c] * gauss
        return out
