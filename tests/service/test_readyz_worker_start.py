"""``/readyz`` at a worker's start shows the same redacted detail as ever, never a raw gRPC error.

While the gateway has no model list yet (a worker just came up), ``/readyz`` asks the worker for one (``Describe``)
once the channel says READY. A worker that went away in that moment made ``/readyz`` answer the gRPC core's text
as its detail — ``connections to all backends failing; last error: …: ipv4:127.0.0.1:<port>: … Connection
refused`` — to anyone, although worker addresses are shown only to a caller with a key. The worker is held inside
``Describe`` by a gate, stopped, and only then let go: the order is fixed, no timing is assumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.engine.types import ModelInfo
from service.gateway.app import create_app
from service.rpc.remote_engine import RemoteEngineClient
from service.security.owned_engine import owned
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import bearer, make_keys, secured
from tests.service.test_grpc_remote import Worker, start_worker


class HeldDescribe(ToyEngine):
    """A toy engine whose model list waits for ``gate`` (``entered`` is set once asked)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.gate = asyncio.Event(), asyncio.Event()

    async def models(self) -> list[ModelInfo]:
        self.entered.set()
        await self.gate.wait()
        return await super().models()


@dataclass
class Gateway:
    http: httpx.AsyncClient
    worker: Worker
    engine: HeldDescribe
    key: str


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    engine = HeldDescribe()
    worker = await start_worker(engine)
    remote = RemoteEngineClient([worker.address])
    assert await remote.workers.wait_ready(60)
    keys = make_keys(tmp_path)
    app = create_app(secured(keys, default_image_model="toy", default_clip_model="toy"), engine=remote)
    app.state.gateway.engine = owned(remote, app.state.security)  # what the lifespan does
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield Gateway(http, worker, engine, keys.alice)
    finally:
        engine.gate.set()
        await remote.aclose()
        await worker.server.stop(0)


async def test_a_worker_gone_while_described_shows_no_raw_error(gateway: Gateway) -> None:
    port = gateway.worker.address.rsplit(":", 1)[1]
    asking = asyncio.create_task(gateway.http.get("/readyz"))
    await gateway.engine.entered.wait()  # the channel was READY; Describe is in the worker now
    await gateway.worker.server.stop(0)
    gateway.engine.gate.set()
    answer = await asking
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert port not in answer.text
    assert "127.0.0.1" not in answer.text
    assert "backends" not in answer.text
    detail = answer.json()["detail"]
    assert detail["workers"] == "1 of 1 serving (names and states with an API key)"  # as its readiness said
    assert detail["engine"].startswith("service unavailable: the request could not be served right now")
    with_key = await gateway.http.get("/readyz", headers=bearer(gateway.key))
    assert with_key.status_code == 503  # the worker is gone: its address now, to a caller with a key
    assert f"worker {gateway.worker.address}" in with_key.json()["detail"]
