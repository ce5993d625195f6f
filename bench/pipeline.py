"""``nightjar bench pipeline``: decode-only, end-to-end, latency and memory of the streaming pipeline.

In a fresh temporary ``NIGHTJAR_HOME`` with its own embedded broker and Dask LocalCluster (the demo catalogues
and the three demo filters installed, as ``nightjar demo`` does), on heavy LSST-shaped alerts (a year of history,
80-px cutouts by default) from one simulated survey:

(a) decode-only alerts/s on the first chunk's payloads, in this process and in one process per Dask worker;
(b) end to end (``pipelines.run.run``) over ``--chunks`` successive chunks of ``--alerts`` into one lake, each
    chunk on its own topic (deleted once consumed, so that the in-memory broker does not hold them all), with
    ``chunk4_over_chunk1`` (last chunk over first: does the cost grow with the lake?);
(c) latency: alerts produced at ``--rate`` for ``--latency-seconds`` while the pipeline runs, with a filter that
    matches every alert; per alert, the Kafka timestamp of its match message minus that of the alert;
(d) the peak RSS of the whole process tree (this process, the Dask workers, the broker), sampled every 0.5 s;
(e) the CPU time (user + system) the process tree used over the end-to-end chunks, per alert, the broker's apart:
    on a shared or virtual machine it varies much less from run to run than the alerts/s do.

The figures are printed last, one ``key=value`` a line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import gc
import json
import multiprocessing
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from distributed import Client
from rich.console import Console
from rich.progress import Progress

from nightjar.bench.process_tree import TreeSampler
from nightjar.catalogs.demo import install_demo_catalogs
from nightjar.cluster import dask_client
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.examples import SAMPLE_FILTERS
from nightjar.streams import broker, kafka
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.simulate import SimAlert, SimConfig, Simulation

EVERY_ALERT = "SELECT diaObjectId, diaSourceId FROM sources WHERE NOT fromPacketHistory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the pipeline benchmark's options: alerts per chunk and chunks, history and cutout sizes, the latency run's
    rate and duration, batch size, seed and catalogue rows."""
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts per end-to-end chunk")
    parser.add_argument("--chunks", type=int, default=4, help="successive chunks into one lake")
    parser.add_argument(
        "--history-days", type=float, default=365.0, help="days of history in each alert (default: %(default)s)"
    )
    parser.add_argument(
        "--cutout-size", type=int, default=80, help="cutout side in pixels (default: %(default)s, Rubin-sized)"
    )
    parser.add_argument("--rate", type=float, default=300.0, help="alerts/s produced during the latency run")
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=60.0,
        help="seconds of the latency run, alerts produced at --rate while the pipeline runs (default: %(default)s; "
        "0: no latency run)",
    )
    parser.add_argument("--batch-size", type=int, help="alerts per micro-batch (default: NIGHTJAR_BATCH_SIZE)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the simulated alerts")
    parser.add_argument(
        "--catalog-rows", type=int, default=200_000, help="rows of each synthetic demo catalogue (0: no catalogues)"
    )


@dataclass
class PipelineBench:
    """What one run of the benchmark measured."""

    decode_alerts_per_s: float
    decode_parallel_alerts_per_s: float
    chunk_seconds: list[float]
    chunk_alerts: list[int]
    stage_seconds: dict[str, float]
    latency_s: list[float]
    latency_matched: int
    latency_produced: int
    peak_rss_mb: float  # while the pipeline ran (every chunk and the latency phase)
    peak_rss_without_broker_mb: float  # the same, leaving out the embedded broker (it keeps every topic in RAM)
    decode_peak_rss_mb: float  # during the decode-only measurement (the driver holds a chunk's payloads)
    mean_size_kb: float
    workers: int
    cpu_s: float = 0.0  # CPU seconds of this process and its descendants over the end-to-end chunks
    broker_cpu_s: float = 0.0  # the embedded broker's, over the same chunks
    run_s: float = 0.0  # wall seconds of the chunks' whole runs (start-up and drain too), over which CPU is counted

    @property
    def cpu_ms_per_alert(self) -> float:
        """CPU milliseconds an alert took end to end (each chunk's whole run), the broker's left out."""
        return 1000 * self.cpu_s / sum(self.chunk_alerts)

    @property
    def broker_cpu_ms_per_alert(self) -> float:
        """CPU milliseconds an alert took in the embedded broker (serving the pipeline's fetches and writes)."""
        return 1000 * self.broker_cpu_s / sum(self.chunk_alerts)

    @property
    def cores_busy(self) -> float:
        """How many cores the chunks kept busy on average, broker included."""
        return (self.cpu_s + self.broker_cpu_s) / self.run_s if self.run_s else 0.0

    @property
    def e2e_alerts_per_s(self) -> float:
        """Alerts per second over all the end-to-end chunks."""
        return sum(self.chunk_alerts) / sum(self.chunk_seconds)

    @property
    def chunk4_over_chunk1(self) -> float:
        """The last chunk's rate over the first's: below 1 when a batch's cost grows with the lake."""
        first = self.chunk_alerts[0] / self.chunk_seconds[0]
        return (self.chunk_alerts[-1] / self.chunk_seconds[-1]) / first

    def figures(self) -> list[str]:
        """The closing ``key=value`` lines."""
        latency = self.latency_s or [float("nan")]
        p50, p95, p99 = (float(np.percentile(latency, q)) for q in (50, 95, 99))
        return [
            f"latency_p50_s={p50:.2f}",
            f"latency_p95_s={p95:.2f}",
            f"decode_peak_rss_mb={self.decode_peak_rss_mb:.0f}",
            f"peak_rss_without_broker_mb={self.peak_rss_without_broker_mb:.0f}",
            f"cpu_ms_per_alert={self.cpu_ms_per_alert:.3f}",
            f"broker_cpu_ms_per_alert={self.broker_cpu_ms_per_alert:.3f}",
            f"cores_busy={self.cores_busy:.2f}",
            f"e2e_alerts_per_s={self.e2e_alerts_per_s:.0f}",
            f"decode_alerts_per_s={self.decode_alerts_per_s:.0f}",
            f"e2e_ratio={self.e2e_alerts_per_s / self.decode_alerts_per_s:.3f}",
            f"chunk4_over_chunk1={self.chunk4_over_chunk1:.2f}",
            f"latency_p99_s={p99:.2f}",
            f"peak_rss_mb={self.peak_rss_mb:.0f}",
        ]


def _delete_topics(settings: Settings, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers(settings)})
    for future in admin.delete_topics(topics, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # a topic already gone is fine
            future.result(timeout=30)


def _decode_chunk(payloads: list[bytes], batch: int) -> int:
    rows = 0
    for i in range(0, len(payloads), batch):
        rows += decode_batch(RawBatch.from_payloads(payloads[i : i + batch])).sources.num_rows
    return rows


def _timed_decode(payloads: list[bytes], batch: int) -> tuple[float, float]:
    """When this process started and ended decoding ``payloads`` (wall clock, comparable across processes)."""
    started = time.time()
    _decode_chunk(payloads, batch)
    return started, time.time()


def decode_rates(payloads: list[bytes], batch: int, processes: int) -> tuple[float, float]:
    """Decode-only alerts/s of ``payloads`` in one process, and in ``processes`` processes at once.

    Each decode runs in a spawned process of its own and times itself (the payloads' trip through the pipe is not
    counted), so the decoded tables never land in this process, which then runs the pipeline's driver."""
    n = len(payloads)
    # Spawned, not forked: this process runs threads (Dask client, RSS sampler).
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_decode_chunk, [payloads[:10]] * processes, [batch] * processes))  # compile or load the decoder
        started, ended = pool.submit(_timed_decode, payloads, batch).result()
        one = n / (ended - started)
        if processes <= 1:
            return one, one
        share = -(-n // processes)
        parts = [payloads[i : i + share] for i in range(0, n, share)]
        spans = list(pool.map(_timed_decode, parts, [batch] * len(parts)))
        many = n / (max(e for _, e in spans) - min(s for s, _ in spans))
    return one, many


def _return_freed_memory() -> None:
    """Hand the memory of freed payloads back to the system (glibc keeps freed heap pages otherwise), so that the
    driver's RSS measured afterwards is the pipeline's."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _read_timestamps(settings: Settings, topic: str, expected: int, quiet_s: float = 5.0,
                     timeout_s: float = 120.0) -> dict[int, int]:  # fmt: skip
    """diaSourceId -> Kafka timestamp (ms) of the match messages of a filter topic."""
    consumer = Consumer(kafka.consumer_config(settings, f"nightjar-bench-{uuid.uuid4().hex}"))
    found: dict[int, int] = {}
    try:
        info = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if info is None or info.error is not None:
            return found
        consumer.assign([TopicPartition(topic, p, 0) for p in info.partitions])
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and len(found) < expected and time.monotonic() - quiet_since < quiet_s:
            messages = [m for m in consumer.consume(num_messages=10_000, timeout=0.5) if not m.error()]
            if messages:
                quiet_since = time.monotonic()
            for m in messages:
                row = json.loads(m.value() or b"{}")
                source = row.get("diaSourceId")
                if source is not None:
                    found.setdefault(int(source), m.timestamp()[1])
    finally:
        consumer.close()
    return found


def run_bench(
    settings: Settings, args: argparse.Namespace, console: Console | None = None, client: Client | None = None
) -> PipelineBench:
    """Run the benchmark in a fresh temporary home with its own broker (and cluster, unless ``client`` is given);
    return what it measured."""
    console = console or Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="nightjar-bench-") as tmp:
        home = Path(tmp)
        updates: dict[str, Any] = {"home": home, "kafka": None, "broker_port": broker.free_port()}
        if args.batch_size:
            updates["batch_size"] = args.batch_size
        bench_settings = settings.model_copy(update=updates)
        # Memory storage, as the baseline figures were measured (disk storage adds an HTTP hop per request).
        state = broker.start(home, bench_settings.broker_port, bench_settings.broker_start_timeout_s, "memory")
        console.log(f"embedded broker on {state.bootstrap}, home {home}")
        try:
            with TreeSampler() as rss:
                rss.extra.add(state.pid)
                if client is not None:
                    return _measure(bench_settings, args, console, rss, client)
                with dask_client(bench_settings) as own:
                    return _measure(bench_settings, args, console, rss, own)
        finally:
            broker.stop(home)


def _measure(
    settings: Settings, args: argparse.Namespace, console: Console, rss: TreeSampler, client: Client
) -> PipelineBench:
    config = SimConfig(history_days=args.history_days, cutout_size=args.cutout_size)
    n_latency = int(args.rate * args.latency_seconds)
    simulation = Simulation(args.alerts * args.chunks + n_latency, seed=args.seed, config=config)
    alerts: Iterator[SimAlert] = simulation.alerts()
    producer = Producer(kafka.producer_config(settings))
    db = registry.engine(settings.metadata_url)
    for name, sql in SAMPLE_FILTERS.items():
        registry.add_filter(db, name, sql)
    run_id = uuid.uuid4().hex[:8]
    workers = len(client.scheduler_info().get("workers", {}))
    if args.catalog_rows > 0:
        console.log(f"Dask cluster with {workers} workers; installing the demo context catalogues")
        install_demo_catalogs(client, settings.catalogs, synthetic_rows=args.catalog_rows, console=console)

    chunk_seconds: list[float] = []
    chunk_alerts: list[int] = []
    stages: dict[str, float] = {}
    decode_one = decode_many = 0.0
    decode_peak = 0
    mean_kb = 0.0
    cpu = broker_cpu = run_s = 0.0
    for chunk in range(args.chunks):
        topic = f"bench-{run_id}-chunk{chunk + 1}"
        kafka.ensure_topics(settings, [topic])
        payloads: list[bytes] = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"chunk {chunk + 1}: simulating and producing", total=args.alerts)
            for k in range(args.alerts):
                alert = next(alerts)
                kafka.produce_one(producer, topic, alert.payload, alert.key)
                if chunk == 0:
                    payloads.append(alert.payload)
                if k % 500 == 499:
                    progress.update(task, completed=k + 1)
            producer.flush(120)
        if chunk == 0:
            mean_kb = sum(len(p) for p in payloads) / len(payloads) / 1024
            console.log(f"decode-only on {len(payloads)} payloads ({mean_kb:.0f} KB), 1 and {workers} processes")
            decode_one, decode_many = decode_rates(payloads, settings.batch_size, workers)
            # The workers compile (or load) the decoder once; that is start-up, not throughput.
            client.run(_decode_chunk, payloads[:10], settings.batch_size)
            payloads.clear()
            _return_freed_memory()
            decode_peak = rss.reset_peak()
        console.log(f"chunk {chunk + 1}: running the pipeline over {args.alerts} alerts")
        cpu_before = rss.cpu_seconds()  # walks /proc: before the clock starts
        started = time.monotonic()
        # A group of its own per run: no wait for the members of an earlier run's group to expire.
        own = settings.model_copy(update={"consumer_group": f"nightjar-{topic}"})
        report = run(own, client, topic, max_alerts=args.alerts)
        wall = time.monotonic() - started
        cpu_after = rss.cpu_seconds()
        cpu += cpu_after[0] - cpu_before[0]
        broker_cpu += cpu_after[1] - cpu_before[1]
        run_s += wall
        chunk_seconds.append(report.seconds or wall)
        chunk_alerts.append(report.consumed)
        for name, seconds in getattr(report, "stage_seconds", {}).items():
            stages[name] = stages.get(name, 0.0) + seconds
        console.log(
            f"chunk {chunk + 1}: {report.consumed} alerts in {report.seconds:.1f} s "
            f"({report.consumed / max(report.seconds, 1e-9):.0f} alerts/s), rss now {rss.sample() / 2**20:.0f} MB"
        )
        _delete_topics(settings, [topic])

    latency, matched = _latency(settings, args, client, db, producer, alerts, n_latency, run_id, console)
    producer.flush(60)
    db.dispose()
    return PipelineBench(
        decode_alerts_per_s=decode_one,
        decode_parallel_alerts_per_s=decode_many,
        chunk_seconds=chunk_seconds,
        chunk_alerts=chunk_alerts,
        stage_seconds=stages,
        latency_s=latency,
        latency_matched=matched,
        latency_produced=n_latency,
        peak_rss_mb=rss.peak_bytes / 2**20,
        peak_rss_without_broker_mb=rss.peak_own_bytes / 2**20,
        decode_peak_rss_mb=decode_peak / 2**20,
        mean_size_kb=mean_kb,
        workers=workers,
        cpu_s=cpu,
        broker_cpu_s=broker_cpu,
        run_s=run_s,
    )


def _latency(settings: Settings, args: argparse.Namespace, client: Any, db: Any, producer: Producer,
             alerts: Iterator[SimAlert], n: int, run_id: str, console: Console) -> tuple[list[float], int]:  # fmt: skip
    """Produce ``n`` alerts at ``args.rate`` while the pipeline runs; the latency of each matched alert."""
    if n <= 0:
        return [], 0
    every = registry.add_filter(db, f"bench_every_alert_{run_id}", EVERY_ALERT)
    kafka.ensure_topics(settings, [every.topic])
    topic = f"bench-{run_id}-latency"
    kafka.ensure_topics(settings, [topic])
    sent: dict[int, int] = {}
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            started = time.monotonic()
            for k in range(n):
                ahead = k / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                alert = next(alerts)
                stamp = int(time.time() * 1000)
                kafka.produce_one(producer, topic, alert.payload, alert.key, timestamp=stamp)
                sent[alert.dia_source_id] = stamp
            producer.flush(60)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    console.log(f"latency: {n} alerts at {args.rate:.0f}/s to {topic}, every alert matched by {every.topic}")
    feeder = threading.Thread(target=feed, name="bench-feed", daemon=True)
    feeder.start()
    report = run(settings.model_copy(update={"consumer_group": f"nightjar-{topic}"}), client, topic, max_alerts=n)
    feeder.join()
    if failure:
        raise failure[0]
    matches = _read_timestamps(settings, every.topic, len(sent))
    _delete_topics(settings, [topic, every.topic])
    latency = [(matches[s] - t) / 1000 for s, t in sent.items() if s in matches]
    console.log(f"latency: {report.consumed} consumed, {len(latency)} of {len(sent)} alerts matched and read back")
    return latency, len(latency)


def print_bench(result: PipelineBench) -> None:
    """Print the benchmark's figures, one ``key=value`` group per line, the closing figures last."""
    print(f"mean_size_kb={result.mean_size_kb:.1f}")
    print(f"decode_processes={result.workers} decode_parallel_alerts_per_s={result.decode_parallel_alerts_per_s:.0f}")
    for k, (n, s) in enumerate(zip(result.chunk_alerts, result.chunk_seconds, strict=True)):
        print(f"chunk{k + 1}_alerts={n} chunk{k + 1}_s={s:.2f} chunk{k + 1}_alerts_per_s={n / s:.0f}")
    if result.stage_seconds:
        for name, seconds in sorted(result.stage_seconds.items(), key=lambda kv: -kv[1]):
            print(f"stage_{name}_s={seconds:.2f}")
    else:
        print("stage_seconds=unavailable (RunReport has no stage_seconds)")
    print(f"latency_alerts_produced={result.latency_produced} latency_alerts_matched={result.latency_matched}")
    for line in result.figures():
        print(line)


def run_cli(settings: Settings, args: argparse.Namespace) -> int:
    """``nightjar bench pipeline``."""
    print_bench(run_bench(settings, args))
    return 0
