"""Check a filter's SQL before it is registered: it parses, reads only the views, binds, and can be delivered.

The check binds the query against the views' typed schemas (empty), so a misspelt column is reported when the
filter is added, not on the first batch at night.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from nightjar.paths import OBJECT_KEY
from nightjar.sql import sandbox, views
from nightjar.sql.compile import FilterSpec, compile_filters
from nightjar.sql.parse import QueryError, clean_message, tables_read
from nightjar.storage import Home


@dataclass(frozen=True)
class FilterShape:
    """What a valid filter returns and how it runs."""

    columns: tuple[str, ...]
    types: tuple[str, ...]
    shared_pass: bool  # True: a simple filter, run in a pass shared with other filters
    schema: pa.Schema = field(default_factory=lambda: pa.schema([]))  # the results' Arrow schema


def check_filter_sql(sql: str, home: Home | None = None) -> FilterShape:
    """The shape of ``sql`` as a streaming filter; a QueryError that points at the problem otherwise.

    The query is bound against the views' columns (``views.view_schemas``): those of the lake in ``home`` (ZTF's
    own columns once it holds ZTF alerts, the objects' features), which every streaming batch is given too.

    Examples
    --------
    >>> check_filter_sql("SELECT diaSourceId, mag(psfFlux) AS m FROM sources WHERE band = 'r'").columns
    ('diaSourceId', 'm')
    """
    tables = {name: schema.empty_table() for name, schema in views.view_schemas(home).items()}
    box = sandbox.connect(tables, sandbox.Limits(timeout_s=10.0))
    try:
        parsed = sandbox.check(box, sql)
        sandbox.confine(box, parsed.sql)
        try:
            relation = box.con.sql(parsed.sql)
            columns = tuple(relation.columns)
            types = tuple(str(t) for t in relation.types)
            schema = relation.limit(0).to_arrow_table().schema
        except duckdb.Error as exc:
            raise QueryError(clean_message(str(exc))) from None
    finally:
        box.close()
    plan = compile_filters([FilterSpec(0, 0, parsed.sql)], views.schemas_of(tables))
    if 0 in plan.errors:
        raise QueryError(plan.errors[0])
    shared = bool(plan.groups)
    if not shared:
        lower = {c.lower(): i for i, c in enumerate(columns)}
        where = lower.get(OBJECT_KEY.lower())
        if where is None or "INT" not in types[where].upper():
            raise QueryError(
                "this filter must select diaObjectId: a filter with joins, grouping, window functions or "
                "DISTINCT/LIMIT runs as its own query, and each row it returns is delivered as a match on an object"
            )
    return FilterShape(columns, types, shared, schema)


def empty_view_warnings(sql: str) -> list[str]:
    """Warnings for a filter that reads views no stage fills yet (``views.NOT_FILLED_YET``): they hold no rows,
    so what the filter takes from them is empty until the feature lands. Not an error: the filter stays valid.

    Examples
    --------
    >>> empty_view_warnings("SELECT diaObjectId FROM objects")
    []
    >>> empty_view_warnings("SELECT o.diaObjectId FROM objects o JOIN watchlist_hits w USING (diaObjectId)")
    []
    """
    return [
        f"this filter reads {view}, which holds no rows yet ({feature} is not part of Nightjar yet): it gets "
        "nothing from that view until then; the filter is kept, and reads it once it is filled"
        for view, feature in views.NOT_FILLED_YET.items()
        if view in tables_read(sql)
    ]
