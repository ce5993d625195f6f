"""Which matches count as distinct deliveries: the delivery key of a match, and new-objects mode's first match.

Shared by the pipeline's delivery (against the ledger) and the backtest (against what it has shown already), so
both deliver exactly the same matches.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nightjar.lake.keys import first_per_key

EVERY_ALERT, NEW_OBJECTS = "all", "new"


def delivery_keys(mode: str, version: int, keys: pa.Table) -> pa.Array:
    """The delivery key of each match (``keys``: diaObjectId, diaSourceId).

    Every-alert mode: ``version:diaObjectId:diaSourceId`` (a new version of a filter may deliver an alert again);
    new-objects mode: ``new:diaObjectId`` (an object is delivered once, whatever the version).

    Examples
    --------
    >>> k = pa.table({"diaObjectId": pa.array([7], pa.int64()), "diaSourceId": pa.array([9], pa.int64())})
    >>> delivery_keys("all", 2, k).to_pylist(), delivery_keys("new", 2, k).to_pylist()
    (['2:7:9'], ['new:7'])
    """
    src = pc.fill_null(pc.cast(keys["diaSourceId"], pa.string()), "")
    # A detection without a diaObject (solar-system) stands for itself.
    obj = pc.coalesce(pc.cast(keys["diaObjectId"], pa.string()), pc.binary_join_element_wise("source", src, "-"))
    if mode == NEW_OBJECTS:
        return pc.binary_join_element_wise("new", obj, ":").combine_chunks()
    return pc.binary_join_element_wise(str(version), obj, src, ":").combine_chunks()


def first_per_object(matches: pa.Table, keys: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Each object's first match (its earliest diaSourceId), for new-objects mode.

    Detections without a diaObject (solar-system) are not objects: new-objects mode does not deliver them.
    """
    has_object = pc.is_valid(keys["diaObjectId"])
    keys, matches = keys.filter(has_object), matches.filter(has_object)
    if keys.num_rows == 0:
        return matches, keys
    order = pc.sort_indices(keys, sort_keys=[("diaObjectId", "ascending"), ("diaSourceId", "ascending")])
    keys, matches = keys.take(order), matches.take(order)
    ranked = keys.append_column("_pos", pa.array(np.arange(keys.num_rows)))
    first = first_per_key(ranked, "diaObjectId")["_pos"]
    return matches.take(first), keys.take(first)


def candidates(mode: str, matches: pa.Table, keys: pa.Table) -> tuple[pa.Table, pa.Table]:
    """A filter's matches to consider for delivery: all of them, or each object's first in new-objects mode."""
    return first_per_object(matches, keys) if mode == NEW_OBJECTS else (matches, keys)
