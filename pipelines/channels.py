"""The interface of a delivery channel (Kafka result topics, e-mail, webhooks) and what channels share.

The Deliverer (``pipelines.delivery``) hands each channel the works of one batch that are its own, after the
ledger recorded them as pending; the channel settles every match of each work as ``delivered`` or ``failed``
(``Work.status``, ``Work.detail``), and the Deliverer records that outcome. One filter's problem fails that
filter only (:func:`fail`: reported, never raised); an exception a channel lets out (the broker did not
acknowledge) stops the batch's delivery before anything is recorded as delivered, and the batch is tried again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from nightjar.sql.registry import Filter

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    """What one batch's delivery did, by filter name."""

    delivered: Counter[str] = field(default_factory=Counter)  # matches newly delivered (on any channel)
    already: Counter[str] = field(default_factory=Counter)  # matches delivered by an earlier batch
    recovered: Counter[str] = field(default_factory=Counter)  # found on the topic after a crash
    channel_errors: dict[int, str] = field(default_factory=dict)  # filter id: what failed


@dataclass
class Work:
    """One filter's matches to send on one channel; ``status`` and ``detail`` (one per match, in the ledger's
    terms) stay empty until the channel settles them."""

    flt: Filter
    channel: str
    matches: pa.Table  # the rows to send
    keys: list[str]  # their delivery keys
    objects: list[int]
    sources: list[int | None]
    pending: bool  # already recorded as pending by an earlier attempt
    status: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)

    def settle(self, status: str, detail: str) -> None:
        """One outcome for every match (an e-mail digest or a webhook POST carries them all at once)."""
        self.status, self.detail = [status] * len(self.keys), [detail] * len(self.keys)


class Channel(Protocol):
    """A way matches leave the broker."""

    name: str  # sql.registry_models.KAFKA, EMAIL or WEBHOOK

    def send(self, works: Sequence[Work], stamp: str, batch: str, report: DeliveryReport) -> None:
        """Send ``works`` (all on this channel) of batch ``batch`` at UTC time ``stamp``, and settle each."""
        ...


def describe(exc: BaseException) -> str:
    """An exception as one line: its type, and its message if it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def fail(report: DeliveryReport, flt: Filter, channel: str, exc: BaseException, trace: bool = True) -> str:
    """Record that ``channel`` failed for ``flt`` (its health and its owner hear of it); the detail for the ledger.
    ``trace``: log the traceback (not for errors whose message says it all)."""
    detail = f"{channel} delivery failed: {describe(exc)}"
    previous = report.channel_errors.get(flt.id)
    report.channel_errors[flt.id] = f"{previous}; {detail}" if previous else detail
    log.warning("filter %s: %s", flt.id, detail, exc_info=trace)
    return detail
