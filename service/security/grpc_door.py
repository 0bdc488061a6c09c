"""The key check at a gRPC door, shared by the public gateway port and the worker port.

:func:`metadata_key` reads the caller's key from call metadata; :func:`refusing` turns a method handler into one
that ends the call without reading a request message. Both run in a server interceptor's ``intercept_service``,
which grpc.aio calls once the call's metadata has arrived and before any message is read, so a refused caller
allocates nothing however large the message it is sending (gRPC core drops the rest of a closed stream's data).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Abort = Callable[[Any], Awaitable[None]]
"""Ends the call on its ``grpc.aio.ServicerContext`` (raises, as ``context.abort`` does)."""


def metadata_key(metadata: Any) -> tuple[str | None, str | None]:
    """``(API key, request id)`` from call metadata: ``authorization: Bearer <key>`` or ``x-api-key: <key>``."""
    found = {str(item[0]).lower(): item[1] for item in metadata or () if isinstance(item[1], str)}
    auth = found.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" and token.strip() else found.get("x-api-key")
    return key or None, found.get("x-request-id")


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
