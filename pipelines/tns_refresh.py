"""Importing the Transient Name Server: the ``tns`` table, the lake's objects matched to it (``crossmatch_tns``,
nearest TNS entry within the radius, 1.5″ by default), and notices of what changed.

An import replaces both tables in one lake snapshot. The objects whose match is new, or whose TNS name or type
changed, are announced on the annotations topic as notices (``topic`` = ``tns``); the pipeline runs the filters
that read ``crossmatch_tns`` over those objects, as it runs the filters that read ``annotations`` over newly
annotated ones (``pipelines.annotation_filters``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy.coordinates import SkyCoord

from nightjar import paths
from nightjar.catalogs.tns import read_tns
from nightjar.lake import commit, read
from nightjar.lake import tns as tns_tables
from nightjar.lake.annotations import encode_messages, to_table
from nightjar.lake.schemas import CROSSMATCH_TNS_SCHEMA
from nightjar.settings import Settings
from nightjar.storage import Home
from nightjar.streams import kafka
from nightjar.streams.publish import Publisher

log = logging.getLogger(__name__)

DEFAULT_RADIUS_ARCSEC = 1.5
NOTICE_TOPIC = "tns"  # the annotation topic of TNS change notices
NOTICE_ANNOTATOR = "nightjar tns"
CHUNK_ROWS = 1_000_000


@dataclass
class TnsImport:
    """What a TNS import did: objects imported, lake objects matched, the matches it changed, the export date, and
    whether the changes were announced to the filters."""

    entries: int  # TNS objects imported
    matches: int  # lake objects matched to one
    changed: pa.Table  # diaObjectId, tns_name, type of the matches new or changed by this import
    exported: str | None  # the export date the CSV gave
    announced: bool = False  # the changes were sent to the annotations topic


def crossmatch(objects: pa.Table, tns: pa.Table, radius_arcsec: float) -> pa.Table:
    """Each object (``diaObjectId``, ``ra``, ``dec``) with its nearest TNS entry within ``radius_arcsec``."""
    objects = objects.filter(pc.and_(pc.is_valid(objects["ra"]), pc.is_valid(objects["dec"])))
    if objects.num_rows == 0 or tns.num_rows == 0:
        return CROSSMATCH_TNS_SCHEMA.empty_table()
    ra = pc.cast(objects["ra"], pa.float64()).to_numpy(zero_copy_only=False)
    dec = pc.cast(objects["dec"], pa.float64()).to_numpy(zero_copy_only=False)
    at = SkyCoord(ra * u.deg, dec * u.deg)
    entries = SkyCoord(tns["ra"].to_numpy() * u.deg, tns["dec"].to_numpy() * u.deg)
    i_tns, i_obj, sep, _ = at.search_around_sky(entries, radius_arcsec * u.arcsec)  # (into entries, into at)
    if i_obj.size == 0:
        return CROSSMATCH_TNS_SCHEMA.empty_table()
    sep_arcsec = sep.to_value(u.arcsec)
    order = np.lexsort((sep_arcsec, i_obj))  # by object, nearest first
    i_obj, i_tns, sep_arcsec = i_obj[order], i_tns[order], sep_arcsec[order]
    first = np.r_[True, i_obj[1:] != i_obj[:-1]]
    i_obj, i_tns, sep_arcsec = i_obj[first], i_tns[first], sep_arcsec[first]
    rows = tns.take(pa.array(i_tns))
    return pa.table(
        {
            "diaObjectId": pc.cast(objects["diaObjectId"], pa.int64()).take(pa.array(i_obj)),
            "tns_objid": rows["objid"],
            "tns_name": rows["tns_name"],
            "tns_prefix": rows["name_prefix"],
            "type": rows["type"],
            "redshift": rows["redshift"],
            "discoverydate": rows["discoverydate"],
            "discoverymag": rows["discoverymag"],
            "ra": rows["ra"],
            "dec": rows["dec"],
            "separationArcsec": pa.array(sep_arcsec),
            "lastmodified": rows["lastmodified"],
        },
        schema=CROSSMATCH_TNS_SCHEMA,
    )


def _lake_matches(home: Home, tns: pa.Table, radius_arcsec: float) -> pa.Table:
    objects = read.datasets(home).get(paths.OBJECTS)
    if objects is None:
        return CROSSMATCH_TNS_SCHEMA.empty_table()
    found = [
        crossmatch(pa.Table.from_batches([chunk]), tns, radius_arcsec)
        for chunk in objects.to_batches(columns=["diaObjectId", "ra", "dec"], batch_size=CHUNK_ROWS)
        if chunk.num_rows
    ]
    return pa.concat_tables(found) if found else CROSSMATCH_TNS_SCHEMA.empty_table()


def changed_matches(before: pa.Table | None, after: pa.Table) -> pa.Table:
    """The matches of ``after`` that are new or whose TNS name or type differ from ``before``."""
    columns = ["diaObjectId", "tns_name", "type"]
    if before is None or before.num_rows == 0:
        return after.select(columns)

    def keys(t: pa.Table) -> pa.Array:
        parts = [pc.cast(t[c], pa.string()) for c in columns]
        return pc.binary_join_element_wise(*[pc.fill_null(p, "\x00") for p in parts], "\x1f")

    same = pc.is_in(keys(after), value_set=keys(before))
    return after.filter(pc.invert(same)).select(columns)


def announce(settings: Settings, changed: pa.Table) -> bool:
    """Send a notice per changed match to the annotations topic (the pipeline runs the filters that read
    ``crossmatch_tns`` over those objects); False when no Kafka is configured."""
    if changed.num_rows == 0:
        return True
    try:
        config = kafka.producer_config(settings, kafka.OUTPUT, **{"message.timeout.ms": 10_000})
    except kafka.KafkaNotConfigured:
        log.warning("no Kafka configured: the TNS refresh does not trigger filters")
        return False
    now = datetime.now(UTC)
    notices = to_table(
        [
            {
                "diaObjectId": row["diaObjectId"],
                "topic": NOTICE_TOPIC,
                "annotator": NOTICE_ANNOTATOR,
                "classification": row["type"],
                "explanation": row["tns_name"],
                "created": now,
            }
            for row in changed.to_pylist()
        ]
    )
    kafka.ensure_topics(settings, [settings.annotations_topic])
    with Publisher(config) as publisher:
        for key, value in encode_messages(notices):
            publisher.raw(settings.annotations_topic, value, key)
        publisher.flush(timeout_s=15)
    return True


def import_tns(
    settings: Settings, path: Path, radius_arcsec: float = DEFAULT_RADIUS_ARCSEC, notify: bool = True
) -> TnsImport:
    """Import a TNS export (CSV or Parquet): replace ``tns`` and ``crossmatch_tns`` in one lake snapshot and
    announce the matches it changed. A bad file raises ``TnsFileError`` before anything is written."""
    if not (np.isfinite(radius_arcsec) and 0 < radius_arcsec <= 60):
        raise ValueError(f"the TNS match radius must be in (0, 60] arcsec, not {radius_arcsec}")
    home = settings.lake
    parsed = read_tns(path)
    # Matched over one lake snapshot outside the lock (batches keep committing meanwhile); objects that arrive
    # in between are matched by the next import.
    matches = _lake_matches(home, parsed.objects, radius_arcsec)
    with commit.lake_lock(home):
        before = tns_tables.read_table(home, paths.CROSSMATCH_TNS)
        tns_tables.replace_tns(home, parsed.objects, matches)
    changed = changed_matches(before, matches)
    result = TnsImport(parsed.objects.num_rows, matches.num_rows, changed, parsed.exported)
    if notify:
        result.announced = announce(settings, changed)
    return result
