"""A stream frame can ask for the person detector (``detect_people``): with pose-guided boxes a steady stream
runs it only every k frames, and an asking frame runs it on that frame — in the engine, over REST, WebSocket
and gRPC, and across the worker protocol — while a clip and a stream of the same frames still agree."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from websockets.sync.client import connect

from service.config import GatewaySettings
from service.engine.inprocess import InProcessEngine, build_engine
from service.engine.pose_guide import pose_to_box
from service.engine.types import (
    EstimateOptions,
    Frame,
    ImageFrame,
    WindowMode,
    Work,
)
from service.engine.work import collect, push
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc import link
from service.rpc.remote_engine import RemoteEngineClient
from tests.service.media_samples import encode_image
from tests.service.rest_support import LiveServer, live_server, tiny_settings
from tests.service.test_engine_support import assert_same_poses
from tests.service.test_grpc_public import stub_for
from tests.service.test_pose_guide import K, _frames, _settings
from tests.service.worker_support import serve_worker
from tests.service.ws_support import closed_with, image_message, receive, ws_url
from tests.unit.rtmpose_standin import rtmpose_standin
from tests.unit.test_person_detector import mean_channel0_detector

FRAMES = 12
ASKED = 7  # between the guide's looks at frames 0, 5 and 10
DETECTOR_BOX = [8.0, 8.0, 24.0, 40.0]  # what the stand-in person detector finds on a 64x64 frame


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ask")
    return rtmpose_standin(d / "rtmpose.onnx", seed=11), mean_channel0_detector(d / "person.onnx")


def _gateway_settings(files: tuple[Path, Path]) -> GatewaySettings:
    common = _settings(files)
    return tiny_settings(
        detector=common.detector,
        models=common.models,
        default_image_model="pstmo",
        default_clip_model="pstmo",
        engine=common.engine,
    )


def _images() -> list[ImageFrame]:
    frames = _frames([True] * FRAMES)
    assert all(isinstance(f, ImageFrame) for f in frames)
    return [f for f in frames if isinstance(f, ImageFrame)]


def _runs(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("pose3d_person_detector_runs_total", {"reason": reason}) or 0.0


def _check_boxes(boxes: list[list[float]], keypoints: list[Any]) -> None:
    """Frame t's box: the detector's on frames 0, 5, 10 and the asking frame, else frame t-1's pose box."""
    for t in range(1, FRAMES):
        if t % K == 0 or t == ASKED:
            np.testing.assert_allclose(boxes[t], DETECTOR_BOX, atol=1e-4, err_msg=f"frame {t}")
        else:
            expected = pose_to_box(np.asarray(keypoints[t - 1], np.float32)[None])[0]
            np.testing.assert_allclose(boxes[t], expected, atol=1e-3, err_msg=f"frame {t}")


@pytest.fixture
async def engine(onnx_files: tuple[Path, Path]) -> AsyncIterator[InProcessEngine]:
    eng = await build_engine(_settings(onnx_files), Metrics())
    yield eng
    await eng.aclose()


async def test_an_asking_frame_runs_the_detector_and_stream_equals_clip(engine: InProcessEngine) -> None:
    plain = _images()
    unasked = await collect(engine, Work("plain", list(plain), EstimateOptions(mode=WindowMode.CAUSAL)))
    assert (_runs(engine.metrics, "pose_guide"), _runs(engine.metrics, "asked")) == (3, 0)  # frames 0, 5, 10
    guided = unasked.frames[ASKED].people[0].box
    assert not np.allclose(guided, DETECTOR_BOX, atol=0.5)  # unasked, frame 7's box follows frame 6's pose

    frames: list[Frame] = [dataclasses.replace(f, detect_people=f.frame_index == ASKED) for f in plain]
    opts = EstimateOptions(mode=WindowMode.CENTRED)
    clip = await collect(engine, Work("asked", frames, opts))
    assert (_runs(engine.metrics, "pose_guide"), _runs(engine.metrics, "asked")) == (6, 1)
    _check_boxes([f.people[0].box.tolist() for f in clip.frames], [f.people[0].keypoints_2d for f in clip.frames])
    await engine.open_stream(opts, "asking")
    streamed = []
    for frame in frames:
        streamed.extend(await push(engine, "asking", [frame]))
    streamed.extend(await engine.close_stream("asking"))
    assert (_runs(engine.metrics, "pose_guide"), _runs(engine.metrics, "asked")) == (9, 2)
    assert_same_poses(clip.frames, streamed)  # the decision is frame data: stream == clip still holds


def test_worker_frames_carry_the_flag() -> None:
    raw = np.zeros((4, 6, 3), np.uint8)
    for frame in (ImageFrame(raw, 3, detect_people=True), ImageFrame(b"\xff\xd8jpeg", 4, detect_people=True)):
        back = link.frame_from_pb(link.frame_to_pb(frame))
        assert isinstance(back, ImageFrame)
        assert back.detect_people
    back = link.frame_from_pb(link.frame_to_pb(ImageFrame(raw, 5)))
    assert isinstance(back, ImageFrame)
    assert not back.detect_people


async def test_the_flag_crosses_to_a_worker(engine: InProcessEngine) -> None:
    """Gateway → worker over real gRPC (``RemoteEngineClient`` → ``WorkerServicer`` → the engine)."""
    server, _, address = await serve_worker(engine)
    client = RemoteEngineClient([address])
    await client.start()
    try:
        info = await client.open_stream(EstimateOptions(mode=WindowMode.CAUSAL))
        results = []
        for f in _images():
            results.extend(
                await push(client, info.stream_id, [dataclasses.replace(f, detect_people=f.frame_index == ASKED)])
            )
        _check_boxes([r.people[0].box.tolist() for r in results], [r.people[0].keypoints_2d for r in results])
        assert (_runs(engine.metrics, "pose_guide"), _runs(engine.metrics, "asked")) == (3, 1)
    finally:
        await client.aclose()
        await server.stop(0)


@pytest.fixture(scope="module")
def server(onnx_files: tuple[Path, Path]) -> Iterator[LiveServer]:
    with live_server(_gateway_settings(onnx_files)) as live:
        yield live


def _metric_lines(server: LiveServer) -> list[str]:
    with server.client() as client:
        text = client.get("/metrics").text
    return [line for line in text.splitlines() if line.startswith("pose3d_person_detector_runs_total")]


def _rest_runs(server: LiveServer) -> dict[str, float]:
    out = {}
    for line in _metric_lines(server):
        name, value = line.rsplit(" ", 1)
        out[name.split('reason="')[1].rstrip('"}')] = float(value)
    return out


def test_rest_and_websocket_frames_can_ask(server: LiveServer) -> None:
    images = [encode_image(np.asarray(f.image), ".png") for f in _images()]
    before = _rest_runs(server)
    with server.client() as client:
        opened = client.post("/v1/streams", json={"mode": "causal"})
        assert opened.status_code == 201, opened.text
        sid = opened.json()["stream_id"]
        bad = client.post(
            f"/v1/streams/{sid}/frames",
            files={"file": ("f.png", images[0], "image/png")},
            data={"frame_index": "0", "detect_people": "maybe"},
        )
        assert bad.status_code == 400, bad.text
        results = []
        for i, data in enumerate(images):
            fields = {"frame_index": str(i)} | ({"detect_people": "true"} if i == ASKED else {})
            pushed = client.post(f"/v1/streams/{sid}/frames", files={"file": ("f.png", data, "image/png")}, data=fields)
            assert pushed.status_code == 200, pushed.text
            results.extend(pushed.json()["frames"])
        client.delete(f"/v1/streams/{sid}")
    _check_boxes([f["people"][0]["box"] for f in results], [f["people"][0]["keypoints_2d"] for f in results])
    after = _rest_runs(server)
    assert (after["pose_guide"] - before["pose_guide"], after["asked"] - before["asked"]) == (3, 1)

    ws_results = []
    with connect(ws_url(server.url), max_size=2**24) as ws:
        ws.send(json.dumps({"type": "open", "mode": "causal"}))
        assert receive(ws)["type"] == "opened"
        for i, data in enumerate(images):
            ws.send(json.dumps(image_message(i, data) | {"detect_people": i == ASKED}))
            answer = receive(ws)
            assert answer["type"] == "results", answer
            ws_results.extend(answer["frames"])
        ws.send(json.dumps({"type": "close"}))
        assert receive(ws)["final"] is True
        assert closed_with(ws)[0] == 1000
    _check_boxes([f["people"][0]["box"] for f in ws_results], [f["people"][0]["keypoints_2d"] for f in ws_results])
    final = _rest_runs(server)
    assert (final["pose_guide"] - after["pose_guide"], final["asked"] - after["asked"]) == (3, 1)


async def test_grpc_stream_frames_can_ask(onnx_files: tuple[Path, Path]) -> None:
    settings = _gateway_settings(onnx_files)
    engine = await build_engine(settings, Metrics())
    public = PublicGrpcServer(settings, Metrics())
    port = await public.start()
    public.engine = engine
    channel, stub = stub_for(port)
    try:
        call = stub.StreamEstimate()
        open_msg = pb.StreamOpen(options=pb.Options(mode=pb.WINDOW_MODE_CAUSAL))
        await call.write(pb.StreamEstimateRequest(open=open_msg))
        assert (await call.read()).WhichOneof("message") == "opened"
        boxes, keypoints = [], []
        for i, f in enumerate(_images()):
            frame = pb.StreamFrame(image=encode_image(np.asarray(f.image), ".png"), frame_index=i)
            frame.detect_people = i == ASKED
            await call.write(pb.StreamEstimateRequest(frame=frame))
            result = (await call.read()).result
            assert result.frame_index == i
            box = result.people[0].box
            boxes.append([box.x1, box.y1, box.x2, box.y2])
            keypoints.append(np.asarray(result.people[0].keypoints_2d, np.float32).reshape(17, 2))
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
        _check_boxes(boxes, keypoints)
        assert (_runs(engine.metrics, "pose_guide"), _runs(engine.metrics, "asked")) == (3, 1)

        refused = stub.StreamEstimate()
        await refused.write(pb.StreamEstimateRequest(open=open_msg))
        await refused.read()
        kp = pb.Keypoints2D(xy=[float(10 + j) for j in range(34)])
        await refused.write(pb.StreamEstimateRequest(frame=pb.StreamFrame(keypoints=kp, detect_people=True)))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await refused.read()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "detect_people" in (err.value.details() or "")
    finally:
        await channel.close()
        await public.stop(0)
        await engine.aclose()
