"""Lasair's ``query`` parameters (selected, tables, conditions) as one SELECT over Nightjar's views.

As in Lasair, ``objects`` is always in the FROM list and the other tables join it on the object's ID;
``conditions`` follows the joins after ``AND`` (or stands alone when it is only an ``ORDER BY``). The result is
untrusted SQL: it runs in the sandbox, which admits one SELECT over the views and nothing else; the checks here
only turn the commonest mistakes into clear messages.
"""

from __future__ import annotations

import re

import duckdb

from nightjar.api.lasair_columns import nightjar_name, refusal
from nightjar.errors import UserError
from nightjar.sql.parse import QueryError, parse, walk

# Lasair table names (lower case) -> Nightjar views.
OBJECT_TABLES = {"objects": "objects", "diaobjects": "objects"}
JOINED_TABLES = {
    "sherlock_classifications": "context",
    "context": "context",
    "sources": "sources",
    "diasources": "sources",
    "forced_sources": "forced_sources",
    "diaforcedsources": "forced_sources",
    "crossmatch_tns": "crossmatch_tns",
    # Lasair's gravitational-wave hits: its map id is ``mw_id``.
    "mma_area_hits": "(SELECT *, skymapId AS mw_id FROM mma_area_hits)",
}
# Lasair's watchlist:ID and area:ID: the hits of one list, with Lasair's column names beside Nightjar's.
WATCH_TABLES = {
    "watchlist": (
        "(SELECT *, watchlistId AS wl_id, coneId AS cone_id, coneName AS name, separationArcsec AS arcsec "
        "FROM watchlist_hits)",
        "watchlist_hits",
        "watchlistId",
    ),
    "area": ("(SELECT *, watchmapId AS ar_id FROM area_hits)", "area_hits", "watchmapId"),
}
_TOPIC = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class LasairQueryError(UserError):
    """Parameters that cannot make a query."""


def _tables(tables: str) -> tuple[str, list[tuple[str, str, str | None]]]:
    """The objects alias and the joined (view, alias, condition) triples: an annotation topic's condition, or a
    watchlist's or area's."""
    objects_alias = "objects"
    joined: list[tuple[str, str, str | None]] = []
    for raw in (t.strip() for t in tables.split(",")):
        if not raw:
            continue
        low = raw.lower()
        if low in OBJECT_TABLES:
            objects_alias = raw if _NAME.match(raw) else "objects"
        elif low in JOINED_TABLES:
            joined.append((JOINED_TABLES[low], raw, None))
        elif low.startswith(("watchlist:", "area:")):
            kind, _, number = low.partition(":")
            number = number.strip()
            if not number.isdigit() or len(number) > 18:
                raise LasairQueryError(f"Error in FROM list: {raw} is not of the form {kind}:ID (ID a number)")
            view, alias, column = WATCH_TABLES[kind]
            joined.append((view, alias, f"{alias}.{column} = {int(number)}"))
        elif low.startswith(("annotator:", "annotators:")):
            for topic in raw.split(":", 1)[1].split("&"):
                if not _TOPIC.match(topic):
                    raise LasairQueryError(f"Error in FROM list: {raw} is not of the form annotator:topic")
                joined.append(("annotations", topic, f"\"{topic}\".topic = '{topic}'"))
        else:
            known = ", ".join([*OBJECT_TABLES, *JOINED_TABLES, "annotator:TOPIC", "watchlist:ID", "area:ID"])
            raise LasairQueryError(f"Error in FROM list: unknown table {raw!r} (the tables are {known})")
    return objects_alias, joined


def build_query(selected: str, tables: str, conditions: str) -> str:
    """The SELECT Lasair's query builder would make, over Nightjar's views.

    Examples
    --------
    >>> print(build_query("objects.diaObjectId", "objects, sherlock_classifications", "objects.nSources > 2"))
    SELECT objects.diaObjectId
    FROM objects AS objects, context AS sherlock_classifications
    WHERE objects.diaObjectId = sherlock_classifications.diaObjectId
      AND objects.nSources > 2
    """
    if not selected.strip():
        raise LasairQueryError("SELECT expression cannot be blank. Try putting * in it.")
    for part, text in (("SELECT", selected), ("FROM", tables), ("WHERE", conditions)):
        if ";" in text:
            raise LasairQueryError(f"Cannot use ; in the {part} clause: a query is one SELECT statement")
    if re.search(r"\b(limit|offset)\b", conditions, re.IGNORECASE):
        raise LasairQueryError("Dont put LIMIT or OFFSET in the WHERE clause, use the limit and offset parameters")
    alias, joined = _tables(tables)
    others = [f'{view} AS "{name}"' if view == "annotations" else f"{view} AS {name}" for view, name, _ in joined]
    where = [
        f'{alias}.diaObjectId = "{name}".diaObjectId'
        if view == "annotations"
        else f"{alias}.diaObjectId = {name}.diaObjectId"
        for view, name, _ in joined
    ]
    where += [condition for _, _, condition in joined if condition]
    condition = conditions.strip()
    order = ""
    if condition.lower().startswith("order"):
        order, condition = f"\n{condition}", ""
    if condition:
        where.append(condition)

    def assemble(objects: str) -> str:
        sql = f"SELECT {selected.strip()}\nFROM {', '.join([f'{objects} AS {alias}', *others])}"
        if where:
            sql += "\nWHERE " + "\n  AND ".join(where)
        return sql + order

    plain = assemble("objects")
    renames = _lasair_names(plain, alias)
    if not renames:
        return plain
    added = ", ".join(f"{target} AS {name}" for name, target in renames)
    return assemble(f"(SELECT *, {added} FROM objects)")


def _lasair_names(sql: str, alias: str) -> list[tuple[str, str]]:
    """The (Lasair-LSST name, Nightjar column) pairs of the objects columns ``sql`` names differently
    (``decl``...); a LasairQueryError naming the Lasair-LSST columns Nightjar lacks. The column references come
    from DuckDB's parse tree: unqualified or qualified by the objects alias."""
    con = duckdb.connect()
    try:
        node = parse(con, sql).node
    except QueryError:
        return []  # the engine reports the syntax error, with its position
    finally:
        con.close()
    names = [
        str(item["column_names"][-1])
        for item in walk(node)
        if item.get("class") == "COLUMN_REF"
        and (len(item.get("column_names") or []) == 1 or str(item["column_names"][-2]).lower() == alias.lower())
    ]
    refused = refusal(names)
    if refused:
        raise LasairQueryError(refused)
    renames = {name.lower(): (name, target) for name in names if (target := nightjar_name(name))}
    return sorted(renames.values())
