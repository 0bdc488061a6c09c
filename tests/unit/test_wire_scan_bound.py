"""The keypoints precheck of a public ``Estimate`` scans the request's top-level fields on the gateway's event loop,
so its work must not grow with the count of those fields: a request made of millions of tiny fields (64 MiB of
two-byte unknown fields is within the message limit) kept the loop busy for over ten seconds. The scan reads a
bounded number of fields, and a request past the keypoints bound that it cannot size so is refused unparsed; the work
is counted here as reads of the bytes, not timed."""

from __future__ import annotations

from typing import Any, SupportsIndex

import pytest

from service.config import LimitSettings
from service.errors import Pose3DError
from service.gateway.grpc_inputs import keypoints_size_check
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from tests.unit.test_wire import request

READS_ALLOWED = 100_000
"""Reads of the bytes a precheck may make: a few per top-level field."""


class CountedBytes(bytes):
    """Bytes that count how often they are indexed or sliced."""

    reads = 0

    def __getitem__(self, key: SupportsIndex | slice) -> Any:
        CountedBytes.reads += 1
        return super().__getitem__(key)


def precheck(raw: bytes) -> None:
    CountedBytes.reads = 0
    try:
        keypoints_size_check(LimitSettings())(CountedBytes(raw))
    finally:
        assert CountedBytes.reads <= READS_ALLOWED, f"{CountedBytes.reads} reads of a {len(raw)}-byte request"


UNKNOWN_VARINT = b"\x78\x00"  # field 15, varint 0: skipped by the parser


def test_a_request_of_millions_of_tiny_fields_is_refused_after_bounded_work() -> None:
    raw = UNKNOWN_VARINT * 4_000_000  # 8 MB, past the keypoints bound (about 6 MB)
    with pytest.raises(Pose3DError) as refused:
        precheck(raw)
    assert refused.value.grpc_code == "INVALID_ARGUMENT"


def test_keypoints_split_over_many_fields_cannot_pass_unsized() -> None:
    part = pb.EstimateRequest(keypoints=request(1).keypoints).SerializeToString()
    raw = part * (7_000_000 // len(part))  # the parser merges them into one keypoints input
    with pytest.raises(Pose3DError) as refused:
        precheck(raw)
    assert refused.value.grpc_code == "INVALID_ARGUMENT"


def test_an_ordinary_request_is_prechecked_as_before() -> None:
    precheck(request(1000).SerializeToString())  # small: not scanned
    precheck(pb.EstimateRequest(image=b"\xff\xd8" + bytes(8_000_000)).SerializeToString())  # large, one field
