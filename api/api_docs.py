"""The interactive API reference (``/docs``), served with Swagger UI's files from the ``swagger-ui-bundle``
package: the server works offline, and no page of it loads anything from a CDN (FastAPI's default ``/docs``
fetches Swagger UI from jsDelivr, and ``/redoc`` ReDoc from a CDN, so neither is kept)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PATH = "/vendor/swagger-ui"


def swagger_ui_files() -> Path:
    """Swagger UI's built files as the ``swagger-ui-bundle`` package installs them (never committed here)."""
    return Path(swagger_ui_path)


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and the Swagger UI files it loads; ``app`` must be made with ``docs_url=None``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_files()), name="swagger-ui")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        )

    @app.get(f"{ASSETS_PATH}/swagger-ui-bundle.js.map", include_in_schema=False)
    async def source_map() -> FileResponse:  # browsers' developer tools ask for it
        return FileResponse(swagger_ui_files() / "swagger-ui-bundle.js.map", media_type="application/json")
