"""deploy/docker-compose.yml run for real (podman + podman-compose, deploy/podman): redis, two workers, one gateway
and Prometheus from the images built here, tiny random-weight models. With its API key an image is answered 200;
a gRPC stream of 120 frames during which a worker container is SIGKILLed gets every frame answered, equal to the
clip posted whole; Prometheus scrapes every target; ``down`` leaves no container, pod, network or volume.

The kill is placed by progress (40 results in), not by the clock. ``make containers`` (which ``make test`` runs)
installs podman; the images are cached between runs (deploy/podman/setup.sh, build.sh)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest

from service.client.results import estimate_json, frame_json
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from tests.deploy.compose_support import ComposeProject, build_image, require_podman
from tests.e2e.test_grpc_deployment import assert_same_poses, keypoint_messages
from tests.service.media_samples import encode_image, person_image

pytestmark = [pytest.mark.slow, pytest.mark.containers, pytest.mark.timeout(2400)]  # a cold image build

FRAMES = 120
KILL_AFTER = 40  # results received before a worker container is killed
WINDOW = 8  # frames in flight beyond the stream's lag


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    require_podman()
    build_image()
    deployed = ComposeProject(tmp_path_factory.mktemp("compose"))
    try:
        deployed.compose("up", "-d")
        print(f"/readyz: {deployed.wait_ready()}")
        yield deployed
    finally:
        deployed.down()  # once: test_down_leaves_nothing_behind already took it down


def metadata(project: ComposeProject) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {project.api_key}"),)


def estimate_whole(project: ComposeProject, frames: list[pb.StreamFrame]) -> list[dict[str, Any]]:
    request = pb.EstimateRequest(
        keypoints=pb.KeypointsInput(
            frames=[f.keypoints for f in frames],
            image_width=640,
            image_height=480,
            timestamps_s=[f.timestamp_s for f in frames],
        ),
        options=pb.Options(model="pstmo-9"),
    )

    async def call() -> pb.EstimateResponse:
        async with grpc.aio.insecure_channel(project.grpc_address) as channel:
            stub = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
            reply: pb.EstimateResponse = await stub.Estimate(request, timeout=120, metadata=metadata(project))
            return reply

    frames_json: list[dict[str, Any]] = estimate_json(asyncio.run(call()))["frames"]
    return frames_json


async def stream(
    project: ComposeProject, frames: list[pb.StreamFrame], at_progress: Callable[[int], None]
) -> list[dict[str, Any]]:
    """One bidirectional stream over ``frames`` (at most ``WINDOW`` beyond the lag unanswered); ``at_progress``
    (off the loop) after each result with the count so far. No resume: the gateway must hide the lost worker."""
    results: list[dict[str, Any]] = []
    async with grpc.aio.insecure_channel(project.grpc_address) as channel:
        stub = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
        call = stub.StreamEstimate(metadata=metadata(project), timeout=600)
        await call.write(pb.StreamEstimateRequest(open=pb.StreamOpen(options=pb.Options(model="pstmo-9"))))
        opened = await call.read()
        assert opened.WhichOneof("message") == "opened", opened
        lag = int(opened.opened.lag_frames)
        progressed = asyncio.Condition()

        async def read() -> None:
            while (msg := await call.read()) is not grpc.aio.EOF:
                if msg.WhichOneof("message") == "result":
                    results.append(frame_json(msg.result))
                    await asyncio.to_thread(at_progress, len(results))
                    async with progressed:
                        progressed.notify_all()

        reader = asyncio.create_task(read())

        def may_send(sent: int) -> bool:
            return sent - len(results) < lag + WINDOW or reader.done()

        for sent, frame in enumerate(frames):
            async with progressed:
                await progressed.wait_for(lambda: may_send(sent))  # noqa: B023 — awaited within this iteration
            await call.write(pb.StreamEstimateRequest(frame=frame))
        await call.done_writing()
        await reader
    return results


def test_an_image_with_a_key_is_answered_and_without_one_refused(project: ComposeProject) -> None:
    image = encode_image(person_image())
    files = {"file": ("person.jpg", image, "image/jpeg")}
    refused = httpx.post(project.http + "/v1/pose3d", files=files, timeout=60)
    assert refused.status_code == 401, refused.text
    headers = {"Authorization": f"Bearer {project.api_key}"}
    answered = httpx.post(project.http + "/v1/pose3d", files=files, headers=headers, timeout=120)
    assert answered.status_code == 200, answered.text
    assert answered.json()["frames"][0]["frame_index"] == 0


def test_a_stream_survives_a_killed_worker_container(project: ComposeProject) -> None:
    frames = keypoint_messages(FRAMES, seed=21)
    want = estimate_whole(project, frames)
    killed: list[int] = []

    def kill_a_worker(results: int) -> None:
        if results >= KILL_AFTER and not killed:
            killed.append(results)
            subprocess.run(["podman", "kill", project.container("worker-1")], check=True, capture_output=True)

    got = asyncio.run(stream(project, frames, kill_a_worker))
    assert killed, "the worker was never killed"
    assert [r["frame_index"] for r in got] == list(range(FRAMES))
    assert_same_poses(got, want)


def test_prometheus_scrapes_every_target(project: ComposeProject) -> None:
    subprocess.run(["podman", "start", project.container("worker-1")], capture_output=True)  # if it was killed
    deadline = time.monotonic() + 300
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        targets = project.prometheus_targets()
        health = {t["scrapeUrl"]: t["health"] for t in targets}
        if len(health) == 3 and set(health.values()) == {"up"}:
            print(f"Prometheus targets: {health}")
            return
        time.sleep(1)
    pytest.fail(f"Prometheus targets not all up: {health}")


def test_down_leaves_nothing_behind(project: ComposeProject) -> None:
    assert project.leftovers()["containers"], "nothing is running"
    project.down()
    assert project.leftovers() == {"containers": [], "pods": [], "networks": [], "volumes": []}
