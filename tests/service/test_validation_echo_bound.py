"""A 422 echoes a client's names and messages only so far: each ``loc`` item, ``msg`` and the ``detail``'s field
at most ``ECHO_CHARS`` characters (ending in ``…`` when cut), at most ``MAX_LISTED_ERRORS`` errors listed and the
``detail`` saying how many more there were.

A JSON body with a 200 000-character unknown key got the key back whole in ``errors[].loc`` and in ``detail`` (a
WebSocket's problem message and a gRPC ``INVALID_ARGUMENT`` detail too) — and before that, ``redact`` on the detail
held the event loop for minutes (quadratic in a long run of letters). Every transport builds its 422 in
``validation_problem``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from service.api.validation import ECHO_CHARS, MAX_LISTED_ERRORS, validation_problem
from service.config import GatewaySettings
from service.gateway.app import create_app
from service.gateway.grpc_server import PublicGrpcServer
from service.gateway.jobs.runner import JobRunner, Jobs
from service.jobs.memory import MemoryJobStore
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from tests.service.grpc_toy_engine import ToyEngine

KEY = "k" * 200_000
SKELETON = [[300.0 + 3 * j, 100.0 + 12 * j] for j in range(17)]
KEYPOINTS = {"keypoints_2d": SKELETON, "image_size": [640, 480], KEY: 1}


class _Loud(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int = 0

    @field_validator("value")
    @classmethod
    def _says_a_lot(cls, value: int) -> int:
        raise ValueError("x" * 100_000)


def _echoes_the_key(text: str) -> bool:
    """Whether ``text`` holds more of :data:`KEY` than the bound allows (a plain bool: pytest's explanation of a
    failed ``not in`` on texts this long would take minutes)."""
    return KEY[: ECHO_CHARS + 1] in text


def _bounded(problem: dict[str, Any]) -> None:
    """Every echoed text of ``problem`` within the bound."""
    assert len(problem["detail"]) < 3 * ECHO_CHARS, len(problem["detail"])
    for error in problem["errors"]:
        assert all(len(str(p)) <= ECHO_CHARS for p in error["loc"])
        assert len(error["msg"]) <= ECHO_CHARS
        assert len(error["type"]) <= ECHO_CHARS


def test_each_name_and_message_is_cut_and_the_errors_left_out_are_counted() -> None:
    many = {f"{i}{KEY[:1000]}": i for i in range(50)}
    with pytest.raises(ValidationError) as failed:
        _Loud.model_validate({"value": 1, **many})
    problem = validation_problem(failed.value, "body")
    errors = problem.extensions["errors"]
    assert len(errors) == MAX_LISTED_ERRORS
    assert errors[0]["msg"].endswith("…")
    assert len(errors[0]["msg"]) == ECHO_CHARS
    assert errors[1]["loc"][0].endswith("…")
    assert len(errors[1]["loc"][0]) == ECHO_CHARS
    assert problem.detail.endswith("(and 50 more; 31 not listed in errors)")
    _bounded({"detail": problem.detail, "errors": errors})


def test_framework_validation_errors_of_forms_and_bodies_are_bounded_alike() -> None:
    raw = [{"loc": ("body", KEY), "msg": "m" * 10_000, "type": "missing"}] * 30
    problem = validation_problem(RequestValidationError(raw))
    assert len(problem.extensions["errors"]) == MAX_LISTED_ERRORS
    assert "(and 29 more; 10 not listed in errors)" in problem.detail
    _bounded({"detail": problem.detail, "errors": problem.extensions["errors"]})


@pytest.fixture
def http() -> Iterator[TestClient]:
    settings = GatewaySettings(default_image_model="toy", default_clip_model="toy")
    with TestClient(create_app(settings, engine=ToyEngine())) as client:
        yield client


@pytest.mark.parametrize("path", ["/v1/pose3d/keypoints", "/v1/jobs/keypoints"])
def test_a_json_body_with_a_long_unknown_key_gets_a_bounded_422(http: TestClient, path: str) -> None:
    refused = http.post(path, json=KEYPOINTS)
    assert refused.status_code == 422, refused.text[:300]
    assert not _echoes_the_key(refused.text)
    _bounded(refused.json())


def test_a_websocket_message_with_a_long_unknown_key_gets_a_bounded_problem(http: TestClient) -> None:
    with http.websocket_connect("/v1/streams/ws") as ws:
        ws.send_json({"type": "open", KEY: 1})
        problem = ws.receive_json()["problem"]
    assert problem["status"] == 422
    assert not _echoes_the_key(json.dumps(problem))
    _bounded(problem)


@pytest.fixture
async def grpc_stub() -> AsyncIterator[Any]:
    settings = GatewaySettings(default_image_model="toy", default_clip_model="toy")
    engine = ToyEngine()
    store = MemoryJobStore(60.0)
    runner = JobRunner(store, settings, lambda: engine)
    public = PublicGrpcServer(settings, Metrics())
    public.servicer.jobs = Jobs(store, runner)
    port = await public.start()
    public.engine = engine
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
    await public.stop(0)
    await runner.aclose()


async def test_a_grpc_job_with_a_long_unknown_key_is_invalid_argument_with_a_bounded_detail(grpc_stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await grpc_stub.SubmitJob(pb.SubmitJobRequest(keypoints_json=json.dumps(KEYPOINTS)))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()[:300]
    details = refused.value.details() or ""
    assert len(details) < 3 * ECHO_CHARS
    assert not _echoes_the_key(details)
