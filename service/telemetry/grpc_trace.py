"""Trace context over gRPC: the gateway's worker channels inject ``traceparent`` into call metadata; servers
(worker, public gateway port) continue the caller's trace in a server span around each call (entered by the one
handler wrap, :class:`~service.rpc.decoding.CallInterceptor`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
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
    """The same for a call answered by a stream (the worker's ``Submit``): the span lasts until the call ends —
    read to its end, failed, or cancelled by a caller that stopped reading. (gRPC files an interceptor under its
    first call kind only, hence a class per kind.) The span is never made current: a generator holding it current
    between its replies would lend it to the caller's code, and end it only when collected, in another context."""

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        if not tracing_on(tracer):
            return await continuation(client_call_details, request)
        span, details = _client_span(client_call_details)
        try:
            call = await continuation(details, request)
        except BaseException:
            span.end()
            raise
        call.add_done_callback(lambda done: _ending(_end_span(span, done)))
        return call


_ended: set[asyncio.Future[None]] = set()  # the span enders running (a task no one holds may be collected)


def _ending(end: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(end)
    _ended.add(task)
    task.add_done_callback(_ended.discard)


async def _end_span(span: trace.Span, call: Any) -> None:
    """End ``span`` with the status of ``call`` (ended): an error but for OK and CANCELLED (the caller left)."""
    try:
        code = await call.code()
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{code.name}: {await call.details()}"))
    finally:
        span.end()


def server_span(method: str, metadata: Any) -> Callable[[], trace.Span]:
    """A factory of the server span (started, not yet current: :func:`current`) for a call of ``method``
    (``/package.Service/Method``; the span is named ``Service/Method``), child of the ``traceparent`` in the call's
    ``metadata`` when the caller sent one. While tracing is off the span is the API's invalid one and the metadata
    is not read."""
    if not tracing_on(tracer):
        return lambda: trace.INVALID_SPAN
    carrier = {str(item[0]).lower(): item[1] for item in metadata or () if isinstance(item[1], str)}
    parent = propagate.extract(carrier)
    name = method.lstrip("/").rsplit(".", 1)[-1]
    return lambda: tracer.start_span(name, context=parent, kind=trace.SpanKind.SERVER)


def current(span: trace.Span, *, end: bool = False) -> AbstractContextManager[trace.Span]:
    """``span`` current for the ``with`` body (its errors recorded; ended after it when ``end``); nothing while
    tracing is off. A streaming handler makes its span current a step at a time: held across its ``yield``, the
    context would be left when the call is cancelled, from another context ('Failed to detach context')."""
    return nullcontext(span) if span is trace.INVALID_SPAN else trace.use_span(span, end_on_exit=end)
