from __future__ import annotations

from fastapi.testclient import TestClient

from service.assembly import in_process_engine
from service.gateway.app import create_app
from tests.service.rest_support import tiny_settings


def test_healthz_answers() -> None:
    with TestClient(create_app(tiny_settings(), engine_factory=in_process_engine)) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
