"""The split estimate routes and the one schema (issue 19, items 2 and 3).

- The OpenAPI of ``/v1/pose3d`` (multipart), ``/v1/pose3d/keypoints`` (JSON), the two job routes and the two stream
  frame routes is what FastAPI writes from the declared parameters: no route carries a hand-written request body,
  and the app's document is exactly FastAPI's own for those paths.
- JSON on ``/v1/pose3d`` (and ``/v1/jobs``, ``/v1/streams/{id}/frames``), the API before the split, answers exactly
  as the keypoints route.
- gRPC ``Estimate`` and REST give the same JSON document for the same input (the gRPC message derived from the REST
  document, read back through the client's decoder).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.client.results import estimate_json
from service.client.sources import encode_frame, synthetic_image
from service.gateway.app import create_app
from service.gateway.grpc_server import PublicGrpcServer
from service.gateway.inputs import MAX_FIELD_BYTES, MAX_FORM_FIELDS
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_public import settings

SPLIT = {
    "/v1/pose3d": ("multipart/form-data", "Body_estimate_pose_v1_pose3d_post"),
    "/v1/pose3d/keypoints": ("application/json", "KeypointsRequest"),
    "/v1/jobs": ("multipart/form-data", "Body_submit_job_v1_jobs_post"),
    "/v1/jobs/keypoints": ("application/json", "KeypointsRequest"),
    "/v1/streams/{stream_id}/frames": ("multipart/form-data", "Body_push_frame_v1_streams__stream_id__frames_post"),
    "/v1/streams/{stream_id}/frames/keypoints": ("application/json", "StreamFrameKeypoints"),
}
FRAMES = [[[100.0 + j + t, 200.0 + 2 * j] for j in range(17)] for t in range(3)]
KEYPOINTS = {"keypoints_2d": FRAMES, "image_size": [640, 480], "joint_set": "coco"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(settings(), engine=ToyEngine())) as test_client:
        yield test_client


def _same_answer(document: dict[str, Any]) -> dict[str, Any]:
    """The document less what differs per call (its id and its timings)."""
    return {k: v for k, v in document.items() if k not in ("request_id", "timings_ms")}


def test_the_split_routes_openapi_is_fastapis_own(client: TestClient) -> None:
    app = client.app
    schema = client.get("/openapi.json").json()
    generated = get_openapi(title="pose3d", version="0.1.0", routes=app.routes)  # type: ignore[attr-defined]
    for path, (media_type, component) in SPLIT.items():
        operation = schema["paths"][path]["post"]
        assert operation == generated["paths"][path]["post"]  # nothing added to it after FastAPI wrote it
        (content,) = operation["requestBody"]["content"].items()
        assert content == (media_type, {"schema": {"$ref": f"#/components/schemas/{component}"}})
        assert schema["components"]["schemas"][component] == generated["components"]["schemas"][component]
    for route in app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path in SPLIT:
            assert "requestBody" not in (route.openapi_extra or {}), route.path
    form = schema["components"]["schemas"]["Body_estimate_pose_v1_pose3d_post"]
    assert form["required"] == ["file"]
    assert form["allOf"] == [{"$ref": "#/components/schemas/MediaFields"}]
    assert {"model", "boxes", "every_nth", "smoothing"} <= set(
        schema["components"]["schemas"]["MediaFields"]["properties"]
    )


def test_json_on_the_old_path_answers_as_the_keypoints_route(client: TestClient) -> None:
    new = client.post("/v1/pose3d/keypoints", json=KEYPOINTS)
    old = client.post("/v1/pose3d", json=KEYPOINTS)
    assert new.status_code == old.status_code == 200, old.text
    assert _same_answer(old.json()) == _same_answer(new.json())
    assert [f["frame_index"] for f in new.json()["frames"]] == [0, 1, 2]
    bad = {**KEYPOINTS, "image_size": [0, 480]}
    assert (
        client.post("/v1/pose3d", json=bad).json()["errors"]
        == client.post("/v1/pose3d/keypoints", json=bad).json()["errors"]
    )
    assert client.post("/v1/pose3d/keypoints", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    old_job, new_job = client.post("/v1/jobs", json=KEYPOINTS), client.post("/v1/jobs/keypoints", json=KEYPOINTS)
    assert old_job.status_code == new_job.status_code == 202, old_job.text
    assert old_job.headers["location"] == f"/v1/jobs/{old_job.json()['job_id']}"
    assert {k for k in old_job.json() if k not in ("job_id", "links", "created_s")} == {
        k for k in new_job.json() if k not in ("job_id", "links", "created_s")
    }


def test_a_json_stream_frame_on_the_old_path_answers_as_the_keypoints_route(client: TestClient) -> None:
    sid = client.post("/v1/streams", json={"mode": "causal"}).json()["stream_id"]
    frame = {"keypoints_2d": FRAMES[0], "image_size": [640, 480], "frame_index": 0}
    old = client.post(f"/v1/streams/{sid}/frames", json=frame)
    new = client.post(f"/v1/streams/{sid}/frames/keypoints", json=frame)  # the same frame again: replayed
    assert old.status_code == new.status_code == 200, old.text
    assert _same_answer(old.json()) == _same_answer(new.json())
    assert [f["frame_index"] for f in new.json()["frames"]] == [0]
    bad = {**frame, "frame_index": -1}
    assert (
        client.post(f"/v1/streams/{sid}/frames", json=bad).json()["errors"]
        == client.post(f"/v1/streams/{sid}/frames/keypoints", json=bad).json()["errors"]
    )
    text = client.post(f"/v1/streams/{sid}/frames/keypoints", content=b"x", headers={"content-type": "text/plain"})
    assert text.status_code == 415
    assert client.post("/v1/streams/no-such/frames/keypoints", json=frame).status_code == 404


def test_the_declared_form_keeps_the_services_bounds(client: TestClient) -> None:
    """FastAPI reads the form within ``FORM_LIMITS``: past them a 400 problem, never a parse of all of it."""
    image = ("a.jpg", encode_frame(synthetic_image(0, 64, 48)), "image/jpeg")
    many_fields = {f"x{i}": "1" for i in range(MAX_FORM_FIELDS + 1)}
    for path in ("/v1/pose3d", "/v1/jobs"):
        too_many = client.post(path, files={"file": image}, data=many_fields)
        assert too_many.status_code == 400, too_many.text
        assert too_many.headers["content-type"] == "application/problem+json"
        two_files = client.post(path, files=[("file", image), ("other", image)])
        assert two_files.status_code == 400, two_files.text
        big_field = client.post(path, files={"file": image}, data={"model": "m" * (MAX_FIELD_BYTES + 1)})  # else a 422
        assert big_field.status_code == 400, big_field.text


@pytest.fixture
async def grpc_stub() -> AsyncIterator[Any]:
    public = PublicGrpcServer(settings(), Metrics())
    await public.start()
    public.engine = ToyEngine()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{public.port}") as channel:
        yield pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
    await public.stop(0)


async def test_grpc_and_rest_give_the_same_document(client: TestClient, grpc_stub: Any) -> None:
    keypoints = pb.KeypointsInput(image_width=640, image_height=480, joint_set=pb.JOINT_SET_COCO)
    for frame in FRAMES:
        keypoints.frames.add(xy=[v for xy in frame for v in xy])
    over_grpc = estimate_json(await grpc_stub.Estimate(pb.EstimateRequest(keypoints=keypoints)))
    over_rest = client.post("/v1/pose3d/keypoints", json=KEYPOINTS).json()
    assert _same_answer(over_grpc) == _same_answer(over_rest)
    assert set(over_grpc["timings_ms"]) == set(over_rest["timings_ms"])

    image = encode_frame(synthetic_image(0, 64, 48))
    over_grpc = estimate_json(await grpc_stub.Estimate(pb.EstimateRequest(image=image)))
    over_rest = client.post("/v1/pose3d", files={"file": ("a.jpg", image, "image/jpeg")}).json()
    assert _same_answer(over_grpc) == _same_answer(over_rest)
    assert over_rest["frames"][0]["people"]  # something to compare
    assert over_rest["warnings"]
