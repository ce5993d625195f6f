"""One-line descriptions and short summaries of context rows, built column-wise with Arrow string kernels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ORPHAN_DESCRIPTION = "The transient location is not matched against any known catalogued source."
ORPHAN_SUMMARY = "No catalogued match"

SUMMARY_PREFIX: dict[str, str] = {
    "SN": "Possible SN near ",
    "NT": "Nuclear transient in ",
    "AGN": "AGN: ",
    "CV": "CV: ",
    "VS": "Variable star: ",
    "BS": "Close to bright star ",
    "UNCLEAR": "Near catalogued source ",
}


def _number(values: np.ndarray, digits: int) -> pa.Array:
    """Rounded numbers as text; null where the value is missing."""
    arr = pa.array(np.round(values, digits), pa.float64(), mask=~np.isfinite(values))
    return pc.cast(arr, pa.string())


def _text(values: list[str] | np.ndarray) -> pa.Array:
    return pa.array(values, pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate strings element-wise; a null part makes the whole result null (use ``_opt`` for optional)."""
    return pc.binary_join_element_wise(*parts, "")


def _opt(array: pa.Array) -> pa.Array:
    return pc.fill_null(array, "")


def describe(
    classification: np.ndarray,
    reliability: np.ndarray,
    object_id: pa.Array,
    type_label: np.ndarray,
    object_type: pa.Array,
    catalogue: np.ndarray,
    separation: np.ndarray,
    north: np.ndarray,
    east: np.ndarray,
    physical_kpc: np.ndarray,
    distance: np.ndarray,
    distance_source: np.ndarray,
    redshift: np.ndarray,
) -> tuple[pa.Array, pa.Array]:
    """A one-line description and a short summary of each row (rows without a match are ORPHANs).

    Examples of the description::

        The transient is possibly associated with NGC 0224, a galaxy (G) in the openngc catalogue, 12.3″ from
        its centre (10.1″ N, 7.05″ E), 4.2 kpc projected at 0.78 Mpc (direct distance).
    """
    verb = _text(np.where(reliability == 1, "is synonymous with ", "is possibly associated with "))
    kind = _join(
        _text(type_label),
        _opt(_join(" (", pc.utf8_trim_whitespace(pc.cast(object_type, pa.string())), ")")),
    )
    ns = _text(np.where(north >= 0, "″ N, ", "″ S, "))
    ew = _text(np.where(east >= 0, "″ E)", "″ W)"))
    where = _join(
        ", ",
        _number(separation, 2),
        "″ from its centre (",
        _number(np.abs(north), 2),
        ns,
        _number(np.abs(east), 2),
        ew,
    )
    physical = _opt(_join(", ", _number(physical_kpc, 2), " kpc projected"))
    source_text = np.where(distance_source == 1, "direct distance", np.where(distance_source == 2, "z ", "photo-z "))
    z_text = _opt(_number(redshift, 4))
    dist = _opt(
        _join(
            " at ",
            _number(distance, 1),
            " Mpc (",
            _join(_text(source_text), pc.if_else(pa.array(distance_source == 1), "", z_text)),
            ")",
        )
    )
    description = _join(
        "The transient ",
        verb,
        pc.cast(object_id, pa.string()),
        ", a ",
        kind,
        " in the ",
        _text(catalogue),
        " catalogue",
        where,
        physical,
        dist,
        ".",
    )
    prefix = _text(_prefixes(classification))
    summary = _join(prefix, pc.cast(object_id, pa.string()))
    orphan = pa.array(classification == "ORPHAN")
    description = pc.if_else(orphan, ORPHAN_DESCRIPTION, description)
    summary = pc.if_else(orphan, ORPHAN_SUMMARY, summary)
    return description, summary


def _prefixes(classification: np.ndarray) -> np.ndarray:
    out = np.full(classification.shape, "", dtype=object)
    for cls, prefix in SUMMARY_PREFIX.items():
        out[classification == cls] = prefix
    return out
