"""A worker servicer on a loopback gRPC port, around any engine: what tests and benches put behind a
:class:`~service.rpc.remote_engine.RemoteEngineClient` (the worker process builds its own, with TLS and drain)."""

from __future__ import annotations

import grpc

from service.engine.types import EngineClient
from service.metrics import Metrics
from service.proto_gen.pose3d.worker.v1 import worker_pb2_grpc
from service.rpc.server import WORKER_SERVICE, add_health_and_reflection, new_server, set_serving
from service.worker.server import WorkerServicer

DEFAULT_MESSAGE_LIMIT = 16 * 1024 * 1024


async def serve_worker(
    engine: EngineClient | None,
    message_limit: int = DEFAULT_MESSAGE_LIMIT,
    metrics: Metrics | None = None,
    serving: bool = True,
) -> tuple[grpc.aio.Server, WorkerServicer, str]:
    """A started server with ``engine`` behind the worker servicer (None: a worker still loading) and its health
    service (SERVING unless ``serving`` is False): ``(server, servicer, "127.0.0.1:<port>")``. The caller stops the server."""
    server = new_server(message_limit)
    servicer = WorkerServicer(metrics or Metrics(), engine)
    worker_pb2_grpc.add_WorkerServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health = add_health_and_reflection(server, [WORKER_SERVICE])
    await set_serving(health, [WORKER_SERVICE], serving=serving)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, servicer, f"127.0.0.1:{port}"
