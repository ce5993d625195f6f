"""Kafka going away mid-run pauses ``nightjar run`` instead of ending it: the run retries with back-off and goes
on when the broker answers again, and nothing is written, delivered or committed twice (issue 12 item 13).

Outages on a broker of the test's own with disk storage (the dev default): its process frozen in the middle of a
stream (it accepts connections and answers nothing); killed in the middle of a stream and started again on the
same port (connections refused, then a new process that finds its topics, messages and offsets); and killed
while the run waits for more alerts, which come after the restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from deltalake import DeltaTable
from distributed import Client

from nightjar import paths, records
from nightjar.pipelines.run import RunReport, run
from nightjar.settings import Settings
from nightjar.sql import registry
from nightjar.sql.engine import query_lake
from nightjar.streams import broker, kafka, simulate

from ..waiting import eventually
from .lake_checks import assert_each_alert_once

N = 600
BATCH = 100
IDLE_EXIT_S = 15.0
# The broker stays away longer than the consumer group's session (6 s: the group drops the run's consumer) and
# longer than the run's idle exit (an outage is not an idle stream).
OUTAGE_S = IDLE_EXIT_S + 10.0
BRIGHT = "SELECT diaObjectId, diaSourceId, psfFlux FROM sources WHERE psfFlux > 5000"


@dataclass
class OwnBroker:
    """A broker of the test's own (it is frozen, killed and restarted, which the session's must not be)."""

    home: Path
    port: int
    state: broker.BrokerState

    def freeze(self) -> None:
        os.kill(self.state.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.state.pid, signal.SIGCONT)

    def kill(self) -> None:
        os.kill(self.state.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.state = broker.start(self.home, self.port, timeout_s=30, storage="disk")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    home = tmp_path / "broker-home"
    port = broker.free_port()
    own = OwnBroker(home, port, broker.start(home, port, timeout_s=30, storage="disk"))
    try:
        yield own
    finally:
        own.thaw()
        broker.stop(home)


class _Seen(logging.Handler):
    """Sets ``event`` when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def _logged_ends(log_table: Path) -> list[int]:
    """The last offset of each batch in the lake's log, in order."""
    offsets = DeltaTable(str(log_table)).to_pyarrow_table(columns=["offsets"])["offsets"].to_pylist()
    return sorted(max(json.loads(o).values()) for o in offsets)


def _committed(settings: Settings, topic: str) -> int:
    consumer = Consumer(kafka.consumer_config(settings, settings.consumer_group))
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=30)
    finally:
        consumer.close()
    return int(tp.offset)


def _stack_of(thread: threading.Thread) -> str:
    frame = sys._current_frames().get(thread.ident or -1)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(thread ended)"


def _ride_out(
    home: Path,
    own: OwnBroker,
    client: Client,
    away: Callable[[], None],
    back: Callable[[], None],
    caught_up: bool = False,
) -> None:
    """Run over a stream of N alerts; once the first batch is in the lake, ``away`` makes the broker unreachable
    for OUTAGE_S, then ``back`` brings it back. The run must wait, go on, and store and deliver everything once.

    ``caught_up``: the first half of the stream is processed and committed before the broker goes away, the
    second half is produced once it is back; no message is read twice (the broker kept the group's offset).
    """
    settings = Settings(
        home=home,
        kafka=own.state.bootstrap,
        batch_size=BATCH,
        batch_timeout_s=1.0,
        annotations_topic=f"annotations-{uuid.uuid4().hex[:8]}",
        kafka_outage_s=180,
    )
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [topic], partitions=1)
    first = N // 2 if caught_up else N
    alerts = list(simulate.generate_alerts(first, seed=31))
    assert simulate.produce(settings, topic, first, seed=31) == first
    if caught_up:
        alerts += simulate.generate_alerts(N - first, seed=32)
    db = registry.engine(settings.metadata_url)
    bright = registry.add_filter(db, "bright", BRIGHT)
    db.dispose()

    seen = _Seen("kafka unavailable")
    logging.getLogger("nightjar").addHandler(seen)
    result: dict[str, RunReport | BaseException] = {}

    def go() -> None:
        try:
            result["report"] = run(settings, client, topic, idle_exit_s=IDLE_EXIT_S)
        except BaseException as exc:
            result["error"] = exc

    runner = threading.Thread(target=go, daemon=True)
    runner.start()
    log_table = paths.table_dir(home, paths.LAKE_LOG)
    returned = False
    try:
        assert eventually(lambda: DeltaTable.is_deltatable(str(log_table)), 120), "no batch reached the lake"
        if caught_up:
            assert eventually(lambda: _committed(settings, topic) == first, 120), "the first half was not committed"
        away()
        gone = time.monotonic()
        noticed = eventually(lambda: seen.event.is_set() or not runner.is_alive(), 60)
        # Where the run was when it did not notice (this failed once, rarely, under load: find out where it waits)
        assert noticed, f"no outage noticed in 60 s; the run was at:\n{_stack_of(runner)}"
        assert "error" not in result, f"the run ended during the outage: {result.get('error')!r}"
        assert seen.event.is_set(), "the run never noticed the outage"
        # The length of the outage is the scenario, not a synchronisation: the run must still be there at its end.
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - gone)))
        assert runner.is_alive(), f"the run ended during the outage: {result!r}"
        before = _logged_ends(log_table)
        back()
        returned = True
        if caught_up:
            assert simulate.produce(settings, topic, N - first, seed=32) == N - first
    finally:
        if not returned:  # a failed check: bring the broker back anyway, so that the run ends
            with contextlib.suppress(Exception):
                back()
        runner.join(300)
        logging.getLogger("nightjar").removeHandler(seen)
    assert not runner.is_alive(), "the run did not finish after the broker came back"
    assert "error" not in result, f"the run failed after the outage: {result.get('error')!r}"
    report = result["report"]
    assert isinstance(report, RunReport)
    assert report.balanced and report.dead_lettered == 0 and not report.filter_errors
    assert before[-1] < N - 1, "the whole stream was in the lake before the outage: nothing was resumed"
    if caught_up:
        assert report.consumed == N, "messages were read again: the restarted broker lost the group's offset"

    assert_each_alert_once(settings, alerts)
    # Each batch logged once, in offset order, the last at the last offset.
    ends = _logged_ends(log_table)
    assert len(ends) == len(set(ends)) and ends[-1] == N - 1
    # The group's offset committed to the end of the stream.
    assert _committed(settings, topic) == N
    # Each match delivered once: the filter's topic holds exactly what the filter finds in the lake.
    static = Counter(
        json.dumps(r, sort_keys=True, default=str) for r in records.to_records(query_lake(settings, BRIGHT))
    )
    assert static, "the test needs matches"
    delivered = kafka.read_messages(settings, bright.topic, sum(static.values()) + 1, timeout_s=60)
    streamed = Counter(
        json.dumps({k: v for k, v in json.loads(m.value).items() if k != "UTC"}, sort_keys=True) for m in delivered
    )
    assert streamed == static
    assert report.matches["bright"] == sum(static.values())


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_run_rides_out_a_frozen_broker(home: Path, own_broker: OwnBroker, dask_client: Client) -> None:
    _ride_out(home, own_broker, dask_client, own_broker.freeze, own_broker.thaw)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_run_rides_out_a_broker_restart(home: Path, own_broker: OwnBroker, dask_client: Client) -> None:
    _ride_out(home, own_broker, dask_client, own_broker.kill, own_broker.restart)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_waiting_run_rides_out_a_broker_restart(home: Path, own_broker: OwnBroker, dask_client: Client) -> None:
    _ride_out(home, own_broker, dask_client, own_broker.kill, own_broker.restart, caught_up=True)
