"""Logging set-up for the command line: rich output on stderr, one level for the whole package."""

from __future__ import annotations

import logging

from rich.logging import RichHandler


def configure_logging(verbose: bool = False) -> None:
    """Send ``nightjar`` logs to stderr through rich; quieten chatty libraries."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False)],
        force=True,
    )
    logging.getLogger("nightjar").setLevel(level)
    # distributed sets its loggers' levels when first imported: import it now so that ours stick.
    import distributed  # noqa: F401

    for noisy in ("distributed", "tornado", "bokeh"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
