"""``nightjar bench NAME``: benchmarks, each printing its figure on its last line.

Each benchmark is listed in ``benchmarks()`` by name, with the module of its ``add_arguments`` and ``run``; ``run``
gets the Settings and the parsed arguments, prints its measurements and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nightjar.cli_help import add_command
from nightjar.settings import Settings

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[Settings, argparse.Namespace], int]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: the module holding its ``add_arguments`` (``options``) and ``run`` functions, imported only
    when the benchmark is asked for (the benchmarks' imports took ~5 s of every ``nightjar`` command's start)."""

    module: str
    text: str  # one-line description
    example: str
    run: str = "run"
    options: str = "add_arguments"

    def load(self) -> tuple[AddArguments, Run]:
        """Its (add_arguments, run) functions."""
        module = importlib.import_module(self.module)
        return getattr(module, self.options), getattr(module, self.run)


def benchmarks() -> dict[str, Benchmark]:
    """The available benchmarks by name."""
    return {
        "decode": Benchmark(
            "nightjar.bench.decode",
            "columnar decoding vs fastavro per record",
            "nightjar bench decode --alerts 8000 --batch 1000",
        ),
        "simulate": Benchmark(
            "nightjar.bench.simulate",
            "heavy simulated alerts per second, one core",
            "nightjar bench simulate --alerts 20000",
        ),
        "lake": Benchmark(
            "nightjar.bench.lake",
            "cutout retrieval and cone search on a large lake",
            "nightjar bench lake --alerts 1000000 --lookups 200 --cones 50",
        ),
        "lake-cone": Benchmark(
            "nightjar.bench.lake_cone",
            "HEALPix cone queries before/after lake optimize",
            "nightjar bench lake-cone --rows 2000000 --queries 30",
        ),
        "objects": Benchmark(
            "nightjar.bench.objects",
            "one batch's objects append as the objects table grows (stored vs new objects), reads and folds",
            "nightjar bench objects --sizes 25000,250000,1000000 --batch 1500",
        ),
        "api": Benchmark(
            "nightjar.bench.api",
            "cone and object latency over HTTP on a large lake",
            "nightjar bench api --alerts 1000000 --calls 200",
        ),
        "pipeline": Benchmark(
            "nightjar.bench.pipeline",
            "heavy alerts end to end: decode-only, e2e over growing lake, latency, peak memory",
            "nightjar bench pipeline --alerts 10000 --chunks 4 --rate 300 --latency-seconds 60",
            run="run_cli",
        ),
        "watchlist": Benchmark(
            "nightjar.bench.watch",
            "watchlist matching: a 10,000-alert batch vs 10^7 cones (warm), 10^6 cones over a 10^7-alert lake",
            "nightjar bench watchlist --cones 10000000 --alerts 10000 --history-cones 1000000",
        ),
        "skymap": Benchmark(
            "nightjar.bench.skymap",
            "skymap matching: a 10,000-alert batch vs 10 active skymaps (warm), with the no-map baseline",
            "nightjar bench skymap --maps 10 --alerts 10000 --skymap ../shared/data/skymaps/bayestar.multiorder.fits",
        ),
        "xmatch": Benchmark(
            "nightjar.bench.xmatch",
            "crossmatch throughput (alerts/s/core), warm and cold",
            "nightjar bench xmatch --rows 1000000 --alerts 200000",
        ),
        "filters": Benchmark(
            "nightjar.bench",
            "many streaming filters on one large batch (1,000 on 10,000 alerts)",
            "nightjar bench filters --filters 1000 --alerts 10000 --repeat 5",
            run="_filters",
            options="_filters_options",
        ),
    }


def _filters(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.bench.filters import run_bench

    run_bench(args.alerts, args.filters, args.repeat, settings.query_threads)
    return 0


def _filters_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filters", type=int, default=1000, help="filters of mixed shapes run together (default: %(default)s)"
    )
    parser.add_argument(
        "--alerts", type=int, default=10_000, help="alerts in the synthetic batch (default: %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="batches timed after the first")


def register(sub: argparse._SubParsersAction, argv: Sequence[str] | None = None) -> None:
    """Add the ``bench`` command and one sub-command per benchmark.

    ``argv``: the command line about to be parsed. A benchmark's module is imported (and its arguments added) only
    when ``argv`` asks for ``bench`` and names it, or names no benchmark (``nightjar bench --help``); None: all.
    """
    table = benchmarks()
    named = set(argv or ()) & set(table)
    parser = add_command(
        sub,
        "bench",
        "Run a benchmark; the last line is its figure.",
        *(bench.example for bench in table.values()),
    )
    bench_sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, bench in table.items():
        p = add_command(bench_sub, name, bench.text, bench.example)
        if argv is None or ("bench" in argv and (name in named or not named)):
            add_arguments, run = bench.load()
            add_arguments(p)
            p.set_defaults(handler=run)
