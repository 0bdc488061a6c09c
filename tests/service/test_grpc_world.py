"""Camera placement and smoothing over gRPC: the codec, public option validation, and a real engine behind a
worker servicer reached through RemoteEngineClient (stream == clip, both in the camera frame)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from service.api.schemas import Person
from service.config import LimitSettings
from service.engine.clips import async_frames
from service.engine.inprocess import InProcessEngine, build_engine
from service.engine.types import (
    EstimateOptions,
    FrameResult,
    PersonResult,
    Work,
)
from service.engine.work import collect, push
from service.errors import InvalidInput
from service.gateway.grpc_inputs import public_options
from service.gateway.messages import to_message
from service.geometry.camera import CameraSpec
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc import codec, link
from service.rpc.remote_engine import RemoteEngineClient
from tests.service.test_engine_support import keypoint_clip, tiny_settings
from tests.service.worker_support import serve_worker

OPTIONS = EstimateOptions(
    model="pstmo",
    camera=CameraSpec(fx=800.0, fy=790.0, cx=320.0, cy=240.0),
    smoothing=SmoothingSpec(SmoothingMethod.SAVGOL, half_window=3, polyorder=1),
)


def test_options_and_people_round_trip_through_the_codec() -> None:
    for options in (OPTIONS, EstimateOptions(camera=CameraSpec(fov_deg=70.0)), EstimateOptions()):
        assert link.options_from_pb(link.options_to_pb(options)) == options
    rng = np.random.default_rng(0)
    f32 = np.float32
    person = PersonResult(
        3, rng.random(4).astype(f32), 0.5, rng.random((17, 2)).astype(f32), rng.random(17).astype(f32),
        rng.random((17, 3)).astype(f32), rng.random((17, 3)).astype(f32), 4.25, ("only 3 of 17 joints",),
    )  # fmt: skip
    back = codec.person_from_pb(to_message(Person.of(person).model_dump(), pb.Person))
    assert back.keypoints_3d_camera is not None
    np.testing.assert_array_equal(back.keypoints_3d_camera, person.keypoints_3d_camera)
    assert (back.distance_m, back.warnings) == (4.25, ("only 3 of 17 joints",))
    unplaced = codec.person_from_pb(
        to_message(Person.of(PersonResult(*list(person.__dict__.values())[:6])).model_dump(), pb.Person)
    )
    assert (unplaced.keypoints_3d_camera, unplaced.distance_m, unplaced.warnings) == (None, None, ())


@pytest.mark.parametrize(
    "options",
    [
        pb.Options(camera=pb.Camera(fx=500.0)),
        pb.Options(camera=pb.Camera(fov_deg=500.0)),
        pb.Options(camera=pb.Camera(fx=-1.0, fy=1.0, cx=0.0, cy=0.0)),
        pb.Options(smoothing=pb.Smoothing(method=pb.SMOOTHING_METHOD_SAVGOL, half_window=0)),
        pb.Options(smoothing=pb.Smoothing(method=99)),  # type: ignore[arg-type]
    ],
)
def test_public_options_refuse_bad_camera_and_smoothing(options: pb.Options) -> None:
    with pytest.raises(InvalidInput):
        public_options(options, LimitSettings())


@pytest.fixture
async def engines() -> AsyncIterator[tuple[InProcessEngine, RemoteEngineClient]]:
    engine = await build_engine(tiny_settings(), Metrics())
    server, _, address = await serve_worker(engine)
    client = RemoteEngineClient([address])
    await client.start()
    yield engine, client
    await client.aclose()
    await server.stop(0)
    await engine.aclose()


def _placed(frames: list[FrameResult]) -> np.ndarray:
    out = []
    for f in frames:
        (p,) = f.people
        assert p.keypoints_3d_camera is not None
        assert p.distance_m == pytest.approx(
            float(np.linalg.norm(p.keypoints_3d_camera[0] - p.keypoints_3d[0])), rel=1e-4
        )
        out.append(np.concatenate([p.keypoints_3d, p.keypoints_3d_camera]))
    return np.stack(out)


async def test_remote_estimate_stream_and_clip_agree_in_the_camera_frame(
    engines: tuple[InProcessEngine, RemoteEngineClient],
) -> None:
    for method in (SmoothingMethod.ONE_EURO, SmoothingMethod.SAVGOL):
        await _agree(engines, method)


async def _agree(engines: tuple[InProcessEngine, RemoteEngineClient], method: SmoothingMethod) -> None:
    engine, remote = engines
    options = EstimateOptions(model="pstmo", camera=OPTIONS.camera, smoothing=SmoothingSpec(method))
    frames = keypoint_clip(14)
    local = await collect(engine, Work("local", list(frames), options))
    over_grpc = await collect(remote, Work("remote", list(frames), options))
    clip = await collect(remote, Work("clip", async_frames(frames), options))
    info = await remote.open_stream(options)
    streamed = [r for f in frames for r in await push(remote, info.stream_id, [f])]
    streamed += await remote.close_stream(info.stream_id)
    expected = _placed(local.frames)
    for other in (over_grpc.frames, clip.frames, streamed):
        assert [f.frame_index for f in other] == list(range(14))
        np.testing.assert_allclose(_placed(other), expected, atol=1e-4)
    plain = await collect(engine, Work("plain", list(frames), EstimateOptions(model="pstmo")))
    assert not np.allclose(_placed(plain.frames)[:, :17], expected[:, :17], atol=1e-4)  # smoothing did act


async def test_concurrent_pushes_of_a_smoothed_stream_equal_the_clip(
    engines: tuple[InProcessEngine, RemoteEngineClient],
) -> None:
    """Frames of one Savitzky–Golay stream pushed all at once (REST clients may): each push smooths from the state
    the one before it stored (one push at a time per smoothed stream in a worker), so nothing restarts."""
    engine, _ = engines
    frames = keypoint_clip(14)
    whole = await collect(engine, Work("whole", list(frames), OPTIONS))
    info = await engine.open_stream(OPTIONS)
    pushed = await asyncio.gather(*(push(engine, info.stream_id, [f]) for f in frames))
    streamed = [r for results in pushed for r in results] + await engine.close_stream(info.stream_id)
    assert [f.frame_index for f in streamed] == list(range(14))
    np.testing.assert_allclose(_placed(streamed), _placed(whole.frames), atol=1e-4)
