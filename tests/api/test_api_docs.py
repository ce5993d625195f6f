"""The interactive API reference works offline: /docs and everything it loads come from this server."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from nightjar.api.app import create_app
from nightjar.settings import Settings


def test_docs_load_swagger_ui_from_this_server_only(settings: Settings) -> None:
    client = TestClient(create_app(settings))
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    loaded = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", page.text)
    urls = [a or b for a, b in loaded]
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for url in urls:
        assert client.get(url).status_code == 200, url
    script = client.get("/vendor/swagger-ui/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "SwaggerUIBundle" in script.text
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN


def test_openapi_schema_is_still_served(settings: Settings) -> None:
    schema = TestClient(create_app(settings)).get("/openapi.json").json()
    assert schema["info"]["title"] == "Nightjar" and "/api/v1/query" in schema["paths"]
