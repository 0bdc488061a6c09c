"""Credentials out of text: the one ``redact`` every log line, error detail and start-up message passes through.

A shared leaf (standard library only), imported by telemetry, security, the gateway and start-up alike.
"""

from __future__ import annotations

import re
from typing import Final

_USERINFO: Final = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s]*@", re.IGNORECASE)
"""A URL's scheme and its userinfo: everything up to the LAST ``@`` before the path (RFC 3986 allows none
inside the host, while a password may hold any number of them)."""


def redact(text: str) -> str:
    """``text`` with credentials in URLs replaced by ``***``.

    >>> redact("rediss://:RedisPw9@x@127.0.0.1:6391/0")
    'rediss://***@127.0.0.1:6391/0'
    """
    return _USERINFO.sub(r"\g<scheme>***@", text)
