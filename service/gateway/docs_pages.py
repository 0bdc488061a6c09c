"""``/redoc`` served with no request leaving the machine.

fastapi-offline serves ReDoc's script locally, but the script itself draws a "Redocly" logo from
``https://cdn.redoc.ly`` in its menu. The page is sent with a Content-Security-Policy that allows this origin only
(plus what ReDoc needs: inline styles, ``data:`` images, ``blob:`` workers), so the browser never asks the CDN: the
logo's image fails at once and ReDoc leaves it out.
"""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse

OFFLINE_CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' blob:; "
    "worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:"
)
STATIC_URL: Final = "/static-offline-docs"
"""Where fastapi-offline serves the documentation assets."""


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
