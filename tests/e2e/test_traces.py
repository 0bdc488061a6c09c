"""Traces across processes: a gateway (in this process, in-memory span exporter) over a real ``pose3d worker``
process (exporting its spans as JSON lines); one request makes one trace from the client's ``traceparent``
through the gateway's request, admission and decode spans to the worker's call and its detect/lift/buffer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.assembly import build_engine_client
from service.config import GatewaySettings
from service.gateway.app import create_app
from tests.conftest import RedisServer
from tests.e2e.deployment import Worker, deployment_env, new_worker, wait_all_serving
from tests.service.media_samples import encode_image, person_image

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis]

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Worker, Path]]:
    logs = tmp_path_factory.mktemp("traces")
    spans = logs / "worker-spans.jsonl"
    env = deployment_env(redis_server.url) | {"POSE3D_TELEMETRY__SPANS_FILE": str(spans)}
    proc = new_worker("worker", env, logs)
    proc.start()
    try:
        wait_all_serving([proc])
        yield proc, spans
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def gateway(worker: tuple[Worker, Path], redis_server: RedisServer) -> Iterator[TestClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    settings = GatewaySettings(
        host="127.0.0.1", grpc_port=0, workers=[worker[0].address], redis_url=redis_server.url,
        default_image_model="capf", default_clip_model="pstmo-9",
    )  # fmt: skip
    try:
        with TestClient(create_app(settings, engine_factory=build_engine_client)) as http:
            yield http
    finally:
        provider.shutdown()  # the global provider cannot be unset: stop it exporting for the tests after this one


def scope(span: Any) -> str:
    return str(span.instrumentation_scope.name) if span.instrumentation_scope else ""


def worker_spans(path: Path, trace_id: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if r["context"]["trace_id"] == "0x" + trace_id]


def test_one_request_is_one_trace_across_gateway_and_worker(gateway: TestClient, worker: tuple[Worker, Path]) -> None:
    tracer = trace.get_tracer("test-client")
    with tracer.start_as_current_span("client") as client_span:
        headers: dict[str, str] = {}
        propagate.inject(headers)
        image = encode_image(person_image(64, 96))
        estimated = gateway.post("/v1/pose3d", files={"file": ("p.jpg", image, "image/jpeg")}, headers=headers)
        assert estimated.status_code == 200, estimated.text
        opened = gateway.post("/v1/streams", json={"model": "capf"}, headers=headers)
        assert opened.status_code == 201, opened.text
        sid = opened.json()["stream_id"]
        frame = {"file": ("f.jpg", image, "image/jpeg")}
        pushed = gateway.post(f"/v1/streams/{sid}/frames", files=frame, data={"frame_index": "0"}, headers=headers)
        assert pushed.status_code == 200, pushed.text
    trace_id = format(client_span.get_span_context().trace_id, "032x")
    assert estimated.headers["traceparent"].split("-")[1] == trace_id
    ours = [s for s in EXPORTER.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
    by_id = {s.context.span_id: s for s in ours}
    requests = [s for s in ours if s.name == "POST /v1/pose3d" and scope(s) == "pose3d"]
    assert len(requests) == 1, [(s.name, scope(s)) for s in ours]
    request = requests[0]
    assert request.parent is not None
    assert request.parent.span_id == client_span.get_span_context().span_id

    def children(span_id: int, name: str) -> list[Any]:
        """Spans named ``name`` under ``span_id`` (directly, or through FastAPI's own spans, as recent FastAPI
        versions trace themselves too)."""
        found = []
        for s in ours:
            parent = s.parent.span_id if s.parent is not None else None
            while parent is not None and parent != span_id and by_id.get(parent) is not None:
                above = by_id[parent]
                parent = above.parent.span_id if above.parent is not None and scope(above) == "fastapi" else None
            if parent == span_id and s.name == name:
                found.append(s)
        return found

    assert children(request.context.span_id, "admission")
    calls = children(request.context.span_id, "Worker/Submit")  # the gateway's client span of the worker call
    assert len(calls) == 1
    remote = worker_spans(worker[1], trace_id)
    served = [
        r for r in remote if r["name"] == "Worker/Submit" and r["parent_id"] == f"0x{calls[0].context.span_id:016x}"
    ]
    assert len(served) == 1, remote
    stages = {r["name"] for r in remote if r["parent_id"] == served[0]["context"]["span_id"]}
    assert {"decode", "detect", "lift"} <= stages, stages  # images travel encoded: the worker decodes them
    push_server = [r for r in remote if r["name"] == "Worker/Submit" and r is not served[0]]  # the stream frame
    assert push_server, {r["name"] for r in remote}
    push_stages = {r["name"] for r in remote if r["parent_id"] == push_server[0]["context"]["span_id"]}
    assert {"detect", "buffer", "lift"} <= push_stages, push_stages
    assert all(s.context.span_id in by_id for s in ours)
