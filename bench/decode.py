"""``nightjar bench decode``: the columnar decoder against fastavro per record, on the same heavy alerts.

The alerts are simulated LSST alerts of the current schema with a year of history and Rubin-sized cutouts
(~80–130 KB). Both paths produce the same Arrow tables (sources, history, forced photometry, objects, cutouts);
both run in this process on one core.
"""

from __future__ import annotations

import argparse
import io
import time

import fastavro
import pyarrow as pa
from rich.console import Console

from nightjar.settings import Settings
from nightjar.streams import schemas, wire
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.simulate import SimConfig, Simulation

HEAVY = SimConfig(history_days=365, cutout_size=80, hosts=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the decode benchmark's options: alerts decoded, distinct alerts, batch size."""
    parser.add_argument("--alerts", type=int, default=8000, help="alerts decoded by each path")
    parser.add_argument("--unique", type=int, default=500, help="distinct simulated alerts, repeated to --alerts")
    parser.add_argument("--batch", type=int, default=1000, help="alerts per columnar batch")


def fastavro_tables(payloads: list[bytes]) -> dict[str, pa.Table]:
    """The reference path: fastavro materialises each alert as dicts, then Arrow is built from them."""
    sources: list[dict] = []
    prv: list[dict] = []
    forced: list[dict] = []
    objects: list[dict] = []
    cutouts: list[dict] = []
    for payload in payloads:
        sid, body = wire.unframe(payload)
        alert = fastavro.schemaless_reader(io.BytesIO(body), schemas.lsst_schema(sid), None)
        assert isinstance(alert, dict)
        sources.append(alert["diaSource"])
        prv.extend(alert["prvDiaSources"] or [])
        forced.extend(alert["prvDiaForcedSources"] or [])
        if alert["diaObject"] is not None:
            objects.append(alert["diaObject"])
        cutouts.append({k: alert[k] for k in ("cutoutDifference", "cutoutScience", "cutoutTemplate")})
    return {
        "sources": pa.Table.from_pylist(sources),
        "prv_sources": pa.Table.from_pylist(prv),
        "forced_sources": pa.Table.from_pylist(forced),
        "objects": pa.Table.from_pylist(objects),
        "cutouts": pa.Table.from_pylist(cutouts),
    }


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Decode the same simulated heavy alerts with the columnar decoder and with fastavro per record, and print both
    rates and their ratio (the last line)."""
    console = Console(stderr=True)
    console.log(f"simulating {args.unique} heavy alerts (a year of history, {HEAVY.cutout_size}px cutouts)")
    unique = [a.payload for a in Simulation(args.unique, seed=7, config=HEAVY).alerts()]
    payloads = (unique * (args.alerts // len(unique) + 1))[: args.alerts]
    mean_kb = sum(len(p) for p in payloads) / len(payloads) / 1024
    print(f"alerts={len(payloads)} mean_size_kb={mean_kb:.1f}")

    decode_batch(RawBatch.from_payloads(unique[:10]))  # compile or load the decoder before timing
    started = time.perf_counter()
    rows = 0
    for i in range(0, len(payloads), args.batch):
        rows += decode_batch(RawBatch.from_payloads(payloads[i : i + args.batch])).sources.num_rows
    columnar = len(payloads) / (time.perf_counter() - started)
    assert rows == len(payloads)

    started = time.perf_counter()
    reference = fastavro_tables(payloads)
    per_record = len(payloads) / (time.perf_counter() - started)
    assert reference["sources"].num_rows == len(payloads)

    print(f"fastavro_alerts_per_s={per_record:.0f}")
    print(f"columnar_alerts_per_s={columnar:.0f}")
    print(f"decode_ratio={columnar / per_record:.1f}")
    return 0
