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
from nightjar.api.annotations import AnnotationError, NewAnnotation
from nightjar.api.auth import caller
from nightjar.api.lake_state import wrote
from nightjar.api.users import User
from nightjar.settings import Settings

FIELDS = ("topic", "objectId", "classification", "version", "explanation", "classdict", "url")
MAX_BODY = 64 * 1024

_FORM_SCHEMA = {
    "type": "object",
    "required": ["topic", "objectId", "classification", "version", "explanation", "classdict", "url"],
    "properties": {
        "topic": {"type": "string", "maxLength": annotation_api.MAX_TOPIC},
        "objectId": {"type": "string", "description": "The diaObjectId."},
        "classification": {"type": "string", "maxLength": annotation_api.MAX_CLASSIFICATION},
        "version": {"type": "string", "maxLength": annotation_api.MAX_VERSION},
        "explanation": {"type": "string", "maxLength": annotation_api.MAX_EXPLANATION},
        "classdict": {"type": "string", "maxLength": annotation_api.MAX_CLASSDICT, "description": "A JSON object."},
        "url": {"type": "string", "maxLength": annotation_api.MAX_URL},
    },
}


def _error(status_code: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Token"} if status_code == 401 else None
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


async def _fields(request: Request) -> dict[str, str]:
    """The form (urlencoded) or JSON body as text fields; a 400 message when it is neither."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise AnnotationError(413, f"the request body is over {MAX_BODY} bytes")
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
    object_id = fields["objectId"].strip()
    # isdigit() alone admits digits int() refuses ('²'): only ASCII digits name an object.
    if not (object_id.isascii() and object_id.isdigit()) or len(object_id) > 19 or int(object_id) >= 2**63:
        raise AnnotationError(400, f"objectId must be a diaObjectId (an integer), not {fields['objectId']!r}")
    return NewAnnotation(
        diaObjectId=int(object_id),
        topic=fields["topic"],
        classification=fields["classification"],
        version=fields.get("version", ""),
        explanation=fields.get("explanation", ""),
        classdict=fields["classdict"],
        url=fields.get("url", ""),
    )


async def _lasair_caller(request: Request) -> User | JSONResponse:
    """The caller, or Lasair's error answer when the token is missing, malformed or unknown."""
    try:
        return await caller(request, request.headers.get("authorization"))
    except HTTPException as exc:
        return _error(exc.status_code, str(exc.detail))


def router(settings: Settings) -> APIRouter:
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

    return api
