"""A request's private stream takes none of the key's open-stream slots (``MAX_STREAMS``, docs/ownership-and-quotas.md).

A long keypoint sequence posted whole (longer than half the engine's queue) and an NDJSON answer run as a private
engine stream that lives only inside the request (opened, fed, closed — shielded — by it; its id is never told).
It was opened through the key's ownership layer, so it claimed a slot: a key holding its ``MAX_STREAMS`` open
streams got 429 "this key holds 1 open streams" for a plain estimate. Requests are bounded already (the rate
bucket, the in-flight bound); the open-stream limit bounds streams that outlive a request. Now a private stream
claims no slot (and no owner: no key can address it). The clock is the test's (it never moves).
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from service.config import EngineSettings, QuotaSettings
from service.metrics import Metrics
from service.security.guard import Security
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import Clock, Keys, bearer, make_keys, secured

PERSON = [[100.0 + j, 200.0 + j] for j in range(17)]
LONG = {"keypoints_2d": [PERSON] * 8, "image_size": [640, 480]}  # past max_queue // 2: a private stream


def app_with_one_stream_per_key(tmp: Path) -> tuple[TestClient, Keys, ToyEngine]:
    from service.gateway.app import create_app

    keys = make_keys(tmp)
    settings = secured(keys, QuotaSettings(rate_per_s=0.0, max_streams=1), engine=EngineSettings(max_queue=4))
    metrics, engine = Metrics(), ToyEngine()
    security = Security(settings, metrics, clock=Clock())
    return TestClient(create_app(settings, engine=engine, metrics=metrics, security=security)), keys, engine


def test_a_key_at_its_stream_limit_still_estimates_through_private_streams(tmp_path: Path) -> None:
    app, keys, engine = app_with_one_stream_per_key(tmp_path)
    alice = bearer(keys.alice)
    with app as http:
        held = http.post("/v1/streams", json={}, headers=alice)  # the key's one slot
        assert held.status_code == 201
        posted = http.post("/v1/pose3d/keypoints", json=LONG, headers=alice)
        assert posted.status_code == 200, posted.text
        assert len(posted.json()["frames"]) == 8
        lines = http.post("/v1/pose3d/keypoints", json=LONG, headers=alice | {"Accept": "application/x-ndjson"})
        assert lines.status_code == 200, lines.text
        assert len([json.loads(line) for line in lines.text.splitlines() if line]) == 8
        assert set(engine.streams) == {held.json()["stream_id"]}  # the private streams were closed
        assert http.post("/v1/streams", json={}, headers=alice).status_code == 429  # the limit still holds
        assert http.delete(f"/v1/streams/{held.json()['stream_id']}", headers=alice).status_code == 200
        assert http.post("/v1/streams", json={}, headers=alice).status_code == 201
