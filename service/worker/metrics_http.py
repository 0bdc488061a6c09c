"""The worker's Prometheus ``/metrics`` port, under the worker port's rule (:mod:`service.security.worker_link`):
HTTPS with ``tls.certfile`` (mTLS with ``tls.client_ca_file``), and ``Authorization: Bearer <key>`` of the worker's
``api_keys_file`` when that is set (401 without one).
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from service.config import WorkerSettings
from service.security.keys import KeyStore

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    timeout = 30.0  # seconds a connection may leave its thread waiting (a TLS handshake, a request) before it ends

    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape."""


class _MetricsServer(ThreadingWSGIServer):
    """A thread per connection; with ``tls``, each connection's TLS handshake runs on its own thread (a wrapped
    listening socket shakes hands in the one thread that accepts, so a client that connected and said nothing
    stalled every later scrape)."""

    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed its handshake (plaintext), timed out or dropped is no fault: no traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _MetricsServer6(_MetricsServer):
    address_family = socket.AF_INET6


def _require_key(app: WsgiApp, keys: KeyStore) -> WsgiApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        scheme, _, token = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        if scheme.lower() == "bearer" and keys.verify(token.strip()) is not None:
            return app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
        return [b"an API key of this worker is required: Authorization: Bearer <key>\n"]

    return guarded


def _refreshing(app: WsgiApp, refresh: Callable[[], None]) -> WsgiApp:
    def refreshed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        refresh()
        return app(environ, start_response)

    return refreshed


def _tls_context(settings: WorkerSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls.certfile is None or tls.keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.certfile), str(tls.keyfile))
    if tls.client_ca_file is not None:
        context.load_verify_locations(cafile=str(tls.client_ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def serve_metrics(
    settings: WorkerSettings,
    registry: CollectorRegistry,
    keys: KeyStore | None,
    refresh: Callable[[], None] | None = None,
) -> WSGIServer:
    """Serve ``registry`` on ``settings.host:settings.metrics_port`` on a daemon thread; ``shutdown()`` stops it.
    ``refresh`` runs (on the connection's thread) before each scrape a key allows."""
    app: WsgiApp = make_wsgi_app(registry)
    if refresh is not None:
        app = _refreshing(app, refresh)
    if keys is not None:
        app = _require_key(app, keys)
    server_class = _MetricsServer6 if ":" in settings.host else _MetricsServer
    try:
        httpd = make_server(settings.host, settings.metrics_port, app, server_class, handler_class=_QuietHandler)
    except OSError as e:
        where = f"{settings.host}:{settings.metrics_port}"
        raise OSError(e.errno, f"cannot listen on {where} (worker metrics): {e.strerror}") from None
    httpd.tls = _tls_context(settings)
    threading.Thread(target=httpd.serve_forever, name="worker-metrics", daemon=True).start()
    return httpd
