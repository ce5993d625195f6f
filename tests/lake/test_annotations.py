"""The annotations table: appended rows are in the next lake snapshot, with unique time-ordered ids."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from nightjar.lake.annotations import _IdClock, append_annotations, new_annotation_id, read_annotations
from nightjar.lake.read import datasets
from nightjar.settings import Settings


def test_appended_annotations_are_in_the_next_snapshot(settings: Settings) -> None:
    rows = [
        {"diaObjectId": 7, "topic": "ml", "annotator": "bot", "classification": "SN", "classdict": {"SN": 0.9}},
        {"diaObjectId": 8, "topic": "ml", "annotator": "bot", "classification": "AGN", "classdict": "{}"},
    ]
    assert append_annotations(settings.home, rows) == 2
    snapshot = datasets(settings.home)["annotations"].to_table().sort_by("diaObjectId")
    assert snapshot["classification"].to_pylist() == ["SN", "AGN"]
    assert json.loads(snapshot["classdict"][0].as_py()) == {"SN": 0.9}
    assert append_annotations(settings.home, rows[:1]) == 1
    seven = read_annotations(settings.home, 7)
    assert seven.num_rows == 2 and len(set(seven["annotationId"].to_pylist())) == 2
    assert read_annotations(settings.home, 999).num_rows == 0


def test_ids_are_positive_63_bit_and_ordered_by_time() -> None:
    ids = [new_annotation_id() for _ in range(20_000)]  # thousands per millisecond
    assert all(0 < i < 2**63 for i in ids)
    assert all(a < b for a, b in itertools.pairwise(ids)), "ids of one process strictly increase"
    assert len({i >> 22 for i in ids}) < len(ids), "many ids shared a millisecond"


def test_a_full_millisecond_runs_into_the_next_instead_of_repeating() -> None:
    clock = _IdClock()
    ahead = time.time_ns() // 1_000_000 + 3_600_000
    clock._millis = ahead  # an hour ahead of the wall clock: every call lands in "the same millisecond"
    pairs = [clock.next() for _ in range(3 * 4096)]
    assert len(set(pairs)) == len(pairs) and pairs == sorted(pairs)
    assert all(0 <= sequence < 4096 for _, sequence in pairs)
    assert sorted({millis for millis, _ in pairs}) == [ahead, ahead + 1, ahead + 2, ahead + 3]


def test_ids_from_many_threads_are_unique() -> None:
    per_thread: list[list[int]] = [[] for _ in range(8)]
    start = threading.Barrier(len(per_thread))

    def issue(out: list[int]) -> None:
        start.wait()
        out.extend(new_annotation_id() for _ in range(5000))

    threads = [threading.Thread(target=issue, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in per_thread for i in out]
    assert len(set(every)) == len(every) == 40_000
    assert all(out == sorted(out) for out in per_thread)


# Run in a fresh interpreter: forking the test process itself (many threads: Dask, Kafka clients, a browser
# driver) is unsafe, and its children crashed in fork now and then.
_FORK_SCRIPT = """
import json, multiprocessing, sys
from nightjar.lake.annotations import new_annotation_id

def ids_in_child(queue):
    queue.put([new_annotation_id() for _ in range(1000)])

if __name__ == "__main__":
    new_annotation_id()  # the parent's clock state is what the child inherits
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=ids_in_child, args=(queue,))
    child.start()
    mine = [new_annotation_id() for _ in range(1000)]
    theirs = queue.get(timeout=60)
    child.join(timeout=60)
    json.dump({"mine": mine, "theirs": theirs, "exitcode": child.exitcode}, sys.stdout)
"""


def test_a_forked_process_issues_other_ids_than_its_parent(tmp_path: Path) -> None:
    script = tmp_path / "fork_ids.py"
    script.write_text(_FORK_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    mine, theirs = found["mine"], found["theirs"]
    assert found["exitcode"] == 0 and len(mine) == len(theirs) == 1000
    assert not set(mine) & set(theirs)
    assert {i >> 12 & 1023 for i in mine}.isdisjoint({i >> 12 & 1023 for i in theirs})
