"""The background compaction of ``nightjar run``: one run at a time, in a process of its own at a lower priority,
the lake's contents unchanged and its files fewer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake import commit
from nightjar.pipelines.compaction import BackgroundCompaction


def _sources(batch: int, rows: int = 50) -> pa.Table:
    ids = np.arange(batch * rows, (batch + 1) * rows, dtype=np.int64)
    hpx29 = np.random.default_rng(batch).integers(0, 12 << 58, rows, dtype=np.int64)
    return pa.table(
        {
            "diaSourceId": ids,
            "hpx29": hpx29,
            "night": (60900 + ids % 2).astype(np.int32),
            "psfFlux": np.linspace(0.0, 1.0, rows),
            "hpx_part": hpx29 >> 58,  # order 0: twelve pixels
        }
    )


def test_background_compaction_runs_niced_in_a_process_of_its_own(home: Path) -> None:
    for b in range(6):  # six small files in most of the pixels
        commit.append(home, paths.SOURCES, _sources(b), {"test:0": b})
    table = paths.table_dir(home, paths.SOURCES)
    before = DeltaTable(table).to_pyarrow_table().sort_by("diaSourceId")
    files_before = len(DeltaTable(table).file_uris())

    compaction = BackgroundCompaction(home, niceness=7)
    compaction.start()
    compaction.start()  # one at a time: the first is still starting its process
    assert compaction.runs == 1 and compaction.future is not None
    reports, niceness = compaction.future.result(timeout=120)
    assert niceness == os.nice(0) + 7  # this process's priority, lowered by 7
    compaction.wait()
    assert compaction.future is None

    (report,) = [r for r in reports if r.table == paths.SOURCES]
    after = DeltaTable(table)
    assert report.files_before == files_before and report.files_after == len(after.file_uris()) < files_before
    assert after.to_pyarrow_table().sort_by("diaSourceId").equals(before)


def test_a_failed_compaction_is_reported_and_the_next_one_runs(home: Path, caplog) -> None:
    (home / "lake").mkdir()
    (home / "lake" / paths.SOURCES).write_text("not a table")  # a table directory that is a file
    compaction = BackgroundCompaction(home)
    compaction.start()
    compaction.wait()
    assert "background compaction failed" in caplog.text
    compaction.start()
    assert compaction.runs == 2
    compaction.wait()
