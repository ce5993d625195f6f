"""``nightjar filter backtest``: run a filter over past nights of the lake as if it had been streaming.

Each night is one batch: its alerts (``sources`` of that night) with their packet history (the same objects'
detections of the previous 365 nights, as an LSST alert carries), and the objects seen that night. The filter
runs exactly as in the pipeline (same compiler, same passes), and its matches go through the same delivery keys
as the ledger's, so a match shown on one night is not shown again. Nothing is published.

The objects view holds each object's *current* state in the lake (the lake keeps the latest state only), not
its state on that night: filters on object statistics that change over time may differ from what the stream saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from nightjar import paths
from nightjar.lake import read
from nightjar.progress import Progress
from nightjar.settings import Settings
from nightjar.sql import engine, matches, views
from nightjar.sql.compile import FilterSpec
from nightjar.sql.streaming import run_filters
from nightjar.storage import Home

HISTORY_NIGHTS = 365


@dataclass
class NightResult:
    """One night of a backtest: the night, its alerts, the matches that would have been delivered (with their delivery
    key), or the error that stopped the filter."""

    night: int
    alerts: int
    delivered: pa.Table  # the matches that would have been delivered, with their delivery key
    error: str | None = None


@dataclass
class Backtest:
    """A filter's backtest over past nights: its spec, its mode and each night's result."""

    spec: FilterSpec
    mode: str
    nights: list[NightResult] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        """The matches that would have been delivered over all the nights."""
        return sum(n.delivered.num_rows for n in self.nights)

    def table(self) -> pa.Table:
        """Every match that would have been delivered, with its night and delivery key."""
        parts = [n.delivered for n in self.nights if n.delivered.num_rows]
        if not parts:
            return pa.table({"night": pa.array([], pa.int32()), "deliveryKey": pa.array([], pa.string())})
        return pa.concat_tables(parts, promote_options="permissive")


def lake_nights(home: Home, since_mjd: float, until_mjd: float | None) -> list[int]:
    """The observing nights in the lake between two MJDs."""
    tables = read.datasets(home)
    if paths.SOURCES not in tables:
        return []
    column = tables[paths.SOURCES].to_table(columns=[paths.NIGHT])[paths.NIGHT]
    nights = sorted(int(n) for n in pc.unique(column).to_pylist() if n is not None)
    last = math.inf if until_mjd is None else until_mjd
    return [n for n in nights if n + 1 > since_mjd and n <= last]


def last_nights_since(home: Home, count: int) -> float | None:
    """The MJD from which a backtest covers the lake's last ``count`` observing nights (None: no nights)."""
    nights = lake_nights(home, -math.inf, None)
    if not nights or count < 1:
        return None
    return float(nights[-min(count, len(nights))])


def night_views(sources: ds.Dataset, objects: ds.Dataset | None, night: int) -> dict[str, pa.Table] | None:
    """The streaming views of one night of the lake (None if the night has no alerts)."""
    tonight = sources.to_table(filter=ds.field(paths.NIGHT) == night)
    if tonight.num_rows == 0:
        return None
    ids = pc.unique(tonight["diaObjectId"])
    history = sources.to_table(
        filter=(ds.field(paths.NIGHT) < night)
        & (ds.field(paths.NIGHT) >= night - HISTORY_NIGHTS)
        & ds.field("diaObjectId").isin(ids)
    )
    if objects is None:
        objs = views.placeholder_schemas()[views.OBJECTS].empty_table()
    else:
        objs = objects.to_table(filter=ds.field("diaObjectId").isin(ids))
    return views.batch_views(tonight, objs, history)


def backtest(
    settings: Settings,
    spec: FilterSpec,
    mode: str,
    since_mjd: float,
    until_mjd: float | None = None,
    progress: Progress | None = None,
) -> Backtest:
    """What ``spec`` would have delivered from ``since_mjd`` on, night by night; ``progress`` hears the nights
    done out of the lake's nights in the interval."""
    home = settings.lake
    result = Backtest(spec, mode)
    tables = read.datasets(home)
    if paths.SOURCES not in tables:
        return result
    limits = engine.limits(settings, timeout_s=settings.filter_timeout_s, max_rows=settings.filter_max_rows)
    seen: set[str] = set()
    nights = lake_nights(home, since_mjd, until_mjd)
    for done, night in enumerate(nights):
        if progress is not None:
            progress(done, len(nights))
        batch = night_views(tables[paths.SOURCES], tables.get(paths.OBJECTS), night)
        if batch is None:
            continue
        alerts = batch[views.SOURCES].filter(pc.equal(batch[views.SOURCES][paths.NIGHT], night)).num_rows
        (found,) = run_filters(batch, [spec], limits)
        if found.matches is None or found.keys is None:
            result.nights.append(NightResult(night, alerts, _empty(), found.error))
            continue
        rows, keys = matches.candidates(mode, found.matches, found.keys)
        dkeys = matches.delivery_keys(mode, spec.version, keys)
        fresh = pc.invert(pc.is_in(dkeys, value_set=pa.array(sorted(seen), pa.string())))
        new_rows, new_keys = rows.filter(fresh), dkeys.filter(fresh)
        seen.update(new_keys.to_pylist())
        delivered = new_rows.append_column("deliveryKey", new_keys).append_column(
            "night", pa.array([night] * new_rows.num_rows, pa.int32())
        )
        result.nights.append(NightResult(night, alerts, delivered))
    if progress is not None:
        progress(len(nights), len(nights))
    return result


def _empty() -> pa.Table:
    return pa.table({"deliveryKey": pa.array([], pa.string()), "night": pa.array([], pa.int32())})
