"""Lasair-compatible endpoints under ``/lasair/api/``: ``cone``, ``query``, ``object``, ``sherlock/object`` and
``sherlock/position``, so that the ``lasair`` client (``lasair_client(token, endpoint="http://host:port/lasair/api")``)
works unchanged.

Parameters come as POST form data (what the client sends), a JSON body, or GET query parameters, with
``Authorization: Token <token>``. Answers have Lasair's shapes; errors are a 400 with ``{"error": message}``, or
``{field: [message]}`` for a missing or malformed parameter, as Lasair's serializers give them. Nightjar's names are
LSST's (``diaObjectId``, ``dec``; ``decl`` is added to object rows as Lasair has it), and 64-bit IDs are strings.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

import pyarrow.compute as pc
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from nightjar import paths, records
from nightjar.api import cone as cone_api
from nightjar.api import ids
from nightjar.api.auth import Caller, auth_state
from nightjar.api.lake_state import Lake
from nightjar.api.lasair_query import LasairQueryError, build_query
from nightjar.api.objects import cutout_links
from nightjar.catalogs.context import MATCH_FIELDS
from nightjar.catalogs.report import context_report
from nightjar.lake import objects
from nightjar.lake.serving import Snapshot
from nightjar.settings import Settings
from nightjar.sql import engine
from nightjar.sql.parse import QueryError
from nightjar.sql.watch_views import viewer_of

PREFIX = "/lasair/api"
DEFAULT_LIMIT = 1000
TRUE = {"true", "1", "yes", "on", "lite"}
FALSE = {"false", "0", "no", "off", ""}


class BadRequest(Exception):
    """A Lasair-style 400: ``{"error": ...}`` or serializer-style field errors."""

    def __init__(self, body: dict[str, Any], status: int = 400) -> None:
        super().__init__(str(body))
        self.body = body
        self.status = status


async def parameters(request: Request) -> dict[str, Any]:
    """GET query parameters, overridden by a form-encoded or JSON POST body."""
    found: dict[str, Any] = dict(request.query_params)
    if request.method != "POST":
        return found
    body = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise BadRequest({"error": "the JSON body does not parse"}) from None
        if not isinstance(data, dict):
            raise BadRequest({"error": "the JSON body must be an object"})
        found.update(data)
    elif kind in ("application/x-www-form-urlencoded", ""):
        found.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    else:
        raise BadRequest({"error": f"send form data or JSON, not {kind}"})
    return found


def _required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None:
        raise BadRequest({name: ["This field is required."]})
    return value


def _float(params: dict[str, Any], name: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        value = float(_required(params, name))
    except (TypeError, ValueError):
        raise BadRequest({name: ["A valid number is required."]}) from None
    if not math.isfinite(value):
        raise BadRequest({name: ["A valid number is required."]})
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise BadRequest({name: [f"{name} must be between {lo:g} and {hi:g}"]})
    return value


def _int(params: dict[str, Any], name: str, default: int | None = None, lo: int = 0) -> int:
    raw = params.get(name, default)
    if raw is None:
        raise BadRequest({name: ["This field is required."]})
    text = str(raw).strip()
    # Floats (1.7e+17 is not the id meant), booleans and non-ASCII digits (int() reads '١٢') are not integers.
    if isinstance(raw, bool | float) or not text.isascii():
        raise BadRequest({name: ["A valid integer is required."]})
    try:
        value = int(text)
    except ValueError:
        raise BadRequest({name: ["A valid integer is required."]}) from None
    if value < lo or value > 2**63 - 1:
        raise BadRequest({name: [f"Ensure this value is between {lo} and {2**63 - 1}."]})
    return value


def _bool(params: dict[str, Any], name: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise BadRequest({name: ["Must be a valid boolean."]})


def _object(raw: Any) -> int:
    """An ``objectId`` parameter: a diaObjectId or a ZTF object name (``ZTF18abcdefg``)."""
    if raw is None:
        raise BadRequest({"objectId": ["This field is required."]})
    try:
        value = ids.object_id(raw)
    except ValueError:
        raise BadRequest(
            {"objectId": ["A valid integer is required (a diaObjectId, or a ZTF object name such as ZTF18abcdefg)."]}
        ) from None
    if not 0 <= value <= ids.INT64_MAX:
        raise BadRequest({"objectId": [f"Ensure this value is between 0 and {ids.INT64_MAX}."]})
    return value


def _ids(params: dict[str, Any]) -> list[tuple[str, int]]:
    """``objectId``, or ``objectIds`` (a comma-separated list or a JSON list): each as given and as an id."""
    raw = params.get("objectIds", params.get("objectId"))
    if raw is None:
        raise BadRequest({"objectId": ["This field is required."]})
    items = raw if isinstance(raw, list) else [p for p in re.split(r"[,\s]+", str(raw)) if p]
    return [(str(i).strip(), _object(i)) for i in items]


def cone_answer(snap: Snapshot, params: dict[str, Any]) -> dict[str, Any]:
    """Lasair's cone search over the snapshot's objects, in Lasair's answer layout; a BadRequest for bad parameters."""
    ra = _float(params, "ra", 0, 360)
    dec = _float(params, "dec", -90, 90)
    radius = _float(params, "radius")
    if radius < 0:
        raise BadRequest({"radius": ["radius must be positive"]})
    if radius > cone_api.MAX_RADIUS_ARCSEC:
        raise BadRequest({"error": "Max radius is 1000 arcsec."})
    kind = str(params.get("requestType", "all"))
    if kind not in ("all", "nearest", "count"):
        raise BadRequest({"requestType": [f'"{kind}" is not a valid choice.']})
    found = cone_api.search(snap, ra, dec, max(radius, 1e-6))
    hits = [
        {"object": str(i), "separation": s}
        for i, s in zip(found["diaObjectId"].to_pylist(), found["sep_arcsec"].to_pylist(), strict=True)
    ]
    if kind == "count":
        return {"count": len(hits)}
    if kind == "nearest":
        return {"nearest": hits[0]} if hits else {}
    return {"objects": hits, "count": len(hits), "nearest": hits[0] if hits else {}}


def object_answer(request: Request, snap: Snapshot, params: dict[str, Any]) -> dict[str, Any] | None:
    """Lasair's object answer (diaObject, diaSourcesList, diaForcedSourcesList and, unless ``lasair_added`` is false,
    lasairData: context, TNS, annotations and cutout URLs); None when the object is not in the lake."""
    object_id = _object(params.get("objectId"))
    lite = _bool(params, "lite", False)
    added = _bool(params, "lasair_added", True)
    row = objects.object_row(snap.tables, object_id, snap.object_index())
    if row is None:
        return None
    curves = objects.light_curves(snap.tables, row, full=not lite)
    sources = records.to_records(curves.detections)
    forced = records.to_records(curves.forced) if curves.forced.num_rows else []
    answer: dict[str, Any] = {"diaObjectId": str(object_id)}
    if not lite or added:
        dia_object = records.to_records(row)[0]
        dia_object["decl"] = dia_object.get("dec")
        answer["diaObject"] = dia_object
    if added:
        context = objects.context_of(snap.tables, object_id)
        sherlock = records.to_records(context.row)[0] if context.row is not None else {}
        alerts = curves.detections
        if paths.FROM_HISTORY in alerts.column_names:
            alerts = alerts.filter(pc.invert(pc.fill_null(alerts[paths.FROM_HISTORY], False)))
        answer["lasairData"] = {
            "sherlock": sherlock,
            "TNS": lasair_tns(objects.tns_of(snap.tables, object_id)),
            "annotations": records.to_records(objects.annotations_of(snap.tables, object_id)),
            "imageUrls": [_image_urls(request, i) for i in alerts["diaSourceId"].to_pylist()],
        }
    answer["diaSourcesList"] = sources
    answer["diaForcedSourcesList"] = forced
    return answer


def lasair_tns(match: Any) -> dict[str, Any]:
    """The object's TNS match in Lasair's ``lasairData.TNS`` layout; ``{}`` when it has none."""
    if match is None:
        return {}
    row = records.to_records(match)[0]
    prefix = row.get("tns_prefix") or ""
    name = row.get("tns_name") or ""
    return {
        "tns_name": name.removeprefix(prefix).strip() if prefix else name,
        "tns_prefix": prefix,
        "type": row.get("type"),
        "z": row.get("redshift"),
        "ra": row.get("ra"),
        "decl": row.get("dec"),
        "disc_mag": row.get("discoverymag"),
        "disc_date": row.get("discoverydate"),
        "lastmodified_date": row.get("lastmodified"),
        "tns_objid": row.get("tns_objid"),
        "separationArcsec": row.get("separationArcsec"),
    }


def _image_urls(request: Request, dia_source_id: int) -> dict[str, str]:
    links = cutout_links(request, dia_source_id)
    return {"diaSourceId": links["diaSourceId"], **{k.capitalize(): links[k]["fits"] for k in objects.CUTOUT_KINDS}}


def _crossmatch(name: str, match: dict[str, Any]) -> dict[str, Any]:
    return {"transient_object_id": name, "rank": match.get("rank"), **{f: match.get(f) for f, _ in MATCH_FIELDS}}


def sherlock_objects(settings: Settings, snap: Snapshot, params: dict[str, Any]) -> dict[str, Any]:
    """Sherlock's ``{"classifications": {id: [class, description]}, "crossmatches": [...]}`` for objects: the
    stored context, or a live classification at the object's position when it has none yet."""
    lite = _bool(params, "lite", False)
    classifications: dict[str, list[str]] = {}
    crossmatches: list[dict[str, Any]] = []
    for name, object_id in _ids(params):
        stored = objects.context_of(snap.tables, object_id)
        if stored.row is not None:
            row = records.to_records(stored.row)[0]
            matches = records.to_records(stored.matches) if stored.matches.num_rows else []
        else:
            found = objects.object_row(snap.tables, object_id, snap.object_index())
            if found is None:
                raise BadRequest({"message": f"Object {name} not found"}, status=404)
            ra, dec = found["ra"][0].as_py(), found["dec"][0].as_py()
            row = context_report(settings, ra, dec, None)
            matches = row["matches"]
        classifications[name] = [row["classification"], row["description"]]
        crossmatches += [_crossmatch(name, m) for m in matches if not lite or m.get("rank") == 1]
    return {"classifications": classifications, "crossmatches": crossmatches}


def sherlock_position(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """Lasair's Sherlock answer for a position, classified now against the installed catalogues (with ``lite``, the top
    match only)."""
    ra = _float(params, "ra", 0, 360)
    dec = _float(params, "dec", -90, 90)
    lite = _bool(params, "lite", False)
    report = context_report(settings, ra % 360.0, dec, None)
    name = "query0"
    return {
        "classifications": {name: [report["classification"], report["description"]]},
        "crossmatches": [_crossmatch(name, m) for m in report["matches"] if not lite or m.get("rank") == 1],
    }


def query_answer(
    settings: Settings, params: dict[str, Any], cap: int, viewer: str | None = None
) -> list[dict[str, Any]]:
    """The rows of a Lasair query (``selected``, ``tables``, ``conditions``, ``limit``, ``offset``), run in the sandbox
    with at most ``cap`` rows in all; a BadRequest for a bad query or an offset beyond the cap."""
    selected = str(_required(params, "selected"))
    tables = str(_required(params, "tables"))
    conditions = str(params.get("conditions") or "")
    limit = min(_int(params, "limit", DEFAULT_LIMIT, lo=1), cap)
    offset = _int(params, "offset", 0)
    try:
        sql = build_query(selected, tables, conditions)
    except LasairQueryError as exc:
        raise BadRequest({"error": str(exc)}) from None
    if offset >= cap:
        raise BadRequest({"error": f"rows beyond {cap} are not served to this role: narrow the query"})
    try:
        page = engine.query_page(settings, sql, offset, max(1, min(limit, cap - offset)), None, cap, viewer)
    except (QueryError, ValueError) as exc:
        raise BadRequest({"error": f"your query:\n{sql}\nreturned the error: {exc}"}) from None
    return records.to_records(page.table)


def _answer(body: Any) -> JSONResponse:
    return JSONResponse(jsonable_encoder(body))  # timestamps (annotations' ``created``) as ISO 8601


def router(settings: Settings) -> APIRouter:
    """The Lasair-compatible routes (cone, query, object, sherlock), each under GET and POST, with and without the
    trailing slash Lasair's client adds."""
    api = APIRouter(prefix=PREFIX, tags=["lasair"])

    def route(path: str, summary: str) -> Any:
        def register(handler: Any) -> Any:
            # The client asks for '<endpoint>/<method>/'; both spellings answer, without a redirect.
            for method in ("GET", "POST"):
                name = f"lasair{path.replace('/', '_')}_{method.lower()}"
                api.add_api_route(f"{path}/", handler, methods=[method], summary=summary, operation_id=name)
            api.add_api_route(path, handler, methods=["GET", "POST"], include_in_schema=False)
            return handler

        return register

    async def run(func: Any, *args: Any) -> JSONResponse:
        try:
            return _answer(await run_in_threadpool(func, *args))
        except BadRequest as exc:
            return JSONResponse(exc.body, status_code=exc.status)

    @route("/cone", "Lasair cone search")
    async def lasair_cone(request: Request, snap: Lake, user: Caller) -> JSONResponse:
        """Parameters ``ra``, ``dec`` (degrees), ``radius`` (arcsec, at most 1000) and ``requestType``
        (``all``: ``{"objects": [{"object", "separation"}], "count", "nearest"}``; ``nearest``:
        ``{"nearest": {...}}``; ``count``: ``{"count": n}``)."""
        try:
            params = await parameters(request)
        except BadRequest as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        return await run(cone_answer, snap, params)

    @route("/query", "Lasair query: selected, tables, conditions")
    async def lasair_query(request: Request, user: Caller) -> JSONResponse:
        """``SELECT <selected> FROM <tables> WHERE <conditions>`` run in the SQL sandbox, ``limit`` rows (default
        1000, capped by role) from ``offset``; a list of rows. Tables: ``objects`` (always, joined on
        diaObjectId), ``sherlock_classifications`` (the context table), ``sources``, ``forced_sources`` and
        ``annotator:TOPIC``."""
        try:
            params = await parameters(request)
        except BadRequest as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        viewer = viewer_of(user.name, user.anonymous, user.is_admin)
        return await run(query_answer, settings, params, auth_state(request).max_rows(user), viewer)

    @route("/object", "Lasair object: diaObject, diaSourcesList, diaForcedSourcesList, lasairData")
    async def lasair_object(request: Request, snap: Lake, user: Caller) -> JSONResponse:
        """Parameters ``objectId``, ``lite`` (photometry columns only) and ``lasair_added`` (add ``lasairData``:
        sherlock context, annotations, cutout URLs)."""
        try:
            params = await parameters(request)
            answer = await run_in_threadpool(object_answer, request, snap, params)
        except BadRequest as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        if answer is None:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        return _answer(answer)

    @route("/sherlock/object", "Sherlock context of objects")
    async def lasair_sherlock_object(request: Request, snap: Lake, user: Caller) -> JSONResponse:
        """Parameters ``objectId`` (or ``objectIds``, comma-separated) and ``lite`` (top match only):
        ``{"classifications": {id: [class, description]}, "crossmatches": [...]}``."""
        try:
            params = await parameters(request)
        except BadRequest as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        return await run(sherlock_objects, settings, snap, params)

    @route("/sherlock/position", "Sherlock context of a position")
    async def lasair_sherlock_position(request: Request, user: Caller) -> JSONResponse:
        """Parameters ``ra``, ``dec`` (degrees) and ``lite``: the live classification of the position,
        ``{"classifications": {"query0": [class, description]}, "crossmatches": [...]}``."""
        try:
            params = await parameters(request)
        except BadRequest as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        return await run(sherlock_position, settings, params)

    return api
