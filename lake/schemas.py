"""The Arrow schemas of the lake tables Nightjar defines, one home for each.

The alert tables (``sources``, ``objects``, ``forced_sources``, ``cutouts``, ``ss_sources``, ``ss_objects``) take
their columns from the alert packets (``streams.schemas``, ``streams.sso``); ``context`` and ``context_matches``
from the catalogues' match columns (``catalogs.context``); ``tns`` from the Transient Name Server's public objects
(``catalogs.tns``). The modules that read and write each table below use these.
"""

from __future__ import annotations

import pyarrow as pa

# ``object_history`` (``lake.history``): slim rows of every detection and forced measurement, per object.
HISTORY_KEY = "key"  # diaSourceId of a detection, forcedKey of a forced measurement
HISTORY_FORCED = "forced"
OBJECT_HISTORY_SCHEMA = pa.schema(
    [
        pa.field("diaObjectId", pa.int64()),
        pa.field(HISTORY_KEY, pa.int64()),
        pa.field(HISTORY_FORCED, pa.bool_()),
        pa.field("midpointMjdTai", pa.float64()),
        pa.field("band", pa.string()),
        pa.field("psfFlux", pa.float32()),
        pa.field("psfFluxErr", pa.float32()),
        pa.field("reliability", pa.float32()),
    ]
)

# ``filter_ledger`` (``lake.ledger``): each match's delivery, per filter version and channel.
FILTER_LEDGER_SCHEMA = pa.schema(
    [
        pa.field("filterId", pa.int64()),
        pa.field("filterVersion", pa.int32()),
        pa.field("key", pa.string()),  # the delivery key: version:diaObjectId:diaSourceId, or new:diaObjectId
        pa.field("diaObjectId", pa.int64()),
        pa.field("diaSourceId", pa.int64()),
        pa.field("channel", pa.string()),
        pa.field("status", pa.string()),
        pa.field("batch", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("recordedAt", pa.timestamp("us", tz="UTC")),
    ]
)

# ``annotations`` (``lake.annotations``): annotations written through the API or by classifier plug-ins.
ANNOTATIONS_SCHEMA = pa.schema(
    [
        pa.field("diaObjectId", pa.int64()),
        pa.field("annotationId", pa.int64()),
        pa.field("topic", pa.string()),
        pa.field("annotator", pa.string()),
        pa.field("version", pa.string()),
        pa.field("classification", pa.string()),
        pa.field("explanation", pa.string()),
        pa.field("classdict", pa.string()),  # JSON text
        pa.field("url", pa.string()),
        pa.field("created", pa.timestamp("us", tz="UTC")),
    ]
)

# ``watchlist_hits`` and ``area_hits`` (``lake.watch_hits``): alerts in watchlists' cones and watchmaps.
WATCHLIST_HITS_SCHEMA = pa.schema(
    [
        pa.field("watchlistId", pa.int64()),
        pa.field("coneId", pa.int64()),
        pa.field("coneName", pa.string()),
        pa.field("diaObjectId", pa.int64()),
        pa.field("diaSourceId", pa.int64()),
        pa.field("separationArcsec", pa.float64()),
        pa.field("midpointMjdTai", pa.float64()),
    ]
)
AREA_HITS_SCHEMA = pa.schema(
    [
        pa.field("watchmapId", pa.int64()),
        pa.field("diaObjectId", pa.int64()),
        pa.field("diaSourceId", pa.int64()),
        pa.field("midpointMjdTai", pa.float64()),
    ]
)
# Skymap hits (``lake.mma_hits``): stored and replaced per map like a watchmap's.
MMA_HITS_SCHEMA = pa.schema(
    [
        pa.field("skymapId", pa.int64()),
        pa.field("eventId", pa.string()),
        pa.field("diaObjectId", pa.int64()),
        pa.field("diaSourceId", pa.int64()),
        pa.field("midpointMjdTai", pa.float64()),
        pa.field("daysSinceEvent", pa.float64()),
        pa.field("contour", pa.int32()),  # the smallest credible level (percent) holding the position: 50 or 90
        pa.field("probdens2", pa.float64()),  # the map's probability density there, sr⁻¹
        pa.field("probdens3", pa.float64()),  # at the host's distance, Mpc⁻³ sr⁻¹ (null without one)
        pa.field("distanceMpc", pa.float64()),  # the host distance used
    ]
)

# ``crossmatch_tns`` (``lake.tns``): objects near a TNS entry, replaced by each TNS import.
CROSSMATCH_TNS_SCHEMA = pa.schema(
    [
        pa.field("diaObjectId", pa.int64()),
        pa.field("tns_objid", pa.int64()),
        pa.field("tns_name", pa.string()),  # "SN 2022and"
        pa.field("tns_prefix", pa.string()),  # "SN", "AT", "TDE"…
        pa.field("type", pa.string()),  # spectroscopic class, null until classified
        pa.field("redshift", pa.float64()),
        pa.field("discoverydate", pa.timestamp("us", tz="UTC")),
        pa.field("discoverymag", pa.float64()),
        pa.field("ra", pa.float64()),  # the TNS position
        pa.field("dec", pa.float64()),
        pa.field("separationArcsec", pa.float64()),
        pa.field("lastmodified", pa.timestamp("us", tz="UTC")),
    ]
)
