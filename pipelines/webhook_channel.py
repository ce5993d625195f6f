"""Matches by webhook: one JSON POST per filter and batch to each of its URLs (``pipelines.webhook``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from nightjar.lake import ledger
from nightjar.pipelines import payloads, webhook
from nightjar.pipelines.channels import DeliveryReport, Work, describe, fail
from nightjar.settings import Settings
from nightjar.sql.registry_models import WEBHOOK

log = logging.getLogger(__name__)


class WebhookChannel:
    """POSTs with the timeouts, retries and address policy of ``settings``."""

    name = WEBHOOK

    def __init__(self, settings: Settings) -> None:
        self.config = webhook.WebhookConfig.from_settings(settings)
        self.public_url = settings.public_url

    def send(self, works: Sequence[Work], stamp: str, batch: str, report: DeliveryReport) -> None:
        """POST each filter's matches to each of its webhooks; a filter with a failed webhook is settled as failed."""
        for work in works:
            key = webhook.idempotency_key(work.flt.id, work.keys)
            try:
                content = body(work, stamp, batch, self.public_url)
            except Exception as exc:  # one filter's results that cannot be sent fail that filter
                work.settle(ledger.FAILED, fail(report, work.flt, WEBHOOK, exc))
                continue
            failures = []
            for url in work.flt.webhooks:
                try:
                    webhook.post(self.config, url, content, key, work.flt.id)
                except Exception as exc:  # a bad URL (IDNA, syntax) or a refusal: this URL fails
                    failures.append(str(exc) if isinstance(exc, webhook.WebhookError) else describe(exc))
            if failures:
                report.channel_errors[work.flt.id] = "webhook delivery failed: " + "; ".join(failures)
                log.warning("filter %s: %s", work.flt.id, failures)
                work.settle(ledger.FAILED, "; ".join(failures))
            else:
                work.settle(ledger.DELIVERED, key)


def body(work: Work, stamp: str, batch: str, public_url: str | None) -> bytes:
    """The JSON body of a work's POST: the filter, the batch, the delivery keys and the matches."""
    recs = payloads.linked_records(work.matches, stamp, public_url)
    return json.dumps(
        {
            "filter": {"id": work.flt.id, "name": work.flt.name, "version": work.flt.version, "topic": work.flt.topic},
            "batch": batch,
            "count": len(recs),
            "keys": work.keys,
            "matches": recs,
        },
        default=str,
    ).encode()
