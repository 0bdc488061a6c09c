"""Trace context over gRPC: the gateway's worker channels inject ``traceparent`` into call metadata; servers
(worker, public gateway port) continue the caller's trace in a server span around each call."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from service.telemetry.tracing import tracer


def _client_span(client_call_details: Any) -> tuple[trace.Span, Any]:
    """A client span for the call and the call's details with its context as ``traceparent`` metadata."""
    method = client_call_details.method
    name = method.decode() if isinstance(method, bytes) else str(method)
    span = tracer.start_span(name.rsplit(".", 1)[-1], kind=trace.SpanKind.CLIENT)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    metadata = list(client_call_details.metadata or []) + list(carrier.items())
    return span, client_call_details._replace(metadata=metadata)


class TraceClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """A client span per unary call, its context sent as ``traceparent`` metadata."""

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        span, details = _client_span(client_call_details)
        with trace.use_span(span, end_on_exit=True):
            call = await continuation(details, request)
            await call  # the span covers the whole call
            return call


class TraceStreamClientInterceptor(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """The same for a call answered by a stream (the worker's ``Submit``): the span lasts until the stream ends.
    (gRPC files an interceptor under its first call kind only, hence a class per kind.)"""

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        span, details = _client_span(client_call_details)
        call = await continuation(details, request)

        async def replies() -> AsyncIterator[Any]:
            with trace.use_span(span, end_on_exit=True):
                async for reply in call:
                    yield reply

        return replies()


def _extract(metadata: Any) -> otel_context.Context:
    carrier = {str(item[0]).lower(): item[1] for item in metadata or () if isinstance(item[1], str)}
    return propagate.extract(carrier)


class TraceServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server span per call, child of the caller's ``traceparent`` when it sent one."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = str(handler_call_details.method)
        parent = _extract(handler_call_details.invocation_metadata)
        name = method.lstrip("/").rsplit(".", 1)[-1]

        def unary(behavior: Any) -> Any:
            async def run(request: Any, context: Any) -> Any:
                with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER):
                    return await behavior(request, context)

            return run

        def streaming(behavior: Any) -> Any:
            async def run(request: Any, context: Any) -> AsyncIterator[Any]:
                with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER):
                    async for item in behavior(request, context):
                        yield item

            return run

        return rewrap(handler, unary, streaming)


def rewrap(handler: Any, unary: Callable[[Any], Any], streaming: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour wrapped: ``streaming`` for async-generator handlers, else ``unary``
    (a coroutine: a single response, or a stream written with ``context.write``)."""
    kinds = {
        "unary_unary": (grpc.unary_unary_rpc_method_handler, unary),
        "stream_unary": (grpc.stream_unary_rpc_method_handler, unary),
        "unary_stream": (grpc.unary_stream_rpc_method_handler, streaming),
        "stream_stream": (grpc.stream_stream_rpc_method_handler, streaming),
    }
    for attr, (make, wrap) in kinds.items():
        behavior = getattr(handler, attr)
        if behavior is not None:
            if not inspect.isasyncgenfunction(behavior):  # a streaming handler may write through its context
                wrap = unary
            built: grpc.RpcMethodHandler = make(
                wrap(behavior),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            return built
    return handler
