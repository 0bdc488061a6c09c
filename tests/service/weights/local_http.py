"""A local HTTP file server for the weights tests: Range requests, a connection dropped mid-body, and a
Google-Drive-like "download anyway" page. Runs in a thread on 127.0.0.1; the tests never touch the internet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, urlsplit

DRIVE_FORM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="/download" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="5b1f-uuid">
</form></body></html>"""

DRIVE_LINK_PAGE = """<html><body><p>Too large to scan.</p>
<a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy12&amp;id={id}">Download anyway</a></body></html>"""

DRIVE_QUOTA_PAGE = "<html><body><p>Too many users have viewed or downloaded this file recently.</p></body></html>"


@dataclass
class Pause:
    """Holds the next response after ``after`` bytes of its body: ``reached`` is set there, and the rest is sent
    once the test sets ``resume``."""

    after: int
    reached: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)


@dataclass
class Served:
    """One file. ``drop_after``: the next ``drops`` responses announce the full length, send this many bytes and
    close the connection. ``pause``: the next response stops part-way until the test lets it go on. ``framing``:
    how the body's end is told — ``length`` (Content-Length), ``chunked`` (a drop then leaves out the terminating
    chunk) or ``close`` (no length: the connection's close ends the body, so a drop looks like the end)."""

    body: bytes
    content_type: str = "application/octet-stream"
    drop_after: int | None = None
    drops: int = 1
    pause: Pause | None = None
    framing: Literal["length", "chunked", "close"] = "length"


@dataclass
class FileServer:
    port: int = 0
    files: dict[str, Served] = field(default_factory=dict)
    drive: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id -> (page template, body)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path with query, Range header)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _file(self, served: Served) -> None:
            body, start = served.body, 0
            rng = self.headers.get("Range")
            extra = {"Accept-Ranges": "bytes"}
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes=") : -1])
                if start >= len(body):
                    self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{len(body)}"})
                    return
                extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            rest = body[start:]
            if served.framing != "length":
                self._framed(served, rest, 206 if start else 200, extra)
                return
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", served.content_type)
            self.send_header("Content-Length", str(len(rest)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            if served.drop_after is not None and served.drops > 0:
                served.drops -= 1
                self.wfile.write(rest[: served.drop_after])
                self.wfile.flush()
                self.close_connection = True  # the peer sees a body shorter than announced
                return
            if served.pause is not None:
                pause, served.pause = served.pause, None
                self.wfile.write(rest[: pause.after])
                self.wfile.flush()
                pause.reached.set()
                pause.resume.wait()
                rest = rest[pause.after :]
            self.wfile.write(rest)

        def _framed(self, served: Served, rest: bytes, status: int, extra: dict[str, str]) -> None:
            """``rest`` chunked or ended by the close (``served.framing``), cut after ``drop_after`` bytes."""
            self.send_response(status)
            self.send_header("Content-Type", served.content_type)
            chunked = served.framing == "chunked"
            self.send_header("Transfer-Encoding" if chunked else "Connection", "chunked" if chunked else "close")
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.close_connection = True
            cut = served.drop_after is not None and served.drops > 0
            if cut:
                served.drops -= 1
                rest = rest[: served.drop_after]
            if not chunked:
                self.wfile.write(rest)
                return
            for i in range(0, len(rest), 16_384):
                piece = rest[i : i + 16_384]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            if not cut:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _drive(self, query: dict[str, list[str]]) -> None:
            file_id = query.get("id", [""])[0]
            if file_id not in server.drive:
                self._send(404, b"no such file", "text/plain")
                return
            page, body = server.drive[file_id]
            if query.get("confirm"):
                self._file(Served(body))
            else:
                self._send(200, page.format(id=file_id).encode(), "text/html; charset=utf-8")

        def do_GET(self) -> None:
            server.requests.append((self.path, self.headers.get("Range")))
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            if parts.path in ("/uc", "/download"):
                self._drive(query)
            elif parts.path in server.files:
                self._file(server.files[parts.path])
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


@contextmanager
def file_server() -> Iterator[FileServer]:
    """A :class:`FileServer` listening on a free port of 127.0.0.1 for the duration of the block."""
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
