"""Help for the ``nightjar`` command line: each command shows its description, its arguments, then examples.

``add_command`` adds a sub-command with a one-line ``help`` (shown in its parent's list), the same text as its
description and an epilog of example command lines, which keep their line breaks.
"""

from __future__ import annotations

import argparse
import textwrap

FORMATTER = argparse.RawDescriptionHelpFormatter


def examples(*lines: str) -> str:
    """An epilog of example command lines, one per line (as ``nightjar CMD --help`` shows them)."""
    head = "example:" if len(lines) == 1 else "examples:"
    return "\n".join([head, *(f"  {line}" for line in lines)])


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    text: str,
    *example_lines: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Add the sub-command ``name`` to ``sub``: ``text`` in the parent's list, ``description`` (default:
    ``text``) above its arguments and ``example_lines`` below them."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=text,
        # The raw formatter keeps the examples' lines, so the description is wrapped here.
        description=textwrap.fill(description or text, 100),
        epilog=examples(*example_lines),
        formatter_class=FORMATTER,
    )
    return parser
