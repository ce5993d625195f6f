"""One row per key, defined once: the objects a streaming filter sees are the objects the lake stores."""

from __future__ import annotations

import pyarrow as pa

from nightjar import paths
from nightjar.lake import commit, keys
from nightjar.lake.read import datasets
from nightjar.settings import Settings
from nightjar.sql import views


def test_the_commit_and_the_batch_views_use_one_implementation() -> None:
    assert commit.latest_per_key is views.latest_per_key is keys.latest_per_key
    assert commit.first_per_key is views.first_per_key is keys.first_per_key


def test_a_tie_resolves_the_same_in_the_lake_and_in_the_filters_view(settings: Settings) -> None:
    """Two versions of an object with the same lastAlertMjdTai in one batch: the lake kept the first, the view
    the second, so a filter could see a state the lake never stored."""
    objects = pa.table(
        {
            "diaObjectId": pa.array([7, 7, 8], pa.int64()),
            "lastAlertMjdTai": [60000.5, 60000.5, 60001.0],
            "nDiaSources": pa.array([3, 4, 1], pa.int32()),
            paths.HPX29: pa.array([1, 1, 2], pa.int64()),
        }
    )
    sources = pa.table({"diaSourceId": pa.array([1, 2, 3], pa.int64())})
    seen = views.batch_views(sources, objects)[views.OBJECTS].sort_by("diaObjectId")
    commit.upsert(settings.home, paths.OBJECTS, objects, {}, order="lastAlertMjdTai")
    stored = datasets(settings.home)[paths.OBJECTS].to_table().sort_by("diaObjectId")
    assert stored["nDiaSources"].to_pylist() == seen["nDiaSources"].to_pylist() == [4, 1]
