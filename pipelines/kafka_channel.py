"""Matches to each filter's Kafka result topic: JSON in the shape of Lasair's topics, or Avro with a published schema.

A match already on the topic (found by the Deliverer's recovery after an interrupted attempt) is not sent again.
The producer is flushed before anything is settled as delivered: a broker that did not acknowledge the batch
raises ``DeliveryError`` out of :meth:`KafkaChannel.send`, nothing is recorded as delivered and the offsets stay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa
from sqlalchemy.engine import Engine

from nightjar.lake import ledger
from nightjar.pipelines import payloads
from nightjar.pipelines.channels import DeliveryReport, Work, fail
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.registry import Filter
from nightjar.sql.registry_models import KAFKA
from nightjar.streams.publish import Headers, Publisher


class KafkaChannel:
    """Publishes through ``publisher``; Avro schemas are published in the metadata database ``db``."""

    name = KAFKA

    def __init__(self, settings: Settings, publisher: Publisher, db: Engine) -> None:
        self.publisher = publisher
        self.db = db
        # Waits out a broker outage as the run does.
        self.flush_timeout_s = max(60.0, settings.kafka_outage_s)

    def send(self, works: Sequence[Work], stamp: str, batch: str, report: DeliveryReport) -> None:
        """Publish each filter's matches not yet delivered to its result topic, flushed before any counts as
        delivered."""
        failed: set[int] = set()
        for n, work in enumerate(works):
            if not work.status:
                work.status, work.detail = [""] * len(work.keys), [""] * len(work.keys)
            todo = [i for i, s in enumerate(work.status) if s != ledger.DELIVERED]
            if not todo:
                continue
            try:
                rows = work.matches.take(pa.array(todo, pa.int64()))
                body, extra = self._encode(work.flt, rows, stamp)
                self.publisher.filter_matches(
                    work.flt, body, [work.keys[i] for i in todo], [work.objects[i] for i in todo], extra
                )
            except Exception as exc:  # encoding one filter's matches fails that filter only
                detail = fail(report, work.flt, "Kafka", exc)
                failed.add(n)
                for i in todo:
                    work.status[i], work.detail[i] = ledger.FAILED, detail
        # Raises DeliveryError when the broker does not acknowledge: nothing is settled as delivered.
        self.publisher.flush(self.flush_timeout_s)
        for n, work in enumerate(works):
            if n in failed:
                continue
            for i in range(len(work.keys)):
                if work.status[i] != ledger.DELIVERED:
                    work.status[i], work.detail[i] = ledger.DELIVERED, work.flt.topic

    def _encode(self, flt: Filter, rows: pa.Table, stamp: str) -> tuple[list[bytes], Headers]:
        if flt.format != "avro":
            return payloads.json_payloads(rows, stamp), [("nightjar.format", b"json")]
        schema = payloads.avro_schema(rows.schema, flt.id, flt.version)
        text = json.dumps(schema, sort_keys=True)
        schema_id = registry.publish_avro_schema(
            self.db, flt.id, flt.version, text, payloads.schema_fingerprint(schema)
        )
        extra: Headers = [("nightjar.format", b"avro"), ("nightjar.schema.id", str(schema_id).encode())]
        return payloads.avro_payloads(rows, schema, schema_id, stamp), extra
