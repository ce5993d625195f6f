"""Two ``nightjar run`` processes in one consumer group on one lake on S3 (no file lock: Delta's conditional-put
commits and the batches' application transactions), and ``kill -9`` of one: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from nightjar import paths
from nightjar.lake import tables
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.storage import LakeRoot
from nightjar.streams import simulate

from .lake_checks import assert_each_alert_once
from .run_process import start_run

N = 800


def start_driver(settings: Settings, lake: LakeRoot, topic: str, home: Path, log: Path) -> subprocess.Popen[bytes]:
    """``nightjar run`` as an operator starts it on its own machine: its own home, the shared lake and group."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "NIGHTJAR_HOME": str(home),
        "NIGHTJAR_KAFKA": str(settings.kafka),
        "NIGHTJAR_DATABASE_URL": settings.metadata_url,
        "NIGHTJAR_LAKE_URI": lake.uri,
        "NIGHTJAR_STORAGE_OPTIONS": json.dumps(dict(lake.options)),
        "NIGHTJAR_CONSUMER_GROUP": settings.consumer_group,
        "NIGHTJAR_BATCH_SIZE": "100",
    }
    return start_run(env, topic, 25, log)


def wait_for_batches(lake: LakeRoot, count: int, driver: subprocess.Popen[bytes], timeout_s: float = 240) -> None:
    """Until the lake's log holds ``count`` committed batches (readiness polling, not a timing assumption)."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = tables.open_table(lake, paths.LAKE_LOG)
        if log is not None and log.version() + 1 >= count:
            return
        if driver.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the lake never reached {count} batches")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_nine_of_one_of_two_drivers_on_s3_loses_and_duplicates_nothing(
    kafka_settings: Settings, s3_lake: LakeRoot, tmp_path: Path
) -> None:
    settings = kafka_settings.model_copy(update={"consumer_group": f"drivers-{uuid.uuid4().hex[:8]}"})
    topic = f"two-drivers-{uuid.uuid4().hex[:8]}"
    alerts = list(simulate.generate_alerts(N, seed=17))
    assert simulate.produce(settings, topic, N, seed=17) == N
    registry.engine(settings.metadata_url).dispose()  # the shared metadata database, migrated once
    log = tmp_path / "drivers.log"
    doomed = start_driver(settings, s3_lake, topic, tmp_path / "driver-a", log)
    survivor = start_driver(settings, s3_lake, topic, tmp_path / "driver-b", log)
    try:
        wait_for_batches(s3_lake, 2, doomed)
        os.killpg(doomed.pid, signal.SIGKILL)  # mid-stream: batches of its partitions in flight
        doomed.wait()
        # The survivor takes over the dead driver's partitions from their committed offsets, and stops when idle.
        assert survivor.wait(timeout=420) == 0, log.read_text()[-3000:]
    finally:
        for proc in (doomed, survivor):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    lake_settings = settings.model_copy(update={"lake_uri": s3_lake.uri, "storage_options": dict(s3_lake.options)})
    assert_each_alert_once(lake_settings, alerts)
    objects = query_lake(lake_settings, "SELECT count(*) AS n FROM objects")["n"][0].as_py()
    assert objects == len({a.dia_object_id for a in alerts if a.dia_object_id is not None})
    # Neither driver wrote a lake of its own to its home.
    assert (
        not (tmp_path / "driver-a" / paths.LAKE_DIR).exists() and not (tmp_path / "driver-b" / paths.LAKE_DIR).exists()
    )
