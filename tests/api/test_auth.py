"""Users, tokens, roles and rate limits of the HTTP API."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from nightjar import paths
from nightjar.api.app import create_app
from nightjar.api.auth import RateLimiter
from nightjar.api.users import AccountError, add_user_token
from nightjar.settings import Settings


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"NIGHTJAR_HOME": str(settings.home), "PATH": ""}
    if settings.database_url:
        env["NIGHTJAR_DATABASE_URL"] = settings.database_url
    return subprocess.run(
        [sys.executable, "-m", "nightjar.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_user_add_prints_the_token_last_and_stores_only_its_digest(settings: Settings) -> None:
    done = _cli(settings, "user", "add", "alice", "--role", "power", "--email", "alice@example.org")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("nj_") and len(token) > 40
    if settings.database_url is None:
        raw = (settings.home / paths.METADATA_DB_FILE).read_bytes()
        assert token.encode() not in raw and hashlib.sha256(token.encode()).hexdigest().encode() in raw
    db = create_engine(settings.metadata_url)
    with db.connect() as con:
        rows = con.execute(text("SELECT name, role, email, token_sha256 FROM users")).all()
    db.dispose()
    assert [tuple(r) for r in rows] == [
        ("alice", "power", "alice@example.org", hashlib.sha256(token.encode()).hexdigest())
    ]
    with TestClient(create_app(settings)) as client:  # the app's lifespan closes its database engines
        me = client.get("/api/v1/me", headers={"Authorization": f"Token {token}"})
    assert me.status_code == 200 and me.json()["role"] == "power" and me.json()["max_rows"] == 10_000_000
    again = _cli(settings, "user", "add", "alice")
    assert again.returncode == 2 and "user 'alice' exists" in again.stdout + again.stderr
    annotator = _cli(settings, "user", "add", "bot", "--role", "annotator")
    assert annotator.returncode == 2 and "needs at least one topic" in annotator.stdout + annotator.stderr


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_bad_tokens_are_refused_never_downgraded(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/me").json()["role"] == "anonymous"
        for header in ("Token nj_not-a-token", "Bearer ", "Basic dXNlcjpwYXNz", "Token"):
            response = client.get("/api/v1/me", headers={"Authorization": header})
            assert response.status_code == 401, header
            assert response.headers["www-authenticate"] == "Token"
        detail = client.get("/api/v1/me", headers={"Authorization": "Token x"}).json()["detail"]
        assert "invalid or revoked" in detail


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_a_token_query_parameter_is_honoured_or_refused_never_ignored(settings: Settings) -> None:
    """Lasair's GET form ``?token=``: a valid token was served as anonymous and a bogus one got 200."""
    with TestClient(create_app(settings)) as client:
        token = add_user_token(settings, "dora", role="power")
        me = client.get("/api/v1/me", params={"token": token})
        assert me.status_code == 200 and me.json()["name"] == "dora" and me.json()["role"] == "power"
        for bogus in ("nj_bogus", ""):
            refused = client.get("/api/v1/me", params={"token": bogus})
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Token", bogus
        both = client.get("/api/v1/me", params={"token": token}, headers={"Authorization": f"Token {token}"})
        assert both.status_code == 200 and both.json()["name"] == "dora"
        other = add_user_token(settings, "eve")
        clash = client.get("/api/v1/me", params={"token": token}, headers={"Authorization": f"Token {other}"})
        assert clash.status_code == 400
        lasair = client.get("/lasair/api/object/", params={"token": "nj_bogus", "objectId": "1"})
        assert lasair.status_code == 401


def test_rotated_and_revoked_tokens_stop_working(settings: Settings) -> None:
    client = TestClient(create_app(settings))
    token = add_user_token(settings, "carol")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "carol"
    rotated = _cli(settings, "user", "token", "carol").stdout.strip().splitlines()[-1]
    assert client.get("/api/v1/me", headers={"Authorization": f"Token {token}"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Token {rotated}"}).status_code == 200
    assert _cli(settings, "user", "remove", "carol").returncode == 0
    assert client.get("/api/v1/me", headers={"Authorization": f"Token {rotated}"}).status_code == 401


def test_rate_limits_per_token_answer_429(settings: Settings) -> None:
    limits = {**settings.role_requests_per_minute, "anonymous": 3, "user": 5}
    client = TestClient(create_app(settings.model_copy(update={"role_requests_per_minute": limits})))
    token = add_user_token(settings, "dave")
    codes = [client.get("/api/v1/me").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = client.get("/api/v1/me")
    assert "3 requests per minute for the anonymous role" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # The user's own budget is separate from the anonymous callers'.
    headers = {"Authorization": f"Token {token}"}
    assert [client.get("/api/v1/me", headers=headers).status_code for _ in range(6)] == [200] * 5 + [429]


def test_the_limiter_forgets_calls_older_than_a_minute() -> None:
    limiter = RateLimiter()
    assert limiter.check("k", 1) is None
    assert limiter.check("k", 1) is not None
    limiter._calls["k"][0] = time.monotonic() - 61
    assert limiter.check("k", 1) is None
    assert all(limiter.check("free", 0) is None for _ in range(100))


def test_a_closed_server_refuses_anonymous_calls(settings: Settings) -> None:
    client = TestClient(create_app(settings.model_copy(update={"allow_anonymous": False})))
    response = client.post("/api/v1/query", json={"sql": "SELECT 1"})
    assert response.status_code == 401 and "needs a token" in response.json()["detail"]


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_jobs_need_a_token_and_stay_private(settings: Settings) -> None:
    erin, frank = add_user_token(settings, "erin"), add_user_token(settings, "frank")
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/jobs", json={"sql": "SELECT 1 AS x"}).status_code == 401
        job = client.post("/api/v1/jobs", json={"sql": "SELECT 1 AS x"}, headers={"Authorization": f"Token {erin}"})
        assert job.status_code == 202 and job.json()["owner"] == "erin"
        job_id = job.json()["id"]
        other = client.get(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Token {frank}"})
        assert other.status_code == 404
        assert client.delete(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Token {frank}"}).status_code == 404
        mine = client.get(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Token {erin}"})
        assert mine.status_code == 200


@pytest.mark.both_databases  # and on a real PostgreSQL server (tests/conftest.py)
def test_user_names_and_roles_are_checked(settings: Settings) -> None:
    with pytest.raises(AccountError, match="bad user name"):
        add_user_token(settings, "anonymous")
    with pytest.raises(AccountError, match="unknown role"):
        add_user_token(settings, "gina", role="root")
    with pytest.raises(AccountError, match="bad topic"):
        add_user_token(settings, "hal", role="annotator", topics=("no spaces",))
