"""The CLI's REST client against what may stand between it and the gateway (a proxy's error page)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from service.client.estimate import EstimateArgs, estimate_rest


class _BadGateway(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.send_response(502)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_non_json_error_page_is_reported_not_a_crash(proxy_url: str, tmp_path: Path) -> None:
    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8\xff" + b"\0" * 32)
    with pytest.raises(RuntimeError, match=r"502: .*Bad Gateway.*not a pose3d response"):
        estimate_rest(proxy_url, image, EstimateArgs())
