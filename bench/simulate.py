"""``nightjar bench simulate``: heavy simulated LSST alerts per second, in this process on one core.

The alerts are those ``nightjar simulate --history-days 365 --cutout-size 80`` produces (~100 KB each). As the
baseline, a sample of them is written again with fastavro from their decoded records, as the simulator did before
it encoded each history record once (``streams.avro_encode``).
"""

from __future__ import annotations

import argparse
import io
import time

import fastavro
from rich.progress import Progress

from nightjar.settings import Settings
from nightjar.streams import schemas, wire
from nightjar.streams.simulate import SimConfig, Simulation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulate benchmark's options: alerts, history days, cutout size, alerts written again with fastavro."""
    parser.add_argument(
        "--alerts", type=int, default=20_000, help="alerts simulated, in this process (default: %(default)s)"
    )
    parser.add_argument(
        "--history-days", type=float, default=365.0, help="days of history in each alert (default: %(default)s)"
    )
    parser.add_argument(
        "--cutout-size", type=int, default=80, help="cutout side in pixels (default: %(default)s, Rubin-sized)"
    )
    parser.add_argument("--baseline", type=int, default=200, help="alerts written again with fastavro")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Simulate heavy LSST alerts in this process and print the size, the fastavro write rate of a sample, and last the
    simulated alerts per second."""
    config = SimConfig(history_days=args.history_days, cutout_size=args.cutout_size)
    simulation = Simulation(args.alerts, seed=42, config=config)
    sample: list[bytes] = []
    size = 0
    every = max(1, args.alerts // max(args.baseline, 1))
    with Progress(transient=True) as progress:
        task = progress.add_task("simulating", total=args.alerts)
        started, cpu = time.perf_counter(), time.process_time()
        for k, alert in enumerate(simulation.alerts()):
            size += len(alert.payload)
            if k % every == 0 and len(sample) < args.baseline:
                sample.append(alert.payload)
            if k % 1000 == 999:
                progress.update(task, completed=k + 1)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    records = []
    for payload in sample:
        sid, body = wire.unframe(payload)
        records.append((sid, fastavro.schemaless_reader(io.BytesIO(body), schemas.lsst_schema(sid), None)))
    started = time.perf_counter()
    for sid, record in records:
        fastavro.schemaless_writer(io.BytesIO(), schemas.lsst_schema(sid), record)
    baseline = len(records) / (time.perf_counter() - started) if records else 0.0
    mean_kb = size / max(args.alerts, 1) / 1024
    print(f"alerts={args.alerts} mean_size_kb={mean_kb:.1f} wall_s={wall:.2f} cpu_s={cpu:.2f}")
    print(f"fastavro_write_alerts_per_s={baseline:.0f}")
    print(f"alerts_per_cpu_s={args.alerts / cpu:.0f}")
    print(f"simulate_alerts_per_s={args.alerts / wall:.0f}")
    return 0
