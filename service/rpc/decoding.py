"""Undecodable requests are INVALID_ARGUMENT: a server interceptor that decodes messages itself.

grpc.aio reports a request payload that is not valid protobuf as ``UNKNOWN`` ("Unexpected DecodeError"), which
clients (ours included) take for a retryable server fault. :class:`DecodeErrorInterceptor` gives every handler an
identity deserializer and decodes in the handler instead, aborting with ``INVALID_ARGUMENT`` when it fails.

Payloads of :data:`OFF_LOOP_BYTES` or more are decoded on a worker thread (:func:`decode_off_loop`), so the event
loop is not the one waiting for them (the C parser keeps the GIL while it parses many small messages, so the loop
can still pause for part of one parse, bounded by the message limit). A unary method may also have a precheck on
its raw bytes (:data:`Precheck`): the public ``Estimate`` refuses keypoints too large for the frame limit from a
scan of the top-level fields (:mod:`service.rpc.wire`) without parsing them at all.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError

from service.errors import Pose3DError
from service.rpc.status import abort_with

Decoder = Callable[[bytes], Any]
Precheck = Callable[[bytes], None]
"""Looks at a unary request's raw bytes before they are decoded; raises a Pose3DError to refuse the call."""

OFF_LOOP_BYTES: Final = 256 * 1024
"""Request payloads at least this large are decoded off the event loop."""


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


async def _settled(result: Any) -> Any:
    """A handler's result, awaited when it is a coroutine (a plain function's result as it is)."""
    return await result if inspect.isawaitable(result) else result


def _wrapped(handler: grpc.RpcMethodHandler, precheck: Precheck | None) -> grpc.RpcMethodHandler:
    decode = handler.request_deserializer
    if decode is None:
        return handler
    out = handler.response_serializer
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary

        async def uu(raw: bytes, context: Any) -> Any:
            if precheck is not None:
                try:
                    precheck(raw)
                except Pose3DError as exc:
                    await abort_with(context, exc)
            return await unary_unary(await _decoded(decode, raw, context), context)

        return grpc.unary_unary_rpc_method_handler(uu, response_serializer=out)
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream
        if not inspect.isasyncgenfunction(unary_stream):  # writes with context.write (e.g. health Watch)

            async def us_writes(raw: bytes, context: Any) -> Any:
                return await _settled(unary_stream(await _decoded(decode, raw, context), context))

            return grpc.unary_stream_rpc_method_handler(us_writes, response_serializer=out)

        async def us(raw: bytes, context: Any) -> AsyncIterator[Any]:
            async for item in unary_stream(await _decoded(decode, raw, context), context):
                yield item

        return grpc.unary_stream_rpc_method_handler(us, response_serializer=out)
    if handler.stream_stream is not None:
        stream_stream = handler.stream_stream
        if not inspect.isasyncgenfunction(stream_stream):  # e.g. server reflection

            async def ss_writes(raw: AsyncIterator[bytes], context: Any) -> Any:
                return await _settled(stream_stream(_decoded_stream(decode, raw, context), context))

            return grpc.stream_stream_rpc_method_handler(ss_writes, response_serializer=out)

        async def ss(raw: AsyncIterator[bytes], context: Any) -> AsyncIterator[Any]:
            async for item in stream_stream(_decoded_stream(decode, raw, context), context):
                yield item

        return grpc.stream_stream_rpc_method_handler(ss, response_serializer=out)
    stream_unary = handler.stream_unary

    async def su(raw: AsyncIterator[bytes], context: Any) -> Any:
        return await stream_unary(_decoded_stream(decode, raw, context), context)

    return grpc.stream_unary_rpc_method_handler(su, response_serializer=out)


class DecodeErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Decodes requests in the handler (INVALID_ARGUMENT when they are not protobuf); ``prechecks`` maps a unary
    method's full name (``/package.Service/Method``) to a :data:`Precheck` run on its raw bytes first."""

    def __init__(self, prechecks: Mapping[str, Precheck] | None = None) -> None:
        self._prechecks = dict(prechecks or {})

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        precheck = self._prechecks.get(handler_call_details.method)
        return None if handler is None else _wrapped(handler, precheck)
