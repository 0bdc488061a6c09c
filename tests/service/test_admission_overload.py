"""Admission by expected time through the real transports: a request whose wait, by the measured drain rate, would
keep it past its deadline is refused at once with 503 (REST: problem+json + ``Retry-After``) or ``RESOURCE_EXHAUSTED``
(gRPC: ``retry-after-s`` trailer), the Retry-After computed from that rate — never a constant.

No wall-clock bound: the lifter's measured rate is set to 100 s per window, so the expected wait of any request
behind queued work is hundreds of seconds, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service.config import EngineSettings
from service.engine.batcher import DynamicBatcher
from service.engine.inprocess import InProcessEngine, build_engine
from service.gateway.app import create_app
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.security.guard import Security
from service.security.owned_engine import OwnedEngine, owned
from service.telemetry import rest_trace
from tests.service.rest_support import assert_problem, live_server, tiny_settings

SLOW_S_PER_WINDOW = 100.0
DEADLINE_S = 60.0


def one_frame() -> dict[str, Any]:
    return {"keypoints_2d": [[[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]], "image_size": [640, 480]}


def settings() -> Any:
    engine = EngineSettings(max_batch_size=16, max_delay_ms=2.0, request_timeout_s=600.0)
    return tiny_settings(engine=engine)


def slow_lift(engine: InProcessEngine) -> DynamicBatcher[Any, Any]:
    """The default keypoints model's lift batcher, its measured drain rate set to 100 s per window."""
    batcher = engine.pipeline.lift["pstmo-9"]
    batcher.rate.seconds_per_unit = SLOW_S_PER_WINDOW
    return batcher


def wait_for(condition: Any, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.01)


@contextmanager
def held_inference(engine: InProcessEngine) -> Iterator[None]:
    """Occupy the inference thread: the next lift batch is taken (in flight) and what follows stays queued."""
    gate = threading.Event()
    engine.pipeline.infer_pool.submit(gate.wait, 300)
    try:
        yield
    finally:
        gate.set()


def queue_one_behind_one(batcher: DynamicBatcher[Any, Any], send: Any, pool: ThreadPoolExecutor) -> list[Future[Any]]:
    """Two requests: the first one's window queued (its batch waits for the held thread), the second one's behind
    it."""
    first = pool.submit(send)
    wait_for(lambda: batcher.queued_units == 1, "first queued")
    second = pool.submit(send)
    wait_for(lambda: batcher.queued_units == 2, "second queued")
    return [first, second]


def test_rest_refuses_at_once_with_503_and_a_computed_retry_after() -> None:
    with live_server(settings()) as live, live.client(timeout_s=600) as client, ThreadPoolExecutor(2) as pool:
        assert client.post("/v1/pose3d", json=one_frame()).status_code == 200  # measures the rate (then slowed)
        state = live.app.state.gateway
        engine: InProcessEngine = getattr(state.engine, "inner", state.engine)
        batcher = slow_lift(engine)
        headers = {"X-Request-Timeout": str(DEADLINE_S)}
        with held_inference(engine):
            admitted = queue_one_behind_one(batcher, lambda: client.post("/v1/pose3d", json=one_frame()), pool)
            refused = client.post("/v1/pose3d", json=one_frame(), headers=headers)
            body = assert_problem(refused, 503, "over-capacity")
            expected = batcher.expected_wait_s(1)
            assert expected is not None
        # wait ≈ 3 windows at 100 s (2 queued ahead, its own), less the share of the 60 s deadline it may wait
        retry_after = int(refused.headers["retry-after"])
        assert 2 * SLOW_S_PER_WINDOW - DEADLINE_S <= retry_after <= 3 * SLOW_S_PER_WINDOW
        assert "over capacity" in body["detail"]
        assert "lift" in body["detail"]
        assert [f.result(300).status_code for f in admitted] == [200, 200]  # admitted work is served
        metrics = client.get("/metrics").text
        assert 'pose3d_rejected_total{reason="expected-wait"} 1.0' in metrics
        assert 'pose3d_stage_rate_units_per_second{stage="lift"}' in metrics
        assert 'pose3d_expected_wait_seconds_count{stage="lift"}' in metrics


@pytest.mark.parametrize("route", ["/v1/pose3d", "/v1/pose3d/keypoints"])
def test_rest_refuses_before_reading_the_body(route: str) -> None:
    """The engine's door is asked from the headers: a body that is not even JSON is answered 503 (not 400) while
    the engine would refuse the cheapest keypoints request; once it drains, the same body is read (and is a 400) —
    on the keypoints route and on its JSON alias alike."""
    with live_server(settings()) as live, live.client(timeout_s=600) as client, ThreadPoolExecutor(2) as pool:
        assert client.post("/v1/pose3d", json=one_frame()).status_code == 200  # measures the rate (then slowed)
        state = live.app.state.gateway
        engine: InProcessEngine = getattr(state.engine, "inner", state.engine)
        batcher = slow_lift(engine)
        headers = {"X-Request-Timeout": str(DEADLINE_S), "Content-Type": "application/json"}
        with held_inference(engine):
            admitted = queue_one_behind_one(batcher, lambda: client.post("/v1/pose3d", json=one_frame()), pool)
            refused = client.post(route, content=b"not json at all", headers=headers)
            body = assert_problem(refused, 503, "over-capacity")
            assert "lift" in body["detail"]
            assert int(refused.headers["retry-after"]) >= 2 * SLOW_S_PER_WINDOW - DEADLINE_S
        assert [f.result(300).status_code for f in admitted] == [200, 200]
        metrics = client.get("/metrics").text
        assert 'pose3d_rejected_total{reason="expected-wait"} 1.0' in metrics  # counted once, by its reason
        assert client.post(route, content=b"not json at all", headers=headers).status_code == 400  # drained


async def test_grpc_refuses_at_once_with_unavailable_and_a_retry_after_trailer() -> None:
    s = settings()
    metrics = Metrics()
    public = PublicGrpcServer(s, metrics)
    await public.start()
    engine = await build_engine(s, metrics)
    public.engine = engine
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{public.port}")
    stub = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
    msg = pb.KeypointsInput(image_width=640, image_height=480, joint_set=pb.JOINT_SET_COCO)
    msg.frames.add(xy=[float(320 + 4 * j) if k == 0 else float(180 + 10 * j) for j in range(17) for k in (0, 1)])
    request = pb.EstimateRequest(keypoints=msg)
    try:
        await stub.Estimate(request)  # measures the rate (then slowed)
        batcher = slow_lift(engine)
        with held_inference(engine):
            first = asyncio.ensure_future(stub.Estimate(request))
            await until(lambda: batcher.queued_units == 1)  # its batch waits for the held thread
            second = asyncio.ensure_future(stub.Estimate(request))
            await until(lambda: batcher.queued_units == 2)
            try:
                await stub.Estimate(request, timeout=DEADLINE_S)
            except grpc.aio.AioRpcError as e:
                refused = e
            else:
                raise AssertionError("a request behind 200 s of queued work was admitted with a 60 s deadline")
        assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # a refusal, not "not serving": never retried
        trailers = {str(k): str(v) for k, v in refused.trailing_metadata() or ()}
        assert trailers["pose3d-error-type"] == "over-capacity"
        assert 2 * SLOW_S_PER_WINDOW - DEADLINE_S <= float(trailers["retry-after-s"]) <= 3 * SLOW_S_PER_WINDOW
        await first
        await second  # the admitted ones are served
    finally:
        await channel.close()
        await public.stop(0)
        await engine.aclose()


async def until(condition: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.01)


def test_an_idle_service_admits_a_sequence_whatever_its_expected_time() -> None:
    """Empty queues admit one request of any size: a slow measured rate never refuses work on an idle service."""
    with live_server(settings()) as live, live.client(timeout_s=600) as client:
        assert client.post("/v1/pose3d", json=one_frame()).status_code == 200
        state = live.app.state.gateway
        slow_lift(getattr(state.engine, "inner", state.engine))  # 40 windows would take 4000 s by the estimate
        poses = [[[320.0 + 4 * j + t, 180.0 + 10 * j, 0.9] for j in range(17)] for t in range(40)]
        body = {"keypoints_2d": poses, "image_size": [640, 480]}
        response = client.post("/v1/pose3d", json=body, headers={"X-Request-Timeout": "30"})
        assert response.status_code == 200, response.text
        assert len(response.json()["frames"]) == 40


def test_count_admission_is_the_bound_alone() -> None:
    """``engine.admission = "count"`` (the rule before issue 10): no refusal by time, only the queue bound."""
    engine_settings = EngineSettings(max_batch_size=16, max_delay_ms=2.0, request_timeout_s=600.0, admission="count")
    settings_ = tiny_settings(engine=engine_settings)
    with live_server(settings_) as live, live.client(timeout_s=600) as client, ThreadPoolExecutor(3) as pool:
        assert client.post("/v1/pose3d", json=one_frame()).status_code == 200
        state = live.app.state.gateway
        engine: InProcessEngine = getattr(state.engine, "inner", state.engine)
        batcher = slow_lift(engine)
        with held_inference(engine):
            admitted = queue_one_behind_one(batcher, lambda: client.post("/v1/pose3d", json=one_frame()), pool)
            third = pool.submit(
                lambda: client.post("/v1/pose3d", json=one_frame(), headers={"X-Request-Timeout": "60"})
            )
            wait_for(lambda: batcher.queued_units == 3, "third queued, not refused")
        assert [f.result(300).status_code for f in [*admitted, third]] == [200, 200, 200]


def refused_by(live: Any, pool: ThreadPoolExecutor, body: bytes, request_id: str) -> httpx.Response:
    """One estimate posted while the engine would refuse it (two requests held ahead, the lift rate slowed)."""
    with live.client(timeout_s=600) as client:
        assert client.post("/v1/pose3d", json=one_frame()).status_code == 200  # measures the rate (then slowed)
        state = live.app.state.gateway
        engine: InProcessEngine = getattr(state.engine, "inner", state.engine)
        batcher = slow_lift(engine)
        headers = {"X-Request-Timeout": str(DEADLINE_S), "Content-Type": "application/json", "X-Request-ID": request_id}
        with held_inference(engine):
            admitted = queue_one_behind_one(batcher, lambda: client.post("/v1/pose3d", json=one_frame()), pool)
            refused: httpx.Response = client.post("/v1/pose3d", content=body, headers=headers)
            assert client.get("/healthz").status_code == 200  # the connection that carried the refusal stays usable
        assert [f.result(300).status_code for f in admitted] == [200, 200]
        return refused


def test_the_head_refusal_answers_and_counts_as_the_app_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused by the HTTP protocol from the head (the body is not even JSON, and never read) or by the app after
    reading a valid body: the same status, problem+json document, ``Retry-After``, request id and ``traceparent``
    (tracing on: a SERVER span each, continuing the caller's trace); both counted in ``/metrics`` (the head's one
    under ``route="unmatched"``, as the app's guard counts what routing never saw)."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(rest_trace, "tracer", provider.get_tracer("pose3d"))  # not the process-wide provider
    with ThreadPoolExecutor(2) as pool:
        with live_server(settings()) as live:
            head = refused_by(live, pool, b"not json at all", "head-refused-1")
            head_metrics = httpx.get(f"{live.url}/metrics").text
        with live_server(settings(), head_door=False) as live:
            app = refused_by(live, pool, json.dumps(one_frame()).encode(), "app-refused-1")
    head_body, app_body = assert_problem(head, 503, "over-capacity"), assert_problem(app, 503, "over-capacity")
    assert head.headers["x-request-id"] == head_body["request_id"] == "head-refused-1"
    assert app.headers["x-request-id"] == app_body["request_id"] == "app-refused-1"
    assert head_body.keys() == app_body.keys()
    assert {k: v for k, v in head_body.items() if k not in ("detail", "request_id")} == {
        k: v for k, v in app_body.items() if k not in ("detail", "request_id")
    }
    assert head_body["detail"].split(":")[0] == app_body["detail"].split(":")[0] == "over capacity"
    assert sorted(head.headers.keys()) == sorted(app.headers.keys())
    assert int(head.headers["retry-after"]) >= 2 * SLOW_S_PER_WINDOW - DEADLINE_S
    assert int(app.headers["retry-after"]) >= 2 * SLOW_S_PER_WINDOW - DEADLINE_S
    assert 'pose3d_rejected_total{reason="expected-wait"} 1.0' in head_metrics
    assert 'pose3d_requests_total{code="503",route="unmatched"} 1.0' in head_metrics
    assert 'pose3d_request_duration_seconds_count{route="unmatched"} 1.0' in head_metrics
    refusals = {span.name: span for span in spans.get_finished_spans() if span.attributes is not None
                and span.attributes.get("http.response.status_code") == 503}  # fmt: skip
    assert set(refusals) == {"POST unmatched", "POST /v1/pose3d"}
    for response, span in ((head, refusals["POST unmatched"]), (app, refusals["POST /v1/pose3d"])):
        assert span.kind == SpanKind.SERVER
        assert span.context is not None
        assert response.headers["traceparent"].split("-")[1] == f"{span.context.trace_id:032x}"


@pytest.mark.parametrize("how", ["HTTP/1.0", "Connection: close", "Expect: 100-continue"])
def test_the_head_refusal_closes_a_connection_the_client_will_not_keep(how: str) -> None:
    """After a refusal from the head, the connection is closed when the client will not keep it (HTTP/1.0,
    ``Connection: close``) or may never send the body it announced (``Expect: 100-continue``)."""
    with live_server(settings()) as live, live.client(timeout_s=600) as client, ThreadPoolExecutor(2) as pool:
        assert client.post("/v1/pose3d", json=one_frame()).status_code == 200
        state = live.app.state.gateway
        engine: InProcessEngine = getattr(state.engine, "inner", state.engine)
        batcher = slow_lift(engine)
        version, extra = ("HTTP/1.0", "") if how == "HTTP/1.0" else ("HTTP/1.1", how + "\r\n")
        head = (
            f"POST /v1/pose3d {version}\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n{extra}"
            f"X-Request-Timeout: {DEADLINE_S}\r\n\r\n"
        )
        with held_inference(engine):
            admitted = queue_one_behind_one(batcher, lambda: client.post("/v1/pose3d", json=one_frame()), pool)
            with socket.create_connection(("127.0.0.1", live.port), timeout=120) as sock:
                sock.sendall(head.encode())
                answer = b""
                while chunk := sock.recv(65536):  # ends when the server closes
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"\r\nconnection: close\r\n" in answer.lower()
        assert [f.result(300).status_code for f in admitted] == [200, 200]


async def test_serve_asks_the_engines_door_through_its_ownership_wrapper() -> None:
    """``pose3d serve`` hands the app its engine wrapped for ownership (``run_gateway``: :func:`owned`): the
    head's door is still the in-process engine's probe (it was none, and every refusal parsed its body)."""
    s = settings()
    metrics = Metrics()
    security = Security(s, metrics)
    engine = owned(await build_engine(s, metrics), security)
    app = create_app(s, engine=engine, metrics=metrics, security=security)
    try:
        async with app.router.lifespan_context(app):
            assert isinstance(engine, OwnedEngine)
            assert security.in_flight.probe == engine.inner.admission_probe  # type: ignore[attr-defined]
    finally:
        await engine.aclose()
