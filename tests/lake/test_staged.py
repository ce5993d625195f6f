"""Cutout files written before the lake lock and committed inside it (``lake.staged``) make the same table as a
plain append, and never leave files the table does not hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake import commit, staged
from nightjar.lake.read import arrow_dataset

TOPIC = "alerts"


def cutouts(ids: range, nights: list[int]) -> pa.Table:
    """Cutout rows as a batch has them: keys, night, provenance, three images of distinct bytes."""
    n = len(ids)
    rng = np.random.default_rng(ids.start)
    images = {
        kind: pa.array([rng.bytes(3000 + i) for i in range(n)], pa.binary())
        for kind in ("cutoutDifference", "cutoutScience", "cutoutTemplate")
    }
    return pa.table(
        {
            "diaSourceId": pa.array(list(ids)[::-1], pa.int64()),  # unsorted: the layout sorts them
            "diaObjectId": pa.array([i // 3 for i in ids], pa.int64()),
            paths.NIGHT: pa.array([nights[i % len(nights)] for i in range(n)], pa.int32()),
            **images,
            paths.KAFKA_TOPIC: pa.array([TOPIC] * n),
            paths.KAFKA_PARTITION: pa.array([0] * n, pa.int32()),
            paths.KAFKA_OFFSET: pa.array(list(ids), pa.int64()),
        }
    )


def table_files(home: Path) -> set[Path]:
    return {p for p in paths.table_dir(home, paths.CUTOUTS).rglob("*.parquet")}


def stored(home: Path) -> pa.Table:
    dt = DeltaTable(str(paths.table_dir(home, paths.CUTOUTS)))
    return arrow_dataset(dt).to_table().sort_by("diaSourceId")


def test_staged_cutouts_read_back_as_a_plain_append_writes_them(home: Path, tmp_path: Path) -> None:
    first, second = cutouts(range(0, 100), [60950]), cutouts(range(100, 400), [60950, 60951, 60952])
    plain = tmp_path / "plain"
    for target in (home, plain):
        commit.append(target, paths.CUTOUTS, first, {commit.app_id(TOPIC, 0): 99})
    files = staged.stage(home, paths.CUTOUTS, commit.laid_out(paths.CUTOUTS, second))
    assert files is not None and files.rows == 300 and len(files.files) == 3  # one file per night
    assert commit.append(home, paths.CUTOUTS, second, {commit.app_id(TOPIC, 0): 399}, files)
    commit.append(plain, paths.CUTOUTS, second, {commit.app_id(TOPIC, 0): 399})

    mine, theirs = stored(home), stored(plain)
    assert mine.num_rows == 400
    assert mine.select(sorted(mine.column_names)).equals(theirs.select(sorted(theirs.column_names)))
    dt = DeltaTable(str(paths.table_dir(home, paths.CUTOUTS)))
    assert dt.transaction_version(commit.app_id(TOPIC, 0)) == 399
    # The staged files have their partition values and file statistics; inside each file rows are in diaSourceId
    # order, in row groups of 64.
    night = arrow_dataset(dt).to_table(filter=pc.field(paths.NIGHT) == 60951)
    assert night.num_rows == 100 and set(night["diaSourceId"].to_pylist()) == set(range(101, 400, 3))
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    staged_paths = {str(Path(f).relative_to(paths.table_dir(home, paths.CUTOUTS))) for f in files.files}
    assert staged_paths <= {a["path"] for a in actions}
    for add in actions:
        parquet = pq.ParquetFile(paths.table_dir(home, paths.CUTOUTS) / add["path"])
        ids = parquet.read(columns=["diaSourceId"])["diaSourceId"].to_pylist()
        assert ids == sorted(ids) and add["num_records"] == len(ids)
        assert (add["min.diaSourceId"], add["max.diaSourceId"]) == (ids[0], ids[-1])
        assert {parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups - 1)} <= {64}
    assert table_files(home) == {Path(uri) for uri in dt.file_uris()}


def test_staged_files_that_no_longer_match_the_rows_are_removed(home: Path) -> None:
    commit.append(home, paths.CUTOUTS, cutouts(range(0, 50), [60950]), {commit.app_id(TOPIC, 0): 49})
    batch = cutouts(range(50, 150), [60950, 60951])

    # Some alerts set aside after staging (re-sends): the rows left are written, the staged files removed.
    files = staged.stage(home, paths.CUTOUTS, commit.laid_out(paths.CUTOUTS, batch))
    assert files is not None
    kept = batch.filter(pc.less(batch["diaSourceId"], 120))
    assert commit.append(home, paths.CUTOUTS, kept, {commit.app_id(TOPIC, 0): 149}, files)
    assert not any(Path(f).exists() for f in files.files)
    assert stored(home)["diaSourceId"].to_pylist() == list(range(0, 120))

    # The batch already committed (read again after a crash): nothing added, the staged files removed.
    again = staged.stage(home, paths.CUTOUTS, commit.laid_out(paths.CUTOUTS, batch))
    assert again is not None
    assert not commit.append(home, paths.CUTOUTS, batch, {commit.app_id(TOPIC, 0): 149}, again)
    assert not any(Path(f).exists() for f in again.files)
    assert stored(home).num_rows == 120
    assert table_files(home) == {Path(uri) for uri in DeltaTable(str(paths.table_dir(home, paths.CUTOUTS))).file_uris()}


def test_nothing_is_staged_without_a_table_or_for_rows_of_another_shape(home: Path) -> None:
    batch = cutouts(range(0, 10), [60950])
    assert staged.stage(home, paths.CUTOUTS, commit.laid_out(paths.CUTOUTS, batch)) is None  # no table yet
    commit.append(home, paths.CUTOUTS, batch, {commit.app_id(TOPIC, 0): 9})
    wider = cutouts(range(10, 20), [60950]).append_column("extra", pa.array([1] * 10))
    assert staged.stage(home, paths.CUTOUTS, commit.laid_out(paths.CUTOUTS, wider)) is None
    assert len(table_files(home)) == 1


def test_a_laid_out_batch_is_staged_from_slices_of_its_rows_not_copies() -> None:
    rows = commit.laid_out(paths.CUTOUTS, cutouts(range(0, 30), [60952, 60950, 60951]))
    assert rows[paths.NIGHT].to_pylist() == sorted(rows[paths.NIGHT].to_pylist())  # grouped by night
    keys = list(zip(rows[paths.NIGHT].to_pylist(), rows["diaSourceId"].to_pylist(), strict=True))
    assert keys == sorted(keys)  # and by diaSourceId within each night
    image = rows["cutoutScience"].chunk(0)
    # laid out again (already in order): the same images, not a copy
    again = commit.laid_out(paths.CUTOUTS, rows)
    assert again["cutoutScience"].chunk(0).buffers()[2].address == image.buffers()[2].address
    parts = staged._partitions(rows, [paths.NIGHT])
    assert [(values, part.num_rows) for values, part in parts] == [
        ({paths.NIGHT: "60950"}, 10),
        ({paths.NIGHT: "60951"}, 10),
        ({paths.NIGHT: "60952"}, 10),
    ]
    assert pa.concat_tables([part for _, part in parts]).equals(rows)
    start = image.buffers()[2].address
    assert all(part["cutoutScience"].chunk(0).buffers()[2].address == start for _, part in parts)
    shuffled = rows.take(pa.array([0, 15, 1]))  # two rows of one night apart
    try:
        staged._partitions(shuffled, [paths.NIGHT])
    except ValueError as exc:
        assert "not grouped by partition" in str(exc)
    else:
        raise AssertionError("rows of one night apart were staged")
