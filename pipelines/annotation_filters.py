"""Annotation-triggered filters: when annotators write about objects, the filters that read ``annotations`` run.

The API appends each annotation to the lake and sends it to ``nightjar.annotations``; the pipeline consumes that
topic beside its alerts. For a batch of new annotations the filters see, per annotated object: ``objects`` (its
row), ``sources`` (its newest detection), ``context`` (its classification), ``annotations`` (the new ones), and
``watchlist_hits`` and ``area_hits`` (its stored hits, of the lists the filter's owner may see).
A match is delivered like any other, keyed by the annotation instead of a detection, so a new annotation of an
object can match again while a replayed one is not delivered twice.

A TNS import announces the objects whose TNS match is new or changed as notices on the same topic (``topic`` =
``tns``, from ``pipelines.tns_refresh``). They are not annotations: they run the filters that read
``crossmatch_tns`` over those objects (with the objects' stored ``crossmatch_tns`` rows), and no others.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from nightjar import paths
from nightjar.lake import read
from nightjar.lake.annotations import decode_messages
from nightjar.pipelines.stages import FilterOutput
from nightjar.sql import parse, sandbox, views, watch_views
from nightjar.sql.registry import Filter
from nightjar.sql.streaming import run_filters
from nightjar.storage import Home

TNS_NOTICE_TOPIC = "tns"  # pipelines.tns_refresh.NOTICE_TOPIC
TNS_NOTICE_ANNOTATOR = "nightjar tns"


def reads_annotations(flt: Filter) -> bool:
    """True if the filter's SQL reads the annotations view."""
    return views.ANNOTATIONS in parse.tables_read(flt.sql)


def reads_tns(flt: Filter) -> bool:
    """True if the filter's SQL reads the crossmatch_tns view."""
    return views.CROSSMATCH_TNS in parse.tables_read(flt.sql)


def annotation_views(home: Home, notes: pa.Table) -> dict[str, pa.Table]:
    """The views of a batch of new annotations (see the module docstring)."""
    ids = pc.unique(notes["diaObjectId"]).to_numpy()
    out: dict[str, pa.Table] = {views.ANNOTATIONS: notes}
    objects = read.rows_of_objects(home, paths.OBJECTS, ids)
    if objects is not None and objects.num_rows:
        out[views.OBJECTS] = objects
        latest = read.latest_detections(home, objects)
        if latest is not None:
            out[views.SOURCES] = latest
    context = read.rows_of_objects(home, paths.CONTEXT, ids)
    if context is not None and context.num_rows:
        out[views.CONTEXT] = context
    tns = read.rows_of_objects(home, paths.CROSSMATCH_TNS, ids)
    if tns is not None and tns.num_rows:
        out[views.CROSSMATCH_TNS] = tns
    return out


def _with_hits(
    home: Home, tables: dict[str, pa.Table], ids: np.ndarray, filters: list[Filter], metadata_url: str | None
) -> list[tuple[list[int], dict[str, pa.Table]]]:
    """(filter positions, their views): the filters reading the hit views get the stored hits of the annotated
    objects that their owner may see, one group per owner; the others share ``tables``."""
    reads = [bool(parse.tables_read(f.sql) & {views.WATCHLIST_HITS, views.AREA_HITS}) for f in filters]
    plain = [i for i, r in enumerate(reads) if not r]
    groups: list[tuple[list[int], dict[str, pa.Table]]] = [(plain, tables)] if plain else []
    if not any(reads):
        return groups
    stored = {t: read.rows_of_objects(home, t, ids) for t in (views.WATCHLIST_HITS, views.AREA_HITS)}
    owners: dict[str, list[int]] = {}
    for i, r in enumerate(reads):
        if r:
            owners.setdefault(filters[i].owner, []).append(i)
    for owner, members in owners.items():
        seen = {t: rows for t, rows in stored.items() if rows is not None}
        if metadata_url is not None and seen:
            seen = watch_views.visible_hits({t: ds.dataset(rows) for t, rows in seen.items()}, metadata_url, owner)
            seen = {t: data.to_table() for t, data in seen.items()}
        groups.append((members, {**tables, **seen}))
    return groups


def run_annotation_filters(
    home: Home,
    payloads: list[bytes],
    filters: list[Filter],
    limits: sandbox.Limits,
    metadata_url: str | None = None,
) -> tuple[list[FilterOutput], list[tuple[int, str]]]:
    """The outputs of the filters that read ``annotations`` over the annotations in ``payloads`` (and of those
    that read ``crossmatch_tns`` over the TNS notices among them), and the messages that were not annotations
    (index, reason). ``metadata_url``: where to learn which watchlists'
    hits each filter's owner may see (None: every hit)."""
    notes, bad = decode_messages(payloads)
    if notes.num_rows == 0:
        return [], bad
    notice = pc.fill_null(
        pc.and_(pc.equal(notes["topic"], TNS_NOTICE_TOPIC), pc.equal(notes["annotator"], TNS_NOTICE_ANNOTATOR)),
        False,
    )
    outputs = _run(
        home, notes.filter(pc.invert(notice)), [f for f in filters if reads_annotations(f)], limits, metadata_url
    )
    # TNS notices: only the filters reading crossmatch_tns, and no ``annotations`` view (they are not annotations).
    outputs += _run(home, notes.filter(notice), [f for f in filters if reads_tns(f)], limits, metadata_url, False)
    return outputs, bad


def _run(
    home: Home,
    notes: pa.Table,
    chosen: list[Filter],
    limits: sandbox.Limits,
    metadata_url: str | None,
    as_annotations: bool = True,
) -> list[FilterOutput]:
    if notes.num_rows == 0 or not chosen:
        return []
    tables = annotation_views(home, notes)
    if not as_annotations:
        tables[views.ANNOTATIONS] = notes.schema.empty_table()
    ids = pc.unique(notes["diaObjectId"]).to_numpy()
    results: list = [None] * len(chosen)
    for members, group_tables in _with_hits(home, tables, ids, chosen, metadata_url):
        for i, result in zip(
            members, run_filters(group_tables, [chosen[i].spec for i in members], limits), strict=True
        ):
            results[i] = result
    newest = notes.group_by("diaObjectId").aggregate([("annotationId", "max")])
    outputs = []
    for flt, result in zip(chosen, results, strict=True):
        keys = result.keys
        if keys is not None and keys.num_rows:
            where = pc.index_in(keys["diaObjectId"], newest["diaObjectId"])
            keys = keys.set_column(1, "diaSourceId", pc.take(newest["annotationId_max"], where))
        outputs.append(FilterOutput(flt, result.matches, keys, result.error, result.timed_out))
    return outputs
