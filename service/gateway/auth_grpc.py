"""API keys and quotas on the public gRPC port: one server interceptor.

Every call but ``grpc.health.v1.Health`` (and reflection when ``security.public_docs``) needs a key in the metadata
(``authorization: Bearer <key>`` or ``x-api-key: <key>``) and spends one token of its rate quota. The key is checked
before any request message is read (docs/security.md, "Authentication before allocation"); a refused call ends with
UNAUTHENTICATED or RESOURCE_EXHAUSTED. An accepted call's handler runs in the interceptor's task (grpc.aio), so the
key id (``guard.principal``) and request id set here reach the servicer and the tasks it starts.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Final

import grpc

from service.api.validation import safe_request_id
from service.errors import Pose3DError
from service.rpc.status import abort_with
from service.security.grpc_door import HEALTH_PREFIX, refusing
from service.security.guard import Security, principal
from service.security.keys import presented_credentials
from service.telemetry.context import request_id

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
        presented, offered_rid = presented_credentials(handler_call_details.invocation_metadata)
        request_id.set(safe_request_id(offered_rid))  # every call's, keys or not (its logs and error details)
        if handler is None or not self.security.enabled or self._open(method):
            return handler
        try:
            key_id = self.security.authenticate(presented)
            await self.security.admit(key_id)
        except Pose3DError as error:
            return refusing(handler, functools.partial(abort_with, error=error))
        principal.set(key_id)  # the call's task runs its handler next, in this context
        return handler
