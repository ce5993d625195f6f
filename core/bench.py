"""``nightjar bench NAME``: benchmarks, each printing its figure on its last line.

Each benchmark module registers itself here with ``BENCHMARKS[name] = (add_arguments, run)``; ``run`` gets the
Settings and the parsed arguments, prints its measurements and returns an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from nightjar.settings import Settings

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[Settings, argparse.Namespace], int]


def benchmarks() -> dict[str, tuple[AddArguments, Run, str]]:
    """The available benchmarks by name: (add their arguments, run them, one-line description)."""
    from nightjar.lake import bench_cone, bench_lake
    from nightjar.streams import bench_decode

    return {
        "decode": (bench_decode.add_arguments, bench_decode.run, "columnar decoding vs fastavro per record"),
        "lake": (bench_lake.add_arguments, bench_lake.run, "cutout retrieval and cone search on a large lake"),
        "lake-cone": (bench_cone.add_arguments, bench_cone.run, "HEALPix cone queries before/after lake optimize"),
    }


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the ``bench`` command and one sub-command per benchmark; returns the group's sub-parsers, where
    other parts (catalogues: ``bench xmatch``) add theirs."""
    parser = sub.add_parser("bench", help="Run a benchmark; the last line is its figure.")
    bench_sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, (add_arguments, run, text) in benchmarks().items():
        p = bench_sub.add_parser(name, help=text, description=text)
        add_arguments(p)
        p.set_defaults(handler=run)
    return bench_sub
