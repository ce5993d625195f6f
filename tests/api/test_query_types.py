"""Every DuckDB type a query can return gets an answer in JSON, CSV and Parquet (or a 4xx naming the column)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.settings import Settings

TYPES = [
    "1::TINYINT",
    "1::UHUGEINT",
    "1.5::DECIMAL(38,3)",
    "'nan'::DOUBLE",
    "DATE '294247-01-10'",
    "'infinity'::TIMESTAMP",
    "'-infinity'::DATE",
    "'infinity'::TIMESTAMPTZ",
    "'infinity'::TIMESTAMP_S",
    "'infinity'::TIMESTAMP_NS",
    "TIME '12:00:00'",
    "TIMETZ '12:00:00+01'",
    "INTERVAL 3 DAY",
    "TIMESTAMP '2020-01-01' - TIMESTAMP '2019-01-01'",
    "'101'::BIT",
    "'\\x00\\xff'::BLOB",
    "[1, 2]",
    "[[1], [2]]",
    "[1]::INT[1]",
    "{'a': 1}",
    "MAP {'a': 1}",
    "union_value(k := 1)",
    "'a'::ENUM('a', 'b')",
    "uuid()",
    "'{}'::JSON",
    "1::BIGNUM",
    "[DATE '294247-01-10']",
    "{'d': 'infinity'::TIMESTAMP}",
    "NULL",
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path_factory.mktemp("types"))
    rates = {**settings.role_requests_per_minute, "anonymous": 0}
    app = create_app(settings.model_copy(update={"role_requests_per_minute": rates}))
    with TestClient(app, raise_server_exceptions=False) as made:
        yield made


@pytest.mark.slow
@pytest.mark.parametrize("expr", TYPES)
def test_every_type_gets_an_answer(client: TestClient, expr: str) -> None:
    sql = f"SELECT {expr} AS odd, 7 AS n"
    as_json = client.post("/api/v1/query", json={"sql": sql})
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["rows"][0]["n"] == 7
    as_csv = client.post("/api/v1/query", json={"sql": sql, "format": "csv"})
    assert as_csv.status_code == 200, as_csv.text
    assert pcsv.read_csv(io.BytesIO(as_csv.content)).column_names == ["odd", "n"]
    as_parquet = client.post("/api/v1/query", json={"sql": sql, "format": "parquet"})
    assert as_parquet.status_code == 200, as_parquet.text
    assert pq.read_table(io.BytesIO(as_parquet.content)).column_names == ["odd", "n"]
