"""``nightjar bench NAME``: benchmarks, one entry each in ``BENCHES``.

A benchmark is a function ``(settings, args) -> exit code`` that prints its figure on its last line
(``name=<value>``), plus a function adding its options. To add one, write it in its package (e.g.
``streams/bench_decode.py``) and add a ``Bench`` entry below.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from nightjar.settings import Settings


@dataclass(frozen=True)
class Bench:
    help: str
    run: Callable[[Settings, argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser], None] = lambda parser: None


def _filters(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.sql.bench_filters import run_bench

    run_bench(args.alerts, args.filters, args.repeat, settings.query_threads)
    return 0


def _filters_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--filters", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="batches timed after the first")


BENCHES: dict[str, Bench] = {
    "filters": Bench("many streaming filters on one large batch (1,000 on 10,000 alerts)", _filters, _filters_options),
}


def add_parser(sub: argparse._SubParsersAction, handler: Callable[[Settings, argparse.Namespace], int]) -> None:
    """Add ``bench`` and one sub-command per entry of ``BENCHES``."""
    parser = sub.add_parser(
        "bench", help="Run a benchmark.", description="Run a benchmark; its figure is the last line."
    )
    parser.set_defaults(handler=handler)
    names = parser.add_subparsers(dest="bench", required=True)
    for name, bench in BENCHES.items():
        options = names.add_parser(name, help=bench.help, description=bench.help)
        bench.options(options)


def run(settings: Settings, args: argparse.Namespace) -> int:
    return BENCHES[args.bench].run(settings, args)
