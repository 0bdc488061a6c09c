"""API keys and quotas on the public gRPC port: one server interceptor.

Every call but ``grpc.health.v1.Health`` (and reflection when ``security.public_docs``) needs a key in the
metadata — ``authorization: Bearer <key>`` or ``x-api-key: <key>`` — and spends one token of its rate quota
(a ``StreamEstimate`` call is one request; its open stream counts against the key's stream quota). The check
runs inside the handler, so the caller's key id (``guard.principal``) and request id reach the servicer and
the tasks it starts; refusals end the call with UNAUTHENTICATED or RESOURCE_EXHAUSTED (+ ``retry-after-s``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc

from service.errors import Pose3DError
from service.gateway.problem import safe_request_id
from service.rpc.status import abort_with
from service.security.guard import Security, principal
from service.telemetry.context import request_id
from service.telemetry.grpc_trace import rewrap
from service.telemetry.tracing import stage_span

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"
REFLECTION_PREFIX: Final = "/grpc.reflection."


def metadata_key(metadata: Any) -> tuple[str | None, str | None]:
    """``(API key, request id)`` from call metadata."""
    found: dict[str, str] = {}
    for item in metadata or ():
        key, value = item[0], item[1]
        if isinstance(value, str):
            found[str(key).lower()] = value
    auth = found.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" and token.strip() else found.get("x-api-key")
    return key or None, found.get("x-request-id")


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticate and admit each call per :class:`Security`."""

    def __init__(self, security: Security) -> None:
        self.security = security

    def _open(self, method: str) -> bool:
        if method.startswith(HEALTH_PREFIX):
            return True
        return method.startswith(REFLECTION_PREFIX) and self.security.public_docs

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = str(handler_call_details.method)
        if handler is None or not self.security.enabled or self._open(method):
            return handler
        presented, offered_rid = metadata_key(handler_call_details.invocation_metadata)
        return _wrapped(handler, self.security, presented, safe_request_id(offered_rid))


async def _enter(security: Security, presented: str | None, rid: str, context: Any) -> None:
    request_id.set(rid)
    try:
        with stage_span("admission"):
            key_id = security.authenticate(presented)
            await security.admit(key_id)
    except Pose3DError as error:
        await abort_with(context, error)
    principal.set(key_id)


def _wrapped(handler: Any, security: Security, presented: str | None, rid: str) -> grpc.RpcMethodHandler:
    """``handler`` with the key check run first inside each of its behaviours."""

    def unary_result(behavior: Any) -> Any:
        async def run(request: Any, context: Any) -> Any:
            await _enter(security, presented, rid, context)
            return await behavior(request, context)

        return run

    def stream_result(behavior: Any) -> Any:
        async def run(request: Any, context: Any) -> AsyncIterator[Any]:
            await _enter(security, presented, rid, context)
            async for item in behavior(request, context):
                yield item

        return run

    return rewrap(handler, unary_result, stream_result)
