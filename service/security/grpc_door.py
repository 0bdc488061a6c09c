"""The key check at a gRPC door, shared by the public gateway port and the worker port.

:func:`refusing` turns a method handler into one that ends the call without reading a request message (the key is
read by :func:`service.security.keys.presented_credentials`). It runs in a server interceptor's ``intercept_service``,
which grpc.aio calls once the call's metadata has arrived and before any message is read, so a refused caller
allocates nothing however large the message it is sending (gRPC core drops the rest of a closed stream's data).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc

HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"
"""Methods of ``grpc.health.v1`` (open at every door: probes carry no key)."""

Abort = Callable[[Any], Awaitable[None]]
"""Ends the call on its ``grpc.aio.ServicerContext`` (raises, as ``context.abort`` does)."""


def refusing(handler: Any, abort: Abort) -> grpc.RpcMethodHandler:
    """A handler answering as ``handler`` would, that ends each call with ``abort`` before reading a message.

    It is request-streaming whatever ``handler`` is (the server hands it an iterator it never pulls) and has no
    deserializer, so even a unary call's message is neither assembled nor parsed."""

    async def refuse(requests: Any, context: Any) -> Any:
        await abort(context)

    serializer = handler.response_serializer
    if handler.unary_unary is not None or handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, response_serializer=serializer)
    return grpc.stream_stream_rpc_method_handler(refuse, response_serializer=serializer)
