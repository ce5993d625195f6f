"""Webhooks: a filter's new matches in one batch as one JSON POST, retried on failure.

Every POST carries an ``Idempotency-Key`` derived from the filter and the matches: a POST sent again after a
crash (or a retry after a timeout) has the same key, so a receiver can recognise it. Users name the URLs, so by
default a webhook may not point at loopback, private or link-local addresses (the broker's own network).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

from nightjar import __version__
from nightjar.settings import Settings


class WebhookError(RuntimeError):
    """A webhook that refused, failed or could not be reached after every retry."""


@dataclass(frozen=True)
class WebhookConfig:
    """How webhooks are called: the timeout, the retries, and whether private addresses may be called."""

    timeout_s: float = 10.0
    retries: int = 3
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        """The webhook configuration of the settings."""
        return cls(settings.webhook_timeout_s, settings.webhook_retries, settings.webhook_allow_private)


def idempotency_key(filter_id: int, keys: Sequence[str]) -> str:
    """The Idempotency-Key of a webhook call, the same for the same filter and matches: a receiver can drop a repeat."""
    return f"{filter_id}-" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]


def check_destination(url: str, allow_private: bool) -> None:
    """Refuse URLs whose host resolves to a loopback, private, link-local or reserved address."""
    try:
        host = urlparse(url).hostname
    except ValueError as exc:
        raise WebhookError(f"not a URL: {url!r} ({exc})") from exc
    if not host:
        raise WebhookError(f"no host in {url!r}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a host IDNA cannot encode (http://a..b/)
        raise WebhookError(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            raise WebhookError(f"webhook {url} points at a non-public address ({address}); refused")


def post(config: WebhookConfig, url: str, body: bytes, key: str, filter_id: int) -> int:
    """POST ``body`` (JSON) to ``url``; the HTTP status of the accepted attempt, WebhookError after the last."""
    check_destination(url, config.allow_private)
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "User-Agent": f"nightjar/{__version__}",
        "X-Nightjar-Filter": str(filter_id),
    }
    last = "no attempt"
    for attempt in range(config.retries):
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=config.timeout_s, follow_redirects=False)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= response.status_code < 300:
                return response.status_code
            last = f"HTTP {response.status_code}"
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                break  # the receiver refuses this request: sending it again will not help
        if attempt + 1 < config.retries:
            time.sleep(min(0.5 * 2**attempt, 5.0))
    raise WebhookError(f"webhook {url}: {last}")
