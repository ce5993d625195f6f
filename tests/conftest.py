"""Shared fixtures: a real Kafka-protocol broker and a real Dask LocalCluster per session, a fresh home per test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from nightjar.settings import Settings
from nightjar.streams import broker

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """The real alerts and catalogues: ``NIGHTJAR_SHARED_DATA``, else ``../shared/data`` beside the checkout.

    A local clone of a checkout (``git clone . /tmp/x``) also finds the data beside the checkout it came from.
    """
    if "NIGHTJAR_SHARED_DATA" in os.environ:
        return Path(os.environ["NIGHTJAR_SHARED_DATA"])
    candidates = [REPO.parent / "shared" / "data"]
    origin = subprocess.run(
        ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"], capture_output=True, text=True
    ).stdout.strip()
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), candidates[0])


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data()
    if not path.is_dir():
        pytest.fail(f"shared data not found at {path}; set NIGHTJAR_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Tansu broker on a free loopback port, for the whole session."""
    home = tmp_path_factory.mktemp("broker-home")
    state = broker.start(home, broker.free_port(), timeout_s=30)
    try:
        yield state.bootstrap
    finally:
        broker.stop(home)


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A real distributed.LocalCluster with two single-threaded worker processes."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "nightjar-home"
    path.mkdir()
    return path


@pytest.fixture
def settings(home: Path) -> Settings:
    """Settings on a fresh home, with no broker (tests that need Kafka use ``kafka_settings``)."""
    return Settings(home=home, batch_size=500, batch_timeout_s=1.0)


@pytest.fixture
def kafka_settings(home: Path, kafka_bootstrap: str) -> Settings:
    return Settings(home=home, kafka=kafka_bootstrap, batch_size=500, batch_timeout_s=1.0)
