"""The gateway's one channel to its workers: gRPC's own ``round_robin`` over health-checked backends, UNAVAILABLE
retried by the service config's ``retryPolicy`` (never a refusal: RESOURCE_EXHAUSTED is an answer), no stickiness
(stream state lives in the frame buffer). ``workers`` becomes one target (:func:`worker_target`). The why and the
details: docs/streams-and-state.md "How the gateway balances".
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import time
from collections.abc import Sequence
from typing import Any, Final

import grpc

from service.errors import DeadlineExceeded
from service.proto_gen.pose3d.worker.v1 import worker_pb2_grpc
from service.rpc.server import WORKER_SERVICE, channel_options
from service.rpc.status import error_from_rpc
from service.telemetry.grpc_trace import TraceClientInterceptor, TraceStreamClientInterceptor

RETRY_MAX_ATTEMPTS: Final = 3
RECONNECT_BACKOFF_MAX_MS: Final = 2000

WORKER_SERVICE_CONFIG: Final = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": WORKER_SERVICE},
        "methodConfig": [
            {
                "name": [{"service": WORKER_SERVICE}],
                "retryPolicy": {
                    "maxAttempts": RETRY_MAX_ATTEMPTS,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],  # never RESOURCE_EXHAUSTED: a refusal is an answer
                },
            }
        ],
    }
)
_SCHEMES: Final = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


def _split(address: str) -> tuple[str, str]:
    """``host:port`` or ``[v6]:port`` → ``(host, port)``; raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"worker address {address!r} is not host:port")
    return host.strip("[]"), port


def _resolve(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``host`` itself when it is an IP literal, else its address (IPv4 preferred); raises ValueError when it does
    not resolve."""
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host)
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"worker host {host!r} does not resolve: {e}") from e
    found = [ipaddress.ip_address(str(info[4][0])) for info in infos]
    return next((a for a in found if a.version == 4), found[0])


def worker_target(addresses: Sequence[str]) -> str:
    """The one gRPC target for ``addresses`` (see the module docstring); raises ValueError.

    >>> worker_target(["127.0.0.1:50061", "127.0.0.1:50062"])
    'ipv4:127.0.0.1:50061,127.0.0.1:50062'
    >>> worker_target(["dns:///workers.pose3d.svc:50061"])
    'dns:///workers.pose3d.svc:50061'
    """
    if not addresses:
        raise ValueError("the gateway needs at least one worker address")
    if len(addresses) == 1:
        return addresses[0]
    if any(a.startswith(_SCHEMES) for a in addresses):
        raise ValueError("a worker address with a scheme (dns:///, ipv4:, ...) must be the only one")
    pairs = [_split(a) for a in addresses]
    ips = [(_resolve(host), port) for host, port in pairs]
    versions = {ip.version for ip, _ in ips}
    if versions == {4}:
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in ips)
    if versions == {6}:
        return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in ips)
    raise ValueError("worker addresses mix IPv4 and IPv6; gRPC's static target lists take one family")


def worker_tls_name(addresses: Sequence[str]) -> str | None:
    """The name the workers' TLS certificates are checked against when ``addresses`` become an ``ipv4:``/``ipv6:``
    list (whose authority names no host): the first address's host as written, before it was resolved; ``None``
    for a single target (gRPC takes the name from it).

    >>> worker_tls_name(["workers.internal:50061", "10.0.0.7:50061"])
    'workers.internal'
    """
    return _split(addresses[0])[0] if len(addresses) > 1 else None


class WorkerChannel:
    """One balanced, health-checked channel to the workers behind ``target`` (:func:`worker_target`): messages
    up to ``max_message_bytes`` both ways, ``call_timeout_s`` for a call without a deadline, mTLS with
    ``credentials`` (else plaintext) checking the name ``tls_name`` (:func:`worker_tls_name`) for a target list."""

    def __init__(
        self,
        target: str,
        max_message_bytes: int,
        call_timeout_s: float,
        credentials: grpc.ChannelCredentials | None = None,
        tls_name: str | None = None,
    ) -> None:
        self.target = target
        self.call_timeout_s = call_timeout_s
        options = [
            *channel_options(max_message_bytes),
            ("grpc.service_config", WORKER_SERVICE_CONFIG),
            ("grpc.initial_reconnect_backoff_ms", 200),  # a worker that (re)starts is seen within a few seconds
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
        ]
        if credentials is not None and tls_name is not None:
            options.append(("grpc.ssl_target_name_override", tls_name))
        interceptors = [TraceClientInterceptor(), TraceStreamClientInterceptor()]  # traceparent in every worker call
        if credentials is None:
            self.channel: Any = grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        else:
            self.channel = grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
        self.stub: Any = worker_pb2_grpc.WorkerStub(self.channel)  # type: ignore[no-untyped-call]

    def state(self) -> grpc.ChannelConnectivity:
        """The channel's connectivity (asks it to connect when idle)."""
        state: grpc.ChannelConnectivity = self.channel.get_state(try_to_connect=True)
        return state

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a connected, SERVING backend (start-up); False when none came."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout_s)
        except TimeoutError:
            return False
        return True

    def timeout(self, deadline: float | None) -> float:
        """Seconds left for a call (``call_timeout_s`` without a deadline)."""
        if deadline is None:
            return self.call_timeout_s
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline passed before it reached a worker")
        return remaining

    async def call(self, method: str, message: Any, deadline: float | None = None) -> Any:
        """``Worker.<method>(message)``; a failed call raises its service error (:func:`error_from_rpc`)."""
        try:
            return await getattr(self.stub, method)(message, timeout=self.timeout(deadline))
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    async def aclose(self) -> None:
        await self.channel.close()
