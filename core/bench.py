"""The ``nightjar bench`` command group: each part of the system registers its benchmarks here.

``add_bench_group(sub)`` creates ``nightjar bench`` and returns its sub-parsers; a module adds a benchmark with
``bench.add_parser("xmatch", ...)`` and ``set_defaults(handler=...)``. Every benchmark prints its figure on its
last line as ``<name>=<value>``.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_bench_group(sub: Any) -> Any:
    """Add ``nightjar bench`` to the top-level sub-parsers; returns the group's own sub-parsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "bench", help="Run a benchmark.", description="Run a benchmark; each prints its figure on its last line."
    )
    return parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
