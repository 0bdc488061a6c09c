"""Transport-level guards as one pure ASGI middleware: request ids, body size, in-flight bound, metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so uploads stream through untouched and the byte count is exact. An
estimate the engine would refuse even at its cheapest is refused earlier still, from its head, inside the HTTP
protocol (:class:`HeadDoor`, asked by :mod:`service.gateway.http_head`).
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.validation import safe_request_id
from service.config import LimitSettings
from service.errors import OverCapacity, PayloadTooLarge, Pose3DError
from service.gateway.problem import REQUEST_ID_HEADER, problem_response
from service.metrics import Metrics
from service.security.inflight import InFlight
from service.telemetry.rest_trace import server_span

GUARDED_PREFIX = "/v1/"  # routes that count against the in-flight bound (health and metrics never do)
JOBS_PREFIX = "/v1/jobs/"  # a job's NDJSON results follow it for as long as it runs: their own bound
ESTIMATE_PATH = "/v1/pose3d"  # with KEYPOINTS_PATH: the routes whose heads the engine's door is asked about
KEYPOINTS_PATH = ESTIMATE_PATH + "/keypoints"
_RID_KEY = REQUEST_ID_HEADER.lower().encode()


class _BodyTooLarge(Exception):
    """Raised from ``receive`` when the body passes the limit (a 413)."""


def _header(scope: Scope | dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _estimate_kind(scope: Scope | dict[str, Any]) -> tuple[bool | None, float | None]:
    """For ``POST /v1/pose3d`` or ``/v1/pose3d/keypoints`` answered whole: whether it carries images (multipart)
    or keypoints (JSON) and its ``X-Request-Timeout`` in seconds (``None``: absent or not a positive number);
    ``(None, None)`` otherwise."""
    if scope.get("method") != "POST" or scope.get("path") not in (ESTIMATE_PATH, KEYPOINTS_PATH):
        return None, None
    if "ndjson" in (_header(scope, b"accept") or ""):  # a progress deadline, not a whole-answer one
        return None, None
    media = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
    images = True if media == "multipart/form-data" else False if media.endswith(("/json", "+json")) else None
    try:
        timeout = float(_header(scope, b"x-request-timeout") or "nan")
    except ValueError:
        timeout = math.nan
    return images, timeout if 0 < timeout < math.inf else None


def _declared_over(scope: Scope | dict[str, Any], limit: int) -> int | None:
    """The body size the request declares (``Content-Length``) when it is over ``limit``."""
    declared = _header(scope, b"content-length")
    return int(declared) if declared is not None and declared.isdigit() and int(declared) > limit else None


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _count(metrics: Metrics, label: str, status: int | str, started: float) -> None:
    metrics.requests_total.labels(label, str(status)).inc()
    metrics.request_duration.labels(label).observe(time.perf_counter() - started)


class HeadDoor:
    """The engine's door asked from a request's head alone, before any ASGI code runs: an estimate that
    :meth:`InFlight.check` refuses is answered and counted as :class:`GatewayGuard` answers its refusals (the
    route label ``unmatched``)."""

    def __init__(self, limits: LimitSettings, metrics: Metrics, in_flight: InFlight) -> None:
        self.limits, self.metrics, self.in_flight = limits, metrics, in_flight

    def refusal(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> JSONResponse | None:
        """The answer to a request with this head when it is refused now; ``None``: the app decides."""
        started = time.perf_counter()
        head = {"method": method, "path": path, "headers": headers}
        images, timeout_s = _estimate_kind(head)
        if images is None or _declared_over(head, self.limits.max_body_bytes) is not None:  # the app's 413 first
            return None
        try:
            self.in_flight.check(images, timeout_s)
        except Pose3DError as refused:
            if not isinstance(refused, OverCapacity):  # the engine's door counted its own, by reason
                self.metrics.rejected_total.labels(refused.type_slug).inc()
            request_id = safe_request_id(_header(head, _RID_KEY))
            with server_span(method, headers) as (span, reply):  # traced as the app's refusals are
                span.update_name(f"{method} unmatched")
                span.set_attribute("http.response.status_code", refused.status)
                span.set_attribute("pose3d.request_id", request_id)
                response = problem_response(refused, request_id, path, self.limits.retry_after_s)
                response.headers.update(reply)
            _count(self.metrics, "unmatched", refused.status, started)
            return response
        return None


class GatewayGuard:
    """Request id (``X-Request-ID`` kept when sane, else a fresh uuid4 hex), body limit (413),
    in-flight bound on ``/v1/`` routes (429 + ``Retry-After``; the process's one bound, which gRPC shares),
    and ``pose3d_requests_total`` / ``pose3d_request_duration_seconds`` by route template (never by raw path), a
    WebSocket once it ends, by its close code (:meth:`_socket`)."""

    def __init__(
        self,
        app: ASGIApp,
        limits: LimitSettings,
        metrics: Metrics,
        in_flight: InFlight,
        sockets: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.sockets = sockets  # the WebSocket routes' paths (no parameters): a refused handshake is counted there
        self.limits = limits
        self.metrics = metrics
        self.in_flight = in_flight
        self.follows = InFlight(limits.max_job_follows, limits.retry_after_s)

    def _bound_of(self, scope: Scope) -> InFlight | None:
        """The bound ``scope`` counts against: none outside ``/v1/``; ``follows`` for a job's NDJSON results (they
        wait on the job, and held the in-flight bound for as long as it ran: 256 idle follows shut every request
        out); else the in-flight bound."""
        path = str(scope.get("path", ""))
        if not path.startswith(GUARDED_PREFIX):
            return None
        follow = scope.get("method") == "GET" and path.startswith(JOBS_PREFIX) and path.endswith("/results")
        return self.follows if follow and "x-ndjson" in (_header(scope, b"accept") or "") else self.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._socket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = safe_request_id(_header(scope, _RID_KEY))
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                if not any(k.lower() == _RID_KEY for k, _ in headers):
                    headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._guarded(scope, receive, tracked, request_id)
        finally:
            _count(self.metrics, _route_label(scope), status, started)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket, counted once when it ends, under its route template; its ``code``: the close code it ended
        with (sent, else the client's), or the HTTP status of a refused handshake (403 for a close before accepting,
        as the server answers it). One that ended with neither: 1011 when the app failed after accepting, 1000 when
        it returned, 500 before it accepted. Its duration, open to close, goes to the request duration histogram."""
        started = time.perf_counter()
        ended: int | None = None
        accepted = failed = False

        async def tracked_send(message: Message) -> None:
            nonlocal ended, accepted
            kind = message["type"]
            accepted = accepted or kind == "websocket.accept"
            if ended is None and kind == "websocket.close":  # before accepting: the server answers 403
                ended = int(message.get("code", 1000)) if accepted else 403
            elif ended is None and kind == "websocket.http.response.start":
                ended = int(message["status"])
            await send(message)

        async def tracked_receive() -> Message:
            nonlocal ended
            message = await receive()
            if ended is None and message["type"] == "websocket.disconnect":
                ended = int(message.get("code", 1005))
            return message

        try:
            await self.app(scope, tracked_receive, tracked_send)
        except BaseException:
            failed = True
            raise
        finally:
            fallback = (1011 if failed else 1000) if accepted else 500
            label = _route_label(scope)  # a handshake refused before routing (AuthGuard's 4401, 4429): its path
            label = scope["path"] if label == "unmatched" and scope.get("path") in self.sockets else label
            _count(self.metrics, label, fallback if ended is None else ended, started)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: Pose3DError, request_id: str) -> None:
        """Answer ``error`` as problem+json (counted in ``pose3d_rejected_total``)."""
        self.metrics.rejected_total.labels(error.type_slug).inc()
        response = problem_response(error, request_id, str(scope.get("path", "")), self.limits.retry_after_s)
        await response(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        limit = self.limits.max_body_bytes
        if (declared := _declared_over(scope, limit)) is not None:
            too_large = PayloadTooLarge(f"request body is {declared} bytes; at most {limit} are accepted")
            await self._refuse(scope, receive, send, too_large, request_id)
            return
        if (bound := self._bound_of(scope)) is None:
            await self._bounded(scope, receive, send, request_id)
            return
        try:
            bound.acquire()
        except Pose3DError as busy:
            await self._refuse(scope, receive, send, busy, request_id)
            return
        try:
            await self._bounded(scope, receive, send, request_id)
        finally:
            bound.release()

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """Run the app with the body counted against ``max_body_bytes`` (413 when it passes)."""
        limit = self.limits.max_body_bytes
        received = 0
        overflowed = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflowed = True
                    raise _BodyTooLarge
            return message

        async def gated_send(message: Message) -> None:
            nonlocal response_started
            if overflowed:  # the app's own rendering of the aborted body read is replaced by our 413
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, counting_receive, gated_send)
        if overflowed and not response_started:
            too_large = PayloadTooLarge(f"request body exceeds {limit} bytes")
            await self._refuse(scope, receive, send, too_large, request_id)
