"""Annotation-triggered filters: when annotators write about objects, the filters that read ``annotations`` run.

The API appends each annotation to the lake and sends it to ``nightjar.annotations``; the pipeline consumes that
topic beside its alerts. For a batch of new annotations the filters see, per annotated object: ``objects`` (its
row), ``sources`` (its newest detection), ``context`` (its classification) and ``annotations`` (the new ones).
A match is delivered like any other, keyed by the annotation instead of a detection, so a new annotation of an
object can match again while a replayed one is not delivered twice.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.lake import read
from nightjar.lake.annotations import decode_messages
from nightjar.pipelines.stages import FilterOutput
from nightjar.sql import parse, sandbox, views
from nightjar.sql.registry import Filter
from nightjar.sql.streaming import run_filters


def reads_annotations(flt: Filter) -> bool:
    return views.ANNOTATIONS in parse.tables_read(flt.sql)


def annotation_views(home: Path, notes: pa.Table) -> dict[str, pa.Table]:
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
    return out


def run_annotation_filters(
    home: Path, payloads: list[bytes], filters: list[Filter], limits: sandbox.Limits
) -> tuple[list[FilterOutput], list[tuple[int, str]]]:
    """The outputs of the filters that read ``annotations`` over the annotations in ``payloads``, and the
    messages that were not annotations (index, reason)."""
    notes, bad = decode_messages(payloads)
    chosen = [f for f in filters if reads_annotations(f)]
    if notes.num_rows == 0 or not chosen:
        return [], bad
    results = run_filters(annotation_views(home, notes), [f.spec for f in chosen], limits)
    newest = notes.group_by("diaObjectId").aggregate([("annotationId", "max")])
    outputs = []
    for flt, result in zip(chosen, results, strict=True):
        keys = result.keys
        if keys is not None and keys.num_rows:
            where = pc.index_in(keys["diaObjectId"], newest["diaObjectId"])
            keys = keys.set_column(1, "diaSourceId", pc.take(newest["annotationId_max"], where))
        outputs.append(FilterOutput(flt, result.matches, keys, result.error, result.timed_out))
    return outputs, bad
