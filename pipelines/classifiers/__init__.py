"""Classifier plug-ins: each sub-package of this folder is one classifier (its code, its model file, its
training script; its tests under ``tests/pipelines/classifiers``), in the manner of fink-science's modules.

A plug-in's ``__init__`` defines ``CLASSIFIER``, a :class:`Classifier`: its name (the annotations' ``topic``), its
version, and ``classify``, a vectorised function from the batch's ``objects`` rows (packet state and features, as
the lake stores them) to one row per object it has an opinion on: ``diaObjectId``, ``classification`` and
``score`` (0–1). The pipeline runs the classifiers that ``Settings.classifiers`` names (none by default) on the
workers right after the features (``pipelines.stages``), appends their outputs to the ``annotations`` table in the
batch's commit, and the batch's filters, which run after the commit, see them in ``annotations``: a filter can
select on a classifier's score in the same batch.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from nightjar import __version__
from nightjar.lake.annotations import new_annotation_id
from nightjar.lake.schemas import ANNOTATIONS_SCHEMA

OUTPUT_SCHEMA = pa.schema([("diaObjectId", pa.int64()), ("classification", pa.string()), ("score", pa.float64())])


@dataclass(frozen=True)
class Classifier:
    """A classifier plug-in (see the package's docstring)."""

    name: str
    version: str
    classify: Callable[[pa.Table], pa.Table]
    explanation: str = ""


@functools.cache
def registered() -> tuple[Classifier, ...]:
    """Every classifier of this package's sub-packages, by name."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append(module.CLASSIFIER)
    return tuple(sorted(found, key=lambda c: c.name))


def chosen(names: Collection[str]) -> tuple[Classifier, ...]:
    """The registered classifiers of these names (``Settings.classifiers``); an unknown name is an error."""
    known = {c.name: c for c in registered()}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown classifier(s) {', '.join(unknown)}; the plug-ins are: {', '.join(sorted(known))}")
    return tuple(known[n] for n in dict.fromkeys(names))


def annotations_of(objects: pa.Table, classifiers: tuple[Classifier, ...] | None = None) -> pa.Table:
    """The annotations (lake schema) that the classifiers write about these objects; one per object and
    classifier with an opinion."""
    parts = []
    for clf in registered() if classifiers is None else classifiers:
        out = clf.classify(objects).select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA)
        n = out.num_rows
        if n == 0:
            continue
        score = pc.cast(pc.round(out["score"], 4), pa.string())
        classdict = pc.binary_join_element_wise('{"score": ', score, "}", "")
        # one id each from the process's id clock (~1 µs an id: the ids are time-ordered and unique across
        # processes, which an arithmetic sequence would not be)
        ids = pa.array([new_annotation_id() for _ in range(n)], pa.int64())
        created = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))
        parts.append(
            pa.table(
                {
                    "diaObjectId": out["diaObjectId"],
                    "annotationId": ids,
                    "topic": pa.repeat(pa.scalar(clf.name), n),
                    "annotator": pa.repeat(pa.scalar(f"nightjar {__version__} {clf.name}"), n),
                    "version": pa.repeat(pa.scalar(clf.version), n),
                    "classification": out["classification"],
                    "explanation": pa.repeat(pa.scalar(clf.explanation), n),
                    "classdict": classdict,
                    "url": pa.nulls(n, pa.string()),
                    "created": pa.repeat(created, n),
                },
                schema=ANNOTATIONS_SCHEMA,
            )
        )
    return pa.concat_tables(parts) if parts else ANNOTATIONS_SCHEMA.empty_table()
