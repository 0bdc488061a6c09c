"""API keys, ownership and quotas on REST (a real app and its middleware over the toy engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.config import QuotaSettings
from service.metrics import Metrics
from service.security.guard import Security
from service.security.keys import revoke_key, split_key
from service.security.quotas import MemoryQuotaStore, QuotaStore, RedisQuotaStore
from tests.conftest import RedisServer
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import Clock, Keys, bearer, make_keys, secured

PERSON = [[100.0 + j, 200.0 + j] for j in range(17)]


def app_for(keys: Keys, engine: ToyEngine, *, store: QuotaStore | None = None, clock: Clock | None = None,
            quotas: QuotaSettings | None = None) -> TestClient:  # fmt: skip
    from service.gateway.app import create_app

    settings = secured(keys, quotas)
    metrics = Metrics()
    security = Security(settings, metrics, store=store, clock=clock or Clock())
    return TestClient(create_app(settings, engine=engine, metrics=metrics, security=security))


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def client(keys: Keys) -> Iterator[TestClient]:
    with app_for(keys, ToyEngine()) as http:
        yield http


def test_no_wrong_revoked_key_is_401_and_valid_key_serves(client: TestClient, keys: Keys) -> None:
    missing = client.get("/v1/models")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["type"].endswith(":unauthenticated")
    key_id, _ = split_key(keys.alice) or ("", "")
    wrong = f"p3d_{key_id}_{'x' * 43}"
    for headers in (bearer(wrong), {"X-API-Key": keys.revoked}, bearer("not-a-key"), {"Authorization": "Basic abc"}):
        assert client.get("/v1/models", headers=headers).status_code == 401, headers
    assert client.get("/v1/models", headers=bearer(keys.alice)).status_code == 200
    assert client.get("/v1/models", headers={"X-API-Key": keys.bob}).status_code == 200
    metrics = client.get("/metrics", headers=bearer(keys.alice)).text
    assert 'pose3d_auth_failures_total{reason="missing"}' in metrics
    assert 'pose3d_key_requests_total{outcome="admitted"}' in metrics
    assert 'key="' not in metrics  # no key ids for other tenants to read


def test_revocation_and_new_keys_apply_without_restart(client: TestClient, keys: Keys) -> None:
    assert client.get("/v1/models", headers=bearer(keys.bob)).status_code == 200
    bob_id = (split_key(keys.bob) or ("", ""))[0]
    revoke_key(keys.file, bob_id)
    assert client.get("/v1/models", headers=bearer(keys.bob)).status_code == 401
    assert client.get("/v1/models", headers=bearer(keys.alice)).status_code == 200


def test_open_routes_and_settings_for_metrics_and_docs(client: TestClient, keys: Keys) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=bearer(keys.alice)).status_code == 200, path
    assert client.get("/no/such/route").status_code == 404  # unknown paths reveal nothing either way


def test_a_second_key_cannot_see_push_or_close_the_first_keys_stream(client: TestClient, keys: Keys) -> None:
    opened = client.post("/v1/streams", json={}, headers=bearer(keys.alice))
    assert opened.status_code == 201, opened.text
    sid = opened.json()["stream_id"]
    frame = {"keypoints_2d": PERSON, "image_size": [640, 480], "frame_index": 0}
    for method, path, body in (("GET", f"/v1/streams/{sid}", None), ("POST", f"/v1/streams/{sid}/frames", frame),
                               ("DELETE", f"/v1/streams/{sid}", None)):  # fmt: skip
        other = client.request(method, path, json=body, headers=bearer(keys.bob))
        assert other.status_code == 404, (method, other.text)
        assert other.json()["type"].endswith(":unknown-stream")
    assert client.post(f"/v1/streams/{sid}/frames", json=frame, headers=bearer(keys.alice)).status_code == 200
    assert client.get(f"/v1/streams/{sid}", headers=bearer(keys.alice)).json()["frames_received"] == 1
    assert client.delete(f"/v1/streams/{sid}", headers=bearer(keys.alice)).status_code == 200


def test_ownership_holds_across_gateways_sharing_redis(keys: Keys, redis_server: RedisServer) -> None:
    engine = ToyEngine()  # the workers both gateways share
    store_1, store_2 = RedisQuotaStore(redis_server.url), RedisQuotaStore(redis_server.url)
    with app_for(keys, engine, store=store_1) as gateway_1, app_for(keys, engine, store=store_2) as gateway_2:
        sid = gateway_1.post("/v1/streams", json={}, headers=bearer(keys.alice)).json()["stream_id"]
        assert gateway_2.get(f"/v1/streams/{sid}", headers=bearer(keys.bob)).status_code == 404
        assert gateway_2.delete(f"/v1/streams/{sid}", headers=bearer(keys.bob)).status_code == 404
        assert gateway_2.get(f"/v1/streams/{sid}", headers=bearer(keys.alice)).status_code == 200
        assert gateway_2.delete(f"/v1/streams/{sid}", headers=bearer(keys.alice)).status_code == 200


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_rate_quota_is_429_with_retry_after_and_refills(
    keys: Keys, backend: str, request: pytest.FixtureRequest
) -> None:
    store: QuotaStore = MemoryQuotaStore()
    if backend == "redis":
        store = RedisQuotaStore(request.getfixturevalue("redis_server").url)
    clock = Clock()
    quotas = QuotaSettings(rate_per_s=0.5, burst=2, max_streams=0)
    with app_for(keys, ToyEngine(), store=store, clock=clock, quotas=quotas) as http:
        assert [http.get("/v1/models", headers=bearer(keys.alice)).status_code for _ in range(2)] == [200, 200]
        refused = http.get("/v1/models", headers=bearer(keys.alice))
        assert refused.status_code == 429
        assert refused.json()["type"].endswith(":quota-exceeded")
        assert refused.headers["Retry-After"] == "2"  # one token at 0.5/s
        assert http.get("/v1/models", headers=bearer(keys.bob)).status_code == 200  # per key
        assert http.get("/healthz").status_code == 200  # never limited
        if backend == "memory":  # Redis refills by its own clock (tests/security/test_rate_limit_skew.py)
            clock.now += 2.0
            assert http.get("/v1/models", headers=bearer(keys.alice)).status_code == 200
            assert http.get("/v1/models", headers=bearer(keys.alice)).status_code == 429
        metrics = http.get("/metrics", headers=bearer(keys.bob)).text
        assert 'outcome="rate_limited"' in metrics


def test_open_stream_quota_frees_on_close_and_on_expiry(keys: Keys) -> None:
    clock = Clock()
    quotas = QuotaSettings(rate_per_s=0.0, max_streams=1)
    with app_for(keys, ToyEngine(), clock=clock, quotas=quotas) as http:
        first = http.post("/v1/streams", json={}, headers=bearer(keys.alice)).json()["stream_id"]
        refused = http.post("/v1/streams", json={}, headers=bearer(keys.alice))
        assert refused.status_code == 429
        assert "Retry-After" in refused.headers
        assert http.post("/v1/streams", json={}, headers=bearer(keys.bob)).status_code == 201
        assert http.delete(f"/v1/streams/{first}", headers=bearer(keys.alice)).status_code == 200
        second = http.post("/v1/streams", json={}, headers=bearer(keys.alice))
        assert second.status_code == 201
        clock.now += 10_000.0  # past engine.stream_ttl_s: the idle stream no longer holds a slot (nor an owner)
        assert http.post("/v1/streams", json={}, headers=bearer(keys.alice)).status_code == 201
        assert http.get(f"/v1/streams/{second.json()['stream_id']}", headers=bearer(keys.alice)).status_code == 404


def test_websocket_streams_need_a_key_in_the_handshake(client: TestClient, keys: Keys) -> None:
    from starlette.websockets import WebSocketDisconnect

    for headers in ({}, bearer(keys.revoked)):
        with (
            client.websocket_connect("/v1/streams/ws", headers=headers) as refused_ws,  # accepted, then closed
            pytest.raises(WebSocketDisconnect) as refused,
        ):
            refused_ws.receive_json()
        assert refused.value.code == 4401
    with client.websocket_connect("/v1/streams/ws", headers=bearer(keys.alice)) as ws:
        ws.send_json({"type": "open"})
        opened = ws.receive_json()
        assert opened["type"] == "opened", opened
        sid = opened["stream_id"]
        ws.send_json({"type": "close"})
        assert ws.receive_json()["final"] is True
    assert client.get(f"/v1/streams/{sid}", headers=bearer(keys.alice)).status_code == 404  # closed


@pytest.mark.timeout(120)  # without the revocation's end the lines never end: a failure, not a hang
def test_a_revoked_keys_open_ndjson_results_end_with_a_401_line(keys: Keys) -> None:
    """A job's NDJSON results, open while the job runs, end with an ``{"error": 401}`` line once its key is revoked,
    as its gRPC ``WatchJob`` and its open streams end (before, they went on for as long as the job ran). The job
    stays running here (every engine call waits ~forever), so only the revocation can end the lines."""
    with app_for(keys, ToyEngine(delay_s=3600.0)) as client:
        body = {"keypoints_2d": [PERSON] * 4, "image_size": [640, 480]}
        job = client.post("/v1/jobs/keypoints", json=body, headers=bearer(keys.alice))
        assert job.status_code == 202, job.text
        results = f"/v1/jobs/{job.json()['job_id']}/results"
        headers = {**bearer(keys.alice), "Accept": "application/x-ndjson"}
        with client.stream("GET", results, headers=headers) as lines:
            revoke_key(keys.file, (split_key(keys.alice) or ("", ""))[0])
            last = json.loads(next(lines.iter_lines()))
        assert last["error"]["status"] == 401
        assert last["error"]["type"].endswith(":unauthenticated")
