"""Deliver filter matches exactly once: the ledger decides what is new, then Kafka, e-mail and webhooks.

For one batch (on the driver, before the Kafka offsets are committed):

1. every match gets a delivery key: ``version:diaObjectId:diaSourceId`` (every-alert mode) or ``new:diaObjectId``
   (new-objects mode, any version); the ledger's latest status of (filter, key, channel) says what was done;
2. matches still *pending* on Kafka (a crash came after sending, before recording) are looked for on the topic;
3. the rest are recorded as pending (one Delta commit), sent to Kafka (and flushed: the broker acknowledged
   them), to e-mail and webhooks, then recorded as delivered or failed (one commit).

A crash anywhere repeats at most the e-mails and webhook POSTs under way, with the same Message-ID and
Idempotency-Key; Kafka messages are never repeated, and nothing is lost: the offsets are committed after this.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Engine

from nightjar import records
from nightjar.lake import ledger
from nightjar.pipelines import email_digest, payloads, webhook
from nightjar.pipelines.stages import FilterOutput
from nightjar.settings import Settings
from nightjar.sql import matches, registry
from nightjar.sql.registry import Filter
from nightjar.streams import readback
from nightjar.streams.publish import Headers, Publisher

log = logging.getLogger(__name__)

KAFKA, EMAIL, WEBHOOK = "kafka", "email", "webhook"
READBACK_MARGIN = timedelta(seconds=60)


@dataclass
class DeliveryReport:
    """What one batch's delivery did, by filter name."""

    delivered: Counter[str] = field(default_factory=Counter)  # matches newly delivered (on any channel)
    already: Counter[str] = field(default_factory=Counter)  # matches delivered by an earlier batch
    recovered: Counter[str] = field(default_factory=Counter)  # found on the topic after a crash
    channel_errors: dict[int, str] = field(default_factory=dict)  # filter id: what failed


@dataclass
class _Work:
    """One filter's matches to send on one channel."""

    flt: Filter
    channel: str
    matches: pa.Table  # the rows to send
    keys: list[str]
    objects: list[int]
    sources: list[int | None]
    pending: bool  # already recorded as pending by an earlier attempt
    status: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)


class Deliverer:
    """Delivers each batch's filter outputs through ``publisher`` and the ledger under ``settings.home``."""

    def __init__(self, settings: Settings, publisher: Publisher, db: Engine) -> None:
        self.settings = settings
        self.home = settings.lake
        self.publisher = publisher
        self.db = db
        self.smtp = email_digest.SmtpConfig.from_settings(settings)
        self.webhooks = webhook.WebhookConfig.from_settings(settings)

    def deliver(self, outputs: Sequence[FilterOutput], batch: str) -> DeliveryReport:
        """Deliver one batch's matches; DeliveryError (from Kafka) if the broker did not acknowledge them."""
        report = DeliveryReport()
        works = self.plan(outputs, report)
        if not works:
            return report
        self.recover(works, report)
        self.record(works, batch, pending_only=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        self.send_kafka([w for w in works if w.channel == KAFKA], stamp, report)
        self.send_email([w for w in works if w.channel == EMAIL], stamp, report)
        self.send_webhooks([w for w in works if w.channel == WEBHOOK], stamp, batch, report)
        self.record(works, batch, pending_only=False)
        for work in works:
            report.delivered[work.flt.name] = max(report.delivered[work.flt.name], work.status.count("delivered"))
        return report

    def notify_owner(self, flt: Filter, text: str) -> None:
        """Tell a filter's owner about the filter (by e-mail, when the filter delivers by e-mail)."""
        if not flt.emails:
            return
        try:
            email_digest.send(self.smtp, email_digest.notice(self.smtp, flt.emails, flt.id, flt.name, text))
        except Exception as exc:  # a filter's notice never stops the pipeline
            log.warning("filter %s: cannot tell its owner: %s", flt.id, _describe(exc))

    def plan(self, outputs: Sequence[FilterOutput], report: DeliveryReport) -> list[_Work]:
        """What to send on which channel, after the ledger's answer."""
        chosen = [o for o in outputs if o.matches is not None and o.keys is not None and o.matches.num_rows]
        chosen = [o for o in chosen if o.filter.channels]
        if not chosen:
            return []
        per_filter = []
        for o in chosen:
            assert o.matches is not None and o.keys is not None
            try:
                per_filter.append((o.filter, *matches.candidates(o.filter.mode, o.matches, o.keys)))
            except Exception as exc:  # one filter's odd result is that filter's problem
                _fail(report, o.filter, "delivery", exc)
        if not per_filter:
            return []
        all_objects = pa.concat_arrays([k["diaObjectId"].combine_chunks() for _, _, k in per_filter])
        known = ledger.lookup(self.home, [f.id for f, _, _ in per_filter], all_objects)
        state = _latest_state(known)
        works = []
        for flt, rows_of, keys in per_filter:
            dkeys = matches.delivery_keys(flt.mode, flt.version, keys).to_pylist()
            objects = keys["diaObjectId"].to_pylist()
            sources = keys["diaSourceId"].to_pylist()
            for channel in flt.channels:
                status = [state.get((flt.id, k, channel)) for k in dkeys]
                done = [s in (ledger.DELIVERED, ledger.FAILED) for s in status]
                report.already[flt.name] = max(report.already[flt.name], sum(done))
                for pending in (False, True):
                    rows = [i for i, s in enumerate(status) if (s == ledger.PENDING) == pending and not done[i]]
                    if rows:
                        where = pa.array(rows, pa.int64())
                        works.append(
                            _Work(
                                flt,
                                channel,
                                rows_of.take(where),
                                [dkeys[i] for i in rows],
                                [objects[i] for i in rows],
                                [sources[i] for i in rows],
                                pending,
                            )
                        )
        self._pending_since = _pending_since(known)
        return works

    def recover(self, works: list[_Work], report: DeliveryReport) -> None:
        """Matches pending on Kafka from an interrupted attempt: those already on the topic are not sent again."""
        for work in [w for w in works if w.channel == KAFKA and w.pending]:
            since = self._pending_since.get((work.flt.id, KAFKA), datetime.now(UTC)) - READBACK_MARGIN
            found = readback.published_keys(
                self.settings, work.flt.topic, int(since.timestamp() * 1000), set(work.keys)
            )
            work.status = [ledger.DELIVERED if k in found else "" for k in work.keys]
            work.detail = ["found on the topic after an interrupted delivery" if k in found else "" for k in work.keys]
            if found:
                log.info("filter %s: %d matches already on %s", work.flt.id, len(found), work.flt.topic)
                report.recovered[work.flt.name] += len(found)

    def send_kafka(self, works: list[_Work], stamp: str, report: DeliveryReport | None = None) -> None:
        report = report if report is not None else DeliveryReport()
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
                detail = _fail(report, work.flt, "Kafka", exc)
                failed.add(n)
                for i in todo:
                    work.status[i], work.detail[i] = ledger.FAILED, detail
        # Waits out a broker outage as the run does; raises DeliveryError: nothing is recorded as delivered,
        # offsets stay.
        self.publisher.flush(max(60.0, self.settings.kafka_outage_s))
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

    def send_email(self, works: list[_Work], stamp: str, report: DeliveryReport) -> None:
        for work in works:
            try:
                recs = [{**r, payloads.UTC_FIELD: stamp} for r in records.to_records(work.matches)]
                recs = payloads.with_links(recs, self.settings.public_url)
                message = email_digest.digest(
                    self.smtp,
                    work.flt.emails,
                    work.flt.id,
                    work.flt.name,
                    work.flt.version,
                    recs,
                    work.keys,
                    self.settings.digest_max_rows,
                )
                email_digest.send(self.smtp, message)
                status, detail = ledger.DELIVERED, str(message["Message-ID"])
            except Exception as exc:  # one filter's e-mail never stops the others
                status, detail = ledger.FAILED, _fail(report, work.flt, "e-mail", exc)
            work.status, work.detail = [status] * len(work.keys), [detail] * len(work.keys)

    def send_webhooks(self, works: list[_Work], stamp: str, batch: str, report: DeliveryReport) -> None:
        for work in works:
            key = webhook.idempotency_key(work.flt.id, work.keys)
            try:
                body = self._webhook_body(work, stamp, batch)
            except Exception as exc:  # one filter's results that cannot be sent fail that filter
                detail = _fail(report, work.flt, "webhook", exc)
                work.status, work.detail = [ledger.FAILED] * len(work.keys), [detail] * len(work.keys)
                continue
            failures = []
            for url in work.flt.webhooks:
                try:
                    webhook.post(self.webhooks, url, body, key, work.flt.id)
                except Exception as exc:  # a bad URL (IDNA, syntax) or a refusal: this URL fails
                    failures.append(_describe(exc) if not isinstance(exc, webhook.WebhookError) else str(exc))
            if failures:
                report.channel_errors[work.flt.id] = "webhook delivery failed: " + "; ".join(failures)
                log.warning("filter %s: %s", work.flt.id, failures)
            status = ledger.FAILED if failures else ledger.DELIVERED
            detail = "; ".join(failures) if failures else key
            work.status, work.detail = [status] * len(work.keys), [detail] * len(work.keys)

    def _webhook_body(self, work: _Work, stamp: str, batch: str) -> bytes:
        recs = [{**r, payloads.UTC_FIELD: stamp} for r in records.to_records(work.matches)]
        recs = payloads.with_links(recs, self.settings.public_url)
        return json.dumps(
            {
                "filter": {
                    "id": work.flt.id,
                    "name": work.flt.name,
                    "version": work.flt.version,
                    "topic": work.flt.topic,
                },
                "batch": batch,
                "count": len(recs),
                "keys": work.keys,
                "matches": recs,
            },
            default=str,
        ).encode()

    def record(self, works: list[_Work], batch: str, pending_only: bool) -> None:
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
            parts.append(
                pa.table(
                    {
                        "filterId": pa.array([work.flt.id] * n, pa.int64()),
                        "filterVersion": pa.array([work.flt.version] * n, pa.int32()),
                        "key": pa.array(work.keys, pa.string()),
                        "diaObjectId": pa.array(work.objects, pa.int64()),
                        "diaSourceId": pa.array(work.sources, pa.int64()),
                        "channel": pa.array([work.channel] * n, pa.string()),
                        "status": pa.array(status, pa.string()),
                        "batch": pa.array([batch] * n, pa.string()),
                        "detail": pa.array(detail, pa.string()),
                        "recordedAt": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
                    }
                )
            )
        if parts:
            ledger.append(self.home, pa.concat_tables(parts))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _fail(report: DeliveryReport, flt: Filter, channel: str, exc: BaseException) -> str:
    """Record that ``channel`` failed for ``flt`` (its health and its owner hear of it); the detail for the ledger."""
    detail = f"{channel} delivery failed: {_describe(exc)}"
    previous = report.channel_errors.get(flt.id)
    report.channel_errors[flt.id] = f"{previous}; {detail}" if previous else detail
    log.warning("filter %s: %s", flt.id, detail, exc_info=not isinstance(exc, email_digest.EmailError))
    return detail


def _latest_state(known: pa.Table) -> dict[tuple[int, str, str], str]:
    """The latest status of each (filter, key, channel) in ledger rows."""
    if known.num_rows == 0:
        return {}
    con = duckdb.connect(":memory:")
    try:
        con.register("known", known)
        rows = con.execute(
            "SELECT filterId, key, channel, arg_max(status, recordedAt) FROM known GROUP BY filterId, key, channel"
        ).fetchall()
    finally:
        con.close()
    return {(int(f), str(k), str(c)): str(s) for f, k, c, s in rows}


def _pending_since(known: pa.Table) -> dict[tuple[int, str], datetime]:
    """When each (filter, channel) first recorded a match as pending (the start of an interrupted attempt)."""
    if known.num_rows == 0:
        return {}
    pending = known.filter(pc.equal(known["status"], ledger.PENDING))
    if pending.num_rows == 0:
        return {}
    firsts = pending.group_by(["filterId", "channel"]).aggregate([("recordedAt", "min")])
    return {
        (int(f), str(c)): at
        for f, c, at in zip(*(firsts[n].to_pylist() for n in ("filterId", "channel", "recordedAt_min")), strict=True)
    }
