"""A top-level scan of a protobuf message's wire format, without decoding it: a request is refused from its size
before a C parser holds the GIL for a large fraction of a second parsing its nested messages.
"""

from __future__ import annotations

from typing import Final

_VARINT: Final = 0
_LENGTH_DELIMITED: Final = 2
_FIXED_BYTES: Final = {1: 8, 5: 4}  # wire types fixed64 and fixed32
MAX_FIELDS: Final = 1024
"""Top-level fields scanned at most: a request has a few (the scan runs on the event loop; 64 MiB of two-byte fields
took it over ten seconds)."""


def _varint(raw: bytes, at: int) -> tuple[int, int]:
    """The varint at ``raw[at:]`` and the position after it; raises IndexError/ValueError when malformed."""
    value, shift = 0, 0
    while True:
        byte = raw[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def field_bytes(raw: bytes, field_number: int) -> int | None:
    """Total payload bytes of every length-delimited occurrence of top-level field ``field_number`` in the
    serialised message ``raw`` (occurrences of a message field are merged by parsers, so they add up), or None when
    ``raw`` is not a well-formed message at its top level or has more than :data:`MAX_FIELDS` fields there."""
    total, at, end = 0, 0, len(raw)
    try:
        for _ in range(MAX_FIELDS):
            if at >= end:
                break
            key, at = _varint(raw, at)
            number, wire_type = key >> 3, key & 7
            if wire_type == _VARINT:
                _, at = _varint(raw, at)
            elif wire_type in _FIXED_BYTES:
                at += _FIXED_BYTES[wire_type]
            elif wire_type == _LENGTH_DELIMITED:
                length, at = _varint(raw, at)
                at += length
                if number == field_number:
                    total += length
            else:  # groups (deprecated) and invalid wire types
                return None
    except (IndexError, ValueError):
        return None
    return total if at == end else None
