"""Fuzzing the REST API: schemathesis over the OpenAPI schema and hypothesis over raw bodies.

Whatever arrives, the answer is never a 5xx and never hangs: every call has a client timeout that
fails the test, and each 4xx is a problem+json document. The server requires API keys: the fuzzing runs
authenticated, and once more without a key (or with random ones), where every keyed route answers only 401,
404 or 429.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from service.config import LimitSettings, QuotaSettings, SecuritySettings
from service.security.keys import create_key
from tests.service.media_samples import encode_clip, encode_image, person_image
from tests.service.rest_support import PROBLEM, LiveServer, live_server, tiny_settings

pytestmark = pytest.mark.slow

CALL_TIMEOUT_S = 30.0
LIMITS = LimitSettings(
    max_body_bytes=256 * 1024, max_image_pixels=300_000, max_frame_side=1024, max_clip_frames=12, max_people=4
)


@pytest.fixture(scope="module")
def api_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(key file, key): the key the authenticated fuzzing sends."""
    file = tmp_path_factory.mktemp("keys") / "keys.json"
    return str(file), create_key(file, "fuzz")[1]


@pytest.fixture(scope="module")
def auth(api_key: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key[1]}"}


@pytest.fixture(scope="module")
def server(api_key: tuple[str, str]) -> Iterator[LiveServer]:
    quotas = QuotaSettings(rate_per_s=0.0, max_streams=0)  # fuzzing is a flood by design
    security = SecuritySettings(auth="on", api_keys_file=api_key[0], quotas=quotas)
    with live_server(tiny_settings(limits=LIMITS, security=security)) as live:
        yield live


def _assert_sane(status: int, content_type: str, body: bytes) -> None:
    assert status < 500, f"server error {status}: {body[:500]!r}"
    if status >= 400:
        assert content_type.startswith(PROBLEM), content_type
        problem = json.loads(body)
        assert problem["status"] == status


def _operations(server: LiveServer, auth: dict[str, str]) -> list[Any]:
    api = schemathesis.openapi.from_url(server.url + "/openapi.json", headers=auth)
    operations = []
    for result in api.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    return operations


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_operations_never_fail_on_the_server(
    server: LiveServer, auth: dict[str, str], mode: GenerationMode
) -> None:
    """Schemathesis cases (valid and invalid per the schema) for every operation of the OpenAPI document."""
    operations = _operations(server, auth)
    labels = {op.label for op in operations}
    assert labels >= {"POST /v1/pose3d", "POST /v1/streams", "DELETE /v1/streams/{stream_id}"}
    if mode is GenerationMode.NEGATIVE:  # only operations with inputs can be sent invalid ones
        operations = [op for op in operations if len(op.body) or len(op.path_parameters)]
        labels = {op.label for op in operations}
    seen: dict[str, set[int]] = {}
    for operation in operations:

        @settings(
            max_examples=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(case=operation.as_strategy(mode))
        def run(case: Any) -> None:
            response = case.call(base_url=server.url, headers=auth, timeout=CALL_TIMEOUT_S)
            assert response.status_code != 401, response.text
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            content_type = response.headers.get("content-type", [""])  # schemathesis: name -> list of values
            _assert_sane(response.status_code, content_type[0], response.content)

        run()
    assert set(seen) == labels


_IMAGE = encode_image(person_image(64, 96))
_CLIP = encode_clip(frames=3, width=32, height=32)
_file_bytes = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda cut, tail: _IMAGE[:cut] + tail, st.integers(0, len(_IMAGE)), st.binary(max_size=64)),
    st.builds(lambda cut, tail: _CLIP[:cut] + tail, st.integers(0, len(_CLIP)), st.binary(max_size=64)),
    st.just(_IMAGE),
)
_field_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["true", "0", "-1", "1e9", "NaN", "[[0,0,10,10]]", "[[1,2,3,4]", "centred", "causal", "capf"]),
)
_fields = st.dictionaries(
    st.sampled_from(["model", "boxes", "flip_test", "max_people", "mode", "every_nth", "frame_index", "x"]),
    _field_text,
    max_size=5,
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=18) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=120,
)
_keypoint_bodies = st.fixed_dictionaries(
    {"keypoints_2d": _json_values, "image_size": _json_values},
    optional={"joint_set": _json_values, "model": _json_values, "mode": _json_values, "timestamps_s": _json_values},
)


@pytest.fixture(scope="module")
def http(server: LiveServer, auth: dict[str, str]) -> Iterator[httpx.Client]:
    with server.client(timeout_s=CALL_TIMEOUT_S) as client:
        client.headers.update(auth)
        yield client


OPEN_ROUTES = {"GET /healthz", "GET /readyz"}
# printable ASCII; no leading space (HTTP clients refuse such a header value before sending it)
_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(str.lstrip)
_credentials = st.one_of(
    st.just({}),
    st.builds(lambda v: {"Authorization": v}, _header_text),
    st.builds(lambda v: {"Authorization": "Bearer " + v}, _header_text),
    st.builds(lambda v: {"X-API-Key": v}, _header_text),
    st.builds(lambda v: {"X-API-Key": "p3d_" + v}, _header_text),
)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_without_a_valid_key_every_keyed_route_is_401_404_or_429(
    server: LiveServer, auth: dict[str, str], mode: GenerationMode
) -> None:
    """Every operation, fuzzed with no key or random ones: nothing but 401/404/429 (open routes: never a 5xx)."""
    operations = _operations(server, auth)
    if mode is GenerationMode.NEGATIVE:  # only operations with inputs can be sent invalid ones
        operations = [op for op in operations if len(op.body) or len(op.path_parameters)]
    for operation in operations:

        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])  # fmt: skip
        @given(case=operation.as_strategy(mode), credentials=_credentials)
        def run(case: Any, credentials: dict[str, str]) -> None:
            response = case.call(base_url=server.url, headers=credentials, timeout=CALL_TIMEOUT_S)
            if case.operation.label in OPEN_ROUTES:
                assert response.status_code < 500, response.text
            else:
                assert response.status_code in (401, 404, 429), (case.operation.label, response.status_code)
            content_type = response.headers.get("content-type", [""])
            _assert_sane(response.status_code, content_type[0], response.content)

        run()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_file_bytes, fields=_fields, filename=st.text(max_size=20), mime=st.text(max_size=20))
def test_random_uploads(http: httpx.Client, data: bytes, fields: dict[str, str], filename: str, mime: str) -> None:
    files = {"file": (filename or "f", data, mime or "application/octet-stream")}
    response = http.post("/v1/pose3d", files=files, data=fields)
    _assert_sane(response.status_code, response.headers.get("content-type", ""), response.content)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(_keypoint_bodies, _json_values), route=st.sampled_from(["pose", "open", "frame"]))
def test_random_json(http: httpx.Client, body: Any, route: str) -> None:
    if route == "pose":
        response = http.post("/v1/pose3d", content=json.dumps(body), headers={"content-type": "application/json"})
    elif route == "open":
        response = http.post("/v1/streams", content=json.dumps(body), headers={"content-type": "application/json"})
    else:
        opened = http.post("/v1/streams", json={})
        assert opened.status_code == 201, opened.text
        stream_id = opened.json()["stream_id"]
        response = http.post(
            f"/v1/streams/{stream_id}/frames", content=json.dumps(body), headers={"content-type": "application/json"}
        )
        http.delete(f"/v1/streams/{stream_id}")
    _assert_sane(response.status_code, response.headers.get("content-type", ""), response.content)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.binary(max_size=512),
    content_type=st.sampled_from(
        ["application/json", "multipart/form-data; boundary=b", "multipart/form-data", "text/plain", ""]
    ),
)
def test_random_bytes_with_any_content_type(http: httpx.Client, raw: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = http.post("/v1/pose3d", content=raw, headers=headers)
    _assert_sane(response.status_code, response.headers.get("content-type", ""), response.content)
