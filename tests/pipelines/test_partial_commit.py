"""A batch that crashed between its ``sources`` append and its ``object_history`` append is repaired by the next
commit of the same Kafka partitions: nothing is written twice, nothing is lost, the index catches up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake import commit, history, read
from nightjar.pipelines import lake_write, stages
from nightjar.pipelines.graph import transactions
from nightjar.settings import Settings
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.simulate import SimConfig, generate_alerts


def _raw(payloads: list[bytes], first_offset: int) -> RawBatch:
    return RawBatch(
        payloads,
        ["alerts"] * len(payloads),
        [0] * len(payloads),
        list(range(first_offset, first_offset + len(payloads))),
    )


def _batch(payloads: list[bytes], first_offset: int) -> tuple[stages.DecodedBatch, dict[str, int]]:
    raw = _raw(payloads, first_offset)
    return stages.locate(decode_batch(raw), 5), transactions(raw)


def _keys(settings: Settings, table: str, key: str) -> list[int]:
    return DeltaTable(str(paths.table_dir(settings.home, table))).to_pyarrow_table(columns=[key])[key].to_pylist()


def test_a_batch_cut_short_after_its_sources_append_is_indexed_by_the_next(settings: Settings) -> None:
    payloads = [a.payload for a in generate_alerts(240, seed=5, config=SimConfig(history_days=60, nights=3))]
    first, txns = _batch(payloads[:80], 0)
    lake_write.commit_to_lake(first, settings.home, txns)
    # The second batch crashes right after appending its detections (the rest of its commit never happens).
    second, txns = _batch(payloads[80:160], 80)
    known = history.stored(settings.home, second.objects["diaObjectId"].to_numpy())
    assert commit.append(
        settings.home, paths.SOURCES, history.unseen(lake_write.lake_sources(second), "diaSourceId", known, False), txns
    )
    # After the restart the consumer cuts the batches differently: the lost batch's alerts and the next ones.
    for start, end in ((80, 120), (120, 240)):
        again, txns = _batch(payloads[start:end], start)
        lake_write.commit_to_lake(again, settings.home, txns)

    sources = _keys(settings, paths.SOURCES, "diaSourceId")
    assert len(sources) == len(set(sources))  # nothing twice
    everything = lake_write.lake_sources(_batch(payloads, 0)[0])
    assert set(sources) == set(everything["diaSourceId"].to_pylist())  # nothing lost
    indexed = DeltaTable(str(paths.table_dir(settings.home, paths.OBJECT_HISTORY))).to_pyarrow_table()
    detections = indexed.filter(pc.invert(indexed["forced"]))["key"].to_pylist()
    assert sorted(detections) == sorted(
        s for s, o in zip(sources, _keys(settings, paths.SOURCES, "diaObjectId"), strict=True) if o is not None
    )


def _counts(home: Path) -> dict[str, tuple[int, int]]:
    """Rows and distinct keys of each alert table, as a reader of the lake sees them (the last logged batch)."""
    out = {}
    for table, dataset in read.datasets(home).items():
        if table in paths.ALERT_TABLES:
            keys = dataset.to_table(columns=[paths.KEY_COLUMNS[table]])[paths.KEY_COLUMNS[table]]
            out[table] = (len(keys), len(pc.unique(keys)))
    return out


@pytest.mark.parametrize(
    "crash_after", [paths.SOURCES, paths.FORCED_SOURCES, paths.CUTOUTS, paths.OBJECT_HISTORY, paths.OBJECTS]
)
def test_a_batch_commits_all_or_nothing_across_a_crash_between_its_tables(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, crash_after: str
) -> None:
    """A crash right after one table took the batch: readers still see the lake without the batch, and the batch
    read again after the restart completes every table, writing nothing twice (issue 12 item 9)."""
    home = settings.home
    payloads = [a.payload for a in generate_alerts(160, seed=9, config=SimConfig(history_days=60, nights=3))]
    first, txns = _batch(payloads[:80], 0)
    lake_write.commit_to_lake(first, home, txns)
    before = _counts(home)
    everything, _ = _batch(payloads, 0)
    complete = lake_write.commit_to_lake(everything, Path(str(home) + "-reference"), transactions(_raw(payloads, 0)))

    real_append, real_upsert, real_states = commit.append, commit.upsert, commit.append_states

    def crash(table: str) -> None:
        if table == crash_after:
            raise RuntimeError(f"power cut after {table}")

    def append(home: Path, table: str, *args: Any, **kwargs: Any) -> bool:
        done = real_append(home, table, *args, **kwargs)
        crash(table)
        return done

    def upsert(home: Path, table: str, *args: Any, **kwargs: Any) -> bool:
        done = real_upsert(home, table, *args, **kwargs)
        crash(table)
        return done

    def append_states(home: Path, table: str, *args: Any, **kwargs: Any) -> int | None:
        done = real_states(home, table, *args, **kwargs)
        crash(table)
        return done

    monkeypatch.setattr(commit, "append", append)
    monkeypatch.setattr(commit, "upsert", upsert)
    monkeypatch.setattr(commit, "append_states", append_states)
    second, txns = _batch(payloads[80:], 80)
    with pytest.raises(RuntimeError, match="power cut"):
        lake_write.commit_to_lake(second, home, txns)
    assert _counts(home) == before  # nothing of the cut batch is visible

    monkeypatch.undo()
    again, txns = _batch(payloads[80:], 80)
    lake_write.commit_to_lake(again, home, txns)
    after = _counts(home)
    assert all(rows == distinct for rows, distinct in after.values())  # nothing twice
    reference = _counts(Path(str(home) + "-reference"))
    assert after == reference  # nothing lost: the same lake as one uninterrupted commit
    assert complete.objects.num_rows == after[paths.OBJECTS][0]
