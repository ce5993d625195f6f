"""The annotations table: appended rows are in the next lake snapshot, with unique time-ordered ids."""

from __future__ import annotations

import json

from nightjar.lake.annotations import append_annotations, new_annotation_id, read_annotations
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
    ids = [new_annotation_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids) and all(0 < i < 2**63 for i in ids)
    assert ids[-1] >> 22 >= ids[0] >> 22
