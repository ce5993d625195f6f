"""Context classification, Sherlock style: ``classify`` (the pipeline stage) and its building blocks.

For a batch of objects (``diaObjectId``, ``ra``, ``dec``), every catalogue row within its reach is found
(``xmatch``), each match is judged with the rules of its catalogue's kind (``rules``), the matches are ranked
(``ranking``), and each object gets one ``context`` row with the columns of Lasair's ``sherlock_classifications``
table (plus ``distance_source``, ``association_radius_arcsec``, ``rankScore``, ``n_matches`` and the catalogue
set's version), described in one line (``describe``). Objects without a match are ORPHANs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar import __version__
from nightjar.catalogs import cosmology, layout
from nightjar.catalogs.catalog import CatalogSet
from nightjar.catalogs.describe import describe
from nightjar.catalogs.ranking import order_matches, rank_score
from nightjar.catalogs.rules import (
    ASSOCIATION,
    ASSOCIATION_CLASS,
    OBJECT_TYPE_LABEL,
    SYNONYM,
    SYNONYM_CLASS,
    association_radius,
    distance_scale,
)
from nightjar.catalogs.xmatch import crossmatch
from nightjar.geometry import offsets_arcsec
from nightjar.paths import OBJECT_KEY

ANNOTATOR = f"nightjar {__version__} context (Sherlock rules)"
DISTANCE_SOURCES = np.array([None, "direct", "spec-z", "photo-z"], dtype=object)

MATCH_FIELDS: list[tuple[str, pa.DataType]] = [
    ("association_type", pa.string()),
    ("catalogue_table_name", pa.string()),
    ("catalogue_object_id", pa.string()),
    ("catalogue_object_type", pa.string()),
    ("raDeg", pa.float64()),
    ("decDeg", pa.float64()),
    ("separationArcsec", pa.float64()),
    ("northSeparationArcsec", pa.float64()),
    ("eastSeparationArcsec", pa.float64()),
    ("physical_separation_kpc", pa.float64()),
    ("direct_distance", pa.float64()),
    ("distance", pa.float64()),
    ("distance_source", pa.string()),
    ("z", pa.float64()),
    ("photoZ", pa.float64()),
    ("photoZErr", pa.float64()),
    ("Mag", pa.float64()),
    ("MagFilter", pa.string()),
    ("MagErr", pa.float64()),
    ("classificationReliability", pa.int8()),
    ("major_axis_arcsec", pa.float64()),
    ("association_radius_arcsec", pa.float64()),
    ("rankScore", pa.float64()),
]
CONTEXT_SCHEMA = pa.schema(
    [
        (OBJECT_KEY, pa.int64()),
        ("classification", pa.string()),
        *MATCH_FIELDS,
        ("n_matches", pa.int32()),
        ("annotator", pa.string()),
        ("catalogs_version", pa.string()),
        ("description", pa.string()),
        ("summary", pa.string()),
    ]
)
MATCHES_SCHEMA = pa.schema([(OBJECT_KEY, pa.int64()), ("rank", pa.int32()), *MATCH_FIELDS])

# The stored form (lake tables ``context`` and ``context_matches``): when each row was computed (the newer
# classification of an object wins), and on matches the catalogue set's version and a key per (object, rank,
# version), so that storing the same classification twice lands on the same rows.
CLASSIFIED_AT = "classifiedAt"
CATALOGS_VERSION = "catalogs_version"
MATCH_KEY = "matchKey"
STAMP = pa.timestamp("us", tz="UTC")
LAKE_CONTEXT_SCHEMA = CONTEXT_SCHEMA.append(pa.field(CLASSIFIED_AT, STAMP))
LAKE_MATCHES_SCHEMA = pa.schema(
    [*MATCHES_SCHEMA, (CATALOGS_VERSION, pa.string()), (MATCH_KEY, pa.int64()), (CLASSIFIED_AT, STAMP)]
)


@dataclass
class ContextResult:
    """One ``context`` row per object, and every judged match (``rank`` 1 decided the class)."""

    context: pa.Table
    matches: pa.Table


def _check(objects: pa.Table) -> None:
    missing = [c for c in (OBJECT_KEY, "ra", "dec") if c not in objects.column_names]
    if missing:
        raise ValueError(f"objects need columns {OBJECT_KEY}, ra, dec; missing {', '.join(missing)}")


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(table[name], np.nan).to_numpy(zero_copy_only=False).astype(np.float64)


def judge(raw: pa.Table, catalogs: CatalogSet, ra: np.ndarray, dec: np.ndarray) -> dict[str, np.ndarray]:
    """Apply each catalogue's rules to raw crossmatch rows: class, reliability, distances, rank score.

    Returns columns (numpy arrays) for the matches that count; matches beyond every rule radius are dropped.
    """
    rules = catalogs.rules
    n = raw.num_rows
    obj = raw["object_index"].to_numpy()
    cat = raw["catalog_index"].to_numpy()
    sep = raw["separation_arcsec"].to_numpy()
    attrs = {name: _floats(raw, name) for name in (layout.Z, layout.PHOTO_Z, layout.SEMI_MAJOR, layout.MAG)}
    attrs[layout.DISTANCE] = _floats(raw, layout.DISTANCE)
    radius = np.full(n, np.nan)
    syn_class = np.empty(n, dtype=object)
    assoc_class = np.empty(n, dtype=object)
    type_label = np.empty(n, dtype=object)
    catalogue = np.empty(n, dtype=object)
    mag_filter = np.empty(n, dtype=object)
    id_prefix = np.empty(n, dtype=object)
    for i, handle in enumerate(catalogs.catalogs):
        rows = cat == i
        if not rows.any():
            continue
        sub = {k: v[rows] for k, v in attrs.items()}
        radius[rows] = association_radius(handle.kind, sub, int(rows.sum()), rules, handle.radius_arcsec)
        syn_class[rows] = SYNONYM_CLASS[handle.kind]
        assoc_class[rows] = ASSOCIATION_CLASS[handle.kind]
        type_label[rows] = OBJECT_TYPE_LABEL[handle.kind]
        catalogue[rows] = handle.name
        mag_filter[rows] = handle.mag_filter
        id_prefix[rows] = "" if handle.has_ids else f"{handle.name} row "
    reach = raw["reach_arcsec"].to_numpy()
    radius = np.fmin(radius, reach)  # a row never matches beyond the reach its partitions were built for
    synonym = sep <= rules.synonym_radius_arcsec
    association = ~synonym & (sep <= radius) & (assoc_class != None)  # noqa: E711 - element-wise test
    keep = synonym | association
    reliability = np.where(synonym, SYNONYM, ASSOCIATION).astype(np.int8)
    kind_class = np.where(synonym, syn_class, assoc_class)
    scale, source = distance_scale(attrs, n, rules)
    physical = sep * scale
    lum = np.where(
        np.isfinite(attrs[layout.DISTANCE]),
        attrs[layout.DISTANCE],
        np.where(
            np.isfinite(attrs[layout.Z]),
            cosmology.luminosity_distance_mpc(attrs[layout.Z], rules.h0, rules.om0),
            cosmology.luminosity_distance_mpc(attrs[layout.PHOTO_Z], rules.h0, rules.om0),
        ),
    )
    cra = raw["catalog_ra"].to_numpy()
    cdec = raw["catalog_dec"].to_numpy()
    north, east = offsets_arcsec(cra, cdec, ra[obj], dec[obj])
    score = rank_score(reliability, kind_class.astype(str), sep, physical, source)
    columns = {
        "object": obj,
        "association_type": kind_class,
        "catalogue": catalogue,
        "id_prefix": id_prefix,
        "type_label": type_label,
        "ra": cra,
        "dec": cdec,
        "separation": sep,
        "north": north,
        "east": east,
        "physical": physical,
        "direct_distance": attrs[layout.DISTANCE],
        "distance": lum,
        "distance_source": source,
        "z": attrs[layout.Z],
        "photo_z": attrs[layout.PHOTO_Z],
        "mag": attrs[layout.MAG],
        "mag_filter": mag_filter,
        "reliability": reliability,
        "semi_major": attrs[layout.SEMI_MAJOR],
        "radius": np.where(synonym, rules.synonym_radius_arcsec, radius),
        "score": score,
        "row": np.arange(n),
    }
    return {k: v[keep] for k, v in columns.items()}


def _match_columns(m: dict[str, np.ndarray], ids: pa.Array, types: pa.Array) -> dict[str, pa.Array]:
    nan = np.full(m["separation"].size, np.nan)

    def f(values: np.ndarray) -> pa.Array:
        return pa.array(values, pa.float64(), mask=~np.isfinite(values))

    return {
        "association_type": pa.array(m["association_type"], pa.string()),
        "catalogue_table_name": pa.array(m["catalogue"], pa.string()),
        "catalogue_object_id": ids,
        "catalogue_object_type": types,
        "raDeg": f(m["ra"]),
        "decDeg": f(m["dec"]),
        "separationArcsec": f(m["separation"]),
        "northSeparationArcsec": f(m["north"]),
        "eastSeparationArcsec": f(m["east"]),
        "physical_separation_kpc": f(m["physical"]),
        "direct_distance": f(m["direct_distance"]),
        "distance": f(m["distance"]),
        "distance_source": pa.array(DISTANCE_SOURCES[m["distance_source"].astype(int)], pa.string()),
        "z": f(m["z"]),
        "photoZ": f(m["photo_z"]),
        "photoZErr": f(nan),
        "Mag": f(m["mag"]),
        "MagFilter": pa.array(m["mag_filter"], pa.string()),
        "MagErr": f(nan),
        "classificationReliability": pa.array(m["reliability"], pa.int8()),
        "major_axis_arcsec": f(m["semi_major"]),
        "association_radius_arcsec": f(m["radius"]),
        "rankScore": f(m["score"]),
    }


def classify(objects: pa.Table, catalogs: CatalogSet) -> ContextResult:
    """Context rows for a batch of objects, and every match that counted.

    Parameters
    ----------
    objects
        One row per object with ``diaObjectId`` (int64), ``ra`` and ``dec`` (degrees); other columns are
        ignored. An object appearing twice is classified at its last position.
    catalogs
        The catalogues, rules and cache budget.

    Partition indexes are cached per process (``catalogs.cache``), so a Dask worker that sees the same sky again
    answers without I/O.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from nightjar.catalogs.catalog import CatalogSet
    >>> batch = pa.table({"diaObjectId": [1], "ra": [10.0], "dec": [-20.0]})
    >>> classify(batch, CatalogSet(())).context.column("classification").to_pylist()
    ['ORPHAN']
    """
    _check(objects)
    if objects.num_rows:
        # One row per object: the last one in the batch (the freshest position).
        reversed_ids = objects[OBJECT_KEY].to_numpy()[::-1]
        _, last = np.unique(reversed_ids, return_index=True)
        objects = objects.take(pa.array(np.sort(objects.num_rows - 1 - last)))
    ids = pc.cast(objects[OBJECT_KEY], pa.int64()).to_numpy(zero_copy_only=False)
    ra = _floats(objects, "ra")
    dec = _floats(objects, "dec")
    raw = crossmatch(ra, dec, catalogs)
    m = judge(raw, catalogs, ra, dec)
    order = order_matches(m["object"], m["score"], m["reliability"], m["association_type"], m["ra"], m["dec"])
    m = {k: v[order] for k, v in m.items()}
    obj = m["object"]
    firsts = np.flatnonzero(np.r_[True, obj[1:] != obj[:-1]]) if obj.size else np.empty(0, np.int64)
    rank = np.arange(obj.size) - np.repeat(firsts, np.diff(np.r_[firsts, obj.size]))
    rows = pa.array(m["row"])
    match_ids = raw[layout.OBJECT_ID].take(rows)
    match_types = raw[layout.OBJECT_TYPE].take(rows)
    columns = _match_columns(m, match_ids, match_types)
    matches = pa.table(
        {OBJECT_KEY: pa.array(ids[obj], pa.int64()), "rank": pa.array(rank + 1, pa.int32()), **columns},
        schema=MATCHES_SCHEMA,
    )
    # The context row: each object's rank-1 match, or an ORPHAN row.
    n = ids.size
    top = np.full(n, -1)
    top[obj[firsts]] = firsts
    counts = np.bincount(obj, minlength=n).astype(np.int32)
    has = top >= 0
    pick = pa.array(np.where(has, top, 0))
    context_columns: dict[str, pa.Array] = {}
    for name, array in columns.items():
        taken = array.take(pick) if len(array) else pa.nulls(n, array.type)
        context_columns[name] = pc.if_else(pa.array(has), taken, pa.scalar(None, array.type))

    def at_top(key: str, fill: Any = np.nan) -> np.ndarray:
        values = np.asarray(m[key])
        return np.where(has, values[np.maximum(top, 0)], fill) if values.size else np.full(n, fill)

    classification = at_top("association_type", "ORPHAN").astype(str)

    description, summary = describe(
        classification=classification,
        reliability=at_top("reliability", 0),
        object_id=pc.binary_join_element_wise(
            pa.array(at_top("id_prefix", "").astype(str)), context_columns["catalogue_object_id"], ""
        ),
        type_label=at_top("type_label", "").astype(str),
        object_type=context_columns["catalogue_object_type"],
        catalogue=at_top("catalogue", "").astype(str),
        separation=at_top("separation"),
        north=at_top("north"),
        east=at_top("east"),
        physical_kpc=at_top("physical"),
        distance=at_top("distance"),
        distance_source=at_top("distance_source", 0).astype(int),
        redshift=np.where(at_top("distance_source", 0) == 3, at_top("photo_z"), at_top("z")),
    )
    context = pa.table(
        {
            OBJECT_KEY: pa.array(ids, pa.int64()),
            "classification": pa.array(classification, pa.string()),
            **context_columns,
            "n_matches": pa.array(counts, pa.int32()),
            "annotator": pa.array([ANNOTATOR] * n, pa.string()),
            "catalogs_version": pa.array([catalogs.version] * n, pa.string()),
            "description": description,
            "summary": summary,
        },
        schema=CONTEXT_SCHEMA,
    )
    return ContextResult(context, matches)


def needs_context(objects: pa.Table, existing: pa.Table | None, catalogs_version: str) -> pa.Table:
    """The objects to classify: first seen (not in ``existing``), or classified under other catalogues or rules.

    Parameters
    ----------
    objects
        The batch's objects (``diaObjectId``, ``ra``, ``dec``).
    existing
        The stored ``context`` rows of these objects (at least ``diaObjectId`` and ``catalogs_version``), or
        None when there are none.
    catalogs_version
        The current catalogue set's ``version``: what stored rows must carry to be current.
    """
    if existing is None or existing.num_rows == 0 or objects.num_rows == 0:
        return objects
    current = existing.filter(pc.equal(existing["catalogs_version"], catalogs_version))
    fresh = pc.is_in(objects[OBJECT_KEY], value_set=pc.unique(current[OBJECT_KEY]))
    return objects.filter(pc.invert(fresh))
