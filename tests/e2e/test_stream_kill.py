"""8 concurrent gRPC streams survive a gateway SIGKILL + restart (issue 10): every stream ends with all its
frames, equal to the same keypoints posted whole and to the same stream run undisturbed.

Deployed as in production: redis-server, one ``pose3d worker`` and one ``pose3d gateway`` as processes (tiny
random-weight models); the clients are 8 :class:`~service.client.stream.StreamClient` s (the library under
``pose3d stream``) in one event loop, each sending its own 150-frame keypoint walk at 25 fps (6 s of video).

The kills are placed by progress, not by the clock, so a loaded machine moves them with the streams:

- "1 s in": as soon as every stream has been opened and has received its first result;
- "5 s in": as soon as every stream has received 100 results (4 s of video, past the middle of the stream).

The gateway is restarted on the same ports at once; the clients reconnect with backoff and resume by stream id
(the stream's state lives in Redis via the worker), re-sending the frames that have no result yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.client.stream import StreamClient, StreamConfig
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from tests.conftest import RedisServer
from tests.e2e.deployment import Gateway, Worker, deployment_env, new_gateway, new_worker, wait_all_serving
from tests.e2e.test_grpc_deployment import (
    assert_same_poses,
    keypoint_messages,
    keypoints_posted_whole,
    without_latency,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis]

STREAMS = 8
FRAMES = 150  # per stream, 25 fps: 6 s of video
MID_STREAM = 100  # results every stream has before the "5 s in" kill


class StreamDeployment:
    """redis (the fixture's), one worker, one gateway; the gateway can be SIGKILLed and restarted on its ports."""

    def __init__(self, redis: RedisServer, logs: Path) -> None:
        self.logs = logs
        self.env = deployment_env(redis.url)
        self.worker: Worker = new_worker("worker", self.env, logs)
        self.gateway: Gateway = new_gateway([self.worker], self.env, logs)
        try:
            self.worker.start()
            wait_all_serving([self.worker])
            self.gateway.start()
            self.gateway.wait_ready()
        except BaseException:
            self.stop()
            raise

    def kill_and_restart_gateway(self) -> None:
        old = self.gateway
        old.kill()
        self.gateway = new_gateway([self.worker], self.env, self.logs, old.port, old.grpc_port)
        self.gateway.start()

    def stop(self) -> None:
        self.gateway.stop()
        self.worker.stop()


@pytest.fixture(scope="module")
def deployment(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamDeployment]:
    deployed = StreamDeployment(redis_server, tmp_path_factory.mktemp("stream-kill"))
    yield deployed
    deployed.stop()


@pytest.fixture(scope="module")
def walks() -> list[list[pb.StreamFrame]]:
    return [keypoint_messages(FRAMES, seed=100 + s) for s in range(STREAMS)]


@pytest.fixture(scope="module")
def references(deployment: StreamDeployment, walks: list[list[pb.StreamFrame]]) -> list[list[dict[str, Any]]]:
    """Each walk's keypoints posted whole (``Estimate``): what every stream must reproduce."""
    return [keypoints_posted_whole(deployment.gateway.grpc_address, walk) for walk in walks]


async def run_streams(
    address: str, walks: list[list[pb.StreamFrame]], kill_when: Callable[[list[int]], bool], kill: Callable[[], None]
) -> tuple[list[list[dict[str, Any]]], list[int], list[bool]]:
    """Run one paced stream per walk; call ``kill`` (off the loop) once ``kill_when(results per stream)``.
    Returns each stream's results, each stream's reconnections, and which streams were running at the kill
    (none if there was no kill)."""
    results: list[list[dict[str, Any]]] = [[] for _ in walks]
    config = StreamConfig(
        options=pb.Options(model="pstmo-9"),
        paced=True,
        resume_backoff_s=0.2,
        resume_backoff_max_s=2.0,
        retry_budget_s=300.0,  # a restart on a loaded machine may take a while; the default is 60 s
    )
    clients = [StreamClient(address, iter(walk), config, results[i].append) for i, walk in enumerate(walks)]
    runs = [asyncio.create_task(c.run()) for c in clients]
    running_at_kill: list[bool] = []
    while not all(r.done() for r in runs):
        if not running_at_kill and kill_when(counts := [len(r) for r in results]):
            running_at_kill = [not r.done() for r in runs]
            print(f"gateway SIGKILLed with results per stream {counts}")
            await asyncio.to_thread(kill)
        await asyncio.sleep(0.01)
    stats = [await r for r in runs]  # raises a stream's error, if one gave up
    for s in stats:
        print(s.report().splitlines()[0])
    return results, [s.resumes for s in stats], running_at_kill


def check(results: list[list[dict[str, Any]]], references: list[list[dict[str, Any]]]) -> None:
    for got, want in zip(results, references, strict=True):
        assert [r["frame_index"] for r in got] == list(range(FRAMES))
        assert_same_poses(without_latency(got), want)


def test_undisturbed_streams_equal_the_keypoints_posted_whole(
    deployment: StreamDeployment, walks: list[list[pb.StreamFrame]], references: list[list[dict[str, Any]]]
) -> None:
    results, resumes, _ = asyncio.run(
        run_streams(deployment.gateway.grpc_address, walks, lambda _: False, lambda: None)
    )
    assert resumes == [0] * STREAMS
    check(results, references)


@pytest.mark.parametrize(
    ("moment", "results_before_kill"),
    [("1 s in: every stream opened and answered", 1), ("5 s in: mid-stream", MID_STREAM)],
)
def test_gateway_sigkill_loses_no_frame_of_8_streams(
    deployment: StreamDeployment,
    walks: list[list[pb.StreamFrame]],
    references: list[list[dict[str, Any]]],
    moment: str,
    results_before_kill: int,
) -> None:
    def every_stream_has_enough(counts: list[int]) -> bool:
        return min(counts) >= results_before_kill

    results, resumes, running = asyncio.run(
        run_streams(
            deployment.gateway.grpc_address, walks, every_stream_has_enough, deployment.kill_and_restart_gateway
        )
    )
    assert running == [True] * STREAMS, f"not every stream was still running at the kill ({moment})"
    assert all(n >= 1 for n in resumes), resumes  # every stream lost its connection and resumed
    check(results, references)
    deployment.gateway.wait_ready()
