"""Deliver filter matches exactly once: the ledger decides what is new, then each channel sends.

For one batch (on the driver, before the Kafka offsets are committed), in this order:

1. :meth:`Deliverer.plan`: every match gets a delivery key: ``version:diaObjectId:diaSourceId`` (every-alert mode)
   or ``new:diaObjectId`` (new-objects mode, any version); the latest status of (filter, key, channel), looked up
   by key in the delivery state (``sql.delivery_state``, the keyed copy of the lake's ledger), says what was done;
2. :meth:`Deliverer.recover`: matches still *pending* on Kafka (a crash came after sending, before recording) are
   looked for on the topic;
3. the rest are recorded as pending (one Delta commit to the ledger, then the delivery state), sent by each channel
   in turn (``pipelines.channels``: Kafka, flushed so the broker acknowledged them, then e-mail and webhooks), then
   recorded as delivered or failed (the same way).

A crash anywhere repeats at most the e-mails and webhook POSTs under way, with the same Message-ID and
Idempotency-Key; Kafka messages are never repeated, and nothing is lost: the offsets are committed after this.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from sqlalchemy.engine import Engine

from nightjar.lake import ledger
from nightjar.lake.schemas import FILTER_LEDGER_SCHEMA
from nightjar.pipelines.channels import Channel, DeliveryReport, Work, fail
from nightjar.pipelines.email_channel import EmailChannel
from nightjar.pipelines.kafka_channel import KafkaChannel
from nightjar.pipelines.stages import FilterOutput
from nightjar.pipelines.webhook_channel import WebhookChannel
from nightjar.settings import Settings
from nightjar.sql import delivery_state, matches
from nightjar.sql.registry import Filter
from nightjar.sql.registry_models import KAFKA
from nightjar.streams import readback
from nightjar.streams.publish import Publisher

log = logging.getLogger(__name__)

READBACK_MARGIN = timedelta(seconds=60)


@dataclass
class Plan:
    """What one batch sends on which channel, after the ledger's answer."""

    works: list[Work]
    # When each (filter id, channel) first recorded a match as pending: the start of an interrupted attempt.
    pending_since: dict[tuple[int, str], datetime]


class Deliverer:
    """Delivers each batch's filter outputs through the channels and the ledger under ``settings.home``; Kafka
    messages go through ``publisher``, Avro schemas to the metadata database ``db``."""

    def __init__(self, settings: Settings, publisher: Publisher, db: Engine) -> None:
        self.settings = settings
        self.home = settings.lake
        self.db = db
        delivery_state.adopt(db, self.home)
        self.email = EmailChannel(settings)
        # Kafka first: a broker that does not acknowledge stops the batch (it is tried again) before any e-mail or
        # webhook goes out.
        self.channels: tuple[Channel, ...] = (
            KafkaChannel(settings, publisher, db),
            self.email,
            WebhookChannel(settings),
        )

    def deliver(self, outputs: Sequence[FilterOutput], batch: str) -> DeliveryReport:
        """Deliver one batch's matches; DeliveryError (from Kafka) if the broker did not acknowledge them."""
        report = DeliveryReport()
        plan = self.plan(outputs, report)
        if not plan.works:
            return report
        self.recover(plan, report)
        self.record(plan.works, batch, pending_only=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        for channel in self.channels:
            channel.send([w for w in plan.works if w.channel == channel.name], stamp, batch, report)
        self.record(plan.works, batch, pending_only=False)
        for work in plan.works:
            report.delivered[work.flt.name] = max(report.delivered[work.flt.name], work.status.count("delivered"))
        return report

    def notify_owner(self, flt: Filter, text: str) -> None:
        """Tell a filter's owner about the filter (by e-mail, when the filter delivers by e-mail)."""
        self.email.notify_owner(flt, text)

    def plan(self, outputs: Sequence[FilterOutput], report: DeliveryReport) -> Plan:
        """What to send on which channel, after the ledger's answer."""
        chosen = [o for o in outputs if o.matches is not None and o.keys is not None and o.matches.num_rows]
        chosen = [o for o in chosen if o.filter.channels]
        if not chosen:
            return Plan([], {})
        per_filter = []
        for o in chosen:
            assert o.matches is not None and o.keys is not None
            try:
                per_filter.append((o.filter, *matches.candidates(o.filter.mode, o.matches, o.keys)))
            except Exception as exc:  # one filter's odd result is that filter's problem
                fail(report, o.filter, "delivery", exc)
        if not per_filter:
            return Plan([], {})
        dkeys_of = [matches.delivery_keys(f.mode, f.version, keys).to_pylist() for f, _, keys in per_filter]
        wanted: dict[int, list[str]] = {}
        for (flt, _, _), dkeys in zip(per_filter, dkeys_of, strict=True):
            wanted.setdefault(flt.id, []).extend(dkeys)
        state = delivery_state.lookup(self.db, wanted)
        statuses = {where: status for where, (status, _) in state.items()}
        works = []
        for (flt, rows_of, keys), dkeys in zip(per_filter, dkeys_of, strict=True):
            objects = keys["diaObjectId"].to_pylist()
            sources = keys["diaSourceId"].to_pylist()
            for channel in flt.channels:
                status = [statuses.get((flt.id, k, channel)) for k in dkeys]
                done = [s in (ledger.DELIVERED, ledger.FAILED) for s in status]
                report.already[flt.name] = max(report.already[flt.name], sum(done))
                for pending in (False, True):
                    rows = [i for i, s in enumerate(status) if (s == ledger.PENDING) == pending and not done[i]]
                    if rows:
                        where = pa.array(rows, pa.int64())
                        works.append(
                            Work(
                                flt,
                                channel,
                                rows_of.take(where),
                                [dkeys[i] for i in rows],
                                [objects[i] for i in rows],
                                [sources[i] for i in rows],
                                pending,
                            )
                        )
        interrupted = [(w.flt.id, k, w.channel) for w in works if w.pending for k in w.keys]
        return Plan(works, delivery_state.pending_since(state, interrupted))

    def recover(self, plan: Plan, report: DeliveryReport) -> None:
        """Matches pending on Kafka from an interrupted attempt: those already on the topic are settled as
        delivered, and the Kafka channel does not send them again."""
        for work in [w for w in plan.works if w.channel == KAFKA and w.pending]:
            since = plan.pending_since.get((work.flt.id, KAFKA), datetime.now(UTC)) - READBACK_MARGIN
            found = readback.published_keys(
                self.settings, work.flt.topic, int(since.timestamp() * 1000), set(work.keys)
            )
            work.status = [ledger.DELIVERED if k in found else "" for k in work.keys]
            work.detail = ["found on the topic after an interrupted delivery" if k in found else "" for k in work.keys]
            if found:
                log.info("filter %s: %d matches already on %s", work.flt.id, len(found), work.flt.topic)
                report.recovered[work.flt.name] += len(found)

    def record(self, works: Sequence[Work], batch: str, pending_only: bool) -> None:
        """Append ledger rows: the pending ones before sending, the outcome after."""
        parts = []
        now = datetime.now(UTC)
        for work in works:
            n = len(work.keys)
            if pending_only:
                if work.pending:
                    continue
                status, detail = [ledger.PENDING] * n, [""] * n
            else:
                status = [s or ledger.FAILED for s in work.status] if work.status else [ledger.FAILED] * n
                detail = work.detail or ["not attempted"] * n
            columns = {
                "filterId": [work.flt.id] * n,
                "filterVersion": [work.flt.version] * n,
                "key": work.keys,
                "diaObjectId": work.objects,
                "diaSourceId": work.sources,
                "channel": [work.channel] * n,
                "status": status,
                "batch": [batch] * n,
                "detail": detail,
                "recordedAt": [now] * n,
            }
            parts.append(pa.table(columns, schema=FILTER_LEDGER_SCHEMA))
        if parts:
            rows = pa.concat_tables(parts)
            # The journal first: the state is never ahead of it (see ``sql.delivery_state``).
            ledger.append(self.home, rows)
            delivery_state.record(self.db, rows)
