"""Lasair-LSST's ``objects`` column names, as Nightjar's objects table has them or does not.

Lasair-LSST's objects schema (lsst-uk/lasair-lsst ``common/schema/*/objects.py``, versions 8.0 to 11.1) names a
few columns differently from Nightjar: ``decl`` for ``dec``, ``g_psfFlux`` for the latest g flux... The Lasair
query endpoint reads ``objects`` through a view that adds the Lasair name of each mapped column a query uses,
so a Lasair query runs unchanged; a column Lasair computes and Nightjar does not (or defines otherwise) is a
400 that names it, never a silent null or a different quantity under the same name.
"""

from __future__ import annotations

from nightjar.pipelines.features import BANDS

# Lasair-LSST name -> Nightjar column with the same definition. Names equal but for case need no alias (SQL
# identifiers are case-insensitive) and are listed so that the table says which Lasair columns Nightjar has.
LASAIR_OBJECT_COLUMNS: dict[str, str] = {
    "diaObjectId": "diaObjectId",
    "ra": "ra",
    "decl": "dec",  # the diaObject's mean Dec; Lasair renames it because DEC is a MySQL keyword
    # Lasair 8.0 computed the detections' first/last MJD; 11.x takes LSST's *MjdTai: Nightjar's features hold
    # the former (from the stored light curve), the diaObject's own fields the latter.
    "firstDiaSourceMJD": "firstDiaSourceMjd",
    "lastDiaSourceMJD": "lastDiaSourceMjd",
    "firstDiaSourceMjdTai": "firstDiaSourceMjdTai",
    "lastDiaSourceMjdTai": "lastDiaSourceMjdTai",
    "latest_psfFlux": "latestFlux",  # psfFlux of the newest detection in any band
    "nSources": "nSources",  # detections in the stored light curve
    "nDiaSources": "nDiaSources",
    "medianR": "medianReliability",  # median reliability of the object's detections
    "latestR": "latestReliability",  # reliability of the newest detection
    "validityStartMjdTai": "validityStartMjdTai",
    "raErr": "raErr",
    "decErr": "decErr",
    "ra_dec_Cov": "ra_dec_Cov",
    # Lasair-LSST's added features, computed with Lasair's definitions (docs/features.md)
    **{
        name: name
        for name in (
            "nSourcesGood",
            "nPosDiaSources",
            "nPosDiaSourcesNights",
            "absMag",
            "absMagMJD",
            "glat",
            "ebv",
            "jump1",
            "jump2",
            "BBBRiseRate",
            "BBBFallRate",
            "BBBTemp",
            "BBBPeakFlux",
            "BBBPeakMJD",
            "BBBPeakAbsMag",
            *(
                f"{which}Pair{part}"
                for which in ("latest", "penultimate")
                for part in ("MJD", "ColourMag", "ColourBands", "ColourTemp")
            ),
        )
    },
}
for _b in BANDS:
    LASAIR_OBJECT_COLUMNS |= {
        f"{_b}_psfFlux": f"{_b}_latestFlux",  # psfFlux of the newest detection in the band (nJy)
        f"{_b}_latestMJD": f"{_b}_latestMjd",  # its midpointMjdTai
        f"n{_b}Sources": f"{_b}_nSources",  # detections in the band
        **{
            f"{_b}_{stat}": f"{_b}_{stat}"  # the diaObject's own per-band statistics, as LSST sends them
            for stat in (
                "psfFluxMean",
                "psfFluxMeanErr",
                "psfFluxSigma",
                "psfFluxNdata",
                "fpFluxMean",
                "fpFluxMeanErr",
                "scienceFluxMean",
                "scienceFluxMeanErr",
                "psfFluxMin",
                "psfFluxMax",
                "psfFluxMaxSlope",
                "psfFluxErrMean",
            )
        },
    }

# Lasair-LSST objects columns Nightjar does not have, or has under another definition (the hint names the
# nearest Nightjar column when there is one): refused by name rather than answered with something else.
NOT_IN_NIGHTJAR: dict[str, str] = {
    "pmRa": "",
    "pmDec": "",
    "observation_reason": "",
    "target_name": "",
    "tns_name": "",
    "nearbyObj1": "",
    "nearbyObj1Dist": "",
    "nearbyObj1LnP": "",
    "htm16": "hpx29 (HEALPix order 29, nested)",
    "timestamp": "lastAlertMjdTai",
    "validityStart": "validityStartMjdTai",
    "lastNonForcedSource": "",
    **{f"{b}_{stat}": "" for b in BANDS for stat in ("psfFluxChi2", "psfFluxSkew", "scienceFluxSigma")},
}

_MAPPED = {k.lower(): v for k, v in LASAIR_OBJECT_COLUMNS.items()}
_REFUSED = {k.lower(): (k, hint) for k, hint in NOT_IN_NIGHTJAR.items()}


def nightjar_name(lasair: str) -> str | None:
    """The Nightjar column a Lasair-LSST objects column is, when it needs an alias (its name differs).

    Examples
    --------
    >>> nightjar_name("decl"), nightjar_name("g_latestMJD"), nightjar_name("pmRa")
    ('dec', None, None)
    """
    target = _MAPPED.get(lasair.lower())
    return target if target is not None and target.lower() != lasair.lower() else None


def refusal(names: list[str]) -> str | None:
    """The message refusing the Lasair-only columns among ``names``; None when there are none."""
    found = sorted({_REFUSED[n.lower()] for n in names if n.lower() in _REFUSED})
    if not found:
        return None
    listed = ", ".join(name for name, _ in found)
    hints = "".join(f"\n  {name}: Nightjar has {hint}, a different quantity" for name, hint in found if hint)
    return f"Nightjar does not have the Lasair-LSST objects column(s) {listed} (yet){hints}"
