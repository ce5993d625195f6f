"""Each object's row as the lake stores it: its newest packet state with features over its whole light curve.

A batch's objects are merged with what the lake holds (``merge_objects``, in the batch's lake commit) so that the
stored row does not depend on the order in which alerts arrived.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from nightjar import paths
from nightjar.lake import commit, read
from nightjar.paths import OBJECT_ORDER
from nightjar.pipelines.features import feature_columns, object_features, sky_of
from nightjar.storage import Home


def merge_objects(objects: pa.Table, detections: pa.Table, home: Home, context: pa.Table | None = None) -> pa.Table:
    """Each object's newest packet state with features over its whole light curve (``detections``: every
    stored and new detection of the batch's objects). ``context``: the batch's context view, whose host
    ``distance`` gives the absolute magnitudes.

    The packet columns come from the newest alert of the object that reached the lake: the batch's, unless the
    lake holds a detection newer than the batch's newest alert (the alert arrived late), in which case the
    stored row's packet columns are kept. Either way the features are recomputed over the same full light curve,
    so the stored row does not depend on the order in which alerts arrived.
    """
    objects = commit.latest_per_key(objects.filter(pc.is_valid(objects["diaObjectId"])), "diaObjectId", OBJECT_ORDER)
    if detections.num_rows:
        newest = detections.group_by("diaObjectId").aggregate([("midpointMjdTai", "max")])
        where = pc.index_in(objects["diaObjectId"], newest["diaObjectId"])
        late = pc.fill_null(pc.less(objects[OBJECT_ORDER], pc.take(newest["midpointMjdTai_max"], where)), False)
        if pc.any(late).as_py():
            objects = _keep_stored_state(objects, late, home, feature_columns())
        # the position of the state kept (the newest alert's) gives glat and ebv
        sky = sky_of(objects, context)
        features = object_features(detections, sky)
        features = features.join(sky.drop_columns(["distance"]), keys="diaObjectId", join_type="left outer")
        objects = objects.drop_columns(
            [c for c in features.column_names if c != "diaObjectId" and c in objects.column_names]
        )
        objects = objects.join(features, keys="diaObjectId", join_type="left outer", coalesce_keys=True)
        objects = _with_light_curve_interval(objects)
        objects = _with_ztf_detection_count(objects)
    return objects


def _with_ztf_detection_count(objects: pa.Table) -> pa.Table:
    """A ZTF object's ``nDiaSources``: its detections in the lake (``nSources``). LSST's diaObject counts every
    detection Rubin associated; a ZTF packet has no such count (its ``prv_candidates`` hold 30 days)."""
    if paths.SURVEY not in objects.column_names or "nSources" not in objects.column_names:
        return objects
    ztf = pc.fill_null(pc.equal(objects[paths.SURVEY], "ztf"), False)
    column = "nDiaSources"
    kind = objects.schema.field(column).type if column in objects.column_names else pa.int32()
    counted = pc.cast(objects["nSources"], kind)
    current = objects[column] if column in objects.column_names else pa.nulls(objects.num_rows, kind)
    values = pc.if_else(ztf, counted, current)
    if column in objects.column_names:
        return objects.set_column(objects.column_names.index(column), column, values)
    return objects.append_column(column, values)


# LSST's diaObject gives the first and last detection's time; a ZTF packet does not, so its objects take them from
# their stored light curve (the features' first and last detection), as Lasair's object pages show them.
_INTERVAL = {"firstDiaSourceMjdTai": "firstDiaSourceMjd", "lastDiaSourceMjdTai": "lastDiaSourceMjd"}


def _with_light_curve_interval(objects: pa.Table) -> pa.Table:
    for column, feature in _INTERVAL.items():
        values = objects[feature]
        if column in objects.column_names:
            values = pc.coalesce(pc.cast(objects[column], pa.float64()), values)
            objects = objects.set_column(objects.column_names.index(column), column, values)
        else:
            objects = objects.append_column(column, values)
    return objects


def _keep_stored_state(objects: pa.Table, late: pa.Array, home: Home, feature_columns: list[str]) -> pa.Table:
    """``objects`` with the rows of late alerts replaced by the stored packet state, where it is newer."""
    ids = objects.filter(late)["diaObjectId"]
    stored = read.rows_of_objects(home, paths.OBJECTS, ids.to_numpy())
    if stored is None or stored.num_rows == 0:
        return objects
    stored = stored.drop_columns([c for c in feature_columns if c != "diaObjectId" and c in stored.column_names])
    stored = commit.latest_per_key(stored, "diaObjectId", OBJECT_ORDER)
    both = pa.concat_tables(
        [objects, stored.select([c for c in stored.column_names if c in objects.column_names])],
        promote_options="permissive",
    )
    return commit.latest_per_key(both, "diaObjectId", OBJECT_ORDER)
