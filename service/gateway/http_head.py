"""Bounded request heads on every REST listener: uvicorn's httptools protocol with a byte and a count limit.

httptools keeps a header value it has not seen the end of in memory without limit, so the bytes of the request
line and headers are counted as they arrive: past ``limits.max_header_bytes``, or past ``limits.max_headers``
fields, the answer is ``431`` and the connection closes (docs/security.md). With a
:class:`~service.gateway.limits.HeadDoor`, an estimate the engine's door refuses is answered from its head before
any ASGI code runs, its body skipped as it arrives (docs/overload.md: about 90 µs against 680 µs after the app).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import httptools
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.config import LimitSettings
from service.gateway.limits import HeadDoor

_BODY_431 = b"request header fields too large\n"
_ANSWER_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY_431), _BODY_431)
)


class HeadTooLarge(Exception):
    """Raised inside a parser callback: the request has too many header fields."""


class _Answered:
    """The request cycle of a request answered from its head: its body is skipped as it arrives (uvicorn reads
    ``response_complete``, and sets ``message_event`` when the connection ends: no one waits on it)."""

    response_complete = True
    message_event = asyncio.Event()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``max_header_bytes`` and ``max_headers`` per request head, and the
    engine's door (``door``; ``None``: the app decides everything) asked from an estimate's head."""

    max_header_bytes = 64 * 1024
    max_headers = 100
    door: HeadDoor | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True  # no request yet, or the previous one is complete
        self._head_bytes = 0
        self._fields = 0
        self._too_large = False

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes and not self._head_fits(data):
                self._refuse()
                return
        super().data_received(data)

    def _head_fits(self, data: bytes) -> bool:
        """True when this last chunk ends the head within the limit (the body may follow in it)."""
        end = data.find(b"\r\n\r\n")
        return end >= 0 and self._head_bytes - len(data) + end + 4 <= self.max_header_bytes

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._fields = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self.max_headers:
            self._too_large = True
            raise HeadTooLarge(f"more than {self.max_headers} header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_head, self._head_bytes = False, 0
        idle = self.cycle is None or self.cycle.response_complete  # never answer ahead of a pipelined request
        refusal = self._refusal() if idle and self.door is not None else None
        if refusal is None:
            super().on_headers_complete()
        else:
            self._answer(refusal)

    def _refusal(self) -> Response | None:
        assert self.door is not None
        path = httptools.parse_url(self.url).path.decode("ascii")
        path = self.root_path + (urllib.parse.unquote(path) if "%" in path else path)
        return self.door.refusal(self.parser.get_method().decode("ascii"), path, self.headers)

    def _answer(self, response: Response) -> None:
        """Write ``response`` now; keep the connection for the next request unless the client may not send the
        body it announced (``Expect: 100-continue``) or will not keep it (HTTP/1.0, ``Connection: close``)."""
        keep = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        keep = keep and not self.expect_100_continue
        head = [STATUS_LINE[response.status_code]]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"\r\n" if keep else b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + response.body)
        self.cycle = _Answered()  # type: ignore[assignment]
        if keep:
            self.on_response_complete()
        else:
            self.transport.close()

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._too_large = True
        if not self.transport.is_closing():
            self.transport.write(_ANSWER_431)
            self.transport.close()


def bounded_protocol(limits: LimitSettings, door: HeadDoor | None = None) -> type[HttpToolsProtocol]:
    """A :class:`BoundedHttpToolsProtocol` with these limits (and ``door``), for uvicorn's ``http=``."""
    fields = {"max_header_bytes": limits.max_header_bytes, "max_headers": limits.max_headers, "door": door}
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), fields)
