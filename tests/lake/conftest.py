"""A small real lake, built once per session from real alerts and copied into each test's home."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from distributed import Client

from nightjar import paths
from nightjar.pipelines.run import ingest
from nightjar.settings import Settings
from nightjar.streams.replay import alert_files

# Real LSSTCam and ZTF alerts over five nights; small batches give several files per night and several merges.
ALERT_FOLDERS = (
    "lsst/lsstcam-2025-v9.0",
    "ztf/fink-2020-v3.3",
    "ztf/pittgoogle-2021-v3.3",
    "ztf/ampel-2018-v3.0",
)
ALERTS = 230


@pytest.fixture(scope="session")
def lake_template(tmp_path_factory: pytest.TempPathFactory, dask_client: Client, data_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("lake-template")
    files = alert_files([data_dir / "alerts" / folder for folder in ALERT_FOLDERS])
    report = ingest(Settings(home=home, batch_size=40), dask_client, files)
    assert report.accepted == ALERTS and not report.file_errors
    return home


@pytest.fixture
def lake_home(lake_template: Path, home: Path) -> Path:
    """This test's home (the ``home`` and ``settings`` fixtures) holding a copy of the template lake."""
    shutil.copytree(paths.lake_dir(lake_template), paths.lake_dir(home))
    return home
