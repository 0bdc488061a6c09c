"""An unauthenticated fuzz pass over every REST route and every gRPC method of a real ``pose3d serve``.

The server requires keys. Hypothesis sends each operation of the OpenAPI document (and each method of
``pose3d.v1.Pose3D`` plus reflection) with random path parameters, query strings, bodies, content types and
random or malformed credentials — never a valid key. The only answers allowed are 401, 404, 413 and 429 (gRPC:
UNAUTHENTICATED or RESOURCE_EXHAUSTED): no route or method does any work for a stranger, none fails. The routes
meant to be open (``/healthz``, ``/readyz``, the demo page and the docs' static assets) are checked apart: open,
and never a 5xx. Bounded: a fixed number of examples per pass, loopback only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.proto_gen.pose3d.v1 import pose3d_pb2
from tests.security.servers import SecureServe, start_secure_serve

pytestmark = pytest.mark.slow

ALLOWED = frozenset({401, 404, 413, 429})
ALLOWED_GRPC = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED})
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/demo", "/demo/"})
EXTRA = [("GET", "/docs"), ("GET", "/redoc"), ("GET", "/openapi.json"), ("GET", "/v1/streams/ws"),
         ("DELETE", "/v1/{x}"), ("PUT", "/{x}/{y}")]  # fmt: skip
"""Keyed paths the OpenAPI document does not list (docs, the WebSocket route, unknown paths: 404 or 401)."""
ASCII = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)
CREDENTIALS = st.one_of(
    st.none(),
    st.tuples(st.just("Authorization"), st.builds("Bearer {}".format, ASCII.filter(bool))),
    st.tuples(st.just("Authorization"), st.builds("Bearer p3d_{}_{}".format, ASCII, ASCII)),
    st.tuples(st.just("Authorization"), st.sampled_from(["Basic YTpi", "Bearer", "bearer  x", "p3d_x"])),
    st.tuples(st.just("X-API-Key"), ASCII.filter(bool)),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "image/png", ""]
)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServe]:
    server = start_secure_serve(tmp_path_factory.mktemp("fuzz"), {"POSE3D_LIMITS__MAX_BODY_BYTES": "65536"})
    yield server
    server.proc.stop()


def _operations(server: SecureServe) -> list[tuple[str, str]]:
    """``(method, path template)`` of every operation of the OpenAPI document (fetched with the key)."""
    document = httpx.get(server.url + "/openapi.json", headers={"X-API-Key": server.key}, timeout=30).json()
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


def _fill(template: str, values: list[str]) -> str:
    parts = template.split("/")
    filled = [quote(values.pop(0) if values else "x", safe="") if p.startswith("{") else p for p in parts]
    return "/".join(filled)


def test_every_keyed_route_refuses_a_stranger(serve: SecureServe) -> None:
    operations = _operations(serve)
    keyed = [op for op in operations if op[1] not in OPEN_PATHS] + EXTRA
    assert len(keyed) >= 16, keyed  # the document lists the routes, jobs and streams included
    seen: dict[int, int] = {}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        operation=st.sampled_from(keyed),
        values=st.lists(ASCII.filter(bool), max_size=3),
        query=st.dictionaries(ASCII.filter(bool), ASCII, max_size=3),
        credentials=CREDENTIALS,
        content_type=CONTENT_TYPES,
        body=st.binary(max_size=2048) | st.just(b"x" * 70_000),
    )
    def attack(
        operation: tuple[str, str],
        values: list[str],
        query: dict[str, str],
        credentials: tuple[str, str] | None,
        content_type: str,
        body: bytes,
    ) -> None:
        method, template = operation
        headers = dict([credentials]) if credentials else {}
        if content_type:
            headers["Content-Type"] = content_type
        answer = httpx.request(
            method, serve.url + _fill(template, list(values)), params=query, headers=headers, content=body,
            timeout=30,
        )  # fmt: skip
        seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
        assert answer.status_code in ALLOWED, (method, template, answer.status_code, answer.text[:300])

    attack()
    print(f"REST answers to strangers: {seen}")


def test_open_routes_stay_open_and_sound(serve: SecureServe) -> None:
    for path in ("/healthz", "/readyz", "/demo"):
        answer = httpx.get(
            serve.url + path, timeout=30, headers={"Authorization": "Bearer nonsense"}, follow_redirects=True
        )
        assert answer.status_code == 200, (path, answer.status_code)
    for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):
        assert httpx.get(serve.url + path, timeout=30).status_code == 401, path


def _methods() -> list[tuple[str, bool, bool]]:
    """``(full method name, request streaming, response streaming)`` of every public gRPC method."""
    service = pose3d_pb2.DESCRIPTOR.services_by_name["Pose3D"]
    found = [(f"/{service.full_name}/{m.name}", m.client_streaming, m.server_streaming) for m in service.methods]
    found.append(("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", True, True))
    return found


def _grpc_call(address: str, method: tuple[str, bool, bool], payload: bytes, metadata: Any) -> grpc.StatusCode:
    name, client_streaming, server_streaming = method
    with grpc.insecure_channel(address) as channel:
        try:
            if client_streaming:
                replies = channel.stream_stream(name)(iter([payload]), timeout=30, metadata=metadata)
                list(replies)
            elif server_streaming:
                list(channel.unary_stream(name)(payload, timeout=30, metadata=metadata))
            else:
                channel.unary_unary(name)(payload, timeout=30, metadata=metadata)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
    return grpc.StatusCode.OK


def test_every_grpc_method_refuses_a_stranger(serve: SecureServe) -> None:
    methods = _methods()
    assert len(methods) == 8
    metadata = st.one_of(
        st.just(()),
        st.tuples(st.tuples(st.just("authorization"), st.builds("Bearer {}".format, ASCII.filter(bool)))),
        st.tuples(st.tuples(st.just("x-api-key"), st.builds("p3d_{}".format, ASCII))),
    )

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(method=st.sampled_from(methods), payload=st.binary(max_size=4096), metadata=metadata)
    def attack(method: tuple[str, bool, bool], payload: bytes, metadata: Any) -> None:
        code = _grpc_call(serve.grpc_address, method, payload, metadata)
        assert code in ALLOWED_GRPC, (method[0], code)

    attack()


def test_grpc_health_stays_open(serve: SecureServe) -> None:
    from tests.e2e.deployment import health_status

    assert health_status(serve.grpc_address, "pose3d.v1.Pose3D") == "SERVING"
    assert Path(serve.proc.log).exists()
