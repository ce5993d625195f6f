"""Lasair's annotate call, so annotators written for Lasair (``lasair_client.annotate``) work unchanged.

``POST /lasair/api/annotate/`` with form fields (or JSON) ``topic``, ``objectId``, ``classification``,
``version``, ``explanation``, ``classdict`` (JSON text) and ``url``, and ``Authorization: Token <token>``.
Lasair answers ``{"status": "success", ...}``, or an error status with ``{"error": message}``; so does this.
The write itself is :func:`nightjar.api.annotation_api.write_annotations`, shared with ``/api/v1/annotations``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from nightjar.api import annotations as annotation_api
from nightjar.api import ids
from nightjar.api.annotations import AnnotationError, NewAnnotation
from nightjar.api.auth import caller
from nightjar.api.lake_state import wrote
from nightjar.api.users import User
from nightjar.settings import Settings

FIELDS = ("topic", "objectId", "classification", "version", "explanation", "classdict", "url")
MAX_BODY = 64 * 1024
MAX_LIST = 1000  # annotations in one annotatelist call (its body is MAX_LIST_BODY at most)
MAX_LIST_BODY = 8 * 1024 * 1024

_FORM_SCHEMA = {
    "type": "object",
    "required": ["topic", "objectId", "classification", "version", "explanation", "classdict", "url"],
    "properties": {
        "topic": {"type": "string", "maxLength": annotation_api.MAX_TOPIC},
        "objectId": {"type": "string", "description": "The diaObjectId, or a ZTF object name (ZTF18abcdefg)."},
        "classification": {"type": "string", "maxLength": annotation_api.MAX_CLASSIFICATION},
        "version": {"type": "string", "maxLength": annotation_api.MAX_VERSION},
        "explanation": {"type": "string", "maxLength": annotation_api.MAX_EXPLANATION},
        "classdict": {"type": "string", "maxLength": annotation_api.MAX_CLASSDICT, "description": "A JSON object."},
        "url": {"type": "string", "maxLength": annotation_api.MAX_URL},
    },
}


_LIST_SCHEMA = {
    "type": "object",
    "required": ["annotations"],
    "properties": {"annotations": {"type": "array", "items": {**_FORM_SCHEMA, "type": "object"}}},
}


def _error(status_code: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Token"} if status_code == 401 else None
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


async def _fields(request: Request, limit: int = MAX_BODY) -> dict[str, str]:
    """The form (urlencoded) or JSON body as text fields; a 400 message when it is neither."""
    body = await request.body()
    if len(body) > limit:
        raise AnnotationError(413, f"the request body is over {limit} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise AnnotationError(400, "the request body is not UTF-8 text") from None
    if kind == "application/json":
        try:
            data = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            raise AnnotationError(400, f"the JSON body does not parse: {exc}") from None
        if not isinstance(data, dict):
            raise AnnotationError(400, "the JSON body must be an object of the annotate fields")
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items() if v is not None}
    if kind in ("", "application/x-www-form-urlencoded"):
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
    raise AnnotationError(400, "send the fields as a form (application/x-www-form-urlencoded) or as JSON")


def _annotation(fields: dict[str, str]) -> NewAnnotation:
    missing = [f for f in ("topic", "objectId", "classification", "classdict") if f not in fields]
    if missing:
        raise AnnotationError(400, f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    try:
        object_id = ids.object_id(fields["objectId"])
    except ValueError:
        object_id = -1
    if not 0 <= object_id <= ids.INT64_MAX:
        raise AnnotationError(
            400, f"objectId must be a diaObjectId (an integer) or a ZTF object name, not {fields['objectId']!r}"
        )
    return NewAnnotation(
        diaObjectId=object_id,
        topic=fields["topic"],
        classification=fields["classification"],
        version=fields.get("version", ""),
        explanation=fields.get("explanation", ""),
        classdict=fields["classdict"],
        url=fields.get("url", ""),
    )


def _annotation_list(fields: dict[str, str]) -> list[NewAnnotation]:
    """The annotations of an annotatelist body (``annotations``: a JSON list of annotate's fields)."""
    try:
        items = json.loads(fields.get("annotations", "null"))
    except json.JSONDecodeError:
        items = None
    if not isinstance(items, list) or not items:
        raise AnnotationError(400, 'send {"annotations": [...]} as JSON: a non-empty list of annotations')
    if len(items) > MAX_LIST:
        raise AnnotationError(400, f"at most {MAX_LIST} annotations in one call, not {len(items)}")
    rows = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise AnnotationError(400, f"annotation {index} is not an object of the annotate fields")
        text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in item.items() if v is not None}
        try:
            rows.append(_annotation(text))
        except AnnotationError as exc:
            raise AnnotationError(exc.status_code, f"annotation {index}: {exc.message}; batch rejected") from None
    return rows


async def _lasair_caller(request: Request) -> User | JSONResponse:
    """The caller, or Lasair's error answer when the token is missing, malformed or unknown."""
    try:
        return await caller(request, request.headers.get("authorization"))
    except HTTPException as exc:
        return _error(exc.status_code, str(exc.detail))


def router(settings: Settings) -> APIRouter:
    """Lasair's annotate and annotate_list routes, answering as Lasair does."""
    api = APIRouter(prefix="/lasair/api", tags=["lasair"])

    @api.post(
        "/annotate/",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA}},
            }
        },
        responses={200: {"description": '`{"status": "success", "n": 1, "annotationId": "..."}`'}},
        response_model=None,
    )
    async def annotate(
        request: Request, user: Annotated[User | JSONResponse, Depends(_lasair_caller)]
    ) -> dict[str, Any] | JSONResponse:
        """Lasair's annotate: one annotation from form fields, ``Authorization: Token <token>``."""
        if isinstance(user, JSONResponse):
            return user
        try:
            row = _annotation(await _fields(request))
            written = await run_in_threadpool(annotation_api.write_annotations, settings, user, [row])
        except AnnotationError as exc:
            return _error(exc.status_code, exc.message)
        finally:
            wrote(request)  # a 503 after the write (Kafka down) still stored the annotation
        return {"status": "success", "n": written.num_rows, "annotationId": str(written["annotationId"][0].as_py())}

    @api.post(
        "/annotatelist/",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _LIST_SCHEMA}}}},
        responses={200: {"description": '`{"status": "success", "n": 3}`'}},
        response_model=None,
    )
    async def annotate_list(
        request: Request, user: Annotated[User | JSONResponse, Depends(_lasair_caller)]
    ) -> dict[str, Any] | JSONResponse:
        """Lasair's annotate_list: ``{"annotations": [{annotate's fields}, ...]}`` as JSON, written together or
        not at all (one refused annotation refuses the batch); ``{"status": "success", "n": count}``."""
        if isinstance(user, JSONResponse):
            return user
        try:
            rows = _annotation_list(await _fields(request, MAX_LIST_BODY))
            written = await run_in_threadpool(annotation_api.write_annotations, settings, user, rows)
        except AnnotationError as exc:
            return _error(exc.status_code, exc.message)
        finally:
            wrote(request)
        return {"status": "success", "n": written.num_rows}

    return api
