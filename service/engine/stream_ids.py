"""The one rule for stream ids, for every transport and the engine: 1–128 characters of ``A-Z a-z 0-9 _ . : -``.

Ids fit every key and wire format (Redis keys carry them in ``{...}`` hash tags, hence no braces). The engine
refuses to open a stream under any other id (422); REST and gRPC answer "no such stream" (404) for one without
asking the engine. Ids the service mints are :func:`new_stream_id` (24 URL-safe characters after a prefix).
"""

from __future__ import annotations

import re
import secrets
from typing import Final

from service.errors import UnknownStream

STREAM_ID_RULE: Final = "stream_id must be 1-128 characters of A-Z a-z 0-9 _ . : -"
_STREAM_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def is_stream_id(value: str) -> bool:
    """Whether ``value`` may name a stream."""
    return _STREAM_ID.fullmatch(value) is not None


def known_stream_id(value: str, where: str) -> str:
    """``value`` when it may name a stream; else UnknownStream (404 / NOT_FOUND) saying ``where`` ids come from."""
    if not is_stream_id(value):
        raise UnknownStream(f"no such stream (ids come from {where})")
    return value


def new_stream_id(prefix: str = "") -> str:
    """A fresh id: ``prefix`` + 24 URL-safe random characters (``prefix`` itself follows the rule)."""
    return prefix + secrets.token_urlsafe(18)
