"""``nightjar catalog synth``: realistic synthetic catalogues of any size, generated chunk by chunk on Dask.

Galaxies: 30 % in clusters (Gaussian clumps of a few arcminutes around random centres), the rest isotropic;
true redshifts from a gamma distribution (mean 0.36) with photometric redshifts scattered by 0.03 (1 + z) and a
spectroscopic redshift for 2 %; absolute magnitudes M_r ~ N(−20.5, 1.2) give apparent magnitudes through the
luminosity distance; half-light sizes of ~4 kpc (lognormal, larger for brighter galaxies) give semi-major axes
through the angular scale. Stars: concentrated towards the Galactic plane (exponential in |b|, scale 12°) and the
bulge, with magnitudes from rising number counts (log N ∝ 0.3 m, 10 < r < 24).

Each chunk is a pure function of (seed, chunk number), so 10^8 rows stream through the workers without ever
being in memory together, and a catalogue can be regenerated exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from distributed import Client
from rich.console import Console

from nightjar.catalogs import cosmology, layout
from nightjar.catalogs.build import BuildSpec, build_catalog
from nightjar.catalogs.catalog import CatalogInfo, ColumnMap
from nightjar.catalogs.rules import ContextRules, Kind, reach
from nightjar.catalogs.standardize import ID_CHUNK_SHIFT, spatial_index
from nightjar.storage import CatalogsHome

DEFAULT_CHUNK_ROWS = 2_000_000
SYNTH_KINDS = (Kind.GALAXY, Kind.STAR)


@functools.cache
def _galactic_to_icrs_matrix() -> np.ndarray:
    """The rotation from Galactic to ICRS unit vectors, from astropy (columns: the Galactic axes in ICRS)."""
    from astropy import units as u
    from astropy.coordinates import Galactic, SkyCoord

    axes = SkyCoord(l=[0.0, 90.0, 0.0] * u.deg, b=[0.0, 0.0, 90.0] * u.deg, frame=Galactic).icrs
    return np.asarray(axes.cartesian.xyz.value)


def _uniform_sphere(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0.0, 360.0, n), np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))


def _offset(
    ra: np.ndarray, dec: np.ndarray, sigma_deg: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian scatter around positions (flat-sky approximation, fine for arcminute clumps)."""
    d = np.clip(dec + rng.normal(0.0, 1.0, dec.size) * sigma_deg, -90.0, 90.0)
    cos = np.maximum(np.cos(np.radians(d)), 1e-3)
    return np.mod(ra + rng.normal(0.0, 1.0, ra.size) * sigma_deg / cos, 360.0), d


def galaxy_rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Positions, redshifts, magnitudes and sizes of ``n`` synthetic galaxies."""
    ra, dec = _uniform_sphere(rng, n)
    clustered = rng.random(n) < 0.3
    k = int(clustered.sum())
    if k:
        centres = max(1, k // 40)
        cra, cdec = _uniform_sphere(rng, centres)
        host = rng.integers(0, centres, k)
        sigma = rng.uniform(1.0, 4.0, centres)[host] / 60.0
        ra[clustered], dec[clustered] = _offset(cra[host], cdec[host], sigma, rng)
    z_true = np.clip(rng.gamma(3.0, 0.12, n), 0.003, 4.0)
    photo_z = np.clip(z_true + rng.normal(0.0, 0.03, n) * (1.0 + z_true), 0.001, None)
    abs_mag = rng.normal(-20.5, 1.2, n)
    mag = abs_mag + 5.0 * np.log10(cosmology.luminosity_distance_mpc(z_true) * 1e5)
    spec = mag < np.quantile(mag, 0.02) if n else np.zeros(0, bool)
    size_kpc = 4.0 * 10 ** (rng.normal(0.0, 0.2, n) - 0.12 * (abs_mag + 20.5))
    semi_major = size_kpc / cosmology.scale_kpc_per_arcsec(z_true)
    return {
        "ra": ra,
        "dec": dec,
        "z": np.where(spec, z_true, np.nan),
        "photo_z": photo_z,
        "mag": mag,
        "semi_major_arcsec": semi_major,
    }


def star_rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Positions and magnitudes of ``n`` synthetic Milky Way stars."""
    bulge = rng.random(n) < 0.15
    l_deg = rng.uniform(0.0, 360.0, n)
    l_deg[bulge] = np.mod(rng.normal(0.0, 8.0, int(bulge.sum())), 360.0)
    b_scale = np.where(bulge, 5.0, 12.0)
    b_deg = np.clip(rng.laplace(0.0, 1.0, n) * b_scale, -90.0, 90.0)
    lr, br = np.radians(l_deg), np.radians(b_deg)
    gal = np.stack([np.cos(br) * np.cos(lr), np.cos(br) * np.sin(lr), np.sin(br)])
    x, y, zc = _galactic_to_icrs_matrix() @ gal
    ra = np.mod(np.degrees(np.arctan2(y, x)), 360.0)
    dec = np.degrees(np.arcsin(np.clip(zc, -1.0, 1.0)))
    # log N(<m) rising 0.3 dex per magnitude between 10 and 24: inverse-transform sampling.
    u = rng.random(n)
    mag = 10.0 + np.log10(1.0 + u * (10 ** (0.3 * 14.0) - 1.0)) / 0.3
    return {"ra": ra, "dec": dec, "mag": mag}


@dataclass(frozen=True)
class SynthChunk:
    """Rows ``[0, rows)`` of chunk ``index`` of a synthetic catalogue: a pure function of its fields."""

    kind: Kind
    seed: int
    index: int
    rows: int
    rules: ContextRules = field(default_factory=ContextRules)

    def __call__(self) -> pa.Table:
        """Generate the chunk's rows in the catalogue layout: position, id, redshifts, size, magnitude and reach."""
        rng = np.random.default_rng([self.seed, self.index])
        values = galaxy_rows(rng, self.rows) if self.kind is Kind.GALAXY else star_rows(rng, self.rows)
        n = self.rows
        ra, dec = values.pop("ra"), values.pop("dec")
        reach_arcsec = reach(self.kind, values, n, self.rules)

        def column(name: str) -> pa.Array:
            data = values.get(name)
            if data is None:
                return pa.nulls(n, pa.float64())
            return pa.array(data, pa.float64(), mask=~np.isfinite(data))

        return pa.table(
            {
                layout.SPATIAL_INDEX: pa.array(spatial_index(ra, dec)),
                layout.RA: pa.array(ra),
                layout.DEC: pa.array(dec),
                layout.OBJECT_ID: pa.array((np.int64(self.index) << ID_CHUNK_SHIFT) + np.arange(n, dtype=np.int64)),
                layout.Z: column("z"),
                layout.PHOTO_Z: column("photo_z"),
                layout.SEMI_MAJOR: column("semi_major_arcsec"),
                layout.MAG: column("mag"),
                layout.OBJECT_TYPE: pa.nulls(n, pa.string()),
                layout.DISTANCE: pa.nulls(n, pa.float64()),
                layout.REACH: pa.array(reach_arcsec, pa.float32()),
            }
        )


def synth_chunks(kind: Kind, rows: int, seed: int, chunk_rows: int, rules: ContextRules) -> list[SynthChunk]:
    """The chunks of a synthetic catalogue of ``rows`` rows."""
    if rows < 1:
        raise ValueError("--rows must be at least 1")
    if kind not in SYNTH_KINDS:
        raise ValueError(f"synthetic catalogues are of kind {' or '.join(SYNTH_KINDS)}, not {kind}")
    sizes = [chunk_rows] * (rows // chunk_rows) + ([rows % chunk_rows] if rows % chunk_rows else [])
    return [SynthChunk(kind, seed, i, size, rules) for i, size in enumerate(sizes)]


def synth_catalog(
    client: Client,
    home: CatalogsHome,
    name: str,
    rows: int,
    kind: Kind = Kind.GALAXY,
    seed: int = 1,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    partition_rows: int | None = None,
    console: Console | None = None,
) -> CatalogInfo:
    """Generate and store a synthetic catalogue of ``rows`` rows.

    Parameters
    ----------
    client
        Dask client; each chunk is one task.
    home
        The Nightjar home, or where the catalogues live (``Settings.catalogs``).
    name
        Catalogue name.
    rows
        Number of rows (10^8 works on a laptop: chunks stream through the workers).
    kind
        ``galaxy`` or ``star``.
    seed
        Random seed; the same seed gives the same catalogue.
    chunk_rows
        Rows per task.
    partition_rows
        Largest partition (default: the import default).
    console
        Where progress bars go.
    """
    rules = ContextRules()
    chunks = synth_chunks(kind, rows, seed, chunk_rows, rules)
    columns = ColumnMap(ra=layout.RA, dec=layout.DEC)
    extra = {"partition_rows": partition_rows} if partition_rows else {}
    spec = BuildSpec(
        name=name,
        kind=kind,
        columns=columns,
        description=f"synthetic {kind} catalogue, {rows} rows, seed {seed}",
        sources=(f"synth:{kind}:{rows}:{seed}",),
        mag_filter="r",
        rules=rules,
        **extra,
    )
    return build_catalog(client, chunks, spec, home, standardise=False, console=console)
