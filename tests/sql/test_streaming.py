"""Many filters in shared passes return exactly what each returns on its own; failing and slow ones are isolated."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from nightjar.pipelines import lake_write, stages
from nightjar.settings import Settings
from nightjar.sql import engine, registry, sandbox, views
from nightjar.sql.compile import FilterSpec, compile_filters
from nightjar.sql.streaming import run_filters
from nightjar.streams import simulate
from nightjar.streams.decode import DecodedBatch, RawBatch, decode_batch
from nightjar.streams.files import read_payloads

LIMITS = sandbox.Limits(memory="1GB", threads=2, timeout_s=20.0, max_rows=5000)

SIMPLE = [
    "SELECT diaSourceId, psfFlux FROM sources WHERE band = 'r' AND psfFlux > 5000",
    "SELECT diaObjectId, diaSourceId, mag(psfFlux) AS m, 31.4 - 2.5 * log10(psfFlux) FROM sources "
    "WHERE psfFlux > 0 AND reliability > 0.9",
    "SELECT * FROM sources WHERE snr > 20",
    "SELECT s.diaSourceId, s.ra, s.dec FROM sources s WHERE s.band IN ('g', 'i') AND s.snr BETWEEN 5 AND 50",
    "SELECT diaSourceId FROM sources",
    "SELECT diaObjectId, nDiaSources FROM objects WHERE nDiaSources >= 3",
    "SELECT diaSourceId, healpix(ra, dec, 10) AS pix FROM sources WHERE in_cone(ra, dec, 265, -29, 36000)",
    "SELECT diaSourceId FROM sources WHERE psfFlux > 5000 OR isNegative",
    "SELECT diaSourceId, psfFlux FROM sources WHERE NOT (band = 'r') AND psfFlux IS NOT NULL AND snr > 3",
    "SELECT diaSourceId FROM sources WHERE diaObjectId IN (SELECT diaObjectId FROM objects WHERE nDiaSources > 4)",
    "SELECT diaObjectId, ra, dec FROM sources WHERE band = 'r' AND psfFlux > 5000 AND reliability > 0.5",
    "SELECT diaObjectId, separationArcsec FROM watchlist_hits WHERE separationArcsec < 1",  # a view still empty
]
ALONE = [
    "SELECT s.diaObjectId, s.diaSourceId, o.nDiaSources FROM sources s JOIN objects o USING (diaObjectId) "
    "WHERE s.psfFlux > 10000",
    "SELECT diaObjectId, diaSourceId, psfFlux - lag(psfFlux) OVER (PARTITION BY diaObjectId ORDER BY midpointMjdTai) "
    "AS rise FROM sources QUALIFY rise > 1000",
    "SELECT diaObjectId, count(*) AS n, max(psfFlux) AS peak FROM sources GROUP BY diaObjectId HAVING count(*) > 1",
    "WITH bright AS (SELECT * FROM sources WHERE psfFlux > 20000) SELECT diaObjectId, diaSourceId FROM bright",
    "SELECT diaObjectId, mag(psfFlux) AS m FROM sources WHERE m < 21",
    "SELECT DISTINCT diaObjectId FROM sources WHERE snr > 10",
]


def _batch_views(payloads: list[bytes]) -> dict[str, pa.Table]:
    decoded = stages.locate(decode_batch(RawBatch.from_payloads(payloads, topic="t")), partition_order=5)
    return stages.batch_tables(decoded)


@pytest.fixture(scope="module")
def simulated() -> dict[str, pa.Table]:
    return _batch_views([a.payload for a in simulate.generate_alerts(800, seed=4)])


@pytest.fixture(scope="module")
def real(data_dir: Path) -> dict[str, pa.Table]:
    files = sorted((data_dir / "alerts/lsst/lsstcam-2025-v9.0").glob("*.avro"))
    return _batch_views([p for f in files for p in read_payloads(f)])


def _alone(tables: dict[str, pa.Table], sql: str) -> pa.Table:
    box = sandbox.connect(views.with_placeholders(tables), LIMITS)
    try:
        return sandbox.run(box, sql, LIMITS)
    finally:
        box.close()


def _rows(table: pa.Table) -> list[tuple]:
    return sorted((tuple(map(repr, row.values())) for row in table.to_pylist()), key=str)


@pytest.mark.parametrize("which", ["simulated", "real"])
def test_shared_passes_equal_each_filter_alone(which: str, request: pytest.FixtureRequest) -> None:
    tables = request.getfixturevalue(which)
    specs = [FilterSpec(i + 1, 1, sql) for i, sql in enumerate(SIMPLE + ALONE)]
    plan = compile_filters(specs, views.schemas_of(views.with_placeholders(tables)))
    assert sorted(m.index for g in plan.groups for m in g.members) == list(range(len(SIMPLE)))
    assert sorted(plan.solos) == list(range(len(SIMPLE), len(specs)))
    assert plan.passes < len(specs)

    shared = {m.index for g in plan.groups if len(g.members) > 1 for m in g.members}
    assert len(shared) >= 8

    results = run_filters(tables, specs, LIMITS)
    assert sum(r.count for r in results) > 0, "the batch must give the filters something to match"
    for index, (spec, result) in enumerate(zip(specs, results, strict=True)):
        assert result.error is None, (spec.sql, result.error)
        assert result.matches is not None and result.keys is not None
        alone = _alone(tables, spec.sql)
        assert result.matches.column_names == alone.column_names, spec.sql
        assert _rows(result.matches) == _rows(alone), spec.sql
        assert result.keys.num_rows == result.matches.num_rows
        assert result.shared_pass == (index in shared)


def test_keys_name_the_alert_of_each_match(simulated: dict[str, pa.Table]) -> None:
    by_source, by_object = run_filters(
        simulated,
        [
            FilterSpec(1, 1, "SELECT psfFlux FROM sources WHERE band = 'r' AND psfFlux > 5000"),
            FilterSpec(2, 1, "SELECT ra FROM objects WHERE nDiaSources >= 3"),
        ],
        LIMITS,
    )
    want = _alone(simulated, "SELECT diaObjectId, diaSourceId FROM sources WHERE band = 'r' AND psfFlux > 5000")
    assert sorted(by_source.keys.to_pylist(), key=str) == sorted(want.to_pylist(), key=str)
    objects = _alone(
        simulated, "SELECT diaObjectId, lastDiaSourceId AS diaSourceId FROM objects WHERE nDiaSources >= 3"
    )
    assert sorted(by_object.keys.to_pylist(), key=str) == sorted(objects.to_pylist(), key=str)


def test_a_failing_filter_is_reported_and_the_others_deliver(simulated: dict[str, pa.Table]) -> None:
    good = "SELECT diaSourceId, psfFlux FROM sources WHERE band = 'r' AND psfFlux > 5000"
    specs = [
        FilterSpec(1, 1, good),
        # Fails only when evaluated on rows its own WHERE would not reach: the shared pass fails, the filter
        # then runs as written (and succeeds).
        FilterSpec(2, 1, "SELECT diaSourceId FROM sources WHERE band = '1' AND CAST(band AS INTEGER) = 1"),
        FilterSpec(3, 1, "SELECT diaSourceId FROM sources WHERE CAST(band AS INTEGER) > 0"),
        FilterSpec(4, 1, "SELECT nosuchcolumn FROM sources WHERE psfFlux > 1"),
        FilterSpec(5, 1, "SELECT * FROM read_csv('/etc/passwd')"),
    ]
    ok, guarded, broken, typo, escape = run_filters(simulated, specs, LIMITS)
    assert _rows(ok.matches) == _rows(_alone(simulated, good)) and ok.error is None
    assert guarded.error is None and guarded.count == 0
    assert broken.matches is None and "Could not convert string" in broken.error
    assert typo.matches is None and "nosuchcolumn" in typo.error
    assert escape.matches is None and "read_csv() is not available" in escape.error


def test_a_slow_filter_is_stopped_and_the_others_deliver(simulated: dict[str, pa.Table]) -> None:
    fast = [
        "SELECT diaSourceId, psfFlux FROM sources WHERE band = 'r' AND psfFlux > 5000",
        "SELECT diaObjectId FROM objects WHERE nDiaSources >= 3",
        "SELECT diaSourceId FROM sources WHERE snr > 20",
    ]
    slow = "SELECT diaSourceId FROM sources WHERE (SELECT count(*) FROM range(100000000000) r WHERE r.range < 0) = 0"
    specs = [FilterSpec(i + 1, 1, sql) for i, sql in enumerate([*fast, slow])]
    limits = sandbox.Limits(memory="1GB", threads=2, timeout_s=1.0, max_rows=5000)
    *quick, stuck = run_filters(simulated, specs, limits)
    assert stuck.timed_out and "time limit of 1 s" in stuck.error
    for sql, result in zip(fast, quick, strict=True):
        assert result.error is None and _rows(result.matches) == _rows(_alone(simulated, sql))
    # Next batch, the slow filter runs on its own: the others share their pass again.
    *quick, stuck = run_filters(simulated, specs, limits, isolate=frozenset({4}))
    assert stuck.timed_out
    assert [r.shared_pass for r in quick] == [True, False, True]  # objects: a pass of its own (one filter)


def test_too_many_matches_is_an_error_not_a_flood(simulated: dict[str, pa.Table]) -> None:
    small = sandbox.Limits(memory="1GB", threads=1, timeout_s=20.0, max_rows=10)
    (result,) = run_filters(simulated, [FilterSpec(1, 1, "SELECT diaSourceId FROM sources")], small)
    assert result.matches is None and "more than the limit of 10" in result.error


ZTF_FOLDERS = ["ztf-avro-alert-samples", "boom-2024-v4.02", "pittgoogle-2021-v3.3"]
ZTF_FILTERS = [
    "SELECT objectId, candid, fid, magpsf, sigmapsf FROM sources WHERE magpsf < 18.5 AND isdiffpos = 't'",
    "SELECT objectId, ndethist, drb, ncand, jdmin FROM objects WHERE objectId = '{name}'",
    "SELECT objectId, midpointMjdTai, diffmaglim FROM forced_sources WHERE kind = 'upper_limit' AND diffmaglim > 19",
]


def _decoded(files: list[Path]) -> DecodedBatch:
    payloads = [p for f in files for p in read_payloads(f, wire_format=False)]
    raw = RawBatch(payloads, ["alerts"] * len(payloads), [0] * len(payloads), list(range(len(payloads))))
    return stages.locate(decode_batch(raw), partition_order=5)


def test_ztf_native_names_select_the_same_rows_streaming_and_static(data_dir: Path, settings: Settings) -> None:
    """One SQL both ways: a filter written with ZTF's own names (magpsf, objectId, ndethist...) is accepted, runs
    over a batch of real ZTF alerts as the pipeline runs it, and matches what the same SQL finds in the lake that
    ingested them; over a batch of LSST alerts (which has no such values) it matches nothing, without failing."""
    ztf = _decoded([f for folder in ZTF_FOLDERS for f in sorted((data_dir / "alerts/ztf" / folder).glob("*.avro"))])
    assert not ztf.rejects
    committed = lake_write.commit_to_lake(ztf, settings.home, {"test:ztf:0": 0})
    name = committed.objects.sort_by([("ncand", "descending")])["objectId"][0].as_py()
    db = registry.engine(settings.metadata_url)
    try:
        filters = [
            registry.add_filter(db, f"ztf {i}", sql.format(name=name), home=settings.home)
            for i, sql in enumerate(ZTF_FILTERS)
        ]
    finally:
        db.dispose()
    streamed = stages.apply_filters(committed, filters, LIMITS, home=settings.home).outputs
    for flt, out in zip(filters, streamed, strict=True):
        assert out.error is None, (flt.sql, out.error)
        static = engine.query_lake(settings, flt.sql)
        assert static.num_rows > 0, flt.sql
        assert out.matches is not None and out.matches.column_names == static.column_names
        assert _rows(out.matches) == _rows(static), flt.sql

    lsst = _decoded(sorted((data_dir / "alerts/lsst/lsstcam-2025-v9.0").glob("*.avro")))
    for flt, out in zip(filters, stages.apply_filters(lsst, filters, LIMITS, home=settings.home).outputs, strict=True):
        assert out.error is None, (flt.sql, out.error)
        assert out.matches is not None and out.matches.num_rows == 0
