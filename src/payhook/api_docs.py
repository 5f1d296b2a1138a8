"""`/docs`: Swagger UI served by payhook itself, so the API reference works offline.

FastAPI's default page loads Swagger UI from a CDN, and is blank without one. This serves the
pinned copy that the `swagger-ui-bundle-v2` package ships (spec-first's bundle of swagger-ui 5,
which renders OpenAPI 3.1). ReDoc, CDN-only too, is not offered.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Add `/docs` and its assets to an app built with `docs_url=None, redoc_url=None`."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=None,
        )
