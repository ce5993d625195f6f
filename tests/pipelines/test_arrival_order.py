"""Stored values do not depend on the order in which a light curve's alerts arrive.

A real ZTF light curve (ZTF18abaqwse, 44 detections over a month in ``ampel-2018-v3.0``) is cut into one alert
per detection, each carrying only the previous 10 days as ``prv_candidates`` (so no single packet holds the whole
light curve, as ZTF's 30-day packets do not over a season). Ingested in time order, newest first, and shuffled, in
batches of a few alerts, the lake must hold the same detections and the same object row.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from deltalake import DeltaTable

from nightjar import paths
from nightjar.pipelines import stages
from nightjar.settings import Settings
from nightjar.streams.decode import RawBatch, decode_batch

SOURCE = "alerts/ztf/ampel-2018-v3.0/595213712915010008.avro"
WINDOW_DAYS = 10.0
PROVENANCE = {paths.KAFKA_TOPIC, paths.KAFKA_PARTITION, paths.KAFKA_OFFSET}


def split_into_alerts(path: Path) -> list[bytes]:
    """One Avro container per detection of the alert's light curve, oldest first."""
    reader = fastavro.reader(io.BytesIO(path.read_bytes()))
    schema = reader.writer_schema
    alert: Any = next(iter(reader))
    template = alert["candidate"]
    detections = [c for c in [*(alert["prv_candidates"] or []), template] if c["candid"] is not None]
    detections.sort(key=lambda c: c["jd"])
    limits = [c for c in alert["prv_candidates"] or [] if c["candid"] is None]
    out = []
    for det in detections:
        candidate = {**template, **{k: v for k, v in det.items() if k in template}}
        earlier = [c for c in [*detections, *limits] if det["jd"] - WINDOW_DAYS <= c["jd"] < det["jd"]]
        one = {**alert, "candid": det["candid"], "candidate": candidate, "prv_candidates": earlier or None}
        buf = io.BytesIO()
        fastavro.writer(buf, schema, [one])
        out.append(buf.getvalue())
    return out


def ingest_in_order(settings: Settings, alerts: list[bytes], order: np.ndarray, batch: int = 4) -> None:
    for start in range(0, len(order), batch):
        picked = [alerts[i] for i in order[start : start + batch]]
        raw = RawBatch(picked, ["ztf"] * len(picked), [0] * len(picked), [int(i) for i in order[start : start + batch]])
        decoded = stages.locate(decode_batch(raw), settings.partition_order)
        assert not decoded.rejects
        stages.commit_to_lake(decoded, settings.home, {f"test:{start}": start})


def stored(home: Path, table: str, key: str) -> list[dict[str, Any]]:
    rows = DeltaTable(str(paths.table_dir(home, table))).to_pyarrow_table().sort_by(key).to_pylist()
    return [{k: v for k, v in r.items() if k not in PROVENANCE and k != paths.FROM_HISTORY} for r in rows]


def test_features_and_rows_do_not_depend_on_arrival_order(settings: Settings, data_dir: Path, tmp_path: Path) -> None:
    alerts = split_into_alerts(data_dir / SOURCE)
    assert len(alerts) == 44
    orders = {
        "oldest first": np.arange(len(alerts)),
        "newest first": np.arange(len(alerts))[::-1],
        "shuffled": np.random.default_rng(7).permutation(len(alerts)),
    }
    results = {}
    for name, order in orders.items():
        run_settings = settings.model_copy(update={"home": tmp_path / name.replace(" ", "-")})
        ingest_in_order(run_settings, alerts, order)
        results[name] = {
            "objects": stored(run_settings.home, paths.OBJECTS, "diaObjectId"),
            "sources": stored(run_settings.home, paths.SOURCES, "diaSourceId"),
            "forced": stored(run_settings.home, paths.FORCED_SOURCES, paths.FORCED_KEY),
        }
    reference = results["oldest first"]
    (obj,) = reference["objects"]
    assert obj["objectId"] == "ZTF18abaqwse"
    assert obj["nSources"] == obj["ncand"] == len(reference["sources"]) == 44
    # The newest alert's packet state, whatever arrived last.
    newest = max(r["midpointMjdTai"] for r in reference["sources"])
    assert obj["lastAlertMjdTai"] == pytest.approx(newest)
    for band in ("g", "r"):
        fluxes = [r["psfFlux"] for r in reference["sources"] if r["band"] == band]
        assert obj[f"{band}_nSources"] == len(fluxes) > 0
        assert obj[f"{band}_maxFlux"] == pytest.approx(max(fluxes), rel=1e-6)
    for name in ("newest first", "shuffled"):
        assert results[name] == reference, name
