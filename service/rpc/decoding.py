"""Every server handler wrapped once (:class:`CallInterceptor`): a precheck of its raw bytes, its request decoded,
its call traced (docs/architecture.md, "gRPC server handler wrapping").

- **Decoding**: grpc.aio reports a payload that is not valid protobuf as ``UNKNOWN``, which clients take for a
  retryable server fault; the wrapped handler takes raw bytes and aborts with ``INVALID_ARGUMENT`` itself. Payloads
  of :data:`OFF_LOOP_BYTES` or more are decoded on a worker thread.
- **Precheck** (:data:`Precheck`): the public ``Estimate`` refuses keypoints too large for the frame limit from a
  scan of the top-level fields (:mod:`service.rpc.wire`), without parsing them.
- **Trace**: the call runs in a server span, child of the caller's ``traceparent``.

The interceptor comes first, so it also wraps an API-key refusal (no deserializer: its requests pass undecoded).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError

from service.errors import Pose3DError
from service.rpc.status import abort_with
from service.telemetry.grpc_trace import current, server_span

Decoder = Callable[[bytes], Any]
Refused = Callable[[str, Any, float], None]
"""``(method, context, start)``: a call ended before its handler ran — a refused API key, a request that is not
protobuf or fails its precheck — at ``context``'s status; ``start`` is ``time.perf_counter()`` at its start. (A
handler that runs counts its own call: :func:`service.rpc.handlers.observed_call`.)"""
Precheck = Callable[[bytes], None]
"""Looks at a unary request's raw bytes before they are decoded; raises a Pose3DError to refuse the call."""

OFF_LOOP_BYTES: Final = 256 * 1024
"""Request payloads at least this large are decoded off the event loop."""

_KINDS: Final = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def decode_off_loop(decode: Decoder, raw: bytes) -> Any:
    """Decode a large payload (runs on a worker thread; a module function so tests can hold it at a gate)."""
    return decode(raw)


async def _decoded(decode: Decoder, raw: bytes, context: Any) -> Any:
    try:
        if len(raw) >= OFF_LOOP_BYTES:
            return await asyncio.to_thread(decode_off_loop, decode, raw)
        return decode(raw)
    except (DecodeError, ValueError) as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid protobuf message: {exc}")


async def _decoded_stream(decode: Decoder, raw: AsyncIterator[bytes], context: Any) -> AsyncIterator[Any]:
    async for item in raw:
        yield await _decoded(decode, item, context)


def _requests(handler: grpc.RpcMethodHandler, precheck: Precheck | None) -> Callable[[Any, Any], Awaitable[Any]]:
    """What the handler's behaviour takes, from what the server hands the wrapped one (raw bytes, or their stream)."""
    decode = handler.request_deserializer

    async def requests(raw: Any, context: Any) -> Any:
        if decode is None:  # a refusal: nothing is read
            return raw
        if handler.request_streaming:
            return _decoded_stream(decode, raw, context)
        if precheck is not None:
            try:
                precheck(raw)
            except Pose3DError as exc:
                await abort_with(context, exc)
        return await _decoded(decode, raw, context)

    return requests


def wrapped(
    handler: grpc.RpcMethodHandler,
    precheck: Precheck | None,
    span: Callable[[], Any],
    refused: Callable[[Any, float], None] | None = None,
) -> grpc.RpcMethodHandler:
    """``handler`` taking raw requests, decoding them and running in ``span()`` (an async generator stays one; a
    coroutine — a single response, or a stream written with ``context.write`` such as health ``Watch`` — stays one).
    ``refused(context, start)`` is told of a call that ended before ``handler`` ran: its request undecodable or
    prechecked out, or ``handler`` a refusal (no deserializer: :func:`service.security.grpc_door.refusing`)."""
    attr = next(name for name in _KINDS if getattr(handler, name) is not None)
    behavior = getattr(handler, attr)
    requests = _requests(handler, precheck)
    refusal = handler.request_deserializer is None

    async def request_of(raw: Any, context: Any, start: float) -> Any:
        try:
            return await requests(raw, context)
        except grpc.aio.AbortError:
            if refused is not None:
                refused(context, start)
            raise

    if inspect.isasyncgenfunction(behavior):

        async def stream(raw: Any, context: Any) -> AsyncIterator[Any]:
            server = span()
            try:
                with current(server):
                    replies = behavior(await request_of(raw, context, time.perf_counter()), context)
                async with contextlib.aclosing(replies):
                    while True:
                        with current(server):  # the handler's steps run in its span; the yield does not
                            try:
                                item = await anext(replies)
                            except StopAsyncIteration:
                                return
                        yield item
            finally:
                server.end()

        return _KINDS[attr](stream, response_serializer=handler.response_serializer)

    async def run(raw: Any, context: Any) -> Any:
        start = time.perf_counter()
        with current(span(), end=True):
            try:
                result = behavior(await request_of(raw, context, start), context)
                return await result if inspect.isawaitable(result) else result
            except grpc.aio.AbortError:
                if refusal and refused is not None:
                    refused(context, start)
                raise

    return _KINDS[attr](run, response_serializer=handler.response_serializer)


class CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps each handler once (:func:`wrapped`); ``prechecks`` maps a unary method's full name
    (``/package.Service/Method``) to a :data:`Precheck` run on its raw bytes first; ``refused`` counts the calls
    ended before their handler ran (:data:`Refused`)."""

    def __init__(self, prechecks: Mapping[str, Precheck] | None = None, refused: Refused | None = None) -> None:
        self._prechecks = dict(prechecks or {})
        self._refused = refused

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = str(details.method)
        span = server_span(method, details.invocation_metadata)
        counted = self._refused
        refused = None if counted is None else functools.partial(counted, method)
        return wrapped(handler, self._prechecks.get(details.method), span, refused)
