"""The on-disk layout of a Nightjar home, and the lake's table names and partition columns, in one place."""

from __future__ import annotations

from pathlib import Path

# Folders and files under NIGHTJAR_HOME.
LAKE_DIR = "lake"
BROKER_DIR = "broker"
BROKER_STATE_FILE = "broker.json"
BROKER_LOG_FILE = "tansu.log"
METADATA_DB_FILE = "metadata.sqlite"
DUCKDB_TEMP_DIR = "duckdb-tmp"

# Lake tables.
SOURCES = "sources"
OBJECTS = "objects"
TABLES: tuple[str, ...] = (SOURCES, OBJECTS)

# Columns added by Nightjar to every alert-derived row.
NIGHT = "night"  # floor(midpointMjdTai): one partition per observing night
HPX29 = "hpx29"  # nested HEALPix index at order 29, the sort key of lake files
HPX_PART = "hpx_part"  # nested HEALPix index at the coarse partition order (Settings.partition_order)
SURVEY = "survey"  # "lsst" or "ztf"
KAFKA_TOPIC = "kafkaTopic"
KAFKA_PARTITION = "kafkaPartition"
KAFKA_OFFSET = "kafkaOffset"

PARTITION_COLUMNS: dict[str, list[str]] = {SOURCES: [NIGHT], OBJECTS: []}
KEY_COLUMNS: dict[str, str] = {SOURCES: "diaSourceId", OBJECTS: "diaObjectId"}

HPX_ORDER_MAX = 29


# The filter delivery ledger: a Delta table under the lake, not one of the tables users query.
FILTER_LEDGER = "filter_ledger"
# Results of long queries run as jobs (Parquet files), under NIGHTJAR_HOME.
JOBS_DIR = "jobs"


def lake_dir(home: Path) -> Path:
    """The folder holding the Delta tables."""
    return home / LAKE_DIR


def table_dir(home: Path, table: str) -> Path:
    """The folder of one Delta table."""
    return lake_dir(home) / table


def broker_dir(home: Path) -> Path:
    """The folder holding the embedded broker's state and log."""
    return home / BROKER_DIR


def filter_topic(filter_id: int) -> str:
    """The stable Kafka topic of a filter; it survives renames."""
    return f"nightjar.filter.{filter_id}"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of an input topic."""
    return f"{topic}.dlq"
