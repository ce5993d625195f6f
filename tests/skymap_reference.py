"""Independent reference computations for skymap tests: the real BAYESTAR map read with astropy, its credible
regions made by mocpy from healpy cell areas, and densities looked up cell by cell with healpy (no Nightjar code)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import healpy as hp
import numpy as np
from astropy.table import Table
from mocpy import MOC

BAYESTAR = Path("skymaps") / "bayestar.multiorder.fits"
BAYESTAR_MJD = 58877.28817630083  # its header's MJD-OBS


@dataclass
class Reference:
    uniq: np.ndarray
    density: np.ndarray
    distmu: np.ndarray
    distsigma: np.ndarray
    distnorm: np.ndarray
    orders: np.ndarray

    def region(self, percent: int) -> MOC:
        prob = self.density * np.array([hp.nside2pixarea(2 ** int(o)) for o in self.orders])
        return MOC.from_valued_healpix_cells(
            self.uniq.astype(np.uint64), prob, max_depth=int(self.orders.max()), cumul_to=percent / 100
        )

    def inside(self, percent: int, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        return np.asarray(self.region(percent).contains_lonlat(ra * u.deg, dec * u.deg), bool)

    def cell_of(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """The row of the map holding each position, found order by order with healpy."""
        rows = {int(q): i for i, q in enumerate(self.uniq)}
        out = np.full(ra.size, -1)
        for order in np.unique(self.orders):
            nside = 2 ** int(order)
            uniq = 4 * nside**2 + hp.ang2pix(nside, ra, dec, nest=True, lonlat=True)
            for k, q in enumerate(uniq):
                if int(q) in rows:
                    out[k] = rows[int(q)]
        return out

    def density_at(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        return self.density[self.cell_of(ra, dec)]

    def density3d_at(self, ra: np.ndarray, dec: np.ndarray, distance: np.ndarray) -> np.ndarray:
        c = self.cell_of(ra, dec)
        mu, sigma = self.distmu[c], self.distsigma[c]
        gauss = np.exp(-0.5 * ((distance - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        return self.density[c] * self.distnorm[c] * gauss

    def sample(self, percent_inside: int | None, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` positions at the centres of random cells inside the ``percent_inside`` region (None: outside
        the 90 % region, among the map's other cells)."""
        nside = 2**self.orders
        ipix = self.uniq - 4 * nside**2
        ra = np.empty(self.uniq.size)
        dec = np.empty(self.uniq.size)
        for order in np.unique(self.orders):
            at = self.orders == order
            ra[at], dec[at] = hp.pix2ang(2 ** int(order), ipix[at], nest=True, lonlat=True)
        region = self.inside(percent_inside or 90, ra, dec)
        pool = np.flatnonzero(region if percent_inside else ~region)
        pick = rng.choice(pool, n, replace=False)
        return ra[pick], dec[pick]


def bayestar(data_dir: Path) -> Reference:
    t = Table.read(data_dir / BAYESTAR)
    uniq = np.asarray(t["UNIQ"], np.int64)
    orders = (np.log2(uniq // 4) // 2).astype(np.int64)
    cols = [np.asarray(t[c], np.float64) for c in ("PROBDENSITY", "DISTMU", "DISTSIGMA", "DISTNORM")]
    return Reference(uniq, *cols, orders)
