"""API keys and quotas on the public gRPC port: one server interceptor.

Every call but ``grpc.health.v1.Health`` (and reflection when ``security.public_docs``) needs a key in the
metadata — ``authorization: Bearer <key>`` or ``x-api-key: <key>`` — and spends one token of its rate quota
(a ``StreamEstimate`` call is one request; its open stream counts against the key's stream quota).

Authentication before allocation: the key is checked in ``intercept_service``, from the metadata alone, before
any request message is read. A refused call gets a request-streaming handler that aborts without pulling a
message (:func:`~service.security.grpc_door.refusing`), so a 60 MiB ``Estimate`` without a key is never assembled, parsed or copied —
whatever its declared type, the server reads nothing of it. An accepted call runs its handler with the caller's
key id (``guard.principal``) and request id set, so they reach the servicer and the tasks it starts; refusals
end the call with UNAUTHENTICATED or RESOURCE_EXHAUSTED (+ ``retry-after-s``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc

from service.api.validation import safe_request_id
from service.errors import Pose3DError
from service.rpc.status import abort_with
from service.security.grpc_door import Abort, metadata_key, refusing
from service.security.guard import Security, principal
from service.telemetry.context import request_id
from service.telemetry.grpc_trace import rewrap

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"
REFLECTION_PREFIX: Final = "/grpc.reflection."


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
        rid = safe_request_id(offered_rid)
        request_id.set(rid)
        try:
            key_id = self.security.authenticate(presented)
            await self.security.admit(key_id)
        except Pose3DError as error:
            return refusing(handler, _aborter(error))
        return _wrapped(handler, key_id, rid)


def _aborter(error: Pose3DError) -> Abort:
    async def abort(context: Any) -> None:
        await abort_with(context, error)

    return abort


def _wrapped(handler: Any, key_id: str, rid: str) -> grpc.RpcMethodHandler:
    """``handler`` with the caller's key id and request id set inside each of its behaviours."""

    def enter() -> None:
        request_id.set(rid)
        principal.set(key_id)

    def unary_result(behavior: Any) -> Any:
        async def run(request: Any, context: Any) -> Any:
            enter()
            return await behavior(request, context)

        return run

    def stream_result(behavior: Any) -> Any:
        async def run(request: Any, context: Any) -> AsyncIterator[Any]:
            enter()
            async for item in behavior(request, context):
                yield item

        return run

    return rewrap(handler, unary_result, stream_result)
