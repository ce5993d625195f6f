"""A batch that crashed between its ``sources`` append and its ``object_history`` append is repaired by the next
commit of the same Kafka partitions: nothing is written twice, nothing is lost, the index catches up."""

from __future__ import annotations

import pyarrow.compute as pc
from deltalake import DeltaTable

from nightjar import paths
from nightjar.lake import commit, history
from nightjar.pipelines import stages
from nightjar.pipelines.graph import transactions
from nightjar.settings import Settings
from nightjar.streams.decode import RawBatch, decode_batch
from nightjar.streams.simulate import SimConfig, generate_alerts


def _batch(payloads: list[bytes], first_offset: int) -> tuple[stages.DecodedBatch, dict[str, int]]:
    raw = RawBatch(
        payloads,
        ["alerts"] * len(payloads),
        [0] * len(payloads),
        list(range(first_offset, first_offset + len(payloads))),
    )
    return stages.locate(decode_batch(raw), 5), transactions(raw)


def _keys(settings: Settings, table: str, key: str) -> list[int]:
    return DeltaTable(str(paths.table_dir(settings.home, table))).to_pyarrow_table(columns=[key])[key].to_pylist()


def test_a_batch_cut_short_after_its_sources_append_is_indexed_by_the_next(settings: Settings) -> None:
    payloads = [a.payload for a in generate_alerts(240, seed=5, config=SimConfig(history_days=60, nights=3))]
    first, txns = _batch(payloads[:80], 0)
    stages.commit_to_lake(first, settings.home, txns)
    # The second batch crashes right after appending its detections (the rest of its commit never happens).
    second, txns = _batch(payloads[80:160], 80)
    known = history.stored(settings.home, second.objects["diaObjectId"].to_numpy())
    assert commit.append(
        settings.home, paths.SOURCES, history.unseen(stages.lake_sources(second), "diaSourceId", known, False), txns
    )
    # After the restart the consumer cuts the batches differently: the lost batch's alerts and the next ones.
    for start, end in ((80, 120), (120, 240)):
        again, txns = _batch(payloads[start:end], start)
        stages.commit_to_lake(again, settings.home, txns)

    sources = _keys(settings, paths.SOURCES, "diaSourceId")
    assert len(sources) == len(set(sources))  # nothing twice
    everything = stages.lake_sources(_batch(payloads, 0)[0])
    assert set(sources) == set(everything["diaSourceId"].to_pylist())  # nothing lost
    indexed = DeltaTable(str(paths.table_dir(settings.home, paths.OBJECT_HISTORY))).to_pyarrow_table()
    detections = indexed.filter(pc.invert(indexed["forced"]))["key"].to_pylist()
    assert sorted(detections) == sorted(
        s for s, o in zip(sources, _keys(settings, paths.SOURCES, "diaObjectId"), strict=True) if o is not None
    )
