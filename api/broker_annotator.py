"""A built-in annotator for other brokers' classifications: it consumes a Kafka topic of Fink or ALeRCE
classification messages and writes each as an annotation through the normal path (``api.annotations
.write_annotations``: the checks, the lake, then the annotations topic that triggers filters), as the annotator
user it runs as. Filters can then ask for objects "classified in contradiction by C and D".

Accepted layouts (JSON, or Avro Object Container Files of such records):

- **Fink**: an alert-shaped record with the object id (``diaObjectId``, ``diaObject.diaObjectId`` or ZTF's
  ``objectId``) and Fink's science fields: ``finkclass`` (or ``classification``) and scores such as
  ``rf_snia_vs_nonia``, ``snn_snia_vs_nonia``, ``snn_sn_vs_all``, ``rf_kn_vs_nonkn``, ``cdsxmatch``, ``roid``.
  Annotation topic ``fink``.
- **ALeRCE**: ``oid`` (or ``objectId``/``diaObjectId``), ``classifier_name``/``classifier_version`` and
  ``probabilities`` as an object ``{class: p}`` or a list of ``{"class_name", "probability"}``; the class is the
  most probable one. Annotation topic ``alerce``.

Messages naming an object the lake does not hold are counted and skipped (an annotation needs a stored object);
messages that are neither layout are counted as bad. Offsets are committed after the annotations are written.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka import Consumer, KafkaError, Message

from nightjar.api.annotations import NewAnnotation, write_annotations
from nightjar.api.ids import object_id
from nightjar.api.users import ADMIN, ANNOTATOR, engine, get_user
from nightjar.lake.annotations import existing_objects
from nightjar.settings import Settings
from nightjar.streams import kafka

log = logging.getLogger(__name__)

FINK_SCORES = (
    "rf_snia_vs_nonia",
    "snn_snia_vs_nonia",
    "snn_sn_vs_all",
    "rf_kn_vs_nonkn",
    "mulens",
    "t2",
    "anomaly_score",
)
FINK_LABELS = ("cdsxmatch", "roid", "finkclass", "classification", "fink_broker_version", "fink_science_version")


class BrokerMessageError(ValueError):
    """A message that is neither a Fink nor an ALeRCE classification."""


def _id_of(record: dict[str, Any]) -> int:
    for key in ("diaObjectId", "oid", "objectId"):
        if record.get(key) is not None:
            return object_id(record[key])
    nested = record.get("diaObject")
    if isinstance(nested, dict) and nested.get("diaObjectId") is not None:
        return object_id(nested["diaObjectId"])
    raise BrokerMessageError("no object id (diaObjectId, diaObject.diaObjectId, oid or objectId)")


def _alerce(record: dict[str, Any]) -> NewAnnotation:
    probs = record["probabilities"]
    if isinstance(probs, list):
        probs = {p["class_name"]: float(p["probability"]) for p in probs if isinstance(p, dict)}
    if not isinstance(probs, dict) or not probs:
        raise BrokerMessageError("ALeRCE probabilities must be a non-empty object or list")
    probs = {str(k): float(v) for k, v in probs.items()}
    best = max(probs, key=lambda k: probs[k])
    classifier = str(record.get("classifier_name") or "lc_classifier")
    return NewAnnotation(
        diaObjectId=_id_of(record),
        topic="alerce",
        classification=best,
        version=f"{classifier} {record.get('classifier_version') or ''}".strip(),
        explanation=f"ALeRCE {classifier}: {best} p={probs[best]:.3g}",
        classdict=json.dumps(probs),
    )


def _fink(record: dict[str, Any]) -> NewAnnotation:
    scores = {k: float(record[k]) for k in FINK_SCORES if isinstance(record.get(k), int | float)}
    labels = {k: str(record[k]) for k in FINK_LABELS if record.get(k) is not None}
    cls = labels.get("finkclass") or labels.get("classification")
    if cls is None:
        raise BrokerMessageError("a Fink message needs finkclass (or classification)")
    return NewAnnotation(
        diaObjectId=_id_of(record),
        topic="fink",
        classification=cls,
        version=labels.get("fink_science_version", ""),
        explanation=f"Fink: {cls}" + (f" (cdsxmatch {labels['cdsxmatch']})" if "cdsxmatch" in labels else ""),
        classdict=json.dumps({**scores, **{k: v for k, v in labels.items() if k in ("cdsxmatch", "roid")}}),
    )


def annotation_of(record: dict[str, Any]) -> NewAnnotation:
    """The annotation a Fink or ALeRCE classification record makes."""
    try:
        if "probabilities" in record:
            return _alerce(record)
        return _fink(record)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BrokerMessageError):
            raise
        raise BrokerMessageError(f"not a Fink or ALeRCE classification: {exc}") from None


def records_of(payload: bytes) -> list[dict[str, Any]]:
    """The records of one message: a JSON object, or an Avro Object Container File of records."""
    if payload[:4] == b"Obj\x01":
        try:
            return [r for r in fastavro.reader(io.BytesIO(payload)) if isinstance(r, dict)]
        except Exception as exc:  # a corrupt container is bad input, reported per message
            raise BrokerMessageError(f"unreadable Avro: {exc}") from None
    try:
        value = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BrokerMessageError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BrokerMessageError("a classification message is a JSON object")
    return [value]


@dataclass
class AnnotatorReport:
    """What the broker annotator did: messages read, annotations written, annotations skipped because their object is
    not in the lake, and messages that were not classifications."""

    messages: int = 0
    annotations: int = 0
    unknown_objects: int = 0
    bad: int = 0


def _annotations(messages: list[Message], report: AnnotatorReport) -> list[NewAnnotation]:
    rows: list[NewAnnotation] = []
    for message in messages:
        try:
            rows.extend(annotation_of(r) for r in records_of(message.value() or b""))
        except BrokerMessageError as exc:
            report.bad += 1
            log.warning("%s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), exc)
    return rows


def run_broker_annotator(
    settings: Settings,
    topic: str,
    user_name: str,
    max_messages: int | None = None,
    idle_exit_s: float | None = None,
    group: str = "nightjar-broker-annotator",
) -> AnnotatorReport:
    """Consume ``topic`` and write its classifications as annotations by ``user_name`` (an annotator allowed
    the ``fink`` and/or ``alerce`` topics); stop after ``max_messages`` or ``idle_exit_s`` seconds of silence."""
    users_db = engine(settings.metadata_url)
    try:
        user = get_user(users_db, user_name)
    finally:
        users_db.dispose()
    if user.role not in (ANNOTATOR, ADMIN):
        raise ValueError(f"{user_name} is a {user.role}, not an annotator: make one with `nightjar user add`")
    kafka.ensure_topics(settings, [topic])
    consumer = Consumer(kafka.consumer_config(settings, group))
    consumer.subscribe([topic])
    report = AnnotatorReport()
    last = time.monotonic()
    home = settings.lake
    try:
        while max_messages is None or report.messages < max_messages:
            want = 500 if max_messages is None else min(500, max_messages - report.messages)
            messages = [m for m in consumer.consume(want, timeout=1.0) if not _failed(m)]
            if not messages:
                if idle_exit_s is not None and time.monotonic() - last >= idle_exit_s:
                    break
                continue
            last = time.monotonic()
            report.messages += len(messages)
            rows = _annotations(messages, report)
            known = existing_objects(home, [r.diaObjectId for r in rows])
            kept = [r for r in rows if r.diaObjectId in known]
            report.unknown_objects += len(rows) - len(kept)
            if kept:
                report.annotations += write_annotations(settings, user, kept).num_rows
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return report


def _failed(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("broker annotator: %s", error)
    return True
