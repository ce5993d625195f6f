"""Fixtures of the API tests: a small real lake with context, matches and annotations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from distributed import Client

from nightjar import paths
from nightjar.catalogs.build import BuildSpec, build_catalog
from nightjar.catalogs.catalog import ColumnMap, load_catalog_set
from nightjar.catalogs.context import ContextResult, classify
from nightjar.catalogs.rules import Kind
from nightjar.lake import commit, read
from nightjar.pipelines import context as context_stage
from nightjar.settings import Settings

HOSTED = 6  # objects given a host galaxy 1.5 arcsec away


@dataclass
class DataLake:
    settings: Settings
    objects: pa.Table  # every object's row, read straight from Delta
    context: ContextResult
    annotated: int  # an object with two annotations


def add_context(settings: Settings, client: Client) -> tuple[pa.Table, ContextResult]:
    """A galaxy catalogue with hosts beside a few lake objects; every object classified and stored."""
    objects = read.datasets(settings.home)[paths.OBJECTS].to_table().sort_by("diaObjectId")
    pick = objects.slice(0, HOSTED)
    dec = pick["dec"].to_numpy()
    hosts = pa.table(
        {
            "name": [f"G{i}" for i in range(HOSTED)],
            "ra": pick["ra"].to_numpy() + 1.5 / 3600 / np.cos(np.radians(dec)),
            "dec": dec,
            "z": np.full(HOSTED, 0.05),
            "majax": np.full(HOSTED, 20.0),
        }
    )
    spec = BuildSpec(
        name="hosts",
        kind=Kind.GALAXY,
        columns=ColumnMap(ra="ra", dec="dec", id="name", z="z", major_axis="majax", major_axis_unit="arcsec"),
    )
    build_catalog(client, [hosts], spec, settings.home)
    result = classify(objects.select(["diaObjectId", "ra", "dec"]), load_catalog_set(settings.home))
    # Stored as the pipeline's context stage stores it.
    with commit.lake_lock(settings.home):
        stored = context_stage.stamp(result)
        context_stage.commit_context(settings.home, context_stage.BatchContext(stored.context, stored), {})
        commit.log_batch(settings.home, {})
    return objects, result


def add_annotations(settings: Settings, object_id: int) -> None:
    """Two annotations of one object, in the annotations table's layout."""
    rows = pa.table(
        {
            "diaObjectId": pa.array([object_id, object_id], pa.int64()),
            "annotationId": pa.array([2, 1], pa.int64()),
            "topic": ["fastfinder", "fastfinder"],
            "annotator": ["bot", "bot"],
            "version": ["0.2", "0.1"],
            "classification": ["SN Ia", "SN"],
            "explanation": ["second look", "first look"],
            "classdict": ['{"p": 0.9}', '{"p": 0.6}'],
            "url": ["", ""],
            "created": pa.array(
                [datetime(2025, 9, 6, tzinfo=UTC), datetime(2025, 9, 5, tzinfo=UTC)], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    with commit.lake_lock(settings.home):
        commit.append(settings.home, paths.ANNOTATIONS, rows, {})


@pytest.fixture(scope="module")
def data_lake(tmp_path_factory: pytest.TempPathFactory, dask_client: Client, lake_builder: Any) -> DataLake:
    """300 simulated alerts in 3 commits, every object classified (a few with a host), one annotated object.

    Shared by a test module: tests read it and must not change it.
    """
    home = tmp_path_factory.mktemp("data-lake")
    # No rate limits: a module's tests share one app and make far more than 30 anonymous calls.
    unlimited = {"anonymous": 0, "user": 0, "annotator": 0, "power": 0, "admin": 0}
    settings = Settings(home=home, batch_size=500, batch_timeout_s=1.0, role_requests_per_minute=unlimited)
    lake_builder(home, alerts=300, batches=3)
    objects, context = add_context(settings, dask_client)
    annotated = int(objects["diaObjectId"][HOSTED].as_py())
    add_annotations(settings, annotated)
    return DataLake(settings, objects, context, annotated)
