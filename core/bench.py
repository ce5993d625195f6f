"""``nightjar bench NAME``: benchmarks, each printing its figure on its last line.

Each benchmark is listed in ``benchmarks()`` as ``name: (add_arguments, run, description, example)``; ``run`` gets
the Settings and the parsed arguments, prints its measurements and returns an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from nightjar.cli_help import add_command
from nightjar.settings import Settings

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[Settings, argparse.Namespace], int]


def benchmarks() -> dict[str, tuple[AddArguments, Run, str, str]]:
    """The available benchmarks by name: (add their arguments, run them, one-line description, an example)."""
    from nightjar.api import bench_api
    from nightjar.lake import bench_cone, bench_lake, bench_objects
    from nightjar.pipelines import bench_pipeline, bench_skymap, bench_watch
    from nightjar.streams import bench_decode, bench_simulate

    return {
        "decode": (
            bench_decode.add_arguments,
            bench_decode.run,
            "columnar decoding vs fastavro per record",
            "nightjar bench decode --alerts 8000 --batch 1000",
        ),
        "simulate": (
            bench_simulate.add_arguments,
            bench_simulate.run,
            "heavy simulated alerts per second, one core",
            "nightjar bench simulate --alerts 20000",
        ),
        "lake": (
            bench_lake.add_arguments,
            bench_lake.run,
            "cutout retrieval and cone search on a large lake",
            "nightjar bench lake --alerts 1000000 --lookups 200 --cones 50",
        ),
        "lake-cone": (
            bench_cone.add_arguments,
            bench_cone.run,
            "HEALPix cone queries before/after lake optimize",
            "nightjar bench lake-cone --rows 2000000 --queries 30",
        ),
        "objects": (
            bench_objects.add_arguments,
            bench_objects.run,
            "one batch's objects append as the objects table grows (stored vs new objects), reads and folds",
            "nightjar bench objects --sizes 25000,250000,1000000 --batch 1500",
        ),
        "api": (
            bench_api.add_arguments,
            bench_api.run,
            "cone and object latency over HTTP on a large lake",
            "nightjar bench api --alerts 1000000 --calls 200",
        ),
        "pipeline": (
            bench_pipeline.add_arguments,
            bench_pipeline.run_cli,
            "heavy alerts end to end: decode-only, e2e over growing lake, latency, peak memory",
            "nightjar bench pipeline --alerts 10000 --chunks 4 --rate 300 --latency-seconds 60",
        ),
        "watchlist": (
            bench_watch.add_arguments,
            bench_watch.run,
            "watchlist matching: a 10,000-alert batch vs 10^7 cones (warm), 10^6 cones over a 10^7-alert lake",
            "nightjar bench watchlist --cones 10000000 --alerts 10000 --history-cones 1000000",
        ),
        "skymap": (
            bench_skymap.add_arguments,
            bench_skymap.run,
            "skymap matching: a 10,000-alert batch vs 10 active skymaps (warm), with the no-map baseline",
            "nightjar bench skymap --maps 10 --alerts 10000 --skymap ../shared/data/skymaps/bayestar.multiorder.fits",
        ),
        "filters": (
            _filters_options,
            _filters,
            "many streaming filters on one large batch (1,000 on 10,000 alerts)",
            "nightjar bench filters --filters 1000 --alerts 10000 --repeat 5",
        ),
    }


def _filters(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.sql.bench_filters import run_bench

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


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the ``bench`` command and one sub-command per benchmark; returns the group's sub-parsers, where
    other parts (catalogues: ``bench xmatch``) add theirs."""
    table = benchmarks()
    parser = add_command(
        sub,
        "bench",
        "Run a benchmark; the last line is its figure.",
        *(example for *_, example in table.values()),
        "nightjar bench xmatch --rows 1000000 --alerts 200000",
    )
    bench_sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, (add_arguments, run, text, example) in table.items():
        p = add_command(bench_sub, name, text, example)
        add_arguments(p)
        p.set_defaults(handler=run)
    return bench_sub
