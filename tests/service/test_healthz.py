from __future__ import annotations

from fastapi.testclient import TestClient

from service.config import GatewaySettings
from service.gateway.app import create_app


def test_healthz_answers() -> None:
    with TestClient(create_app(GatewaySettings())) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
