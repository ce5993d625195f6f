"""Text users write that ends up in protocol headers (e-mail subjects and addresses, Kafka headers, URLs).

One place for what is safe: no RFC 2047 encoded word (a header parser decodes ``=?utf-8?q?=0D=0A...?=`` into a
new line) and no control, format or line/paragraph separator character (U+2028 and U+0085 end a line when
headers are folded, U+200B hides text). Registration refuses such text; senders check again.
"""

from __future__ import annotations

import re
import unicodedata

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_ATOM = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
_LOCAL_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")


def unsafe_character(text: str) -> str | None:
    r"""The first character of ``text`` that may not go into a header (as ``U+XXXX``), or an encoded word's
    ``=?``; None when the text is safe.

    Examples
    --------
    >>> unsafe_character("SN candidés, r < 19"), unsafe_character("a\u2028b"), unsafe_character("=?utf-8?q?x?=")
    (None, 'U+2028', '=?')
    """
    if "=?" in text:
        return "=?"
    for c in text:
        if unicodedata.category(c) in _UNSAFE_CATEGORIES:
            return f"U+{ord(c):04X}"
    return None


def header_safe(text: str) -> bool:
    """True if ``text`` may go into a header (``unsafe_character`` finds nothing)."""
    return unsafe_character(text) is None


def address_ok(address: str, local: bool = False) -> bool:
    r"""True if ``address`` is one plain ASCII address (``local@domain.tld``): no display name, list or comment,
    no ``=`` or ``?`` (so no encoded word), nothing a header parser could turn into a second header.

    Examples
    --------
    >>> address_ok("astro@example.org"), address_ok("m@example.org\u2028Bcc: x@y.org"), address_ok("a@b.org, c@d.org")
    (True, False, False)
    """
    pattern = _LOCAL_ADDRESS if local else _ADDRESS  # local: a one-label domain (the sender nightjar@localhost)
    return len(address) <= 254 and pattern.fullmatch(address) is not None
