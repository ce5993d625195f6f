"""The on-disk layout of a Nightjar home, and the lake's table names and partition columns, in one place."""

from __future__ import annotations

from pathlib import Path

# Folders and files under NIGHTJAR_HOME.
LAKE_DIR = "lake"
BROKER_DIR = "broker"
BROKER_STATE_FILE = "broker.json"
BROKER_LOG_FILE = "tansu.log"
BROKER_DATA_DIR = "data"  # the embedded broker's topics, messages and offsets (disk storage), under BROKER_DIR
BROKER_STORE_LOG_FILE = "store.log"
BROKER_BUCKET = "tansu"  # the one bucket of the broker's storage, a folder under BROKER_DATA_DIR
METADATA_DB_FILE = "metadata.sqlite"
DUCKDB_TEMP_DIR = "duckdb-tmp"
CATALOGS_DIR = "catalogs"  # one HATS collection per context catalogue (see nightjar.catalogs.layout)

# Lake tables.
SOURCES = "sources"  # one row per detection: triggering diaSources and packet history, unique diaSourceId
FORCED_SOURCES = "forced_sources"  # forced photometry (and ZTF upper limits), unique forcedKey
# Each diaObject's states (its alert's diaObject and light-curve features), appended by every batch that saw it, each
# with the ``stateSeq`` of its write: an object is its newest state (``lake.object_states``); old states are folded
# away in the background (``lake.fold``). Every reader reads it through ``lake.object_states``.
OBJECTS = "objects"
CUTOUTS = "cutouts"  # the three cutouts of each alert, by diaSourceId
CONTEXT = "context"  # one row per diaObject: its Sherlock-style class and best match (upserted)
CONTEXT_MATCHES = "context_matches"  # every judged catalogue match of an object, ranked (replaced per object)
ANNOTATIONS = "annotations"  # annotations written through the API, one row each (appended)
WATCHLIST_HITS = "watchlist_hits"  # alerts within a cone of a watchlist: one row per (watchlist, cone, alert)
AREA_HITS = "area_hits"  # alerts inside a watchmap (sky area): one row per (watchmap, alert)
LIST_HITS = {"watchlist": WATCHLIST_HITS, "watchmap": AREA_HITS}  # the hits of each kind of list
MMA_AREA_HITS = "mma_area_hits"  # alerts inside a skymap's 90 % region in its window: one row per (skymap, alert)
TNS = "tns"  # the Transient Name Server's public objects, replaced whole by each import
CROSSMATCH_TNS = "crossmatch_tns"  # objects within the match radius of a TNS entry (replaced by each import)
# Every detection and forced measurement key of each object, with the few columns features need, sorted by
# diaObjectId: the pipeline reads its batch's objects here to keep only unseen packet history and to compute
# features over the whole stored light curve, without scanning ``sources`` (appended, never rewritten).
OBJECT_HISTORY = "object_history"
# Solar-system objects (LSST alerts of known minor planets, streams.sso): each alert's ssSource, by diaSourceId, and
# each ssObjectId's newest MPC orbit (upserted).
SS_SOURCES = "ss_sources"
SS_OBJECTS = "ss_objects"
# written by every alert batch
ALERT_TABLES: tuple[str, ...] = (SOURCES, FORCED_SOURCES, OBJECTS, CUTOUTS, OBJECT_HISTORY)
TABLES: tuple[str, ...] = (
    *ALERT_TABLES,
    CONTEXT,
    CONTEXT_MATCHES,
    ANNOTATIONS,
    WATCHLIST_HITS,
    AREA_HITS,
    MMA_AREA_HITS,
    TNS,
    CROSSMATCH_TNS,
    SS_SOURCES,
    SS_OBJECTS,
)
LAKE_LOG = "lake_log"  # one row per committed batch: every table's version after it (lake snapshots)

# Columns added by Nightjar to every alert-derived row.
NIGHT = "night"  # floor(midpointMjdTai), the observing night (MJD); the partition of cutouts
MONTH = "month"  # "YYYY-MM" of the night: the time partition of sources and forced photometry
HPX29 = "hpx29"  # nested HEALPix index at order 29, the sort key of lake files
HPX_PART = "hpx_part"  # nested HEALPix index at the coarse partition order (Settings.partition_order)
SURVEY = "survey"  # "lsst" or "ztf"
KAFKA_TOPIC = "kafkaTopic"
KAFKA_PARTITION = "kafkaPartition"
KAFKA_OFFSET = "kafkaOffset"

STATE_SEQ = "stateSeq"  # on objects: the order of the write that stored the state (the largest is the current one)
FROM_HISTORY = "fromPacketHistory"  # the row first reached the lake in an alert's packet history, not as its trigger
ALERT_DIGEST = "alertDigest"  # on cutouts (one row per alert): a digest of the alert's content, to tell re-sends apart
OBJECT_KEY = "diaObjectId"  # an object's id, the key of objects, context and the object indexes
SOURCE_KEY = "diaSourceId"  # a detection's id, the key of sources and cutouts
OBJECT_ORDER = "lastAlertMjdTai"  # of an object's states, the newest alert's wins
FORCED_KEY = "forcedKey"  # diaForcedSourceId for LSST; a 64-bit hash of object, time, band and kind for ZTF

# Time partitions serve streaming appends and time-bounded queries: a month for detections and forced
# photometry (a batch's year of packet history lands in ~13 partitions, not ~250 nights), a night for cutouts
# (only triggering alerts have them). Inside a partition, files are sorted by the order-29 HEALPix index so
# cone searches prune on file and row-group statistics (cutouts: by diaSourceId, for direct lookups); the Delta
# log keeps ``night`` statistics, so night filters still skip files. See docs/lake.md.
PARTITION_COLUMNS: dict[str, list[str]] = {
    SOURCES: [MONTH],
    FORCED_SOURCES: [MONTH],
    OBJECTS: [],
    CUTOUTS: [NIGHT],
    CONTEXT: [],
    CONTEXT_MATCHES: [],
    ANNOTATIONS: [],
    OBJECT_HISTORY: [],
    WATCHLIST_HITS: [],
    AREA_HITS: [],
    MMA_AREA_HITS: [],
    TNS: [],
    CROSSMATCH_TNS: [],
    SS_SOURCES: [],
    SS_OBJECTS: [],
}
SORT_COLUMNS: dict[str, str] = {
    SOURCES: HPX29,
    FORCED_SOURCES: HPX29,
    OBJECTS: HPX29,
    CUTOUTS: "diaSourceId",
    CONTEXT: "diaObjectId",
    CONTEXT_MATCHES: "diaObjectId",
    ANNOTATIONS: "diaObjectId",
    OBJECT_HISTORY: "diaObjectId",
    WATCHLIST_HITS: "diaObjectId",
    AREA_HITS: "diaObjectId",
    MMA_AREA_HITS: "diaObjectId",
    TNS: "objid",
    CROSSMATCH_TNS: "diaObjectId",
    SS_SOURCES: "ssObjectId",
    SS_OBJECTS: "ssObjectId",
}
KEY_COLUMNS: dict[str, str] = {
    SOURCES: "diaSourceId",
    FORCED_SOURCES: FORCED_KEY,
    OBJECTS: "diaObjectId",
    CUTOUTS: "diaSourceId",
    CONTEXT: "diaObjectId",
    CONTEXT_MATCHES: "matchKey",
    ANNOTATIONS: "annotationId",
    OBJECT_HISTORY: "key",
    WATCHLIST_HITS: "diaSourceId",  # with watchlistId and coneId: hits are appended, never upserted
    AREA_HITS: "diaSourceId",  # with watchmapId
    MMA_AREA_HITS: "diaSourceId",  # with skymapId
    TNS: "objid",
    CROSSMATCH_TNS: "diaObjectId",  # with objid
    SS_SOURCES: "diaSourceId",
    SS_OBJECTS: "ssObjectId",
}
ROW_GROUP_ROWS: dict[str, int] = {
    SOURCES: 8192,
    FORCED_SOURCES: 8192,
    OBJECTS: 1024,
    CUTOUTS: 64,
    CONTEXT: 8192,
    CONTEXT_MATCHES: 8192,
    ANNOTATIONS: 8192,
    OBJECT_HISTORY: 16384,
    WATCHLIST_HITS: 8192,
    AREA_HITS: 8192,
    MMA_AREA_HITS: 8192,
    TNS: 8192,
    CROSSMATCH_TNS: 8192,
    SS_SOURCES: 8192,
    SS_OBJECTS: 8192,
}

HPX_ORDER_MAX = 29


# The filter delivery ledger: a Delta table under the lake, not one of the tables users query.
FILTER_LEDGER = "filter_ledger"
# Results of long queries run as jobs (Parquet files), under NIGHTJAR_HOME.
JOBS_DIR = "jobs"
# Watchlists' cones (Parquet) and watchmaps' regions (MOC FITS), one file per version, and skymaps (probability maps
# of gravitational-wave, GRB and neutrino events, one folder per map), under the catalogues' root
# (``Settings.catalogs``: NIGHTJAR_CATALOGS_URI, default NIGHTJAR_HOME/catalogs), so Dask workers reach them with
# the root alone (``catalogs.watch_store``); the metadata database holds the lists' owners, names and versions.
WATCH_DIR = "_watch"
WATCHLISTS_DIR = "watchlists"  # under WATCH_DIR
WATCHMAPS_DIR = "watchmaps"  # under WATCH_DIR
SKYMAPS_DIR = "_skymaps"
# Where an older home kept them (NIGHTJAR_HOME/<name>); moved under the catalogues' root on start, and renamed
# <name> + OLD_UPLOADED_SUFFIX when copied to object storage (``catalogs.watch_migrate``).
OLD_WATCHLISTS_DIR = "watchlists"
OLD_WATCHMAPS_DIR = "watchmaps"
OLD_SKYMAPS_DIR = "skymaps"
OLD_UPLOADED_SUFFIX = ".uploaded"
WATCH_MIGRATION_LOCK = ".watch-migration.lock"  # under NIGHTJAR_HOME
# History matching jobs keep their state under NIGHTJAR_HOME.
WATCH_JOBS_DIR = "watch-jobs"
# Exports made through the API: one folder of Parquet files and a manifest each, under NIGHTJAR_HOME.
EXPORTS_DIR = "exports"


def lake_dir(home: Path) -> Path:
    """The folder holding the Delta tables."""
    return home / LAKE_DIR


def table_dir(home: Path, table: str) -> Path:
    """The folder of one Delta table."""
    return lake_dir(home) / table


def catalogs_dir(home: Path) -> Path:
    """The folder holding the context catalogues, one HATS collection each."""
    return home / CATALOGS_DIR


def watchlist_key(watchlist_id: int, version: int) -> str:
    """The cones of one version of a watchlist (Parquet, sorted by ``hpx29``), within the catalogues' root.

    >>> watchlist_key(7, 2)
    '_watch/watchlists/7/v2.parquet'
    """
    return f"{WATCH_DIR}/{WATCHLISTS_DIR}/{watchlist_id}/v{version}.parquet"


def watchmap_key(watchmap_id: int, version: int) -> str:
    """The region of one version of a watchmap (a MOC in FITS), within the catalogues' root."""
    return f"{WATCH_DIR}/{WATCHMAPS_DIR}/{watchmap_id}/v{version}.fits"


def skymap_key(map_id: int) -> str:
    """The folder of one stored skymap, within the catalogues' root."""
    return f"{SKYMAPS_DIR}/{map_id}"


def broker_dir(home: Path) -> Path:
    """The folder holding the embedded broker's state, logs and (disk storage) data."""
    return home / BROKER_DIR


def broker_data_dir(home: Path) -> Path:
    """The embedded broker's disk storage: its buckets, one folder each."""
    return broker_dir(home) / BROKER_DATA_DIR


def filter_topic(filter_id: int) -> str:
    """The stable Kafka topic of a filter; it survives renames."""
    return f"nightjar.filter.{filter_id}"


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of an input topic."""
    return f"{topic}.dlq"
