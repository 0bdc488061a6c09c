"""A worker's ``/metrics`` reports what its engine holds: ``pose3d_active_streams`` is counted at each scrape, as
the gateway's ``/metrics`` counts it — with a shared (Redis) frame buffer only a readiness check counts the streams,
and no one asked a worker's engine, so the gauge said 0 whatever was open."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from service.config import WorkerSettings
from service.engine.inprocess import InProcessEngine
from service.metrics import Metrics
from service.worker.server import run_worker
from tests.conftest import RedisServer, free_port
from tests.service.test_engine_support import options, tiny_settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _gauge(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


async def test_a_worker_s_metrics_count_its_open_streams(redis_server: RedisServer) -> None:
    metrics_port = free_port()
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": free_port(), "metrics_port": metrics_port}
    own_db = redis_server.url.rsplit("/", 1)[0] + "/10"  # the suite's other tests leave streams in db 0
    settings = WorkerSettings.model_validate(tiny_settings(own_db).model_dump() | fields)
    engines: list[InProcessEngine] = []
    serving, stop = asyncio.Event(), asyncio.Event()

    def factory(s: WorkerSettings, metrics: Metrics) -> InProcessEngine:
        engines.append(InProcessEngine(s, metrics))
        return engines[0]

    class OnServing(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "serving on" in record.getMessage():
                serving.set()

    handler, logger = OnServing(), logging.getLogger("service.worker.server")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    worker = asyncio.create_task(run_worker(settings, engine_factory=factory, stop=stop))
    try:
        await asyncio.wait({worker, asyncio.create_task(serving.wait())}, return_when=asyncio.FIRST_COMPLETED)
        assert serving.is_set(), worker.result()

        async def scrape() -> str:
            return (await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)).text

        assert _gauge(await scrape(), "pose3d_active_streams") == 0
        opened = [await engines[0].open_stream(options("pstmo")) for _ in range(2)]
        assert _gauge(await scrape(), "pose3d_active_streams") == 2
        await engines[0].close_stream(opened[0].stream_id)
        assert _gauge(await scrape(), "pose3d_active_streams") == 1
        await engines[0].close_stream(opened[1].stream_id)  # none left behind in its database
    finally:
        logger.removeHandler(handler)
        stop.set()
        await worker
