"""``/demo``: the demo page (static files shipped in the package, three.js vendored; no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("demo_static")


def mount(app: FastAPI) -> None:
    """Serve ``demo_static/`` at ``/demo/`` (``/demo`` redirects there)."""

    @app.get("/demo", include_in_schema=False)
    async def demo_root() -> RedirectResponse:
        return RedirectResponse("/demo/")

    app.mount("/demo/", StaticFiles(directory=STATIC_DIR, html=True), name="demo")
