"""The REST gateway over a RemoteEngineClient (real gRPC to a worker servicer around a toy engine): what
reaches the gateway ↔ worker codec must already be valid, so no input turns into a 500 on the way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from service.api.schemas import MAX_FRAME_INDEX
from service.config import GatewaySettings
from service.gateway.app import create_app
from service.rpc.remote_engine import RemoteEngineClient
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_remote import Refusing, start_worker

SKELETON = [[300.0 + 3 * j, 100.0 + 12 * j] for j in range(17)]
PROBLEM = "application/problem+json"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    worker = await start_worker(ToyEngine())
    remote = RemoteEngineClient([worker.address])
    await remote.start()
    assert await remote.workers.wait_ready(60)
    app = create_app(GatewaySettings(default_image_model="toy", default_clip_model="toy"), engine=remote)
    app.state.gateway.engine = remote  # what the lifespan does (ASGITransport runs no lifespan)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http
    finally:
        await remote.aclose()
        await worker.server.stop(0)


def _frame(index: int) -> dict[str, object]:
    return {"keypoints_2d": SKELETON, "image_size": [640, 480], "frame_index": index}


async def test_stream_frame_index_past_the_wire_range_is_422(client: httpx.AsyncClient) -> None:
    stream_id = (await client.post("/v1/streams", json={})).json()["stream_id"]
    ok = await client.post(f"/v1/streams/{stream_id}/frames", json=_frame(MAX_FRAME_INDEX))
    assert ok.status_code == 200, ok.text
    for index in (MAX_FRAME_INDEX + 1, 2**63, 10**30):  # 2**63 overflowed the worker protocol's int64: a 500
        refused = await client.post(f"/v1/streams/{stream_id}/frames", json=_frame(index))
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert refused.json()["errors"][0]["loc"] == ["frame_index"]


async def test_an_overlong_model_name_is_refused_not_echoed(client: httpx.AsyncClient) -> None:
    name = "m" * 50_000  # within the 64 KiB bound of a stream's open body, so its field is what refuses it
    for path, body in (
        ("/v1/streams", {"model": name}),
        ("/v1/pose3d", {"keypoints_2d": SKELETON, "image_size": [640, 480], "model": name}),
    ):
        refused = await client.post(path, json=body)
        assert refused.status_code == 422, refused.text[:300]
        assert len(refused.content) < 4096  # the 50 kB name is not reflected into the problem body
    served = await client.post("/v1/pose3d", json={"keypoints_2d": SKELETON, "image_size": [640, 480]})
    assert served.status_code == 200, served.text
    assert served.json()["model"]["name"] == "toy"


async def test_every_stream_response_has_the_model_object_and_warnings(client: httpx.AsyncClient) -> None:
    opened = (await client.post("/v1/streams", json={})).json()
    stream_id = opened["stream_id"]
    replies = [
        opened,
        (await client.post(f"/v1/streams/{stream_id}/frames", json=_frame(0))).json(),
        (await client.get(f"/v1/streams/{stream_id}")).json(),
        (await client.delete(f"/v1/streams/{stream_id}")).json(),
    ]
    served = (await client.post("/v1/pose3d", json={"keypoints_2d": SKELETON, "image_size": [640, 480]})).json()
    for reply in replies:
        assert reply["model"] == served["model"], reply  # one shape: {name, version, weights, random_weights}
        assert served["warnings"][0] in reply["warnings"]  # the random-weights warning, on every response


async def test_a_stream_frame_is_one_round_trip_to_the_worker() -> None:
    """POST /v1/streams/{id}/frames: one Submit call answers the frame, model included (no GetStream first)."""
    worker = await start_worker(ToyEngine())
    remote = RemoteEngineClient([worker.address])
    await remote.start()
    assert await remote.workers.wait_ready(60)
    app = create_app(GatewaySettings(default_image_model="toy", default_clip_model="toy"), engine=remote)
    app.state.gateway.engine = remote
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            stream_id = (await http.post("/v1/streams", json={})).json()["stream_id"]
            await http.get("/v1/models")  # the model list is cached: no Describe call per frame either
            before = (worker.engine.calls, worker.engine.lookups)
            pushed = await http.post(f"/v1/streams/{stream_id}/frames", json=_frame(0))
            after = (worker.engine.calls, worker.engine.lookups)
            unknown = await http.post("/v1/streams/no-such-stream/frames", json=_frame(0))
    finally:
        await remote.aclose()
        await worker.server.stop(0)
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["model"]["name"] == "toy"
    assert [f["frame_index"] for f in pushed.json()["frames"]] == [0]
    assert after == (before[0] + 1, before[1])
    assert unknown.status_code == 404, unknown.text


async def test_the_gateways_own_metrics_see_the_remote_worker_up(client: httpx.AsyncClient) -> None:
    scrape = (await client.get("/metrics")).text
    assert "pose3d_worker_up 1.0" in scrape.splitlines()


async def test_models_lists_the_workers_detectors(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/models")).json()
    assert [m["name"] for m in listed["models"]] == ["toy"]
    (detector,) = listed["components"]  # came over the worker protocol (ListModelsResponse.components)
    assert detector["kind"] == "keypoint_detector"
    assert detector["name"] == "hrnet-toy"
    assert detector["weights"] == "random"


async def test_an_over_capacity_worker_answers_503_with_retry_after_once() -> None:
    """The worker's refusal (RESOURCE_EXHAUSTED + ``retry-after-s``) crosses the gateway as it is: one worker call,
    no retry by the channel's policy, 503 problem+json with Retry-After."""
    worker = await start_worker(Refusing("full"))
    remote = RemoteEngineClient([worker.address])
    await remote.start()
    assert await remote.workers.wait_ready(60)
    app = create_app(GatewaySettings(default_image_model="toy", default_clip_model="toy"), engine=remote)
    app.state.gateway.engine = remote
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            body = {"keypoints_2d": [SKELETON], "image_size": [640, 480]}
            refused = await http.post("/v1/pose3d", json=body)
    finally:
        await remote.aclose()
        await worker.server.stop(0)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert refused.json()["type"].endswith("over-capacity")
    assert refused.headers["retry-after"] == "3"  # 2.5 s, rounded up
    assert worker.engine.calls == 1  # refused once: never retried
