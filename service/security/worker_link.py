"""The worker port is no side door: who may call a worker, decided at start and checked on every call.

Beyond loopback a worker authenticates its callers by mTLS, by an API key over TLS (checked from the metadata
before any message is read: :class:`WorkerKeyInterceptor`), or is told ``trusted_network=true``; otherwise
``pose3d worker`` refuses to start naming these fixes (docs/security.md, "The worker port is no side door").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc

from service.config import WorkerSettings
from service.security.grpc_door import HEALTH_PREFIX, refusing
from service.security.guard import SecurityConfigError, is_loopback
from service.security.keys import KeyStore, presented_credentials

log = logging.getLogger("pose3d.security")


FIXES: Final = (
    "set POSE3D_TLS__CERTFILE, POSE3D_TLS__KEYFILE and POSE3D_TLS__CLIENT_CA_FILE (mTLS), or those two and "
    "POSE3D_API_KEYS_FILE (callers present a key), or POSE3D_TRUSTED_NETWORK=true if only trusted hosts can reach "
    "it, or --host 127.0.0.1"
)


def worker_link_summary(settings: WorkerSettings) -> tuple[int, str]:
    """``(log level, sentence)`` saying how callers of this worker are authenticated; SecurityConfigError when
    they would not be and the worker listens beyond loopback (or a setting cannot work)."""
    tls = settings.tls
    has_tls = tls.certfile is not None and tls.keyfile is not None
    if settings.api_keys_file is not None and not has_tls:
        raise SecurityConfigError(
            "api_keys_file needs TLS on the worker port (a key sent in plaintext can be copied) — "
            "set POSE3D_TLS__CERTFILE and POSE3D_TLS__KEYFILE"
        )
    ways = []
    if has_tls and tls.client_ca_file is not None:
        ways.append(f"client certificates from {tls.client_ca_file} (mTLS)")
    if settings.api_keys_file is not None:
        ways.append(f"API keys from {settings.api_keys_file} over TLS")
    if ways:
        return logging.INFO, "worker callers authenticated by " + " and ".join(ways)
    if is_loopback(settings.host):
        return logging.INFO, f"worker callers NOT authenticated (listening on loopback {settings.host} only)"
    if settings.trusted_network:
        return logging.WARNING, (
            f"worker callers NOT authenticated on {settings.host} (trusted_network=true): anyone who reaches "
            "this port can read and close every stream — keep it behind a network policy"
        )
    raise SecurityConfigError(
        f"the worker would listen on {settings.host} (not loopback) without authenticating its callers — {FIXES}"
    )


class WorkerKeyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Every call but ``grpc.health.v1.Health`` needs a key of ``keys`` in its metadata; others get
    UNAUTHENTICATED before their message is read."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or str(handler_call_details.method).startswith(HEALTH_PREFIX):
            return handler
        presented, _ = presented_credentials(handler_call_details.invocation_metadata)
        if presented is not None and self.keys.verify(presented) is not None:
            return handler
        return refusing(handler, _unauthenticated)


async def _unauthenticated(context: Any) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "this worker requires an API key (security.worker_api_key)")
