"""Fixtures of the SQL tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from nightjar.settings import Settings
from nightjar.sql import registry


@pytest.fixture
def db(settings: Settings) -> Iterator[Engine]:
    """An engine on this test's metadata database (on both SQLite and PostgreSQL under ``both_databases``), disposed
    after the test."""
    eng = registry.engine(settings.metadata_url)
    yield eng
    eng.dispose()
