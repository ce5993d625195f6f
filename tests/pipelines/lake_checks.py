"""What the exactly-once tests check of the lake after a run that was interrupted."""

from __future__ import annotations

from collections.abc import Sequence

from nightjar import paths
from nightjar.settings import Settings
from nightjar.sql.engine import query_lake
from nightjar.streams.simulate import SimAlert


def assert_each_alert_once(settings: Settings, alerts: Sequence[SimAlert]) -> None:
    """Every alert in the lake once, and nothing else: one cutouts row and one triggering source per alert, and no
    key twice in ``sources``, ``forced_sources`` or ``objects``."""
    n = len(alerts)
    rows = query_lake(settings, "SELECT count(*) AS n, count(DISTINCT diaSourceId) AS d FROM cutouts").to_pylist()
    assert rows == [{"n": n, "d": n}]
    triggers = query_lake(settings, "SELECT diaSourceId FROM sources WHERE NOT fromPacketHistory")
    assert sorted(triggers["diaSourceId"].to_pylist()) == sorted(a.dia_source_id for a in alerts)
    for table, key in (
        (paths.SOURCES, "diaSourceId"),
        (paths.FORCED_SOURCES, paths.FORCED_KEY),
        (paths.OBJECTS, "diaObjectId"),
    ):
        counts = query_lake(settings, f"SELECT count(*) AS n, count(DISTINCT {key}) AS d FROM {table}").to_pylist()[0]
        assert counts["n"] == counts["d"], table
