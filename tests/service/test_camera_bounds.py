"""Camera intrinsics that would make the geometry non-finite (fx = 5e-324: every ``(u - cx) / fx`` overflows) are
refused with 422 / INVALID_ARGUMENT naming the field, on REST (JSON and form) and gRPC alike: they were a 200 whose
camera-frame keypoints and distances were nulls."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.config import LimitSettings
from service.errors import InvalidInput
from service.gateway.grpc_inputs import public_options
from service.geometry.camera import MAX_FOCAL_PX, MAX_PRINCIPAL_PX, MIN_FOCAL_PX, CameraSpec, Intrinsics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from tests.service.rest_support import assert_problem, live_server, tiny_settings
from tests.service.test_rest_world import _keypoint_sequence

GOOD = {"fx": 1500.0, "fy": 1490.0, "cx": 955.0, "cy": 545.0}
EXTREME = [
    ("fx", 5e-324),
    ("fy", 5e-324),
    ("fx", 1e-300),
    ("fx", 1e300),
    ("fy", 1.7e308),
    ("cx", 1e308),
    ("cy", -1e308),
]


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with live_server(tiny_settings()) as live, live.client() as http:
        yield http


@pytest.mark.parametrize(("field", "value"), EXTREME)
def test_extreme_intrinsics_are_a_422_naming_the_field_on_rest(client: httpx.Client, field: str, value: float) -> None:
    body = {"keypoints_2d": _keypoint_sequence(9), "image_size": [1920, 1080], "joint_set": "h36m", "model": "pstmo-9"}
    problem = assert_problem(client.post("/v1/pose3d", json={**body, **GOOD, field: value}), 422)
    assert field in problem["detail"], problem
    form = {k: repr(v) for k, v in {**GOOD, field: value}.items()}
    image = {"file": ("x.png", b"\x89PNG\r\n\x1a\n not decoded: the fields are read first", "image/png")}
    problem = assert_problem(client.post("/v1/pose3d", files=image, data=form), 422)
    assert field in problem["detail"], problem


def test_sane_intrinsics_still_place_people(client: httpx.Client) -> None:
    body = {"keypoints_2d": _keypoint_sequence(9), "image_size": [1920, 1080], "joint_set": "h36m", "model": "pstmo-9"}
    response = client.post("/v1/pose3d", json={**body, **GOOD})
    assert response.status_code == 200, response.text
    assert all(p["distance_m"] is not None for f in response.json()["frames"] for p in f["people"])


@pytest.mark.parametrize(("field", "value"), EXTREME)
def test_extreme_intrinsics_are_invalid_argument_on_grpc(field: str, value: float) -> None:
    with pytest.raises(InvalidInput, match=field):
        public_options(pb.Options(camera=pb.Camera(**{**GOOD, field: value})), LimitSettings())


def test_the_bounds_hold_every_focal_length_fov_deg_gives() -> None:
    """fov_deg in [1, 179] over image widths 1..limits.max_frame_side px stays inside the focal-length bounds."""
    widest = Intrinsics.from_fov(179.0, (1, 1))
    narrowest = Intrinsics.from_fov(1.0, (LimitSettings().max_frame_side, 1))
    assert widest.fx >= MIN_FOCAL_PX
    assert narrowest.fx <= MAX_FOCAL_PX
    CameraSpec(fx=MIN_FOCAL_PX, fy=MAX_FOCAL_PX, cx=-MAX_PRINCIPAL_PX, cy=MAX_PRINCIPAL_PX)  # the bounds themselves
