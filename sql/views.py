"""The tables users query, by name, in both modes: over a fresh micro-batch (streaming) and over the lake (static).

Every name in ``VIEW_NAMES`` always exists: a table the lake or the batch does not have yet is an empty
placeholder with a typed schema, so a query that mentions it runs (and returns nothing) instead of failing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.catalogs.context import LAKE_CONTEXT_SCHEMA, LAKE_MATCHES_SCHEMA
from nightjar.lake import read
from nightjar.lake.keys import first_per_key, latest_per_key
from nightjar.lake.schemas import (
    ANNOTATIONS_SCHEMA,
    AREA_HITS_SCHEMA,
    CROSSMATCH_TNS_SCHEMA,
    MMA_HITS_SCHEMA,
    WATCHLIST_HITS_SCHEMA,
)
from nightjar.paths import OBJECT_ORDER
from nightjar.storage import Home
from nightjar.streams import schemas
from nightjar.streams.sso import SOURCE_COLUMNS as SSO_SOURCE_COLUMNS

SOURCES = paths.SOURCES
OBJECTS = paths.OBJECTS
FORCED_SOURCES = paths.FORCED_SOURCES
CONTEXT = paths.CONTEXT
CONTEXT_MATCHES = paths.CONTEXT_MATCHES
WATCHLIST_HITS = paths.WATCHLIST_HITS
AREA_HITS = paths.AREA_HITS
MMA_AREA_HITS = paths.MMA_AREA_HITS
CROSSMATCH_TNS = paths.CROSSMATCH_TNS
ANNOTATIONS = paths.ANNOTATIONS
SS_SOURCES = paths.SS_SOURCES
SS_OBJECTS = paths.SS_OBJECTS
VIEW_NAMES: tuple[str, ...] = (
    SOURCES,
    OBJECTS,
    FORCED_SOURCES,
    CONTEXT,
    CONTEXT_MATCHES,
    WATCHLIST_HITS,
    AREA_HITS,
    ANNOTATIONS,
    MMA_AREA_HITS,
    CROSSMATCH_TNS,
    SS_SOURCES,
    SS_OBJECTS,
)

# Views no stage fills yet, with the feature that will fill them: always empty, over the lake and in every batch.
# A filter may read them (it is kept, and matches once the feature lands), but its author is told.
NOT_FILLED_YET: dict[str, str] = {}

# The columns that identify the alert a row belongs to: (object, source). A filter's delivery is keyed by them.
ROW_KEYS: dict[str, tuple[str, str | None]] = {
    SOURCES: ("diaObjectId", "diaSourceId"),
    OBJECTS: ("diaObjectId", "lastDiaSourceId"),
    FORCED_SOURCES: ("diaObjectId", None),
    CONTEXT: ("diaObjectId", None),
    CONTEXT_MATCHES: ("diaObjectId", None),
    WATCHLIST_HITS: ("diaObjectId", "diaSourceId"),
    AREA_HITS: ("diaObjectId", "diaSourceId"),
    ANNOTATIONS: ("diaObjectId", None),
    MMA_AREA_HITS: ("diaObjectId", "diaSourceId"),
    CROSSMATCH_TNS: ("diaObjectId", None),
    SS_SOURCES: ("diaObjectId", "diaSourceId"),
}


_PROVENANCE = [
    pa.field(paths.SURVEY, pa.string()),
    pa.field(paths.KAFKA_TOPIC, pa.string()),
    pa.field(paths.KAFKA_PARTITION, pa.int32()),
    pa.field(paths.KAFKA_OFFSET, pa.int64()),
]
_HEALPIX = [pa.field(paths.HPX29, pa.int64()), pa.field(paths.HPX_PART, pa.int64())]


def _nullable(fields: list[pa.Field]) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in fields])


@functools.cache
def placeholder_schemas() -> dict[str, pa.Schema]:
    """The schema of each view when it has no data: the lake's layout for the current LSST alert schema."""
    sid = schemas.latest_schema_id()
    source = list(schemas.arrow_record_schema(sid, "diaSource"))
    obj = list(schemas.arrow_record_schema(sid, "diaObject"))
    forced = list(schemas.arrow_record_schema(sid, "prvDiaForcedSources"))
    last = [pa.field("lastDiaSourceId", pa.int64()), pa.field(OBJECT_ORDER, pa.float64())]
    return {
        SOURCES: _nullable(
            [
                *source,
                *_PROVENANCE,
                *_HEALPIX,
                pa.field(paths.NIGHT, pa.int32()),
                pa.field(paths.MONTH, pa.string()),
                pa.field(paths.FROM_HISTORY, pa.bool_()),
            ]
        ),
        # stateSeq: the write that stored the state (the lake keeps each object's newest; null in a streaming batch)
        OBJECTS: _nullable([*obj, *last, *_PROVENANCE, *_HEALPIX, pa.field(paths.STATE_SEQ, pa.int64())]),
        FORCED_SOURCES: _nullable(
            [
                *forced,
                pa.field(paths.SURVEY, pa.string()),
                pa.field(paths.FORCED_KEY, pa.int64()),
                *_HEALPIX,
                pa.field(paths.NIGHT, pa.int32()),
                pa.field(paths.MONTH, pa.string()),
            ]
        ),
        CONTEXT: _nullable(list(LAKE_CONTEXT_SCHEMA)),
        CONTEXT_MATCHES: _nullable(list(LAKE_MATCHES_SCHEMA)),
        WATCHLIST_HITS: _nullable(list(WATCHLIST_HITS_SCHEMA)),
        AREA_HITS: _nullable(list(AREA_HITS_SCHEMA)),
        ANNOTATIONS: _nullable(list(ANNOTATIONS_SCHEMA)),
        MMA_AREA_HITS: _nullable(list(MMA_HITS_SCHEMA)),
        CROSSMATCH_TNS: _nullable(list(CROSSMATCH_TNS_SCHEMA)),
        **_sso_placeholders(sid, source),
    }


def _sso_placeholders(sid: int, source: list[pa.Field]) -> dict[str, pa.Schema]:
    """``ss_sources`` and ``ss_objects`` as ``streams.sso`` makes them from the current schema's records."""
    ss = list(schemas.arrow_record_schema(sid, "ssSource"))
    have = {f.name for f in ss}
    from_source = [f for f in source if f.name in ("diaObjectId", *SSO_SOURCE_COLUMNS) and f.name not in have]
    orbit = [f for f in schemas.arrow_record_schema(sid, "mpc_orbits") if f.name != "ssObjectId"]
    return {
        SS_SOURCES: _nullable([*ss, *from_source, *_PROVENANCE]),
        SS_OBJECTS: _nullable(
            [pa.field("ssObjectId", pa.int64()), *orbit, pa.field(OBJECT_ORDER, pa.float64()), *_PROVENANCE]
        ),
    }


def view_schemas(home: Home | None = None, names: Iterable[str] = VIEW_NAMES) -> dict[str, pa.Schema]:
    """The columns of each view, the same in both modes: every column the lake's table has (ZTF's own
    ``magpsf``, ``objectId``, ``ndethist``... once the lake ingested ZTF alerts; the objects' features), then
    the placeholder's columns it lacks. Without ``home``: the placeholders'.

    A streaming batch is given these columns (``conform``), so a filter that runs over the lake also runs over
    every batch, whichever survey the batch's alerts come from.
    """
    names = list(names)
    lake = read.table_schemas(home, names) if home is not None else {}
    placeholders = placeholder_schemas()
    return {name: _with_columns(lake.get(name, pa.schema([])), placeholders[name]) for name in names}


def _with_columns(schema: pa.Schema, wanted: pa.Schema) -> pa.Schema:
    """``schema`` and then the fields of ``wanted`` it lacks (names compared as SQL does: case-insensitively)."""
    have = {name.lower() for name in schema.names}
    return pa.schema([*schema, *(f.with_nullable(True) for f in wanted if f.name.lower() not in have)])


def conform(data: Any, schema: pa.Schema) -> Any:
    """``data`` (an Arrow table or dataset) with the columns of ``schema`` it lacks added, as nulls.

    The columns it has keep their values and types: a batch of LSST alerts gets ``magpsf`` as nulls, as LSST
    rows have it in a lake that also holds ZTF alerts.
    """
    full = _with_columns(data.schema, schema)
    if len(full) == len(data.schema):
        return data
    if isinstance(data, pa.Table):
        for f in list(full)[len(data.schema) :]:
            data = data.append_column(f, pa.nulls(data.num_rows, f.type))
        return data
    return data.replace_schema(full)


def with_placeholders(existing: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` views plus an empty, typed table for every view name it lacks."""
    views = dict(existing)
    for name, schema in placeholder_schemas().items():
        views.setdefault(name, schema.empty_table())
    return views


def batch_views(
    sources: pa.Table,
    objects: pa.Table,
    history: pa.Table | None = None,
    extra: Mapping[str, pa.Table] | None = None,
    columns: Mapping[str, pa.Schema] | None = None,
) -> dict[str, pa.Table]:
    """The streaming views of one micro-batch.

    Parameters
    ----------
    sources
        The batch's triggering diaSources.
    objects
        The batch's diaObject rows (one per alert); the view keeps each object's newest state.
    history
        The alerts' packet history (prvDiaSources rows); joined to ``sources``, without repeating a source.
    extra
        Further views of the batch (``forced_sources``, ``context``, ``watchlist_hits``…) when a stage made them.
    columns
        The columns of views (``view_schemas``): each of these views gets those it lacks, as nulls.
    """
    views: dict[str, pa.Table] = {}
    if history is not None and history.num_rows:
        # The same earlier detection comes with every alert of its object: keep it once.
        history = first_per_key(history, "diaSourceId")
        known = pc.is_in(history["diaSourceId"], value_set=sources["diaSourceId"])
        earlier = history.filter(pc.invert(known))
        sources = pa.concat_tables([sources, earlier], promote_options="permissive")
    views[SOURCES] = sources
    views[OBJECTS] = (
        latest_per_key(objects, "diaObjectId", OBJECT_ORDER) if OBJECT_ORDER in objects.column_names else objects
    )
    views.update(extra or {})
    views = with_placeholders(views)
    for name, schema in (columns or {}).items():
        views[name] = conform(views[name], schema)
    return views


def schemas_of(tables: Mapping[str, Any]) -> dict[str, pa.Schema]:
    """The Arrow schema of each view (tables, datasets and readers all have ``.schema``)."""
    return {name: data.schema for name, data in tables.items()}
