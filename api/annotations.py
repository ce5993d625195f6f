"""Annotations: annotators write classifications of objects back; anyone reads them.

``write_annotations`` is the one write path: ``POST /api/v1/annotations`` and Lasair's ``POST
/lasair/api/annotate/`` both call it. It checks the caller (an annotator writes only to its own topics; admins to
any), the fields (Lasair's limits), that each object exists in the lake, then appends the rows to the
``annotations`` table and logs a lake snapshot, so a query right after sees them, and sends them to the
annotations topic, from which the pipeline runs the filters that read ``annotations`` (annotation-triggered
filters, as in Lasair).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlparse

import pyarrow as pa
from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from nightjar import records
from nightjar.api.auth import Caller, require
from nightjar.api.ids import StrictId
from nightjar.api.lake_state import wrote
from nightjar.api.users import ANNOTATOR, User
from nightjar.lake.annotations import (
    append_annotations,
    encode_messages,
    existing_objects,
    new_annotation_id,
    read_annotations,
    to_table,
)
from nightjar.settings import Settings
from nightjar.streams import kafka
from nightjar.streams.publish import DeliveryError, Publisher

log = logging.getLogger(__name__)

# Lasair's limits (lasair-lsst's AnnotateSerializer), so an annotator written for Lasair fits here unchanged.
MAX_TOPIC = 255
MAX_CLASSIFICATION = 80
MAX_VERSION = 80
MAX_EXPLANATION = 1024
MAX_CLASSDICT = 4096
MAX_URL = 1024
MAX_ID = 2**63 - 1


class AnnotationError(Exception):
    """An annotation refused: ``status`` is the HTTP status to answer (400, 401, 403, 404)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class NewAnnotation:
    """One annotation as an annotator sends it; ``classdict`` is JSON text (an object)."""

    diaObjectId: int
    topic: str
    classification: str
    version: str = ""
    explanation: str = ""
    classdict: str = "{}"
    url: str = ""


def _check(row: NewAnnotation) -> None:
    if not 0 < row.diaObjectId <= MAX_ID:
        raise AnnotationError(400, f"objectId must be a positive 64-bit integer, not {row.diaObjectId}")
    for name, value, limit, blank in (
        ("topic", row.topic, MAX_TOPIC, False),
        ("classification", row.classification, MAX_CLASSIFICATION, False),
        ("version", row.version, MAX_VERSION, True),
        ("explanation", row.explanation, MAX_EXPLANATION, True),
        ("classdict", row.classdict, MAX_CLASSDICT, False),
        ("url", row.url, MAX_URL, True),
    ):
        if not blank and not value.strip():
            raise AnnotationError(400, f"{name} may not be blank")
        if len(value) > limit:
            raise AnnotationError(400, f"{name} is {len(value)} characters long; at most {limit} are kept")
        if "\x00" in value:
            raise AnnotationError(400, f"{name} holds a NUL character")
    try:
        parsed = json.loads(row.classdict)
    except json.JSONDecodeError as exc:
        raise AnnotationError(400, f"classdict is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise AnnotationError(400, 'classdict must be a JSON object, such as {"SN Ia": 0.8, "SN II": 0.2}')
    if row.url:
        parts = urlparse(row.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AnnotationError(400, f"url must be an http:// or https:// address, not {row.url!r}")


def write_annotations(settings: Settings, user: User, rows: Sequence[NewAnnotation]) -> pa.Table:
    """Check and append annotations by ``user``; the rows written (with ``annotationId`` and ``created``).

    The one place annotations enter the lake: both HTTP endpoints call it. Raises :class:`AnnotationError`
    (nothing is written) when the caller is not an annotator (403; anonymous 401), a topic is not one of the
    caller's (403), a field breaks Lasair's limits or ``classdict`` is not a JSON object (400), or an object
    is not in the lake (404).
    """
    if user.anonymous:
        raise AnnotationError(401, "annotating needs an annotator token: send 'Authorization: Token <token>'")
    if not (user.role == ANNOTATOR or user.is_admin):
        raise AnnotationError(403, f"the {user.role} role may not annotate (needs an annotator token)")
    for row in rows:
        _check(row)
        if not user.is_admin and row.topic not in user.topics:
            mine = ", ".join(user.topics) or "none"
            raise AnnotationError(403, f"{user.name} may not annotate topic {row.topic!r} (its topics: {mine})")
    home = settings.lake
    known = existing_objects(home, [r.diaObjectId for r in rows])
    missing = sorted({r.diaObjectId for r in rows} - known)
    if missing:
        raise AnnotationError(404, f"no object {missing[0]} in the lake: annotate objects Nightjar has seen")
    now = datetime.now(UTC)
    full = [{**asdict(r), "annotator": user.name, "annotationId": new_annotation_id(), "created": now} for r in rows]
    append_annotations(home, full)
    written = to_table(full)
    try:
        announce(settings, written)
    except (DeliveryError, KafkaException) as exc:
        ids = ", ".join(str(i) for i in written["annotationId"].to_pylist())
        raise AnnotationError(
            503,
            f"annotation {ids} is stored, but the filters it may trigger could not be told (Kafka: {exc}); "
            "it stays queryable, and the next annotation of the object triggers them again",
        ) from None
    return written


def announce(settings: Settings, written: pa.Table) -> bool:
    """Send new annotations to the annotations topic, where the pipeline picks them up to run the filters that
    read ``annotations``; False when this server has no Kafka (no NIGHTJAR_KAFKA, no embedded broker)."""
    try:
        config = kafka.producer_config(settings, kafka.OUTPUT, **{"message.timeout.ms": 10_000})
    except kafka.KafkaNotConfigured:
        log.warning("no Kafka configured: annotations do not trigger filters")
        return False
    kafka.ensure_topics(settings, [settings.annotations_topic], cluster=kafka.OUTPUT)
    with Publisher(config) as publisher:
        for key, value in encode_messages(written):
            publisher.raw(settings.annotations_topic, value, key)
        publisher.flush(timeout_s=15)
    return True


def view(rows: pa.Table) -> list[dict[str, Any]]:
    """Annotation rows as JSON: ids as strings, ``classdict`` parsed, ``created`` in ISO 8601."""
    out = records.to_records(rows)
    for row in out:
        # Rows written by something else than this API may hold other text: show it as it is.
        with contextlib.suppress(json.JSONDecodeError):
            row["classdict"] = json.loads(row["classdict"]) if row.get("classdict") else {}
        if isinstance(row.get("created"), datetime):
            row["created"] = row["created"].isoformat()
    return out


class AnnotationRequest(BaseModel):
    """One annotation (Lasair's fields; ``diaObjectId`` may be a string, as IDs are in JSON)."""

    diaObjectId: StrictId = Field(gt=0, le=MAX_ID, description="The object, as known to the lake.")
    topic: str = Field(min_length=1, max_length=MAX_TOPIC, description="One of the annotator's topics.")
    classification: str = Field(min_length=1, max_length=MAX_CLASSIFICATION)
    version: str = Field(default="", max_length=MAX_VERSION, description="The annotator's version.")
    explanation: str = Field(default="", max_length=MAX_EXPLANATION)
    classdict: dict[str, Any] = Field(default_factory=dict, description="Any JSON object (scores, features…).")
    url: str = Field(default="", max_length=MAX_URL, description="A page about this classification.")


class Annotation(BaseModel):
    """One annotation as stored: IDs as strings, ``classdict`` parsed, ``created`` in ISO 8601."""

    diaObjectId: str
    annotationId: str
    topic: str
    annotator: str
    version: str | None
    classification: str
    explanation: str | None
    classdict: Any
    url: str | None
    created: str


class ObjectAnnotations(BaseModel):
    """Every annotation of one object, oldest first."""

    diaObjectId: str
    annotations: list[Annotation]


def http_error(exc: AnnotationError) -> HTTPException:
    """The HTTP error an annotation error answers with (a 401 asks for a token)."""
    headers = {"WWW-Authenticate": "Token"} if exc.status_code == 401 else None
    return HTTPException(status_code=exc.status_code, detail=exc.message, headers=headers)


def router(settings: Settings) -> APIRouter:
    """The routes that write annotations and read an object's annotations."""
    api = APIRouter(prefix="/api/v1", tags=["annotations"])

    @api.post("/annotations", status_code=status.HTTP_201_CREATED, response_model=Annotation)
    async def annotate(
        request: Request, body: AnnotationRequest, user: Annotated[User, Depends(require(ANNOTATOR))]
    ) -> dict[str, Any]:
        """Annotate an object (annotator tokens, for their own topics); it is queryable at once."""
        row = NewAnnotation(
            diaObjectId=body.diaObjectId,
            topic=body.topic,
            classification=body.classification,
            version=body.version,
            explanation=body.explanation,
            classdict=json.dumps(body.classdict),
            url=body.url,
        )
        try:
            written = await run_in_threadpool(write_annotations, settings, user, [row])
        except AnnotationError as exc:
            raise http_error(exc) from None
        finally:
            wrote(request)  # a 503 after the write (Kafka down) still stored the annotation
        return view(written)[0]

    @api.get("/objects/{diaObjectId}/annotations", response_model=ObjectAnnotations)
    async def object_annotations(
        diaObjectId: Annotated[int, PathParam(ge=0, le=MAX_ID)], user: Caller
    ) -> dict[str, Any]:
        """Every annotation of an object, oldest first (public)."""
        rows = await run_in_threadpool(read_annotations, settings.lake, diaObjectId)
        return {"diaObjectId": str(diaObjectId), "annotations": view(rows)}

    return api
