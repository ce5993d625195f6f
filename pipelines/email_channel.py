"""Matches by e-mail: one digest per filter and batch (``pipelines.email_digest``), and notices to filter owners."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nightjar.lake import ledger
from nightjar.pipelines import email_digest, payloads
from nightjar.pipelines.channels import DeliveryReport, Work, describe, fail
from nightjar.settings import Settings
from nightjar.sql.registry import Filter
from nightjar.sql.registry_models import EMAIL

log = logging.getLogger(__name__)


class EmailChannel:
    """Sends through the SMTP server of ``settings``."""

    name = EMAIL

    def __init__(self, settings: Settings) -> None:
        self.smtp = email_digest.SmtpConfig.from_settings(settings)
        self.public_url = settings.public_url
        self.max_rows = settings.digest_max_rows

    def send(self, works: Sequence[Work], stamp: str, batch: str, report: DeliveryReport) -> None:
        """One digest per filter to its e-mail addresses; a filter whose e-mail fails is settled as failed."""
        for work in works:
            flt = work.flt
            try:
                recs = payloads.linked_records(work.matches, stamp, self.public_url)
                message = email_digest.digest(
                    self.smtp, flt.emails, flt.id, flt.name, flt.version, recs, work.keys, self.max_rows
                )
                email_digest.send(self.smtp, message)
                status, detail = ledger.DELIVERED, str(message["Message-ID"])
            except Exception as exc:  # one filter's e-mail never stops the others
                trace = not isinstance(exc, email_digest.EmailError)
                status, detail = ledger.FAILED, fail(report, flt, "e-mail", exc, trace)
            work.settle(status, detail)

    def notify_owner(self, flt: Filter, text: str) -> None:
        """Tell a filter's owner about the filter (when the filter delivers by e-mail)."""
        if not flt.emails:
            return
        try:
            email_digest.send(self.smtp, email_digest.notice(self.smtp, flt.emails, flt.id, flt.name, text))
        except Exception as exc:  # a filter's notice never stops the pipeline
            log.warning("filter %s: cannot tell its owner: %s", flt.id, describe(exc))
