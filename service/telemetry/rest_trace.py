"""Traces on REST: a server span per HTTP request, continuing the caller's W3C ``traceparent`` when sent;
the response carries ``traceparent`` back so a client can find its trace."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.telemetry.tracing import tracer, tracing_on


@contextmanager
def server_span(method: str, headers: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[trace.Span, dict[str, str]]]:
    """The SERVER span of one HTTP request, continuing the caller's ``traceparent`` (from the raw ``headers``);
    yields it and the headers to send back (``traceparent``). While tracing is off (no provider installed) the span
    is the API's invalid one and nothing is parsed or sent back: every refusal from the head passes here."""
    if not tracing_on(tracer):
        yield trace.INVALID_SPAN, {}  # nothing to record or send back
        return
    carrier = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
    parent = propagate.extract(carrier)
    with tracer.start_as_current_span(f"{method} request", context=parent, kind=trace.SpanKind.SERVER) as span:
        reply: dict[str, str] = {}
        propagate.inject(reply)
        yield span, reply


class TraceMiddleware:
    """Outermost ASGI middleware: the span is named by the route template once routing has run."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", ""))
        with server_span(method, scope.get("headers", ())) as (span, reply):

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", int(message["status"]))
                    if "traceparent" in reply:
                        headers = list(message.get("headers", []))
                        headers.append((b"traceparent", reply["traceparent"].encode()))
                        message = {**message, "headers": headers}
                await send(message)

            try:
                await self.app(scope, receive, traced_send)
            finally:
                route = getattr(scope.get("route"), "path", None)
                span.update_name(f"{method} {route if isinstance(route, str) else 'unmatched'}")
                request_id = scope.get("state", {}).get("request_id")
                if isinstance(request_id, str):
                    span.set_attribute("pose3d.request_id", request_id)
