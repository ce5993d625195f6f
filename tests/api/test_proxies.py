"""X-Forwarded-For is believed only from configured proxies: a local client cannot pick its rate-limit address."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from nightjar.api.app import server_config
from nightjar.settings import Settings
from nightjar.streams import broker


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """``nightjar serve``'s own server configuration, on a free loopback port, in a thread."""
    port = broker.free_port()
    server = uvicorn.Server(server_config(settings, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _statuses(base: str, n: int) -> list[int]:
    return [
        httpx.get(f"{base}/api/v1/me", headers={"X-Forwarded-For": f"198.51.100.{i}"}, timeout=30).status_code
        for i in range(n)
    ]


def _limited(settings: Settings, **changes: object) -> Settings:
    rates = {**settings.role_requests_per_minute, "anonymous": 3}
    return settings.model_copy(update={"role_requests_per_minute": rates, **changes})


def test_forwarded_for_from_loopback_is_not_trusted_by_default(settings: Settings) -> None:
    assert settings.api_trusted_proxies == []
    with serving(_limited(settings)) as base:
        assert _statuses(base, 5) == [200, 200, 200, 429, 429]


@pytest.mark.parametrize("proxies", [["127.0.0.1"], ["127.0.0.0/8"]])
def test_a_configured_proxy_is_trusted(settings: Settings, proxies: list[str]) -> None:
    with serving(_limited(settings, api_trusted_proxies=proxies)) as base:
        assert _statuses(base, 5) == [200] * 5
