"""``GET /api/v1/filters/{id}/messages``: the newest messages of a filter's Kafka topic, decoded.

JSON filters' messages are returned as the JSON they are; Avro ones are decoded with the schema published in the
metadata database (the id in their Confluent header), with 64-bit IDs as strings as everywhere in JSON. A message
that cannot be decoded is returned as base64 with the reason. Visibility is the filter's: a filter the caller may
not see is a 404.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Annotated, Any

import fastavro
from confluent_kafka import KafkaException
from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from nightjar.api.auth import Caller
from nightjar.api.filters import FilterId, can_see
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.streams import kafka, wire

MAX_LIMIT = 1000


class TopicMessage(BaseModel):
    """One message of a filter's Kafka topic, decoded."""

    partition: int
    offset: int
    timestamp_ms: int
    format: str = Field(description="json, avro, or raw (base64 bytes that could not be decoded)")
    key: str | None = Field(default=None, description="The delivery key (nightjar.key header).")
    value: Any = Field(description="The decoded message; base64 text when format is raw.")
    error: str | None = None


class TopicMessages(BaseModel):
    """The newest messages of a filter's Kafka topic, oldest first."""

    filter_id: str
    topic: str
    count: int
    messages: list[TopicMessage]


def _ids_as_strings(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: str(v) if isinstance(v, int) and not isinstance(v, bool) and k.lower().endswith("id") else v
        for k, v in record.items()
    }


def decode(db: Engine, message: kafka.ReadMessage, schemas: dict[int, Any]) -> TopicMessage:
    """One topic message as JSON-ready data (``schemas`` caches parsed Avro schemas by id)."""
    key = message.headers.get("nightjar.key")
    base: dict[str, Any] = {
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_ms": message.timestamp_ms,
        "key": None if key is None else key.decode(errors="replace"),
    }
    kind = message.headers.get("nightjar.format", b"json").decode(errors="replace")
    try:
        if kind == "avro":
            sid, body = wire.unframe(message.value)
            if sid not in schemas:
                schemas[sid] = fastavro.parse_schema(json.loads(registry.avro_schema(db, sid)))
            record = fastavro.schemaless_reader(io.BytesIO(bytes(body)), schemas[sid], None)
            if not isinstance(record, dict):
                raise ValueError("the Avro message is not a record")
            return TopicMessage(**base, format="avro", value=_ids_as_strings(record))
        return TopicMessage(**base, format="json", value=json.loads(message.value))
    except (ValueError, EOFError, registry.RegistryError, wire.WireFormatError) as exc:
        raw = base64.b64encode(message.value).decode()
        return TopicMessage(**base, format="raw", value=raw, error=f"cannot decode as {kind}: {exc}")


def recent_messages(settings: Settings, db: Engine, topic: str, limit: int) -> list[TopicMessage]:
    """The newest ``limit`` messages of a filter topic, decoded, oldest first; ``kafka.KafkaNotConfigured`` or
    ``KafkaException`` when the broker cannot be asked."""
    schemas: dict[int, Any] = {}
    return [decode(db, m, schemas) for m in kafka.read_last_messages(settings, topic, limit)]


def router(settings: Settings, db: Engine) -> APIRouter:
    """The route that reads the newest messages of a filter's topic."""
    api = APIRouter(prefix="/api/v1/filters", tags=["filters"])

    @api.get("/{filter_id}/messages", response_model=TopicMessages)
    async def messages(
        filter_id: FilterId,
        user: Caller,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="How many of the newest messages.")] = 20,
    ) -> TopicMessages:
        """The newest messages on the filter's Kafka topic ``nightjar.filter.<id>``, oldest first."""
        try:
            flt = await run_in_threadpool(registry.get_filter, db, filter_id)
        except registry.RegistryError:
            flt = None
        if flt is None or not can_see(flt, user):
            raise HTTPException(status_code=404, detail=f"no filter {filter_id}")
        try:
            decoded = await run_in_threadpool(recent_messages, settings, db, flt.topic, limit)
        except (kafka.KafkaNotConfigured, KafkaException) as exc:
            raise HTTPException(status_code=503, detail=f"Kafka is not reachable: {exc}") from None
        return TopicMessages(filter_id=str(flt.id), topic=flt.topic, count=len(decoded), messages=decoded)

    return api
