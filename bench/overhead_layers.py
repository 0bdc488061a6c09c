"""One request of each layer of ``bench.overhead`` and the timing of many: the bare networks (the stage
functions the engine's batchers call, in sequence, on this thread), the in-process engine, REST, gRPC unary.

Two inputs (``Case``): ``image``: one JPEG, whole frame as the person box, hrnet-micro detector → CA-PF tiny;
``keypoints``: one frame of 17 H36M 2D keypoints → P-STMO tiny 9 (its window is the frame repeated, as the
engine pads a lone frame)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace

import cv2
import grpc
import httpx
import numpy as np

from model.joints import JointSet, normalize_screen_coordinates
from service.engine.inprocess import InProcessEngine
from service.engine.lifters import LiftWindow, TokenInput
from service.engine.person_boxes import whole_frame_box
from service.engine.prepare import decode_image
from service.engine.stages import DetectItem, detect_batch
from service.engine.types import (
    EstimateOptions,
    FloatArray,
    ImageFrame,
    KeypointFrame,
    Work,
)
from service.engine.work import collect
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc

CASES = ("image", "keypoints")
MODEL = {"image": "capf", "keypoints": "pstmo"}


@dataclass(frozen=True)
class Inputs:
    """What every layer sends: ``jpeg`` (``height × width`` RGB noise, blurred, JPEG q90) and ``keypoints``
    (``(17, 2) float32`` H36M pixels in the same image size)."""

    width: int
    height: int
    jpeg: bytes
    keypoints: FloatArray

    @staticmethod
    def make(width: int, height: int) -> Inputs:
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        jpeg = cv2.imencode(".jpg", cv2.GaussianBlur(noise, (0, 0), 3), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        kp = (rng.random((17, 2)) * [width * 0.5, height * 0.8] + [width * 0.25, height * 0.1]).astype(np.float32)
        return Inputs(width, height, jpeg, kp)


@dataclass(frozen=True)
class Timing:
    """``requests`` requests of one frame each, ``concurrency`` in flight (bare: ``batch`` frames per call).
    ``us_per_request``: mean latency of one request (bare: of one call); ``us_per_frame``: wall time ÷ frames;
    ``load_avg``: the 1-minute load average before and after."""

    requests: int
    concurrency: int
    batch: int
    wall_s: float
    us_per_request: float
    us_per_frame: float
    load_avg: tuple[float, float]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


Call = Callable[[int], Awaitable[None]]


def median_timing(rounds: list[Timing]) -> Timing:
    """The round with the median µs per frame (the upper one of an even count), its load average widened to
    the lowest and highest of all rounds."""
    ranked = sorted(rounds, key=lambda t: t.us_per_frame)
    mid = ranked[len(ranked) // 2]
    load = (min(t.load_avg[0] for t in rounds), max(t.load_avg[1] for t in rounds))
    return replace(mid, load_avg=load)


async def timed_lanes(call: Call, requests: int, concurrency: int) -> Timing:
    """``requests`` calls of ``call(i)``, ``concurrency`` lanes each awaiting its calls one after another."""
    todo = iter(range(requests))
    latencies: list[float] = []

    async def lane() -> None:
        for i in todo:
            t0 = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t0)

    before = os.getloadavg()[0]
    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    mean = sum(latencies) / len(latencies)
    return Timing(requests, concurrency, 1, wall, mean * 1e6, wall / requests * 1e6, (before, os.getloadavg()[0]))


# -- bare: the stage functions, called directly ------------------------------------------------------


def bare_image(engine: InProcessEngine, jpegs: list[bytes]) -> list[FloatArray]:
    """Decode, detect (whole-frame box), CA-PF tokens and lift ``len(jpegs)`` images as one batch per stage:
    per image the ``(17, 3)`` pose in metres."""
    pipe = engine.pipeline
    lifter = pipe.lifters[MODEL["image"]]
    images = [decode_image(j) for j in jpegs]
    items = [
        DetectItem(im, whole_frame_box(im.shape[1], im.shape[0]), np.ones(1, np.float32), False, False) for im in images
    ]
    firsts = [people[0] for people in detect_batch(pipe.detector, items)]
    norms = [
        normalize_screen_coordinates(p.keypoints_h36m, im.shape[1], im.shape[0])
        for p, im in zip(firsts, images, strict=True)
    ]
    tokens = lifter.frame_tokens(
        [
            TokenInput(n, p.crop_keypoints_h36m, p.features or (), p.flip_features)
            for n, p in zip(norms, firsts, strict=True)
        ]
    )
    return lifter.lift([LiftWindow(n[None], t[None], False) for n, t in zip(norms, tokens, strict=True)])


def bare_keypoints(engine: InProcessEngine, inputs: Inputs, batch: int) -> list[FloatArray]:
    """Normalise and lift ``batch`` windows of the one keypoint frame repeated: per window the ``(17, 3)`` pose."""
    lifter = engine.pipeline.lifters[MODEL["keypoints"]]
    frames = lifter.spec.frames
    norm = normalize_screen_coordinates(inputs.keypoints, inputs.width, inputs.height)
    window = np.repeat(norm[None], frames, axis=0)
    return lifter.lift([LiftWindow(window, np.zeros((frames, 0, 17, 0), np.float32), False) for _ in range(batch)])


def time_bare(engine: InProcessEngine, case: str, inputs: Inputs, batch: int, frames: int) -> Timing:
    """At least ``frames`` frames through the bare stages, ``batch`` per call, one call at a time."""
    calls = max(1, -(-frames // batch))
    before = os.getloadavg()[0]
    started = time.perf_counter()
    for _ in range(calls):
        if case == "image":
            bare_image(engine, [inputs.jpeg] * batch)
        else:
            bare_keypoints(engine, inputs, batch)
    wall = time.perf_counter() - started
    load = (before, os.getloadavg()[0])
    return Timing(calls, 1, batch, wall, wall / calls * 1e6, wall / (calls * batch) * 1e6, load)


# -- one request of each served layer -----------------------------------------------------------------


def engine_call(engine: InProcessEngine, case: str, inputs: Inputs) -> Call:
    """One estimate through the in-process engine (the JPEG's bytes, as the gateway hands them over)."""
    options = EstimateOptions(model=MODEL[case])
    kp = KeypointFrame(inputs.keypoints, np.ones(17, np.float32), (inputs.width, inputs.height), JointSet.H36M)
    frame = ImageFrame(image=inputs.jpeg) if case == "image" else kp

    async def call(i: int) -> None:
        result = await collect(engine, Work(f"bench-{i}", [frame], options, None))
        assert len(result.frames) == 1

    return call


def rest_call(client: httpx.AsyncClient, case: str, inputs: Inputs) -> Call:
    """One ``POST /v1/pose3d`` (multipart image or JSON keypoints) on a keep-alive client; checks the 200."""
    body = {
        "keypoints_2d": inputs.keypoints.tolist(),
        "image_size": [inputs.width, inputs.height],
        "joint_set": "h36m",
        "model": MODEL[case],
    }
    content = json.dumps(body).encode()

    async def call(i: int) -> None:
        if case == "image":
            files = {"file": ("bench.jpg", inputs.jpeg, "image/jpeg")}
            reply = await client.post("/v1/pose3d", files=files, data={"model": MODEL[case]})
        else:
            reply = await client.post("/v1/pose3d", content=content, headers={"content-type": "application/json"})
        if reply.status_code != 200:
            raise SystemExit(f"REST answered {reply.status_code}: {reply.text[:500]}")

    return call


def grpc_call(stub: pose3d_pb2_grpc.Pose3DStub, case: str, inputs: Inputs) -> Call:
    """One unary ``Estimate`` (image bytes or one keypoint frame)."""
    options = pb.Options(model=MODEL[case])
    if case == "image":
        request = pb.EstimateRequest(image=inputs.jpeg, options=options)
    else:
        kp = pb.KeypointsInput(
            frames=[pb.Keypoints2D(xy=inputs.keypoints.ravel().tolist())],
            image_width=inputs.width,
            image_height=inputs.height,
            joint_set=pb.JOINT_SET_H36M,
        )
        request = pb.EstimateRequest(keypoints=kp, options=options)

    async def call(i: int) -> None:
        await stub.Estimate(request, timeout=120.0)

    return call


def grpc_channel(address: str) -> grpc.aio.Channel:
    """An insecure loopback channel with room for the replies (default limits)."""
    return grpc.aio.insecure_channel(address)
