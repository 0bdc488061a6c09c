"""The pages: ``/demo`` (static files shipped in the package, three.js vendored) and ``/redoc``, with no CDN.

fastapi-offline serves ReDoc's script locally, but the script draws a "Redocly" logo from ``https://cdn.redoc.ly``;
the page is sent with a Content-Security-Policy that allows this origin only (plus what ReDoc needs: inline styles,
``data:`` images, ``blob:`` workers), so the browser never asks the CDN and ReDoc leaves the logo out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

DEMO_DIR = Path(__file__).with_name("demo_static")
OFFLINE_CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' blob:; "
    "worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:"
)
STATIC_URL: Final = "/static-offline-docs"  # where fastapi-offline serves the documentation assets


def mount_demo(app: FastAPI) -> None:
    """Serve ``demo_static/`` at ``/demo/`` (``/demo`` redirects there)."""

    @app.get("/demo", include_in_schema=False)
    async def demo_root() -> RedirectResponse:
        return RedirectResponse("/demo/")

    app.mount("/demo/", StaticFiles(directory=DEMO_DIR, html=True), name="demo")


def mount_redoc(app: FastAPI, path: str = "/redoc") -> None:
    """``GET path``: ReDoc over the app's OpenAPI document, assets from this server, ``OFFLINE_CSP``."""

    @app.get(path, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = OFFLINE_CSP
        return page
