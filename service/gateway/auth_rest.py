"""API keys and quotas on the REST gateway: one pure ASGI middleware in front of the routes.

``/v1/`` routes need a key (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``) and spend one token of its
rate quota; ``/metrics`` and the API docs need one unless ``security.public_metrics`` / ``public_docs``;
``/healthz``, ``/readyz``, ``/demo`` and the docs' assets are always open (a valid key there still identifies the
caller). Refusals are problem+json: 401 with ``WWW-Authenticate: Bearer``, 429 with ``Retry-After``. Unknown paths
are left to the app (404), so the key check reveals no routes.
"""

from __future__ import annotations

import json
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.validation import safe_request_id
from service.errors import Pose3DError
from service.gateway.problem import problem_message, problem_response, retry_after_of
from service.security.guard import Security, principal
from service.security.keys import presented_credentials
from service.telemetry.context import request_id
from service.telemetry.tracing import stage_span

OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
DOC_PATHS: Final = frozenset({"/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
STATIC_DOC_PREFIX: Final = "/static-offline-docs/"


class AuthGuard:
    """Authenticate and admit each HTTP request and WebSocket handshake per :class:`Security`."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    def _needs_key(self, path: str) -> bool:
        if path in OPEN_PATHS or path.startswith(STATIC_DOC_PREFIX):
            return False
        if path == "/metrics":
            return not self.security.public_metrics
        if path in DOC_PATHS:
            return not self.security.public_docs
        return path.startswith("/v1/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())]
        presented, offered_rid = presented_credentials(headers)  # the same names as in gRPC metadata
        rid = str(scope.setdefault("state", {}).get("request_id") or safe_request_id(offered_rid))
        path = str(scope.get("path", ""))
        rid_token = request_id.set(rid)
        try:
            key_id = await self._identify(path, presented)
        except Pose3DError as error:
            await _refuse(error, rid, scope, receive, send, self.security.in_flight.retry_after_s)
            request_id.reset(rid_token)
            return
        token = principal.set(key_id)  # the caller, for the app; then forgotten with the request id
        try:
            await self.app(scope, receive, send)
        finally:
            principal.reset(token)
            request_id.reset(rid_token)

    async def _identify(self, path: str, presented: str | None) -> str:
        """The caller's key id (ANONYMOUS on open routes without a valid key); raises 401/429."""
        if not self._needs_key(path):
            try:
                return self.security.authenticate(presented) if presented else principal.get()
            except Pose3DError:
                return principal.get()
        with stage_span("admission"):
            key_id = self.security.authenticate(presented)
            if path.startswith("/v1/"):
                await self.security.admit(key_id)
        return key_id


async def _refuse(
    error: Pose3DError, rid: str, scope: Scope, receive: Receive, send: Send, retry_after_s: float
) -> None:
    """HTTP: the problem+json of ``error``. A WebSocket (``/v1/streams/ws``) handshake is refused before the route
    runs or any message is read: accepted only to be closed at once with code 4000 + status (4401, 4429), as
    documented (a close before accepting would reach the browser as an HTTP 403, without the reason); a refusal to
    retry (4429, 4503) first sends its problem message, which says when (``retry_after_s``)."""
    path = str(scope.get("path", ""))
    if scope["type"] == "websocket":
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            if retry_after_of(error, retry_after_s) is not None:
                text = json.dumps(problem_message(error, rid, path, retry_after_s))
                await send({"type": "websocket.send", "text": text})
            await send({"type": "websocket.close", "code": 4000 + error.status, "reason": error.type_slug})
        return
    response = problem_response(error, rid, path, retry_after_s)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="pose3d"'
    await response(scope, receive, send)
