"""Sherlock's context rules: which catalogue kinds give which class, within which radius.

The rules follow Sherlock (Young et al., used by Lasair), as published in its code and settings:

- a *synonym* is a catalogued source within 1.5″: the transient *is* that source (a galaxy synonym is a
  nuclear transient, NT; a star, a variable star, VS; an AGN, AGN; a CV, CV);
- an *association* is a looser match: a galaxy within 2.4 × its semi-major axis when its size is known, else
  within 50 kpc projected at its distance (redshift-independent distance, else spectroscopic, else photometric
  redshift), else within 10**((25 − m)/6)″ of a galaxy of magnitude m, gives SN; an AGN within 3″, AGN; a CV
  within 2.5″, CV; a bright star within min(10**(3.7 − 0.2 m), 20)″ (Sherlock's magnitude-dependent radius:
  ~7.9″ at m = 14, 20″ for m ≤ 8.5) gives BS;
- synonyms outrank associations, and within each the rank score of ``ranking.py`` decides.

Every radius is a field of :class:`ContextRules`, so a deployment can tune them; the defaults are Sherlock's.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nightjar.catalogs import cosmology

SYNONYM = 1  # Sherlock's classificationReliability
ASSOCIATION = 2

CLASSES: tuple[str, ...] = ("SN", "NT", "AGN", "CV", "VS", "BS", "UNCLEAR", "ORPHAN")


class Kind(StrEnum):
    """What a catalogue holds; it decides the class of its synonyms and associations."""

    GALAXY = "galaxy"
    STAR = "star"
    BRIGHT_STAR = "bright_star"
    VARIABLE = "variable"
    AGN = "agn"
    CV = "cv"
    YSO = "yso"
    OTHER = "other"


SYNONYM_CLASS: dict[Kind, str] = {
    Kind.GALAXY: "NT",
    Kind.STAR: "VS",
    Kind.BRIGHT_STAR: "VS",
    Kind.VARIABLE: "VS",
    Kind.AGN: "AGN",
    Kind.CV: "CV",
    Kind.YSO: "VS",  # young stellar objects are variable stars
    Kind.OTHER: "UNCLEAR",
}
ASSOCIATION_CLASS: dict[Kind, str | None] = {
    Kind.GALAXY: "SN",
    Kind.STAR: None,
    Kind.BRIGHT_STAR: "BS",
    Kind.VARIABLE: None,
    Kind.AGN: "AGN",
    Kind.CV: "CV",
    Kind.YSO: None,
    Kind.OTHER: None,
}
OBJECT_TYPE_LABEL: dict[Kind, str] = {
    Kind.GALAXY: "galaxy",
    Kind.STAR: "star",
    Kind.BRIGHT_STAR: "bright star",
    Kind.VARIABLE: "variable star",
    Kind.AGN: "AGN",
    Kind.CV: "cataclysmic variable",
    Kind.YSO: "young stellar object",
    Kind.OTHER: "catalogued source",
}


class ContextRules(BaseModel):
    """The radii and cosmology of context classification (defaults: Sherlock's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    synonym_radius_arcsec: float = Field(default=1.5, gt=0)
    galaxy_physical_radius_kpc: float = Field(default=50.0, gt=0)
    galaxy_semi_major_factor: float = Field(default=2.4, gt=0)
    galaxy_max_radius_arcsec: float = Field(default=1800.0, gt=0, description="Cone limit of galaxy associations.")
    galaxy_fallback_radius_arcsec: float = Field(default=10.0, gt=0, description="No size, distance or magnitude.")
    bright_star_limit_mag: float = Field(default=16.0, description="Fainter stars are never BS.")
    bright_star_max_radius_arcsec: float = Field(default=20.0, gt=0)
    bright_star_fallback_radius_arcsec: float = Field(default=7.0, gt=0, description="Bright star, no magnitude.")
    agn_radius_arcsec: float = Field(default=3.0, gt=0)
    cv_radius_arcsec: float = Field(default=2.5, gt=0)
    h0: float = Field(default=70.0, gt=0, description="Hubble constant, km/s/Mpc (flat ΛCDM, as Sherlock).")
    om0: float = Field(default=0.3, gt=0, lt=1)

    def key(self) -> str:
        """A short digest of the rules: cached indexes built under other rules are not reused."""
        return hashlib.sha1(self.model_dump_json().encode()).hexdigest()[:12]


def _col(attrs: dict[str, np.ndarray], name: str, n: int) -> np.ndarray:
    value = attrs.get(name)
    return np.full(n, np.nan) if value is None else np.asarray(value, dtype=np.float64)


def distance_scale(attrs: dict[str, np.ndarray], n: int, rules: ContextRules) -> tuple[np.ndarray, np.ndarray]:
    """kpc per arcsec of each row, and its source: 0 none, 1 direct distance, 2 spectroscopic z, 3 photo-z."""
    direct = cosmology.direct_scale_kpc_per_arcsec(_col(attrs, "distance_mpc", n))
    spec = cosmology.scale_kpc_per_arcsec(_col(attrs, "z", n), rules.h0, rules.om0)
    photo = cosmology.scale_kpc_per_arcsec(_col(attrs, "photo_z", n), rules.h0, rules.om0)
    scale = np.where(np.isfinite(direct), direct, np.where(np.isfinite(spec), spec, photo))
    source = np.where(
        np.isfinite(direct), 1, np.where(np.isfinite(spec), 2, np.where(np.isfinite(photo), 3, 0))
    ).astype(np.int8)
    return scale, source


def association_radius(
    kind: Kind, attrs: dict[str, np.ndarray], n: int, rules: ContextRules, radius: float | None = None
) -> np.ndarray:
    """Each row's association radius in arcsec (NaN where the row gives no association).

    Parameters
    ----------
    kind
        The catalogue's kind.
    attrs
        The rows' standard columns as arrays (``semi_major_arcsec``, ``z``, ``photo_z``, ``distance_mpc``,
        ``mag``); missing keys count as unknown values.
    n
        Number of rows.
    rules
        The context rules.
    radius
        The catalogue's own radius (``--radius`` at import): for galaxies the fallback radius, for bright stars
        the radius when the magnitude is unknown, for the other kinds the association radius.
    """
    if kind is Kind.GALAXY:
        semi = _col(attrs, "semi_major_arcsec", n)
        scale, _ = distance_scale(attrs, n, rules)
        mag = _col(attrs, "mag", n)
        fallback = radius if radius is not None else rules.galaxy_fallback_radius_arcsec
        r = np.where(
            np.isfinite(semi) & (semi > 0),
            rules.galaxy_semi_major_factor * semi,
            np.where(
                np.isfinite(scale),
                rules.galaxy_physical_radius_kpc / scale,
                np.where(np.isfinite(mag), 10.0 ** ((25.0 - mag) / 6.0), fallback),
            ),
        )
        return np.minimum(r, rules.galaxy_max_radius_arcsec)
    if kind is Kind.BRIGHT_STAR:
        mag = _col(attrs, "mag", n)
        fallback = radius if radius is not None else rules.bright_star_fallback_radius_arcsec
        r = np.where(
            np.isfinite(mag),
            np.minimum(10.0 ** (3.7 - 0.2 * mag), rules.bright_star_max_radius_arcsec),
            fallback,
        )
        return np.where(np.isfinite(mag) & (mag > rules.bright_star_limit_mag), np.nan, r)
    constant = {Kind.AGN: rules.agn_radius_arcsec, Kind.CV: rules.cv_radius_arcsec}.get(kind)
    if radius is not None:
        constant = radius
    return np.full(n, np.nan if constant is None else constant)


def reach(
    kind: Kind, attrs: dict[str, np.ndarray], n: int, rules: ContextRules, radius: float | None = None
) -> np.ndarray:
    """The farthest an alert may lie from each row and still match it: synonym or association radius."""
    assoc = association_radius(kind, attrs, n, rules, radius)
    return np.fmax(np.nan_to_num(assoc, nan=0.0), rules.synonym_radius_arcsec).astype(np.float32)
