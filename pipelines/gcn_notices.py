"""Gravitational-wave notices from a Kafka topic in the IGWN/GCN JSON alert layout, turned into stored skymaps.

A notice (``igwn.gwalert`` on GCN Kafka) is a JSON object: ``alert_type`` (``EARLY_WARNING``/``EARLYWARNING``,
``PRELIMINARY``, ``INITIAL``, ``UPDATE``, ``RETRACTION``), ``time_created``, ``superevent_id``, ``urls`` and
``event`` (null for a retraction) with ``time``, ``far``, ``significant``, ``instruments``, ``group``,
``pipeline``, ``search``, ``properties`` (``HasNS``…), ``classification`` (``BNS``, ``NSBH``, ``BBH``,
``Terrestrial``…) and ``skymap``: the multi-order FITS map, base64. A notice with a skymap stores it (matched over
the history at once, then live), and the earlier maps of the same superevent stop being matched live (the newest
localisation supersedes them; their hits stay). A retraction stops every map of its superevent.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from nightjar.catalogs.skymap import SkymapError, read_skymap
from nightjar.catalogs.skymap_store import SkymapInfo, list_skymaps, set_active
from nightjar.catalogs.watch_migrate import watch_root
from nightjar.pipelines.skymap_history import ingest_skymap
from nightjar.settings import Settings
from nightjar.storage import CatalogsHome, Home
from nightjar.streams import kafka

log = logging.getLogger(__name__)

RETRACTION = "RETRACTION"
ALERT_TYPES = ("EARLY_WARNING", "EARLYWARNING", "PRELIMINARY", "INITIAL", "UPDATE", RETRACTION)


@dataclass
class Notice:
    """A GCN/IGWN notice as read: the superevent, the kind of notice, the event time, class probabilities, source
    properties and the skymap it carries."""

    superevent_id: str
    alert_type: str
    event_time: datetime | None = None
    classification: dict[str, float] = field(default_factory=dict)
    properties: dict[str, float] = field(default_factory=dict)
    skymap: bytes | None = None  # the FITS file


def _probabilities(value: Any, name: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SkymapError(f"notice: event.{name} must be an object of probabilities")
    return {str(k): float(v) for k, v in value.items() if isinstance(v, int | float)}


def parse_notice(payload: bytes) -> Notice:
    """A notice's content; SkymapError for a message that is not an IGWN alert."""
    try:
        body = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SkymapError(f"notice: not JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("superevent_id"), str):
        raise SkymapError("notice: not an IGWN alert (no superevent_id)")
    kind = str(body.get("alert_type", "")).upper()
    if kind not in ALERT_TYPES:
        raise SkymapError(f"notice: unknown alert_type {body.get('alert_type')!r}")
    notice = Notice(body["superevent_id"], kind)
    event = body.get("event")
    if kind == RETRACTION or event is None:
        return notice
    if not isinstance(event, dict):
        raise SkymapError("notice: event must be an object")
    if event.get("time"):
        try:
            notice.event_time = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        except ValueError:
            raise SkymapError(f"notice: event.time {event['time']!r} is not ISO 8601") from None
    notice.classification = _probabilities(event.get("classification"), "classification")
    notice.properties = _probabilities(event.get("properties"), "properties")
    if event.get("skymap"):
        try:
            notice.skymap = base64.b64decode(event["skymap"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise SkymapError("notice: event.skymap is not base64") from None
    return notice


def _deactivate(home: CatalogsHome, superevent_id: str, keep: int | None = None) -> list[int]:
    stopped = []
    for info in list_skymaps(home):
        if info.event_id == superevent_id and info.active and info.id != keep:
            set_active(home, info.id, False)
            stopped.append(info.id)
    return stopped


def apply_notice(home: CatalogsHome, notice: Notice, lake: Home | None = None) -> SkymapInfo | None:
    """Store a notice's skymap (superseding the superevent's earlier maps), or apply a retraction; its hits go to
    ``lake`` (None: the home's own lake)."""
    if notice.alert_type == RETRACTION:
        _deactivate(home, notice.superevent_id)
        return None
    if notice.skymap is None:
        return None  # a notice without a localisation changes nothing here
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "skymap.fits"
        path.write_bytes(notice.skymap)
        skymap = read_skymap(path)
    info, _ = ingest_skymap(
        home,
        skymap,
        lake=lake,
        event_id=notice.superevent_id,
        event_time=notice.event_time,
        classification=notice.classification,
        properties=notice.properties,
        source=f"notice:{notice.alert_type}",
    )
    _deactivate(home, notice.superevent_id, keep=info.id)
    return info


@dataclass
class ListenReport:
    """What listening to notices did: messages read, skymaps stored, retractions, and messages that were not usable."""

    messages: int = 0
    skymaps: int = 0
    retractions: int = 0
    bad: int = 0


def listen(
    settings: Settings,
    topic: str,
    max_messages: int | None = None,
    idle_exit_s: float | None = None,
    group: str = "nightjar-skymap-notices",
) -> ListenReport:
    """Consume IGWN notices from ``topic`` and apply each (offsets committed after each message is applied)."""
    home = watch_root(settings)
    # Notices apply in the order they are read (a newer map supersedes, a retraction stops): one partition keeps
    # the order they were published in, as on GCN's own topic. A topic that exists already is used as it is.
    kafka.ensure_topics(settings, [topic], partitions=1)
    consumer = Consumer(kafka.consumer_config(settings, group))
    consumer.subscribe([topic])
    report = ListenReport()
    last = time.monotonic()
    try:
        while max_messages is None or report.messages < max_messages:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                if idle_exit_s is not None and time.monotonic() - last >= idle_exit_s:
                    break
                continue
            last = time.monotonic()
            report.messages += 1
            try:
                notice = parse_notice(message.value() or b"")
                info = apply_notice(home, notice, settings.lake)
                report.retractions += notice.alert_type == RETRACTION
                report.skymaps += info is not None
                if info is not None:
                    log.info("skymap %d from %s %s", info.id, notice.alert_type, notice.superevent_id)
            except SkymapError as exc:
                report.bad += 1
                log.warning("%s@%d: %s", message.topic(), message.offset(), exc)
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    return report
