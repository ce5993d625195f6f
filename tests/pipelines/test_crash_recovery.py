"""``kill -9`` of ``nightjar run`` at random points, then a restart: exactly the expected rows, every time."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from nightjar.settings import Settings
from nightjar.sql.engine import query_lake
from nightjar.streams import simulate

from .lake_checks import assert_each_alert_once
from .run_process import start_run

N = 1200
KILLS = 5


def start(home: Path, bootstrap: str, topic: str, log: Path) -> subprocess.Popen[bytes]:
    env = {"NIGHTJAR_HOME": str(home), "NIGHTJAR_KAFKA": bootstrap, "NIGHTJAR_BATCH_SIZE": "150"}
    return start_run(env, topic, 15, log)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_nine_and_restart_loses_and_duplicates_nothing(home: Path, kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(home=home, kafka=kafka_bootstrap)
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    alerts = list(simulate.generate_alerts(N, seed=3))
    assert simulate.produce(settings, topic, N, seed=3) == N
    log = tmp_path / "runs.log"
    rng = random.Random(11)
    for _ in range(KILLS):
        proc = start(home, kafka_bootstrap, topic, log)
        time.sleep(rng.uniform(4.0, 12.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    final = start(home, kafka_bootstrap, topic, log)
    assert final.wait(timeout=300) == 0, log.read_text()[-3000:]

    assert_each_alert_once(settings, alerts)
    objects = query_lake(settings, "SELECT count(*) AS n FROM objects")["n"][0].as_py()
    assert objects == len({a.dia_object_id for a in alerts if a.dia_object_id is not None})
