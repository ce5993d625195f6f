"""Simulate -> Kafka -> Streamz/Dask -> Delta -> DuckDB filters -> Kafka topics, all real."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import pytest
from deltalake import DeltaTable
from distributed import Client

from nightjar import paths
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.streams import kafka, simulate
from nightjar.streams.publish import Publisher
from nightjar.streams.replay import replay

from ..fastavro_reference import fastavro_record

N = 1200
BRIGHT_R = (
    "SELECT diaSourceId, diaObjectId, psfFlux FROM sources "
    "WHERE band = 'r' AND psfFlux > 5000 AND NOT fromPacketHistory"
)
MAGS = (
    "SELECT diaSourceId, 31.4 - 2.5 * log10(psfFlux) AS mag FROM sources "
    "WHERE reliability > 0.9 AND psfFlux > 0 AND NOT fromPacketHistory"
)


def decoded_alerts(seed: int) -> list[dict]:
    """The simulated alerts read back with fastavro: an independent view of what was sent."""
    return [fastavro_record(alert.payload) for alert in simulate.generate_alerts(N, seed=seed)]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_alerts_flow_to_the_lake_and_filter_topics(
    kafka_settings: Settings, dask_client: Client, data_dir: Path
) -> None:
    settings = kafka_settings
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    assert simulate.produce(settings, topic, N, seed=11) == N
    # Bad input of every kind, including the real ZTF files that are corrupt upstream.
    corrupt = [b"\x00\x00\x00\x04\x4d\xff\xff", b"not an alert", b""]
    corrupt += [f.read_bytes() for f in sorted((data_dir / "alerts/ztf/corrupt").glob("*.avro"))]
    with Publisher(kafka.producer_config(settings)) as publisher:
        for payload in corrupt:
            publisher.raw(topic, payload)
        publisher.flush()

    db = registry.engine(settings.metadata_url)
    bright = registry.add_filter(db, "bright_r", BRIGHT_R)
    mags = registry.add_filter(db, "mags", MAGS)

    report = run(settings, dask_client, topic, max_alerts=N + len(corrupt), idle_exit_s=30)
    assert report.consumed == N + len(corrupt)
    assert report.accepted == N
    assert report.dead_lettered == len(corrupt)

    alerts = decoded_alerts(seed=11)
    truth = [a["diaSource"] for a in alerts]
    lake_ids = query_lake(settings, "SELECT diaSourceId FROM sources WHERE NOT fromPacketHistory")
    assert sorted(lake_ids["diaSourceId"].to_pylist()) == sorted(s["diaSourceId"] for s in truth)
    # Packet history repeats from alert to alert; the lake keeps each detection once.
    every = {s["diaSourceId"] for a in alerts for s in [a["diaSource"], *(a["prvDiaSources"] or [])]}
    counts = query_lake(settings, "SELECT count(*) AS n, count(DISTINCT diaSourceId) AS d FROM sources")
    assert counts["n"][0].as_py() == counts["d"][0].as_py() == len(every)
    forced = {f["diaForcedSourceId"] for a in alerts for f in a["prvDiaForcedSources"] or []}
    counts = query_lake(settings, "SELECT count(*) AS n, count(DISTINCT forcedKey) AS d FROM forced_sources")
    assert counts["n"][0].as_py() == counts["d"][0].as_py() == len(forced)
    cutouts = query_lake(settings, "SELECT count(*) AS n FROM cutouts")["n"][0].as_py()
    assert cutouts == N
    n_objects = query_lake(settings, "SELECT count(*) AS n FROM objects")["n"][0].as_py()
    assert n_objects == len({s["diaObjectId"] for s in truth if s["diaObjectId"] is not None})

    expected_bright = {s["diaSourceId"] for s in truth if s["band"] == "r" and s["psfFlux"] > 5000}
    got = kafka.read_messages(settings, bright.topic, len(expected_bright) + 1, timeout_s=30)
    records = [json.loads(m.value) for m in got]
    assert sorted(int(r["diaSourceId"]) for r in records) == sorted(expected_bright)
    assert all(isinstance(r["diaSourceId"], str) and "UTC" in r for r in records)
    assert {m.headers["nightjar.filter.name"] for m in got} == {b"bright_r"}
    assert report.matches["bright_r"] == len(expected_bright)

    expected_mags = {
        s["diaSourceId"]: 31.4 - 2.5 * math.log10(s["psfFlux"])
        for s in truth
        if s["reliability"] > 0.9 and s["psfFlux"] > 0
    }
    got = kafka.read_messages(settings, mags.topic, len(expected_mags) + 1, timeout_s=30)
    mags_by_id = {int(r["diaSourceId"]): r["mag"] for r in (json.loads(m.value) for m in got)}
    assert mags_by_id.keys() == expected_mags.keys()
    # psfFlux is float32 in the schema: compare at its precision.
    assert all(math.isclose(mags_by_id[k], v, abs_tol=1e-5) for k, v in expected_mags.items())

    dead = kafka.read_messages(settings, paths.dead_letter_topic(topic), len(corrupt) + 1, timeout_s=20)
    assert sorted(m.value for m in dead) == sorted(corrupt)
    assert all(m.headers["nightjar.source.topic"] == topic.encode() for m in dead)
    assert all(m.headers["nightjar.reason"] for m in dead)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_reprocessing_the_same_offsets_writes_nothing_twice(kafka_settings: Settings, dask_client: Client) -> None:
    settings = kafka_settings
    topic = f"replay-{uuid.uuid4().hex[:8]}"
    simulate.produce(settings, topic, 400, seed=5)
    first = run(settings, dask_client, topic, max_alerts=400, idle_exit_s=30)
    assert first.accepted == 400
    # The workers fetched the alerts themselves; the driver read at most those beyond a lagging watermark.
    assert first.fetched_by_workers > 0 and first.fetched_by_workers + first.read_by_driver == 400
    versions = {t: DeltaTable(str(paths.table_dir(settings.home, t))).version() for t in paths.ALERT_TABLES}
    counts = {t: DeltaTable(str(paths.table_dir(settings.home, t))).count() for t in paths.ALERT_TABLES}
    # A new consumer group reads the same offsets again, as after a crash before the offset commit.
    again = settings.model_copy(update={"consumer_group": "second-reader"})
    second = run(again, dask_client, topic, max_alerts=400, idle_exit_s=30)
    assert second.consumed == 400
    assert {t: DeltaTable(str(paths.table_dir(settings.home, t))).version() for t in paths.ALERT_TABLES} == versions
    assert {t: DeltaTable(str(paths.table_dir(settings.home, t))).count() for t in paths.ALERT_TABLES} == counts
    assert counts[paths.CUTOUTS] == 400


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_replayed_real_alerts_reach_the_lake(
    kafka_settings: Settings, dask_client: Client, data_dir: Path, tmp_path: Path
) -> None:
    settings = kafka_settings
    topic = f"real-{uuid.uuid4().hex[:8]}"
    not_alerts = tmp_path / "readme.avro"
    not_alerts.write_text("not an alert")
    folders = [data_dir / "alerts/lsst/lsstcam-2025-v9.0", data_dir / "alerts/lsst/wire-format", not_alerts]
    report = replay(settings, folders, topic)
    assert (report.files, report.alerts) == (103, 103)
    assert len(report.errors) == 1 and "readme.avro" in report.errors[0]
    result = run(settings, dask_client, topic, max_alerts=103, idle_exit_s=30)
    assert (result.accepted, result.dead_lettered) == (103, 0)
    distinct = query_lake(settings, "SELECT count(DISTINCT diaSourceId) AS n FROM cutouts")["n"][0].as_py()
    assert distinct == 103
