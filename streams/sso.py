"""Solar-system records of LSST alerts: the ``ssSource`` (the detection's association with a known moving
object, its geometry) and the MPC orbit (``MPCORB`` in schema 9, ``mpc_orbits`` from 10) as two model tables.

``ss_sources``: one row per alert that carries an ``ssSource``, keyed by the alert's ``diaSourceId`` (Rubin leaves
the record's own ``diaSourceId`` null in the v9 LSSTCam alerts: the alert's is used), with the detection's
``midpointMjdTai``, ``ra``, ``dec``, ``band`` and ``psfFlux``. ``ss_objects``: the orbit of each ``ssObjectId``,
with ``lastAlertMjdTai`` (the alert's time), so that the newest alert's orbit wins.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from nightjar.streams.avro_columnar import RECORD, Decoded

SS_SOURCE_RECORD = "ssSource"
ORBIT_RECORDS = ("mpc_orbits", "MPCORB")  # v10+, v9
SOURCE_COLUMNS = ("midpointMjdTai", "ra", "dec", "band", "psfFlux", "psfFluxErr")


def _from_source(table: pa.Table, source: pa.Table, columns: list[str]) -> pa.Table:
    """``table`` (rows of nested records, with ``_record``) with ``columns`` of their alert's diaSource."""
    where = pa.array(table[RECORD].to_numpy())
    for name in columns:
        if name in source.column_names:
            values = source[name].take(where)
            if name in table.column_names:
                table = table.set_column(
                    table.column_names.index(name), name, pc.coalesce(table[name], values.cast(table[name].type))
                )
            else:
                table = table.append_column(name, values)
    return table


def sso_tables(decoded: Decoded, source: pa.Table) -> dict[str, pa.Table]:
    """The ``ss_sources`` and ``ss_objects`` rows of one group of decoded LSST alerts (with ``_record``)."""
    out: dict[str, pa.Table] = {}
    ss = decoded.tables.get(SS_SOURCE_RECORD)
    if ss is not None and ss.num_rows:
        out["ss_sources"] = _from_source(ss, source, ["diaSourceId", "diaObjectId", *SOURCE_COLUMNS])
    orbit_name = next((n for n in ORBIT_RECORDS if n in decoded.tables), None)
    if orbit_name is not None and decoded.tables[orbit_name].num_rows:
        orbits = decoded.tables[orbit_name]
        # v10+ orbits do not carry the ssObjectId (v9's may leave it null): the alert's ssSource's is theirs
        if ss is not None and ss.num_rows:
            at = pc.index_in(orbits[RECORD], ss[RECORD])
            from_ss = pc.take(ss["ssObjectId"], at).cast(pa.int64())
            if "ssObjectId" in orbits.column_names:
                ids = pc.coalesce(orbits["ssObjectId"].cast(pa.int64()), from_ss)
                orbits = orbits.set_column(orbits.column_names.index("ssObjectId"), "ssObjectId", ids)
            else:
                orbits = orbits.append_column("ssObjectId", from_ss)
        if "ssObjectId" in orbits.column_names:
            orbits = orbits.filter(pc.is_valid(orbits["ssObjectId"]))
            where = pa.array(orbits[RECORD].to_numpy(), pa.int64()) if orbits.num_rows else pa.array([], pa.int64())
            out["ss_objects"] = orbits.append_column(
                "lastAlertMjdTai", source["midpointMjdTai"].take(where).cast(pa.float64())
            )
    return out
