"""Every kind of malformed or abusive message of ``malformed_corpus``, interleaved with good alerts on a real topic,
ends in the lake, on the dead-letter topic with its reason, or as a counted duplicate; no table keeps a row of a
refused message, and no batch is half-written (issue 12, "Done when")."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from distributed import Client

from nightjar import paths
from nightjar.lake import commit
from nightjar.pipelines.run import run
from nightjar.settings import Settings
from nightjar.sql.engine import query_lake
from nightjar.streams import kafka, simulate
from nightjar.streams.publish import Publisher

GOOD = 120


def _corpus_module():  # type: ignore[no-untyped-def]
    """The corpus beside this file (tests are no package: pytest imports them with --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location("malformed_corpus", Path(__file__).with_name("malformed_corpus.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


mc = _corpus_module()
DEAD, DUPLICATE, STORED = mc.DEAD, mc.DUPLICATE, mc.STORED


def _column(settings: Settings, sql: str, name: str) -> list:
    return query_lake(settings, sql)[name].to_pylist()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_malformed_kind_is_accounted_for(kafka_settings: Settings, dask_client: Client, data_dir: Path) -> None:
    settings = kafka_settings.model_copy(update={"batch_size": 40, "max_message_bytes": mc.OVERSIZE})
    topic = f"malformed-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(settings, [topic], partitions=1)
    good = [a.payload for a in simulate.generate_alerts(GOOD, seed=21)]
    kinds = mc.corpus(mc.Donors(data_dir, good))
    assert len(kinds) >= 60
    # The good alerts first in pairs, then each kind after a good alert; re-sends come after their originals.
    messages: list[tuple[str, bytes, str]] = [("good", p, STORED) for p in good[:8]]
    rest = iter(good[8:])
    for kind in kinds:
        messages.append(("good", next(rest), STORED))
        messages.append(kind)
    messages += [("good", p, STORED) for p in rest]
    with Publisher(kafka.producer_config(settings)) as publisher:
        for _, payload, _ in messages:
            publisher.raw(topic, payload)
        publisher.flush()

    report = run(settings, dask_client, topic, max_alerts=len(messages), idle_exit_s=30)

    expected = {k: sum(1 for _, _, e in messages if e == k) for k in (STORED, DEAD, DUPLICATE)}
    assert report.consumed == len(messages)
    assert report.balanced
    # Every refused message is on the dead-letter topic as it was sent, with a reason and its source offset.
    dead = kafka.read_messages(settings, paths.dead_letter_topic(topic), expected[DEAD] + 1, timeout_s=30)
    reasons = {int(m.headers["nightjar.source.offset"]): m.headers["nightjar.reason"].decode() for m in dead}
    surprises = {
        messages[o][0]: (messages[o][2], reasons.get(o, "not dead-lettered"))
        for o in range(len(messages))
        if (o in reasons) != (messages[o][2] == DEAD)
    }
    assert surprises == {}
    assert len(dead) == expected[DEAD]
    by_offset = {int(m.headers["nightjar.source.offset"]): m for m in dead}
    dead_offsets = {o for o, (_, _, e) in enumerate(messages) if e == DEAD}
    assert set(by_offset) == dead_offsets
    assert (report.stored, report.dead_lettered, report.duplicates) == (
        expected[STORED],
        expected[DEAD],
        expected[DUPLICATE],
    )

    for offset in dead_offsets:
        name, payload, _ = messages[offset]
        assert by_offset[offset].value == payload, name
        assert by_offset[offset].headers["nightjar.reason"].decode().strip(), name

    # No table keeps a row of a refused message or of a duplicate; every good alert is stored exactly once.
    kept = {o for o, (_, _, e) in enumerate(messages) if e == STORED}
    for table in (paths.SOURCES, paths.FORCED_SOURCES, paths.CUTOUTS, paths.OBJECTS):
        dt = DeltaTable(str(paths.table_dir(settings.home, table)))
        if paths.KAFKA_OFFSET not in dt.schema().to_arrow().names:
            continue
        offsets = set(dt.to_pyarrow_table(columns=[paths.KAFKA_OFFSET])[paths.KAFKA_OFFSET].to_pylist())
        assert offsets <= kept, (table, sorted(offsets - kept))
    triggers = _column(settings, "SELECT diaSourceId FROM sources WHERE NOT fromPacketHistory", "diaSourceId")
    cutouts = _column(settings, "SELECT diaSourceId FROM cutouts", "diaSourceId")
    every = _column(settings, "SELECT diaSourceId FROM sources", "diaSourceId")
    assert len(every) == len(set(every))
    assert len(cutouts) == len(set(cutouts))
    for source_id in (a.dia_source_id for a in simulate.generate_alerts(GOOD, seed=21)):
        assert triggers.count(source_id) == 1 and cutouts.count(source_id) == 1, source_id

    # The lake log reached the last offset: no batch was left half-written.
    log = DeltaTable(str(paths.table_dir(settings.home, paths.LAKE_LOG))).to_pyarrow_table(columns=["offsets"])
    last = max(json.loads(o)[commit.app_id(topic, 0)] for o in log["offsets"].to_pylist())
    assert last == len(messages) - 1
    assert pc.sum(pc.is_null(query_lake(settings, "SELECT * FROM sources")["diaSourceId"])).as_py() == 0
