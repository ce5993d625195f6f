"""The ``nightjar`` command line: ``main(argv)`` parses, builds the Settings, and calls library functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from nightjar import (
    __version__,
    cli_annotator,
    cli_db,
    cli_filters,
    cli_lake,
    cli_skymap,
    cli_tns,
    cli_users,
    cli_watch,
)
from nightjar.bench import register as register_bench
from nightjar.cli_help import FORMATTER, add_command, examples
from nightjar.log import configure_logging
from nightjar.progress import bar
from nightjar.settings import Settings, load_settings

console = Console(stderr=True)


def _broker(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.streams import broker

    if args.action == "start":
        state = broker.start(
            settings.home, settings.broker_port, settings.broker_start_timeout_s, settings.broker_storage
        )
        console.print(f"broker running: pid {state.pid}, bootstrap {state.bootstrap}, {state.storage} storage")
        print(state.bootstrap)
    elif args.action == "stop":
        stopped = broker.stop(settings.home)
        console.print("broker stopped" if stopped else "no broker was running")
    else:
        running = broker.read_state(settings.home)
        if running is None:
            console.print("broker: not running")
            return 1
        ready = broker.is_ready(running.bootstrap)
        console.print(
            f"broker: pid {running.pid}, bootstrap {running.bootstrap}, {running.storage} storage, "
            f"{'ready' if ready else 'not answering'}"
        )
        return 0 if ready else 1
    return 0


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.streams import simulate

    config = simulate.SimConfig(
        nights=args.nights, history_days=args.history_days, cutout_size=args.cutout_size, hosts=not args.no_hosts
    )
    n = simulate.produce(
        settings, args.topic, args.alerts, seed=args.seed, rate=args.rate, truth=args.truth, config=config
    )
    console.print(f"produced {n} simulated alerts to {args.topic}")
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.streams.replay import replay

    with bar(console, f"replaying files to {args.topic}") as progress:
        report = replay(settings, args.paths, args.topic, progress)
    for error in report.errors:
        console.print(f"[red]skipped[/red] {error}")
    console.print(
        f"replayed {report.alerts} alerts from {report.files} files to {args.topic}; {len(report.errors)} skipped"
    )
    return _partial_exit(len(report.errors), args.allow_partial)


def _partial_exit(problems: int, allow_partial: bool) -> int:
    """1 when anything was rejected or skipped (so scripts and CI notice), unless partial results are accepted."""
    if problems and not allow_partial:
        console.print("[red]incomplete:[/red] exit code 1 (--allow-partial accepts a partial result)")
        return 1
    return 0


def _kafka_reachable(settings: Settings, timeout_s: float = 10.0) -> None:
    """Fail fast, before a Dask cluster starts, when a configured Kafka cluster does not answer or refuses the
    connection (its security settings)."""
    from nightjar.streams import broker, kafka

    bootstrap = kafka.bootstrap_servers(settings)
    if not settings.kafka and not broker.is_ready(bootstrap, timeout_s=timeout_s):
        raise HomeError(
            f"Kafka at {bootstrap} (the embedded broker: nightjar broker status) does not answer: start it or set "
            "NIGHTJAR_KAFKA"
        )
    for cluster in (kafka.INPUT, kafka.OUTPUT) if kafka.separate_output(settings) else (kafka.INPUT,):
        try:
            kafka.check_reachable(settings, cluster, timeout_s)
        except kafka.KafkaUnreachable as exc:
            raise HomeError(f"{exc} (it does not answer: start it or fix the address)") from None


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.cluster import dask_client
    from nightjar.pipelines.run import run

    _kafka_reachable(settings)
    with dask_client(settings) as client:
        report = run(settings, client, args.topic, max_alerts=args.max_alerts, idle_exit_s=args.idle_exit)
    console.print(
        f"messages {report.consumed} = stored {report.stored} + dead-lettered {report.dead_lettered} "
        f"(conflicting re-sends {report.conflicting}) + duplicates {report.duplicates}"
        + ("" if report.balanced else " [red]UNBALANCED[/red]")
        + f"; {report.accepted} alerts stored in {report.batches} batches, {report.seconds:.1f} s "
        f"({report.alerts_per_s:.0f} alerts/s)"
    )
    console.print(
        f"fetched from Kafka by the workers: {report.fetched_by_workers}; "
        f"read by the driver at the end of the stream: {report.read_by_driver}"
    )
    if report.stage_seconds:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(report.stage_seconds.items(), key=lambda kv: -kv[1]))
        console.print(f"seconds per stage (workers: summed over tasks): {stages}")
    for name, n in sorted(report.matches.items()):
        console.print(f"filter {name}: {n} matches")
    return 0


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.cluster import dask_client
    from nightjar.pipelines.run import ingest
    from nightjar.streams.replay import alert_files

    with dask_client(settings) as client, bar(console, "ingesting alerts") as progress:
        report = ingest(settings, client, alert_files(args.paths), progress)
    for error in report.file_errors:
        console.print(f"[red]rejected[/red] {error}")
    console.print(
        f"ingested {report.accepted} alerts from {len(args.paths)} path(s); {len(report.file_errors)} problems"
    )
    return _partial_exit(len(report.file_errors), args.allow_partial)


def _cap_memory(settings: Settings) -> None:
    """Cap this process's memory before it runs user SQL (see nightjar.memory_cap). With query isolation the
    query runs in a child process that carries the cap itself, and this process stays uncapped."""
    from nightjar import memory_cap

    limit = None if settings.query_isolation else memory_cap.query_process_cap(settings)
    if limit is not None:
        memory_cap.cap_process_memory(limit)


def _query(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.output import write_result
    from nightjar.sql import engine

    _cap_memory(settings)
    as_of = engine.parse_as_of(args.as_of)
    if args.offset or args.limit:
        page = engine.query_page(settings, args.sql, args.offset, args.limit, as_of)
        write_result(page.table, args.format, args.out)
        if page.next_offset is not None:
            console.print(f"more rows: --offset {page.next_offset}")
        return 0
    write_result(engine.query_lake(settings, args.sql, as_of), args.format, args.out)
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from nightjar.api.app import server_config

    _cap_memory(settings)
    uvicorn.Server(server_config(settings, args.host, args.port)).run()
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.demo import run_demo

    summary = run_demo(settings, alerts=args.alerts, console=console)
    ok = summary.report.consumed == summary.produced and all(
        summary.read_back.get(name, 0) == n for name, n in summary.report.matches.items()
    )
    return 0 if ok else 1


def _alerts(settings: Settings, args: argparse.Namespace) -> int:
    from nightjar.streams.inspect import inspect_files

    reports = inspect_files(args.paths)
    for report in reports:
        print(report.line())
    return 0 if all(r.ok for r in reports) else 1


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole ``nightjar`` parser; with ``argv`` (the command line to parse), benchmarks it does not ask for are
    listed without importing their modules (``nightjar.bench.register``)."""
    parser = argparse.ArgumentParser(
        prog="nightjar",
        description="An alert broker for Rubin/LSST and ZTF.",
        epilog=examples(
            "nightjar broker start",
            "nightjar simulate --topic alerts --alerts 5000",
            "nightjar run --topic alerts --idle-exit 30",
            'nightjar query "SELECT count(*) FROM objects"',
            "nightjar COMMAND --help      # the arguments and examples of one command",
        ),
        formatter_class=FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"nightjar {__version__}")
    parser.add_argument("--config", type=Path, help="TOML file of settings (NIGHTJAR_* variables win)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, and full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, handler: Callable[[Settings, argparse.Namespace], int], text: str, *example_lines: str
    ) -> argparse.ArgumentParser:
        p = add_command(sub, name, text, *example_lines)
        p.set_defaults(handler=handler)
        return p

    topic_help = "Kafka topic (created if missing) on NIGHTJAR_KAFKA, or on the embedded broker when that is unset"
    files_help = "alert files, or folders searched recursively for *.avro and *.parquet files"

    p = command(
        "broker",
        _broker,
        "Start, stop or check the embedded Kafka-compatible broker (Tansu).",
        "nightjar broker start",
        "nightjar broker status",
    )
    p.add_argument(
        "action",
        choices=["start", "stop", "status"],
        help="start: run it in the background on NIGHTJAR_BROKER_PORT (default 19092), its state under "
        "NIGHTJAR_HOME, and print its bootstrap address; stop: stop it; status: exit 0 if it answers, 1 otherwise",
    )

    p = command(
        "simulate",
        _simulate,
        "Produce simulated LSST alerts (wire format) to a topic.",
        "nightjar simulate --topic alerts --alerts 5000",
        "nightjar simulate --topic alerts --alerts 100000 --rate 1000 --history-days 365 --cutout-size 80",
    )
    p.add_argument("--topic", required=True, help=f"the {topic_help}")
    p.add_argument("--alerts", type=int, required=True, metavar="N", help="number of alerts to produce")
    p.add_argument(
        "--rate", type=float, help="alerts per second, each visit sent as one burst (default: as fast as possible)"
    )
    p.add_argument(
        "--seed", type=int, default=42, help="random seed: the same seed gives the same alerts (default: %(default)s)"
    )
    p.add_argument("--truth", type=Path, help="write each object's class, position and host to this Parquet file")
    p.add_argument("--nights", type=int, default=10, help="nights the alerts are spread over (default: %(default)s)")
    p.add_argument(
        "--history-days",
        type=float,
        default=30.0,
        help="days of history before the first night (default: %(default)s; 365: a year)",
    )
    p.add_argument(
        "--cutout-size", type=int, default=16, help="cutout side in pixels (default: %(default)s; 80: Rubin-sized)"
    )
    p.add_argument("--no-hosts", action="store_true", help="do not place transients on OpenNGC galaxies")

    p = command(
        "replay",
        _replay,
        "Send alert files (wire format, Avro containers or Parquet) to a topic.",
        "nightjar replay ../shared/data/alerts --topic alerts",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=files_help)
    p.add_argument("--topic", required=True, help=f"the {topic_help}")
    p.add_argument(
        "--allow-partial", action="store_true", help="exit 0 even when some files were skipped (default: exit 1)"
    )

    p = command(
        "run",
        _run,
        "Run the pipeline on a topic: decode, HEALPix, lake, filters, publish.",
        "nightjar run --topic alerts --idle-exit 30",
        "nightjar run --topic alerts --max-alerts 100000",
    )
    p.add_argument(
        "--topic",
        required=True,
        help=f"the {topic_help}, to consume alerts from in consumer group NIGHTJAR_CONSUMER_GROUP (default: "
        "nightjar); annotations are read beside it from NIGHTJAR_ANNOTATIONS_TOPIC",
    )
    p.add_argument(
        "--max-alerts",
        type=int,
        metavar="N",
        help="stop once this many alerts were consumed (default: no limit)",
    )
    p.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="stop after this many seconds without alerts (default: wait for alerts forever)",
    )

    p = command(
        "ingest",
        _ingest,
        "Decode alert files straight into the lake (no Kafka).",
        "nightjar ingest ../shared/data/alerts",
        "nightjar ingest night1.avro night2.parquet --allow-partial",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=files_help)
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="exit 0 even when some files or alerts were rejected (default: exit 1 if anything was rejected)",
    )

    p = command(
        "query",
        _query,
        "Run one SQL SELECT over the lake.",
        'nightjar query "SELECT count(*) FROM sources"',
        'nightjar query "SELECT band, count(*) AS n FROM sources GROUP BY band" --format csv --out bands.csv',
        'nightjar query "SELECT * FROM objects ORDER BY diaObjectId" --offset 1000 --limit 500 --format json',
        'nightjar query "SELECT count(*) FROM sources" --as-of 2025-09-05T12:00:00Z',
    )
    p.add_argument(
        "sql",
        help="one SELECT over the lake's views (sources, objects, forced_sources, context, context_matches, "
        "annotations, ...), sandboxed: at most NIGHTJAR_QUERY_MAX_ROWS rows (default 100000) and "
        "NIGHTJAR_QUERY_TIMEOUT_S seconds (default 60)",
    )
    p.add_argument(
        "--format",
        choices=["table", "json", "csv", "parquet"],
        default="table",
        help="output format (default: %(default)s; parquet needs --out)",
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="write the result to this file (default: stdout)")
    p.add_argument("--as-of", metavar="VERSION|TIME", help="the lake as it was: a lake version or an ISO time (UTC)")
    p.add_argument(
        "--offset",
        type=int,
        default=0,
        help="first row of a page (with --limit; the next page's --offset is printed on stderr)",
    )
    p.add_argument(
        "--limit",
        type=int,
        help="rows per page (default with --offset: NIGHTJAR_QUERY_PAGE_SIZE, 1000); pages end at "
        "NIGHTJAR_QUERY_MAX_ROWS",
    )

    p = command(
        "serve",
        _serve,
        "Serve the HTTP API.",
        "nightjar serve --host 0.0.0.0 --port 8080     # OpenAPI docs at http://HOST:PORT/docs",
    )
    p.add_argument("--host", help="address to listen on (default: NIGHTJAR_API_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: NIGHTJAR_API_PORT, 8000)")

    p = command(
        "demo",
        _demo,
        "Run the whole path on this machine and print a summary.",
        "nightjar demo --alerts 5000",
    )
    p.add_argument(
        "--alerts",
        type=int,
        default=20_000,
        metavar="N",
        help="simulated alerts produced and run through the pipeline with the sample filters (default: %(default)s); "
        "uses the embedded broker unless NIGHTJAR_KAFKA is set",
    )

    p = command(
        "alerts",
        _alerts,
        "Inspect alert files.",
        "nightjar alerts inspect ../shared/data/alerts",
    )
    asub = p.add_subparsers(dest="action", required=True)
    inspect = add_command(
        asub,
        "inspect",
        "format, schema version, alert count, ID range and errors per file",
        "nightjar alerts inspect ../shared/data/alerts      # exit 1 if any file has errors",
    )
    inspect.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=files_help)

    register_bench(sub, argv)
    for commands in (cli_lake, cli_filters, cli_watch, cli_users, cli_db, cli_skymap, cli_tns, cli_annotator):
        commands.register(sub)

    from nightjar import cli_catalog  # imports the catalogues' packages: only here, as the parser is built

    cli_catalog.register(sub)
    return parser


class HomeError(RuntimeError):
    """A NIGHTJAR_HOME (or Kafka) the command cannot work with: said plainly, no traceback."""


# Commands that make a home where there is none (they write the first data); every other command needs one.
CREATES_HOME = {
    "run",
    "ingest",
    "demo",
    "broker",
    "simulate",
    "replay",
    "catalog",
    "user",
    "watchlist",
    "watchmap",
    "db",
    "skymap",
}
# Commands that read the lake: without one they still run (over empty views), with a warning.
NEEDS_LAKE = {"query", "export"}
# Commands that use no home (file inspection, benchmarks on their own temporary homes).
NO_HOME = {"alerts", "bench"}


def check_home(settings: Settings, command: str) -> None:
    """Make the home for commands that start one (saying so), refuse a missing home for the others, and warn
    when a command that reads the lake finds none."""
    home = Path(settings.home)
    if command in NO_HOME:
        return
    if home.exists() and not home.is_dir():
        raise HomeError(f"NIGHTJAR_HOME={home} is a file, not a folder")
    if command in CREATES_HOME:
        if not home.exists():
            home.mkdir(parents=True)
            console.print(f"created NIGHTJAR_HOME {home}")
        return
    if not home.is_dir():
        raise HomeError(
            f"NIGHTJAR_HOME={home} does not exist: set NIGHTJAR_HOME to your Nightjar folder, or make one with "
            "`nightjar ingest FILES` or `nightjar run --topic T` (or `make demo`)"
        )
    if command in NEEDS_LAKE and settings.lake.is_local and not settings.lake.path.is_dir():
        console.print(
            f"[yellow]warning:[/yellow] {settings.lake.path} has no lake yet (every table is empty): fill it with "
            "`nightjar ingest FILES` or `nightjar run --topic T`"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nightjar`` command line: parse ``argv`` (default: the process's arguments), load the settings, check
    the home and dispatch to the sub-command's handler. Returns the exit code: the handler's, 2 after printing a user
    error in one line (without ``--verbose``), 130 on Ctrl-C."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    configure_logging(args.verbose)
    try:
        settings = load_settings(args.config)
        check_home(settings, args.command)
        code: int = args.handler(settings, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from nightjar.errors import USER_ERRORS

        if not isinstance(exc, (*USER_ERRORS, HomeError)) or args.verbose:
            raise
        console.print(f"[red]error:[/red] {exc}")
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
