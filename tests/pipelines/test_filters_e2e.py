"""Filters end to end on a real broker and Dask cluster: streaming deliveries equal the static result over the lake,
e-mail and webhook deliveries arrive, and killing the pipeline mid-delivery loses and repeats nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from distributed import Client

from nightjar import paths, records
from nightjar.lake import ledger
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.streams import kafka, simulate

FILTERS = {
    "bright red": (
        "SELECT diaObjectId, diaSourceId, psfFlux, mag(psfFlux) AS mag, band FROM sources "
        "WHERE band IN ('r', 'i') AND psfFlux > 8000",
        {},
    ),
    "confident": (
        "SELECT s.diaObjectId, s.diaSourceId, s.midpointMjdTai, o.ra, o.dec FROM sources s "
        "JOIN objects o USING (diaObjectId) WHERE s.snr > 30",
        {},
    ),
    "reliable": ("SELECT diaObjectId, diaSourceId FROM sources WHERE reliability > 0.97 AND psfFlux > 3000", "mail"),
    "first bright": ("SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 15000", {"mode": "new"}),
}


def without_utc(payload: bytes) -> str:
    record = json.loads(payload)
    record.pop("UTC")
    return json.dumps(record, sort_keys=True)


def as_json_rows(table: pa.Table) -> list[str]:
    return [json.dumps(r, sort_keys=True, default=str) for r in records.to_records(table)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_streaming_deliveries_equal_the_static_result(
    kafka_settings: Settings, dask_client: Client, smtp_server, webhook_receiver
) -> None:
    settings = kafka_settings.model_copy(
        update={
            "batch_size": 300,
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "webhook_allow_private": True,
        }
    )
    topic = f"filters-{uuid.uuid4().hex[:8]}"
    n = simulate.produce(settings, topic, 1200, seed=31, config=simulate.SimConfig(history_days=0))
    db = registry.engine(settings.metadata_url)
    made = {}
    for name, (sql, options) in FILTERS.items():
        if options == "mail":
            options = {"emails": ["astro@example.org"], "webhooks": [webhook_receiver.url]}
        made[name] = registry.add_filter(db, name, sql, **options)
    report = run(settings, dask_client, topic, max_alerts=n, idle_exit_s=30)
    assert report.accepted == n and report.batches >= 4 and not report.filter_errors

    for name, flt in made.items():
        sql = flt.sql
        if flt.mode == "new":  # the static equivalent of "each object's first match"
            # (detections without a diaObject, solar-system, are not objects: not delivered in this mode)
            sql += (
                " QUALIFY row_number() OVER (PARTITION BY diaObjectId ORDER BY diaSourceId) = 1"
                " AND diaObjectId IS NOT NULL"
            )
        static = Counter(as_json_rows(query_lake(settings, sql)))
        assert static, f"{name}: the test needs matches"
        messages = kafka.read_messages(settings, flt.topic, sum(static.values()) + 1, timeout_s=30)
        streamed = Counter(without_utc(m.value) for m in messages)
        assert streamed == static, name
        assert report.matches[name] == sum(static.values())

    reliable = made["reliable"]
    rows = records.to_records(query_lake(settings, reliable.sql))
    keys = {f"{reliable.version}:{r['diaObjectId'] or 'source-' + r['diaSourceId']}:{r['diaSourceId']}" for r in rows}
    mails = smtp_server.wait_for(report.batches)
    mailed = [r for m in mails for p in m.message.iter_attachments() for r in json.loads(p.get_content())]
    assert sorted(f"1:{r['diaObjectId']}:{r['diaSourceId']}" for r in mailed) == sorted(
        f"1:{r['diaObjectId']}:{r['diaSourceId']}" for r in rows
    )
    posted = [k for post in webhook_receiver.posts for k in post.json()["keys"]]
    assert sorted(posted) == sorted(keys)
    db.dispose()


def _run_command(settings: Settings, topic: str, alerts: int, group: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "NIGHTJAR_HOME": str(settings.home),
        "NIGHTJAR_KAFKA": str(settings.kafka),
        "NIGHTJAR_BATCH_SIZE": "200",
        "NIGHTJAR_BATCH_TIMEOUT_S": "1",
        "NIGHTJAR_WORKERS": "1",
        "NIGHTJAR_CONSUMER_GROUP": group,
        "NIGHTJAR_WEBHOOK_ALLOW_PRIVATE": "true",
        "NIGHTJAR_WEBHOOK_TIMEOUT_S": "300",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nightjar.cli",
            "run",
            "--topic",
            topic,
            "--max-alerts",
            str(alerts),
            "--idle-exit",
            "15",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes its Dask workers too
    )


def _repeated_detections(settings: Settings) -> str:
    """What a failure needs to be understood: the detections stored twice, with where each copy came from, and
    every commit of ``sources`` (a count differed once in CI, 889 for 800, and did not again in 7 runs)."""
    repeated = query_lake(
        settings,
        "SELECT diaSourceId, diaObjectId, kafkaPartition, kafkaOffset, fromPacketHistory FROM sources "
        "WHERE diaSourceId IN (SELECT diaSourceId FROM sources GROUP BY 1 HAVING count(*) > 1) ORDER BY 1, 3, 4",
    )
    commits = DeltaTable(str(paths.table_dir(settings.home, paths.SOURCES))).history()
    lines = [f"{len(repeated)} rows of repeated detections, the first 40:", *map(str, repeated.to_pylist()[:40])]
    lines += ["commits of sources:", *(json.dumps(c, default=str) for c in reversed(commits))]
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_mid_delivery_then_restarted_nothing_lost_nothing_repeated(
    kafka_settings: Settings, webhook_receiver
) -> None:
    settings = kafka_settings
    topic = f"kill-{uuid.uuid4().hex[:8]}"
    group = f"kill-{uuid.uuid4().hex[:8]}"
    n = simulate.produce(settings, topic, 800, seed=41, config=simulate.SimConfig(history_days=0))
    db = registry.engine(settings.metadata_url)
    flt = registry.add_filter(
        db,
        "bright",
        "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 5000",
        webhooks=[webhook_receiver.url],
    )
    db.dispose()
    # The second batch's webhook POST hangs: its Kafka messages are out and acknowledged, its ledger is pending.
    webhook_receiver.hold_from = 2
    first = _run_command(settings, topic, n, group)
    try:
        assert webhook_receiver.holding.wait(240), "the pipeline never reached the second batch's webhook"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)  # waits, and closes its output pipe
    in_flight = set(webhook_receiver.posts[-1].json()["keys"])
    webhook_receiver.hold_from = None
    webhook_receiver.release.set()

    second = _run_command(settings, topic, n, group)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out[-3000:]

    expected = {  # a detection without a diaObject (solar-system) is keyed by its own diaSourceId
        f"{flt.version}:{r['diaObjectId'] or 'source-' + r['diaSourceId']}:{r['diaSourceId']}"
        for r in records.to_records(query_lake(settings, flt.sql))
    }
    stored = query_lake(settings, "SELECT count(*) AS n FROM sources")["n"].to_pylist()
    assert stored == [n], _repeated_detections(settings)
    messages = kafka.read_messages(settings, flt.topic, len(expected) + 1, timeout_s=30)
    published = Counter(m.headers["nightjar.key"].decode() for m in messages)
    assert set(published) == expected, "a match is missing from the topic"
    assert max(published.values()) == 1, "a match was published twice"

    posted = Counter(k for post in webhook_receiver.posts for k in post.json()["keys"])
    assert set(posted) == expected
    repeated = {k for k, c in posted.items() if c > 1}
    assert repeated <= in_flight, "only the POST under way at the kill may be sent again"
    rows = ledger.read(settings.home, flt.id)
    done = rows.filter(pa.compute.equal(rows["status"], "delivered"))
    for channel in ("kafka", "webhook"):
        keys = set(done.filter(pa.compute.equal(done["channel"], channel))["key"].to_pylist())
        assert keys == expected, channel
    # The restart found the killed batch's messages on the topic instead of sending them again.
    found = done.filter(pa.compute.match_substring(done["detail"], "found on the topic"))
    assert found.num_rows > 0 and set(found["key"].to_pylist()) <= expected
    assert query_lake(settings, "SELECT count(DISTINCT diaSourceId) AS n FROM sources")["n"].to_pylist() == [n]
