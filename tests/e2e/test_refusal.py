"""End to end: a worker process over capacity refuses once — RESOURCE_EXHAUSTED with ``retry-after-s`` on the
worker link, 503 + Retry-After at the gateway — and nothing retries the refusal (the worker counts one call).

The worker is made busy without a clock: one image with ``BUSY_PEOPLE`` person boxes sent straight to its
``Estimate`` puts that many crops in its 2D detector's queue at once (one crop per batch; an empty queue admits one
caller's work of any size, past the bound of 64 units); the test waits until the worker's queue-depth gauge shows
them queued, then asks the gateway for one more image."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest

from service.client.sources import encode_frame, synthetic_image
from service.engine.types import EstimateOptions, ImageFrame, Work
from service.proto_gen.pose3d.worker.v1 import worker_pb2_grpc
from service.rpc import link
from tests.conftest import RedisServer
from tests.e2e.deployment import deployment_env, new_gateway, new_worker, wait_all_serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis]

BUSY_PEOPLE = 1000  # drains for seconds at one crop per batch: far longer than one request's hops
IMAGE = encode_frame(synthetic_image(3, 96, 128))
OUTCOME: list[str] = []


def keep_busy(address: str, done: threading.Event) -> None:
    """One ``Submit`` of one image with ``BUSY_PEOPLE`` boxes straight to the worker (its detector's queue fills)."""
    boxes = tuple((float(i % 50), 0.0, float(i % 50) + 40.0, 90.0) for i in range(BUSY_PEOPLE))
    request = link.work_to_pb(Work("busy", [ImageFrame(IMAGE)], EstimateOptions(model="capf", boxes=boxes)))
    try:
        with grpc.insecure_channel(address) as channel:
            for _ in worker_pb2_grpc.WorkerStub(channel).Submit(request, timeout=600):  # type: ignore[no-untyped-call]
                pass
    except grpc.RpcError as e:
        OUTCOME.append(f"{e.code().name}: {e.details()}")  # the worker is killed once the test has its answer
    finally:
        done.set()


def test_an_over_capacity_worker_is_answered_503_with_retry_after_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = deployment_env(redis_server.url)
    env.update({"POSE3D_ENGINE__MAX_QUEUE": "64", "POSE3D_ENGINE__DETECT__MAX_BATCH_SIZE": "1"})
    worker = new_worker("busy-worker", env, tmp_path)
    gateway = new_gateway([worker], env, tmp_path)
    busy_done = threading.Event()
    try:
        worker.start()
        wait_all_serving([worker])
        gateway.start()
        gateway.wait_ready()
        busy = threading.Thread(target=keep_busy, args=(worker.address, busy_done), daemon=True)
        busy.start()
        # a gate, not a clock: most of the crops queued (far past the bound of 64), so the queue cannot drain below
        # the bound while one more request travels gateway → worker
        while worker.metric("pose3d_queue_depth") < BUSY_PEOPLE // 2 and not busy_done.is_set():
            time.sleep(0.01)
        assert not busy_done.is_set(), "the busy request finished before the gateway's request was sent"
        before = worker.metric("pose3d_requests_total", 'code="RESOURCE_EXHAUSTED"')
        refused = httpx.post(gateway.url + "/v1/pose3d", files={"file": ("person.png", IMAGE)}, timeout=60)
        refusals = worker.metric("pose3d_requests_total", 'code="RESOURCE_EXHAUSTED"') - before
    finally:
        gateway.stop()
        worker.kill()  # no need to wait for the busy request
        busy_done.wait(60)
    assert refused.status_code == 503, f"{refused.text} (the busy request: {OUTCOME or 'answered'})"
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("over-capacity")
    assert float(refused.headers["retry-after"]) >= 1
    assert refusals == 1  # the worker saw the request once: no retry by the channel's policy, nor elsewhere
