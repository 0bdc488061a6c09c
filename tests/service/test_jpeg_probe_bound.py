"""The JPEG header probe runs on the gateway's event loop (REST, WebSocket and gRPC image frames), so its work must
not grow with the body: a JPEG made of millions of fill bytes or empty segments before its frame header kept the
loop busy for seconds (16 MiB: over a second; the body limit allows 64 MiB). It reads a bounded number of markers
and refuses the rest as 422; the work is counted here as reads of the body, not timed."""

from __future__ import annotations

from typing import Any, SupportsIndex

import pytest

from service.api.media import validate_image
from service.config import LimitSettings
from service.errors import DecodeFailed
from tests.service.media_samples import encode_image, person_image

READS_ALLOWED = 20_000
"""Reads of the body a probe may make: a few per marker of an ordinary file (which has tens of them)."""


class CountedBytes(bytes):
    """Bytes that count how often they are indexed or sliced."""

    reads = 0

    def __getitem__(self, key: SupportsIndex | slice) -> Any:
        CountedBytes.reads += 1
        return super().__getitem__(key)


def probe(data: bytes) -> None:
    CountedBytes.reads = 0
    try:
        validate_image(CountedBytes(data), LimitSettings())
    finally:
        assert CountedBytes.reads <= READS_ALLOWED, f"{CountedBytes.reads} reads of a {len(data)}-byte body"


JPEG = encode_image(person_image())


@pytest.mark.parametrize(
    "padding",
    [b"\xff" * 2_000_000, b"\xff\x01" * 1_000_000, b"\xff\xfe\x00\x02" * 500_000],
    ids=["fill-bytes", "standalone-markers", "empty-comments"],
)
def test_a_jpeg_padded_before_its_frame_header_is_refused_after_bounded_work(padding: bytes) -> None:
    with pytest.raises(DecodeFailed, match=r"markers before its frame header"):
        probe(JPEG[:2] + padding + JPEG[2:])


def test_an_ordinary_jpeg_is_probed_as_before() -> None:
    probe(JPEG)
    _, width, height = validate_image(JPEG, LimitSettings())
    assert (width, height) == (192, 256)
