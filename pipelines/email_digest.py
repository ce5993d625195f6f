"""E-mail digests of filter matches: one message per filter and batch, sent over SMTP.

The body lists the first matches as a text table; every match is attached as JSON. The Message-ID is derived
from the filter and the matches, so a digest sent again after a crash carries the same id and mail systems
(and readers) can tell it is the same message.

Users name filters and give addresses, and both reach headers. Messages are built with ``EmailMessage`` under a
strict policy, and nothing a user wrote reaches a header if it holds an RFC 2047 encoded word (the header parser
would decode ``=?utf-8?q?=0D=0ABcc:...?=`` into a new line) or a control, format or line/paragraph separator
character (U+2028 and U+0085 end a line when headers are folded): addresses are refused (``EmailError``), a
filter name is left out of the subject (it is still in the body).
"""

from __future__ import annotations

import hashlib
import json
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from nightjar.errors import UserError
from nightjar.pipelines.payloads import OBJECT_URL_FIELD as LINK_FIELD
from nightjar.safe_text import address_ok, header_safe
from nightjar.settings import Settings


class EmailError(UserError, RuntimeError):
    """The SMTP server refused or could not be reached, or a message would carry an unsafe header."""


# CRLF line ends, lines folded at 78, and any defect in a header an error rather than a repair.
POLICY = policy.SMTP.clone(raise_on_defect=True)


def _addresses(addresses: Sequence[str], local: bool = False) -> str:
    bad = [a for a in addresses if not address_ok(a, local)]
    if bad or not addresses:
        raise EmailError(f"not a plain e-mail address: {bad[0]!r}" if bad else "no recipient")
    return ", ".join(addresses)


def _named(filter_name: str, filter_id: int) -> str:
    """How a subject names a filter: its name if that is safe in a header, else its id alone."""
    return filter_name if header_safe(filter_name) else f"id {filter_id}"


@dataclass(frozen=True)
class SmtpConfig:
    """How digests are sent: the SMTP server, sender, optional login and STARTTLS, and the timeout."""

    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout_s: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        """The SMTP configuration of the settings."""
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_sender,
            settings.smtp_user,
            settings.smtp_password,
            settings.smtp_starttls,
            settings.smtp_timeout_s,
        )


def message_id(filter_id: int, keys: Sequence[str], domain: str = "nightjar") -> str:
    """The digest's Message-ID, the same for the same filter and matches: a digest sent again is recognisable as one."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:24]
    return f"<filter-{filter_id}.{digest}@{domain}>"


def _table(records: Sequence[dict[str, Any]], max_rows: int) -> str:
    if not records:
        return ""
    columns = list(records[0])
    shown = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in records[:max_rows]]
    widths = [max(len(c), *(len(row[i]) for row in shown)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in shown]
    if len(records) > max_rows:
        lines.append(f"... and {len(records) - max_rows} more (all are in the attachment)")
    return "\n".join(lines)


def digest(
    config: SmtpConfig,
    to: Sequence[str],
    filter_id: int,
    filter_name: str,
    version: int,
    records: Sequence[dict[str, Any]],
    keys: Sequence[str],
    max_rows: int,
) -> EmailMessage:
    """The digest e-mail of one filter's new matches in one batch; EmailError if an address is not plain."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _addresses([config.sender], local=True)
    msg["To"] = _addresses(to)
    plural = "es" if len(records) != 1 else ""
    msg["Subject"] = f"Nightjar filter {_named(filter_name, filter_id)}: {len(records)} new match{plural}"
    msg["Message-ID"] = message_id(filter_id, keys)
    msg["Date"] = formatdate(usegmt=True)
    msg["X-Nightjar-Filter"] = f"{filter_id} v{version}"
    shown = [{k: v for k, v in r.items() if k != LINK_FIELD} for r in records]
    body = (
        f"Filter {filter_name} (id {filter_id}, version {version}) matched {len(records)} "
        f"alert{'s' if len(records) != 1 else ''}.\n\n"
        f"{_table(shown, max_rows)}\n"
    )
    links = list(dict.fromkeys(str(r[LINK_FIELD]) for r in records[:max_rows] if r.get(LINK_FIELD)))
    if links:
        body += "\nObject pages:\n" + "".join(f"  {link}\n" for link in links)
    msg.set_content(body)
    attachment = json.dumps(list(records), default=str, indent=1).encode()
    msg.add_attachment(attachment, maintype="application", subtype="json", filename=f"filter-{filter_id}.json")
    return msg


def notice(config: SmtpConfig, to: Sequence[str], filter_id: int, filter_name: str, text: str) -> EmailMessage:
    """A message to a filter's owner about the filter itself (it failed, it was switched off)."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _addresses([config.sender], local=True)
    msg["To"] = _addresses(to)
    first = (text.splitlines() or [""])[0][:120]
    if not header_safe(first):
        first = "a notice about your filter"
    named = f"{filter_name} (id {filter_id})" if header_safe(filter_name) else f"id {filter_id}"
    msg["Subject"] = f"Nightjar filter {named}: {first}"
    msg["Date"] = formatdate(usegmt=True)
    msg["X-Nightjar-Filter"] = str(filter_id)
    msg.set_content(text + "\n")
    return msg


def send(config: SmtpConfig, message: EmailMessage) -> None:
    """Send one message; EmailError if the server cannot be reached or refuses a recipient."""
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
            if config.starttls:
                smtp.starttls()
            if config.user:
                smtp.login(config.user, config.password or "")
            refused = smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise EmailError(f"SMTP {config.host}:{config.port}: {exc}") from exc
    if refused:
        raise EmailError(f"SMTP {config.host}:{config.port} refused {', '.join(refused)}")
