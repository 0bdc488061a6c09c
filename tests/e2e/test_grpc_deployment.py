"""End to end, as deployed: redis-server, two ``pose3d worker`` processes and one ``pose3d gateway`` on free
ports with tiny random-weight models; clients over REST and gRPC. Workers and gateways are killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.client.estimate import EstimateArgs, estimate_grpc
from service.client.results import estimate_json
from service.client.sources import clip_frames, encode_frame, synthetic_image, write_synthetic_clip
from service.client.stream import StreamClient, StreamConfig
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from tests.conftest import RedisServer
from tests.e2e.deployment import (
    Gateway,
    Worker,
    deployment_env,
    health_status,
    new_gateway,
    new_worker,
    pose3d_command,
    wait_all_serving,
)
from tests.service.jobs_support import assert_same_frames

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis]

KEYPOINT_FRAMES = 80


class Deployment:
    def __init__(self, redis: RedisServer, logs: Path) -> None:
        self.logs = logs
        self.env = deployment_env(redis.url)
        self.workers = [new_worker(f"worker{i}", self.env, logs) for i in (1, 2)]
        self.gateway = new_gateway(self.workers, self.env, logs)
        try:
            for w in self.workers:
                w.start()
            wait_all_serving(self.workers)
            self.gateway.start()
            self.gateway.wait_ready()
        except BaseException:
            self.stop()
            raise

    def restart_gateway(self) -> Gateway:
        old = self.gateway
        self.gateway = new_gateway(self.workers, self.env, self.logs, old.port, old.grpc_port)
        self.gateway.start()
        return self.gateway

    def stop(self) -> None:
        self.gateway.stop()
        for w in self.workers:
            w.stop()


@pytest.fixture(scope="module")
def deployment(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployed = Deployment(redis_server, tmp_path_factory.mktemp("deployment"))
    yield deployed
    deployed.stop()


def keypoint_messages(count: int = KEYPOINT_FRAMES, seed: int = 3) -> list[pb.StreamFrame]:
    """One person's COCO keypoints walking about a 640×480 image, 25 fps."""
    rng = np.random.default_rng(seed)
    base = rng.random((17, 2)) * np.array([300.0, 250.0]) + np.array([150.0, 100.0])
    walk = np.cumsum(rng.normal(0, 3, (count, 17, 2)), axis=0) + base
    return [
        pb.StreamFrame(
            keypoints=pb.Keypoints2D(xy=walk[i].ravel().tolist(), scores=rng.random(17).tolist()),
            frame_index=i,
            timestamp_s=i / 25.0,
            image_width=640,
            image_height=480,
        )
        for i in range(count)
    ]


PSTMO = pb.Options(model="pstmo-9")


def keypoints_posted_whole(
    address: str, frames: list[pb.StreamFrame], options: pb.Options = PSTMO
) -> list[dict[str, Any]]:
    """The same keypoints as one ``Estimate`` (the reference a stream must reproduce)."""
    request = pb.EstimateRequest(
        keypoints=pb.KeypointsInput(
            frames=[f.keypoints for f in frames],
            image_width=640,
            image_height=480,
            timestamps_s=[f.timestamp_s for f in frames],
        ),
        options=options,
    )

    async def call() -> pb.EstimateResponse:
        async with grpc.aio.insecure_channel(address) as channel:
            reply: pb.EstimateResponse = await pose3d_pb2_grpc.Pose3DStub(channel).Estimate(request, timeout=120)  # type: ignore[no-untyped-call]
            return reply

    frames_json: list[dict[str, Any]] = estimate_json(asyncio.run(call()))["frames"]
    return frames_json


def streamed(address: str, frames: list[pb.StreamFrame], options: pb.Options = PSTMO) -> list[dict[str, Any]]:
    """The frames streamed undisturbed, as fast as possible (the reference a disturbed stream must equal)."""
    results: list[dict[str, Any]] = []
    config = StreamConfig(options=options, paced=False)
    asyncio.run(StreamClient(address, iter(frames), config, results.append).run())
    return without_latency(results)


def assert_same_poses(got: list[dict[str, Any]], want: list[dict[str, Any]], atol: float = 1e-5) -> None:
    """Same frames, people and 2D; 3D equal up to float32 rounding (windows batched differently)."""
    assert [f["frame_index"] for f in got] == [f["frame_index"] for f in want]
    for g, w in zip(got, want, strict=True):
        assert [p["track_id"] for p in g["people"]] == [p["track_id"] for p in w["people"]]
        for pg, pw in zip(g["people"], w["people"], strict=True):
            assert pg["keypoints_2d"] == pw["keypoints_2d"]
            np.testing.assert_allclose(pg["keypoints_3d"], pw["keypoints_3d"], atol=atol, rtol=0)


def without_latency(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "latency_ms"} for r in results]


def test_health_not_serving_while_loading_then_serving_and_reflection(deployment: Deployment) -> None:
    for worker in deployment.workers:
        seen = worker.seen_health
        assert "NOT_SERVING" in seen, f"{worker.name} health went {seen}"
        assert seen.index("NOT_SERVING") < seen.index("SERVING")
        assert worker.metric("pose3d_worker_up") == 1.0
    assert health_status(deployment.gateway.grpc_address, "pose3d.v1.Pose3D") == "SERVING"
    with grpc.insecure_channel(deployment.gateway.grpc_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"pose3d.v1.Pose3D", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    ready = httpx.get(deployment.gateway.url + "/readyz").json()
    target = "ipv4:" + ",".join(w.address for w in deployment.workers)  # one channel, gRPC's round_robin
    assert ready["detail"][f"worker {target}"] == "serving (channel ready)"


def test_unary_grpc_equals_rest(deployment: Deployment) -> None:
    image = encode_frame(synthetic_image(5, 96, 128))
    rest = httpx.post(deployment.gateway.url + "/v1/pose3d", files={"file": ("a.png", image)}, timeout=120).json()
    over_grpc = asyncio.run(estimate_grpc(deployment.gateway.grpc_address, image, EstimateArgs(), 120))
    assert over_grpc["frames"] == rest["frames"]
    assert over_grpc["model"] == rest["model"]
    assert over_grpc["box_source"] == rest["box_source"]
    assert over_grpc["joint_names"] == rest["joint_names"]

    frames = keypoint_messages(12)
    body = {
        "keypoints_2d": [
            np.concatenate(
                [np.asarray(f.keypoints.xy).reshape(17, 2), np.asarray(f.keypoints.scores)[:, None]], axis=1
            ).tolist()
            for f in frames
        ],
        "image_size": [640, 480],
        "model": "pstmo-9",
        "timestamps_s": [f.timestamp_s for f in frames],
    }
    rest_kp = httpx.post(deployment.gateway.url + "/v1/pose3d", json=body, timeout=120).json()
    # 12 windows through the dynamic batcher: how they group differs between the two calls, and so may the
    # last float bits (oneDNN's kernels depend on the batch size): equal up to that noise
    assert_same_frames(keypoints_posted_whole(deployment.gateway.grpc_address, frames), rest_kp["frames"])


def test_estimate_cli_gives_the_same_document_over_rest_and_grpc(deployment: Deployment, tmp_path: Path) -> None:
    image = tmp_path / "person.png"
    image.write_bytes(encode_frame(synthetic_image(7, 96, 128)))
    documents = []
    for transport in (["--url", deployment.gateway.url], ["--grpc", deployment.gateway.grpc_address]):
        out = tmp_path / "out.json"
        command = pose3d_command("estimate", str(image), *transport, "--compact", "-o", str(out))
        done = subprocess.run(command, env=deployment.env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        documents.append(json.loads(out.read_text()))
    rest, over_grpc = documents
    assert over_grpc["frames"] == rest["frames"]
    assert {k: v for k, v in over_grpc.items() if k not in ("request_id", "timings_ms")} == {
        k: v for k, v in rest.items() if k not in ("request_id", "timings_ms")
    }


def test_stream_equals_the_clip_posted_whole(deployment: Deployment, tmp_path: Path) -> None:
    clip = write_synthetic_clip(tmp_path / "clip.mp4", 12, 64, 96)
    rest = httpx.post(
        deployment.gateway.url + "/v1/pose3d", files={"file": ("clip.mp4", clip.read_bytes())}, timeout=120
    ).json()
    results: list[dict[str, Any]] = []
    client = StreamClient(deployment.gateway.grpc_address, clip_frames(clip), StreamConfig(paced=False), results.append)
    stats = asyncio.run(client.run())
    assert stats.results == 12
    # the posted clip reaches a worker in chunks that share its batches: equal up to float32 rounding
    assert_same_poses(without_latency(results), rest["frames"])


def test_streaming_cli_prints_latency_percentiles_and_fps(deployment: Deployment, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    command = pose3d_command(
        "stream", "--synthetic", "24", "--width", "64", "--height", "96", "--grpc", deployment.gateway.grpc_address,
        "--no-progress", "-o", str(out),
    )  # fmt: skip
    done = subprocess.run(command, env=deployment.env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    print(done.stderr)
    assert len(out.read_text().splitlines()) == 24
    assert "24 results" in done.stderr
    assert "fps" in done.stderr
    assert "p50" in done.stderr
    assert "p99" in done.stderr


def test_slow_reader_does_not_grow_gateway_memory(deployment: Deployment) -> None:
    gateway = deployment.gateway
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    frame = encode_frame(noise)  # ~200 kB that compresses to nothing
    before = gateway.rss_bytes()

    async def offer_without_reading() -> int:
        options = [("grpc.http2.bdp_probe", 0)]
        async with grpc.aio.insecure_channel(gateway.grpc_address, options=options) as channel:
            call = pose3d_pb2_grpc.Pose3DStub(channel).StreamEstimate()  # type: ignore[no-untyped-call]
            await call.write(
                pb.StreamEstimateRequest(open=pb.StreamOpen(options=pb.Options(mode=pb.WINDOW_MODE_CAUSAL)))
            )
            await call.read()
            for i in range(300):  # 60 MB offered
                try:
                    async with asyncio.timeout(3.0):
                        await call.write(pb.StreamEstimateRequest(frame=pb.StreamFrame(image=frame, frame_index=i)))
                except TimeoutError:
                    call.cancel()
                    return i
            call.cancel()
            return 300

    accepted = asyncio.run(offer_without_reading())
    grown = gateway.rss_bytes() - before
    assert accepted < 300, "the gateway took every frame of a client that read no result"
    assert grown < 40 * 1024 * 1024, f"gateway RSS grew by {grown / 2**20:.1f} MiB"
    assert health_status(gateway.grpc_address, "pose3d.v1.Pose3D") == "SERVING"


def run_stream_and_act(
    address: str, frames: list[pb.StreamFrame], act_after: int, act: Any, options: pb.Options = PSTMO
) -> tuple[list[dict[str, Any]], int]:
    """Stream ``frames`` at 25 fps; call ``act()`` (in a thread) once ``act_after`` results arrived."""
    results: list[dict[str, Any]] = []
    reached = threading.Event()

    def collect(result: dict[str, Any]) -> None:
        results.append(result)
        if len(results) >= act_after:
            reached.set()

    def acting() -> None:
        if reached.wait(120):
            act()

    helper = threading.Thread(target=acting)
    helper.start()
    config = StreamConfig(options=options, paced=True, resume_attempts=120, resume_backoff_s=0.25)
    stats = asyncio.run(StreamClient(address, iter(frames), config, collect).run())
    helper.join(10)
    return results, stats.resumes


SAVGOL = pb.Options(model="pstmo-9", smoothing=pb.Smoothing(method=pb.SMOOTHING_METHOD_SAVGOL))


def push_frames_per_worker(deployment: Deployment) -> dict[str, float]:
    return {w.name: w.metric("pose3d_requests_total", 'route="worker.Submit"') for w in deployment.workers}


def assert_same_world(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """:func:`assert_same_poses`, and the camera-frame poses too (smoothed with the root-relative ones)."""
    assert_same_poses(got, want)
    for g, w in zip(got, want, strict=True):
        for pg, pw in zip(g["people"], w["people"], strict=True):
            np.testing.assert_allclose(pg["keypoints_3d_camera"], pw["keypoints_3d_camera"], atol=1e-5, rtol=0)


def test_a_savgol_stream_spread_round_robin_over_two_workers_equals_the_clip_posted_whole(
    deployment: Deployment,
) -> None:
    frames = keypoint_messages(40, seed=5)
    whole = keypoints_posted_whole(deployment.gateway.grpc_address, frames, SAVGOL)
    assert not np.allclose(  # smoothing acts: the reference is not the unsmoothed clip
        whole[20]["people"][0]["keypoints_3d"],
        keypoints_posted_whole(deployment.gateway.grpc_address, frames)[20]["people"][0]["keypoints_3d"],
        atol=1e-5,
    )
    before = push_frames_per_worker(deployment)
    results = streamed(deployment.gateway.grpc_address, frames, SAVGOL)
    served = {name: n - before[name] for name, n in push_frames_per_worker(deployment).items()}
    assert all(n >= 15 for n in served.values()), f"frames per worker: {served}"  # gRPC's round_robin, no affinity
    assert [r["frame_index"] for r in results] == list(range(40))  # every frame answered
    assert_same_world(results, whole)


def test_sigkill_of_a_worker_mid_savgol_stream_loses_no_smoothing_continuity(deployment: Deployment) -> None:
    frames = keypoint_messages(60, seed=6)
    whole = keypoints_posted_whole(deployment.gateway.grpc_address, frames, SAVGOL)
    killed: list[Worker] = []

    def kill_a_worker() -> None:
        deployment.workers[0].kill()
        killed.append(deployment.workers[0])

    results, _ = run_stream_and_act(deployment.gateway.grpc_address, frames, 20, kill_a_worker, SAVGOL)
    assert killed, "no worker was killed"
    assert [r["frame_index"] for r in results] == list(range(60))
    assert_same_world(without_latency(results), whole)  # no frame smoothed afresh after the kill
    killed[0].start()  # back for the tests after this one
    wait_all_serving(deployment.workers)


def test_sigkill_of_a_worker_mid_stream_loses_and_changes_nothing(deployment: Deployment) -> None:
    frames = keypoint_messages()
    whole = keypoints_posted_whole(deployment.gateway.grpc_address, frames)
    reference = streamed(deployment.gateway.grpc_address, frames)
    assert_same_poses(reference, whole)
    pushes = {w.name: w.metric("pose3d_requests_total", 'route="worker.Submit"') for w in deployment.workers}
    killed: list[Worker] = []

    def kill_the_streams_worker() -> None:
        busiest = max(
            deployment.workers,
            key=lambda w: w.metric("pose3d_requests_total", 'route="worker.Submit"') - pushes[w.name],
        )
        busiest.kill()
        killed.append(busiest)

    results, _ = run_stream_and_act(deployment.gateway.grpc_address, frames, 20, kill_the_streams_worker)
    assert killed, "no worker was killed"
    assert [r["frame_index"] for r in results] == list(range(KEYPOINT_FRAMES))
    assert without_latency(results) == reference
    time.sleep(1.0)
    ready = httpx.get(deployment.gateway.url + "/readyz").json()
    assert ready["ready"]  # the other worker still serves (the channel stays READY on it)


def test_gateway_killed_and_restarted_mid_stream_resumes_by_id(deployment: Deployment) -> None:
    frames = keypoint_messages(seed=4)
    reference = streamed(deployment.gateway.grpc_address, frames)
    assert_same_poses(reference, keypoints_posted_whole(deployment.gateway.grpc_address, frames))

    def kill_and_restart_gateway() -> None:
        deployment.gateway.kill()
        deployment.restart_gateway()

    results, resumes = run_stream_and_act(deployment.gateway.grpc_address, frames, 20, kill_and_restart_gateway)
    assert resumes >= 1
    assert [r["frame_index"] for r in results] == list(range(KEYPOINT_FRAMES))
    assert without_latency(results) == reference
