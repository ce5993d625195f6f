"""What the lake holds at a glance (the portal's home page), checked against the tables read in full."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake import read
from nightjar.lake.summary import RATE_COMMITS, holdings


def test_holdings_match_the_tables(lake_home: Path) -> None:
    tables = read.datasets(lake_home)
    held = holdings(lake_home, tables, recent=5)
    sources = tables[paths.SOURCES].to_table()
    objects = tables[paths.OBJECTS].to_table()
    assert held.detections == sources.num_rows and held.objects == objects.num_rows
    history = pc.fill_null(sources[paths.FROM_HISTORY], False)
    assert held.alerts == sources.num_rows - pc.sum(history).as_py() > 0
    assert held.last_batch is not None
    # The ingest rate: rows appended after the oldest of the last appends, over the time they took.
    writes = [
        h for h in DeltaTable(str(paths.table_dir(lake_home, paths.SOURCES))).history() if h["operation"] == "WRITE"
    ]
    writes = writes[:RATE_COMMITS]
    assert len(writes) >= 3
    span_s = (writes[0]["timestamp"] - writes[-1]["timestamp"]) / 1000
    assert held.rate == pytest.approx(sum(w["operationMetrics"]["num_added_rows"] for w in writes[:-1]) / span_s)
    newest = sorted(objects["lastAlertMjdTai"].to_pylist(), reverse=True)[:5]
    assert [r["lastAlertMjdTai"] for r in held.recent] == newest
    assert all(isinstance(r["diaObjectId"], str) for r in held.recent)  # 64-bit ids as text, as in JSON
    expected = (
        Counter(tables[paths.CONTEXT].to_table()["classification"].to_pylist()) if paths.CONTEXT in tables else {}
    )
    assert held.classes == dict(expected)


def test_an_empty_home_holds_nothing(tmp_path: Path) -> None:
    held = holdings(tmp_path, {})
    assert (held.detections, held.alerts, held.objects, held.last_batch, held.recent) == (0, 0, 0, None, [])
    assert held.rate is None
