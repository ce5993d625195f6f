"""E-mail headers cannot be injected: hostile filter names and addresses, checked on the bytes that are sent."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser

import pytest

from nightjar.pipelines import email_digest, payloads

CONFIG = email_digest.SmtpConfig("127.0.0.1", 25, "nightjar@example.org")
HEADERS = {"from", "to", "subject", "message-id", "date", "x-nightjar-filter", "mime-version", "content-type"}
NOTICE_HEADERS = HEADERS - {"message-id"} | {"content-transfer-encoding"}
HOSTILE_NAMES = [
    "=?utf-8?q?hi=0D=0ABcc:_evil@example.com?=",
    "=?utf-8?b?aGkNCkJjYzogZXZpbEBleGFtcGxlLmNvbQ==?=",
    "hi =?UTF-8?Q?=0AReply-To:_evil@example.com?= there",
    "hi\u2028Bcc: evil@example.com",
    "hi\u2029Bcc: evil@example.com",
    "hi\x85Bcc: evil@example.com",
    "hi\r\nBcc: evil@example.com",
    "hi\nReply-To: evil@example.com",
    "hi\rX-Evil: 1",
    "hi\x0bBcc: evil@example.com",
    "hi\x0cBcc: evil@example.com",
    "hi\x1cBcc: evil@example.com",
    "hi\x1eBcc: evil@example.com",
    "hi\x00Bcc: evil@example.com",
    "hi\u200bthere",
]
HOSTILE_ADDRESSES = [
    "m@example.org\u2028Bcc: evil@example.com",
    "m@example.org\x85Bcc: evil@example.com",
    "m@example.org\r\nBcc: evil@example.com",
    "=?utf-8?q?m=0D=0ABcc:_evil@example.com?=@example.org",
    "m@example.org, evil@example.com",
    "Someone <m@example.org>",
    "m@example.org (evil@example.com)",
    "m@@example.org",
    "m@localhost",
]


def _headers_of(raw: bytes) -> list[str]:
    """The header names of a serialised message's top level, from the bytes (folded lines joined)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t"):
            continue  # a folded continuation
        names.append(line.split(":", 1)[0].lower())
    return names


def _check(raw: bytes, expected: set[str] = HEADERS) -> None:
    names = _headers_of(raw)
    assert set(names) == expected and len(names) == len(expected), names
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert {k.lower() for k in parsed} == expected
    assert parsed["To"] == "astro@example.org"
    assert not re.search(rb"(?im)^(bcc|reply-to|x-evil):", raw.split(b"\r\n\r\n", 1)[0])


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_filter_name_adds_no_header(name: str) -> None:
    records = [{"diaObjectId": "1", "psfFlux": 3.0}]
    digest = email_digest.digest(CONFIG, ["astro@example.org"], 7, name, 1, records, ["k1"], 10)
    _check(digest.as_bytes())
    assert "id 7" in str(digest["Subject"])
    notice = email_digest.notice(CONFIG, ["astro@example.org"], 7, name, f"failed: {name}\nmore")
    _check(notice.as_bytes(), NOTICE_HEADERS)


def test_a_plain_name_is_in_the_subject() -> None:
    digest = email_digest.digest(CONFIG, ["astro@example.org"], 7, "SN candidés", 1, [], ["k"], 10)
    _check(digest.as_bytes())
    assert digest["Subject"] == "Nightjar filter SN candidés: 0 new matches"


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
def test_a_hostile_address_is_refused(address: str) -> None:
    with pytest.raises(email_digest.EmailError, match="not a plain e-mail address"):
        email_digest.digest(CONFIG, ["astro@example.org", address], 7, "f", 1, [], ["k"], 10)
    with pytest.raises(email_digest.EmailError):
        email_digest.notice(CONFIG, [address], 7, "f", "text")


def test_the_smtp_server_receives_only_the_named_recipients(smtp_server) -> None:
    config = email_digest.SmtpConfig(smtp_server.host, smtp_server.port, "nightjar@example.org")
    for name in HOSTILE_NAMES[:8]:
        email_digest.send(config, email_digest.digest(config, ["astro@example.org"], 7, name, 1, [], ["k"], 10))
    mails = smtp_server.wait_for(8)
    assert len(mails) == 8
    for mail in mails:
        assert mail.recipients == ["astro@example.org"]
        assert {k.lower() for k in mail.message} == HEADERS


def test_matches_link_to_their_object_pages_when_the_portal_address_is_known() -> None:
    records = [{"diaObjectId": "170000000001000096", "psfFlux": 1.0}, {"diaSourceId": "5"}]
    assert payloads.with_links(records, None) == records
    linked = payloads.with_links(records, "https://broker.example.org/")
    assert linked[0]["objectUrl"] == "https://broker.example.org/objects/170000000001000096"
    assert "objectUrl" not in linked[1]  # no object: no link
    digest = email_digest.digest(CONFIG, ["astro@example.org"], 7, "f", 1, linked, ["k"], 10)
    body = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Object pages:\n  https://broker.example.org/objects/170000000001000096\n" in body
    assert body.count("https://") == 1  # the link is listed once, not as a table column
