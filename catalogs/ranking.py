"""Sherlock's ranking: which of an object's matches decides its class.

Each match gets Sherlock's rank score (lower is better)::

    reliability × 1000                                     synonyms (1) always before associations (2)
      + 2 − (50 − kpc) + min(sep/60, 100)                   SN/NT/AGN with a distance or spectroscopic z
      + 5 − (50 − kpc) + min(sep/60, 100)                   SN/NT/AGN with only a photometric redshift
      + 2 + min(sep/60, 100)                                SN/NT/AGN without distance
      + sep + 2                                             CV, VS
      + sep                                                 BS
      + 10 + min(sep/60, 100)                               anything else (UNCLEAR)

The best-scoring match wins, except that, as Sherlock merges the entries of one astrophysical source found in
several catalogues (within 1″ of each other), the most specific class among those entries wins in the order
AGN, CV, NT, SN, VS, BS.
"""

from __future__ import annotations

import numpy as np

from nightjar.geometry import separation_arcsec

MERGE_RADIUS_ARCSEC = 1.0
TYPE_ORDER: dict[str, int] = {"AGN": 0, "CV": 1, "NT": 2, "SN": 3, "VS": 4, "BS": 5, "UNCLEAR": 6}


def rank_score(
    reliability: np.ndarray,
    association_type: np.ndarray,
    separation: np.ndarray,
    physical_kpc: np.ndarray,
    distance_source: np.ndarray,
) -> np.ndarray:
    """Sherlock's rank score of each match (see the module docstring).

    ``distance_source`` is 0 (none), 1 (direct distance), 2 (spectroscopic z) or 3 (photometric z).
    """
    base = reliability.astype(np.float64) * 1000.0
    penalty = np.minimum(separation / 60.0, 100.0)
    extragalactic = np.isin(association_type, ["SN", "NT", "AGN"])
    has_kpc = np.isfinite(physical_kpc)
    return np.select(
        [
            extragalactic & has_kpc & (distance_source != 3),
            extragalactic & has_kpc,
            extragalactic,
            np.isin(association_type, ["CV", "VS"]),
            association_type == "BS",
        ],
        [
            base + 2.0 - (50.0 - physical_kpc) + penalty,
            base + 5.0 - (50.0 - physical_kpc) + penalty,
            base + 2.0 + penalty,
            base + separation + 2.0,
            base + separation,
        ],
        default=base + 10.0 + penalty,
    )


def order_matches(
    objects: np.ndarray,
    score: np.ndarray,
    reliability: np.ndarray,
    association_type: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
) -> np.ndarray:
    """The permutation ranking each object's matches: grouped by object, the deciding match first.

    Parameters
    ----------
    objects
        The object (row of the input batch) of each match.
    score
        Rank scores (lower is better).
    reliability
        1 synonym, 2 association.
    association_type
        Class each match suggests.
    ra, dec
        Catalogue positions of the matches, to find entries of the same source.
    """
    if objects.size == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((score, objects))
    obj = objects[order]
    starts = np.flatnonzero(np.r_[True, obj[1:] != obj[:-1]])
    group = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, obj.size]))
    best = order[starts][group]  # the best-scoring match of each sorted match's object

    same_source = (reliability[order] == reliability[best]) & (
        separation_arcsec(ra[order], dec[order], ra[best], dec[best]) <= MERGE_RADIUS_ARCSEC
    )
    specificity = specificity_rank(association_type[order])
    # Within an object: the best match's same-source entries first, the most specific class first; then the
    # remaining matches by score (``order`` is already by score within each object).
    key_first = np.where(same_source, 0, 1)
    key_type = np.where(same_source, specificity, 0)
    within = np.lexsort((np.arange(order.size), key_type, key_first, group))
    return order[within]


def specificity_rank(types: np.ndarray) -> np.ndarray:
    """Position of each class in Sherlock's merge order (AGN first); unknown classes last."""
    labels = np.array(sorted(TYPE_ORDER))
    ranks = np.array([TYPE_ORDER[label] for label in labels])
    types = np.asarray(types).astype(str)
    position = np.clip(np.searchsorted(labels, types), 0, labels.size - 1)
    return np.where(labels[position] == types, ranks[position], len(TYPE_ORDER))
