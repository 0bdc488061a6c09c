"""The worker's ``/metrics`` over TLS: a connection that never starts its TLS handshake holds only itself.

The server wrapped its listening socket, so every handshake ran in the one thread that accepts connections: a
client that connected and said nothing (a TCP probe kept open, a stalled scraper) stalled every later scrape for
ever. The handshake now runs on the connection's own thread.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
import trustme
from prometheus_client import CollectorRegistry, Gauge

from service.config import WorkerSettings, WorkerTlsSettings
from service.worker.metrics_http import serve_metrics
from tests.conftest import free_port


@pytest.fixture
def tls(tmp_path: Path) -> tuple[WorkerTlsSettings, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "worker.pem", tmp_path / "worker-key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return WorkerTlsSettings(certfile=certfile, keyfile=keyfile), client


def test_a_silent_connection_does_not_stall_the_next_scrape(tls: tuple[WorkerTlsSettings, ssl.SSLContext]) -> None:
    settings_tls, client = tls
    registry = CollectorRegistry()
    Gauge("pose3d_worker_up", "up", registry=registry).set(1)
    settings = WorkerSettings(host="127.0.0.1", metrics_port=free_port(), tls=settings_tls)
    httpd = serve_metrics(settings, registry, None)
    url = f"https://127.0.0.1:{settings.metrics_port}/metrics"
    try:
        with socket.create_connection(("127.0.0.1", settings.metrics_port)):  # connects, never says hello
            answer = httpx.get(url, verify=client, timeout=30)
        assert answer.status_code == 200
        assert "pose3d_worker_up 1.0" in answer.text
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_plaintext_to_the_tls_port_is_refused_quietly(
    tls: tuple[WorkerTlsSettings, ssl.SSLContext], capsys: pytest.CaptureFixture[str]
) -> None:
    settings_tls, client = tls
    settings = WorkerSettings(host="127.0.0.1", metrics_port=free_port(), tls=settings_tls)
    httpd = serve_metrics(settings, CollectorRegistry(), None)
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=30)
        assert httpx.get(f"https://127.0.0.1:{settings.metrics_port}/metrics", verify=client, timeout=30).is_success
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "Traceback" not in capsys.readouterr().err
