"""Building blocks of a grpc.aio server: message size limits, keepalive, health and reflection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from service.proto_gen.pose3d.v1 import pose3d_pb2
from service.proto_gen.pose3d.worker.v1 import worker_pb2

if TYPE_CHECKING:
    from service.rpc.decoding import Precheck, Refused

PUBLIC_SERVICE: Final = pose3d_pb2.DESCRIPTOR.services_by_name["Pose3D"].full_name
WORKER_SERVICE: Final = worker_pb2.DESCRIPTOR.services_by_name["Worker"].full_name
HEALTH_SERVICE: Final = "grpc.health.v1.Health"


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Options shared by servers and channels: both directions capped at ``max_message_bytes``."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def new_server(
    max_message_bytes: int,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    prechecks: Mapping[str, Precheck] | None = None,
    refused: Refused | None = None,
) -> grpc.aio.Server:
    """A grpc.aio server whose messages are limited to ``max_message_bytes`` each way; ``prechecks`` and
    ``refused``: see :class:`~service.rpc.decoding.CallInterceptor`, which wraps every handler once (decoding, trace
    span, the count of calls refused before their handler)."""
    # no SO_REUSEPORT: a second server on a port already in use must fail to bind, not share it silently
    opts = [
        *channel_options(max_message_bytes),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.so_reuseport", 0),
    ]
    from service.rpc.decoding import CallInterceptor

    # the one wrap of what the given interceptors (API keys) return: decoding (bad protobuf: INVALID_ARGUMENT), span
    return grpc.aio.server(options=opts, interceptors=[CallInterceptor(prechecks, refused), *interceptors])


def add_health_and_reflection(server: grpc.aio.Server, services: Sequence[str]) -> health_aio.HealthServicer:
    """Register ``grpc.health.v1.Health`` (every service NOT_SERVING until :func:`set_serving`) and reflection."""
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection([*services, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
    return health


async def set_serving(health: health_aio.HealthServicer, services: Sequence[str], serving: bool) -> None:
    """Set the overall status ("") and that of each of ``services``."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *services):
        await health.set(name, status)
