"""``nightjar demo``: the whole path on one machine, from an empty home to a summary of what happened."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from nightjar import paths
from nightjar.catalogs.catalog import list_catalogs
from nightjar.catalogs.demo import install_demo_catalogs
from nightjar.cluster import dask_client
from nightjar.lake import tables as lake_tables
from nightjar.pipelines.run import RunReport, run
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.sql.examples import SAMPLE_FILTERS
from nightjar.streams import broker, kafka, simulate


@dataclass
class DemoSummary:
    """What ``nightjar demo`` did: alerts produced, the pipeline's report, rows per lake table, matches read back from
    each filter's topic, wall time in seconds, and the objects per context class."""

    produced: int
    report: RunReport
    table_rows: dict[str, int]
    read_back: dict[str, int]
    seconds: float
    context_classes: dict[str, int]


def context_classes(settings: Settings) -> dict[str, int]:
    """Objects per context class, from the lake."""
    rows = query_lake(settings, "SELECT classification, count(*) AS n FROM context GROUP BY ALL ORDER BY n DESC")
    return dict(zip(rows["classification"].to_pylist(), rows["n"].to_pylist(), strict=True))


def run_demo(settings: Settings, alerts: int = 20_000, console: Console | None = None) -> DemoSummary:
    """Run the demo: start an embedded broker unless Kafka is configured or one runs already, simulate ``alerts``
    LSST alerts, register the sample filters, install the demo catalogues if there are none, run the pipeline over
    the alerts on a Dask cluster, read the filters' topics back and print the summary."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    own_broker = settings.kafka is None and broker.read_state(home) is None
    if own_broker:
        state = broker.start(home, settings.broker_port, settings.broker_start_timeout_s, settings.broker_storage)
        console.log(f"embedded broker started on {state.bootstrap}")
    try:
        topic = f"lsst-alerts-demo-{int(time.time())}"
        console.log(f"simulating {alerts} LSST alerts to {topic}")
        produced = simulate.produce(settings, topic, alerts, seed=42)
        db = registry.engine(settings.metadata_url)
        filters = [registry.add_filter(db, name, sql) for name, sql in SAMPLE_FILTERS.items()]
        db.dispose()
        console.log(f"registered filters: {', '.join(f'{f.name} -> {f.topic}' for f in filters)}")
        with dask_client(settings) as client:
            console.log(f"Dask cluster: {client.scheduler_info().get('address')}")
            if not list_catalogs(settings.catalogs):
                console.log("installing the demo context catalogues (OpenNGC, synthetic galaxies and stars)")
                install_demo_catalogs(client, settings.catalogs, console=console)
            report = run(settings, client, topic, max_alerts=produced, idle_exit_s=30)
        read_back = {
            f.name: len(kafka.read_messages(settings, f.topic, report.matches[f.name], timeout_s=60)) for f in filters
        }
        lake = settings.lake
        table_rows = {t: lake_tables.load(lake, t).count() for t in paths.TABLES if lake_tables.exists(lake, t)}
        classes = context_classes(settings)
    finally:
        if own_broker:
            broker.stop(home)
            console.log("embedded broker stopped")
    summary = DemoSummary(produced, report, table_rows, read_back, time.monotonic() - started, classes)
    print_summary(summary, console)
    return summary


def print_summary(s: DemoSummary, console: Console) -> None:
    """Print the demo's summary as a table, then its figures (alerts/s, wall time, accepted) as one JSON line."""
    table = Table(title="Nightjar demo", show_header=False)
    table.add_row("alerts produced", str(s.produced))
    table.add_row("alerts consumed", str(s.report.consumed))
    table.add_row("accepted / dead-lettered", f"{s.report.accepted} / {s.report.dead_lettered}")
    table.add_row("micro-batches", str(s.report.batches))
    for name, rows in s.table_rows.items():
        table.add_row(f"lake rows: {name}", str(rows))
    if s.context_classes:
        table.add_row("objects by context class", ", ".join(f"{k} {v}" for k, v in s.context_classes.items()))
    for name, n in s.report.matches.items():
        table.add_row(f"filter {name}: matches / read back", f"{n} / {s.read_back.get(name, 0)}")
    table.add_row("pipeline time", f"{s.report.seconds:.1f} s ({s.report.alerts_per_s:.0f} alerts/s)")
    table.add_row("demo wall time", f"{s.seconds:.1f} s")
    console.print(table)
    console.print(
        json.dumps(
            {
                "alerts_per_s": round(s.report.alerts_per_s, 1),
                "wall_s": round(s.seconds, 1),
                "accepted": s.report.accepted,
            }
        ),
        soft_wrap=True,
    )
