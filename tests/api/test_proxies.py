"""X-Forwarded-For is believed only from configured proxies: a local client cannot pick its rate-limit address."""

from __future__ import annotations

import httpx
import pytest

from nightjar.settings import Settings

from .server import serving


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
    with serving(_limited(settings), own_config=True) as base:
        assert _statuses(base, 5) == [200, 200, 200, 429, 429]


@pytest.mark.parametrize("proxies", [["127.0.0.1"], ["127.0.0.0/8"]])
def test_a_configured_proxy_is_trusted(settings: Settings, proxies: list[str]) -> None:
    with serving(_limited(settings, api_trusted_proxies=proxies), own_config=True) as base:
        assert _statuses(base, 5) == [200] * 5
