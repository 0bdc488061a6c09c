"""FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from service.config import GatewaySettings


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the gateway app for ``settings`` (nothing is read from the environment here)."""
    app = FastAPI(title="pose3d", version="0.1.0", description="3D human pose estimation service")
    app.state.settings = settings

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process is up."""
        return {"status": "ok"}

    return app
