"""Trace context over gRPC: the gateway's worker channels inject ``traceparent`` into call metadata; servers
(worker, public gateway port) continue the caller's trace in a server span around each call (entered by the one
handler wrap, :class:`~service.rpc.decoding.CallInterceptor`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import grpc
from opentelemetry import propagate, trace

from service.telemetry.tracing import tracer, tracing_on


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
        if not tracing_on(tracer):
            return await continuation(client_call_details, request)
        span, details = _client_span(client_call_details)
        with trace.use_span(span, end_on_exit=True):
            call = await continuation(details, request)
            await call  # the span covers the whole call
            return call


class TraceStreamClientInterceptor(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """The same for a call answered by a stream (the worker's ``Submit``): the span lasts until the stream ends.
    (gRPC files an interceptor under its first call kind only, hence a class per kind.)"""

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        if not tracing_on(tracer):
            return await continuation(client_call_details, request)
        span, details = _client_span(client_call_details)
        call = await continuation(details, request)

        async def replies() -> AsyncIterator[Any]:
            with trace.use_span(span, end_on_exit=True):
                async for reply in call:
                    yield reply

        return replies()


def server_span(method: str, metadata: Any) -> Callable[[], AbstractContextManager[trace.Span]]:
    """A factory of the server span for a call of ``method`` (``/package.Service/Method``; the span is named
    ``Service/Method``), child of the ``traceparent`` in the call's ``metadata`` when the caller sent one. While
    tracing is off the span is the API's invalid one and the metadata is not read."""
    if not tracing_on(tracer):
        return lambda: nullcontext(trace.INVALID_SPAN)
    carrier = {str(item[0]).lower(): item[1] for item in metadata or () if isinstance(item[1], str)}
    parent = propagate.extract(carrier)
    name = method.lstrip("/").rsplit(".", 1)[-1]
    return lambda: tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER)
