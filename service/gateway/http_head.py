"""Bounded request heads on every REST listener: uvicorn's httptools protocol with a byte and a count limit.

httptools (uvicorn's default parser) keeps a header value it has not seen the end of in memory, without limit:
two connections sending 256 MiB of unterminated headers took a gateway from 432 to 1 068 MB. This protocol
counts the bytes of the request line and headers as they arrive — before the parser has finished any header —
and answers ``431 Request Header Fields Too Large`` (then closes the connection) once they pass
``limits.max_header_bytes``, or once a request has more than ``limits.max_headers`` header fields. It is the
same parser otherwise (h11, whose ``h11_max_incomplete_event_size`` bounds the head too, parses bodies several
times slower and answers 400).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_BODY_431 = b"request header fields too large\n"
_ANSWER_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY_431), _BODY_431)
)


class HeadTooLarge(Exception):
    """Raised inside a parser callback: the request has too many header fields."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``max_header_bytes`` and ``max_headers`` per request head."""

    max_header_bytes = 64 * 1024
    max_headers = 100

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
        super().on_headers_complete()

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


def bounded_protocol(max_header_bytes: int, max_headers: int) -> type[HttpToolsProtocol]:
    """A :class:`BoundedHttpToolsProtocol` with these limits, for uvicorn's ``http=``."""
    limits = {"max_header_bytes": max_header_bytes, "max_headers": max_headers}
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), limits)
